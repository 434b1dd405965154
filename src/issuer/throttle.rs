//! Failed client authentications, counted so that an attacker slows down its own guessing and
//! nobody else's logins.
//!
//! A failure counts against the pair (client id, source address) and, when it was a guess at a
//! credential, against the client id over every address. A pair that reaches
//! `auth_failures_per_minute` is refused with 429 before its credentials are checked; a client
//! id is refused at every address only once its failures everywhere reach ten times that. No
//! key is per address alone, so made-up ids from one address never lock out the real clients
//! behind it. The counts sit behind [`FailureCounter`]: in memory here, in Redis with a shared
//! store (`shared_counter.rs`).

use async_trait::async_trait;
use parking_lot::Mutex;
use std::collections::HashMap;

/// Length of a counting window, in seconds.
pub const WINDOW: u64 = 60;
/// Failures of a client id over every address that refuse it everywhere, as a multiple of the
/// per-address limit.
pub const CLIENT_WIDE_FACTOR: u32 = 10;
/// Keys the in-memory counter holds at most.
pub const MEMORY_KEYS: usize = 50_000;

/// The counter could not be reached (a shared store that is down): the caller answers 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unavailable;

/// Failures of a key in its current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Window {
    pub count: u32,
    /// Seconds until the window closes (0 for a key with no live window).
    pub resets_in: u64,
}

/// Fixed-window failure counts by key: in memory here, in a shared store (INCR with EXPIRE)
/// when replicas share them.
#[async_trait]
pub trait FailureCounter: Send + Sync {
    /// The live window of each of `keys`, in order.
    async fn windows(&self, keys: &[&str], now: u64) -> Result<Vec<Window>, Unavailable>;
    /// Counts one failure against each of `keys`.
    async fn fail(&self, keys: &[&str], now: u64) -> Result<(), Unavailable>;
    /// Forgets `key`.
    async fn reset(&self, key: &str) -> Result<(), Unavailable>;
    /// Keys held, where the counter can tell.
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a failed authentication was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// A wrong secret or a bad signature: a guess at a credential, counted per (client id,
    /// address) and per client id.
    Guess,
    /// A request that could not have succeeded whatever the credential (an assertion that is
    /// not well formed or names a client without keys, a replay): counted per (client id,
    /// address) only, so it cannot push a client towards the lockout at every address.
    NotAGuess,
}

/// A check that let an attempt through: whether its pair has failures a success would forget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    pub pair_failures: u32,
}

/// Why authentication is not attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Throttled { retry_after: u64 },
    Unavailable,
}

/// Who is authenticating: the realm, the client id presented, the client's address.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    pub realm: &'a str,
    pub client_id: &'a str,
    pub addr: &'a str,
}

impl Attempt<'_> {
    /// Fixed-length keys (a presented client id can be as long as a form body), one namespace
    /// apiece so no id can spell another's key.
    fn keys(&self) -> (String, String) {
        let pair = crate::secret::sha256(&[
            b"pair",
            self.realm.as_bytes(),
            self.addr.as_bytes(),
            self.client_id.as_bytes(),
        ]);
        let wide = crate::secret::sha256(&[b"client", self.realm.as_bytes(), self.client_id.as_bytes()]);
        (hex::encode(pair), hex::encode(wide))
    }
}

/// The throttle policy over a [`FailureCounter`].
pub struct Throttle {
    counter: Box<dyn FailureCounter>,
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(Box::new(MemoryCounter::new(MEMORY_KEYS)))
    }
}

impl Throttle {
    pub fn new(counter: Box<dyn FailureCounter>) -> Self {
        Throttle { counter }
    }

    /// Whether `a` may try to authenticate now, `limit` being `auth_failures_per_minute`.
    pub async fn check(&self, a: &Attempt<'_>, limit: u32, now: u64) -> Result<Checked, Refusal> {
        let (pair, wide) = a.keys();
        let w = self
            .counter
            .windows(&[&pair, &wide], now)
            .await
            .map_err(|_| Refusal::Unavailable)?;
        let limits = [limit, limit.saturating_mul(CLIENT_WIDE_FACTOR)];
        let retry_after = w
            .iter()
            .zip(limits)
            .filter(|(w, limit)| w.count >= *limit)
            .map(|(w, _)| w.resets_in.max(1))
            .max();
        match retry_after {
            Some(retry_after) => Err(Refusal::Throttled { retry_after }),
            None => Ok(Checked {
                pair_failures: w.first().map_or(0, |w| w.count),
            }),
        }
    }

