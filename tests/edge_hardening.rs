//! Requests an upstream framework reads differently from tollgate: path parameters, header
//! names with '_', routing and method-override headers, a second Authorization, forged
//! X-Forwarded-*, chunk extensions. Each runs against the lax upstream (tests/common/lax.rs),
//! which says which handler ran, so the assertion is that no token reaches a handler its roles
//! do not allow, over HTTP/1.1 and HTTP/2.

mod common;

use common::*;
use reqwest::blocking::{Client, Response};
use serde_json::Value;
use std::net::IpAddr;

/// A realm with a reader and an admin client, and nested routes as the bundled config has them.
const LAX_CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
default_realm = "demo"
{SERVER}

[realms.demo]
leeway = "5s"
roles = ["reader", "admin"]
signing_keys = [ { kid = "demo-rs256", alg = "RS256", private_key = "demo-rs256.pem" } ]

[realms.demo.clients.reader-client]
secret = "reader-secret"
service_account_roles = ["reader"]

[realms.demo.clients.admin-client]
secret = "admin-secret"
service_account_roles = ["reader", "admin"]

[[routes]]
prefix = "/api/orders"
methods = ["GET", "HEAD"]
roles = ["reader"]
upstream = "{UPSTREAM}"

[[routes]]
prefix = "/api/orders/admin"
roles = ["admin"]
upstream = "{UPSTREAM}"

[[routes]]
prefix = "/public"
public = true
upstream = "{UPSTREAM}"
"#;

fn start_with(server: &str) -> (Tollgate, lax::Lax) {
    let up = lax::start();
    (Tollgate::start(&LAX_CONFIG.replace("{SERVER}", server), up.addr), up)
}

fn start() -> (Tollgate, lax::Lax) {
    start_with("")
}

fn h2() -> Client {
    Client::builder().http2_prior_knowledge().build().unwrap()
}

