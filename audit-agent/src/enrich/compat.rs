//! 32-bit system calls: the record of an ia32 call becomes the record of the action it performs
//! (an `open` is a `file.open`, an `unlinkat` a `file.delete`, ...), built by the same code as the
//! 64-bit calls; a call with no such action stays `process.compat_syscall`. The ia32 number and
//! arguments stay on the record (`Resource::ia32`), and `syscall` names it (`ia32:open`).

use audit_common::event::Syscall;

use crate::decode::{Body, FileChange as Change, KernelEvent};

const AT_FDCWD: i32 = -100;
const O_WRONLY_CREAT_TRUNC: u64 = 0o1101;
/// socketcall(2) calls.
const SYS_CONNECT: u64 = 3;
const SYS_SENDTO: u64 = 11;
const SYS_SENDMSG: u64 = 16;

/// The body of the 64-bit call a 32-bit one stands for, when there is one (else unchanged).
pub(super) fn equivalent(mut ev: KernelEvent) -> KernelEvent {
    let Body::Compat {
        nr,
        args,
        kernel,
        cookie,
        sections,
    } = &ev.body
    else {
        return ev;
    };
    let fd = |i: usize| args[i] as u32 as i32;
    let sections = sections.clone();
    let open = |syscall, dirfd, flags, mode: u64| Body::Open {
        syscall,
        dirfd,
        flags,
        mode: mode as u32,
        resolve: 0,
        sections: sections.clone(),
    };
    let net = |syscall, fd| Body::Connect {
        syscall,
        fd,
        sk: 0,
        passed: None,
        kernel: *kernel,
        cookie: *cookie,
        sections: sections.clone(),
    };
    let access = |syscall, target_pid: u64, request, addr| Body::Access {
        syscall,
        target_pid: target_pid as u32,
        pid_from_kernel: false,
        caller_ns_level: 0,
        target_fd: -1,
        request,
        addr,
        sections: sections.clone(),
    };
    ev.body = match (*nr, args[0]) {
        (5, _) => open(Syscall::Open, AT_FDCWD, args[1], args[2]),
        (8, _) => open(Syscall::Creat, AT_FDCWD, O_WRONLY_CREAT_TRUNC, args[1]),
        (295, _) => open(Syscall::Openat, fd(0), args[2], args[3]),
        (362, _) => net(Syscall::Connect, fd(0)),
        (369, _) if kernel.is_some() => net(Syscall::Sendto, fd(0)),
        (370, _) if kernel.is_some() => net(Syscall::Sendmsg, fd(0)),
        // socketcall(call, args): the arguments are in the caller's memory; the destination is
        // the kernel's copy.
        (102, SYS_CONNECT) => net(Syscall::Connect, -1),
        (102, SYS_SENDTO) if kernel.is_some() => net(Syscall::Sendto, -1),
        (102, SYS_SENDMSG) if kernel.is_some() => net(Syscall::Sendmsg, -1),
        (26, _) => access(Syscall::Ptrace, args[1], args[0], args[2]),
        (347, _) => access(Syscall::ProcessVmReadv, args[0], 0, 0),
        (348, _) => access(Syscall::ProcessVmWritev, args[0], 0, 0),
        (nr, _) => match file_change(nr, args) {
            Some(change) => Body::File { change, sections },
            None => return ev,
        },
    };
    ev
}

