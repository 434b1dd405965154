//! Prometheus metrics: counters, gauges and histograms by label set, rendered as text format.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fmt::Write;

/// Every metric tollgate exports: name, type, help.
const FAMILIES: &[(&str, &str, &str)] = &[
    ("tollgate_requests_total", "counter", "Requests by route and outcome."),
    (
        "tollgate_denials_total",
        "counter",
        "Requests refused by the guard, by reason.",
    ),
    (
        "tollgate_tokens_issued_total",
        "counter",
        "Tokens issued, by realm, client and grant.",
    ),
    (
        "tollgate_token_errors_total",
        "counter",
        "Token endpoint errors, by realm and OAuth error code.",
    ),
    (
        "tollgate_auth_throttled_total",
        "counter",
        "Client authentications refused with 429.",
    ),
    (
        "tollgate_upstream_latency_seconds",
        "histogram",
        "Time from request to upstream response header, by route.",
    ),
    ("tollgate_config_reloads_total", "counter", "Successful config reloads."),
    (
        "tollgate_config_reload_failures_total",
        "counter",
        "Config reloads refused (the previous config kept serving).",
    ),
    (
        "tollgate_config_last_reload_success_timestamp_seconds",
        "gauge",
        "When the live config was loaded.",
    ),
    ("tollgate_config_info", "gauge", "The live config, by its SHA-256 hash."),
    ("tollgate_token_cache_entries", "gauge", "Verified tokens cached."),
    ("tollgate_revoked_tokens", "gauge", "Revoked token ids remembered."),
    (
        "tollgate_connections_open",
        "gauge",
        "Client connections open on the proxy listeners.",
    ),
    (
        "tollgate_rate_limited_total",
        "counter",
        "Requests refused with 429 by a route's rate limit, by route.",
    ),
    (
        "tollgate_jwks_fetches_total",
        "counter",
        "Fetches of remote realms' keys, by realm and result (ok, error).",
    ),
    (
        "tollgate_jwks_age_seconds",
        "gauge",
        "Age of each remote realm's last fetched keys.",
    ),
    (
        "tollgate_connections_refused_total",
        "counter",
        "Client connections closed at accept because server.max_connections were open.",
    ),
    (
        "tollgate_egress_token_fetches_total",
        "counter",
        "Egress token fetches (or in-process mints), by route and result (ok, error, refused).",
    ),
    (
        "tollgate_egress_requests_total",
        "counter",
        "Calls through the egress listener, by route and status sent to the app.",
    ),
    (
        "tollgate_egress_token_age_seconds",
        "gauge",
        "Age of each egress route's cached token.",
    ),
    (
        "tollgate_egress_token_ttl_seconds",
        "gauge",
        "Seconds each egress route's cached token is still sent for.",
    ),
];

const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; 16],
    sum: f64,
    count: u64,
}

/// One family's series, by their rendered label set.
type Series<T> = BTreeMap<&'static str, BTreeMap<String, T>>;

#[derive(Default)]
pub struct Metrics {
    counters: Mutex<Series<u64>>,
    gauges: Mutex<Series<f64>>,
    histograms: Mutex<Series<Histogram>>,
}

/// Renders `pairs` as a Prometheus label set (`k="v",...`) into `s`.
fn write_labels(s: &mut String, pairs: &[(&str, &str)]) {
    s.clear();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(k);
        s.push_str("=\"");
        for ch in v.chars() {
            match ch {
                '\\' => s.push_str("\\\\"),
                '"' => s.push_str("\\\""),
                '\n' => s.push_str("\\n"),
                c => s.push(c),
            }
        }
        s.push('"');
    }
}

/// The series `pairs` of family `name` in `series`, made on first use. The labels are rendered
/// into a buffer kept per thread, so counting a series that exists allocates nothing.
fn entry<'m, T: Default>(series: &'m mut Series<T>, name: &'static str, pairs: &[(&str, &str)]) -> &'m mut T {
    thread_local! {
        static LABELS: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
    }
    LABELS.with_borrow_mut(|labels| {
        write_labels(labels, pairs);
        let family = series.entry(name).or_default();
        if !family.contains_key(labels.as_str()) {
            family.insert(labels.clone(), T::default());
        }
        family.get_mut(labels.as_str()).expect("inserted above")
    })
}

impl Metrics {
    pub fn inc(&self, name: &'static str, l: &[(&str, &str)]) {
        *entry(&mut self.counters.lock(), name, l) += 1;
    }

    pub fn set(&self, name: &'static str, l: &[(&str, &str)], v: f64) {
        *entry(&mut self.gauges.lock(), name, l) = v;
    }

    /// Replace every series of gauge `name` with the one given (e.g. the live config hash).
    pub fn set_only(&self, name: &'static str, l: &[(&str, &str)], v: f64) {
        let mut g = self.gauges.lock();
        g.remove(name);
        *entry(&mut g, name, l) = v;
    }

