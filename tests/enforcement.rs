//! Enforcement: every proxied request is authorised before it reaches the upstream.

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use common::*;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use std::path::Path;

fn start() -> (Tollgate, echo::Echo) {
    let up = echo::start();
    (Tollgate::start(BASE_CONFIG, up.addr), up)
}

fn issuer(tg: &Tollgate) -> String {
    format!("http://localhost:{}/realms/demo", tg.http.port())
}

/// Claims like tollgate's own, for a client with the role `reader`.
fn good_claims(tg: &Tollgate) -> Value {
    let now = now();
    json!({
        "exp": now + 300, "iat": now, "jti": "test-jti", "iss": issuer(tg), "aud": "orders-api",
        "sub": "s-1", "typ": "Bearer", "azp": "forged", "client_id": "forged",
        "realm_access": {"roles": ["reader"]}, "scope": "profile",
    })
}

fn get(tg: &Tollgate, path: &str, token: Option<&str>) -> reqwest::blocking::Response {
    let mut r = client().get(tg.url(path));
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    r.send().unwrap()
}

fn assert_invalid_token(tg: &Tollgate, token: &str, path: &str, why: &str) {
    let r = get(tg, path, Some(token));
    assert_eq!(r.status(), 401, "{why}");
    let challenge = r.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(
        challenge.starts_with("Bearer realm=\"demo\", error=\"invalid_token\", error_description=\""),
        "{why}: {challenge}"
    );
    let body = r.text().unwrap();
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "invalid_token", "{why}");
    assert!(
        !body.contains(token.split('.').next().unwrap_or(token)) || token.len() < 8,
        "{why}: token echoed back"
    );
}

#[test]
fn realm_role_allows_and_identity_headers_replace_spoofed_ones() {
    let (tg, _up) = start();
    let token = tg.token("product-sa-client", "password");
    let r = client()
        .get(tg.url("/api/orders/7?expand=items&x=%2F"))
        .bearer_auth(&token)
        .header("X-Auth-Roles", "admin")
        .header("X-Auth-Subject", "root")
        .header("x-auth-anything", "spoof")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().unwrap();
    assert_eq!(echo["path"], "/api/orders/7?expand=items&x=%2F");
    let h = &echo["headers"];
    let c = claims_of(&token);
    assert_eq!(h["x-auth-subject"], json!([c["sub"]]));
    assert_eq!(h["x-auth-client-id"], json!(["product-sa-client"]));
    assert_eq!(h["x-auth-realm"], json!(["demo"]));
    assert_eq!(h["x-auth-roles"], json!(["orders-api:read,reader"]));
    assert_eq!(h["x-auth-scope"], json!(["profile email"]));
    assert!(h.get("x-auth-anything").is_none(), "spoofed header forwarded");
    assert_eq!(
        h["authorization"],
        json!([format!("Bearer {token}")]),
        "token kept by default"
    );
}

