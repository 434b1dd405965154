//! Token issuance: the client-credentials grant as Keycloak's service accounts answer it.

mod common;

use common::*;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use reqwest::blocking::Response;
use serde_json::Value;

fn start() -> (Tollgate, echo::Echo) {
    let up = echo::start();
    (Tollgate::start(BASE_CONFIG, up.addr), up)
}

fn token_url(tg: &Tollgate) -> String {
    tg.url("/realms/demo/protocol/openid-connect/token")
}

/// Assert an RFC 6749 §5.2 error: status, code, no-store, JSON body with no secret in it.
fn assert_oauth_error(r: Response, status: u16, code: &str) -> Value {
    assert_eq!(r.status(), status);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["content-type"], "application/json");
    let text = r.text().unwrap();
    for secret in ["password", "writer-secret", "disabled-secret", "wrong-secret"] {
        assert!(!text.contains(secret), "error body leaks a secret: {text}");
    }
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["error"], code, "{text}");
    assert!(v["error_description"].is_string());
    v
}

#[test]
fn keycloak_documented_request_gets_a_token() {
    let (tg, _up) = start();
    let r = client()
        .post(tg.url("/auth/realms/demo/protocol/openid-connect/token"))
        .header("Authorization", "Basic cHJvZHVjdC1zYS1jbGllbnQ6cGFzc3dvcmQ=")
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials")
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["pragma"], "no-cache");
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let v: Value = r.json().unwrap();
    assert!(v["access_token"].as_str().unwrap().split('.').count() == 3);
    assert_eq!(v["expires_in"], 300);
    assert_eq!(v["refresh_expires_in"], 0);
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["not-before-policy"], 0);
    assert_eq!(v["scope"], "profile email");
    assert!(v.get("refresh_token").is_none());
}

#[test]
fn token_verifies_through_the_jwks_and_carries_keycloak_claims() {
    let (tg, _up) = start();
    let token = tg.token("product-sa-client", "password");
    let jwks: JwkSet = tg.get_json("/realms/demo/protocol/openid-connect/certs");
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    assert_eq!(header.kid.as_deref(), Some("demo-rs256"));
    let jwk = jwks.find("demo-rs256").expect("signing key published");
    let issuer = format!("http://localhost:{}/realms/demo", tg.http.port());
    let mut v = Validation::new(header.alg);
    v.set_issuer(&[&issuer]);
    v.set_audience(&["orders-api"]);
    let data = jsonwebtoken::decode::<Value>(&token, &DecodingKey::from_jwk(jwk).unwrap(), &v).unwrap();
    let c = data.claims;
    let now = now();
    assert!(c["iat"].as_u64().unwrap() <= now + 1 && c["iat"].as_u64().unwrap() + 5 >= now);
    assert_eq!(c["exp"].as_u64().unwrap() - c["iat"].as_u64().unwrap(), 300);
    assert!(c["jti"].as_str().unwrap().len() >= 32);
    assert_eq!(c["iss"], issuer);
    assert_eq!(c["aud"], "orders-api");
    assert_eq!(c["typ"], "Bearer");
    assert_eq!(c["azp"], "product-sa-client");
    assert_eq!(c["client_id"], "product-sa-client");
    assert_eq!(c["preferred_username"], "service-account-product-sa-client");
    assert_eq!(c["realm_access"]["roles"], serde_json::json!(["reader"]));
    assert_eq!(c["resource_access"]["orders-api"]["roles"], serde_json::json!(["read"]));
    assert_eq!(c["scope"], "profile email");
    assert_eq!(c["clientHost"], "127.0.0.1");
    assert_eq!(c["clientAddress"], "127.0.0.1");
    // sub is stable per client; jti is not.
    let again = claims_of(&tg.token("product-sa-client", "password"));
    assert_eq!(again["sub"], c["sub"]);
    assert_ne!(again["jti"], c["jti"]);
    let other = claims_of(&tg.token("writer", "writer-secret"));
    assert_ne!(other["sub"], c["sub"]);
}

