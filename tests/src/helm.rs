//! The real `helm` (and `kubectl`) binaries the deployment tests run, unpacked by `cargo xtask
//! setup --test` into the directory `AUDIT_TEST_TOOLS` names.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// A tool from `AUDIT_TEST_TOOLS` (set by `cargo xtask test`).
pub fn tool(name: &str) -> PathBuf {
    let dir = std::env::var_os("AUDIT_TEST_TOOLS").unwrap_or_else(|| {
        std::env::var_os("HOME")
            .map(|h| {
                Path::new(&h)
                    .join(".cache/audit-agent/tools")
                    .into_os_string()
            })
            .unwrap_or_default()
    });
    let p = Path::new(&dir).join(name);
    assert!(
        p.exists(),
        "{} does not exist: `cargo xtask setup --test` installs {name}",
        p.display()
    );
    p
}

/// `helm template RELEASE CHART --namespace NS [--set K=V ...]`: the rendered manifests.
pub fn helm_template(chart: &Path, release: &str, namespace: &str, sets: &[&str]) -> String {
    let mut cmd = Command::new(tool("helm"));
    cmd.arg("template")
        .arg(release)
        .arg(chart)
        .args(["--namespace", namespace]);
    for s in sets {
        cmd.args(["--set", s]);
    }
    let out = cmd.output().expect("run helm");
    assert!(
        out.status.success(),
        "helm template failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 manifests")
}

/// `kubectl kustomize DIR`: the kustomization's rendered objects.
pub fn kustomize(dir: &Path) -> String {
    let out = Command::new(tool("kubectl"))
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("run kubectl");
    assert!(
        out.status.success(),
        "kubectl kustomize failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 manifests")
}
