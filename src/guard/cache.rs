//! The verified-token cache: a token that verified once is not verified again while it lives.
//!
//! Only tokens whose signature checked out are ever inserted, so junk cannot flush it. Each
//! entry remembers the key set and issuer it was checked against; after a key or issuer change
//! it no longer matches and the token is verified afresh. Expiry, revocation, audience and
//! roles are still checked on every request.

use super::bearer::Identity;
use parking_lot::RwLock;
use std::collections::HashMap;
use std::hash::{BuildHasher, DefaultHasher, Hasher, RandomState};
use std::sync::Arc;

/// How many trailing bytes of a token its hash covers: 32 base64url characters of its
/// signature, 192 bits that nobody without the signing key can choose.
const HASHED_TAIL: usize = 32;

/// Keyed SipHash (std's `RandomState`) over the tail of the token only. Hashing a whole RS256
/// token (~900 bytes) cost more than the rest of a cached lookup. Only tokens whose signature
/// verified are inserted, so no one can fill a bucket with colliding entries; a junk token that
/// lands in a bucket costs one string compare.
#[derive(Default)]
struct TailHash(RandomState);

struct TailHasher(DefaultHasher);

impl BuildHasher for TailHash {
    type Hasher = TailHasher;

    fn build_hasher(&self) -> TailHasher {
        TailHasher(self.0.build_hasher())
    }
}

impl Hasher for TailHasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.write(&bytes[bytes.len().saturating_sub(HASHED_TAIL)..]);
    }

    fn finish(&self) -> u64 {
        self.0.finish()
    }
}

/// Entries held at most. At ~1 KiB each this bounds the cache near 10 MiB.
pub const MAX_ENTRIES: usize = 10_000;

struct Entry {
    /// `Realm::keys_id` + issuer when the token was verified.
    checked_against: Arc<str>,
    identity: Arc<Identity>,
}

/// Keyed by the token's bytes, so that a request's credentials are looked up as they came: a
/// token found here verified once, so its alphabet need not be checked again.
#[derive(Default)]
pub struct TokenCache {
    map: RwLock<HashMap<Box<[u8]>, Entry, TailHash>>,
}

impl TokenCache {
    pub fn get(&self, token: &[u8], checked_against: &str) -> Option<Arc<Identity>> {
        let map = self.map.read();
        let e = map.get(token)?;
        (&*e.checked_against == checked_against).then(|| e.identity.clone())
    }

    pub fn insert(&self, token: &str, checked_against: Arc<str>, identity: Arc<Identity>, now: u64) {
        let mut map = self.map.write();
        if map.len() >= MAX_ENTRIES {
            map.retain(|_, e| e.identity.exp >= now);
            if map.len() >= MAX_ENTRIES {
                // Still full of live tokens: make room by dropping an eighth of them.
                let drop: Vec<Box<[u8]>> = map.keys().take(MAX_ENTRIES / 8).cloned().collect();
                for k in drop {
                    map.remove(&k);
                }
            }
        }
        map.insert(
            token.as_bytes().into(),
            Entry {
                checked_against,
                identity,
            },
        );
    }

    pub fn remove_jti(&self, jti: &str) {
        self.map.write().retain(|_, e| e.identity.jti != jti);
    }

    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(jti: &str) -> Arc<Identity> {
        Arc::new(Identity {
            realm: "demo".into(),
            subject: "s".into(),
            client_id: "c".into(),
            roles: vec![],
            scope: String::new(),
            audience: vec![],
            jti: jti.into(),
            sid: String::new(),
            exp: u64::MAX,
            iat: 0,
            nbf: None,
            typ: "Bearer".into(),
            headers: None,
        })
    }

    #[test]
    fn tokens_that_share_a_tail_are_still_told_apart() {
        let cache = TokenCache::default();
        let tail = "x".repeat(HASHED_TAIL);
        let (a, b) = (format!("header.a-claims.{tail}"), format!("header.b-claims.{tail}"));
        let tag: Arc<str> = "keys".into();
        cache.insert(&a, tag.clone(), identity("a"), 0);
        assert!(cache.get(b.as_bytes(), "keys").is_none(), "same hash, different token");
        cache.insert(&b, tag, identity("b"), 0);
        assert_eq!(cache.get(a.as_bytes(), "keys").unwrap().jti, "a");
        assert_eq!(cache.get(b.as_bytes(), "keys").unwrap().jti, "b");
        // Shorter than the hashed tail: the whole token is hashed.
        cache.insert("short", "keys".into(), identity("s"), 0);
        assert_eq!(cache.get(b"short", "keys").unwrap().jti, "s");
        assert!(cache.get(b"short", "other keys").is_none());
    }
}
