//! Sinks: where finished records go. `watch` and `trace` write to stdout or a file; the daemon
//! writes to the spool (see `spool`).

use std::io::Write;

use crate::{
    event::{Event, GapReason},
    format::{Format, write_event},
};

/// Whether a sink took a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Accepted {
    Yes,
    /// No room (spool limit, full or failing disk): the pipeline counts it and writes a gap
    /// record with this reason.
    Dropped(GapReason),
}

/// The last stage of the pipeline.
pub(crate) trait Sink {
    /// Accepts one record. A record is only acknowledged once this returns `Ok`.
    fn write(&mut self, e: &Event) -> anyhow::Result<Accepted>;
    /// Makes everything written so far visible/durable (called after every batch).
    fn flush(&mut self) -> anyhow::Result<()>;
    /// Final flush at shutdown.
    fn close(&mut self) -> anyhow::Result<()> {
        self.flush()
    }
}

/// Formats records onto any writer (stdout, a file).
pub(crate) struct WriterSink<W: Write> {
    format: Format,
    out: W,
    buf: Vec<u8>,
}

impl<W: Write> WriterSink<W> {
    pub(crate) fn new(format: Format, out: W) -> Self {
        Self {
            format,
            out,
            buf: Vec::with_capacity(64 * 1024),
        }
    }
}

impl<W: Write> Sink for WriterSink<W> {
    fn write(&mut self, e: &Event) -> anyhow::Result<Accepted> {
        write_event(self.format, e, &mut self.buf)?;
        if self.buf.len() >= 60 * 1024 {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(Accepted::Yes)
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.out.flush()?;
        Ok(())
    }
}

/// Sends every record to several sinks (e.g. the terminal and a store).
pub(crate) struct Tee(pub(crate) Vec<Box<dyn Sink + Send>>);

impl Sink for Tee {
    /// Accepted when the first sink (the durable one) accepted it.
    fn write(&mut self, e: &Event) -> anyhow::Result<Accepted> {
        let mut first = None;
        for s in &mut self.0 {
            let a = s.write(e)?;
            first.get_or_insert(a);
        }
        Ok(first.unwrap_or(Accepted::Yes))
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        for s in &mut self.0 {
            s.flush()?;
        }
        Ok(())
    }

    fn close(&mut self) -> anyhow::Result<()> {
        for s in &mut self.0 {
            s.close()?;
        }
        Ok(())
    }
}
