//! The shared store on Redis (or Valkey): revocations, used assertion ids, failure counters and
//! rate-limit buckets that every replica sees. A proxied request never waits on Redis:
//! revocations are mirrored in memory, loaded at connect and kept current through
//! publish/subscribe ([`follow`](super::redis_follow)).
//!
//! The client is redis-rs with its `ConnectionManager`: one multiplexed connection per replica
//! that reconnects by itself, the crate most Rust services already run against Redis and Valkey.
//!
//! Keys (all under `key_prefix`, each expiring when what it stands for would have expired):
//! `{revoked}` (a sorted set: revoked id → Unix second until which it is revoked),
//! `{revoked}:<owner>` (the ids one client revoked, for its quota; the braces keep both in one
//! Cluster slot), `jti:<hash>` (a used assertion id, `SET NX EXAT`), `fail:<key>` (a failure
//! counter, `INCR` with a 60 s expiry), `rl:<hash>` (a rate-limit bucket). Revocations are
//! published on `revocations` as `"<until> <id>"`.

use super::{Refused, Store, Use};
use async_trait::async_trait;
use parking_lot::RwLock;
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Longest a request waits on one Redis operation.
pub const OP_TIMEOUT: Duration = Duration::from_millis(100);
/// Longest a background batch (the rate-limit sync, the load at connect) waits.
pub const BACKGROUND_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed operation, requests skip Redis this long (local throttles, 503 for what
/// needs it) instead of each waiting out a timeout against a store that just failed.
pub const BREAKER: Duration = Duration::from_millis(500);
/// Revocations mirrored at most (the same bound as the in-memory store's table).
pub const MIRROR_MAX: usize = super::MAX_ENTRIES;

/// Why the store could not answer: the caller refuses what it cannot decide safely (503).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreDown(pub String);

/// What an operation was, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Revoke,
    UseOnce,
    Fail,
    RateLimit,
    Load,
    Ping,
}

impl Op {
    pub fn label(self) -> &'static str {
        match self {
            Op::Revoke => "revoke",
            Op::UseOnce => "use_once",
            Op::Fail => "fail",
            Op::RateLimit => "rate_limit",
            Op::Load => "load",
            Op::Ping => "ping",
        }
    }
}

/// Called for each operation: (operation, seconds it took or `None` when it was not sent
/// because the store is down, whether it failed).
pub type Observer = Box<dyn Fn(Op, Option<f64>, bool) + Send + Sync>;
/// Called when revocations reach this replica, with a test that matches the revoked ids (to
/// evict their tokens from caches).
pub type OnRevoked = Box<dyn Fn(&dyn Fn(&str) -> bool) + Send + Sync>;

pub struct RedisStore {
    pub(super) client: redis::Client,
    prefix: String,
    /// Made on first use, inside a runtime (the manager spawns its connection task there).
    manager: OnceLock<ConnectionManager>,
    /// Revoked ids → until (Unix seconds), as this replica knows them. Readers hold the lock
    /// for one lookup and writers for one insert (or one swap), never across a round trip.
    pub(super) mirror: RwLock<HashMap<Box<str>, u64>>,
    /// `mirror.len()`, so that a lookup with nothing revoked takes no lock.
    pub(super) mirrored: AtomicUsize,
    /// The subscription is live (set by the follower).
    pub(super) connected: AtomicBool,
    /// When an operation last failed, in ms since `started` (0: none since the last connect).
    failed_at: AtomicU64,
    started: Instant,
    observe: Observer,
    pub(super) on_revoked: OnRevoked,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Checks a store URL without connecting (for `tollgate check` and config loading).
pub fn check_url(url: &str) -> Result<(), String> {
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err("must be a redis:// or rediss:// URL".into());
    }
    redis::Client::open(url)
        .map(|_| ())
        .map_err(|e| format!("not a usable Redis URL: {}", e.kind_str()))
}

pub(super) trait KindStr {
    fn kind_str(&self) -> String;
}

impl KindStr for redis::RedisError {
    /// The error's kind, never the URL (it may hold a password).
    fn kind_str(&self) -> String {
        format!("{:?}", self.kind())
    }
}

/// A Lua script sent by its SHA-1 (EVALSHA), and in full only when Redis does not know it.
struct Lua {
    src: &'static str,
    sha: OnceLock<String>,
}

impl Lua {
    const fn new(src: &'static str) -> Lua {
        Lua {
            src,
            sha: OnceLock::new(),
        }
    }

    fn sha(&self) -> &str {
        self.sha.get_or_init(|| {
            let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, self.src.as_bytes());
            hex::encode(d.as_ref())
        })
    }

    fn call(&self, keys: &[&str], args: &[String]) -> redis::Cmd {
        let mut c = redis::cmd("EVALSHA");
        c.arg(self.sha()).arg(keys.len()).arg(keys).arg(args);
        c
    }

    async fn load(&self, m: &mut ConnectionManager) -> redis::RedisResult<()> {
        redis::cmd("SCRIPT")
            .arg("LOAD")
            .arg(self.src)
            .query_async::<()>(m)
            .await
    }
}

