//! One module per subcommand.

mod assemble;
pub(crate) mod check_config;
pub(crate) mod claim;
pub(crate) mod keygen;
pub(crate) mod query;
pub(crate) mod reconcile;
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

/// A future that completes on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled: call it before announcing readiness, or a signal
/// that arrives in between kills the process without a clean stop (no closing manifest).
pub(crate) fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    );
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            // Without signal handlers we can only run until killed.
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: stopping"),
            _ = int.recv() => tracing::info!("SIGINT: stopping"),
        }
    }
}
