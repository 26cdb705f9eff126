//! Container and pod identity from a cgroup path, for the layouts of docker, containerd, cri-o
//! and podman, under both the systemd and the cgroupfs cgroup drivers of Kubernetes.

/// What a cgroup path says about containers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CgroupIdentity {
    /// Full 64-hex container id.
    pub(crate) container_id: Option<String>,
    /// `docker`, `containerd`, `crio`, `podman`, or `None` when the layout does not say.
    pub(crate) runtime: Option<&'static str>,
    /// Kubernetes pod UID (dashed form), for kubepods layouts.
    pub(crate) pod_uid: Option<String>,
    /// Kubernetes QoS class: `guaranteed`, `burstable` or `besteffort`.
    pub(crate) qos: Option<&'static str>,
}

fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parses a cgroup path (relative to the cgroup2 mount).
pub(crate) fn parse(path: &str) -> CgroupIdentity {
    let mut out = CgroupIdentity::default();
    for comp in path.split('/').filter(|c| !c.is_empty()) {
        // kubepods QoS and pod UID (both drivers).
        if comp.starts_with("kubepods") {
            let flat = comp.trim_end_matches(".slice");
            if flat.contains("burstable") {
                out.qos = Some("burstable");
            } else if flat.contains("besteffort") {
                out.qos = Some("besteffort");
            } else if out.qos.is_none() {
                out.qos = Some("guaranteed");
            }
            if let Some(pos) = flat.rfind("-pod") {
                out.pod_uid = Some(flat[pos + 4..].replace('_', "-"));
            }
            continue;
        }
        // cgroupfs driver: /kubepods/<qos>/pod<uid>/<id>
        if out.qos.is_some() && out.pod_uid.is_none() {
            match comp {
                "burstable" => out.qos = Some("burstable"),
                "besteffort" => out.qos = Some("besteffort"),
                _ => {}
            }
        }
        if let Some(uid) = comp.strip_prefix("pod")
            && uid.len() >= 32
        {
            out.pod_uid = Some(uid.replace('_', "-"));
            continue;
        }
        // systemd scopes: <runtime>-<id>.scope
        if let Some(scope) = comp.strip_suffix(".scope") {
            for (prefix, runtime) in [
                ("cri-containerd-", "containerd"),
                ("crio-", "crio"),
                ("docker-", "docker"),
                ("libpod-", "podman"),
            ] {
                if let Some(id) = scope.strip_prefix(prefix)
                    && is_id(id)
                {
                    out.container_id = Some(id.to_string());
                    out.runtime = Some(runtime);
                }
            }
            continue;
        }
        // cgroupfs driver: the bare id, under /docker/ or a kubepods pod.
        if is_id(comp) {
            out.container_id = Some(comp.to_string());
            if path.starts_with("/docker/") {
                out.runtime = Some("docker");
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    // Real-world layouts (ids shortened to one repeated value).
    #[test]
    fn kubepods_systemd_driver_containerd() {
        let p = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod3f2a9c1e_1b2c_4d5e_8f90_0a1b2c3d4e5f.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(
            parse(&p),
            CgroupIdentity {
                container_id: Some(ID.into()),
                runtime: Some("containerd"),
                pod_uid: Some("3f2a9c1e-1b2c-4d5e-8f90-0a1b2c3d4e5f".into()),
                qos: Some("burstable"),
            }
        );
    }

    #[test]
    fn kubepods_systemd_driver_crio_guaranteed() {
        let p = format!(
            "/kubepods.slice/kubepods-pod11111111_2222_3333_4444_555555555555.slice/crio-{ID}.scope"
        );
        let c = parse(&p);
        assert_eq!(c.runtime, Some("crio"));
        assert_eq!(c.qos, Some("guaranteed"));
        assert_eq!(
            c.pod_uid.as_deref(),
            Some("11111111-2222-3333-4444-555555555555")
        );
        assert_eq!(c.container_id.as_deref(), Some(ID));
    }

    #[test]
    fn kubepods_cgroupfs_driver() {
        let p = format!("/kubepods/besteffort/pod8a7b6c5d-1111-2222-3333-444455556666/{ID}");
        let c = parse(&p);
        assert_eq!(c.qos, Some("besteffort"));
        assert_eq!(
            c.pod_uid.as_deref(),
            Some("8a7b6c5d-1111-2222-3333-444455556666")
        );
        assert_eq!(c.container_id.as_deref(), Some(ID));
        assert_eq!(c.runtime, None);
    }

    #[test]
    fn docker_both_drivers_and_podman() {
        assert_eq!(
            parse(&format!("/system.slice/docker-{ID}.scope")).runtime,
            Some("docker")
        );
        let c = parse(&format!("/docker/{ID}"));
        assert_eq!(
            (c.runtime, c.container_id.as_deref()),
            (Some("docker"), Some(ID))
        );
        assert_eq!(
            parse(&format!("/machine.slice/libpod-{ID}.scope/container")).runtime,
            Some("podman")
        );
    }

    #[test]
    fn plain_cgroups_have_no_container() {
        assert_eq!(
            parse("/user.slice/user-1000.slice/session-2.scope"),
            CgroupIdentity::default()
        );
        assert_eq!(parse("/agents/support/worker-1"), CgroupIdentity::default());
        assert_eq!(parse("/system.slice/docker-short.scope").container_id, None);
    }
}
