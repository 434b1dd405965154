//! Remote realms: tokens of another issuer verified through its published keys, with the key
//! engine's rotation, refetch, outage and reload behaviour seen from outside.

mod common;

use common::jwks::{self, JwksServer};
use common::{claims_of, client, echo, now, Tollgate};
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ISSUER: &str = "https://idp.example/realms/corp";

/// A sidecar with one remote realm `corp` whose keys come from `jwks_uri`, a protected route
/// and a public one. `realm_keys` are more lines of `[realms.corp]`.
fn sidecar_config(jwks_uri: &str, realm_keys: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"

[realms.corp]
issuer = "{ISSUER}"
jwks_uri = "{jwks_uri}"
leeway = "5s"
{realm_keys}

[[routes]]
prefix = "/api/reports"
realm = "corp"
roles = ["reporting"]
upstream = "{{UPSTREAM}}"

[[routes]]
prefix = "/public"
public = true
upstream = "{{UPSTREAM}}"
"#
    )
}

fn claims() -> Value {
    let t = now();
    json!({"iss": ISSUER, "exp": t + 300, "iat": t, "jti": format!("j-{}", rand_id()), "sub": "svc-sub",
           "azp": "reports-client", "realm_access": {"roles": ["reporting"]}})
}

fn rand_id() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now());
    h.finish()
}

fn token_of(key: &tollgate::token::SigningKey) -> String {
    jwks::sign(key, &jwks::header(key), &claims())
}

fn get(tg: &Tollgate, path: &str, token: &str) -> reqwest::blocking::Response {
    client().get(tg.url(path)).bearer_auth(token).send().unwrap()
}

/// Polls `f` until it is true or `within` passes.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if f() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

#[test]
fn a_token_of_the_remote_issuer_passes_with_its_identity_and_roles_are_enforced() {
    let key = jwks::new_key(Algorithm::RS256, "k1");
    let idp = JwksServer::start(&[&key]);
    let up = echo::start();
    let tg = Tollgate::start(&sidecar_config(&idp.jwks_uri(), ""), up.addr);
    let r = get(&tg, "/api/reports/1", &token_of(&key));
    assert_eq!(r.status(), 200);
    let seen: Value = r.json().unwrap();
    assert_eq!(seen["headers"]["x-auth-realm"][0], "corp");
    assert_eq!(seen["headers"]["x-auth-client-id"][0], "reports-client");
    assert_eq!(seen["headers"]["x-auth-roles"][0], "reporting");
    let mut c = claims();
    c["realm_access"]["roles"] = json!(["other"]);
    let r = get(&tg, "/api/reports/1", &jwks::sign(&key, &jwks::header(&key), &c));
    assert_eq!(r.status(), 403);
    let mut c = claims();
    c["iss"] = json!("https://elsewhere.example");
    assert_eq!(
        get(&tg, "/api/reports/1", &jwks::sign(&key, &jwks::header(&key), &c)).status(),
        401
    );
    // No signing keys here: the remote realm's token endpoint is not served.
    let r = client()
        .post(tg.url("/realms/corp/protocol/openid-connect/token"))
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    let ready: Value = client()
        .get(format!("http://{}/readyz", tg.admin))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(ready["remote_realms"]["corp"]["keys"], 1, "{ready}");
    assert_eq!(ready["remote_realms"]["corp"]["last_fetch"], "ok", "{ready}");
    let m = tg.metrics();
    assert!(
        m.contains("tollgate_jwks_fetches_total{realm=\"corp\",result=\"ok\"} 1"),
        "{m}"
    );
    assert!(m.contains("tollgate_jwks_age_seconds{realm=\"corp\"}"), "{m}");
}

