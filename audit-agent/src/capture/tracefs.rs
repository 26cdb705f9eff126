//! tracefs: where it is, mounting it when missing, and reading tracepoint `format` files so that
//! argument offsets come from the running kernel rather than from constants.

use std::{
    collections::HashMap,
    ffi::CString,
    path::{Path, PathBuf},
};

use thiserror::Error;

/// Where tracefs is normally mounted, and the legacy location under debugfs.
const CANDIDATES: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

#[derive(Debug, Error)]
pub(crate) enum TraceFsError {
    #[error(
        "tracefs is not mounted and mounting it at /sys/kernel/tracing failed ({0}); mount it with \
         `mount -t tracefs nodev /sys/kernel/tracing` (needs CAP_SYS_ADMIN), or on Kubernetes mount \
         the host's /sys/kernel/tracing into the pod"
    )]
    Mount(std::io::Error),
    #[error(
        "tracepoint {category}:{name} is not available on this kernel (cannot read {path}); \
         audit-agent needs CONFIG_FTRACE_SYSCALLS and the sched tracepoints"
    )]
    MissingTracepoint {
        category: String,
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("tracepoint {category}:{name} has no field `{field}` (format file {path})")]
    MissingField {
        category: String,
        name: String,
        field: String,
        path: PathBuf,
    },
}

/// A mounted tracefs.
#[derive(Debug, Clone)]
pub(crate) struct TraceFs {
    root: PathBuf,
}

impl TraceFs {
    /// Finds a mounted tracefs, or mounts one at `/sys/kernel/tracing`.
    pub(crate) fn find_or_mount() -> Result<Self, TraceFsError> {
        if let Some(fs) = Self::find() {
            return Ok(fs);
        }
        if let Err(e) = mount_tracefs(Path::new(CANDIDATES[0])) {
            // Another process (a second agent starting beside this one) may have mounted it
            // since we looked: its mount is as good as ours.
            return Self::find().ok_or(TraceFsError::Mount(e));
        }
        Self::find().ok_or_else(|| {
            TraceFsError::Mount(std::io::Error::other("mounted, but events/ is missing"))
        })
    }

    /// A tracefs that is already mounted, if any.
    pub(crate) fn find() -> Option<Self> {
        CANDIDATES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.join("events").is_dir())
            .map(|root| Self { root })
    }

    /// Whether `category:name` exists on this kernel.
    pub(crate) fn has(&self, category: &str, name: &str) -> bool {
        self.root.join("events").join(category).join(name).is_dir()
    }

    /// Parses the `format` file of `category:name`.
    pub(crate) fn format(&self, category: &str, name: &str) -> Result<Format, TraceFsError> {
        let path = self
            .root
            .join("events")
            .join(category)
            .join(name)
            .join("format");
        let text =
            std::fs::read_to_string(&path).map_err(|source| TraceFsError::MissingTracepoint {
                category: category.into(),
                name: name.into(),
                path: path.clone(),
                source,
            })?;
        Ok(Format {
            category: category.into(),
            name: name.into(),
            path,
            fields: parse_format(&text),
        })
    }
}

fn mount_tracefs(target: &Path) -> std::io::Result<()> {
    mount_pseudo_fs("tracefs", target)
}

