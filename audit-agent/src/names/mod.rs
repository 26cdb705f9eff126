//! Name destinations: the stage that puts on every network record the host names its address
//! had for the agent that acted — what DNS told the agent's processes (answers they received,
//! per agent, never a host-wide cache and never a lookup of our own), besides what the
//! connection itself asked for (TLS server name, HTTP Host, CONNECT target).
//!
//! It runs after identity (names are scoped to the agent) and before policy (protected sets
//! match host names). A `network.dns` record with a solicited answer teaches it the names of
//! the addresses in the answer's chain — the name asked for, each CNAME on the way, each A or
//! AAAA record at its end; records the chain does not lead to are ignored (a resolver cannot
//! name an address it was not asked about).
//!
//! Connects, sends, TLS and HTTP records then carry in `hosts` the names their connection is
//! known by: what it asked for itself, and the chain of the last answer the acting process
//! received for the address (what `getaddrinfo` just told it) — or, when that process was told
//! nothing about the address, every name the agent's processes were. Other names the agent was
//! told for the same address (shared addresses: CDNs, virtual hosts) go to `other_hosts`, which
//! policy does not match. Names past their TTL are kept, flagged `expired`. Where the
//! connection asked for a name DNS never gave the address, the record says they conflict.

use std::{
    collections::VecDeque,
    net::{IpAddr, SocketAddr},
    sync::Arc,
};

use crate::{
    event::{
        Action, Activity, Detail, DnsLookup, DnsOrigin, Event, HostName, HostSource, Opaque, Stage,
        Target, Timestamp, UNATTRIBUTED,
    },
    wire::dns::{RData, Record},
};

/// Names kept at once (all agents); beyond it the oldest answers are forgotten.
const MAX_NAMES: usize = 65_536;
/// Names kept for one address of one agent (Cilium keeps 50 per name per pod).
const MAX_PER_ADDRESS: usize = 16;
/// CNAMEs followed from the name asked for.
const MAX_CHAIN: usize = 16;
/// How long a name is kept past its TTL (flagged `expired` meanwhile).
const KEEP_EXPIRED: jiff::SignedDuration = jiff::SignedDuration::from_hours(24);

/// Hosts of well-known DNS-over-HTTPS services: a TLS connection to one carries lookups the
/// trail cannot see.
const DOH_HOSTS: [&str; 12] = [
    "dns.google",
    "dns.google.com",
    "cloudflare-dns.com",
    "mozilla.cloudflare-dns.com",
    "chrome.cloudflare-dns.com",
    "one.one.one.one",
    "1dot1dot1dot1.cloudflare-dns.com",
    "dns.quad9.net",
    "doh.opendns.com",
    "dns.nextdns.io",
    "doh.cleanbrowsing.org",
    "dns.adguard-dns.com",
];
/// Port of DNS over TLS (RFC 7858).
const DOT_PORT: u16 = 853;

/// Whose names: an agent, or for unattributed activity its cgroup (processes no agent covers
/// share nothing by default).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Scope {
    Agent(Arc<str>),
    Cgroup(u64),
}

fn scope_of(a: &Activity) -> Scope {
    match a.agent.as_deref() {
        Some(id) if id.id != UNATTRIBUTED => Scope::Agent(Arc::from(id.id.as_str())),
        _ => Scope::Cgroup(a.subject.cgroup_id),
    }
}

/// One name an address had, from one answer.
#[derive(Debug, Clone)]
struct Told {
    name: Arc<str>,
    origin: Arc<DnsOrigin>,
    expires: Timestamp,
    /// The process that received the answer.
    pid: u32,
}

/// The names each agent was told, per address, bounded in total.
#[derive(Default)]
struct Names {
    by_address: crate::FastMap<(Scope, IpAddr), Vec<Told>>,
    /// Insertion order, oldest first, for eviction.
    order: VecDeque<(Scope, IpAddr)>,
    count: usize,
}

impl Names {
    fn learn(&mut self, scope: &Scope, ip: IpAddr, told: Told) {
        let key = (scope.clone(), ip);
        let list = self.by_address.entry(key.clone()).or_default();
        if let Some(old) = list.iter_mut().find(|t| t.name == told.name) {
            *old = told;
            return;
        }
        if list.len() >= MAX_PER_ADDRESS {
            list.remove(0);
            self.count -= 1;
        }
        list.push(told);
        self.count += 1;
        self.order.push_back(key);
        while self.count > MAX_NAMES {
            self.evict_oldest();
        }
    }

    fn evict_oldest(&mut self) {
        let Some(key) = self.order.pop_front() else {
            self.count = 0;
            return;
        };
        if let Some(list) = self.by_address.get_mut(&key)
            && !list.is_empty()
        {
            list.remove(0);
            self.count -= 1;
            if list.is_empty() {
                self.by_address.remove(&key);
            }
        }
    }

    /// The names of `ip` for `scope` at `at`, for an action of process `pid`: (the chain of the
    /// last answer `pid` received for it — every name when it received none —, the other
    /// names), each most recently told first. Only answers received by `at` count: an action
    /// cannot have used an answer that came after it, whatever order the records reach this
    /// stage in (a connect whose record is completed late can follow a later lookup's).
    /// Forgets names long past their TTL.
    fn of(
        &mut self,
        scope: &Scope,
        ip: IpAddr,
        at: Timestamp,
        pid: u32,
    ) -> (Vec<HostName>, Vec<HostName>) {
        let key = (scope.clone(), ip);
        let Some(list) = self.by_address.get_mut(&key) else {
            return (Vec::new(), Vec::new());
        };
        let before = list.len();
        list.retain(|t| at < t.expires + KEEP_EXPIRED);
        self.count -= before - list.len();
        let told_by = |t: &&Told| t.origin.answered <= at;
        let own = list
            .iter()
            .rev()
            .filter(told_by)
            .find(|t| t.pid == pid)
            .map(|t| Arc::clone(&t.origin));
        let name = |t: &Told| HostName {
            name: Arc::clone(&t.name),
            source: HostSource::Dns,
            dns: Some(Arc::clone(&t.origin)),
            expired: at >= t.expires,
        };
        let (mut mine, mut others) = (Vec::new(), Vec::new());
        for t in list.iter().rev().filter(told_by) {
            match &own {
                Some(o) if !Arc::ptr_eq(o, &t.origin) => others.push(name(t)),
                _ => mine.push(name(t)),
            }
        }
        (mine, others)
    }
}