/// All of `ids` revoked until `until`, within the owner's quota and the set's bound, or none;
/// each one published. 1 when stored, 0 when refused.
static REVOKE: Lua = Lua::new(include_str!("revoke.lua"));
/// Takes `n` tokens from a shared token bucket; returns what is left (may be below zero).
static TAKE: Lua = Lua::new(include_str!("take.lua"));

/// One rate-limit bucket's share of a sync: its key, the tokens taken here since the last one.
#[derive(Debug, Clone)]
pub struct Take {
    pub key: String,
    pub taken: u32,
    pub burst: u32,
    pub per_ms: f64,
}

impl RedisStore {
    /// A store at `url`; a `rediss://` server's certificate is checked against `ca_pem` (PEM)
    /// when given, else against the built-in web roots.
    pub fn new(
        url: &str,
        prefix: &str,
        ca_pem: Option<&[u8]>,
        observe: Observer,
        on_revoked: OnRevoked,
    ) -> Result<Self, String> {
        check_url(url)?;
        let client = match ca_pem {
            None => redis::Client::open(url),
            Some(pem) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem.to_vec()),
                },
            ),
        }
        .map_err(|e| e.kind_str())?;
        Ok(RedisStore {
            client,
            prefix: prefix.to_string(),
            manager: OnceLock::new(),
            mirror: RwLock::new(HashMap::new()),
            mirrored: AtomicUsize::new(0),
            connected: AtomicBool::new(false),
            failed_at: AtomicU64::new(0),
            started: Instant::now(),
            observe,
            on_revoked,
        })
    }

    /// Subscribed, and no operation failed in the last [`BREAKER`]: requests use Redis.
    pub fn is_up(&self) -> bool {
        if !self.connected.load(Ordering::Relaxed) {
            return false;
        }
        let failed = self.failed_at.load(Ordering::Relaxed);
        failed == 0 || self.ms() >= failed + BREAKER.as_millis() as u64
    }

    fn ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64 + 1
    }

    /// Forgets past failures (the follower has just connected and loaded).
    pub(super) fn healthy(&self) {
        self.failed_at.store(0, Ordering::Relaxed);
    }

    pub(super) fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Makes the connection manager in the calling runtime if it is not made yet.
    pub(super) fn manager(&self) -> Result<ConnectionManager, StoreDown> {
        if let Some(m) = self.manager.get() {
            return Ok(m.clone());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(OP_TIMEOUT))
            .set_response_timeout(Some(BACKGROUND_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let m = ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            .map_err(|e| StoreDown(e.kind_str()))?;
        Ok(self.manager.get_or_init(|| m).clone())
    }

    /// Runs `f` against Redis within `limit`, recording how it went. A request's operation
    /// (`background` false) fails at once while the store is down.
    pub(super) async fn op<T, F, Fut>(&self, op: Op, limit: Duration, background: bool, f: F) -> Result<T, StoreDown>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        if !background && !self.is_up() {
            (self.observe)(op, None, true);
            return Err(StoreDown("the shared store is down".into()));
        }
        let started = Instant::now();
        let result = match self.manager() {
            Err(e) => Err(e),
            Ok(m) => match tokio::time::timeout(limit, f(m)).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(StoreDown(e.kind_str())),
                Err(_) => Err(StoreDown("timed out".into())),
            },
        };
        (self.observe)(op, Some(started.elapsed().as_secs_f64()), result.is_err());
        if result.is_err() {
            self.failed_at.store(self.ms(), Ordering::Relaxed);
        }
        result
    }

    /// Revokes `ids` of client `owner` until `until` at every replica; `Ok` only once Redis has
    /// stored them.
    pub async fn revoke_ids(&self, owner: &str, ids: &[&str], until: u64, now: u64) -> Result<(), Refused> {
        let set = self.key("{revoked}");
        let owner_set = self.key(&format!(
            "{{revoked}}:{}",
            hex::encode(crate::secret::sha256(&[owner.as_bytes()]))
        ));
        let mut args = vec![
            until.to_string(),
            now.to_string(),
            super::MAX_PER_OWNER.to_string(),
            MIRROR_MAX.to_string(),
            self.key("revocations"),
        ];
        args.extend(ids.iter().map(|id| id.to_string()));
        let stored: i64 = self
            .op(Op::Revoke, OP_TIMEOUT, false, |mut m| async move {
                let keys = [set.as_str(), owner_set.as_str()];
                match REVOKE.call(&keys, &args).query_async(&mut m).await {
                    Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                        REVOKE.load(&mut m).await?;
                        REVOKE.call(&keys, &args).query_async(&mut m).await
                    }
                    other => other,
                }
            })
            .await
            .map_err(|_| Refused::Down)?;
        if stored == 0 {
            return Err(Refused::Full);
        }
        for id in ids {
            self.remember(id, until, now);
        }
        Ok(())
    }

    /// Records assertion id `id` as used until `exp`: `true` the first time across replicas.
    pub async fn use_id(&self, id: &str, exp: u64) -> Result<bool, StoreDown> {
        let key = self.key(&format!("jti:{}", hex::encode(crate::secret::sha256(&[id.as_bytes()]))));
        let set: Option<String> = self
            .op(Op::UseOnce, OP_TIMEOUT, false, |mut m| async move {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(1)
                    .arg("NX")
                    .arg("EXAT")
                    .arg(exp)
                    .query_async(&mut m)
                    .await
            })
            .await?;
        Ok(set.is_some())
    }

    /// The failures counted under each of `keys` and the seconds left in its window.
    pub async fn windows(&self, keys: &[&str]) -> Result<Vec<(u64, u64)>, StoreDown> {
        let names: Vec<String> = keys.iter().map(|k| self.key(&format!("fail:{k}"))).collect();
        let replies: Vec<(Option<u64>, i64)> = self
            .op(Op::Fail, OP_TIMEOUT, false, |mut m| async move {
                let mut p = redis::pipe();
                for k in &names {
                    p.cmd("GET").arg(k).cmd("TTL").arg(k);
                }
                let flat: Vec<redis::Value> = p.query_async(&mut m).await?;
                let mut out = Vec::new();
                for pair in flat.chunks(2) {
                    let count: Option<u64> = redis::from_redis_value_ref(&pair[0])?;
                    let ttl: i64 = redis::from_redis_value_ref(&pair[1])?;
                    out.push((count, ttl));
                }
                Ok(out)
            })
            .await?;
        Ok(replies
            .into_iter()
            .map(|(count, ttl)| (count.unwrap_or(0), ttl.max(0) as u64))
            .collect())
    }

    /// Counts a failure under each of `keys` in a window of `window` seconds.
    pub async fn fail(&self, keys: &[&str], window: u64) -> Result<(), StoreDown> {
        let names: Vec<String> = keys.iter().map(|k| self.key(&format!("fail:{k}"))).collect();
        self.op(Op::Fail, OP_TIMEOUT, false, |mut m| async move {
            let mut p = redis::pipe();
            for k in &names {
                p.incr(k, 1)
                    .ignore()
                    .cmd("EXPIRE")
                    .arg(k)
                    .arg(window)
                    .arg("NX")
                    .ignore();
            }
            p.query_async::<()>(&mut m).await
        })
        .await
    }

    /// Forgets the failures under `key` (a success).
    pub async fn clear(&self, key: &str) -> Result<(), StoreDown> {
        let key = self.key(&format!("fail:{key}"));
        self.op(Op::Fail, OP_TIMEOUT, false, |mut m| async move {
            redis::cmd("DEL").arg(&key).query_async::<()>(&mut m).await
        })
        .await
    }

    /// Takes from shared rate-limit buckets what each was taken here since the last sync, in
    /// one round trip; returns what each holds now, over every replica.
    pub async fn take(&self, takes: &[Take]) -> Result<Vec<f64>, StoreDown> {
        let calls: Vec<redis::Cmd> = takes
            .iter()
            .map(|t| {
                let key = self.key(&format!("rl:{}", t.key));
                let args = [t.taken.to_string(), t.burst.to_string(), t.per_ms.to_string()];
                TAKE.call(&[&key], &args)
            })
            .collect();
        let left: Vec<String> = self
            .op(Op::RateLimit, BACKGROUND_TIMEOUT, true, |mut m| async move {
                let mut p = redis::pipe();
                for c in &calls {
                    p.add_command(c.clone());
                }
                match p.query_async(&mut m).await {
                    Err(e) if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) => {
                        TAKE.load(&mut m).await?;
                        p.query_async(&mut m).await
                    }
                    other => other,
                }
            })
            .await?;
        Ok(left.iter().map(|s| s.parse().unwrap_or(0.0)).collect())
    }

    /// Whether `id` is revoked, as this replica knows it (no round trip).
    pub fn is_revoked(&self, id: &str) -> bool {
        self.mirrored.load(Ordering::Relaxed) > 0 && self.mirror.read().contains_key(id)
    }

    pub fn mirrored(&self) -> usize {
        self.mirrored.load(Ordering::Relaxed)
    }
}

#[async_trait]
impl Store for RedisStore {
    async fn revoke(&self, owner: &str, ids: &[&str], exp: u64, now: u64) -> Result<(), Refused> {
        self.revoke_ids(owner, ids, exp, now).await
    }

    fn is_revoked(&self, jti: &str) -> bool {
        RedisStore::is_revoked(self, jti)
    }

    async fn use_once(&self, id: &str, exp: u64, _now: u64) -> Use {
        match self.use_id(id, exp).await {
            Ok(true) => Use::First,
            Ok(false) => Use::Replay,
            Err(_) => Use::Down,
        }
    }

    fn sizes(&self) -> (usize, usize) {
        (self.mirrored(), 0)
    }

    fn shared(&self) -> Option<&RedisStore> {
        Some(self)
    }
}