#[test]
fn a_rotated_in_key_is_accepted_at_once_and_a_removed_one_stops_verifying() {
    let old = jwks::new_key(Algorithm::RS256, "old");
    let new = jwks::new_key(Algorithm::ES256, "new");
    let idp = JwksServer::start(&[&old]);
    let up = echo::start();
    let tg = Tollgate::start(&sidecar_config(&idp.jwks_uri(), "jwks_refresh = \"1h\""), up.addr);
    let old_token = token_of(&old);
    assert_eq!(get(&tg, "/api/reports/1", &old_token).status(), 200);
    assert_eq!(idp.fetched(), 1);
    // The issuer rotates: the new kid is published and the old one withdrawn.
    idp.serve(200, jwks::jwks(&[&new]));
    let started = Instant::now();
    assert_eq!(get(&tg, "/api/reports/1", &token_of(&new)).status(), 200);
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    assert_eq!(idp.fetched(), 2, "one refetch for the new kid");
    // The old key left with that fetch: its token (cached before) no longer passes.
    let r = get(&tg, "/api/reports/1", &old_token);
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("unknown kid"));
}

#[test]
fn a_flood_of_made_up_kids_costs_the_issuer_at_most_one_more_fetch() {
    let key = jwks::new_key(Algorithm::RS256, "k1");
    let idp = JwksServer::start(&[&key]);
    let up = echo::start();
    let tg = Tollgate::start(&sidecar_config(&idp.jwks_uri(), ""), up.addr);
    assert_eq!(get(&tg, "/api/reports/1", &token_of(&key)).status(), 200);
    let c = client();
    for i in 0..500 {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": format!("made-up-{i}")}).to_string();
        let token = jwks::sign(&key, &header, &claims());
        let r = c.get(tg.url("/api/reports/1")).bearer_auth(&token).send().unwrap();
        assert_eq!(r.status(), 401, "kid {i}");
    }
    assert!(idp.fetched() <= 2, "{} fetches", idp.fetched());
    assert_eq!(
        get(&tg, "/api/reports/1", &token_of(&key)).status(),
        200,
        "the real key still works"
    );
}

