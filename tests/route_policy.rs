//! Route policy beyond roles, seen from outside: scopes, claims, claim headers, per-client rate
//! limits and CORS, on routes that also require roles, with fresh and cached tokens alike.

mod common;

use common::jwks;
use common::{client, echo, now, Tollgate};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ISSUER: &str = "https://idp.example/realms/corp";

fn config() -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[realms.corp]
issuer = "{ISSUER}"
jwks_file = "corp.jwks.json"
leeway = "5s"
roles = ["reader", "writer"]

[[routes]]
prefix = "/orders"
realm = "corp"
roles = ["reader"]
scopes = ["orders:read"]
claims = {{ tenant = "acme", azp = ["billing", "shipping"], "org.tier" = ["gold", "silver"] }}
claim_headers = {{ "X-Tenant" = "tenant", "X-Groups" = "groups" }}
upstream = "{{UPSTREAM}}"

[[routes]]
prefix = "/limited"
realm = "corp"
roles = ["reader"]
rate_limit = "3/s"
upstream = "{{UPSTREAM}}"

[[routes]]
prefix = "/browser"
realm = "corp"
roles = ["reader"]
cors = {{ origins = ["https://app.example.com"], methods = ["GET", "POST"], headers = ["Authorization", "Content-Type"], max_age = "10m" }}
upstream = "{{UPSTREAM}}"

[[routes]]
prefix = "/plain"
realm = "corp"
roles = ["reader"]
upstream = "{{UPSTREAM}}"
"#
    )
}

struct Setup {
    tg: Tollgate,
    key: tollgate::token::SigningKey,
    _up: echo::Echo,
}

fn setup() -> Setup {
    let key = jwks::new_key(Algorithm::ES256, "k1");
    let up = echo::start();
    let tg = Tollgate::start_with(&config(), up.addr, &[("corp.jwks.json", &jwks::jwks(&[&key]))]);
    Setup { tg, key, _up: up }
}

/// A token of `azp` with `extra` claims over a base that passes /orders.
fn token(s: &Setup, azp: &str, extra: Value) -> String {
    let t = now();
    let mut c = json!({"iss": ISSUER, "exp": t + 300, "iat": t, "sub": "s", "azp": azp, "jti": format!("{azp}-{}", rand()),
                       "scope": "profile orders:read", "tenant": "acme", "org": {"tier": "gold"}, "groups": ["a", "b"],
                       "realm_access": {"roles": ["reader"]}});
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    jwks::sign(&s.key, &jwks::header(&s.key), &c)
}

fn rand() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u8(0);
    h.finish()
}

fn get(s: &Setup, path: &str, token: &str) -> reqwest::blocking::Response {
    client().get(s.tg.url(path)).bearer_auth(token).send().unwrap()
}

#[test]
fn a_missing_scope_is_403_naming_the_scope_fresh_and_cached() {
    let s = setup();
    let good = token(&s, "billing", json!({}));
    for _ in 0..2 {
        assert_eq!(get(&s, "/orders/1", &good).status(), 200);
    }
    let narrow = token(&s, "billing", json!({"scope": "profile"}));
    for round in 0..2 {
        let r = get(&s, "/orders/1", &narrow);
        assert_eq!(r.status(), 403, "round {round}");
        let www = r.headers()["www-authenticate"].to_str().unwrap().to_string();
        assert!(www.contains("error=\"insufficient_scope\""), "{www}");
        assert!(www.contains("scope=\"orders:read\""), "{www}");
    }
    // Roles still apply beside scopes.
    let no_role = token(&s, "billing", json!({"realm_access": {"roles": ["writer"]}}));
    assert_eq!(get(&s, "/orders/1", &no_role).status(), 403);
}

#[test]
fn claims_must_match_and_cached_tokens_are_checked_too() {
    let s = setup();
    for (extra, want) in [
        (json!({}), 200),
        (json!({"tenant": "globex"}), 403),
        (json!({"tenant": ["acme", "other"]}), 200),
        (json!({"org": {"tier": "bronze"}}), 403),
        (json!({"org": {}}), 403),
    ] {
        let t = token(&s, "shipping", extra.clone());
        for round in 0..2 {
            let r = get(&s, "/orders/1", &t);
            assert_eq!(r.status(), want, "{extra} round {round}");
            if want == 403 {
                let body: Value = r.json().unwrap();
                assert_eq!(body["error"], "insufficient_scope");
            }
        }
    }
    assert_eq!(
        get(&s, "/orders/1", &token(&s, "marketing", json!({}))).status(),
        403,
        "azp not listed"
    );
    let m = s.tg.metrics();
    assert!(m.contains("tollgate_denials_total{reason=\"claim\"}"), "{m}");
}

#[test]
fn claim_headers_reach_the_upstream_and_spoofed_ones_are_replaced() {
    let s = setup();
    let t = token(&s, "billing", json!({}));
    let r = client()
        .get(s.tg.url("/orders/1"))
        .bearer_auth(&t)
        .header("X-Tenant", "spoofed")
        .header("X-Groups", "admins")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen: Value = r.json().unwrap();
    assert_eq!(seen["headers"]["x-tenant"], json!(["acme"]));
    assert_eq!(seen["headers"]["x-groups"], json!(["a,b"]));
    // The names are stripped on every route, not only where they are set.
    let r = client()
        .get(s.tg.url("/plain/1"))
        .bearer_auth(&t)
        .header("X-Tenant", "spoofed")
        .send()
        .unwrap();
    let seen: Value = r.json().unwrap();
    assert!(seen["headers"].get("x-tenant").is_none(), "{seen}");
}