#[test]
fn client_secret_post_and_the_short_path_work() {
    let (tg, _up) = start();
    for path in [
        "/token",
        "/realms/demo/protocol/openid-connect/token",
        "/auth/realms/demo/protocol/openid-connect/token",
    ] {
        let r = client()
            .post(tg.url(path))
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", "product-sa-client"),
                ("client_secret", "password"),
            ])
            .send()
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
}

#[test]
fn scope_mappings_limit_roles_without_full_scope() {
    let (tg, _up) = start();
    let c = claims_of(&tg.token("writer", "writer-secret"));
    assert_eq!(c["realm_access"]["roles"], serde_json::json!(["writer"]));
    assert_eq!(
        c["resource_access"]["orders-api"]["roles"],
        serde_json::json!(["write"])
    );
    assert_eq!(c["aud"], "orders-api");
}

#[test]
fn optional_scopes_are_granted_only_when_asked_and_unknown_scopes_refused() {
    let (tg, _up) = start();
    let ask = |scope: &str| {
        client()
            .post(token_url(&tg))
            .basic_auth("product-sa-client", Some("password"))
            .form(&[("grant_type", "client_credentials"), ("scope", scope)])
            .send()
            .unwrap()
    };
    let v: Value = ask("orders").json().unwrap();
    assert_eq!(v["scope"], "profile email orders");
    assert_eq!(
        claims_of(v["access_token"].as_str().unwrap())["scope"],
        "profile email orders"
    );
    let v = assert_oauth_error(ask("orders admin-everything"), 400, "invalid_scope");
    assert!(v["error_description"].as_str().unwrap().contains("admin-everything"));
}

#[test]
fn bad_client_credentials_are_401_invalid_client_with_basic_challenge() {
    let (tg, _up) = start();
    for (id, secret) in [
        ("product-sa-client", "wrong-secret"),
        ("no-such-client", "password"),
        ("disabled", "disabled-secret"),
    ] {
        let r = tg.grant(id, secret);
        assert_eq!(r.headers()["www-authenticate"], "Basic realm=\"demo\"", "{id}");
        assert_oauth_error(r, 401, "invalid_client");
    }
    // client_secret_post: 401 too, without a Basic challenge.
    let r = client()
        .post(token_url(&tg))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "product-sa-client"),
            ("client_secret", "wrong-secret"),
        ])
        .send()
        .unwrap();
    assert!(r.headers().get("www-authenticate").is_none());
    assert_oauth_error(r, 401, "invalid_client");
    // No credentials at all.
    let r = client()
        .post(token_url(&tg))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap();
    assert_oauth_error(r, 401, "invalid_client");
}

#[test]
fn client_without_service_account_is_unauthorized_client() {
    let (tg, _up) = start();
    let r = tg.grant("no-sa", "no-sa-secret");
    assert_oauth_error(r, 400, "unauthorized_client");
}

#[test]
fn malformed_requests_are_invalid_request() {
    let (tg, _up) = start();
    let basic = || {
        client()
            .post(token_url(&tg))
            .basic_auth("product-sa-client", Some("password"))
    };
    // Other grant.
    assert_oauth_error(
        basic().form(&[("grant_type", "authorization_code")]).send().unwrap(),
        400,
        "unsupported_grant_type",
    );
    // Missing grant_type.
    assert_oauth_error(
        basic().form(&[("scope", "orders")]).send().unwrap(),
        400,
        "invalid_request",
    );
    // Repeated parameter.
    let r = basic()
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&grant_type=client_credentials")
        .send()
        .unwrap();
    assert_oauth_error(r, 400, "invalid_request");
    // Two authentication methods.
    let r = basic()
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "product-sa-client"),
            ("client_secret", "password"),
        ])
        .send()
        .unwrap();
    assert_oauth_error(r, 400, "invalid_request");
    // JSON body.
    let r = basic()
        .header("content-type", "application/json")
        .body(r#"{"grant_type":"client_credentials"}"#)
        .send()
        .unwrap();
    assert_oauth_error(r, 400, "invalid_request");
    // Bad percent-encoding.
    let r = basic()
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client%ZZcredentials")
        .send()
        .unwrap();
    assert_oauth_error(r, 400, "invalid_request");
}