#[test]
fn only_signature_keys_of_accepted_algorithms_verify() {
    let rsa = jwks::new_key(Algorithm::RS256, "rsa");
    let ec = jwks::new_key(Algorithm::ES256, "ec");
    let enc_key = jwks::new_key(Algorithm::RS256, "enc");
    let mut enc = enc_key.jwk.clone();
    enc["use"] = json!("enc");
    let doc = json!({"keys": [rsa.jwk, ec.jwk, enc, {"kty": "oct", "kid": "hmac", "k": B64_SECRET, "alg": "HS256"}]});
    let idp = JwksServer::start_on("127.0.0.1:0".parse().unwrap(), doc.to_string().into_bytes());
    let up = echo::start();
    let tg = Tollgate::start(&sidecar_config(&idp.jwks_uri(), "algorithms = [\"RS256\"]"), up.addr);
    assert_eq!(get(&tg, "/api/reports/1", &token_of(&rsa)).status(), 200);
    // An ES256 key, published but outside `algorithms`.
    assert_eq!(get(&tg, "/api/reports/1", &token_of(&ec)).status(), 401);
    // A key published for encryption only.
    assert_eq!(get(&tg, "/api/reports/1", &token_of(&enc_key)).status(), 401);
    // HS256 with the oct key's secret, and alg none.
    let hs = {
        let mut h = jsonwebtoken::Header::new(Algorithm::HS256);
        h.kid = Some("hmac".into());
        jsonwebtoken::encode(&h, &claims(), &jsonwebtoken::EncodingKey::from_secret(b"secret")).unwrap()
    };
    assert_eq!(get(&tg, "/api/reports/1", &hs).status(), 401);
    let none = format!(
        "{}.{}.",
        base64_url(r#"{"alg":"none","kid":"rsa"}"#),
        base64_url(&claims().to_string())
    );
    let r = get(&tg, "/api/reports/1", &none);
    assert_eq!(r.status(), 401);
    // Another kind of token of the same issuer.
    let mut c = claims();
    c["typ"] = json!("Refresh");
    assert_eq!(
        get(&tg, "/api/reports/1", &jwks::sign(&rsa, &jwks::header(&rsa), &c)).status(),
        401
    );
    let at_jwt = json!({"alg": "RS256", "typ": "at+jwt", "kid": "rsa"}).to_string();
    assert_eq!(
        get(&tg, "/api/reports/1", &jwks::sign(&rsa, &at_jwt, &claims())).status(),
        200
    );
}

const B64_SECRET: &str = "c2VjcmV0";

fn base64_url(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// A sidecar whose realm fetched `key`, then an issuer answering `bad`: a token with an unknown
/// kid makes tollgate fetch it; the old key must still verify.
fn the_last_keys_survive(bad: Vec<u8>, why: &str) {
    let key = jwks::new_key(Algorithm::RS256, "k1");
    let idp = JwksServer::start(&[&key]);
    let up = echo::start();
    let tg = Tollgate::start(&sidecar_config(&idp.jwks_uri(), ""), up.addr);
    assert_eq!(get(&tg, "/api/reports/1", &token_of(&key)).status(), 200);
    idp.serve(200, bad);
    let header = json!({"alg": "RS256", "kid": "not-yet-published"}).to_string();
    assert_eq!(
        get(&tg, "/api/reports/1", &jwks::sign(&key, &header, &claims())).status(),
        401
    );
    assert_eq!(idp.fetched(), 2, "the unknown kid made tollgate fetch the bad answer");
    assert_eq!(
        get(&tg, "/api/reports/1", &token_of(&key)).status(),
        200,
        "old keys kept"
    );
    let ready: Value = client()
        .get(format!("http://{}/readyz", tg.admin))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let last = ready["remote_realms"]["corp"]["last_fetch"].as_str().unwrap();
    assert!(last.starts_with("error") && last.contains(why), "{ready}");
    assert!(tg
        .metrics()
        .contains("tollgate_jwks_fetches_total{realm=\"corp\",result=\"error\"} 1"));
}

#[test]
fn a_garbage_jwks_answer_keeps_the_last_keys() {
    the_last_keys_survive(b"<html>not json</html>".to_vec(), "not JSON");
}

#[test]
fn an_oversized_jwks_answer_keeps_the_last_keys() {
    let big = json!({"keys": [], "pad": "x".repeat(2 * 1024 * 1024)});
    the_last_keys_survive(big.to_string().into_bytes(), "larger than 1048576 bytes");
}

#[test]
fn a_jwks_that_drops_every_usable_key_keeps_the_last_keys() {
    the_last_keys_survive(
        br#"{"keys": [{"kty": "oct", "kid": "h", "k": "c2VjcmV0"}]}"#.to_vec(),
        "no usable signature key",
    );
}

#[test]
fn a_jwks_file_realm_verifies_and_follows_the_file() {
    let first = jwks::new_key(Algorithm::ES256, "f1");
    let second = jwks::new_key(Algorithm::EdDSA, "f2");
    let up = echo::start();
    let config = sidecar_config("x", "").replace("jwks_uri = \"x\"", "jwks_file = \"corp.jwks.json\"");
    let tg = Tollgate::start_with(&config, up.addr, &[("corp.jwks.json", &jwks::jwks(&[&first]))]);
    assert_eq!(get(&tg, "/api/reports/1", &token_of(&first)).status(), 200);
    assert_eq!(get(&tg, "/api/reports/1", &token_of(&second)).status(), 401);
    std::fs::write(tg.dir.path().join("corp.jwks.json"), jwks::jwks(&[&second])).unwrap();
    assert!(eventually(Duration::from_secs(5), || get(
        &tg,
        "/api/reports/1",
        &token_of(&second)
    )
    .status()
        == 200));
    assert_eq!(
        get(&tg, "/api/reports/1", &token_of(&first)).status(),
        401,
        "the key left the file"
    );
}

#[test]
fn an_issuer_down_at_start_answers_503_until_it_comes_up() {
    let key = jwks::new_key(Algorithm::RS256, "k1");
    let addr = common::dead_addr();
    let up = echo::start();
    let uri = format!("http://127.0.0.1:{}/certs", addr.port());
    let tg = Tollgate::start(&sidecar_config(&uri, ""), up.addr);
    assert_eq!(
        client().get(tg.url("/public/x")).send().unwrap().status(),
        200,
        "other routes serve"
    );
    let r = get(&tg, "/api/reports/1", &token_of(&key));
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().unwrap();
    assert_eq!(body["error"], "temporarily_unavailable");
    let _idp = JwksServer::start_on(addr, jwks::jwks(&[&key]));
    assert!(
        eventually(Duration::from_secs(20), || get(&tg, "/api/reports/1", &token_of(&key))
            .status()
            == 200),
        "never recovered: {}",
        tg.logs()
    );
}

#[test]
fn an_issuer_that_goes_down_keeps_its_keys_until_max_stale_then_503() {
    let key = jwks::new_key(Algorithm::RS256, "k1");
    let idp = JwksServer::start(&[&key]);
    let up = echo::start();
    let tg = Tollgate::start(&sidecar_config(&idp.jwks_uri(), "jwks_max_stale = \"3s\""), up.addr);
    let cached = token_of(&key);
    assert_eq!(get(&tg, "/api/reports/1", &cached).status(), 200);
    let went_down = Instant::now();
    idp.stop();
    assert_eq!(get(&tg, "/api/reports/1", &cached).status(), 200, "still trusted");
    assert_eq!(
        get(&tg, "/api/reports/1", &token_of(&key)).status(),
        200,
        "a fresh token too"
    );
    assert!(eventually(Duration::from_secs(15), || get(
        &tg,
        "/api/reports/1",
        &cached
    )
    .status()
        == 503));
    assert!(
        went_down.elapsed() >= Duration::from_secs(3),
        "503 before max_stale: {:?}",
        went_down.elapsed()
    );
    assert_eq!(get(&tg, "/api/reports/1", &token_of(&key)).status(), 503);
}

#[test]
fn a_keycloak_token_verifies_through_a_keycloak_shaped_jwks() {
    // Keycloak's header spacing and 43-character kid, its claims, and its JWKS with an
    // encryption key beside the signing one.
    let kid = "FJ86GcF3jTbNLOco4NvZkUCIUmfYCqoqtOQeMfbhNlE";
    let key = tollgate::token::SigningKey::from_pem(kid, Algorithm::RS256, &std::fs::read(common::DEMO_KEY).unwrap())
        .unwrap();
    let enc = jwks::new_key(Algorithm::RS256, "3xJ9f0s1aWmBfP0l6n3a8Jm6d2YqL0vWcQ1o8TnR7Ks");
    let mut sig = key.jwk.clone();
    sig["x5c"] = json!(["MIICnTCCAYUCBgGS..."]);
    sig["x5t"] = json!("q6Fz3S0mCqN0v8AOsn5Fj2mE7y0");
    sig["x5t#S256"] = json!("5o2z1ZpB7lYxN8kqXbQmF7tWcGv1oKq3eJzR0uYhHnI");
    let mut enc_jwk = enc.jwk.clone();
    enc_jwk["use"] = json!("enc");
    enc_jwk["alg"] = json!("RSA-OAEP");
    let doc = json!({"keys": [enc_jwk, sig]});
    let idp = JwksServer::start_on("127.0.0.1:0".parse().unwrap(), doc.to_string().into_bytes());
    let up = echo::start();
    let config = sidecar_config(&idp.jwks_uri(), "").replace(
        "roles = [\"reporting\"]",
        "roles = [\"uma_authorization\", \"account:view-profile\"]",
    );
    let tg = Tollgate::start(&config, up.addr);
    let t = now();
    let claims = json!({
        "exp": t + 300, "iat": t, "jti": "onrtcc:6a1f0d4b-8b7e-4c55-9f2e-0c3b2e4f7a10",
        "iss": ISSUER, "aud": "account", "sub": "2f7b1c3e-9a4d-4e1f-8c6b-5d0a9e7f3b21", "typ": "Bearer",
        "azp": "reports-client", "acr": "1", "allowed-origins": ["/*"],
        "realm_access": {"roles": ["default-roles-corp", "offline_access", "uma_authorization"]},
        "resource_access": {"account": {"roles": ["manage-account", "manage-account-links", "view-profile"]}},
        "scope": "profile email", "email_verified": false, "clientHost": "10.0.0.7",
        "preferred_username": "service-account-reports-client", "clientAddress": "10.0.0.7", "client_id": "reports-client"
    });
    let header = format!(r#"{{"alg":"RS256","typ" : "JWT","kid" : "{kid}"}}"#);
    let token = jwks::sign(&key, &header, &claims);
    assert_eq!(claims_of(&token)["azp"], "reports-client");
    let r = get(&tg, "/api/reports/1", &token);
    assert_eq!(r.status(), 200, "{}", tg.logs());
    let seen: Value = r.json().unwrap();
    assert_eq!(
        seen["headers"]["x-auth-roles"][0],
        "account:manage-account,account:manage-account-links,account:view-profile,default-roles-corp,offline_access,uma_authorization"
    );
    assert_eq!(seen["headers"]["x-auth-scope"][0], "profile email");
}

#[test]
fn a_route_of_several_realms_takes_each_realms_tokens_by_their_issuer() {
    let key = jwks::new_key(Algorithm::ES256, "corp-1");
    let idp = JwksServer::start(&[&key]);
    let up = echo::start();
    let config = format!(
        "{}\n[realms.corp]\nissuer = \"{ISSUER}\"\njwks_uri = \"{}\"\nroles_claim = \"roles\"\n\n\
         [[routes]]\nprefix = \"/api/both\"\nrealms = [\"demo\", \"corp\"]\nroles = [\"reader\"]\nupstream = \"{{UPSTREAM}}\"\n",
        common::BASE_CONFIG,
        idp.jwks_uri()
    );
    let tg = Tollgate::start(&config, up.addr);
    let local = tg.token("product-sa-client", "password");
    assert_eq!(get(&tg, "/api/both/1", &local).status(), 200);
    let mut c = claims();
    c["roles"] = json!(["reader"]);
    let remote = jwks::sign(&key, &jwks::header(&key), &c);
    let r = get(&tg, "/api/both/1", &remote);
    assert_eq!(r.status(), 200);
    let seen: Value = r.json().unwrap();
    assert_eq!(seen["headers"]["x-auth-realm"][0], "corp");
    assert_eq!(seen["headers"]["x-auth-roles"][0], "reader", "roles from roles_claim");
    c["iss"] = json!("https://nobody.example");
    let r = get(&tg, "/api/both/1", &jwks::sign(&key, &jwks::header(&key), &c));
    assert_eq!(r.status(), 401);
    // A local-realm route does not take the remote issuer's tokens.
    c["iss"] = json!(ISSUER);
    assert_eq!(
        get(&tg, "/api/orders/1", &jwks::sign(&key, &jwks::header(&key), &c)).status(),
        401
    );
}

#[test]
fn a_reload_keeps_an_unchanged_realms_keys_and_applies_a_new_realm() {
    let key = jwks::new_key(Algorithm::RS256, "k1");
    let idp = JwksServer::start(&[&key]);
    let up = echo::start();
    let config = sidecar_config(&idp.jwks_uri(), "").replace("{UPSTREAM}", &up.addr.to_string());
    let tg = Tollgate::start(&config, up.addr);
    assert_eq!(get(&tg, "/api/reports/1", &token_of(&key)).status(), 200);
    assert_eq!(idp.fetched(), 1);
    // Another route added: the realm's engine and keys carry over, no refetch.
    let more = format!(
        "{config}\n[[routes]]\nprefix = \"/api/more\"\nrealm = \"corp\"\nupstream = \"{}\"\n",
        up.addr
    );
    std::fs::write(tg.config_path(), &more).unwrap();
    assert!(eventually(Duration::from_secs(5), || get(
        &tg,
        "/api/more/1",
        &token_of(&key)
    )
    .status()
        == 200));
    assert_eq!(idp.fetched(), 1, "the reload kept the realm's keys");
    // A second remote realm appears with the next reload.
    let other_key = jwks::new_key(Algorithm::EdDSA, "o1");
    let other = JwksServer::start(&[&other_key]);
    let with_other = format!(
        "{more}\n[realms.other]\nissuer = \"https://other.example\"\njwks_uri = \"{}\"\n\n[[routes]]\nprefix = \"/api/other\"\nrealm = \"other\"\nupstream = \"{}\"\n",
        other.jwks_uri(),
        up.addr
    );
    std::fs::write(tg.config_path(), &with_other).unwrap();
    let mut c = claims();
    c["iss"] = json!("https://other.example");
    let token = jwks::sign(&other_key, &jwks::header(&other_key), &c);
    assert!(
        eventually(Duration::from_secs(5), || get(&tg, "/api/other/1", &token).status()
            == 200),
        "{}",
        tg.logs()
    );
}
