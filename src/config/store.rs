//! `[store]`: the shared store's URL, checked without connecting, and its key prefix.

use super::file::StoreFile;
use super::Checker;

/// The shared store, as configured.
#[derive(Clone, PartialEq, Eq)]
pub struct StoreSettings {
    pub url: String,
    pub key_prefix: String,
    /// `ca_file`'s PEM certificates, for a `rediss://` URL.
    pub ca_pem: Option<Vec<u8>>,
}

/// The URL may hold a password: never printed.
impl std::fmt::Debug for StoreSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreSettings")
            .field("url", &"***")
            .field("key_prefix", &self.key_prefix)
            .field("ca_file", &self.ca_pem.is_some())
            .finish()
    }
}

pub const DEFAULT_KEY_PREFIX: &str = "tollgate:";

pub(super) fn build(c: &mut Checker, sf: &StoreFile) -> Option<StoreSettings> {
    let before = c.problems.len();
    if let Err(e) = crate::store::redis::check_url(&sf.url) {
        c.problem("store.url", e);
    }
    let key_prefix = sf.key_prefix.clone().unwrap_or_else(|| DEFAULT_KEY_PREFIX.into());
    if key_prefix.len() > 64 || key_prefix.chars().any(|ch| ch.is_control() || ch.is_whitespace()) {
        c.problem(
            "store.key_prefix",
            "must be at most 64 characters, without spaces or control characters",
        );
    }
    let ca_pem = sf.ca_file.as_ref().and_then(|p| ca_bundle(c, &sf.url, p));
    (c.problems.len() == before).then(|| StoreSettings {
        url: sf.url.clone(),
        key_prefix,
        ca_pem,
    })
}

/// `store.ca_file`: read, holding at least one PEM certificate, and only for `rediss://`.
fn ca_bundle(c: &mut Checker, url: &str, path: &std::path::Path) -> Option<Vec<u8>> {
    if !url.starts_with("rediss://") {
        c.problem("store.ca_file", "only with a rediss:// URL");
        return None;
    }
    let (full, bytes) = c.read_file("store.ca_file", path)?;
    let certs = pem::parse_many(&bytes).unwrap_or_default();
    if !certs.iter().any(|p| p.tag() == "CERTIFICATE") {
        c.problem("store.ca_file", format!("{} holds no PEM certificate", full.display()));
        return None;
    }
    Some(bytes)
}
