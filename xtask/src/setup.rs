//! Idempotent installation of build, test and benchmark prerequisites. Each step first checks
//! whether the tool is already there (and the right version), so a second run takes a second.

use std::process::Command;

use anyhow::{Context as _, bail};

use crate::run;

pub const BPF_LINKER_VERSION: &str = "0.10.4";
pub const GARAGE_VERSION: &str = "2.5.0";
pub const KUBERNETES_VALIDATE_VERSION: &str = "1.37.0";
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
/// Kubernetes schema validation of deploy/) and systemd-analyze (the systemd unit).
pub fn test_tools() -> anyhow::Result<()> {
    cargo_install("garage", GARAGE_VERSION, &["--version"])?;
    apt_install(&[("systemd-analyze", "systemd")])?;
    pip_install(
        "kubernetes-validate",
        KUBERNETES_VALIDATE_VERSION,
        "kubernetes-validate",
    )
}

/// bpftrace and auditd (peers), bpftool (program statistics), and DuckDB (query peer).
pub fn bench_tools() -> anyhow::Result<()> {
    apt_install(&[
        ("bpftrace", "bpftrace"),
        ("auditctl", "auditd"),
        ("bpftool", "bpftool"),
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
