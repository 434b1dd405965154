//! Every metric the egress side records, in one place (the families are declared in
//! `crate::metrics`).

use crate::metrics::{EgressFetch, EgressRequest, EgressRoute, Issued, Metrics};

/// One token fetch (or in-process mint) for the source `route` labels, and how it ended.
pub fn token_fetched(m: &Metrics, route: &str, result: &'static str) {
    let labels = EgressFetch {
        route: route.to_string(),
        result,
    };
    m.egress_token_fetches.get_or_create(&labels).inc();
}

/// A token minted in process counts as issued by its realm, as the token endpoint counts it.
pub fn minted(m: &Metrics, realm: &str, client: &str) {
    let labels = Issued {
        realm: realm.to_string(),
        client: client.to_string(),
        grant: "client_credentials".to_string(),
    };
    m.tokens_issued.get_or_create(&labels).inc();
}

/// One call through the egress listener and the status the app got (0: none was sent).
pub fn request(m: &Metrics, route: &str, status: u16) {
    let labels = EgressRequest {
        route: route.to_string(),
        status,
    };
    m.egress_requests.get_or_create(&labels).inc();
}

/// The cached tokens' ages and the seconds each is still handed out, by route label; the
/// families hold exactly these series, so a route that is gone leaves them.
pub fn token_gauges(m: &Metrics, tokens: &[(String, f64, f64)]) {
    m.egress_token_age.clear();
    m.egress_token_ttl.clear();
    for (route, age, ttl) in tokens {
        let labels = EgressRoute { route: route.clone() };
        m.egress_token_age.get_or_create(&labels).set(*age);
        m.egress_token_ttl.get_or_create(&labels).set(*ttl);
    }
}