/// Header names are case-insensitive (RFC 9110 §5.1); tollgate sends them on in lower case, as
/// HTTP/2 and Envoy do, on every route alike (pingora writes `Host` itself).
#[test]
fn header_names_reach_the_upstream_in_lower_case_on_every_route() {
    let (tg, _up) = start();
    let token = tg.token("product-sa-client", "password");
    for (path, auth) in [
        ("/api/orders/1", format!("Authorization: Bearer {token}\r\n")),
        ("/public/x", String::new()),
    ] {
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: a\r\nX-Request-Tag: t-1\r\n{auth}Connection: close\r\n\r\n");
        let (status, body) = raw_request(tg.http, request.as_bytes());
        assert_eq!(status, 200, "{path}");
        let echo: Value = serde_json::from_str(&body).unwrap();
        let names: Vec<&str> = echo["names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n.as_str().unwrap())
            .collect();
        assert!(names.contains(&"x-request-tag"), "{path}: {names:?}");
        assert!(!names.contains(&"X-Request-Tag"), "{path}: {names:?}");
        let identity = names.iter().filter(|n| n.starts_with("x-auth-")).count();
        assert_eq!(identity, if auth.is_empty() { 0 } else { 5 }, "{path}: {names:?}");
    }
}

#[test]
fn forward_token_false_drops_authorization() {
    let (tg, _up) = start();
    let token = tg.token("product-sa-client", "password");
    let echo: Value = get(&tg, "/api/strip", Some(&token)).json().unwrap();
    assert!(echo["headers"].get("authorization").is_none());
    assert_eq!(echo["headers"]["x-auth-client-id"], json!(["product-sa-client"]));
}

#[test]
fn client_role_and_any_roles_allow() {
    let (tg, _up) = start();
    let reader = tg.token("product-sa-client", "password");
    let writer = tg.token("writer", "writer-secret");
    assert_eq!(get(&tg, "/api/client-role/x", Some(&reader)).status(), 200);
    assert_eq!(get(&tg, "/api/client-role/x", Some(&writer)).status(), 403);
    assert_eq!(get(&tg, "/api/write", Some(&writer)).status(), 200);
    assert_eq!(get(&tg, "/api/any", Some(&writer)).status(), 200);
    assert_eq!(get(&tg, "/api/any", Some(&reader)).status(), 403);
}

#[test]
fn missing_token_is_401_and_too_few_roles_403() {
    let (tg, _up) = start();
    let r = get(&tg, "/api/orders/1", None);
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"demo\"");
    let v: Value = r.json().unwrap();
    assert!(v["error"].is_string() && v["error_description"].is_string());
    let reader = tg.token("product-sa-client", "password");
    let r = get(&tg, "/api/write", Some(&reader));
    assert_eq!(r.status(), 403);
    assert_eq!(
        r.headers()["www-authenticate"],
        "Bearer realm=\"demo\", error=\"insufficient_scope\""
    );
    assert_eq!(r.json::<Value>().unwrap()["error"], "insufficient_scope");
}

