//! The key engines of remote realms: one task per realm, off the request path, that fetches its
//! keys at start, refreshes them, refetches at once (rate-limited) for an unknown `kid`, and
//! publishes each result into the realm's [`LiveKeys`], which the guard reads.

pub mod fetch;

use crate::config::Snapshot;
use crate::metrics::FetchResult;
use crate::model::{Keys, RemoteSettings};
use crate::state::State;
use crate::token::live::LiveKeys;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// The live keys of every remote realm of the config being served, by their settings: a
/// reload that keeps a realm's settings keeps its keys and its engine.
#[derive(Default)]
pub struct Registry {
    live: Mutex<HashMap<RemoteSettings, Arc<LiveKeys>>>,
    changed: Notify,
}

impl Registry {
    /// Gives `snap`'s remote realms the live keys already held for the same settings, and
    /// forgets those of realms it no longer has. Called with a snapshot about to be served.
    pub fn adopt(&self, snap: &mut Snapshot) {
        let mut held = self.live.lock();
        let mut kept = HashMap::new();
        for realm in snap.realms.values_mut() {
            let Some(realm) = Arc::get_mut(realm) else { continue };
            if let Keys::Fetched { settings, live } = &mut realm.keys {
                let existing = held.remove(settings).or_else(|| kept.get(&**settings).cloned());
                if let Some(existing) = existing {
                    *live = existing;
                }
                kept.insert((**settings).clone(), live.clone());
            }
        }
        *held = kept;
        self.changed.notify_one();
    }

    fn wanted(&self) -> Vec<(RemoteSettings, Arc<LiveKeys>)> {
        self.live.lock().iter().map(|(s, l)| (s.clone(), l.clone())).collect()
    }
}

/// The pingora background service that runs the key engines.
pub struct Engines {
    pub state: Arc<State>,
}

#[async_trait::async_trait]
impl pingora::services::background::BackgroundService for Engines {
    async fn start(&self, shutdown: pingora::server::ShutdownWatch) {
        run(self.state.clone(), shutdown).await;
    }
}

/// Runs the engines of the served config's remote realms until shutdown, starting and stopping
/// them as reloads add and remove realms.
pub async fn run(state: Arc<State>, mut shutdown: pingora::server::ShutdownWatch) {
    let mut running: HashMap<RemoteSettings, tokio::task::JoinHandle<()>> = HashMap::new();
    loop {
        let wanted = state.remote.wanted();
        running.retain(|settings, task| {
            let keep = wanted.iter().any(|(s, _)| s == settings);
            if !keep {
                task.abort();
            }
            keep
        });
        for (settings, live) in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = running.entry(settings) {
                let settings = Arc::new(slot.key().clone());
                slot.insert(tokio::spawn(engine(settings, live, state.clone())));
            }
        }
        tokio::select! {
            _ = state.remote.changed.notified() => {}
            _ = shutdown.changed() => break,
        }
    }
    for task in running.into_values() {
        task.abort();
    }
}

/// `/readyz`'s view of each remote realm: its issuer, how many keys it has and how old they
/// are, and how the last fetch went.
pub fn readiness(snap: &Snapshot, now: u64) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for realm in snap.realms.values() {
        let entry = match &realm.keys {
            Keys::Local { .. } => continue,
            Keys::File(set) => serde_json::json!({
                "issuer": realm.issuer, "source": "jwks_file", "keys": set.len(), "usable": true,
            }),
            Keys::Fetched { settings, live } => {
                let fetched = live.peek();
                let status = live.status();
                serde_json::json!({
                    "issuer": realm.issuer,
                    "source": settings.jwks_uri.as_deref().unwrap_or("discovery"),
                    "keys": fetched.as_ref().map_or(0, |f| f.keys.len()),
                    "key_age_seconds": fetched.as_ref().map(|f| now.saturating_sub(f.at)),
                    "usable": live.usable(now, settings.max_stale).is_ok(),
                    "last_fetch": match (status.attempts, &status.last_error) {
                        (0, _) => "pending".to_string(),
                        (_, None) => "ok".to_string(),
                        (_, Some(e)) => format!("error: {e}"),
                    },
                })
            }
        };
        out.insert(realm.name.clone(), entry);
    }
    serde_json::Value::Object(out)
}

/// Sets `tollgate_jwks_age_seconds` for each fetched remote realm (at scrape time).
pub fn record_ages(snap: &Snapshot, metrics: &crate::metrics::Metrics, now: u64) {
    for realm in snap.realms.values() {
        if let Some(fetched) = realm.live().and_then(|l| l.peek()) {
            let labels = crate::metrics::RealmLabel {
                realm: realm.name.clone(),
            };
            metrics
                .jwks_age
                .get_or_create(&labels)
                .set(now.saturating_sub(fetched.at) as f64);
        }
    }
}

