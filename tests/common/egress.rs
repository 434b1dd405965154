//! Egress harness: a tollgate whose config has an `[egress]` listener on a loopback port, and
//! the calls an app makes through it.

pub mod scripted;

use super::{client, Tollgate, BASE_CONFIG};
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;

/// A running tollgate and its egress listener.
pub struct Sidecar {
    pub tg: Tollgate,
    pub egress: SocketAddr,
}

impl Sidecar {
    /// BASE_CONFIG (its ingress routes to `upstream`) with `[egress]` on loopback port 0 and
    /// `routes` (TOML of `[[egress.routes]]`). The egress listener is bound before tollgate
    /// prints its listening line (which names its port), so it accepts once `Tollgate::start`
    /// returns.
    pub fn start(routes: &str, upstream: SocketAddr, files: &[(&str, &[u8])]) -> Sidecar {
        Self::start_on(BASE_CONFIG, routes, upstream, files)
    }

    /// The same on another base config.
    pub fn start_on(base: &str, routes: &str, upstream: SocketAddr, files: &[(&str, &[u8])]) -> Sidecar {
        let config = format!("{base}\n[egress]\nlisten = \"127.0.0.1:0\"\n{routes}");
        let tg = Tollgate::start_with(&config, upstream, files);
        let egress = tg.egress.expect("the listening line names the egress listener");
        Sidecar { tg, egress }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.egress)
    }

    /// `GET path` through the egress listener, as an app with a base URL makes it.
    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        client().get(self.url(path)).send().unwrap()
    }

    /// The token the upstream received, from an echo upstream's answer.
    pub fn get_token(&self, path: &str) -> String {
        self.get_token_received(path).0
    }

    /// The token an echo upstream received, and the Unix time it read the request.
    pub fn get_token_received(&self, path: &str) -> (String, f64) {
        let r = self.get(path);
        assert_eq!(r.status(), 200, "{}", self.tg.logs());
        let echoed: Value = r.json().unwrap();
        (bearer_of(&echoed), received_at(&echoed))
    }

    /// The value of the series `name{labels}` in `/metrics` (0 when absent).
    pub fn metric(&self, series: &str) -> f64 {
        metric_of(&self.tg, series)
    }
}

/// The one bearer token an echo upstream reports it received.
pub fn bearer_of(echoed: &Value) -> String {
    let values = echoed["headers"]["authorization"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(values.len(), 1, "one Authorization header: {echoed}");
    values[0]
        .as_str()
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_else(|| panic!("not a bearer token: {echoed}"))
        .to_string()
}

/// When an echo upstream read the request it answers, in Unix seconds.
pub fn received_at(echoed: &Value) -> f64 {
    echoed["received_at"].as_f64().expect("an echo upstream's answer")
}

/// The value of the series `series` (name and labels as rendered) in `tg`'s `/metrics`.
pub fn metric_of(tg: &Tollgate, series: &str) -> f64 {
    tg.metrics()
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Tokens the issuer `tg` issued to `client` by client_credentials.
pub fn issued(tg: &Tollgate, client: &str) -> f64 {
    metric_of(
        tg,
        &format!(r#"tollgate_tokens_issued_total{{realm="demo",client="{client}",grant="client_credentials"}}"#),
    )
}

/// BASE_CONFIG on a fixed port (so it can be stopped and started again), its realm's issuer
/// named after that port and its token lifespan `lifespan`.
pub fn issuer_config(port: u16, lifespan: &str) -> String {
    BASE_CONFIG
        .replace(
            "\nlisten = \"127.0.0.1:0\"",
            &format!("\nlisten = \"127.0.0.1:{port}\""),
        )
        .replace(
            "access_token_lifespan = \"5m\"",
            &format!("access_token_lifespan = \"{lifespan}\"\nissuer = \"http://127.0.0.1:{port}/realms/demo\""),
        )
}

/// An egress route at `prefix` to the test's upstream whose tokens come from `token_endpoint`;
/// `auth` are the client's credential lines.
pub fn remote_route(token_endpoint: &str, prefix: &str, auth: &str) -> String {
    format!(
        "[[egress.routes]]\nprefix = \"{prefix}\"\nupstream = \"{{UPSTREAM}}\"\ntoken_endpoint = \"{token_endpoint}\"\n{auth}\n"
    )
}

/// The token endpoint URL of `issuer`'s demo realm.
pub fn token_endpoint(issuer: &Tollgate) -> String {
    issuer.url("/realms/demo/protocol/openid-connect/token")
}

/// product-sa-client's credential lines, its secret inline.
pub const SECRET_AUTH: &str = "client_id = \"product-sa-client\"\nclient_secret = \"password\"\nscope = \"orders\"";

/// An egress route at `prefix` minting `client`'s tokens in process; `extra` are more lines.
pub fn local_route(prefix: &str, client: &str, extra: &str) -> String {
    format!(
        "[[egress.routes]]\nprefix = \"{prefix}\"\nupstream = \"{{UPSTREAM}}\"\nrealm = \"demo\"\nclient = \"{client}\"\n{extra}\n"
    )
}

/// Polls `f` every 20 ms until it returns true, for at most `limit`.
pub fn eventually(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !f() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Unix time in seconds, with its fraction.
pub fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}
