//! Every metric the egress side records, in one place (the families are declared in
//! `crate::metrics`).

use crate::metrics::Metrics;

/// One token fetch (or in-process mint) for the source `route` labels, and how it ended.
pub fn token_fetched(m: &Metrics, route: &str, result: &str) {
    m.inc(
        "tollgate_egress_token_fetches_total",
        &[("route", route), ("result", result)],
    );
}

/// A token minted in process counts as issued by its realm, as the token endpoint counts it.
pub fn minted(m: &Metrics, realm: &str, client: &str) {
    m.inc(
        "tollgate_tokens_issued_total",
        &[("realm", realm), ("client", client), ("grant", "client_credentials")],
    );
}

/// One call through the egress listener and the status the app got (0: none was sent).
pub fn request(m: &Metrics, route: &str, status: u16) {
    let code = http::StatusCode::from_u16(status).ok();
    let code = code.as_ref().map_or("0", http::StatusCode::as_str);
    m.inc("tollgate_egress_requests_total", &[("route", route), ("status", code)]);
}

/// The cached tokens' ages and the seconds each is still handed out, by route label; the
/// families hold exactly these series, so a route that is gone leaves them.
pub fn token_gauges(m: &Metrics, tokens: &[(String, f64, f64)]) {
    let labels: Vec<[(&str, &str); 1]> = tokens.iter().map(|(route, _, _)| [("route", route.as_str())]).collect();
    let series = |pick: fn(&(String, f64, f64)) -> f64| -> Vec<(&[(&str, &str)], f64)> {
        labels.iter().zip(tokens).map(|(l, t)| (&l[..], pick(t))).collect()
    };
    m.set_family("tollgate_egress_token_age_seconds", &series(|t| t.1));
    m.set_family("tollgate_egress_token_ttl_seconds", &series(|t| t.2));
}
