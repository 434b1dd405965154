//! The egress listener: an app's plain-HTTP calls leave with a token minted in process for a
//! realm served here (remote.rs: from a second, real tollgate's token endpoint), routed by host
//! and prefix, retried once after an upstream 401, with JSON failures and hot-reloaded routes.

mod common;
#[path = "egress/remote.rs"]
mod remote;

use common::egress::scripted::Scripted;
use common::egress::{bearer_of, eventually, local_route, Sidecar};
use common::{bin, claims_of, client, dead_addr, echo, header_of, raw_request, BASE_CONFIG};
use serde_json::Value;
use std::collections::HashSet;
use std::time::{Duration, Instant};

/// One route minting product-sa-client's tokens in process, to the test's upstream.
const LOCAL: &str = r#"
[[egress.routes]]
upstream = "{UPSTREAM}"
realm = "demo"
client = "product-sa-client"
scope = "orders"
"#;

#[test]
fn local_realm_tokens_verify_through_its_jwks_and_fifty_calls_share_one() {
    let up = echo::start();
    let side = Sidecar::start(LOCAL, up.addr, &[]);
    let mut tokens = HashSet::new();
    for i in 0..50 {
        let r = client()
            .get(side.url(&format!("/orders/{i}?q=1")))
            .bearer_auth("the-apps-own-token")
            .header("proxy-authorization", "Basic eDp5")
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{}", side.tg.logs());
        let seen: Value = r.json().unwrap();
        assert_eq!(seen["path"], format!("/orders/{i}?q=1"));
        assert!(seen["headers"].get("proxy-authorization").is_none(), "{seen}");
        assert_eq!(
            seen["headers"]["host"][0],
            up.addr.to_string(),
            "Host names the upstream"
        );
        tokens.insert(bearer_of(&seen));
    }
    assert_eq!(tokens.len(), 1, "one token for 50 calls");
    let token = tokens.into_iter().next().unwrap();

    // The token verifies, independently of tollgate, through the realm's published keys.
    let jwks: jsonwebtoken::jwk::JwkSet = client()
        .get(side.tg.url("/realms/demo/protocol/openid-connect/certs"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let kid = header_of(&token)["kid"].as_str().unwrap().to_string();
    let key = jsonwebtoken::DecodingKey::from_jwk(jwks.find(&kid).unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&["orders-api"]);
    v.set_issuer(&[format!("http://localhost:{}/realms/demo", side.tg.http.port())]);
    let claims = jsonwebtoken::decode::<Value>(&token, &key, &v).unwrap().claims;
    assert_eq!(claims["azp"], "product-sa-client");
    assert!(
        claims["scope"].as_str().unwrap().split(' ').any(|s| s == "orders"),
        "{claims}"
    );

    assert_eq!(
        side.metric(r#"tollgate_egress_token_fetches_total{route="*/",result="ok"}"#),
        1.0
    );
    assert_eq!(
        side.metric(r#"tollgate_egress_requests_total{route="*/",status="200"}"#),
        50.0
    );
    eventually(Duration::from_secs(3), "the token gauges", || {
        side.metric(r#"tollgate_egress_token_ttl_seconds{route="*/"}"#) > 200.0
    });
    eventually(Duration::from_secs(3), "an egress access line", || {
        side.tg
            .logs()
            .contains("path=/orders/49 route=*/ status=200 client_id=product-sa-client outcome=egress")
    });
    assert!(!side.tg.logs().contains(&token), "a token in the log");
}

#[test]
fn an_upstream_401_drops_the_token_and_the_call_is_retried_once_with_a_new_one() {
    let up = Scripted::start();
    // One more client, so that every case below has a token source of its own.
    let base = format!("{BASE_CONFIG}\n[realms.demo.clients.retry-twice]\nsecret = \"x\"\n");
    let routes = [
        local_route("/get", "product-sa-client", "scope = \"orders\""),
        local_route("/small", "writer", ""),
        local_route("/big", "product-sa-client", ""),
        local_route("/twice", "retry-twice", ""),
    ]
    .concat();
    let side = Sidecar::start_on(&base, &routes, up.addr, &[]);
    let calls = |from: usize| up.seen()[from..].to_vec();

    up.answer(&[401]);
    assert_eq!(side.get("/get/a").status(), 200, "the app sees the retry's answer");
    let seen = calls(0);
    assert_eq!(seen.len(), 2);
    assert_ne!(seen[0].authorization, seen[1].authorization, "retried with a new token");
    // A new token refused at once as well: the upstream refuses every token, no new fetch.
    up.answer(&[401]);
    assert_eq!(side.get("/get/b").status(), 401);
    assert_eq!(calls(2).len(), 1);

    up.answer(&[401]);
    let small = vec![b'x'; 10 * 1024];
    let r = client().post(side.url("/small/a")).body(small).send().unwrap();
    assert_eq!(r.status(), 200);
    let seen = calls(3);
    assert_eq!(
        seen.iter().map(|s| s.body_len).collect::<Vec<_>>(),
        [10_240, 10_240],
        "the body is sent again"
    );

    up.answer(&[401]);
    let big = vec![b'x'; 200 * 1024];
    let r = client().post(side.url("/big/a")).body(big).send().unwrap();
    assert_eq!(r.status(), 401, "a body over 64 KiB streams and is not retried");
    let refused = calls(5);
    assert_eq!((refused.len(), refused[0].body_len), (1, 200 * 1024));
    assert_eq!(side.get("/big/b").status(), 200);
    assert_ne!(
        calls(6)[0].authorization,
        refused[0].authorization,
        "the token was dropped"
    );

    up.answer(&[401, 401]);
    assert_eq!(side.get("/twice/a").status(), 401, "retried once, not twice");
    assert_eq!(calls(7).len(), 2);
}

#[test]
fn routes_match_by_host_and_absolute_form_targets_as_http_proxy_clients_send_them() {
    let (orders, billing) = (echo::start(), echo::start());
    let routes = format!(
        r#"
[[egress.routes]]
host = "orders.internal"
upstream = "http://{orders}"
realm = "demo"
client = "product-sa-client"
[[egress.routes]]
host = "billing.internal"
prefix = "/api"
upstream = "http://{billing}"
realm = "demo"
client = "writer"
[[egress.routes]]
upstream = "{orders}"
realm = "demo"
client = "writer"
"#,
        orders = orders.addr,
        billing = billing.addr
    );
    let side = Sidecar::start(&routes, orders.addr, &[]);
    let call = |request: &str| {
        let (status, body) = raw_request(side.egress, request.as_bytes());
        (status, serde_json::from_str::<Value>(&body).unwrap_or_default())
    };
    let azp = |v: &Value| claims_of(&bearer_of(v))["azp"].as_str().unwrap().to_string();

    let (status, v) =
        call("GET http://orders.internal/x?q=1 HTTP/1.1\r\nHost: orders.internal\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 200);
    assert_eq!(
        (v["path"].as_str(), azp(&v).as_str()),
        (Some("/x?q=1"), "product-sa-client")
    );
    assert_eq!(v["headers"]["host"][0], orders.addr.to_string());
    let (status, v) =
        call("GET http://billing.internal/api/y HTTP/1.1\r\nHost: billing.internal\r\nConnection: close\r\n\r\n");
    assert_eq!(
        (status, v["headers"]["host"][0].as_str()),
        (200, Some(billing.addr.to_string().as_str()))
    );
    // A target and a Host that disagree could be routed two ways: refused.
    let (status, _) =
        call("GET http://billing.internal/api/y HTTP/1.1\r\nHost: orders.internal\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 400);
    // A base-URL call that names its host in Host.
    let (status, v) = call("GET /api/z HTTP/1.1\r\nHost: billing.internal\r\nConnection: close\r\n\r\n");
    assert_eq!((status, v["path"].as_str()), (200, Some("/api/z")));
    // A named host is served by its own routes only.
    let (status, v) = call("GET /other HTTP/1.1\r\nHost: billing.internal\r\nConnection: close\r\n\r\n");
    assert_eq!((status, v["error"].as_str()), (404, Some("not_found")));
    // Any other host takes the route that names none. Hop-by-hop fields (those Connection
    // names included) and the app's credentials stop here; the token replaces them.
    let (status, v) = call(
        "GET /p HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close, x-hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\n\
         Proxy-Authorization: Basic eDp5\r\nAuthorization: Bearer the-apps-own\r\nX-Kept: 1\r\n\r\n",
    );
    assert_eq!((status, azp(&v).as_str()), (200, "writer"));
    for gone in ["x-hop", "keep-alive", "proxy-authorization"] {
        assert!(v["headers"].get(gone).is_none(), "{gone}: {v}");
    }
    assert_eq!(v["headers"]["x-kept"][0], "1", "{v}");
    // A real HTTP_PROXY client.
    let proxied = reqwest::blocking::Client::builder()
        .proxy(reqwest::Proxy::http(side.url("")).unwrap())
        .build()
        .unwrap();
    let v: Value = proxied
        .get("http://billing.internal/api/q?a=b")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!((v["path"].as_str(), azp(&v).as_str()), (Some("/api/q?a=b"), "writer"));
    // tollgate makes the TLS connection; a tunnel or an https target would bypass it.
    let (status, _) =
        call("GET https://orders.internal/x HTTP/1.1\r\nHost: orders.internal\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 400);
    let (status, _) = call("CONNECT orders.internal:443 HTTP/1.1\r\nHost: orders.internal:443\r\n\r\n");
    assert_eq!(status, 405);
}

#[test]
fn failures_answer_502_504_and_503_promptly_with_json_bodies() {
    let up = echo::start();
    let routes = format!(
        r#"
[[egress.routes]]
prefix = "/down"
upstream = "{{DOWN}}"
realm = "demo"
client = "product-sa-client"
[[egress.routes]]
prefix = "/slow"
upstream = "{{UPSTREAM}}"
read_timeout = "300ms"
realm = "demo"
client = "product-sa-client"
[[egress.routes]]
prefix = "/no-token"
upstream = "{{UPSTREAM}}"
token_endpoint = "http://{}/token"
client_id = "svc"
client_secret = "s3cr3t-value"
{LOCAL}"#,
        dead_addr()
    );
    let side = Sidecar::start(&routes, up.addr, &[]);
    for (path, status, error) in [
        ("/down/x", 502, "bad_gateway"),
        ("/slow/x", 504, "upstream_timeout"),
        ("/no-token/x", 503, "temporarily_unavailable"),
    ] {
        let t = Instant::now();
        let r = side.get(path);
        assert_eq!(r.status(), status, "{path}");
        let body = r.text().unwrap();
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["error"], error, "{path}: {body}");
        assert!(!body.contains("s3cr3t"));
        assert!(t.elapsed() < Duration::from_secs(8), "{path} took {:?}", t.elapsed());
    }
    // Bodies stream through: 2 MiB up, in one call.
    let r = client()
        .post(side.url("/upload"))
        .body(vec![7u8; 2 << 20])
        .send()
        .unwrap();
    let v: Value = r.json().unwrap();
    assert_eq!(v["body_len"], 2 << 20);
    assert!(!side.tg.logs().contains("s3cr3t"), "{}", side.tg.logs());
}

#[test]
fn routes_and_token_sources_follow_a_reload() {
    let up = echo::start();
    let side = Sidecar::start(LOCAL, up.addr, &[]);
    assert_eq!(claims_of(&side.get_token("/x"))["azp"], "product-sa-client");
    let path = side.tg.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    let changed = text.replace(
        "client = \"product-sa-client\"\nscope = \"orders\"",
        "client = \"writer\"\nprefix = \"/v2\"",
    );
    assert_ne!(changed, text);
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, changed).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    eventually(Duration::from_secs(5), "the reloaded route", || {
        side.get("/x").status() == 404
    });
    assert_eq!(claims_of(&side.get_token("/v2/x"))["azp"], "writer");
}

#[test]
fn check_refuses_an_egress_listener_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(common::DEMO_KEY, dir.path().join("demo-rs256.pem")).unwrap();
    let run = |listen: &str| {
        let text = format!("{BASE_CONFIG}\n[egress]\nlisten = \"{listen}\"\n{LOCAL}")
            .replace("{UPSTREAM}", "127.0.0.1:9000")
            .replace("{DOWN}", "127.0.0.1:9");
        let path = dir.path().join("proxy.toml");
        std::fs::write(&path, text).unwrap();
        let out = std::process::Command::new(bin())
            .args(["check", "--config", path.to_str().unwrap()])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    let (code, text) = run("0.0.0.0:15001");
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("egress.listen") && text.contains("loopback"), "{text}");
    let (code, text) = run("127.0.0.1:15001");
    assert_eq!(code, Some(0), "{text}");
}