/// The stage (see the module documentation).
#[derive(Default)]
pub(crate) struct NamingStage {
    names: Names,
}

impl NamingStage {
    pub(crate) fn new() -> Self {
        Self::default()
    }
}

impl Stage for NamingStage {
    fn apply(&mut self, event: &mut Event) {
        let at = event.time;
        let Some(a) = event.activity_mut() else {
            return;
        };
        if !a.action.is_network() {
            return;
        }
        let scope = scope_of(a);
        let Target::Inet(ip, port) = a.resource.target else {
            return;
        };
        if let Detail::Dns(d) = &a.resource.detail {
            let receipt = Receipt {
                resolver: SocketAddr::new(ip, port),
                asked: at,
                pid: a.process.pid,
            };
            learn(&mut self.names, &scope, d, &receipt);
        }
        let (dns_names, other_names) = if a.action == Action::Dns {
            (Vec::new(), Vec::new())
        } else {
            self.names.of(&scope, ip, at, a.process.pid)
        };
        let opaque = opaque(a, port);
        let Some(dest) = a.resource.destination.as_deref_mut() else {
            return;
        };
        dest.conflict = conflict(&dest.hosts, &dns_names, &other_names);
        dest.hosts.extend(dns_names);
        dest.other_hosts = other_names;
        dest.opaque = opaque;
    }
}

/// Learns the names a solicited answer gave: the chain from the name asked for through its
/// CNAMEs, for every address at its end.
/// Who asked a lookup, of which resolver, when.
struct Receipt {
    resolver: SocketAddr,
    asked: Timestamp,
    pid: u32,
}

fn learn(names: &mut Names, scope: &Scope, d: &DnsLookup, from: &Receipt) {
    let (Some(q), Some(r)) = (&d.question, &d.response) else {
        return;
    };
    if d.unsolicited || r.rcode != 0 {
        return;
    }
    let chain = chain(&q.name, &r.answers);
    for rec in &r.answers {
        let ip = match rec.data {
            RData::A(ip) => IpAddr::V4(ip),
            RData::Aaaa(ip) => IpAddr::V6(ip),
            _ => continue,
        };
        if !chain.iter().any(|n| **n == *rec.name) {
            continue;
        }
        let origin = Arc::new(DnsOrigin {
            query: Arc::clone(&q.name),
            resolver: from.resolver,
            resolver_pid: r.resolver_pid,
            answered: from.asked + r.after,
            ttl: rec.ttl,
        });
        let expires = origin.answered + jiff::SignedDuration::from_secs(i64::from(rec.ttl));
        // The canonical names last, so the name asked for is the most recent (listed first).
        for name in chain.iter().rev() {
            names.learn(
                scope,
                ip,
                Told {
                    name: Arc::clone(name),
                    origin: Arc::clone(&origin),
                    expires,
                    pid: from.pid,
                },
            );
        }
    }
}

/// The name asked for and every CNAME target reached from it, in order.
fn chain(qname: &Arc<str>, answers: &[Record]) -> Vec<Arc<str>> {
    let mut chain = vec![Arc::clone(qname)];
    while chain.len() <= MAX_CHAIN {
        let current = chain.last().map(Arc::clone).unwrap_or_default();
        let next = answers.iter().find_map(|r| match &r.data {
            RData::Cname(target) if r.name == current && !chain.contains(target) => {
                Some(Arc::clone(target))
            }
            _ => None,
        });
        match next {
            Some(n) => chain.push(n),
            None => break,
        }
    }
    chain
}

/// Whether the connection asked for a name DNS never gave its address: a TLS server name or
/// HTTP Host that is none of the DNS names the agent was told for it (when DNS named it at
/// all); behind a proxy, a server name other than the CONNECT target.
fn conflict(own: &[HostName], dns: &[HostName], other: &[HostName]) -> bool {
    let tunnel = own.iter().find(|h| h.source == HostSource::HttpConnect);
    let told = || dns.iter().chain(other);
    own.iter()
        .filter(|h| matches!(h.source, HostSource::TlsSni | HostSource::HttpHost))
        .any(|h| match tunnel {
            Some(t) => t.name != h.name,
            None => told().next().is_some() && !told().any(|d| d.name == h.name),
        })
}

/// What the connection hides from the trail, as far as its first bytes tell.
fn opaque(a: &Activity, port: u16) -> Option<Opaque> {
    match &a.resource.detail {
        Detail::Tls(h) if h.ech => Some(Opaque::EncryptedClientHello),
        Detail::Tls(h) if h.sni.as_deref().is_some_and(|s| DOH_HOSTS.contains(&s)) => {
            Some(Opaque::DnsOverHttps)
        }
        Detail::Tls(_) if port == DOT_PORT => Some(Opaque::DnsOverTls),
        Detail::Http(x) if x.request.target.starts_with(b"/dns-query") => {
            Some(Opaque::DnsOverHttps)
        }
        _ => a.resource.destination.as_deref().and_then(|d| d.opaque),
    }
}

#[cfg(test)]
mod tests;