#[test]
fn get_on_the_token_endpoint_is_405_and_unknown_realm_404() {
    let (tg, _up) = start();
    let r = client().get(token_url(&tg)).send().unwrap();
    assert_eq!(r.headers()["allow"], "POST");
    assert_oauth_error(r, 405, "method_not_allowed");
    let r = client()
        .post(tg.url("/realms/nope/protocol/openid-connect/token"))
        .basic_auth("product-sa-client", Some("password"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap();
    assert_oauth_error(r, 404, "not_found");
}

#[test]
fn discovery_document_names_the_endpoints() {
    let (tg, _up) = start();
    let d: Value = tg.get_json("/realms/demo/.well-known/openid-configuration");
    let issuer = format!("http://localhost:{}/realms/demo", tg.http.port());
    assert_eq!(d["issuer"], issuer);
    assert_eq!(d["token_endpoint"], format!("{issuer}/protocol/openid-connect/token"));
    assert_eq!(d["jwks_uri"], format!("{issuer}/protocol/openid-connect/certs"));
    assert_eq!(
        d["introspection_endpoint"],
        format!("{issuer}/protocol/openid-connect/token/introspect")
    );
    assert_eq!(
        d["revocation_endpoint"],
        format!("{issuer}/protocol/openid-connect/revoke")
    );
    assert!(d["grant_types_supported"]
        .as_array()
        .unwrap()
        .contains(&"client_credentials".into()));
    let methods = d["token_endpoint_auth_methods_supported"].as_array().unwrap();
    for m in [
        "client_secret_basic",
        "client_secret_post",
        "private_key_jwt",
        "client_secret_jwt",
    ] {
        assert!(methods.contains(&m.into()), "{m}");
    }
}

#[test]
fn es256_and_eddsa_realms_issue_tokens_that_verify() {
    let up = echo::start();
    for (alg, file) in [("ES256", "demo-es256.pem"), ("EdDSA", "demo-eddsa.pem")] {
        let key = config::inline(&[("kid", &format!("k-{alg}")), ("alg", alg), ("private_key", file)]);
        let config = Config::base().realm("demo", "signing_keys", vec![key]).render();
        let tg = Tollgate::start(&config, up.addr);
        let token = tg.token("product-sa-client", "password");
        assert_eq!(header_of(&token)["alg"], alg);
        let jwks: JwkSet = tg.get_json("/realms/demo/protocol/openid-connect/certs");
        let key = DecodingKey::from_jwk(jwks.find(&format!("k-{alg}")).unwrap()).unwrap();
        let mut v = Validation::new(jsonwebtoken::decode_header(&token).unwrap().alg);
        v.set_audience(&["orders-api"]);
        jsonwebtoken::decode::<Value>(&token, &key, &v).unwrap();
        // And the guard accepts it.
        assert_eq!(tg.get_status("/api/orders/1", &token), 200, "{alg}");
    }
}

#[test]
fn metrics_count_tokens_and_errors() {
    let (tg, _up) = start();
    tg.token("product-sa-client", "password");
    let _ = client()
        .post(token_url(&tg))
        .basic_auth("product-sa-client", Some("wrong-secret"))
        .form(&[("grant_type", "client_credentials")])
        .send();
    let m = tg.metrics();
    assert!(
        m.contains(
            r#"tollgate_tokens_issued_total{realm="demo",client="product-sa-client",grant="client_credentials"} 1"#
        ),
        "{m}"
    );
    assert!(
        m.contains(r#"tollgate_token_errors_total{realm="demo",endpoint="token",error="invalid_client"} 1"#),
        "{m}"
    );
}