    /// Replace every series of gauge `name` with `series` (none: the family is left empty).
    pub fn set_family(&self, name: &'static str, series: &[(&[(&str, &str)], f64)]) {
        let mut g = self.gauges.lock();
        g.remove(name);
        for (l, v) in series {
            *entry(&mut g, name, l) = *v;
        }
    }

    pub fn observe(&self, name: &'static str, l: &[(&str, &str)], secs: f64) {
        let mut h = self.histograms.lock();
        let e = entry(&mut h, name, l);
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                e.counts[i] += 1;
            }
        }
        e.sum += secs;
        e.count += 1;
    }

    pub fn counter(&self, name: &'static str, l: &[(&str, &str)]) -> u64 {
        let mut labels = String::new();
        write_labels(&mut labels, l);
        let counters = self.counters.lock();
        counters.get(name).and_then(|f| f.get(&labels)).copied().unwrap_or(0)
    }

    /// Prometheus text exposition format 0.0.4.
    pub fn render(&self) -> String {
        let counters = self.counters.lock();
        let gauges = self.gauges.lock();
        let hist = self.histograms.lock();
        let mut out = String::with_capacity(4096);
        for (name, kind, help) in FAMILIES {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            let series = |l: &str| {
                if l.is_empty() {
                    String::new()
                } else {
                    format!("{{{l}}}")
                }
            };
            match *kind {
                "counter" => {
                    let mut any = false;
                    for (l, v) in counters.get(name).into_iter().flatten() {
                        any = true;
                        let _ = writeln!(out, "{name}{} {v}", series(l));
                    }
                    if !any && !name.contains("tokens_issued") && !name.contains("requests_total") {
                        // Unlabelled families exist from the start, so rates work at once.
                        if !matches!(
                            *name,
                            "tollgate_denials_total"
                                | "tollgate_token_errors_total"
                                | "tollgate_jwks_fetches_total"
                                | "tollgate_rate_limited_total"
                        ) {
                            let _ = writeln!(out, "{name} 0");
                        }
                    }
                }
                "gauge" => {
                    for (l, v) in gauges.get(name).into_iter().flatten() {
                        let _ = writeln!(out, "{name}{} {v}", series(l));
                    }
                }
                _ => {
                    for (l, h) in hist.get(name).into_iter().flatten() {
                        let sep = if l.is_empty() { "" } else { "," };
                        for (i, b) in BUCKETS.iter().enumerate() {
                            let _ = writeln!(out, "{name}_bucket{{{l}{sep}le=\"{b}\"}} {}", h.counts[i]);
                        }
                        let _ = writeln!(out, "{name}_bucket{{{l}{sep}le=\"+Inf\"}} {}", h.count);
                        let _ = writeln!(out, "{name}_sum{} {}", series(l), h.sum);
                        let _ = writeln!(out, "{name}_count{} {}", series(l), h.count);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_text_format() {
        let m = Metrics::default();
        m.inc("tollgate_tokens_issued_total", &[("realm", "demo"), ("client", "a\"b")]);
        m.observe("tollgate_upstream_latency_seconds", &[("route", "/api")], 0.003);
        let text = m.render();
        assert!(
            text.contains("tollgate_tokens_issued_total{realm=\"demo\",client=\"a\\\"b\"} 1"),
            "{text}"
        );
        assert!(text.contains("tollgate_upstream_latency_seconds_bucket{route=\"/api\",le=\"0.005\"} 1"));
        assert!(text.contains("tollgate_upstream_latency_seconds_bucket{route=\"/api\",le=\"0.0025\"} 0"));
        assert!(text.contains("tollgate_config_reload_failures_total 0"));
    }

    #[test]
    fn a_label_set_is_one_series_and_set_only_replaces_the_family() {
        let m = Metrics::default();
        let route = |r| [("route", r), ("outcome", "allowed")];
        m.inc("tollgate_requests_total", &route("/api"));
        m.inc("tollgate_requests_total", &route("/api"));
        m.inc("tollgate_requests_total", &route("/other"));
        assert_eq!(m.counter("tollgate_requests_total", &route("/api")), 2);
        assert_eq!(m.counter("tollgate_requests_total", &route("/other")), 1);
        assert_eq!(m.counter("tollgate_requests_total", &route("/none")), 0);
        assert_eq!(m.counter("tollgate_denials_total", &route("/api")), 0);
        m.set_only("tollgate_config_info", &[("sha256", "a")], 1.0);
        m.set_only("tollgate_config_info", &[("sha256", "b")], 1.0);
        let text = m.render();
        assert!(text.contains("tollgate_config_info{sha256=\"b\"} 1"), "{text}");
        assert!(!text.contains("sha256=\"a\""), "{text}");
        assert_eq!(text.matches("tollgate_requests_total{").count(), 2, "{text}");
    }
}
