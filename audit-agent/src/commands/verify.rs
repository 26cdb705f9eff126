//! `audit-agent verify <store url>`: prove the trail is complete and untouched.

use std::io::IsTerminal as _;

use anyhow::bail;

use super::store_args::open_store;
use crate::{
    cli::VerifyArgs,
    read::verify::{VerifyOptions, render, verify},
};

/// `--public-key`: 64 hex digits, or a file holding them.
pub(super) fn public_key(arg: Option<&str>) -> anyhow::Result<Option<String>> {
    let key = match arg {
        Some(k) if std::path::Path::new(k).exists() => {
            std::fs::read_to_string(k)?.trim().to_string()
        }
        Some(k) => k.trim().to_string(),
        None => return Ok(None),
    };
    if key.len() != 64 || hex::decode(&key).is_err() {
        bail!("--public-key: expected 64 hex digits (or a file holding them), got `{key}`");
    }
    Ok(Some(key))
}

pub(crate) async fn run(args: VerifyArgs) -> anyhow::Result<bool> {
    let store = open_store(&args.store)?;
    store.check().await?;
    let opts = VerifyOptions {
        since: args.time.since()?,
        until: args.time.until()?,
        public_key: public_key(args.public_key.as_deref())?,
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
