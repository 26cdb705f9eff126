//! Requirements checked before anything is loaded, each with one actionable message.

use anyhow::bail;

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Effective capabilities of this process (`CapEff` in /proc/self/status).
pub(crate) fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// Loading tracing programs needs CAP_BPF + CAP_PERFMON (or CAP_SYS_ADMIN on older kernels).
pub(crate) fn check_privileges() -> anyhow::Result<()> {
    check_caps(effective_caps())
}

fn check_caps(caps: u64) -> anyhow::Result<()> {
    let has = |c: u32| caps & (1 << c) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return Ok(());
    }
    let mut missing = Vec::new();
    if !has(CAP_BPF) {
        missing.push("CAP_BPF");
    }
    if !has(CAP_PERFMON) {
        missing.push("CAP_PERFMON");
    }
    bail!(
        "missing privileges: audit-agent needs CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN) to load \
         its kernel programs; this process lacks {} (effective caps {caps:#x}). Run it as root, \
         or grant the capabilities (see docs/deployment.md)",
        missing.join(" and ")
    )
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK. Raising it needs CAP_SYS_RESOURCE;
/// without it, newer kernels work anyway, so failure is only logged.
pub(crate) fn raise_memlock_limit() {
    let lim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid pointer to an initialized rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) } != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "could not raise RLIMIT_MEMLOCK; fine on Linux >= 5.11 (memcg accounting)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_or_bpf_plus_perfmon_is_enough() {
        assert!(check_caps(1 << CAP_SYS_ADMIN).is_ok());
        assert!(check_caps((1 << CAP_BPF) | (1 << CAP_PERFMON)).is_ok());
    }

    #[test]
    fn missing_capabilities_are_named() {
        let e = check_caps(1 << CAP_BPF).unwrap_err().to_string();
        assert!(e.contains("lacks CAP_PERFMON"), "{e}");
        let e = check_caps(0).unwrap_err().to_string();
        assert!(e.contains("lacks CAP_BPF and CAP_PERFMON"), "{e}");
        assert!(e.contains("Run it as root"), "{e}");
    }
}
