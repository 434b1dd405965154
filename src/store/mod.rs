//! What outlives a request besides config: revoked token ids and used assertion ids, in this
//! replica's memory ([`memory`]) or shared by every replica through Redis ([`redis`]).
//!
//! Every entry is forgotten once the token it stands for would have expired anyway. Reading a
//! revocation never waits on the network: a shared store mirrors the revocations in memory.

pub mod memory;
pub mod redis;
mod redis_follow;

use async_trait::async_trait;

pub use memory::{MemoryStore, MAX_ENTRIES, MAX_PER_OWNER};

#[async_trait]
pub trait Store: Send + Sync {
    /// Remember that the tokens (or grant chains) `ids` of client `owner` are revoked until
    /// `exp` (Unix seconds): all of them, or none. `Ok` only once it is stored.
    async fn revoke(&self, owner: &str, ids: &[&str], exp: u64, now: u64) -> Result<(), Refused>;
    /// Whether `jti` is revoked, as this replica knows it now (no round trip).
    fn is_revoked(&self, jti: &str) -> bool;
    /// Record `id` as used until `exp`.
    async fn use_once(&self, id: &str, exp: u64, now: u64) -> Use;
    /// Entries held, for metrics: (revoked, used assertion ids; 0 where the store cannot tell).
    fn sizes(&self) -> (usize, usize);
    /// The shared store behind this one, if any (for readiness, metrics and background work).
    fn shared(&self) -> Option<&redis::RedisStore> {
        None
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    First,
    Replay,
    /// The table is full of live entries: refuse (fail closed).
    Full,
    /// The shared store cannot be reached: a replay cannot be ruled out (fail closed).
    Down,
}

/// Why a revocation was not stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The owner's quota or the table is full of live revocations.
    Full,
    /// The shared store cannot be reached.
    Down,
}

/// `true` when either id of a token (its `jti`, or the grant chain `sid`) is revoked.
pub fn token_revoked(store: &dyn Store, jti: &str, sid: &str) -> bool {
    store.is_revoked(jti) || (!sid.is_empty() && store.is_revoked(sid))
}