/// The clients of both protocols.
fn clients() -> [(&'static str, Client); 2] {
    [("HTTP/1.1", client()), ("HTTP/2", h2())]
}

/// The handlers a token with `roles` may reach.
fn allowed(roles: &[&str], handler: &str) -> bool {
    match handler {
        "public" => true,
        "orders" => roles.contains(&"reader"),
        "admin" => roles.contains(&"admin"),
        _ => false,
    }
}

/// Asserts that an answer let through reached only a handler `roles` allow, and that the
/// handler was told exactly the token's roles. Returns the status and the lax upstream's view.
fn assert_contained(what: &str, r: Response, roles: &[&str]) -> (u16, Value) {
    let status = r.status().as_u16();
    let v: Value = r.json().unwrap_or(Value::Null);
    if status == 200 {
        let handler = v["handler"].as_str().unwrap();
        assert!(
            allowed(roles, handler),
            "{what}: a {roles:?} token reached {handler}: {v}"
        );
        let told = v["roles"].as_str().map(|s| {
            let mut r: Vec<&str> = s.split(',').collect();
            r.sort();
            r.join(",")
        });
        let mut want: Vec<&str> = roles.to_vec();
        want.sort();
        let want = (!want.is_empty()).then(|| want.join(","));
        assert_eq!(told, want, "{what}: the handler was told other roles: {v}");
    }
    (status, v)
}

const READER: &[&str] = &["reader"];

#[test]
fn path_parameters_never_take_a_reader_to_the_admin_handler() {
    let (tg, _up) = start();
    let reader = tg.token("reader-client", "reader-secret");
    let admin = tg.token("admin-client", "admin-secret");
    for (proto, c) in clients() {
        for path in [
            "/api/orders/admin;x",
            "/api/orders/admin;",
            "/api/orders/admin;jsessionid=1",
            "/api/orders/admin;x/users/7",
            "/api/orders;x/admin",
            "/api;v=1/orders/admin",
            "/api/orders/%61dmin;x",
            "/api/orders/admin%3Bx",
            "/api/orders/;x/admin",
        ] {
            let what = format!("{proto} {path}");
            let r = c.get(tg.url(path)).bearer_auth(&reader).send().unwrap();
            let (status, _) = assert_contained(&what, r, READER);
            let want = if path.contains("%3B") { 400 } else { 403 };
            assert_eq!(status, want, "{what}");
            // The admin gets there, on the path that was authorised: no parameters left.
            let r = c.get(tg.url(path)).bearer_auth(&admin).send().unwrap();
            let (status, v) = assert_contained(&what, r, &["reader", "admin"]);
            if want == 403 {
                assert_eq!((status, v["handler"].as_str()), (200, Some("admin")), "{what}");
                assert!(!v["target"].as_str().unwrap().contains(';'), "{what}: {v}");
            }
        }
        // A reader's own route with parameters is served, cut.
        let r = c
            .get(tg.url("/api/orders/7;jsessionid=abc?x=1"))
            .bearer_auth(&reader)
            .send()
            .unwrap();
        let (status, v) = assert_contained(proto, r, READER);
        assert_eq!((status, v["target"].as_str()), (200, Some("/api/orders/7?x=1")));
    }
}

#[test]
fn dot_segments_with_parameters_are_resolved_or_refused_never_misread() {
    let (tg, _up) = start();
    let reader = tg.token("reader-client", "reader-secret");
    for (target, want) in [
        ("/public;x/../api/orders/admin", 403),
        ("/public/x;y/../../api/orders/admin/1", 403),
        ("/public/..;/api/orders/admin", 400),
        ("/public/.;x/api/orders/admin", 400),
        ("/api/orders/x;/..;/admin", 400),
    ] {
        let req =
            format!("GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {reader}\r\nConnection: close\r\n\r\n");
        let (status, body) = raw_request(tg.http, req.as_bytes());
        assert_eq!(status, want, "{target}: {body}");
        assert!(!body.contains("\"handler\""), "{target} reached the upstream: {body}");
    }
}

#[test]
fn underscore_headers_never_reach_the_upstream_as_identity() {
    let (tg, _up) = start();
    let reader = tg.token("reader-client", "reader-secret");
    for (proto, c) in clients() {
        // A public route: no identity from nothing.
        let r = c
            .get(tg.url("/public/x"))
            .header("X_Auth_Roles", "admin")
            .header("x-auth_subject", "root")
            .header("my_header", "1")
            .send()
            .unwrap();
        let (status, v) = assert_contained(proto, r, &[]);
        assert_eq!(status, 200);
        let cgi = v["cgi"].as_object().unwrap();
        for name in ["HTTP_X_AUTH_ROLES", "HTTP_X_AUTH_SUBJECT", "HTTP_MY_HEADER"] {
            assert!(!cgi.contains_key(name), "{proto}: {name} reached the upstream: {v}");
        }
        // A protected route: the token's roles, and only those.
        let r = c
            .get(tg.url("/api/orders/1"))
            .bearer_auth(&reader)
            .header("X_Auth_Roles", "admin")
            .send()
            .unwrap();
        let (status, v) = assert_contained(proto, r, READER);
        assert_eq!((status, v["roles"].as_str()), (200, Some("reader")), "{proto}");
    }
}

#[test]
fn underscores_in_headers_keeps_other_names_but_never_identity_or_hop_headers() {
    let (tg, _up) = start_with("underscores_in_headers = true");
    let reader = tg.token("reader-client", "reader-secret");
    let r = client()
        .get(tg.url("/api/orders/1"))
        .bearer_auth(&reader)
        .header("my_header", "kept")
        .header("x_auth_roles", "admin")
        .header("x_original_url", "/api/orders/admin")
        .header("x_forwarded_for", "6.6.6.6")
        .send()
        .unwrap();
    let (status, v) = assert_contained("switch on", r, READER);
    assert_eq!(status, 200);
    assert_eq!(v["cgi"]["HTTP_MY_HEADER"], "kept");
    assert_eq!(v["handler"], "orders");
    assert_eq!(v["cgi"]["HTTP_X_FORWARDED_FOR"], "127.0.0.1");
}

#[test]
fn routing_and_method_override_headers_are_stripped() {
    let (tg, _up) = start();
    let reader = tg.token("reader-client", "reader-secret");
    for (proto, c) in clients() {
        for name in ["X-Original-URL", "X-Rewrite-URL"] {
            for path in ["/api/orders/1", "/public/x"] {
                let r = c
                    .get(tg.url(path))
                    .bearer_auth(&reader)
                    .header(name, "/api/orders/admin/delete-everything")
                    .send()
                    .unwrap();
                let roles = if path.starts_with("/public") { &[][..] } else { READER };
                let (status, v) = assert_contained(&format!("{proto} {name} {path}"), r, roles);
                assert_eq!(status, 200);
                assert_eq!(v["path"], path, "{proto} {name}: {v}");
            }
        }
        // /api/orders allows GET and HEAD only: an override must not make it a DELETE.
        for name in ["X-HTTP-Method-Override", "X-HTTP-Method", "X-Method-Override"] {
            let r = c
                .get(tg.url("/api/orders/1"))
                .bearer_auth(&reader)
                .header(name, "DELETE")
                .send()
                .unwrap();
            let (status, v) = assert_contained(proto, r, READER);
            assert_eq!((status, v["method"].as_str()), (200, Some("GET")), "{proto} {name}");
        }
    }
}

#[test]
fn a_second_authorization_field_is_refused() {
    let (tg, _up) = start();
    let reader = tg.token("reader-client", "reader-secret");
    let admin = tg.token("admin-client", "admin-secret");
    for (proto, c) in clients() {
        for path in ["/api/orders/1", "/public/x", "/token"] {
            let r = c
                .get(tg.url(path))
                .header("authorization", format!("Bearer {reader}"))
                .header("authorization", format!("Bearer {admin}"))
                .send()
                .unwrap();
            let (status, v) = assert_contained(proto, r, READER);
            assert_eq!(
                (status, v["error"].as_str()),
                (400, Some("invalid_request")),
                "{proto} {path}"
            );
        }
    }
    let req = format!(
        "GET /api/orders/1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {reader}\r\nAuthorization: Basic YTpi\r\n\r\n"
    );
    assert_eq!(raw_request(tg.http, req.as_bytes()).0, 400);
}

/// A blocking client whose connections leave from `ip` (a loopback address).
fn client_from(ip: &str) -> Client {
    Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

fn client_address(tg: &Tollgate, c: &Client, xff: Option<&str>) -> String {
    let mut req = c
        .post(tg.url("/token"))
        .basic_auth("reader-client", Some("reader-secret"))
        .form(&[("grant_type", "client_credentials")]);
    if let Some(xff) = xff {
        req = req.header("x-forwarded-for", xff);
    }
    let v: Value = req.send().unwrap().json().unwrap();
    claims_of(v["access_token"].as_str().unwrap())["clientAddress"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn forwarded_headers_from_a_client_are_replaced_with_the_peer() {
    let (tg, _up) = start();
    for (proto, c) in clients() {
        let r = c
            .get(tg.url("/public/x"))
            .header("x-forwarded-for", "6.6.6.6")
            .header("x-real-ip", "6.6.6.6")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", "evil.example")
            .header("x-forwarded-prefix", "/admin")
            .header("forwarded", "for=6.6.6.6;proto=https")
            .send()
            .unwrap();
        let (_, v) = assert_contained(proto, r, &[]);
        let cgi = &v["cgi"];
        assert_eq!(cgi["HTTP_X_FORWARDED_FOR"], "127.0.0.1", "{proto}: {v}");
        assert_eq!(cgi["HTTP_X_REAL_IP"], "127.0.0.1", "{proto}");
        assert_eq!(cgi["HTTP_X_FORWARDED_PROTO"], "http", "{proto}");
        assert_eq!(cgi["HTTP_X_FORWARDED_HOST"], tg.http.to_string(), "{proto}");
        assert!(cgi.get("HTTP_FORWARDED").is_none() && cgi.get("HTTP_X_FORWARDED_PREFIX").is_none());
    }
    assert_eq!(client_address(&tg, &client(), Some("6.6.6.6")), "127.0.0.1");
}

#[test]
fn a_trusted_proxy_is_believed_and_appended_to() {
    let (tg, _up) = start_with("trusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\"]");
    let r = client()
        .get(tg.url("/public/x"))
        .header("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.1.1.1")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "api.example.com")
        .send()
        .unwrap();
    let (_, v) = assert_contained("trusted", r, &[]);
    let cgi = &v["cgi"];
    assert_eq!(cgi["HTTP_X_FORWARDED_FOR"], "6.6.6.6, 203.0.113.9, 10.1.1.1, 127.0.0.1");
    assert_eq!(cgi["HTTP_X_REAL_IP"], "203.0.113.9");
    assert_eq!(cgi["HTTP_X_FORWARDED_PROTO"], "https");
    assert_eq!(cgi["HTTP_X_FORWARDED_HOST"], "api.example.com");
    // The token names the client the proxy forwarded for, never what a client wrote further left.
    assert_eq!(
        client_address(&tg, &client(), Some("6.6.6.6, 203.0.113.9")),
        "203.0.113.9"
    );
    assert_eq!(client_address(&tg, &client(), None), "127.0.0.1");
    // A peer outside trusted_proxies is its own client, whatever it says.
    assert_eq!(
        client_address(&tg, &client_from("127.0.0.2"), Some("203.0.113.9")),
        "127.0.0.2"
    );
    let r = client_from("127.0.0.2")
        .get(tg.url("/public/x"))
        .header("x-forwarded-for", "203.0.113.9")
        .send()
        .unwrap();
    assert_eq!(r.json::<Value>().unwrap()["cgi"]["HTTP_X_FORWARDED_FOR"], "127.0.0.2");
}

#[test]
fn chunk_extensions_are_not_passed_on() {
    // pingora's parser accepts any byte in a chunk extension, bare LF and NUL included, and no
    // hook sees the raw chunk line; the upstream gets pingora's own framing, no extension.
    let (tg, _up) = start();
    for ext in [";a=b", ";x\nGET /admin HTTP/1.1", ";\0"] {
        let req = format!(
            "POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5{ext}\r\nhello\r\n0\r\n\r\n"
        );
        let (status, body) = raw_request(tg.http, req.as_bytes());
        if status == 200 {
            let v: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(v["body_len"], 5, "{ext:?}: {v}");
            for line in v["chunk_lines"].as_array().unwrap() {
                let line = line.as_str().unwrap();
                assert!(
                    !line.contains(';') && !line.contains('\0'),
                    "{ext:?} passed on: {line:?}"
                );
            }
        } else {
            assert_eq!(status, 400, "{ext:?}: {body}");
        }
    }
}

#[test]
fn over_tls_the_upstream_is_told_https() {
    use rcgen::{CertificateParams, KeyPair};
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["localhost".to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let up = lax::start();
    let config = LAX_CONFIG.replace(
        "{SERVER}",
        "tls_listen = \"127.0.0.1:0\"\ntls_cert = \"server.crt\"\ntls_key = \"server.key\"",
    );
    let tg = Tollgate::start_with(
        &config,
        up.addr,
        &[
            ("server.crt", cert.pem().as_bytes()),
            ("server.key", key.serialize_pem().as_bytes()),
        ],
    );
    let c = Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem().as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    let port = tg.tls.expect("tls listener").port();
    let r = c
        .get(format!("https://localhost:{port}/public/x"))
        .header("x-forwarded-proto", "http")
        .send()
        .unwrap();
    let v: Value = r.json().unwrap();
    assert_eq!(v["cgi"]["HTTP_X_FORWARDED_PROTO"], "https", "{v}");
    assert_eq!(v["cgi"]["HTTP_X_FORWARDED_HOST"], format!("localhost:{port}"));
}

fn check(config: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(DEMO_KEY, dir.path().join("demo-rs256.pem")).unwrap();
    let path = dir.path().join("proxy.toml");
    std::fs::write(
        &path,
        config.replace("{UPSTREAM}", "127.0.0.1:9").replace("{SERVER}", ""),
    )
    .unwrap();
    let out = std::process::Command::new(bin())
        .arg("check")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code().unwrap_or(-1), text)
}

#[test]
fn check_refuses_role_names_with_commas_and_bad_trusted_proxies() {
    assert_eq!(check(LAX_CONFIG).0, 0, "{}", check(LAX_CONFIG).1);
    let declared = LAX_CONFIG.replace(
        "\nroles = [\"reader\", \"admin\"]\n",
        "\nroles = [\"reader\", \"admin\"]\nclient_roles = { orders-api = [\"read,admin\"] }\n",
    );
    let (code, out) = check(&declared);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("realms.demo.client_roles.orders-api") && out.contains("','"),
        "{out}"
    );
    let undeclared = LAX_CONFIG.replace(
        "service_account_roles = [\"reader\"]",
        "service_account_roles = [\"reader\", \"billing:read,admin\"]",
    );
    let (code, out) = check(&undeclared);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("realms.demo.clients.reader-client.service_account_roles"),
        "{out}"
    );
    let proxies = LAX_CONFIG.replace(
        "{SERVER}",
        "trusted_proxies = [\"10.0.0.0/8\", \"10.0.0.0/33\", \"nope\"]",
    );
    let (code, out) = check(&proxies);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out.matches("server.trusted_proxies").count(), 2, "{out}");
}