/// Mounts a kernel pseudo file system (`tracefs`, `bpf`) at `target`.
pub(super) fn mount_pseudo_fs(fstype: &str, target: &Path) -> std::io::Result<()> {
    let c = |s: &str| CString::new(s).map_err(std::io::Error::other);
    let target_c =
        CString::new(target.as_os_str().as_encoded_bytes()).map_err(std::io::Error::other)?;
    let (src, fstype) = (c("nodev")?, c(fstype)?);
    // SAFETY: all pointers are valid NUL-terminated strings for the duration of the call.
    let r = unsafe {
        libc::mount(
            src.as_ptr(),
            target_c.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A field of a tracepoint record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Field {
    pub(crate) offset: u16,
    pub(crate) size: u16,
}

/// The parsed `format` file of one tracepoint.
#[derive(Debug, Clone)]
pub(crate) struct Format {
    category: String,
    name: String,
    path: PathBuf,
    fields: HashMap<String, Field>,
}

impl Format {
    /// Offset of a field that must exist.
    pub(crate) fn offset(&self, field: &str) -> Result<u16, TraceFsError> {
        self.fields
            .get(field)
            .map(|f| f.offset)
            .ok_or_else(|| TraceFsError::MissingField {
                category: self.category.clone(),
                name: self.name.clone(),
                field: field.into(),
                path: self.path.clone(),
            })
    }

    /// The system call arguments of a `sys_enter_*` record, in order (every field after
    /// `__syscall_nr`).
    pub(crate) fn arguments(&self) -> Vec<(&str, Field)> {
        let nr = self.fields.get("__syscall_nr").map_or(0, |f| f.offset);
        let mut args: Vec<(&str, Field)> = self
            .fields
            .iter()
            .filter(|(name, f)| f.offset > nr && !name.starts_with("common_"))
            .map(|(name, f)| (name.as_str(), *f))
            .collect();
        args.sort_by_key(|(_, f)| f.offset);
        args
    }

    /// Offset of a field that newer kernels have; `None` when absent.
    pub(crate) fn optional(&self, field: &str) -> Option<u16> {
        self.fields.get(field).map(|f| f.offset)
    }
}

/// Parses lines like `\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;`.
pub(crate) fn parse_format(text: &str) -> HashMap<String, Field> {
    let mut fields = HashMap::new();
    for line in text.lines() {
        let mut decl = None;
        let mut offset = None;
        let mut size = None;
        for part in line.split(';') {
            let part = part.trim();
            if let Some(d) = part.strip_prefix("field:") {
                decl = Some(d);
            } else if let Some(o) = part.strip_prefix("offset:") {
                offset = o.parse::<u16>().ok();
            } else if let Some(s) = part.strip_prefix("size:") {
                size = s.parse::<u16>().ok();
            }
        }
        let (Some(decl), Some(offset), Some(size)) = (decl, offset, size) else {
            continue;
        };
        // The name is the last word of the declaration, without an array suffix.
        let Some(name) = decl.split_whitespace().last() else {
            continue;
        };
        let name = name.split('[').next().unwrap_or(name);
        fields.insert(name.to_string(), Field { offset, size });
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPENAT: &str = "name: sys_enter_openat
ID: 700
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int __syscall_nr;\toffset:8;\tsize:4;\tsigned:1;
\tfield:int dfd;\toffset:16;\tsize:8;\tsigned:0;
\tfield:const char * filename;\toffset:24;\tsize:8;\tsigned:0;
\tfield:int flags;\toffset:32;\tsize:8;\tsigned:0;
\tfield:umode_t mode;\toffset:40;\tsize:8;\tsigned:0;

print fmt: \"dfd: 0x%08lx\"
";

    #[test]
    fn format_fields_are_parsed_with_offsets_and_sizes() {
        let f = parse_format(OPENAT);
        assert_eq!(
            f["filename"],
            Field {
                offset: 24,
                size: 8
            }
        );
        assert_eq!(
            f["dfd"],
            Field {
                offset: 16,
                size: 8
            }
        );
        assert_eq!(f["mode"].offset, 40);
        assert!(!f.contains_key("print"));
    }

    #[test]
    fn array_and_data_loc_fields_keep_their_bare_name() {
        let f = parse_format(
            "\tfield:char comm[16];\toffset:8;\tsize:16;\tsigned:0;\n\
             \tfield:__data_loc char[] filename;\toffset:8;\tsize:4;\tsigned:0;\n",
        );
        assert_eq!(
            f["comm"],
            Field {
                offset: 8,
                size: 16
            }
        );
        assert_eq!(f["filename"], Field { offset: 8, size: 4 });
    }
}
