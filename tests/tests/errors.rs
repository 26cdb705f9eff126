//! Bad environments get one clear, actionable error. Each case is made real in a private mount
//! namespace (unshare -m) or with dropped privileges (setpriv), so nothing else is disturbed.

use std::process::Command;

use audit_tests::*;

/// Runs `sh -c SCRIPT` in a private mount namespace with `$AGENT` set; returns (success, stderr).
fn in_mount_ns(script: &str) -> (bool, String) {
    require_root();
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", script])
        .env("AGENT", agent_bin())
        .output()
        .expect("unshare");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn without_privileges_the_missing_capabilities_are_named() {
    require_root();
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(agent_bin())
        .args(["watch", "--all"])
        .output()
        .expect("setpriv");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("missing privileges")
            && err.contains("lacks CAP_BPF and CAP_PERFMON")
            && err.contains("Run it as root"),
        "{err}"
    );
}

#[test]
fn unmounted_tracefs_is_mounted_by_the_agent() {
    let (ok, err) = in_mount_ns(
        "umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug/tracing 2>/dev/null; \
         test -d /sys/kernel/tracing/events && exit 3; \
         \"$AGENT\" watch --all --format json >/dev/null 2>/tmp/agent-tracefs.$$ & \
         for _ in $(seq 600); do grep -q ready /tmp/agent-tracefs.$$ && break; sleep 0.2; done; \
         kill -INT $!; wait $!; cat /tmp/agent-tracefs.$$ >&2; rm -f /tmp/agent-tracefs.$$; \
         test -d /sys/kernel/tracing/events",
    );
    assert!(ok, "agent should mount tracefs and run; stderr:\n{err}");
    assert!(err.contains("ready"), "{err}");
}

#[test]
fn tracefs_that_cannot_be_mounted_is_a_clear_error() {
    let (ok, err) = in_mount_ns(
        "umount /sys/kernel/tracing 2>/dev/null; umount /sys/kernel/debug/tracing 2>/dev/null; \
         setpriv --inh-caps=-sys_admin --bounding-set=-sys_admin \"$AGENT\" watch --all",
    );
    assert!(!ok);
    assert!(
        err.contains("tracefs is not mounted and mounting it at /sys/kernel/tracing failed")
            && err.contains("mount -t tracefs nodev /sys/kernel/tracing"),
        "{err}"
    );
}

#[test]
fn kernel_without_btf_is_a_clear_error() {
    let (ok, err) = in_mount_ns("mount -t tmpfs none /sys/kernel/btf && \"$AGENT\" watch --all");
    assert!(!ok);
    assert!(
        err.contains("kernel BTF is not available at /sys/kernel/btf/vmlinux")
            && err.contains("CONFIG_DEBUG_INFO_BTF=y"),
        "{err}"
    );
}

#[test]
fn kernel_without_syscall_tracepoints_is_a_clear_error() {
    // A tracefs-like directory without the syscall events stands in for a kernel built without
    // CONFIG_FTRACE_SYSCALLS.
    let (ok, err) = in_mount_ns(
        "mount -t tmpfs none /sys/kernel/tracing && mkdir -p /sys/kernel/tracing/events/sched && \
         \"$AGENT\" watch --all",
    );
    assert!(!ok);
    assert!(
        err.contains("tracepoint syscalls:sys_enter_execve is not available on this kernel")
            && err.contains("CONFIG_FTRACE_SYSCALLS"),
        "{err}"
    );
}

#[test]
fn malformed_ring_buffer_size_is_rejected_before_loading() {
    let out = Command::new(agent_bin())
        .args(["watch", "--all", "--ring-buffer-bytes", "1000"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be a power of two"));
}
