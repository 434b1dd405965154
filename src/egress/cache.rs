//! The egress token cache: one entry per token source (and its parameters), shared by every
//! route that names it. A token is handed out until its refresh point and refreshed in the
//! background while it keeps serving; concurrent requests share one fetch; failed fetches are
//! retried with backoff and jitter; a token past its usable end is never handed out.

use super::source::{self, Obtained, SourceError};
use crate::model::egress::{EgressRoute, SourceKey, TokenSource};
use crate::state::State;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Longest a request waits for a token fetch in progress: a fetch's own time limit, plus a little.
pub const WAIT: Duration = Duration::from_millis(crate::outbound::TIMEOUT.as_millis() as u64 + 500);
/// A token is refreshed 30 s before it expires, or at three quarters of its lifetime if that
/// is sooner...
const REFRESH_BEFORE_EXP: Duration = Duration::from_secs(30);
/// ...but never before half of it, so a token that lives under a minute is still reused.
const MIN_REFRESH_FRACTION: f64 = 0.5;
/// A token stops being handed out this long before it expires (or a tenth of its lifetime, if
/// less), so it does not expire on its way to the upstream.
const EXPIRY_MARGIN: Duration = Duration::from_secs(5);
/// An upstream's 401 drops a token fetched for an earlier 401 only after this long, so an
/// upstream that refuses every token costs the token endpoint one fetch per this long.
const FORCED_REFRESH_EVERY: Duration = Duration::from_secs(5);
/// Longest wait between attempts while fetches fail.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Warnings about one source's failed fetches: at most one per this long.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// A cached token. Its `Debug` prints no part of it.
pub struct Token {
    /// `Bearer <token>`, marked sensitive.
    pub header: http::HeaderValue,
    pub obtained: Instant,
    pub refresh_at: Instant,
    pub usable_until: Instant,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(***)")
    }
}

impl Token {
    /// A token obtained from a request that started at `asked`.
    fn new(o: &Obtained, asked: Instant) -> Option<Token> {
        let (refresh_in, usable_for) = schedule(o.lifetime);
        let mut header = http::HeaderValue::from_str(&format!("Bearer {}", o.access_token.expose())).ok()?;
        header.set_sensitive(true);
        Some(Token {
            header,
            obtained: asked,
            refresh_at: asked + refresh_in,
            usable_until: asked + usable_for,
        })
    }
}

/// When a token of `lifetime` is refreshed, and how long it is handed out, from when it was
/// asked for.
pub fn schedule(lifetime: Duration) -> (Duration, Duration) {
    let three_quarters = lifetime.mul_f64(0.75);
    let before_exp = lifetime.saturating_sub(REFRESH_BEFORE_EXP);
    let refresh = three_quarters
        .min(before_exp)
        .max(lifetime.mul_f64(MIN_REFRESH_FRACTION));
    let usable = lifetime.saturating_sub(EXPIRY_MARGIN.min(lifetime / 10));
    (refresh, usable)
}

/// 0.5 s, 1 s, 2 s ... up to [`MAX_BACKOFF`], with ±25% jitter.
pub fn backoff(failures: u32) -> Duration {
    let base = Duration::from_millis(500u64 << failures.saturating_sub(1).min(5));
    let jitter = 0.75 + rand::random::<f64>() * 0.5;
    base.min(MAX_BACKOFF).mul_f64(jitter)
}

/// No token can be handed out now.
#[derive(Debug, Clone, Copy)]
pub struct NoToken {
    /// Until the next fetch attempt.
    pub retry_after: Duration,
}

#[derive(Default)]
struct Slot {
    token: Option<Arc<Token>>,
    fetching: bool,
    failures: u32,
    retry_at: Option<Instant>,
    /// A request used the token, or asked for one, since the last fetch ended: only such an
    /// entry is refreshed in the background, so an unused source stops costing fetches.
    wanted: bool,
    last_forced: Option<Instant>,
    last_warning: Option<Instant>,
    /// The `route` label: the first route of the served config that uses the source.
    label: String,
}

impl Slot {
    /// Whether a new fetch may start now: none running, and the backoff over.
    fn may_fetch(&self, now: Instant) -> bool {
        !self.fetching && self.retry_at.is_none_or(|r| now >= r)
    }
}

/// One token source's cached token.
pub struct Entry {
    source: Arc<TokenSource>,
    http: OnceLock<Result<reqwest::Client, String>>,
    slot: Mutex<Slot>,
    changed: watch::Sender<u64>,
}

impl Entry {
    fn new(source: Arc<TokenSource>, label: &str) -> Entry {
        Entry {
            source,
            http: OnceLock::new(),
            slot: Mutex::new(Slot {
                label: label.to_string(),
                ..Slot::default()
            }),
            changed: watch::channel(0).0,
        }
    }

    pub fn source(&self) -> &TokenSource {
        &self.source
    }