/// The file change ia32 call `nr` makes (arguments as in `audit-ebpf/src/compat.rs`).
#[rustfmt::skip]
fn file_change(nr: u32, a: &[u64; 6]) -> Option<Change> {
    use Syscall as S;
    let int = |i: usize| a[i] as u32 as i32;
    let word = |i: usize| a[i] as u32;
    // Legacy 16-bit ids: 0xffff leaves the id unchanged, like -1.
    let id16 = |i: usize| match a[i] as u16 {
        u16::MAX => u32::MAX,
        v => u32::from(v),
    };
    let split64 = |lo: usize| a[lo] | (a[lo + 1] << 32);
    let base = |syscall| Change {
        syscall,
        dirfd: AT_FDCWD,
        dirfd2: AT_FDCWD,
        fd: -1,
        mode: 0,
        uid: u32::MAX,
        gid: u32::MAX,
        flags: 0,
        length: 0,
    };
    Some(match nr {
        10 => base(S::Unlink),
        301 => Change { dirfd: int(0), flags: word(2), ..base(S::Unlinkat) },
        40 => base(S::Rmdir),
        38 => base(S::Rename),
        302 => Change { dirfd: int(0), dirfd2: int(2), ..base(S::Renameat) },
        353 => Change { dirfd: int(0), dirfd2: int(2), flags: word(4), ..base(S::Renameat2) },
        92 => Change { length: u64::from(word(1)), ..base(S::Truncate) },
        193 => Change { length: split64(1), ..base(S::Truncate) },
        93 => Change { fd: int(0), length: u64::from(word(1)), ..base(S::Ftruncate) },
        194 => Change { fd: int(0), length: split64(1), ..base(S::Ftruncate) },
        15 => Change { mode: word(1), ..base(S::Chmod) },
        94 => Change { fd: int(0), mode: word(1), ..base(S::Fchmod) },
        306 => Change { dirfd: int(0), mode: word(2), ..base(S::Fchmodat) },
        452 => Change { dirfd: int(0), mode: word(2), flags: word(3), ..base(S::Fchmodat2) },
        182 => Change { uid: id16(1), gid: id16(2), ..base(S::Chown) },
        16 => Change { uid: id16(1), gid: id16(2), ..base(S::Lchown) },
        95 => Change { fd: int(0), uid: id16(1), gid: id16(2), ..base(S::Fchown) },
        212 => Change { uid: word(1), gid: word(2), ..base(S::Chown) },
        198 => Change { uid: word(1), gid: word(2), ..base(S::Lchown) },
        207 => Change { fd: int(0), uid: word(1), gid: word(2), ..base(S::Fchown) },
        298 => Change {
            dirfd: int(0),
            uid: word(2),
            gid: word(3),
            flags: word(4),
            ..base(S::Fchownat)
        },
        9 => base(S::Link),
        303 => Change { dirfd: int(0), dirfd2: int(2), flags: word(4), ..base(S::Linkat) },
        83 => base(S::Symlink),
        304 => Change { dirfd: int(1), ..base(S::Symlinkat) },
        39 => Change { mode: word(1), ..base(S::Mkdir) },
        296 => Change { dirfd: int(0), mode: word(2), ..base(S::Mkdirat) },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_16_bit_owner_ids_of_0xffff_mean_unchanged() {
        let c = file_change(182, &[0, 0xffff, 1000, 0, 0, 0]).unwrap();
        assert_eq!((c.syscall, c.uid, c.gid), (Syscall::Chown, u32::MAX, 1000));
        let c = file_change(212, &[0, 0xffff, 0xffff_ffff, 0, 0, 0]).unwrap();
        assert_eq!(
            (c.uid, c.gid),
            (0xffff, u32::MAX),
            "32-bit ids are taken whole"
        );
    }

    #[test]
    fn a_64_bit_length_split_over_two_registers_is_joined() {
        let c = file_change(194, &[3, 0x10, 0x2, 0, 0, 0]).unwrap();
        assert_eq!(
            (c.syscall, c.fd, c.length),
            (Syscall::Ftruncate, 3, 0x2_0000_0010)
        );
    }

    #[test]
    fn dirfds_and_flags_come_from_their_registers() {
        let c = file_change(353, &[0xffff_ff9c, 0, 7, 0, 2, 0]).unwrap();
        assert_eq!((c.dirfd, c.dirfd2, c.flags), (AT_FDCWD, 7, 2));
        assert!(file_change(20, &[0; 6]).is_none(), "getpid changes no file");
    }
}
