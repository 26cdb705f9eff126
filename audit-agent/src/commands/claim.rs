//! `audit-agent claim`: an agent runtime's hook command. Reads one payload on stdin, hands it to
//! the audit agent on its claims socket, and waits until it is in the trail (the answer names
//! the record). Nothing is printed on success, so the hook never disturbs the agent; a failure
//! is one line on stderr and exit status 1 — a non-blocking error for hook runners (Claude Code
//! blocks a tool call only on status 2).

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{claims::MAX_PAYLOAD, cli::ClaimArgs};

pub(crate) async fn run(args: &ClaimArgs) -> anyhow::Result<()> {
    let mut payload = Vec::new();
    std::io::Read::read_to_end(
        &mut std::io::Read::take(std::io::stdin(), MAX_PAYLOAD as u64 + 1),
        &mut payload,
    )
    .context("reading the claim from stdin")?;
    let mut s = tokio::net::UnixStream::connect(&args.socket)
        .await
        .with_context(|| {
            format!(
                "cannot reach the audit agent's claims socket {}: is the daemon running with \
                 [claims] socket set (or pass --socket / AUDIT_AGENT_CLAIMS_SOCKET)?",
                args.socket.display()
            )
        })?;
    s.write_all(&payload).await?;
    s.shutdown().await?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).await?;
    match answer.trim_end().strip_prefix("ok") {
        Some(_) => Ok(()),
        None => bail!(
            "the audit agent refused the claim: {}",
            answer.trim_end().trim_start_matches("error: ")
        ),
    }
}
