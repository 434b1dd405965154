//! A sidecar that holds no private key trusts a second, real tollgate as its central issuer,
//! through the issuer's discovery document, over HTTP and over HTTPS with a test CA.

mod common;

use common::{client, dead_addr, echo, pki, Tollgate, BASE_CONFIG};
use serde_json::Value;

/// A sidecar whose realm `central` trusts `issuer` through discovery; `realm_keys` are more
/// lines of that realm (such as its `ca_file`).
fn sidecar(issuer: &str, realm_keys: &str, upstream: std::net::SocketAddr, files: &[(&str, &[u8])]) -> Tollgate {
    let config = format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[realms.central]
issuer = "{issuer}"
{realm_keys}

[[routes]]
prefix = "/api/orders"
realm = "central"
roles = ["reader", "orders-api:read"]
upstream = "{{UPSTREAM}}"
"#
    );
    Tollgate::start_with(&config, upstream, files)
}

fn call(tg: &Tollgate, token: &str) -> reqwest::blocking::Response {
    client().get(tg.url("/api/orders/7")).bearer_auth(token).send().unwrap()
}

#[test]
fn tokens_of_a_tollgate_issuer_pass_a_sidecar_that_found_its_keys_by_discovery() {
    let up = echo::start();
    let issuer = Tollgate::start(BASE_CONFIG, up.addr);
    let iss = format!("http://localhost:{}/realms/demo", issuer.http.port());
    let side = sidecar(&iss, "", up.addr, &[]);
    let token = issuer.token("product-sa-client", "password");
    let r = call(&side, &token);
    assert_eq!(r.status(), 200, "{}", side.logs());
    let seen: Value = r.json().unwrap();
    assert_eq!(seen["headers"]["x-auth-realm"][0], "central");
    assert_eq!(seen["headers"]["x-auth-client-id"][0], "product-sa-client");
    assert_eq!(seen["headers"]["x-auth-roles"][0], "orders-api:read,reader");
    // The issuer's other client lacks the route's roles.
    let writer = issuer.token("writer", "writer-secret");
    assert_eq!(call(&side, &writer).status(), 403);
    let ready: Value = client()
        .get(format!("http://{}/readyz", side.admin))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(ready["remote_realms"]["central"]["source"], "discovery", "{ready}");
    assert_eq!(ready["remote_realms"]["central"]["last_fetch"], "ok", "{ready}");
}

#[test]
fn an_https_issuer_is_trusted_through_the_configured_ca_and_only_through_it() {
    let pki = pki();
    let up = echo::start();
    let tls = dead_addr();
    let iss = format!("https://localhost:{}/realms/demo", tls.port());
    let config = BASE_CONFIG
        .replace(
            "\nlisten = \"127.0.0.1:0\"",
            &format!("\nlisten = \"127.0.0.1:0\"\ntls_listen = \"{tls}\"\ntls_cert = \"server.crt\"\ntls_key = \"server.key\""),
        )
        .replace("access_token_lifespan = \"5m\"", &format!("access_token_lifespan = \"5m\"\nissuer = \"{iss}\""));
    let issuer = Tollgate::start_with(
        &config,
        up.addr,
        &[
            ("server.crt", pki.cert_pem.as_bytes()),
            ("server.key", pki.key_pem.as_bytes()),
        ],
    );
    let token = issuer.token("product-sa-client", "password");
    assert_eq!(common::claims_of(&token)["iss"], iss.as_str());

    let trusted = sidecar(
        &iss,
        "ca_file = \"ca.pem\"",
        up.addr,
        &[("ca.pem", pki.ca_pem.as_bytes())],
    );
    assert_eq!(call(&trusted, &token).status(), 200, "{}", trusted.logs());

    // Without the CA the issuer's certificate is not trusted: its keys never arrive, and the
    // token is answered 503 (the client did nothing wrong), never 401.
    let untrusted = sidecar(&iss, "", up.addr, &[]);
    let r = call(&untrusted, &token);
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let ready: Value = client()
        .get(format!("http://{}/readyz", untrusted.admin))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let last = ready["remote_realms"]["central"]["last_fetch"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(last.starts_with("error"), "{ready}");
    assert!(
        untrusted.logs().contains("remote keys not fetched"),
        "{}",
        untrusted.logs()
    );
}
