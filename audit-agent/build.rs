//! Builds the eBPF programs (`audit-ebpf`) from source with the nightly toolchain and bpf-linker
//! on every build, so the object embedded in `audit-agent` always matches the sources.
//! Set `AYA_BUILD_SKIP=1` for metadata-only runs (clippy, docs) that do not need the object.

use anyhow::{Context as _, anyhow};

fn main() -> anyhow::Result<()> {
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR")?;
    let ebpf_dir = std::path::Path::new(&manifest_dir)
        .parent()
        .ok_or_else(|| anyhow!("no workspace root above {manifest_dir}"))?
        .join("audit-ebpf");
    // The shared types are part of the programs too.
    let common_dir = ebpf_dir.with_file_name("audit-common");
    println!("cargo:rerun-if-changed={}", common_dir.display());
    let root = ebpf_dir
        .to_str()
        .ok_or_else(|| anyhow!("non-UTF-8 path {}", ebpf_dir.display()))?;
    // The toolchain for the eBPF crate: `nightly` unless AUDIT_EBPF_TOOLCHAIN names a pinned one
    // (the container build uses nightly-2026-05-19).
    println!("cargo:rerun-if-env-changed=AUDIT_EBPF_TOOLCHAIN");
    let toolchain = std::env::var("AUDIT_EBPF_TOOLCHAIN").ok();
    aya_build::build_ebpf(
        [aya_build::Package {
            name: "audit-ebpf",
            root_dir: root,
            ..Default::default()
        }],
        match toolchain.as_deref() {
            Some(t) if !t.is_empty() => aya_build::Toolchain::Custom(t),
            _ => aya_build::Toolchain::default(),
        },
    )
    .context(
        "building the eBPF programs failed; `cargo xtask setup` installs what they need \
         (nightly rust-src, bpf-linker 0.10.4)",
    )?;
    // With AYA_BUILD_SKIP the object is not built: leave an empty placeholder so
    // `include_bytes_aligned!` still compiles (loading it fails with a clear error).
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    for name in ["audit", "floor"] {
        let out = out_dir.join(name);
        if !out.exists() {
            std::fs::write(&out, [])?;
        } else {
            strip_dwarf(&out)?;
        }
    }
    Ok(())
}

/// Rewrites the eBPF object at `path` without its DWARF sections (`.debug_*` and their
/// relocations). bpf-linker needs the DWARF to write the BTF the loader uses (`.BTF`,
/// `.BTF.ext`, kept); the loader never reads the DWARF, which was four fifths of the object
/// (8 of 10 MB) embedded in the binary and paged in when the object is parsed.
fn strip_dwarf(path: &std::path::Path) -> anyhow::Result<()> {
    let data = std::fs::read(path)?;
    if data.is_empty() {
        return Ok(());
    }
    let mut elf = object::build::elf::Builder::read(&*data)
        .with_context(|| format!("reading the eBPF object {}", path.display()))?;
    let is_dwarf = |name: &[u8]| name.starts_with(b".debug_") || name.starts_with(b".rel.debug_");
    let mut dropped = Vec::new();
    for section in elf.sections.iter_mut() {
        if is_dwarf(section.name.as_slice()) {
            section.delete = true;
            dropped.push(section.id());
        }
    }
    for symbol in elf.symbols.iter_mut() {
        if symbol.section.is_some_and(|s| dropped.contains(&s)) {
            symbol.delete = true;
        }
    }
    // bpf-linker's objects name their sections from the symbol string table (`.strtab`); the
    // writer wants a section-name table of its own.
    if !elf
        .sections
        .iter()
        .any(|s| matches!(s.data, object::build::elf::SectionData::SectionString))
    {
        let names = elf.sections.add();
        names.name = b".shstrtab".to_vec().into();
        names.sh_type = object::elf::SHT_STRTAB;
        names.sh_addralign = 1;
        names.data = object::build::elf::SectionData::SectionString;
    }
    let mut out = Vec::new();
    elf.write(&mut out)
        .with_context(|| format!("writing the eBPF object {} without DWARF", path.display()))?;
    std::fs::write(path, out)?;
    Ok(())
}
