//! Keeps a replica's mirror of the revocations current: subscribe, load the whole set, apply
//! each published revocation; on any failure, reconnect with backoff and do it all again.

use super::redis::{KindStr, Op, RedisStore, StoreDown, BACKGROUND_TIMEOUT, MIRROR_MAX};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// How often a live subscription (and the command connection) is checked with a PING, so that a
/// link that went silent is noticed as down within about this long.
pub const PING_EVERY: Duration = Duration::from_secs(1);
/// Longest wait between reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(2);

impl RedisStore {
    /// Adds one revocation to the mirror and evicts its tokens from the caches.
    pub(super) fn remember(&self, id: &str, until: u64, now: u64) {
        {
            let mut m = self.mirror.write();
            if m.len() >= MIRROR_MAX && !m.contains_key(id) {
                m.retain(|_, u| *u >= now);
            }
            if m.len() < MIRROR_MAX || m.contains_key(id) {
                let e = m.entry(id.into()).or_insert(until);
                *e = (*e).max(until);
            }
            self.mirrored.store(m.len(), Ordering::Relaxed);
        }
        (self.on_revoked)(&|x: &str| x == id);
    }

    /// Swaps in the mirror the set just loaded, merged with what is known here and still live
    /// (a revocation never comes undone, even if Redis lost it), then evicts what it revokes.
    fn install(&self, loaded: Vec<(String, u64)>, now: u64) {
        let mut next: HashMap<Box<str>, u64> = self
            .mirror
            .read()
            .iter()
            .filter(|(_, u)| **u >= now)
            .map(|(k, u)| (k.clone(), *u))
            .collect();
        for (id, until) in loaded {
            if next.len() >= MIRROR_MAX {
                break;
            }
            let e = next.entry(id.into()).or_insert(until);
            *e = (*e).max(until);
        }
        let len = next.len();
        *self.mirror.write() = next;
        self.mirrored.store(len, Ordering::Relaxed);
        (self.on_revoked)(&|x: &str| self.is_revoked(x));
    }

    /// Keeps the mirror current until `stop` resolves.
    pub async fn follow(self: Arc<Self>, stop: impl std::future::Future<Output = ()>) {
        // The command connection's tasks live on this (background) runtime.
        let _ = self.manager();
        tokio::pin!(stop);
        let mut failures = 0u32;
        loop {
            let result = tokio::select! {
                _ = &mut stop => return,
                result = self.follow_once(failures) => result,
            };
            if self.connected.swap(false, Ordering::Relaxed) {
                // It was up: this is a new outage, warned about and retried quickly again.
                failures = 0;
            }
            failures += 1;
            if failures == 1 || failures.is_multiple_of(30) {
                tracing::warn!(
                    failures,
                    "shared store unreachable; proxying goes on with the revocations known: {}",
                    result.0
                );
            }
            let backoff = Duration::from_millis(100u64 << failures.min(5)).min(MAX_BACKOFF);
            tokio::select! {
                _ = &mut stop => return,
                _ = tokio::time::sleep(backoff) => {}
            }
        }
    }

    /// One subscription's life: never returns but with why it ended. Subscribing comes before
    /// loading, so a revocation made in between is in the load or in a message (or both).
    async fn follow_once(&self, failures: u32) -> StoreDown {
        let down = |e: redis::RedisError| StoreDown(e.kind_str());
        let timed_out = || StoreDown("timed out".into());
        let connect = async {
            let pubsub = self.client.get_async_pubsub().await.map_err(down)?;
            let (mut sink, stream) = pubsub.split();
            sink.subscribe(self.key("revocations")).await.map_err(down)?;
            Ok::<_, StoreDown>((sink, stream))
        };
        let (mut sink, mut stream) = match tokio::time::timeout(BACKGROUND_TIMEOUT, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return e,
            Err(_) => return timed_out(),
        };
        let now = crate::http_util::now();
        let set = self.key("{revoked}");
        let loaded = self
            .op(Op::Load, BACKGROUND_TIMEOUT, true, |mut m| async move {
                redis::cmd("ZRANGEBYSCORE")
                    .arg(&set)
                    .arg(now)
                    .arg("+inf")
                    .arg("WITHSCORES")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(MIRROR_MAX)
                    .query_async::<Vec<(String, u64)>>(&mut m)
                    .await
            })
            .await;
        let loaded = match loaded {
            Ok(l) => l,
            Err(e) => return e,
        };
        let count = loaded.len();
        self.install(loaded, now);
        self.healthy();
        self.connected.store(true, Ordering::Relaxed);
        tracing::info!(
            revocations = count,
            after_failures = failures,
            "shared store connected; revocations loaded"
        );
        let mut tick = tokio::time::interval(PING_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                msg = stream.next() => {
                    let Some(msg) = msg else { return StoreDown("subscription ended".into()) };
                    self.apply(msg);
                }
                _ = tick.tick() => {
                    match tokio::time::timeout(PING_EVERY, sink.ping::<redis::Value>()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return down(e),
                        Err(_) => return timed_out(),
                    }
                    // The command connection too: a failure opens the breaker for requests.
                    let _ = self
                        .op(Op::Ping, PING_EVERY, true, |mut m| async move {
                            redis::cmd("PING").query_async::<String>(&mut m).await
                        })
                        .await;
                }
            }
        }
    }

    fn apply(&self, msg: redis::Msg) {
        let Ok(payload) = msg.get_payload::<String>() else {
            return;
        };
        if let Some((until, id)) = payload.split_once(' ') {
            if let Ok(until) = until.parse::<u64>() {
                self.remember(id, until, crate::http_util::now());
            }
        }
    }
}
