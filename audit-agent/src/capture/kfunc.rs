//! Kernel functions (kfuncs) the programs call, which aya-ebpf cannot emit: a kfunc call names the
//! function by its id in the running kernel's BTF, known only here. The programs call a marker
//! number instead ([`RDONLY_CAST_MARKER`]); before the object is loaded each such call is
//! rewritten into the kfunc call (`src_reg` `BPF_PSEUDO_KFUNC_CALL`, `imm` the id). One kfunc so
//! far: `bpf_rdonly_cast` (Linux 6.2), which lets the path walks read the kernel's dentries,
//! mounts, files and inodes with plain loads instead of a helper call per field
//! (`audit-ebpf/src/offsets.rs`, `tread`).
//!
//! Without the kfunc the object is loaded as built, with [`KernelTypes::NONE`]: the programs then
//! take their helper-read branch, the marker calls are never reached, and the verifier drops them
//! as dead code.

use anyhow::{Context, bail};
use audit_common::offsets::{KernelTypes, RDONLY_CAST_MARKER};
use object::{Object, ObjectSection, SectionFlags, elf::SHF_EXECINSTR};

use super::btf::Btf;

/// `BPF_JMP | BPF_CALL`.
const CALL: u8 = 0x85;
/// `src_reg` of a call of a kernel function named by its BTF id.
const PSEUDO_KFUNC_CALL: u8 = 2;

/// The structs the programs cast to, and the kfunc's id; `None` when this kernel lacks any.
pub(crate) fn rdonly_cast(btf: &Btf) -> Option<(u32, KernelTypes)> {
    let kfunc = btf.function_id("bpf_rdonly_cast")?;
    let types = KernelTypes {
        dentry: btf.struct_id("dentry")?,
        mount: btf.struct_id("mount")?,
        file: btf.struct_id("file")?,
        inode: btf.struct_id("inode")?,
        super_block: btf.struct_id("super_block")?,
        mnt_namespace: btf.struct_id("mnt_namespace")?,
    };
    Some((kfunc, types))
}

/// `object` with every call of [`RDONLY_CAST_MARKER`] in its program sections made a call of the
/// kernel function of BTF id `kfunc`, and how many there were.
pub(crate) fn patch_rdonly_cast(object: &[u8], kfunc: u32) -> anyhow::Result<(Vec<u8>, usize)> {
    let elf = object::File::parse(object).context("the eBPF object is not an ELF file")?;
    let mut out = object.to_vec();
    let mut patched = 0;
    for section in elf.sections() {
        let SectionFlags::Elf { sh_flags } = section.flags() else {
            continue;
        };
        let Some((start, len)) = section.file_range() else {
            continue;
        };
        if sh_flags & u64::from(SHF_EXECINSTR) == 0 {
            continue;
        }
        let (start, len) = (usize::try_from(start)?, usize::try_from(len)?);
        let Some(code) = out.get_mut(start..start + len) else {
            bail!(
                "eBPF object: section {:?} lies outside the file",
                section.name()
            );
        };
        for insn in code.chunks_exact_mut(8) {
            if is_marker_call(insn) {
                insn[1] = PSEUDO_KFUNC_CALL << 4;
                insn[2..4].copy_from_slice(&0u16.to_le_bytes());
                insn[4..8].copy_from_slice(&kfunc.to_le_bytes());
                patched += 1;
            }
        }
    }
    Ok((out, patched))
}

/// A helper call (`src_reg` 0) of the marker number.
fn is_marker_call(insn: &[u8]) -> bool {
    insn[0] == CALL && insn[1] >> 4 == 0 && insn[4..8] == RDONLY_CAST_MARKER.to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn insn(code: u8, regs: u8, imm: u32) -> [u8; 8] {
        let mut i = [code, regs, 0, 0, 0, 0, 0, 0];
        i[4..].copy_from_slice(&imm.to_le_bytes());
        i
    }

    #[test]
    fn only_helper_calls_of_the_marker_are_marker_calls() {
        assert!(is_marker_call(&insn(CALL, 0, RDONLY_CAST_MARKER)));
        // A helper call of another number, a bpf-to-bpf call (src_reg 1) and a move of the
        // number are left alone.
        assert!(!is_marker_call(&insn(CALL, 0, 113)));
        assert!(!is_marker_call(&insn(CALL, 1 << 4, RDONLY_CAST_MARKER)));
        assert!(!is_marker_call(&insn(0xb7, 0, RDONLY_CAST_MARKER)));
    }

    #[test]
    fn the_built_programs_call_the_marker_and_it_becomes_the_kfunc() {
        let object = super::super::EBPF_OBJECT;
        if object.is_empty() {
            return; // built with AYA_BUILD_SKIP
        }
        let (patched, n) = patch_rdonly_cast(object, 4242).unwrap();
        assert!(n > 0, "the path walks cast their objects");
        assert_eq!(patched.len(), object.len());
        let kfunc_call = insn(CALL, PSEUDO_KFUNC_CALL << 4, 4242);
        let found = patched.chunks(8).filter(|i| *i == kfunc_call).count();
        assert!(found >= n, "{found} kfunc calls for {n} markers");
        let (_, again) = patch_rdonly_cast(&patched, 4242).unwrap();
        assert_eq!(again, 0, "no marker call is left");
    }

    #[test]
    fn the_running_kernel_has_the_kfunc_and_the_structs() {
        let btf = Btf::from_sys_fs().unwrap();
        let (kfunc, types) = rdonly_cast(&btf).expect("Linux 6.2 or later");
        assert!(kfunc > 0);
        assert_ne!(types.dentry, types.mount);
    }
}
