//! One module per subcommand.

mod assemble;
pub(crate) mod check_config;
pub(crate) mod keygen;
pub(crate) mod query;
mod reload;
pub(crate) mod report;
pub(crate) mod run;
mod store_args;
pub(crate) mod trace;
pub(crate) mod verify;
pub(crate) mod watch;

use std::io::IsTerminal as _;

use crate::format::Format;

/// Resolves a format flag: explicit, else text on a terminal and JSON otherwise.
pub(crate) fn default_format(explicit: Option<Format>, to_terminal: bool) -> Format {
    explicit.unwrap_or(if to_terminal {
        Format::Text
    } else {
        Format::Json
    })
}

/// Whether stdout is a terminal.
pub(crate) fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// Completes on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers we can only run until killed.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: stopping"),
        _ = int.recv() => tracing::info!("SIGINT: stopping"),
    }
}
