//! The shared store on Redis (or Valkey): revocations, used assertion ids and failure counters
//! that every replica sees. A proxied request never waits on Redis: revocations are mirrored in
//! memory, loaded at connect and kept current through publish/subscribe.
//!
//! Keys (all under `key_prefix`, each expiring when what it stands for would have expired):
//! `revoked` (a sorted set: revoked id → Unix second until which it is revoked, the key's own
//! expiry the latest of them), `jti:<id>` (a used assertion id, `SET NX EXAT`), `fail:<key>`
//! (a failure counter, `INCR` with a 60 s expiry). Revocations are published on `revocations`
//! as `"<until> <id>"`.

use parking_lot::Mutex;
use redis::aio::ConnectionManager;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Longest a request waits on one Redis operation.
pub const OP_TIMEOUT: Duration = Duration::from_millis(100);
/// Revocations mirrored at most (the same bound as the in-memory store's table).
pub const MIRROR_MAX: usize = 100_000;

/// Why the store could not answer: the caller refuses what it cannot decide safely (503).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreDown(pub String);

/// What an operation was, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Revoke,
    UseOnce,
    Fail,
    Load,
}

impl Op {
    pub fn label(self) -> &'static str {
        match self {
            Op::Revoke => "revoke",
            Op::UseOnce => "use_once",
            Op::Fail => "fail",
            Op::Load => "load",
        }
    }
}

/// Called for each operation: (operation, seconds it took, whether it failed).
pub type Observer = Box<dyn Fn(Op, f64, bool) + Send + Sync>;
/// Called with each revoked id that reaches this replica (to evict it from caches).
pub type OnRevoked = Box<dyn Fn(&str) + Send + Sync>;

pub struct RedisStore {
    client: redis::Client,
    prefix: String,
    /// Made on first use, inside a runtime (the manager spawns its connection task there).
    manager: OnceLock<ConnectionManager>,
    /// Revoked ids → until (Unix seconds), as this replica knows them.
    mirror: Mutex<HashMap<Box<str>, u64>>,
    up: AtomicBool,
    observe: Observer,
    on_revoked: OnRevoked,
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

trait KindStr {
    fn kind_str(&self) -> String;
}

impl KindStr for redis::RedisError {
    /// The error's kind and detail, never the URL (it may hold a password).
    fn kind_str(&self) -> String {
        format!("{:?}", self.kind())
    }
}

impl RedisStore {
    pub fn new(url: &str, prefix: &str, observe: Observer, on_revoked: OnRevoked) -> Result<Self, String> {
        check_url(url)?;
        let client = redis::Client::open(url).map_err(|e| e.kind_str())?;
        Ok(RedisStore {
            client,
            prefix: prefix.to_string(),
            manager: OnceLock::new(),
            mirror: Mutex::new(HashMap::new()),
            up: AtomicBool::new(false),
            observe,
            on_revoked,
        })
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    fn manager(&self) -> Result<ConnectionManager, StoreDown> {
        if let Some(m) = self.manager.get() {
            return Ok(m.clone());
        }
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(OP_TIMEOUT))
            .set_response_timeout(Some(OP_TIMEOUT))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        let m = ConnectionManager::new_lazy_with_config(self.client.clone(), config)
            .map_err(|e| StoreDown(e.kind_str()))?;
        Ok(self.manager.get_or_init(|| m).clone())
    }

    /// Runs `f` against Redis within [`OP_TIMEOUT`], recording how it went.
    async fn op<T, F, Fut>(&self, op: Op, f: F) -> Result<T, StoreDown>
    where
        F: FnOnce(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let started = Instant::now();
        let result = match self.manager() {
            Err(e) => Err(e),
            Ok(m) => match tokio::time::timeout(OP_TIMEOUT, f(m)).await {
                Ok(Ok(v)) => Ok(v),
                Ok(Err(e)) => Err(StoreDown(e.kind_str())),
                Err(_) => Err(StoreDown("timed out".into())),
            },
        };
        (self.observe)(op, started.elapsed().as_secs_f64(), result.is_err());
        if result.is_err() {
            self.up.store(false, Ordering::Relaxed);
        }
        result
    }

    /// Revokes `id` until `until` at every replica; `Ok` only once Redis has stored it.
    pub async fn revoke(&self, id: &str, until: u64, now: u64) -> Result<(), StoreDown> {
        let set = self.key("revoked");
        let channel = self.key("revocations");
        let message = format!("{until} {id}");
        self.op(Op::Revoke, |mut m| async move {
            redis::pipe()
                .atomic()
                .cmd("ZADD")
                .arg(&set)
                .arg("GT")
                .arg(until)
                .arg(id)
                .ignore()
                .cmd("ZREMRANGEBYSCORE")
                .arg(&set)
                .arg("-inf")
                .arg(format!("({now}"))
                .ignore()
                .cmd("EXPIREAT")
                .arg(&set)
                .arg(until)
                .arg("GT")
                .ignore()
                // EXPIREAT GT leaves a key without an expiry alone: give it one.
                .cmd("EXPIREAT")
                .arg(&set)
                .arg(until)
                .arg("NX")
                .ignore()
                .publish(&channel, &message)
                .ignore()
                .query_async::<()>(&mut m)
                .await
        })
        .await?;
        self.remember(id, until, now);
        Ok(())
    }

