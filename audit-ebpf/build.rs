use which::which;

/// The eBPF crate links with `bpf-linker`, which cargo does not know about. Rebuild whenever the
/// linker binary changes so a new linker never leaves a stale object behind.
fn main() {
    match which("bpf-linker") {
        Ok(path) => println!("cargo:rerun-if-changed={}", path.display()),
        Err(_) => println!(
            "cargo:warning=bpf-linker not found on PATH; run `cargo xtask setup` \
             (installs bpf-linker 0.10.4)"
        ),
    }
}
