//! Enrich: the transform stage that turns a decoded kernel event into a typed [`Event`]:
//! wall-clock time, host, process image (exe, exec ids), cgroup path, and the resource with its
//! provenance (`resource.rs`). Non-blocking connects are held until the kernel reports their
//! outcome (`connect.rs`).
//!
//! Lifecycle events (fork, exit) only update the process table and produce no event.

mod compat;
mod connect;
pub(crate) mod host;
mod mounts;
mod packets;
mod process;
mod resource;
mod uring;

use std::{sync::Arc, time::Duration};

use audit_common::event::{Syscall, flags};

use self::{
    connect::ConnectTracker,
    host::HostInfo,
    packets::{Made, PacketTracker},
    process::{ProcessTable, exe_key},
    resource::kernel_file,
};
use crate::{
    capture::cgroup::{Cgroup2, CgroupPaths},
    decode::{Body as KernelBody, Exe, FileChange, KernelEvent},
    event::{
        Action, Activity, Body, Detail, Event, Field, Host, Ia32Call, Outcome, Process, Subject,
        Target,
    },
    time::BootClock,
};

/// Least time a DNS query waits for its answer (resolvers retry after 5 s).
const DNS_WAIT: Duration = Duration::from_secs(5);

pub(crate) struct Enricher {
    host: Arc<Host>,
    /// The stream of unsequenced events (the sequencer sets the real one).
    unsequenced: Arc<str>,
    clock: BootClock,
    cgroups: CgroupPaths,
    procs: ProcessTable,
    connects: ConnectTracker,
    urings: uring::UringTracker,
    packets: PacketTracker,
    mounts: mounts::HostMounts,
    /// Events one kernel event completed besides the one `enrich` returned.
    more: Vec<Event>,
}

impl Enricher {
    /// `connect_wait`: how long an in-progress connect is held for its outcome.
    pub(crate) fn new(host: &HostInfo, cgroup2: Cgroup2, connect_wait: Duration) -> Self {
        Self {
            host: Arc::new(Host {
                name: host.name.clone(),
                boot_id: host.boot_id.clone(),
            }),
            unsequenced: Arc::from(""),
            clock: BootClock::new(),
            cgroups: CgroupPaths::new(cgroup2),
            procs: ProcessTable::new(host.boot_short()),
            connects: ConnectTracker::new(connect_wait),
            urings: uring::UringTracker::new(connect_wait),
            packets: PacketTracker::new(connect_wait.max(DNS_WAIT)),
            mounts: mounts::HostMounts::new(),
            more: Vec::new(),
        }
    }

    /// Re-samples the boot-clock offset (call periodically; NTP slews the wall clock).
    pub(crate) fn refresh_clock(&mut self) {
        self.clock.refresh();
    }

    pub(crate) fn host(&self) -> &Arc<Host> {
        &self.host
    }

    /// Held connects that completed or waited long enough (all of them when `flush`).
    pub(crate) fn ready(&mut self, flush: bool) -> Vec<Event> {
        let mut out = self.connects.ready(flush);
        for mut e in self.urings.ready(flush) {
            // An io_uring open learns its file at completion.
            if let Some(a) = e.activity_mut() {
                self.mounts.place(&mut a.resource);
            }
            out.push(e);
        }
        for m in self.packets.ready(flush) {
            let e = self.made_event(m);
            out.push(e);
        }
        out.sort_by_key(|e| e.time);
        out
    }