    /// Records assertion id `id` as used until `exp`: `true` the first time across replicas.
    pub async fn use_once(&self, id: &str, exp: u64) -> Result<bool, StoreDown> {
        let key = self.key(&format!("jti:{id}"));
        let set: Option<String> = self
            .op(Op::UseOnce, |mut m| async move {
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

    /// Counts a failure under `key` in a window of `window` seconds; returns the count so far.
    pub async fn fail(&self, key: &str, window: u64) -> Result<u64, StoreDown> {
        let key = self.key(&format!("fail:{key}"));
        let (count,): (u64,) = self
            .op(Op::Fail, |mut m| async move {
                redis::pipe()
                    .atomic()
                    .incr(&key, 1)
                    .cmd("EXPIRE")
                    .arg(&key)
                    .arg(window)
                    .arg("NX")
                    .ignore()
                    .query_async(&mut m)
                    .await
            })
            .await?;
        Ok(count)
    }

    /// Failures counted under `key` in its current window (0 when none).
    pub async fn failures(&self, key: &str) -> Result<u64, StoreDown> {
        let key = self.key(&format!("fail:{key}"));
        let n: Option<u64> = self
            .op(Op::Fail, |mut m| async move {
                redis::cmd("GET").arg(&key).query_async(&mut m).await
            })
            .await?;
        Ok(n.unwrap_or(0))
    }

    /// Forgets the failures under `key` (a success).
    pub async fn clear(&self, key: &str) -> Result<(), StoreDown> {
        let key = self.key(&format!("fail:{key}"));
        self.op(Op::Fail, |mut m| async move {
            redis::cmd("DEL").arg(&key).query_async::<()>(&mut m).await
        })
        .await
    }

    /// Whether `id` is revoked, as this replica knows it (no round trip).
    pub fn is_revoked(&self, id: &str) -> bool {
        let m = self.mirror.lock();
        !m.is_empty() && m.contains_key(id)
    }

    pub fn mirrored(&self) -> usize {
        self.mirror.lock().len()
    }

    fn remember(&self, id: &str, until: u64, now: u64) {
        {
            let mut m = self.mirror.lock();
            if m.len() >= MIRROR_MAX {
                m.retain(|_, u| *u >= now);
            }
            if m.len() < MIRROR_MAX || m.contains_key(id) {
                let e = m.entry(id.into()).or_insert(until);
                *e = (*e).max(until);
            }
        }
        (self.on_revoked)(id);
    }

    /// Keeps the mirror current until `stop` resolves: subscribe, then load the whole set (so
    /// nothing revoked in between is missed), then apply each message; on any error, mark the
    /// store down and start again after a backoff.
    pub async fn follow(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        let mut failures = 0u32;
        loop {
            let round = self.follow_once();
            tokio::select! {
                _ = &mut stop => return,
                result = round => {
                    self.up.store(false, Ordering::Relaxed);
                    if let Err(e) = result {
                        failures += 1;
                        if failures == 1 || failures.is_multiple_of(30) {
                            tracing::warn!(failures, "shared store unreachable; proxying goes on with the revocations known: {}", e.0);
                        }
                    }
                }
            }
            let backoff = Duration::from_millis(100u64 << failures.min(5)).min(Duration::from_secs(2));
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(backoff) => {}
            }
        }
    }

    async fn follow_once(&self) -> Result<(), StoreDown> {
        use futures_util::StreamExt;
        let down = |e: redis::RedisError| StoreDown(e.kind_str());
        let mut pubsub = tokio::time::timeout(Duration::from_secs(2), self.client.get_async_pubsub())
            .await
            .map_err(|_| StoreDown("connect timed out".into()))?
            .map_err(down)?;
        pubsub.subscribe(self.key("revocations")).await.map_err(down)?;
        let now = crate::http_util::now();
        let set = self.key("revoked");
        let loaded: Vec<(String, u64)> = self
            .op(Op::Load, |mut m| async move {
                redis::cmd("ZRANGEBYSCORE")
                    .arg(&set)
                    .arg(now)
                    .arg("+inf")
                    .arg("WITHSCORES")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(MIRROR_MAX)
                    .query_async(&mut m)
                    .await
            })
            .await?;
        let count = loaded.len();
        for (id, until) in loaded {
            self.remember(&id, until, now);
        }
        self.up.store(true, Ordering::Relaxed);
        tracing::info!(revocations = count, "shared store connected; revocations loaded");
        let mut messages = pubsub.on_message();
        while let Some(msg) = messages.next().await {
            let Ok(payload) = msg.get_payload::<String>() else {
                continue;
            };
            if let Some((until, id)) = payload.split_once(' ') {
                if let Ok(until) = until.parse::<u64>() {
                    self.remember(id, until, crate::http_util::now());
                }
            }
        }
        Err(StoreDown("subscription ended".into()))
    }
}