    /// A usable token: the cached one (a refresh is started in the background once it is due),
    /// or one fetched now, waited for up to [`WAIT`] together with every other request waiting.
    pub async fn token(self: &Arc<Self>, state: &Arc<State>) -> Result<Arc<Token>, NoToken> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let mut rx = {
                let mut s = self.slot.lock();
                let now = Instant::now();
                s.wanted = true;
                if let Some(t) = s.token.as_ref().filter(|t| now < t.usable_until).cloned() {
                    if now >= t.refresh_at && s.may_fetch(now) {
                        self.start(&mut s, state);
                    }
                    return Ok(t);
                }
                if s.may_fetch(now) {
                    self.start(&mut s, state);
                }
                if !s.fetching {
                    let retry_after = s.retry_at.map_or(Duration::ZERO, |r| r.saturating_duration_since(now));
                    return Err(NoToken { retry_after });
                }
                self.changed.subscribe()
            };
            if tokio::time::timeout_at(deadline, rx.changed()).await.is_err() {
                return Err(NoToken {
                    retry_after: Duration::from_secs(1),
                });
            }
        }
    }

    /// An upstream answered 401 to `sent`: drops it, unless a token fetched for an earlier 401
    /// is that recent. Returns whether a retry would carry another token.
    pub fn unauthorized(&self, sent: &Arc<Token>) -> bool {
        let mut s = self.slot.lock();
        let now = Instant::now();
        match &s.token {
            Some(t) if Arc::ptr_eq(t, sent) => {
                if s.last_forced
                    .is_some_and(|f| now.duration_since(f) < FORCED_REFRESH_EVERY)
                {
                    return false;
                }
                s.last_forced = Some(now);
                s.token = None;
                // A 401 is news the backoff did not account for.
                s.retry_at = None;
                true
            }
            _ => true,
        }
    }

    /// Starts a fetch in its own task (a request that stops waiting does not cancel it).
    fn start(self: &Arc<Self>, s: &mut Slot, state: &Arc<State>) {
        s.fetching = true;
        let (entry, state) = (self.clone(), state.clone());
        tokio::spawn(async move { entry.fetch(&state).await });
    }

    async fn fetch(&self, state: &State) {
        let asked = Instant::now();
        let result = match self.http_client() {
            Ok(http) => source::obtain(state, &self.source, http).await,
            Err(e) => Err(SourceError::Refused(e)),
        };
        let token = result.and_then(|o| Token::new(&o, asked).ok_or_else(|| SourceError::Refused("bad token".into())));
        let result = token.as_ref().map_or_else(SourceError::label, |_| "ok");
        let mut s = self.slot.lock();
        s.fetching = false;
        let label = s.label.clone();
        match token {
            Ok(t) => {
                if s.failures > 0 {
                    tracing::info!(route = %label, client_id = %self.source.client_id, "egress token fetched again");
                }
                s.token = Some(Arc::new(t));
                s.failures = 0;
                s.retry_at = None;
                s.wanted = false;
            }
            Err(ref e) => {
                s.failures = s.failures.saturating_add(1);
                s.retry_at = Some(Instant::now() + backoff(s.failures));
                if s.last_warning.is_none_or(|w| w.elapsed() >= WARN_EVERY) {
                    s.last_warning = Some(Instant::now());
                    let serving = s.token.as_ref().is_some_and(|t| Instant::now() < t.usable_until);
                    tracing::warn!(
                        route = %label,
                        client_id = %self.source.client_id,
                        failures = s.failures,
                        cached_token_serving = serving,
                        "egress token not fetched: {}",
                        e.describe()
                    );
                }
            }
        }
        drop(s);
        super::metrics::token_fetched(&state.metrics, &label, result);
        self.changed.send_modify(|g| *g = g.wrapping_add(1));
    }

    /// The source's HTTP client, made on first use (remote sources only).
    fn http_client(&self) -> Result<Option<&reqwest::Client>, String> {
        let crate::model::egress::SourceKind::Remote(remote) = &self.source.kind else {
            return Ok(None);
        };
        match self.http.get_or_init(|| super::fetch::client(remote)) {
            Ok(c) => Ok(Some(c)),
            Err(e) => Err(e.clone()),
        }
    }

    /// The background refresher's turn: a fetch if the token is due (or missing, or failed)
    /// and a request wanted it since the last fetch.
    fn tick(self: &Arc<Self>, state: &Arc<State>, now: Instant) {
        let mut s = self.slot.lock();
        let due = s.token.as_ref().is_none_or(|t| now >= t.refresh_at);
        if s.wanted && due && s.may_fetch(now) {
            self.start(&mut s, state);
        }
    }

    /// (route label, token age, seconds it is still handed out), for the gauges.
    fn ages(&self, now: Instant) -> Option<(String, f64, f64)> {
        let s = self.slot.lock();
        let t = s.token.as_ref()?;
        let age = now.saturating_duration_since(t.obtained).as_secs_f64();
        let left = t.usable_until.saturating_duration_since(now).as_secs_f64();
        Some((s.label.clone(), age, left))
    }
}

/// Every token source's entry, by key.
#[derive(Default)]
pub struct TokenCache {
    entries: Mutex<HashMap<SourceKey, Arc<Entry>>>,
}

impl TokenCache {
    /// The entry of `route`'s token source, made on first use.
    pub fn entry(&self, route: &EgressRoute) -> Arc<Entry> {
        let mut entries = self.entries.lock();
        entries
            .entry(route.source.key)
            .or_insert_with(|| Arc::new(Entry::new(route.source.clone(), &route.label)))
            .clone()
    }

    /// Forgets the entries no route of `routes` uses, and labels the others by their first route.
    pub fn keep_only(&self, routes: &[Arc<EgressRoute>]) {
        let mut entries = self.entries.lock();
        entries.retain(|key, _| routes.iter().any(|r| r.source.key == *key));
        for (key, entry) in entries.iter() {
            if let Some(first) = routes.iter().find(|r| r.source.key == *key) {
                let mut s = entry.slot.lock();
                if s.label != first.label {
                    s.label = first.label.clone();
                }
            }
        }
    }

    /// One round of background refreshes, and the token gauges.
    pub fn tick(&self, state: &Arc<State>) {
        let now = Instant::now();
        let entries: Vec<Arc<Entry>> = self.entries.lock().values().cloned().collect();
        let mut gauges = Vec::new();
        for e in &entries {
            e.tick(state, now);
            gauges.extend(e.ages(now));
        }
        super::metrics::token_gauges(&state.metrics, &gauges);
    }

    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests;