    /// Events the last [`Enricher::enrich`] completed beyond the one it returned, in order.
    pub(crate) fn take_more(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.more)
    }

    /// A packet of a watched socket: the DNS, TLS or HTTP records it completes.
    fn packet(&mut self, ev: &KernelEvent, p: &crate::decode::Packet) -> Option<Event> {
        let mut made = Vec::new();
        self.packets.packet(&ev.task, p, &mut made);
        let mut events: Vec<Event> = made.into_iter().map(|m| self.made_event(m)).collect();
        if events.is_empty() {
            return None;
        }
        let first = events.remove(0);
        self.more.extend(events);
        Some(first)
    }

    /// The `agent.claim` record of a claim (or refusal) `peer` submitted at `at`: its process is
    /// the one the kernel says sent it, known to the process table like any other.
    pub(crate) fn claim_event(
        &mut self,
        peer: &crate::claims::listen::Peer,
        at: crate::event::Timestamp,
        record: crate::event::ClaimRecord,
    ) -> Event {
        let outcome = match record {
            crate::event::ClaimRecord::Claim(_) => Outcome::Success(0),
            crate::event::ClaimRecord::Rejected { .. } => Outcome::Failure(22),
        };
        let process = match peer.pid {
            Some(pid) => {
                let img = self.procs.get(pid).clone();
                Process {
                    pid,
                    tid: pid,
                    ppid: peer.ppid,
                    comm: peer.comm.clone(),
                    exe: img.exe,
                    exe_replaced: img.exe_reported.is_some(),
                    exe_reported: img.exe_reported,
                    exec_id: Some(img.exec_id),
                    parent_exec_id: img.parent_exec_id,
                    ancestors: img.ancestors,
                }
            }
            None => Process::default(),
        };
        let activity = Activity {
            action: Action::Claim,
            syscall: crate::linux::CLAIM_SYSCALL,
            process,
            subject: Subject {
                uid: peer.uid,
                gid: peer.gid,
                cgroup_id: peer.cgroup_id,
                cgroup: (peer.cgroup_id != 0)
                    .then(|| self.cgroups.path(peer.cgroup_id))
                    .flatten(),
                container_id: None,
                k8s: None,
            },
            agent: None,
            resource: crate::event::Resource {
                target: Target::Call,
                detail: Detail::Claim(Box::new(record)),
                truncated: Vec::new(),
                unreadable: Vec::new(),
                uring: None,
                ia32: None,
                destination: None,
            },
            outcome,
            protected: Vec::new(),
            protected_by_inode: Vec::new(),
            verdict: None,
        };
        Event {
            time: at,
            host: Arc::clone(&self.host),
            seq: 0,
            stream: Arc::clone(&self.unsequenced),
            body: Body::Activity(Box::new(activity)),
        }
    }

    /// The event of a record made from packets: its process is the socket's owner.
    fn made_event(&mut self, m: Made) -> Event {
        let t = &m.task;
        let img = self.procs.get(t.pid).clone();
        let process = Process {
            pid: t.pid,
            tid: t.tid,
            ppid: t.ppid,
            comm: t.comm.clone(),
            exe: img.exe,
            exe_replaced: img.exe_reported.is_some(),
            exe_reported: img.exe_reported,
            exec_id: Some(img.exec_id),
            parent_exec_id: img.parent_exec_id,
            ancestors: img.ancestors,
        };
        let activity = Activity {
            action: m.action,
            syscall: crate::linux::PACKET_SYSCALL,
            process,
            subject: Subject {
                uid: t.uid,
                gid: t.gid,
                cgroup_id: t.cgroup_id,
                cgroup: self.cgroups.path(t.cgroup_id),
                container_id: None,
                k8s: None,
            },
            agent: None,
            resource: m.resource,
            outcome: m.outcome,
            protected: Vec::new(),
            protected_by_inode: Vec::new(),
            verdict: None,
        };
        Event {
            time: self.clock.to_wall(t.ktime_ns),
            host: Arc::clone(&self.host),
            seq: 0,
            stream: Arc::clone(&self.unsequenced),
            body: Body::Activity(Box::new(activity)),
        }
    }

    /// Turns an event into a typed one; lifecycle events and connect outcomes update state and
    /// return `None`, as does an in-progress connect (held until its outcome).
    pub(crate) fn enrich(&mut self, ev: KernelEvent) -> Option<Event> {
        let ia32 = match &ev.body {
            KernelBody::Compat { nr, args, .. } => Some(Ia32Call {
                nr: *nr,
                args: (!ev.has_flag(flags::ARGS_UNREAD)).then_some(*args),
            }),
            _ => None,
        };
        let ev = compat::equivalent(ev);
        let t = &ev.task;
        let action = match &ev.body {
            KernelBody::Fork { child_pid } => {
                self.procs.on_fork(t.pid, *child_pid, t.ktime_ns);
                return None;
            }
            KernelBody::Exit { .. } => {
                // The record first: it names the image that ended.
                let event = self.activity(&ev, Action::Exit);
                self.procs.on_exit(t.pid);
                return event;
            }
            KernelBody::Packet(p) => return self.packet(&ev, p),
            KernelBody::ConnectOutcome(o) => {
                self.connects.outcome((t.tid, t.ktime_ns), *o);
                return None;
            }
            KernelBody::Exec { .. } => Action::Exec,
            KernelBody::Open { .. } => Action::Open,
            KernelBody::Connect { syscall, .. } if *syscall != Syscall::Connect => Action::Send,
            KernelBody::Connect { .. } => Action::Connect,
            KernelBody::File { change, .. } => {
                resource::change_action(change.syscall, change.flags)?
            }
            KernelBody::CgroupMove { .. } => Action::CgroupMove,
            KernelBody::Signal { .. } => Action::Signal,
            KernelBody::Access { .. } => Action::Access,
            KernelBody::UringSetup { .. } => Action::UringSetup,
            KernelBody::Compat { .. } => Action::CompatSyscall,
            KernelBody::SetExe { changed, new, .. } => {
                if let (true, Some(k)) = (*changed, new) {
                    self.procs.exe_replaced(t.pid, Arc::from(k.path.as_slice()));
                }
                Action::SetExe
            }
            KernelBody::Fd { received_on, .. } => match received_on {
                Some(_) => Action::Receive,
                None => Action::Held,
            },
            KernelBody::Copy { .. } => Action::Copy,
            KernelBody::MapExec { .. } => Action::MapExec,
            KernelBody::UringDone { req, res, sections } => {
                let opened = sections.kpath.as_ref().map(kernel_file);
                self.urings.done(*req, *res, opened);
                return None;
            }
            KernelBody::Uring {
                req,
                opcode,
                flags,
                addr,
                ..
            } => {
                let action = resource::uring_action(*opcode, *flags, addr.as_ref())?;
                let mut event = self.activity(&ev, action)?;
                if let Some(a) = event.activity_mut() {
                    a.outcome = Outcome::Unknown;
                }
                self.urings.hold(*req, event);
                return None;
            }
        };
        let mut event = self.activity(&ev, action)?;
        if let (Some(call), Some(a)) = (ia32, event.activity_mut()) {
            a.syscall = crate::linux::ia32_syscall_name(call.nr);
            a.resource.ia32 = Some(call);
        }
        if action == Action::Connect && ev.has_flag(flags::CONNECT_ASYNC) && ev.retval == -115 {
            self.connects.hold((t.tid, t.ktime_ns), event, t.ktime_ns);
            return None;
        }
        Some(event)
    }

    fn activity(&mut self, ev: &KernelEvent, action: Action) -> Option<Event> {
        let t = &ev.task;
        let mut resource = resource::resource(ev)?;
        self.mounts.place(&mut resource);
        let (process, exe_unknown) = self.process(ev);
        if exe_unknown {
            resource.unreadable.push(Field::Exe);
        }
        if let (Detail::Access(a), crate::event::Target::Process { pid }) =
            (&mut resource.detail, &resource.target)
            && (a.pid_from_kernel || !a.caller_namespaced)
        {
            // The host's number: the process table knows (or bootstraps) its image.
            a.target_exec_id = Some(self.procs.get(*pid).exec_id.clone());
        }
        if matches!(resource.detail, Detail::Exec { .. }) {
            let id = self.on_exec(ev, &resource.target, &resource.detail);
            if let Detail::Exec { new_exec_id, .. } = &mut resource.detail {
                *new_exec_id = id;
            }
        }
        let outcome = if let Detail::Exit(status) = &resource.detail {
            crate::event::ExitStatus::outcome(*status)
        } else if ev.has_flag(flags::INCOMPLETE) {
            Outcome::Unknown
        } else {
            Outcome::from_retval(ev.retval, action == Action::Connect)
        };
        let activity = Activity {
            action,
            syscall: syscall_name(&ev.body),
            process,
            subject: Subject {
                uid: t.uid,
                gid: t.gid,
                cgroup_id: t.cgroup_id,
                cgroup: self.cgroups.path(t.cgroup_id),
                container_id: None,
                k8s: None,
            },
            agent: None,
            resource,
            outcome,
            protected: Vec::new(),
            protected_by_inode: Vec::new(),
            verdict: None,
        };
        Some(Event {
            time: self.clock.to_wall(t.ktime_ns),
            host: Arc::clone(&self.host),
            seq: 0,
            stream: Arc::clone(&self.unsequenced),
            body: Body::Activity(Box::new(activity)),
        })
    }

    /// The acting process, with its executable as the kernel named it; `true` when the kernel
    /// read an executable this agent cannot name.
    fn process(&mut self, ev: &KernelEvent) -> (Process, bool) {
        let t = &ev.task;
        let exe = exe_of(&ev.body);
        if let (Some(p), Some(id)) = (&exe.path, exe.facts.as_ref()) {
            let f = kernel_file(p);
            let key =
                f.id.as_ref()
                    .map_or((id.dev >> 20, id.dev & 0xf_ffff, id.ino), exe_key);
            self.procs.announce(t.pid, key, Arc::from(f.path));
        }
        let img = self.procs.get(t.pid).clone();
        let by_id = exe
            .facts
            .map(|f| (f.dev >> 20, f.dev & 0xf_ffff, f.ino))
            .and_then(|k| self.procs.exe(k));
        // The record's own executable identity decides; the image's path is the fallback for
        // records that carry none (a thread dying inside a syscall).
        let exe_path = by_id.or_else(|| exe.facts.is_none().then(|| img.exe.clone()).flatten());
        let unknown = exe.facts.is_some() && exe_path.is_none();
        // `mm->exe_file` was replaced: the record's identity is the file the exec loaded.
        let replaced = ev.has_flag(flags::EXE_REPLACED);
        let process = Process {
            pid: t.pid,
            tid: t.tid,
            ppid: t.ppid,
            comm: t.comm.clone(),
            exe: exe_path,
            exe_replaced: replaced,
            exe_reported: img.exe_reported.filter(|_| replaced),
            exec_id: Some(img.exec_id),
            parent_exec_id: img.parent_exec_id,
            ancestors: img.ancestors,
        };
        (process, unknown)
    }

    /// A successful exec starts a new image: its executable is the file the kernel loaded.
    fn on_exec(&mut self, ev: &KernelEvent, target: &Target, detail: &Detail) -> Option<Arc<str>> {
        if ev.retval != 0 || ev.has_flag(flags::INCOMPLETE) {
            return None;
        }
        let loaded = match (target, detail) {
            (
                _,
                Detail::Exec {
                    interpreter: Some(i),
                    ..
                },
            ) => i.loaded.clone(),
            (Target::File(f), _) => f.object.clone(),
            _ => None,
        };
        let exe = loaded
            .as_ref()
            .map(|k| Arc::<[u8]>::from(k.path.as_slice()));
        if let (Some(k), Some(id)) = (&loaded, loaded.as_ref().and_then(|k| k.id)) {
            self.procs
                .announce(ev.task.pid, exe_key(&id), Arc::from(k.path.as_slice()));
        }
        Some(self.procs.on_exec(ev.task.pid, exe, ev.task.ktime_ns))
    }
}

