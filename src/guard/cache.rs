//! The verified-token cache: a token that verified once is not verified again while it lives.
//!
//! Only tokens whose signature checked out are ever inserted, so junk cannot flush it. Each
//! entry remembers the realm rules and the key it was checked against; once either changes
//! (a reload, a key that left its issuer's JWKS) the token is verified afresh. Expiry,
//! revocation, audience and roles are still checked on every request.

use crate::token::{Identity, VerifyKey};
use parking_lot::RwLock;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;

/// How many trailing bytes of a token its hash covers: 32 base64url characters of its
/// signature, 192 bits that nobody without the signing key can choose.
const HASHED_TAIL: usize = 32;

/// foldhash (randomly seeded, as hashbrown's default) over the tail of the token only. Hashing a
/// whole RS256 token (~900 bytes) cost more than the rest of a cached lookup, and SipHash over
/// the tail still cost a third of it. Only tokens whose signature verified are inserted, so no
/// one can fill a bucket with colliding entries (the reason to key a hash with SipHash); a junk
/// token that lands in a bucket costs one string compare.
#[derive(Default)]
struct TailHash(foldhash::fast::RandomState);

struct TailHasher(foldhash::fast::FoldHasher<'static>);

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
    /// `Realm::verify_tag` of the realm that verified it.
    realm_tag: u64,
    kid: Arc<str>,
    key_fingerprint: u64,
    identity: Arc<Identity>,
}

/// A cached verification, for the caller to check that it still stands.
pub struct Hit {
    pub identity: Arc<Identity>,
    pub realm_tag: u64,
    pub kid: Arc<str>,
    pub key_fingerprint: u64,
}

/// Keyed by the token's bytes, so that a request's credentials are looked up as they came: a
/// token found here verified once, so its alphabet need not be checked again.
#[derive(Default)]
pub struct TokenCache {
    map: RwLock<HashMap<Box<[u8]>, Entry, TailHash>>,
}

impl TokenCache {
    pub fn get(&self, token: &[u8]) -> Option<Hit> {
        let map = self.map.read();
        let e = map.get(token)?;
        Some(Hit {
            identity: e.identity.clone(),
            realm_tag: e.realm_tag,
            kid: e.kid.clone(),
            key_fingerprint: e.key_fingerprint,
        })
    }

    pub fn insert(&self, token: &str, realm_tag: u64, key: &VerifyKey, identity: Arc<Identity>, now: u64) {
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
                realm_tag,
                kid: key.kid.as_str().into(),
                key_fingerprint: key.fingerprint,
                identity,
            },
        );
    }

    /// Drops every token whose `jti` or grant chain (`sid`) `revoked` matches.
    pub fn remove_matching(&self, revoked: &dyn Fn(&str) -> bool) {
        self.map
            .write()
            .retain(|_, e| !revoked(&e.identity.jti) && (e.identity.sid.is_empty() || !revoked(&e.identity.sid)));
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
            claims: serde_json::Value::Null,
        })
    }

    fn key() -> VerifyKey {
        use jsonwebtoken::Algorithm;
        let pem = crate::token::keys::generate_pem(Algorithm::EdDSA).unwrap();
        let k = crate::token::SigningKey::from_pem("k", Algorithm::EdDSA, pem.as_bytes()).unwrap();
        let public = B64.decode(k.jwk["x"].as_str().unwrap()).unwrap();
        VerifyKey::from_public("k", Algorithm::EdDSA, &public).unwrap()
    }

    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;

    #[test]
    fn tokens_that_share_a_tail_are_still_told_apart() {
        let cache = TokenCache::default();
        let k = key();
        let tail = "x".repeat(HASHED_TAIL);
        let (a, b) = (format!("header.a-claims.{tail}"), format!("header.b-claims.{tail}"));
        cache.insert(&a, 7, &k, identity("a"), 0);
        assert!(cache.get(b.as_bytes()).is_none(), "same hash, different token");
        cache.insert(&b, 7, &k, identity("b"), 0);
        assert_eq!(cache.get(a.as_bytes()).unwrap().identity.jti, "a");
        assert_eq!(cache.get(b.as_bytes()).unwrap().identity.jti, "b");
        // Shorter than the hashed tail: the whole token is hashed.
        cache.insert("short", 8, &k, identity("s"), 0);
        let hit = cache.get(b"short").unwrap();
        assert_eq!((hit.identity.jti.as_str(), hit.realm_tag, &*hit.kid), ("s", 8, "k"));
        assert_eq!(hit.key_fingerprint, k.fingerprint);
    }
}
