//! Token lifecycle: JWT client authentication (RFC 7523), introspection (RFC 7662),
//! revocation (RFC 7009) and refresh for clients that enable it.

mod common;

use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::path::Path;

const EXTRA: &str = r#"
[realms.demo.clients.jwt-client]
jwks = "jwt-client.jwks.json"
service_account_roles = ["reader"]

[realms.demo.clients.hmac-client]
secret = "a-long-shared-hmac-secret-for-client-secret-jwt"
service_account_roles = ["reader"]

[realms.demo.clients.refresher]
secret = "refresher-secret"
service_account_roles = ["reader"]
use_refresh_token = true

[realms.demo.clients.refresher2]
secret = "refresher2-secret"
service_account_roles = ["reader"]
use_refresh_token = true
"#;

struct Setup {
    tg: Tollgate,
    _up: echo::Echo,
    /// The jwt-client's ES256 private key (PEM) and an unrelated one.
    key: String,
    rsa_key: String,
    other_key: String,
}

fn setup() -> Setup {
    let key = tollgate::token::keys::generate_pem(Algorithm::ES256).unwrap();
    let rsa_key = tollgate::token::keys::generate_pem(Algorithm::RS256).unwrap();
    let other_key = tollgate::token::keys::generate_pem(Algorithm::ES256).unwrap();
    let jwk = |pem: &str, alg, kid| {
        tollgate::token::keys::SigningKey::from_pem(kid, alg, pem.as_bytes())
            .unwrap()
            .jwk
            .clone()
    };
    let jwks =
        json!({"keys": [jwk(&key, Algorithm::ES256, "c-es"), jwk(&rsa_key, Algorithm::RS256, "c-rs")]}).to_string();
    let up = echo::start();
    let tg = Tollgate::start_with(
        &format!("{BASE_CONFIG}{EXTRA}"),
        up.addr,
        &[("jwt-client.jwks.json", jwks.as_bytes())],
    );
    Setup {
        tg,
        _up: up,
        key,
        rsa_key,
        other_key,
    }
}

fn token_endpoint(tg: &Tollgate) -> String {
    format!(
        "http://localhost:{}/realms/demo/protocol/openid-connect/token",
        tg.http.port()
    )
}

fn assertion(claims: &Value, alg: Algorithm, kid: &str, key: &EncodingKey) -> String {
    let mut h = Header::new(alg);
    h.kid = Some(kid.to_string());
    jsonwebtoken::encode(&h, claims, key).unwrap()
}

fn assertion_claims(tg: &Tollgate, client: &str) -> Value {
    let now = now();
    json!({"iss": client, "sub": client, "aud": token_endpoint(tg), "exp": now + 60, "iat": now,
           "jti": format!("{}-{}", client, tollgate::issuer::claims::random_id())})
}

fn es(pem: &str) -> EncodingKey {
    EncodingKey::from_ec_pem(pem.as_bytes()).unwrap()
}

#[test]
fn private_key_jwt_and_client_secret_jwt_authenticate() {
    let s = setup();
    let a = assertion(
        &assertion_claims(&s.tg, "jwt-client"),
        Algorithm::ES256,
        "c-es",
        &es(&s.key),
    );
    let r = s.tg.grant_with_assertion(&a);
    assert_eq!(r.status(), 200);
    let token = r.json::<Value>().unwrap()["access_token"].as_str().unwrap().to_string();
    assert_eq!(claims_of(&token)["azp"], "jwt-client");
    // RS256 key of the same client, and the issuer as audience.
    let mut c = assertion_claims(&s.tg, "jwt-client");
    c["aud"] = json!(format!("http://localhost:{}/realms/demo", s.tg.http.port()));
    let a = assertion(
        &c,
        Algorithm::RS256,
        "c-rs",
        &EncodingKey::from_rsa_pem(s.rsa_key.as_bytes()).unwrap(),
    );
    assert_eq!(s.tg.grant_with_assertion(&a).status(), 200);
    // client_secret_jwt: HS256 keyed with the client's secret.
    let a = assertion(
        &assertion_claims(&s.tg, "hmac-client"),
        Algorithm::HS256,
        "h",
        &EncodingKey::from_secret(b"a-long-shared-hmac-secret-for-client-secret-jwt"),
    );
    assert_eq!(s.tg.grant_with_assertion(&a).status(), 200);
}

