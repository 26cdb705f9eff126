//! Facts about the host the agent runs on.

/// Host name and boot id, read once at start.
#[derive(Debug, Clone)]
pub(crate) struct HostInfo {
    pub(crate) name: String,
    /// `/proc/sys/kernel/random/boot_id` (a UUID): distinguishes boots of the same host.
    pub(crate) boot_id: String,
}

impl HostInfo {
    /// The node's name: `$AUDIT_AGENT_HOSTNAME`, else `$NODE_NAME` (a Kubernetes pod's own host
    /// name is the pod's), else the kernel's host name.
    pub(crate) fn read() -> Self {
        let from_env = ["AUDIT_AGENT_HOSTNAME", "NODE_NAME"]
            .iter()
            .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()));
        let name = from_env
            .map(Ok)
            .unwrap_or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname"))
            .map(|s| s.trim().to_string())
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "unknown-host".into());
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "00000000-0000-0000-0000-000000000000".into());
        Self { name, boot_id }
    }

    /// First 8 hex digits of the boot id, for compact ids.
    pub(crate) fn boot_short(&self) -> String {
        self.boot_id.chars().filter(|c| *c != '-').take(8).collect()
    }
}
