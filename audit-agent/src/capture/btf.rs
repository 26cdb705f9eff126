//! A minimal reader for kernel BTF (`/sys/kernel/btf/vmlinux`): just enough to find the byte
//! offset of a struct member, so kernel programs can read `task_struct` fields without CO-RE.

use std::path::Path;

use thiserror::Error;

pub(crate) const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

#[derive(Debug, Error)]
pub(crate) enum BtfError {
    #[error(
        "kernel BTF is not available at {path}; audit-agent needs a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y (most distribution kernels since 2020 are)"
    )]
    Unavailable {
        path: String,
        source: std::io::Error,
    },
    #[error("kernel BTF at {0} is malformed: {1}")]
    Malformed(String, &'static str),
    #[error("kernel BTF has no struct `{0}`")]
    NoStruct(String),
    #[error("kernel BTF: struct `{0}` has no member `{1}`")]
    NoMember(String, String),
}

const KIND_INT: u32 = 1;
const KIND_ARRAY: u32 = 3;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_ENUM: u32 = 6;
const KIND_FUNC: u32 = 12;
const KIND_FUNC_PROTO: u32 = 13;
const KIND_VAR: u32 = 14;
const KIND_DATASEC: u32 = 15;
const KIND_DECL_TAG: u32 = 17;
const KIND_ENUM64: u32 = 19;

#[derive(Debug, Clone)]
struct Member {
    name_off: u32,
    type_id: u32,
    /// Offset in bits from the start of the struct.
    bit_offset: u32,
}

#[derive(Debug, Clone)]
struct Type {
    name_off: u32,
    kind: u32,
    /// The referenced type of typedefs, qualifiers and pointers (the `size_or_type` field).
    ref_type: u32,
    members: Vec<Member>,
}

const KIND_TYPEDEF: u32 = 8;
const KIND_VOLATILE: u32 = 9;
const KIND_CONST: u32 = 10;
const KIND_RESTRICT: u32 = 11;
const KIND_TYPE_TAG: u32 = 18;

/// Parsed kernel BTF (types with members only; enough for offsets).
pub(crate) struct Btf {
    strings: Vec<u8>,
    /// Index = type id (id 0 is `void`).
    types: Vec<Type>,
}

impl Btf {
    /// Reads the running kernel's BTF.
    pub(crate) fn from_sys_fs() -> Result<Self, BtfError> {
        Self::from_file(Path::new(VMLINUX))
    }