#[test]
fn bad_assertions_are_invalid_client() {
    let s = setup();
    let tg = &s.tg;
    let expect_invalid = |a: &str, why: &str| {
        let r = tg.grant_with_assertion(a);
        assert_eq!(r.status(), 401, "{why}");
        assert_eq!(r.json::<Value>().unwrap()["error"], "invalid_client", "{why}");
    };
    // Replay: the same assertion twice.
    let a = assertion(
        &assertion_claims(tg, "jwt-client"),
        Algorithm::ES256,
        "c-es",
        &es(&s.key),
    );
    assert_eq!(tg.grant_with_assertion(&a).status(), 200);
    expect_invalid(&a, "replay");
    // Wrong audience.
    let mut c = assertion_claims(tg, "jwt-client");
    c["aud"] = json!("https://somewhere-else/token");
    expect_invalid(&assertion(&c, Algorithm::ES256, "c-es", &es(&s.key)), "wrong aud");
    // Expired.
    let mut c = assertion_claims(tg, "jwt-client");
    c["exp"] = json!(now() - 120);
    expect_invalid(&assertion(&c, Algorithm::ES256, "c-es", &es(&s.key)), "expired");
    // Lives too long.
    let mut c = assertion_claims(tg, "jwt-client");
    c["exp"] = json!(now() + 24 * 3600);
    expect_invalid(&assertion(&c, Algorithm::ES256, "c-es", &es(&s.key)), "too long");
    // Wrong key under the client's kid.
    expect_invalid(
        &assertion(
            &assertion_claims(tg, "jwt-client"),
            Algorithm::ES256,
            "c-es",
            &es(&s.other_key),
        ),
        "wrong key",
    );
    // Naming another client: product-sa-client has no keys; and iss/sub that disagree.
    expect_invalid(
        &assertion(
            &assertion_claims(tg, "product-sa-client"),
            Algorithm::ES256,
            "c-es",
            &es(&s.key),
        ),
        "other client",
    );
    let mut c = assertion_claims(tg, "jwt-client");
    c["iss"] = json!("hmac-client");
    expect_invalid(&assertion(&c, Algorithm::ES256, "c-es", &es(&s.key)), "iss is not sub");
    // No jti.
    let mut c = assertion_claims(tg, "jwt-client");
    c.as_object_mut().unwrap().remove("jti");
    expect_invalid(&assertion(&c, Algorithm::ES256, "c-es", &es(&s.key)), "no jti");
    // HS256 keyed with something else, for a client without that secret.
    let a = assertion(
        &assertion_claims(tg, "hmac-client"),
        Algorithm::HS256,
        "h",
        &EncodingKey::from_secret(b"guess"),
    );
    expect_invalid(&a, "wrong hmac secret");
}

fn introspect(tg: &Tollgate, token: &str) -> Value {
    let r = client()
        .post(tg.url("/realms/demo/protocol/openid-connect/token/introspect"))
        .basic_auth("writer", Some("writer-secret"))
        .form(&[("token", token)])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "no-store");
    r.json().unwrap()
}

fn revoke(tg: &Tollgate, id: &str, secret: &str, token: &str) -> u16 {
    client()
        .post(tg.url("/realms/demo/protocol/openid-connect/revoke"))
        .basic_auth(id, Some(secret))
        .form(&[("token", token), ("token_type_hint", "access_token")])
        .send()
        .unwrap()
        .status()
        .as_u16()
}

