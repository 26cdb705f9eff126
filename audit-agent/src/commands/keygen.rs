//! `audit-agent keygen FILE`: a new Ed25519 key for signing manifests.

use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _, path::Path};

use anyhow::Context as _;

use crate::trail::manifest::generate_key;

pub(crate) fn run(path: &Path) -> anyhow::Result<()> {
    let (seed, public) = generate_key()?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    writeln!(f, "{seed}")?;
    println!("{public}");
    eprintln!(
        "wrote the private key to {} (mode 0600); the line above is the public key for \
         `audit-agent verify --public-key`",
        path.display()
    );
    Ok(())
}