    pub(crate) fn from_file(path: &Path) -> Result<Self, BtfError> {
        let data = std::fs::read(path).map_err(|source| BtfError::Unavailable {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&data, &path.display().to_string())
    }

    pub(crate) fn parse(data: &[u8], source: &str) -> Result<Self, BtfError> {
        let bad = |why| BtfError::Malformed(source.to_string(), why);
        let u16_at = |o: usize| -> Result<u16, BtfError> {
            data.get(o..o + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .ok_or_else(|| bad("truncated"))
        };
        let u32_at = |o: usize| -> Result<u32, BtfError> {
            data.get(o..o + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(|| bad("truncated"))
        };
        if u16_at(0)? != 0xeb9f {
            return Err(bad("bad magic (big-endian or not BTF)"));
        }
        let hdr_len = u32_at(4)? as usize;
        let type_off = u32_at(8)? as usize;
        let type_len = u32_at(12)? as usize;
        let str_off = u32_at(16)? as usize;
        let str_len = u32_at(20)? as usize;
        let strings = data
            .get(hdr_len + str_off..hdr_len + str_off + str_len)
            .ok_or_else(|| bad("string section out of bounds"))?
            .to_vec();
        let start = hdr_len + type_off;
        let end = start + type_len;
        if end > data.len() {
            return Err(bad("type section out of bounds"));
        }
        let mut types = vec![Type {
            name_off: 0,
            kind: 0,
            ref_type: 0,
            members: Vec::new(),
        }];
        let mut p = start;
        while p < end {
            let name_off = u32_at(p)?;
            let info = u32_at(p + 4)?;
            let kind = (info >> 24) & 0x1f;
            let vlen = (info & 0xffff) as usize;
            let kind_flag = info >> 31 == 1;
            let ref_type = u32_at(p + 8)?;
            p += 12;
            let mut members = Vec::new();
            match kind {
                KIND_INT | KIND_VAR | KIND_DECL_TAG => p += 4,
                KIND_ARRAY => p += 12,
                KIND_STRUCT | KIND_UNION => {
                    for _ in 0..vlen {
                        let offset = u32_at(p + 8)?;
                        members.push(Member {
                            name_off: u32_at(p)?,
                            type_id: u32_at(p + 4)?,
                            // With kind_flag, the top 8 bits are a bitfield size.
                            bit_offset: if kind_flag {
                                offset & 0xff_ffff
                            } else {
                                offset
                            },
                        });
                        p += 12;
                    }
                }
                KIND_ENUM | KIND_FUNC_PROTO => p += 8 * vlen,
                KIND_DATASEC | KIND_ENUM64 => p += 12 * vlen,
                // PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG: no extra data.
                _ => {}
            }
            types.push(Type {
                name_off,
                kind,
                ref_type,
                members,
            });
        }
        Ok(Self { strings, types })
    }

    fn name(&self, off: u32) -> &[u8] {
        let s = self.strings.get(off as usize..).unwrap_or_default();
        &s[..s.iter().position(|&b| b == 0).unwrap_or(s.len())]
    }

    /// Byte offset of `member` in `struct name`, looking through anonymous struct/union members.
    /// `member` may be a dotted path through named members (`__sk_common.skc_family`).
    pub(crate) fn member_offset(&self, name: &str, member: &str) -> Result<u32, BtfError> {
        let no_member = || BtfError::NoMember(name.into(), member.into());
        let mut ty = self
            .types
            .iter()
            .find(|t| t.kind == KIND_STRUCT && self.name(t.name_off) == name.as_bytes())
            .ok_or_else(|| BtfError::NoStruct(name.into()))?;
        let mut bits = 0;
        let mut parts = member.split('.').peekable();
        while let Some(part) = parts.next() {
            let (off, type_id) = self
                .find_member(ty, part.as_bytes(), 0)
                .ok_or_else(no_member)?;
            bits += off;
            if parts.peek().is_some() {
                ty = self.resolve(type_id).ok_or_else(no_member)?;
            }
        }
        Ok(bits / 8)
    }

    /// Whether the kernel has a function `name` (a BPF helper's implementation is one: the
    /// helpers a kernel knows can be told from its BTF).
    pub(crate) fn has_function(&self, name: &str) -> bool {
        self.types
            .iter()
            .any(|t| t.kind == KIND_FUNC && self.name(t.name_off) == name.as_bytes())
    }

    /// The type id of the function `name` (a kfunc is called by it).
    pub(crate) fn function_id(&self, name: &str) -> Option<u32> {
        self.id_of(KIND_FUNC, name)
    }

    /// The type id of `struct name`.
    pub(crate) fn struct_id(&self, name: &str) -> Option<u32> {
        self.id_of(KIND_STRUCT, name)
    }

    fn id_of(&self, kind: u32, name: &str) -> Option<u32> {
        let at = self
            .types
            .iter()
            .position(|t| t.kind == kind && self.name(t.name_off) == name.as_bytes())?;
        u32::try_from(at).ok()
    }

    /// The struct or union a type id names, through typedefs and qualifiers.
    fn resolve(&self, mut id: u32) -> Option<&Type> {
        for _ in 0..16 {
            let t = self.types.get(id as usize)?;
            match t.kind {
                KIND_STRUCT | KIND_UNION => return Some(t),
                KIND_TYPEDEF | KIND_VOLATILE | KIND_CONST | KIND_RESTRICT | KIND_TYPE_TAG => {
                    id = t.ref_type
                }
                _ => return None,
            }
        }
        None
    }

    /// (bit offset, type id) of a member, looking through anonymous members.
    fn find_member(&self, ty: &Type, member: &[u8], base_bits: u32) -> Option<(u32, u32)> {
        for m in &ty.members {
            let name = self.name(m.name_off);
            if name == member {
                return Some((base_bits + m.bit_offset, m.type_id));
            }
            if name.is_empty() {
                let inner = self.types.get(m.type_id as usize)?;
                if matches!(inner.kind, KIND_STRUCT | KIND_UNION)
                    && let Some(found) = self.find_member(inner, member, base_bits + m.bit_offset)
                {
                    return Some(found);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a BTF blob with `struct s { int a; union { int b; long c; }; int d; }`.
    fn sample() -> Vec<u8> {
        let strings = b"\0s\0a\0b\0c\0d\0int\0".to_vec();
        let off = |s: &str| -> u32 {
            let pos = strings
                .windows(s.len() + 2)
                .position(|w| w[0] == 0 && &w[1..=s.len()] == s.as_bytes() && w[s.len() + 1] == 0)
                .unwrap();
            pos as u32 + 1
        };
        let mut t = Vec::new();
        let mut push = |v: u32| t.extend_from_slice(&v.to_le_bytes());
        // 1: int
        push(off("int"));
        push(KIND_INT << 24);
        push(4);
        push(32);
        // 2: anonymous union { int b; long c; }
        push(0);
        push(KIND_UNION << 24 | 2);
        push(8);
        push(off("b"));
        push(1);
        push(0);
        push(off("c"));
        push(1);
        push(0);
        // 3: struct s { int a; <anon> ; int d; }
        push(off("s"));
        push(KIND_STRUCT << 24 | 3);
        push(24);
        push(off("a"));
        push(1);
        push(0);
        push(0);
        push(2);
        push(64);
        push(off("d"));
        push(1);
        push(128);
        let mut data = Vec::new();
        data.extend_from_slice(&0xeb9fu16.to_le_bytes());
        data.extend_from_slice(&[1, 0]);
        data.extend_from_slice(&24u32.to_le_bytes());
        data.extend_from_slice(&0u32.to_le_bytes());
        data.extend_from_slice(&(t.len() as u32).to_le_bytes());
        data.extend_from_slice(&(t.len() as u32).to_le_bytes());
        data.extend_from_slice(&(strings.len() as u32).to_le_bytes());
        data.extend_from_slice(&t);
        data.extend_from_slice(&strings);
        data
    }

    #[test]
    fn member_offsets_include_anonymous_unions() {
        let btf = Btf::parse(&sample(), "sample").unwrap();
        assert_eq!(btf.member_offset("s", "a").unwrap(), 0);
        assert_eq!(btf.member_offset("s", "b").unwrap(), 8);
        assert_eq!(btf.member_offset("s", "c").unwrap(), 8);
        assert_eq!(btf.member_offset("s", "d").unwrap(), 16);
    }

    #[test]
    fn unknown_struct_and_member_are_named_in_the_error() {
        let btf = Btf::parse(&sample(), "sample").unwrap();
        assert_eq!(
            btf.member_offset("t", "a").unwrap_err().to_string(),
            "kernel BTF has no struct `t`"
        );
        assert_eq!(
            btf.member_offset("s", "z").unwrap_err().to_string(),
            "kernel BTF: struct `s` has no member `z`"
        );
    }

    #[test]
    fn structs_are_found_by_their_type_id() {
        let btf = Btf::parse(&sample(), "sample").unwrap();
        // Ids count from 1 in the order the types are written (0 is `void`).
        assert_eq!(btf.struct_id("s"), Some(3));
        assert_eq!(btf.struct_id("int"), None, "an int is no struct");
        assert_eq!(btf.function_id("s"), None, "a struct is no function");
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(matches!(
            Btf::parse(b"not btf at all....................", "x"),
            Err(BtfError::Malformed(..))
        ));
    }

    #[test]
    fn running_kernel_has_the_offsets_the_programs_use() {
        let btf = Btf::from_sys_fs().unwrap();
        assert!(btf.member_offset("task_struct", "tgid").unwrap() > 0);
        assert!(btf.member_offset("task_struct", "real_parent").unwrap() > 0);
        // Through a named member, and through anonymous unions.
        let family = btf.member_offset("sock", "__sk_common.skc_family").unwrap();
        assert_eq!(
            family,
            btf.member_offset("sock_common", "skc_family").unwrap()
        );
        assert!(btf.member_offset("dentry", "d_name").unwrap() > 0);
        assert_eq!(btf.member_offset("qstr", "name").unwrap(), 8);
        assert!(btf.member_offset("inode", "__i_nlink").unwrap() > 0);
        // The helper the executable-mapping programs call (Linux 5.17).
        assert!(btf.has_function("bpf_find_vma"));
        // The helper the fd-table walks loop with (Linux 5.17).
        assert!(btf.has_function("bpf_loop"));
        assert!(!btf.has_function("bpf_no_such_helper"));
    }
}
