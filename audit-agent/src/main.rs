//! Entry point: parse the command line, set up logging, run the chosen command.

use audit_agent::{
    cli::{Cli, Command},
    commands, logging,
};
use clap::Parser as _;

fn main() -> std::process::ExitCode {
    // glibc gives every busy thread its own malloc arena (~9 MB resident each here); two are
    // plenty for this workload and keep the agent's memory small and predictable.
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
    let cli = Cli::parse();
    logging::init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("audit-agent: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Watch(args) => commands::watch::run(args).await.map(|()| true),
            Command::Run(args) => commands::run::run(args).await.map(|()| true),
            Command::Trace(args) => match commands::trace::run(args).await {
                Ok(code) => std::process::exit(code),
                Err(e) => Err(e),
            },
            Command::Query(args) => commands::query::run(args).await.map(|()| true),
            Command::Verify(args) => commands::verify::run(args).await,
            Command::CheckConfig { file } => commands::check_config::run(&file).map(|()| true),
            Command::Keygen { file } => commands::keygen::run(&file).map(|()| true),
            Command::BenchFloor => {
                async {
                    let _programs = audit_agent::capture::attach_floor()?;
                    tracing::info!("ready: floor programs attached");
                    commands::shutdown_signal().await;
                    Ok(true)
                }
                .await
            }
        }
    });
    match result {
        Ok(true) => std::process::ExitCode::SUCCESS,
        Ok(false) => std::process::ExitCode::FAILURE,
        Err(e) => {
            eprintln!("audit-agent: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
