//! JOSE shared by the issuer, the guard and the remote-key engine: keys, JWKS parsing, JWS
//! verification and the identity a verified token speaks for.

pub mod identity;
pub mod jwk;
pub mod keys;
pub mod live;
pub mod verify;

pub use identity::{Identity, IDENTITY_HEADERS};
pub use keys::{SigningKey, VerifyKey};
pub use verify::{verify, Expect, Rules, TokenError, TypRule, Verified};

use std::collections::HashMap;
use std::sync::Arc;

/// Public keys by `kid`. The kids are the issuer's, so the map is hashed with foldhash: every
/// cached token is looked up here on each request, and SipHash over a kid cost ~200
/// instructions of it.
#[derive(Debug, Default, Clone)]
pub struct KeySet {
    by_kid: HashMap<String, Arc<VerifyKey>, foldhash::fast::RandomState>,
}

impl KeySet {
    pub fn insert(&mut self, key: Arc<VerifyKey>) {
        self.by_kid.insert(key.kid.clone(), key);
    }

    pub fn get(&self, kid: &str) -> Option<&Arc<VerifyKey>> {
        self.by_kid.get(kid)
    }

    /// The key a token without a `kid` is checked with: the only key of the set, if there is one.
    pub fn only(&self) -> Option<&Arc<VerifyKey>> {
        match self.by_kid.len() {
            1 => self.by_kid.values().next(),
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        self.by_kid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_kid.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<VerifyKey>> {
        self.by_kid.values()
    }

    /// Whether the key `kid` is still `fingerprint` (a cached verification may stand).
    pub fn still(&self, kid: &str, fingerprint: u64) -> bool {
        self.by_kid.get(kid).is_some_and(|k| k.fingerprint == fingerprint)
    }
}