fn exe_of(b: &KernelBody) -> Exe {
    match b {
        KernelBody::Exec { sections, .. }
        | KernelBody::Open { sections, .. }
        | KernelBody::Connect { sections, .. }
        | KernelBody::File { sections, .. }
        | KernelBody::Access { sections, .. }
        | KernelBody::Uring { sections, .. }
        | KernelBody::Compat { sections, .. }
        | KernelBody::SetExe { sections, .. }
        | KernelBody::Fd { sections, .. }
        | KernelBody::Copy { sections, .. }
        | KernelBody::MapExec { sections, .. } => sections.exe.clone(),
        _ => Exe::default(),
    }
}

fn syscall_name(b: &KernelBody) -> &'static str {
    match b {
        KernelBody::Exec { syscall, .. }
        | KernelBody::Open { syscall, .. }
        | KernelBody::Connect { syscall, .. }
        | KernelBody::File {
            change: FileChange { syscall, .. },
            ..
        }
        | KernelBody::Access { syscall, .. }
        | KernelBody::Fd { syscall, .. }
        | KernelBody::Copy { syscall, .. }
        | KernelBody::MapExec { syscall, .. } => syscall.name(),
        KernelBody::SetExe { .. } => audit_common::event::Syscall::Prctl.name(),
        KernelBody::Uring { .. } | KernelBody::UringSetup { .. } => "io_uring",
        KernelBody::Exit { .. } => crate::linux::EXIT_SYSCALL,
        _ => "unknown",
    }
}

#[cfg(test)]
mod tests;
