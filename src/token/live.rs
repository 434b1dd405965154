//! The live keys of a remote realm: published by its key engine off the request path, read by
//! the guard on every request with one atomic load.

use super::KeySet;
use arc_swap::ArcSwapOption;
use parking_lot::Mutex;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// Refetches that an unknown `kid` may cause: at most one per this long per realm.
pub const REFETCH_EVERY: Duration = Duration::from_secs(30);
/// Kids remembered as unknown after a refetch (forgotten at the next successful fetch).
const NEGATIVE_MAX: usize = 4096;
/// Kids a refetch in progress remembers, to mark the ones it did not bring as unknown.
const PENDING_MAX: usize = 64;

/// A set of keys as fetched, and when (Unix seconds).
#[derive(Debug)]
pub struct Fetched {
    pub keys: KeySet,
    pub at: u64,
}

/// How the last fetch went, for `/readyz` and logs.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub attempts: u64,
    pub last_attempt: u64,
    /// `None` after a success; the reason after a failure (no secret or body in it).
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Refetch {
    in_flight: bool,
    last: Option<Instant>,
    pending: HashSet<String>,
    negative: HashSet<String>,
}

/// Why a realm's keys cannot be used now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable {
    /// Seconds until the engine tries again.
    pub retry_after: u64,
}

pub struct LiveKeys {
    current: ArcSwapOption<Fetched>,
    /// Unix seconds of the last successful fetch (0: never).
    last_success: AtomicU64,
    failing: AtomicBool,
    next_attempt: AtomicU64,
    status: Mutex<Status>,
    refetch: Mutex<Refetch>,
    wake: Notify,
    generation: watch::Sender<u64>,
}

impl Default for LiveKeys {
    fn default() -> Self {
        LiveKeys {
            current: ArcSwapOption::empty(),
            last_success: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            next_attempt: AtomicU64::new(0),
            status: Mutex::new(Status::default()),
            refetch: Mutex::new(Refetch::default()),
            wake: Notify::new(),
            generation: watch::channel(0).0,
        }
    }
}

impl std::fmt::Debug for LiveKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveKeys")
            .field("keys", &self.current.load().as_ref().map(|k| k.keys.len()))
            .finish_non_exhaustive()
    }
}

impl LiveKeys {
    /// The keys to verify with at `now`, unless there are none yet, or fetches have failed
    /// for longer than `max_stale` since the last success.
    pub fn usable(&self, now: u64, max_stale: Duration) -> Result<Arc<Fetched>, Unavailable> {
        let unavailable = || Unavailable {
            retry_after: self
                .next_attempt
                .load(Ordering::Relaxed)
                .saturating_sub(now)
                .clamp(1, 60),
        };
        let current = self.current.load_full().ok_or_else(unavailable)?;
        if self.failing.load(Ordering::Relaxed)
            && now.saturating_sub(self.last_success.load(Ordering::Relaxed)) > max_stale.as_secs()
        {
            return Err(unavailable());
        }
        Ok(current)
    }

    /// The last keys fetched, usable or not (for `/readyz`).
    pub fn peek(&self) -> Option<Arc<Fetched>> {
        self.current.load_full()
    }

    pub fn status(&self) -> Status {
        self.status.lock().clone()
    }

    /// Asks for a refetch because a token named `kid`, which the keys lack. Returns what to
    /// wait on for the refetch's end, or `None` when no refetch will come: the kid was already
    /// looked for, or the realm refetched less than [`REFETCH_EVERY`] ago. A refetch in
    /// progress is shared by every request that asks.
    pub fn refetch_for(&self, kid: &str) -> Option<watch::Receiver<u64>> {
        let mut r = self.refetch.lock();
        if r.negative.contains(kid) {
            return None;
        }
        if !r.in_flight {
            if r.last.is_some_and(|t| t.elapsed() < REFETCH_EVERY) {
                return None;
            }
            r.in_flight = true;
            r.last = Some(Instant::now());
            self.wake.notify_one();
        }
        if r.pending.len() < PENDING_MAX {
            r.pending.insert(kid.to_string());
        }
        Some(self.generation.subscribe())
    }

    /// While the first fetch is still under way, what to wait on for its end (a request that
    /// comes right after start need not be refused for keys that are a few milliseconds away).
    pub fn first_fetch(&self) -> Option<watch::Receiver<u64>> {
        let rx = self.generation.subscribe();
        (self.status.lock().attempts == 0).then_some(rx)
    }

    /// Resolves when a request has asked for a refetch (the engine waits on it between fetches).
    pub async fn woken(&self) {
        self.wake.notified().await
    }

    /// The engine's report of a successful fetch.
    pub fn publish(&self, keys: KeySet, now: u64) {
        {
            let mut r = self.refetch.lock();
            r.negative.clear();
            let pending = std::mem::take(&mut r.pending);
            if r.in_flight {
                for kid in pending.into_iter().filter(|k| keys.get(k).is_none()) {
                    if r.negative.len() < NEGATIVE_MAX {
                        r.negative.insert(kid);
                    }
                }
            }
            r.in_flight = false;
        }
        self.current.store(Some(Arc::new(Fetched { keys, at: now })));
        self.last_success.store(now, Ordering::Relaxed);
        self.failing.store(false, Ordering::Relaxed);
        self.note(now, None);
    }

    /// The engine's report of a failed fetch: the last keys stay, until `max_stale`.
    pub fn failed(&self, now: u64, why: String) {
        {
            let mut r = self.refetch.lock();
            r.in_flight = false;
            r.pending.clear();
        }
        self.failing.store(true, Ordering::Relaxed);
        self.note(now, Some(why));
    }

    /// When the engine will try next (for `Retry-After`).
    pub fn set_next_attempt(&self, at: u64) {
        self.next_attempt.store(at, Ordering::Relaxed);
    }

    fn note(&self, now: u64, error: Option<String>) {
        {
            let mut s = self.status.lock();
            s.attempts += 1;
            s.last_attempt = now;
            s.last_error = error;
        }
        self.generation.send_modify(|g| *g += 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_usable_until_fetches_have_failed_for_max_stale() {
        let live = LiveKeys::default();
        let stale = Duration::from_secs(100);
        live.set_next_attempt(1_010);
        assert_eq!(live.usable(1_000, stale).unwrap_err(), Unavailable { retry_after: 10 });
        live.publish(KeySet::default(), 1_000);
        assert!(live.usable(5_000, stale).is_ok(), "no failure: no staleness");
        live.failed(1_050, "connection refused".into());
        assert!(live.usable(1_100, stale).is_ok(), "failing, within max_stale");
        assert!(live.usable(1_101, stale).is_err(), "failing past max_stale");
        live.publish(KeySet::default(), 1_200);
        assert!(live.usable(1_400, stale).is_ok());
        assert_eq!(live.status().last_error, None);
    }

    #[test]
    fn unknown_kids_share_one_refetch_and_then_cost_nothing() {
        let live = LiveKeys::default();
        live.publish(KeySet::default(), 1);
        let first = live.refetch_for("new");
        assert!(first.is_some(), "the first unknown kid asks for a refetch");
        assert!(live.refetch_for("other").is_some(), "joins the refetch in flight");
        live.publish(KeySet::default(), 2);
        assert!(first.unwrap().has_changed().unwrap(), "waiters see the refetch end");
        assert!(
            live.refetch_for("new").is_none(),
            "still unknown after the refetch: negative"
        );
        assert!(live.refetch_for("third").is_none(), "within 30 s of the last refetch");
    }
}
