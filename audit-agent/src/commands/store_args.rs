//! Store access for commands that read a store (`verify`, `query`): URL from the command line,
//! endpoint/region/allow_http from `--config`'s [export] or the AWS environment variables.

use crate::{
    cli::StoreArgs,
    settings::Settings,
    trail::store::{Store, StoreSettings},
};

pub(crate) fn open_store(args: &StoreArgs) -> anyhow::Result<Store> {
    let mut settings = StoreSettings {
        store: args.url.clone(),
        ..Default::default()
    };
    if let Some(path) = &args.config
        && let Some(e) = Settings::load(path)?.export
    {
        settings.endpoint = e.store.endpoint;
        settings.region = e.store.region;
        settings.allow_http = e.store.allow_http;
    }
    Store::open(&settings)
}
