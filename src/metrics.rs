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
        "tollgate_connections_refused_total",
        "counter",
        "Client connections closed at accept because server.max_connections were open.",
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

#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, String), u64>>,
    gauges: Mutex<BTreeMap<(&'static str, String), f64>>,
    histograms: Mutex<BTreeMap<(&'static str, String), Histogram>>,
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let mut s = String::new();
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
    s
}

impl Metrics {
    pub fn inc(&self, name: &'static str, l: &[(&str, &str)]) {
        *self.counters.lock().entry((name, labels(l))).or_default() += 1;
    }

    pub fn set(&self, name: &'static str, l: &[(&str, &str)], v: f64) {
        self.gauges.lock().insert((name, labels(l)), v);
    }

    /// Replace every series of gauge `name` with the one given (e.g. the live config hash).
    pub fn set_only(&self, name: &'static str, l: &[(&str, &str)], v: f64) {
        let mut g = self.gauges.lock();
        g.retain(|(n, _), _| *n != name);
        g.insert((name, labels(l)), v);
    }

    pub fn observe(&self, name: &'static str, l: &[(&str, &str)], secs: f64) {
        let mut h = self.histograms.lock();
        let e = h.entry((name, labels(l))).or_default();
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                e.counts[i] += 1;
            }
        }
        e.sum += secs;
        e.count += 1;
    }

    pub fn counter(&self, name: &'static str, l: &[(&str, &str)]) -> u64 {
        self.counters.lock().get(&(name, labels(l))).copied().unwrap_or(0)
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
                    for ((n, l), v) in counters.iter().filter(|((n, _), _)| n == name) {
                        any = true;
                        let _ = writeln!(out, "{n}{} {v}", series(l));
                    }
                    if !any && !name.contains("tokens_issued") && !name.contains("requests_total") {
                        // Unlabelled families exist from the start, so rates work at once.
                        if !matches!(*name, "tollgate_denials_total" | "tollgate_token_errors_total") {
                            let _ = writeln!(out, "{name} 0");
                        }
                    }
                }
                "gauge" => {
                    for ((n, l), v) in gauges.iter().filter(|((n, _), _)| n == name) {
                        let _ = writeln!(out, "{n}{} {v}", series(l));
                    }
                }
                _ => {
                    for ((n, l), h) in hist.iter().filter(|((n, _), _)| n == name) {
                        let sep = if l.is_empty() { "" } else { "," };
                        for (i, b) in BUCKETS.iter().enumerate() {
                            let _ = writeln!(out, "{n}_bucket{{{l}{sep}le=\"{b}\"}} {}", h.counts[i]);
                        }
                        let _ = writeln!(out, "{n}_bucket{{{l}{sep}le=\"+Inf\"}} {}", h.count);
                        let _ = writeln!(out, "{n}_sum{} {}", series(l), h.sum);
                        let _ = writeln!(out, "{n}_count{} {}", series(l), h.count);
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
}