#[test]
fn no_route_is_404_and_wrong_method_405() {
    let (tg, _up) = start();
    let r = get(&tg, "/nothing/here", None);
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<Value>().unwrap()["error"], "not_found");
    let token = tg.token("product-sa-client", "password");
    let r = client()
        .delete(tg.url("/api/orders/1"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET, POST, PUT");
}

fn public_pem() -> String {
    use aws_lc_rs::encoding::AsDer;
    use aws_lc_rs::signature::KeyPair;
    let der = pem::parse(std::fs::read(DEMO_KEY).unwrap()).unwrap().into_contents();
    let kp = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
    let spki = kp.public_key().as_der().unwrap();
    pem::encode(&pem::Pem::new("PUBLIC KEY", spki.as_ref().to_vec()))
}

#[test]
fn forged_and_broken_tokens_are_401_invalid_token() {
    let (tg, _up) = start();
    let key = Path::new(DEMO_KEY);
    let good = sign_with(key, Algorithm::RS256, Some("demo-rs256"), &good_claims(&tg));
    assert_eq!(
        get(&tg, "/api/orders/1", Some(&good)).status(),
        200,
        "the control token passes"
    );
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = good_claims(&tg);
        f(&mut c);
        sign_with(key, Algorithm::RS256, Some("demo-rs256"), &c)
    };
    let now = now();

    assert_invalid_token(&tg, "garbage", "/api/orders/1", "garbage");
    assert_invalid_token(&tg, "a.b.c", "/api/orders/1", "three junk parts");
    // Bytes outside the token68 alphabet, in and beside a token the cache now holds.
    assert_invalid_token(
        &tg,
        &format!("{good}\""),
        "/api/orders/1",
        "a quote after a cached token",
    );
    assert_invalid_token(
        &tg,
        &good.replacen('.', "!", 1),
        "/api/orders/1",
        "a byte outside token68",
    );

    // alg: none, unsigned.
    let h = B64.encode(r#"{"alg":"none","typ":"JWT","kid":"demo-rs256"}"#);
    let p = B64.encode(good_claims(&tg).to_string());
    assert_invalid_token(&tg, &format!("{h}.{p}."), "/api/orders/1", "alg none");

    // HS256 keyed with the realm's public key.
    let mut hdr = jsonwebtoken::Header::new(Algorithm::HS256);
    hdr.kid = Some("demo-rs256".into());
    let hs = jsonwebtoken::encode(
        &hdr,
        &good_claims(&tg),
        &jsonwebtoken::EncodingKey::from_secret(public_pem().as_bytes()),
    )
    .unwrap();
    assert_invalid_token(&tg, &hs, "/api/orders/1", "HS256 with the public key");

    // Tampered payload: more roles, same signature.
    let parts: Vec<&str> = good.split('.').collect();
    let mut c = good_claims(&tg);
    c["realm_access"]["roles"] = json!(["reader", "writer", "admin"]);
    let tampered = format!("{}.{}.{}", parts[0], B64.encode(c.to_string()), parts[2]);
    assert_invalid_token(&tg, &tampered, "/api/orders/1", "tampered payload");

    // A foreign key under the realm's kid, and an unknown kid.
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("foreign.pem");
    std::fs::write(&foreign, tollgate::token::keys::generate_pem(Algorithm::RS256).unwrap()).unwrap();
    assert_invalid_token(
        &tg,
        &sign_with(&foreign, Algorithm::RS256, Some("demo-rs256"), &good_claims(&tg)),
        "/api/orders/1",
        "foreign key",
    );
    assert_invalid_token(
        &tg,
        &sign_with(key, Algorithm::RS256, Some("other-kid"), &good_claims(&tg)),
        "/api/orders/1",
        "unknown kid",
    );
    assert_invalid_token(
        &tg,
        &sign_with(key, Algorithm::RS256, None, &good_claims(&tg)),
        "/api/orders/1",
        "no kid",
    );
    // RS512 with the right key: the alg is not the key's.
    assert_invalid_token(
        &tg,
        &sign_with(key, Algorithm::RS512, Some("demo-rs256"), &good_claims(&tg)),
        "/api/orders/1",
        "alg not the key's",
    );

    // Time, issuer, audience, type.
    assert_invalid_token(&tg, &with(&|c| c["exp"] = json!(now - 60)), "/api/orders/1", "expired");
    assert_invalid_token(
        &tg,
        &with(&|c| c["nbf"] = json!(now + 120)),
        "/api/orders/1",
        "not yet valid",
    );
    assert_invalid_token(
        &tg,
        &with(&|c| c["iss"] = json!("http://evil/realms/demo")),
        "/api/orders/1",
        "wrong issuer",
    );
    assert_invalid_token(
        &tg,
        &with(&|c| c["typ"] = json!("Refresh")),
        "/api/orders/1",
        "typ Refresh",
    );
    assert_invalid_token(&tg, &with(&|c| c["typ"] = json!("ID")), "/api/orders/1", "typ ID");
    assert_invalid_token(
        &tg,
        &with(&|c| {
            c.as_object_mut().unwrap().remove("exp");
        }),
        "/api/orders/1",
        "no exp",
    );
    assert_invalid_token(&tg, &good, "/api/aud", "wrong audience");
    let aud_ok = with(&|c| c["aud"] = json!(["orders-api", "billing-api"]));
    assert_eq!(get(&tg, "/api/aud", Some(&aud_ok)).status(), 200);
    // Inside the leeway (5 s) an expired token still passes.
    assert_eq!(
        get(&tg, "/api/orders/1", Some(&with(&|c| c["exp"] = json!(now - 2)))).status(),
        200
    );
}

#[test]
fn path_tricks_never_reach_a_route_the_roles_do_not_allow() {
    let (tg, _up) = start();
    // writer lacks `reader`, so /api/orders must never see it; /public takes anyone.
    let writer = tg.token("writer", "writer-secret");
    let cases: &[(&str, &[u16])] = &[
        ("/public/../api/orders", &[403]),
        ("/public/%2e%2e/api/orders", &[403]),
        ("/public/%2E%2E/api/orders", &[403]),
        ("/public/.%2e/api/orders", &[403]),
        ("/public/..%2fapi/orders", &[400]),
        ("/public/..%2Fapi/orders", &[400]),
        ("/public/..%5capi/orders", &[400]),
        ("/public\\..\\api\\orders", &[400]),
        ("//api/orders", &[403]),
        ("/api//orders", &[403]),
        ("/api/./orders", &[403]),
        ("/api/orders%00", &[400]),
        ("/public/%00/../api/orders", &[400]),
        ("/public/%252e%252e/api/orders", &[200]),
        ("/API/ORDERS", &[404]),
        ("/Api/orders", &[404]),
        ("/public/../../api/orders", &[400]),
        ("/%61pi/orders", &[403]),
        ("/public;/../api/orders", &[403]),
        ("/public/..;/api/orders", &[400]),
        ("/public/%2e%2e;x/api/orders", &[400]),
    ];
    for (path, allowed) in cases {
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {writer}\r\nConnection: close\r\n\r\n");
        let (status, body) = raw_request(tg.http, req.as_bytes());
        assert!(allowed.contains(&status), "{path}: got {status} {body}");
        if status == 200 {
            // What reached the upstream is the normalised path, under /public.
            let v: Value = serde_json::from_str(&body).unwrap();
            let seen = v["path"].as_str().unwrap();
            assert!(seen.starts_with("/public/"), "{path} reached {seen}");
            assert!(
                !seen.contains("/api/orders") || seen.contains("%252e"),
                "{path} reached {seen}"
            );
        }
    }
    // Without any token the same tricks are 401/400/404, never 200 on a protected route.
    let (status, _) = raw_request(
        tg.http,
        b"GET /public/%2e%2e/api/orders HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 401);
}

#[test]
fn the_upstream_gets_the_normalised_target_with_its_query() {
    let (tg, _up) = start();
    let cases = [
        ("/public/x?a=1&b=%2F", "/public/x?a=1&b=%2F"),
        ("/public/x", "/public/x"),
        ("/public/x?", "/public/x?"),
        ("/public//a/./b/../x?q=%2e", "/public/a/x?q=%2e"),
        ("/public/%7euser?q", "/public/~user?q"),
        ("http://x/public/./x?a=1", "/public/x?a=1"),
    ];
    for (sent, expected) in cases {
        let req = format!("GET {sent} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let (status, body) = raw_request(tg.http, req.as_bytes());
        assert_eq!(status, 200, "{sent}: {body}");
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(v["path"], expected, "{sent}");
    }
}

/// Reads one response with a Content-Length body from a kept-alive connection.
fn read_response(r: &mut impl std::io::BufRead) -> (u16, Value) {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    let status = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let mut length = 0;
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        if line.trim_end().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap();
            }
        }
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).unwrap();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

#[test]
fn kept_alive_requests_of_any_size_follow_each_other_on_one_connection() {
    use std::io::{BufReader, Write};
    let (tg, _up) = start();
    let token = tg.token("product-sa-client", "password");
    let mut conn = std::net::TcpStream::connect(tg.http).unwrap();
    conn.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let pad = "p".repeat(6000);
    let requests = [
        "GET /public/1 HTTP/1.1\r\nHost: x\r\n\r\n".to_string(),
        // Longer than the buffer it is read into while waiting for it: the parser reads the rest.
        format!("GET /api/orders/2 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\nX-Pad: {pad}\r\n\r\n"),
        format!("GET /public/3 HTTP/1.1\r\nHost: x\r\nX-Pad: {pad}\r\n\r\n"),
    ];
    for (i, req) in requests.iter().enumerate() {
        if i == 2 {
            // The head split across two writes, the second after a pause.
            let (a, b) = req.split_at(10);
            conn.write_all(a.as_bytes()).unwrap();
            std::thread::sleep(std::time::Duration::from_millis(100));
            conn.write_all(b.as_bytes()).unwrap();
        } else {
            conn.write_all(req.as_bytes()).unwrap();
        }
        let (status, echo) = read_response(&mut reader);
        assert_eq!(status, 200, "request {i}: {echo}");
        assert_eq!(
            echo["path"],
            format!("/{}/{}", if i == 1 { "api/orders" } else { "public" }, i + 1)
        );
        if i > 0 {
            assert_eq!(echo["headers"]["x-pad"], json!([pad]), "request {i}");
        }
    }
}

#[test]
fn upstream_refusing_is_502_and_slow_is_504() {
    let (tg, _up) = start();
    let r = get(&tg, "/down/x", None);
    assert_eq!(r.status(), 502);
    assert_eq!(r.json::<Value>().unwrap()["error"], "bad_gateway");
    let t = std::time::Instant::now();
    let r = get(&tg, "/slow/x", None);
    assert_eq!(r.status(), 504);
    assert!(
        t.elapsed() < std::time::Duration::from_millis(1900),
        "504 came from the timeout, not the upstream finishing"
    );
    assert_eq!(r.json::<Value>().unwrap()["error"], "upstream_timeout");
}

#[test]
fn upstream_connections_are_pooled() {
    let (tg, up) = start();
    let token = tg.token("product-sa-client", "password");
    let c = client();
    for _ in 0..50 {
        assert_eq!(
            c.get(tg.url("/api/orders/1"))
                .bearer_auth(&token)
                .send()
                .unwrap()
                .status(),
            200
        );
    }
    let conns = up.connections.load(std::sync::atomic::Ordering::Relaxed);
    assert!(conns <= 4, "50 sequential requests opened {conns} upstream connections");
}

#[test]
fn a_100_mb_upload_streams_through_without_being_buffered() {
    let (tg, _up) = start();
    const SIZE: u64 = 100 * 1024 * 1024;
    struct Zeros(u64);
    impl std::io::Read for Zeros {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = (buf.len() as u64).min(self.0) as usize;
            buf[..n].fill(0);
            self.0 -= n as u64;
            Ok(n)
        }
    }
    let before = rss_kib(tg.child.id());
    let body = reqwest::blocking::Body::sized(Zeros(SIZE), SIZE);
    let r = client().post(tg.url("/public/upload")).body(body).send().unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    assert_eq!(v["body_len"], SIZE);
    let after = rss_kib(tg.child.id());
    assert!(
        after < before + 40 * 1024,
        "RSS grew from {before} KiB to {after} KiB for a 100 MB body"
    );
}

