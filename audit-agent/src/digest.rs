//! The one digest of the trail: sha256 in lowercase hex (objects, manifests, key fingerprints,
//! claim payloads), as `sha256sum` prints it.

use sha2::{Digest as _, Sha256};

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