    pub async fn failed(&self, a: &Attempt<'_>, kind: Failure, now: u64) -> Result<(), Unavailable> {
        let (pair, wide) = a.keys();
        match kind {
            Failure::Guess => self.counter.fail(&[&pair, &wide], now).await,
            Failure::NotAGuess => self.counter.fail(&[&pair], now).await,
        }
    }

    /// A success forgets the failures of its own (client id, address) alone: a login elsewhere
    /// does not wipe an attacker's count, nor does it lift the client-wide one. With none seen at
    /// the check there is nothing to forget (and no round trip to a shared counter).
    pub async fn succeeded(&self, a: &Attempt<'_>, checked: Checked) -> Result<(), Unavailable> {
        if checked.pair_failures == 0 {
            return Ok(());
        }
        self.counter.reset(&a.keys().0).await
    }

    pub fn len(&self) -> usize {
        self.counter.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Entry {
    start: u64,
    count: u32,
    /// When the key was last counted or checked, in [`Table::clock`] ticks.
    touched: u64,
}

struct Table {
    map: HashMap<Box<str>, Entry>,
    clock: u64,
}

/// A bounded in-memory [`FailureCounter`]. When full, expired windows go first, then the
/// eighth of the keys least recently counted or checked: a key under attack is touched by
/// every attempt, so it is never the one forgotten, and a new key is always counted.
pub struct MemoryCounter {
    table: Mutex<Table>,
    capacity: usize,
}

impl MemoryCounter {
    pub fn new(capacity: usize) -> Self {
        MemoryCounter {
            table: Mutex::new(Table {
                map: HashMap::new(),
                clock: 0,
            }),
            capacity: capacity.max(8),
        }
    }

    fn make_room(&self, t: &mut Table, now: u64) {
        t.map.retain(|_, e| now < e.start + WINDOW);
        if t.map.len() < self.capacity {
            return;
        }
        let mut ticks: Vec<u64> = t.map.values().map(|e| e.touched).collect();
        let cut = ticks.len() / 8;
        let (_, nth, _) = ticks.select_nth_unstable(cut);
        let threshold = *nth;
        t.map.retain(|_, e| e.touched > threshold);
    }
}

#[async_trait]
impl FailureCounter for MemoryCounter {
    async fn windows(&self, keys: &[&str], now: u64) -> Result<Vec<Window>, Unavailable> {
        let mut t = self.table.lock();
        t.clock += 1;
        let clock = t.clock;
        Ok(keys
            .iter()
            .map(|k| match t.map.get_mut(*k) {
                Some(e) if now < e.start + WINDOW => {
                    e.touched = clock;
                    Window {
                        count: e.count,
                        resets_in: e.start + WINDOW - now,
                    }
                }
                _ => Window::default(),
            })
            .collect())
    }

    async fn fail(&self, keys: &[&str], now: u64) -> Result<(), Unavailable> {
        let mut t = self.table.lock();
        for k in keys {
            t.clock += 1;
            let clock = t.clock;
            if !t.map.contains_key(*k) && t.map.len() >= self.capacity {
                self.make_room(&mut t, now);
            }
            let e = t.map.entry((*k).into()).or_insert(Entry {
                start: now,
                count: 0,
                touched: clock,
            });
            if now >= e.start + WINDOW {
                e.start = now;
                e.count = 0;
            }
            e.count = e.count.saturating_add(1);
            e.touched = clock;
        }
        Ok(())
    }

    async fn reset(&self, key: &str) -> Result<(), Unavailable> {
        self.table.lock().map.remove(key);
        Ok(())
    }

    fn len(&self) -> usize {
        self.table.lock().map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at<'a>(id: &'a str, addr: &'a str) -> Attempt<'a> {
        Attempt {
            realm: "demo",
            client_id: id,
            addr,
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    async fn fail_n(t: &Throttle, a: &Attempt<'_>, kind: Failure, n: u32, now: u64) {
        for _ in 0..n {
            t.failed(a, kind, now).await.unwrap();
        }
    }

    #[test]
    fn a_pair_is_refused_at_the_limit_until_its_window_closes() {
        block_on(async {
            let t = Throttle::default();
            let a = at("c", "10.0.0.1");
            fail_n(&t, &a, Failure::Guess, 2, 100).await;
            assert!(t.check(&a, 3, 100).await.is_ok());
            fail_n(&t, &a, Failure::Guess, 1, 100).await;
            assert_eq!(t.check(&a, 3, 110).await, Err(Refusal::Throttled { retry_after: 50 }));
            assert!(t.check(&at("c", "10.0.0.2"), 3, 110).await.is_ok(), "another address");
            assert!(t.check(&at("d", "10.0.0.1"), 3, 110).await.is_ok(), "another client");
            assert!(t.check(&a, 3, 160).await.is_ok(), "the window closed");
        });
    }

    #[test]
    fn a_client_is_refused_everywhere_past_ten_times_the_limit() {
        block_on(async {
            let t = Throttle::default();
            let addrs: Vec<String> = (0..10).map(|i| format!("10.0.0.{i}")).collect();
            for addr in &addrs[..9] {
                fail_n(&t, &at("c", addr), Failure::Guess, 3, 100).await;
            }
            assert!(t.check(&at("c", "192.0.2.1"), 3, 100).await.is_ok(), "27 < 30");
            fail_n(&t, &at("c", &addrs[9]), Failure::Guess, 3, 100).await;
            assert!(t.check(&at("c", "192.0.2.1"), 3, 100).await.is_err(), "30 everywhere");
            assert!(t.check(&at("d", "192.0.2.1"), 3, 100).await.is_ok());
        });
    }

    #[test]
    fn failures_that_are_no_guess_count_for_the_pair_alone() {
        block_on(async {
            let t = Throttle::default();
            for i in 0..40 {
                fail_n(&t, &at("c", &format!("10.0.1.{i}")), Failure::NotAGuess, 3, 100).await;
            }
            assert!(t.check(&at("c", "10.0.1.0"), 3, 100).await.is_err());
            assert!(t.check(&at("c", "192.0.2.1"), 3, 100).await.is_ok());
        });
    }

    #[test]
    fn a_success_resets_its_own_pair_only() {
        block_on(async {
            let t = Throttle::default();
            let attacker = at("c", "10.0.0.66");
            let owner = at("c", "10.0.0.1");
            fail_n(&t, &attacker, Failure::Guess, 2, 100).await;
            fail_n(&t, &owner, Failure::Guess, 2, 100).await;
            let checked = t.check(&owner, 3, 100).await.unwrap();
            assert_eq!(checked.pair_failures, 2);
            t.succeeded(&owner, checked).await.unwrap();
            fail_n(&t, &attacker, Failure::Guess, 1, 100).await;
            assert!(t.check(&attacker, 3, 100).await.is_err(), "the attacker's count stayed");
            fail_n(&t, &owner, Failure::Guess, 2, 100).await;
            assert_eq!(
                t.check(&owner, 3, 100).await,
                Ok(Checked { pair_failures: 2 }),
                "the owner's was reset"
            );
        });
    }

    #[test]
    fn a_key_under_attack_stays_counted_while_a_flood_fills_the_table() {
        block_on(async {
            let t = Throttle::new(Box::new(MemoryCounter::new(64)));
            let attacked = at("victim", "10.0.0.66");
            fail_n(&t, &attacked, Failure::Guess, 3, 100).await;
            for i in 0..5_000 {
                let id = format!("made-up-{i}");
                t.failed(&at(&id, "10.0.0.66"), Failure::Guess, 100).await.unwrap();
                if i % 10 == 0 {
                    assert!(t.check(&attacked, 3, 100).await.is_err(), "forgotten after {i} keys");
                }
                assert!(t.len() <= 64);
            }
            // The newest keys are counted too: the table never stops counting.
            let last = at("made-up-4999", "10.0.0.66");
            fail_n(&t, &last, Failure::Guess, 2, 100).await;
            assert!(t.check(&last, 3, 100).await.is_err());
        });
    }

    #[test]
    fn long_client_ids_make_keys_of_one_size() {
        let long = "x".repeat(60_000);
        let (pair, wide) = at(&long, "10.0.0.1").keys();
        assert_eq!((pair.len(), wide.len()), (64, 64));
        assert_ne!(at("a", "1").keys().0, at("a1", "").keys().0);
    }
}
