//! Store access for commands that read a store (`verify`, `query`): URL from the command line,
//! endpoint/region/allow_http from `--config`'s [export] or the AWS environment variables.

use crate::{
    cli::StoreArgs,
    config::Config,
    export::store::{Store, StoreSettings},
};

pub fn open_store(args: &StoreArgs) -> anyhow::Result<Store> {
    let mut settings = StoreSettings {
        store: args.url.clone(),
        ..Default::default()
    };
    if let Some(path) = &args.config {
        let cfg = Config::load(path)?;
        if let Some(e) = cfg.export {
            settings.endpoint = e.endpoint;
            settings.region = e.region;
            settings.allow_http = e.allow_http;
        }
    }
    Store::open(&settings)
}