#[test]
fn introspection_of_live_expired_revoked_and_garbage_tokens() {
    let s = setup();
    let tg = &s.tg;
    let token = tg.token("product-sa-client", "password");
    let v = introspect(tg, &token);
    let c = claims_of(&token);
    assert_eq!(v["active"], true);
    assert_eq!(v["client_id"], "product-sa-client");
    assert_eq!(v["username"], "service-account-product-sa-client");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["scope"], "profile email");
    for k in ["exp", "iat", "sub", "iss", "jti"] {
        assert_eq!(v[k], c[k], "{k}");
    }
    assert_eq!(v["aud"], json!(["orders-api"]));
    // Expired (signed with the realm's own key, so only time is wrong).
    let mut old = c.clone();
    old["exp"] = json!(now() - 600);
    old["iat"] = json!(now() - 900);
    let expired = sign_with(Path::new(DEMO_KEY), Algorithm::RS256, Some("demo-rs256"), &old);
    assert_eq!(introspect(tg, &expired), json!({"active": false}));
    assert_eq!(introspect(tg, "garbage"), json!({"active": false}));
    assert_eq!(revoke(tg, "product-sa-client", "password", &token), 200);
    assert_eq!(introspect(tg, &token), json!({"active": false}));
    // Introspection needs client authentication.
    let r = client()
        .post(tg.url("/realms/demo/protocol/openid-connect/token/introspect"))
        .form(&[("token", token.as_str())])
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[test]
fn revocation_by_the_owner_stops_the_token_at_the_proxy_and_survives_reload() {
    let s = setup();
    let tg = &s.tg;
    let token = tg.token("product-sa-client", "password");
    let call = || {
        client()
            .get(tg.url("/api/orders/1"))
            .bearer_auth(&token)
            .send()
            .unwrap()
    };
    assert_eq!(call().status(), 200, "verified and cached");
    // Another client's revocation is answered 200 and changes nothing.
    assert_eq!(revoke(tg, "writer", "writer-secret", &token), 200);
    assert_eq!(call().status(), 200);
    // The owner's does.
    assert_eq!(revoke(tg, "product-sa-client", "password", &token), 200);
    let r = call();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("error=\"invalid_token\""));
    // Garbage is fine to revoke (RFC 7009 §2.2).
    assert_eq!(revoke(tg, "product-sa-client", "password", "not-a-token"), 200);
    // A config reload does not forget revocations.
    let path = tg.config_path();
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        path.with_extension("new"),
        format!("{text}\n[realms.demo.clients.late]\nsecret = \"x\"\n"),
    )
    .unwrap();
    std::fs::rename(path.with_extension("new"), &path).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    while !tg.metrics().contains("tollgate_config_reloads_total 1") {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(call().status(), 401);
}

fn grant(tg: &Tollgate, id: &str, secret: &str, form: &[(&str, &str)]) -> reqwest::blocking::Response {
    client()
        .post(tg.url("/realms/demo/protocol/openid-connect/token"))
        .basic_auth(id, Some(secret))
        .form(form)
        .send()
        .unwrap()
}

#[test]
fn refresh_works_is_client_bound_and_dies_with_revocation() {
    let s = setup();
    let tg = &s.tg;
    // Clients without use_refresh_token get none.
    let v: Value = grant(
        tg,
        "product-sa-client",
        "password",
        &[("grant_type", "client_credentials")],
    )
    .json()
    .unwrap();
    assert!(v.get("refresh_token").is_none());
    assert_eq!(v["refresh_expires_in"], 0);
    let v: Value = grant(
        tg,
        "refresher",
        "refresher-secret",
        &[("grant_type", "client_credentials")],
    )
    .json()
    .unwrap();
    let refresh = v["refresh_token"].as_str().unwrap().to_string();
    assert!(v["refresh_expires_in"].as_u64().unwrap() > 0);
    assert_eq!(claims_of(&refresh)["typ"], "Refresh");
    // A refresh token is not an access token.
    assert_eq!(tg.get_status("/api/orders/1", &refresh), 401);
    // Refresh works for its client.
    let r = grant(
        tg,
        "refresher",
        "refresher-secret",
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    );
    assert_eq!(r.status(), 200);
    let v: Value = r.json().unwrap();
    let access = v["access_token"].as_str().unwrap().to_string();
    assert_eq!(claims_of(&access)["azp"], "refresher");
    assert_eq!(tg.get_status("/api/orders/1", &access), 200);
    // Another refresh-enabled client cannot use it; a client without refresh is refused outright.
    let r = grant(
        tg,
        "refresher2",
        "refresher2-secret",
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    );
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().unwrap()["error"], "invalid_grant");
    let r = grant(
        tg,
        "product-sa-client",
        "password",
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    );
    assert_eq!(r.json::<Value>().unwrap()["error"], "unauthorized_client");
    // Garbage refresh token.
    let r = grant(
        tg,
        "refresher",
        "refresher-secret",
        &[("grant_type", "refresh_token"), ("refresh_token", "junk")],
    );
    assert_eq!(r.json::<Value>().unwrap()["error"], "invalid_grant");
    // Revoked: refresh is invalid_grant, and the access tokens of that grant stop too.
    assert_eq!(revoke(tg, "refresher", "refresher-secret", &refresh), 200);
    let r = grant(
        tg,
        "refresher",
        "refresher-secret",
        &[("grant_type", "refresh_token"), ("refresh_token", &refresh)],
    );
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().unwrap()["error"], "invalid_grant");
    assert_eq!(tg.get_status("/api/orders/1", &access), 401);
}
