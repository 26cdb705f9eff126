//! `audit-agent verify <store url>`: prove the trail is complete and untouched.

use std::io::IsTerminal as _;

use anyhow::bail;

use super::store_args::open_store;
use crate::{
    cli::VerifyArgs,
    export::verify::{VerifyOptions, render, verify},
};

pub async fn run(args: VerifyArgs) -> anyhow::Result<bool> {
    let store = open_store(&args.store)?;
    store.check().await?;
    let public_key = match &args.public_key {
        Some(k) if std::path::Path::new(k).exists() => {
            Some(std::fs::read_to_string(k)?.trim().to_string())
        }
        Some(k) => Some(k.trim().to_string()),
        None => None,
    };
    if let Some(k) = &public_key
        && (k.len() != 64 || !k.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        bail!("--public-key: expected 64 hex digits (or a file holding them), got `{k}`");
    }
    let opts = VerifyOptions {
        since_ns: args.time.since_ns()?,
        until_ns: args.time.until_ns()?,
        public_key,
        progress: std::io::stderr().is_terminal(),
    };
    let report = verify(&store, &opts).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(report.ok())
}