#[test]
fn a_rate_limit_holds_per_client_and_recovers() {
    let s = setup();
    let a = token(&s, "client-a", json!({}));
    let b = token(&s, "client-b", json!({}));
    // One client, one kept-alive connection: the burst must not take the 1/3 s a token of
    // "3/s" takes to come back, on however loaded a host.
    let c = client();
    let burst = || c.get(s.tg.url("/limited/x")).bearer_auth(&a).send().unwrap();
    for i in 0..3 {
        assert_eq!(burst().status(), 200, "request {i} within the burst");
    }
    let r = burst();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().unwrap();
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(get(&s, "/limited/x", &b).status(), 200, "another client is unaffected");
    assert_eq!(get(&s, "/plain/x", &a).status(), 200, "another route is unaffected");
    let deadline = Instant::now() + Duration::from_secs(3);
    while get(&s, "/limited/x", &a).status() != 200 {
        assert!(Instant::now() < deadline, "never recovered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let m = s.tg.metrics();
    assert!(m.contains("tollgate_rate_limited_total{route=\"/limited\"}"), "{m}");
}

#[test]
fn cors_preflights_are_answered_here_and_responses_carry_the_origin() {
    let s = setup();
    let preflight = |origin: &str| {
        client()
            .request(reqwest::Method::OPTIONS, s.tg.url("/browser/x"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "authorization")
            .send()
            .unwrap()
    };
    let r = preflight("https://app.example.com");
    assert_eq!(r.status(), 204);
    let h = r.headers();
    assert_eq!(h["access-control-allow-origin"], "https://app.example.com");
    assert_eq!(h["access-control-allow-methods"], "GET, POST");
    assert_eq!(h["access-control-allow-headers"], "Authorization, Content-Type");
    assert_eq!(h["access-control-max-age"], "600");
    assert!(h["vary"].to_str().unwrap().contains("Origin"));
    let refused = preflight("https://evil.example");
    assert!(refused.headers().get("access-control-allow-origin").is_none());
    assert_ne!(refused.status(), 204);
    // An actual call from the allowed origin, and one from another.
    let t = token(&s, "billing", json!({}));
    let call = |origin: &str| {
        client()
            .get(s.tg.url("/browser/x"))
            .bearer_auth(&t)
            .header("Origin", origin)
            .send()
            .unwrap()
    };
    let ok = call("https://app.example.com");
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["access-control-allow-origin"], "https://app.example.com");
    assert!(ok.headers()["vary"].to_str().unwrap().contains("Origin"));
    let seen: Value = ok.json().unwrap();
    assert_eq!(seen["method"], "GET", "the actual request reached the upstream");
    let other = call("https://evil.example");
    assert_eq!(other.status(), 200);
    assert!(other.headers().get("access-control-allow-origin").is_none());
    // A refusal to the allowed origin is readable by the page too.
    let denied = client()
        .get(s.tg.url("/browser/x"))
        .header("Origin", "https://app.example.com")
        .send()
        .unwrap();
    assert_eq!(denied.status(), 401);
    assert_eq!(
        denied.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
}

#[test]
fn a_preflight_never_reaches_the_upstream() {
    let key = jwks::new_key(Algorithm::ES256, "k1");
    let up = echo::start();
    let tg = Tollgate::start_with(&config(), up.addr, &[("corp.jwks.json", &jwks::jwks(&[&key]))]);
    let before = up.connections.load(std::sync::atomic::Ordering::SeqCst);
    for _ in 0..5 {
        let r = client()
            .request(reqwest::Method::OPTIONS, tg.url("/browser/x"))
            .header("Origin", "https://app.example.com")
            .header("Access-Control-Request-Method", "GET")
            .send()
            .unwrap();
        assert_eq!(r.status(), 204);
    }
    assert_eq!(
        up.connections.load(std::sync::atomic::Ordering::SeqCst),
        before,
        "no upstream connection"
    );
}

#[test]
fn policy_mistakes_are_reported_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.toml");
    std::fs::write(
        &path,
        r#"
[server]
listen = "127.0.0.1:0"
[realms.corp]
issuer = "https://idp.example"
jwks_uri = "https://idp.example/certs"
[[routes]]
prefix = "/a"
realm = "corp"
claim_headers = { "X-Auth-Roles" = "roles", "Connection" = "x", "X_Tenant" = "t" }
rate_limit = "lots"
cors = { origins = ["*"], credentials = true }
upstream = "127.0.0.1:9000"
[[routes]]
prefix = "/p"
public = true
scopes = ["x"]
upstream = "127.0.0.1:9000"
"#,
    )
    .unwrap();
    let out = std::process::Command::new(common::bin())
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    for want in [
        "\"X-Auth-Roles\" would shadow",
        "\"Connection\" would shadow",
        "\"X_Tenant\" would shadow",
        "routes[0].rate_limit",
        "routes[0].cors.origins",
        "routes[1]: a public route checks no token",
    ] {
        assert!(text.contains(want), "missing {want:?} in {text}");
    }
}
