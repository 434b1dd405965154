//! Prometheus metrics on `prometheus-client`: each family a typed field, each label set a type,
//! so a misspelt metric or label is a compile error, not a series never exported.

use crate::outcome::{Outcome, Reason};
use prometheus_client::encoding::{prometheus_text, EncodeLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

mod series;
use series::Series;

/// The `Content-Type` of [`Metrics::render`].
pub const CONTENT_TYPE: &str = prometheus_text::CONTENT_TYPE;

const LATENCY_BUCKETS: [f64; 15] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

type FloatGauge = Gauge<f64, AtomicU64>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteOutcome {
    /// The matched route's prefix, or "".
    pub route: Arc<str>,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabel {
    pub route: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DenialLabel {
    pub reason: Reason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Issued {
    pub realm: String,
    pub client: String,
    pub grant: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenErrorLabel {
    pub realm: String,
    pub endpoint: &'static str,
    pub error: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RealmLabel {
    pub realm: String,
}

/// Whether a fetch or a check succeeded.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum FetchResult {
    ok,
    error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FetchLabel {
    pub realm: String,
    pub result: FetchResult,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EgressFetch {
    pub route: String,
    /// `ok`, `error` or `refused`.
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EgressRequest {
    pub route: String,
    /// The status sent to the app, `0` when none was.
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EgressRoute {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StoreOp {
    /// The shared store's operation (`crate::store::redis::Op::label`).
    pub op: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HashLabel {
    pub hash: String,
}

/// Every metric tollgate exports.
pub struct Metrics {
    registry: Registry,
    pub requests: Family<RouteOutcome, Counter>,
    pub denials: Family<DenialLabel, Counter>,
    pub rate_limited: Family<RouteLabel, Counter>,
    pub upstream_latency: Family<RouteLabel, Histogram>,
    pub tokens_issued: Family<Issued, Counter>,
    pub token_errors: Family<TokenErrorLabel, Counter>,
    pub auth_throttled: Family<RealmLabel, Counter>,
    pub config_reloads: Counter,
    pub config_reload_failures: Counter,
    pub config_loaded_at: Gauge,
    pub config_info: Family<HashLabel, Gauge>,
    pub token_cache_entries: Gauge,
    pub revoked_tokens: Gauge,
    pub connections_open: Gauge,
    pub connections_refused: Counter,
    pub jwks_fetches: Family<FetchLabel, Counter>,
    pub jwks_age: Family<RealmLabel, FloatGauge>,
    pub secret_hash_runs: Counter,
    pub secret_hash_busy: Counter,
    pub store_up: Gauge,
    pub store_op_duration: Family<StoreOp, Histogram>,
    pub store_errors: Family<StoreOp, Counter>,
    pub egress_token_fetches: Family<EgressFetch, Counter>,
    pub egress_requests: Family<EgressRequest, Counter>,
    pub egress_token_age: Family<EgressRoute, FloatGauge>,
    pub egress_token_ttl: Family<EgressRoute, FloatGauge>,
    /// The series of `requests` and `upstream_latency`, found without SipHash per request.
    request_series: Series<RouteOutcome, Counter>,
    latency_series: Series<RouteLabel, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let upstream_latency =
            Family::<RouteLabel, Histogram>::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS));
        let store_op_duration = Family::<StoreOp, Histogram>::new_with_constructor(|| Histogram::new(LATENCY_BUCKETS));
        let mut m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            denials: Family::default(),
            rate_limited: Family::default(),
            upstream_latency,
            tokens_issued: Family::default(),
            token_errors: Family::default(),
            auth_throttled: Family::default(),
            config_reloads: Counter::default(),
            config_reload_failures: Counter::default(),
            config_loaded_at: Gauge::default(),
            config_info: Family::default(),
            token_cache_entries: Gauge::default(),
            revoked_tokens: Gauge::default(),
            connections_open: Gauge::default(),
            connections_refused: Counter::default(),
            jwks_fetches: Family::default(),
            jwks_age: Family::default(),
            secret_hash_runs: Counter::default(),
            secret_hash_busy: Counter::default(),
            store_up: Gauge::default(),
            store_op_duration,
            store_errors: Family::default(),
            egress_token_fetches: Family::default(),
            egress_requests: Family::default(),
            egress_token_age: Family::default(),
            egress_token_ttl: Family::default(),
            request_series: Series::default(),
            latency_series: Series::default(),
        };
        m.register();
        m
    }
}

impl Metrics {
    /// Names and helps, in the order they are exported. Counters get `_total` from the encoder.
    fn register(&mut self) {
        self.register_proxy();
        self.register_issuer();
        self.register_config();
        self.register_store();
        self.register_egress();
    }

    /// Requests and connections on the proxy listeners.
    fn register_proxy(&mut self) {
        let r = &mut self.registry;
        r.register(
            "tollgate_requests",
            "Requests by route and outcome",
            self.requests.clone(),
        );
        r.register(
            "tollgate_denials",
            "Requests refused by the guard, by reason",
            self.denials.clone(),
        );
        r.register(
            "tollgate_upstream_latency_seconds",
            "Time from request to upstream response header, by route",
            self.upstream_latency.clone(),
        );
        r.register(
            "tollgate_rate_limited",
            "Requests refused with 429 by a route's rate limit, by route",
            self.rate_limited.clone(),
        );
        r.register(
            "tollgate_connections_open",
            "Client connections open on the proxy listeners",
            self.connections_open.clone(),
        );
        r.register(
            "tollgate_connections_refused",
            "Client connections closed at accept because server.max_connections were open",
            self.connections_refused.clone(),
        );
    }

    /// Tokens issued and checked, and client authentication.
    fn register_issuer(&mut self) {
        let r = &mut self.registry;
        r.register(
            "tollgate_tokens_issued",
            "Tokens issued, by realm, client and grant",
            self.tokens_issued.clone(),
        );
        r.register(
            "tollgate_token_errors",
            "Token endpoint errors, by realm, endpoint and OAuth error code",
            self.token_errors.clone(),
        );
        r.register(
            "tollgate_auth_throttled",
            "Client authentications refused with 429",
            self.auth_throttled.clone(),
        );
        r.register(
            "tollgate_secret_hash_checks",
            "argon2 verifications of client secrets run (real ones and equal-cost stand-ins)",
            self.secret_hash_runs.clone(),
        );
        r.register(
            "tollgate_secret_hash_busy",
            "Client secrets answered 503 because the argon2 pool's queue was full",
            self.secret_hash_busy.clone(),
        );
        r.register(
            "tollgate_token_cache_entries",
            "Verified tokens cached",
            self.token_cache_entries.clone(),
        );
        r.register(
            "tollgate_revoked_tokens",
            "Revoked token ids remembered",
            self.revoked_tokens.clone(),
        );
    }

    /// The live config and remote realms' keys.
    fn register_config(&mut self) {
        let r = &mut self.registry;
        r.register(
            "tollgate_config_reloads",
            "Successful config reloads",
            self.config_reloads.clone(),
        );
        r.register(
            "tollgate_config_reload_failures",
            "Config reloads refused (the previous config kept serving)",
            self.config_reload_failures.clone(),
        );
        r.register(
            "tollgate_config_last_reload_success_timestamp_seconds",
            "When the live config was loaded",
            self.config_loaded_at.clone(),
        );
        r.register(
            "tollgate_config_info",
            "The live config, by its SHA-256 hash",
            self.config_info.clone(),
        );
        r.register(
            "tollgate_jwks_fetches",
            "Fetches of remote realms' keys, by realm and result (ok, error)",
            self.jwks_fetches.clone(),
        );
        r.register(
            "tollgate_jwks_age_seconds",
            "Age of each remote realm's last fetched keys",
            self.jwks_age.clone(),
        );
    }

    fn register_store(&mut self) {
        let r = &mut self.registry;
        r.register(
            "tollgate_store_up",
            "1 while the shared store ([store]) is reachable, 0 while it is not",
            self.store_up.clone(),
        );
        r.register(
            "tollgate_store_operation_duration_seconds",
            "Round trips to the shared store, by operation",
            self.store_op_duration.clone(),
        );
        r.register(
            "tollgate_store_errors",
            "Shared-store operations that failed or were not tried because it was down, by operation",
            self.store_errors.clone(),
        );
    }

    fn register_egress(&mut self) {
        let r = &mut self.registry;
        r.register(
            "tollgate_egress_token_fetches",
            "Egress token fetches (or in-process mints), by route and result (ok, error, refused)",
            self.egress_token_fetches.clone(),
        );
        r.register(
            "tollgate_egress_requests",
            "Calls through the egress listener, by route and status sent to the app",
            self.egress_requests.clone(),
        );
        r.register(
            "tollgate_egress_token_age_seconds",
            "Age of each egress route's cached token",
            self.egress_token_age.clone(),
        );
        r.register(
            "tollgate_egress_token_ttl_seconds",
            "Seconds each egress route's cached token is still sent for",
            self.egress_token_ttl.clone(),
        );
    }

    /// One request's outcome, and its upstream latency when it reached the upstream.
    pub fn request(&self, route: &Arc<str>, outcome: Outcome, upstream_latency: Option<f64>) {
        let labels = RouteOutcome {
            route: route.clone(),
            outcome,
        };
        self.request_series.with(&self.requests, &labels, |c| {
            c.inc();
        });
        if let Some(secs) = upstream_latency {
            let labels = RouteLabel { route: labels.route };
            self.latency_series
                .with(&self.upstream_latency, &labels, |h| h.observe(secs));
        }
    }

    /// The live config: its hash the only series of `tollgate_config_info`.
    pub fn config_loaded(&self, hash: &str, at: u64) {
        self.config_info.clear();
        self.config_info
            .get_or_create(&HashLabel { hash: hash.to_string() })
            .set(1);
        self.config_loaded_at.set(i64::try_from(at).unwrap_or(i64::MAX));
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_text_format() {
        let m = Metrics::default();
        m.tokens_issued
            .get_or_create(&Issued {
                realm: "demo".into(),
                client: "a\"b".into(),
                grant: "client_credentials".into(),
            })
            .inc();
        m.request(&Arc::from("/api"), Outcome::Allowed, Some(0.003));
        let text = m.render();
        assert!(
            text.contains(
                "tollgate_tokens_issued_total{realm=\"demo\",client=\"a\\\"b\",grant=\"client_credentials\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains("tollgate_requests_total{route=\"/api\",outcome=\"allowed\"} 1"));
        assert!(
            text.contains("tollgate_upstream_latency_seconds_bucket{route=\"/api\",le=\"0.005\"} 1"),
            "{text}"
        );
        assert!(text.contains("tollgate_upstream_latency_seconds_bucket{route=\"/api\",le=\"0.0025\"} 0"));
        assert!(
            text.contains("# TYPE tollgate_config_reload_failures_total counter"),
            "{text}"
        );
        assert!(text.contains("\ntollgate_config_reload_failures_total 0\n"), "{text}");
    }

    #[test]
    fn a_label_set_is_one_series_and_the_config_hash_has_one() {
        let m = Metrics::default();
        let (api, other) = (Arc::from("/api"), Arc::from("/other"));
        m.request(&api, Outcome::Allowed, None);
        m.request(&api, Outcome::Allowed, None);
        m.request(&other, Outcome::Denied(Reason::NoToken), None);
        let text = m.render();
        assert!(
            text.contains("tollgate_requests_total{route=\"/api\",outcome=\"allowed\"} 2"),
            "{text}"
        );
        assert!(text.contains("tollgate_requests_total{route=\"/other\",outcome=\"no_token\"} 1"));
        assert_eq!(text.matches("tollgate_requests_total{").count(), 2, "{text}");
        m.config_loaded("a", 10);
        m.config_loaded("b", 11);
        let text = m.render();
        assert!(text.contains("tollgate_config_info{hash=\"b\"} 1"), "{text}");
        assert!(!text.contains("hash=\"a\""), "{text}");
        assert!(text.contains("tollgate_config_last_reload_success_timestamp_seconds 11"));
    }
}
