//! Output formats: native JSON lines, aligned text for terminals, OCSF for SIEMs. Every output
//! path (watch, trace, export, query) goes through [`write_record`], so all accept all formats.

pub mod ocsf;
pub mod table;
pub mod text;

use crate::record::Record;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per line, native schema (docs/schema.md).
    Json,
    /// One aligned, human-readable line per record.
    Text,
    /// OCSF 1.3.0 events, one JSON object per line (docs/schema.md has the mapping).
    Ocsf,
}

/// Appends `rec` in `format` to `out`, newline-terminated.
pub fn write_record(format: Format, rec: &Record, out: &mut Vec<u8>) -> anyhow::Result<()> {
    match format {
        Format::Json => {
            serde_json::to_writer(&mut *out, rec)?;
            out.push(b'\n');
        }
        Format::Ocsf => {
            serde_json::to_writer(&mut *out, &ocsf::to_ocsf(rec))?;
            out.push(b'\n');
        }
        Format::Text => {
            text::write(rec, out);
            out.push(b'\n');
        }
    }
    Ok(())
}