/// Warnings about one realm's failed fetches: at most one per this long.
const WARN_EVERY: Duration = Duration::from_secs(10);
/// Longest wait between attempts while fetches fail.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// One realm's fetch loop.
async fn engine(settings: Arc<RemoteSettings>, live: Arc<LiveKeys>, state: Arc<State>) {
    let realm = settings.realm.as_str();
    let http = match fetch::client(&settings) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(realm, "remote keys cannot be fetched: {e}");
            live.failed(crate::http_util::now(), e.0);
            return;
        }
    };
    let mut discovered: Option<String> = None;
    let mut failures = 0u32;
    let mut last_warning: Option<Instant> = None;
    loop {
        let result = fetch::keys(&http, &settings, discovered.as_deref()).await;
        let now = crate::http_util::now();
        let wait = match result.and_then(usable) {
            Ok(got) => {
                if failures > 0 || live.peek().is_none() {
                    tracing::info!(realm, keys = got.parsed.keys.len(), jwks_uri = %got.jwks_uri, "remote keys fetched");
                }
                for s in &got.parsed.skipped {
                    tracing::debug!(realm, "JWKS key skipped: {s}");
                }
                failures = 0;
                if settings.jwks_uri.is_none() {
                    discovered = Some(got.jwks_uri);
                }
                live.publish(got.parsed.keys, now);
                fetched(&state.metrics, realm, FetchResult::ok);
                refresh_after(&settings, got.max_age)
            }
            Err(e) => {
                failures += 1;
                discovered = None;
                if last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    last_warning = Some(Instant::now());
                    tracing::warn!(
                        realm,
                        failures,
                        "remote keys not fetched; the last keys stay trusted up to jwks_max_stale: {e}"
                    );
                }
                live.failed(now, e.0);
                fetched(&state.metrics, realm, FetchResult::error);
                backoff(failures, &settings)
            }
        };
        live.set_next_attempt(now + wait.as_secs().max(1));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = live.woken() => {}
        }
    }
}

/// A JWKS with no key tollgate can use is a failed fetch: the last keys stay.
fn usable(got: fetch::Got) -> Result<fetch::Got, fetch::FetchError> {
    if got.parsed.keys.is_empty() {
        let why = got.parsed.skipped.first().map(String::as_str).unwrap_or("no keys");
        return Err(fetch::FetchError(format!(
            "{}: no usable signature key ({why})",
            got.jwks_uri
        )));
    }
    Ok(got)
}

/// The issuer's `max-age` within [1m, 24h], else `jwks_refresh`; never more than half of
/// `jwks_max_stale`, so a failing issuer is tried at least twice before its keys go stale.
fn refresh_after(settings: &RemoteSettings, max_age: Option<Duration>) -> Duration {
    use crate::config::remote::{MAX_REFRESH, MIN_REFRESH};
    let wanted = max_age.map_or(settings.refresh, |a| a.clamp(MIN_REFRESH, MAX_REFRESH));
    wanted.min(settings.max_stale / 2).max(Duration::from_secs(1))
}

/// 1 s, 2 s, 4 s ... up to a minute (or the refresh interval), with ±25% jitter.
fn backoff(failures: u32, settings: &RemoteSettings) -> Duration {
    let base = Duration::from_secs(1u64 << failures.saturating_sub(1).min(6));
    let cap = MAX_BACKOFF.min(settings.refresh);
    let d = base.min(cap).as_secs_f64();
    let jitter = 0.75 + rand::random::<f64>() * 0.5;
    Duration::from_secs_f64(d * jitter)
}

/// Counts one fetch of `realm`'s keys.
fn fetched(metrics: &crate::metrics::Metrics, realm: &str, result: FetchResult) {
    let labels = crate::metrics::FetchLabel {
        realm: realm.to_string(),
        result,
    };
    metrics.jwks_fetches.get_or_create(&labels).inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RemoteSettings {
        RemoteSettings {
            realm: "corp".into(),
            issuer: "https://idp".into(),
            jwks_uri: None,
            ca_pem: None,
            refresh: Duration::from_secs(300),
            max_stale: Duration::from_secs(3600),
            algorithms: vec![],
        }
    }

    #[test]
    fn refresh_honours_max_age_within_bounds_and_max_stale() {
        let s = settings();
        assert_eq!(refresh_after(&s, None), Duration::from_secs(300));
        assert_eq!(refresh_after(&s, Some(Duration::ZERO)), Duration::from_secs(60));
        assert_eq!(
            refresh_after(&s, Some(Duration::from_secs(900))),
            Duration::from_secs(900)
        );
        assert_eq!(
            refresh_after(&s, Some(Duration::from_secs(86_400 * 7))),
            Duration::from_secs(1800)
        );
    }

    #[test]
    fn backoff_grows_to_a_minute_with_jitter() {
        let s = settings();
        for (n, secs) in [(1, 1.0), (2, 2.0), (3, 4.0), (7, 60.0), (30, 60.0)] {
            let d = backoff(n, &s).as_secs_f64();
            assert!((secs * 0.75..=secs * 1.25).contains(&d), "{n}: {d}");
        }
    }
}