#[test]
fn http2_clients_are_served() {
    let (tg, _up) = start();
    let c = reqwest::blocking::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let r = c
        .post(tg.url("/token"))
        .basic_auth("product-sa-client", Some("password"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap();
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(r.status(), 200);
    let token = r.json::<Value>().unwrap()["access_token"].as_str().unwrap().to_string();
    let r = c.get(tg.url("/api/orders/1")).bearer_auth(&token).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.version(), reqwest::Version::HTTP_2);
    assert_eq!(c.get(tg.url("/api/orders/1")).send().unwrap().status(), 401);
}

#[test]
fn tokens_never_appear_in_logs() {
    let (tg, _up) = start();
    let token = tg.token("product-sa-client", "password");
    let _ = get(&tg, "/api/orders/1", Some(&token));
    let _ = get(&tg, "/api/write", Some(&token));
    let _ = get(&tg, "/api/orders/1", Some(&format!("{token}x")));
    // Access lines are written in batches; wait for all four (the token request too).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while tg.logs().matches("outcome").count() < 4 {
        assert!(
            std::time::Instant::now() < deadline,
            "access lines are logged: {}",
            tg.logs()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let logs = tg.logs();
    let sig = token.rsplit('.').next().unwrap();
    assert!(
        !logs.contains(sig) && !logs.contains("password"),
        "a token or secret reached the log"
    );
    // stderr is a pipe here, not a terminal: plain text, no colour escapes.
    assert!(!logs.contains('\u{1b}'), "colour codes in a piped log: {logs:?}");
}
