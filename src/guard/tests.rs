//! The guard's decisions on in-memory snapshots, without a process.

use super::*;
use crate::model::Keys;
use crate::store::MemoryStore;
use crate::token::SigningKey;
use serde_json::json;
use std::path::Path;

const CONFIG: &str = r#"
[server]
listen = "127.0.0.1:8080"
default_realm = "demo"
[realms.demo]
leeway = "5s"
roles = ["reader", "writer"]
client_roles = { orders-api = ["read"] }
signing_keys = [{ kid = "k1", alg = "RS256", private_key = "demo-rs256.pem" }]
[realms.corp]
issuer = "https://idp.example/corp"
jwks_file = "corp.jwks.json"
[realms.late]
issuer = "https://late.example"
jwks_uri = "http://127.0.0.1:9/certs"
[[routes]]
prefix = "/api"
methods = ["GET"]
roles = ["reader"]
upstream = "127.0.0.1:9000"
[[routes]]
prefix = "/api/any"
any_roles = ["writer", "orders-api:read"]
upstream = "127.0.0.1:9000"
[[routes]]
prefix = "/api/aud"
audience = "billing"
upstream = "127.0.0.1:9000"
[[routes]]
prefix = "/both"
realms = ["demo", "corp"]
upstream = "127.0.0.1:9000"
[[routes]]
prefix = "/late"
realm = "late"
upstream = "127.0.0.1:9000"
[[routes]]
prefix = "/public"
public = true
upstream = "127.0.0.1:9000"
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    snap: Snapshot,
    demo: Arc<SigningKey>,
    corp: SigningKey,
    cache: TokenCache,
    store: MemoryStore,
    limits: ratelimit::RateLimits,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
    std::fs::copy(certs.join("demo-rs256.pem"), dir.path().join("demo-rs256.pem")).unwrap();
    let corp = SigningKey::from_pem(
        "c1",
        jsonwebtoken::Algorithm::ES256,
        &std::fs::read(certs.join("demo-es256.pem")).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("corp.jwks.json"),
        json!({"keys": [corp.jwk]}).to_string(),
    )
    .unwrap();
    let snap = crate::config::load_str(&dir.path().join("proxy.toml"), CONFIG).unwrap();
    let demo = snap.realm("demo").unwrap().signer().unwrap().clone();
    Fixture {
        _dir: dir,
        snap,
        demo,
        corp,
        cache: TokenCache::default(),
        store: MemoryStore::default(),
        limits: Default::default(),
    }
}

const NOW: u64 = 1_800_000_000;

fn demo_token(f: &Fixture, claims: serde_json::Value) -> String {
    let mut c = json!({"iss": "http://localhost:8080/realms/demo", "typ": "Bearer", "exp": NOW + 60, "iat": NOW,
                       "jti": "j1", "sub": "s", "azp": "svc", "realm_access": {"roles": ["reader"]},
                       "resource_access": {"orders-api": {"roles": ["read"]}}, "aud": "orders-api"});
    for (k, v) in claims.as_object().unwrap() {
        c[k] = v.clone();
    }
    f.demo.sign(c.to_string().as_bytes()).unwrap()
}

fn decide_at(f: &Fixture, method: &str, path: &str, token: Option<&str>, now: u64) -> Result<Allowed, Denied> {
    let header = token.map(|t| format!("Bearer {t}"));
    let t = Tables {
        cache: &f.cache,
        store: &f.store,
        limits: &f.limits,
    };
    let method = http::Method::from_bytes(method.as_bytes()).unwrap();
    check(t, &f.snap, &method, path, header.as_deref().map(str::as_bytes), now).map_err(|r| r.denied)
}

fn decide(f: &Fixture, path: &str, token: Option<&str>) -> Result<Allowed, Denied> {
    decide_at(f, "GET", path, token, NOW)
}

fn invalid(realm: &str, reason: TokenError) -> Denied {
    Denied::InvalidToken {
        realm: realm.into(),
        reason,
    }
}

#[test]
fn routes_methods_and_public_paths() {
    let f = fixture();
    assert_eq!(decide(&f, "/nothing", None).unwrap_err(), Denied::NoRoute);
    assert_eq!(
        decide_at(&f, "POST", "/api/x", None, NOW).unwrap_err(),
        Denied::MethodNotAllowed("GET".into())
    );
    assert!(
        decide_at(&f, "HEAD", "/api/x", None, NOW).is_err(),
        "HEAD goes on to the token check"
    );
    let public = decide(&f, "/public/x", None).unwrap();
    assert!(public.identity.is_none());
    assert_eq!(&*public.route.prefix, "/public");
}

#[test]
fn tokens_are_required_verified_and_cached() {
    let f = fixture();
    assert_eq!(
        decide(&f, "/api/x", None).unwrap_err(),
        Denied::NoToken { realm: "demo".into() }
    );
    assert_eq!(
        decide(&f, "/api/x", Some("a\"b")).unwrap_err(),
        invalid("demo", TokenError::Malformed)
    );
    let token = demo_token(&f, json!({}));
    let first = decide(&f, "/api/x", Some(&token)).unwrap();
    assert_eq!(first.identity.as_ref().unwrap().roles, ["orders-api:read", "reader"]);
    assert_eq!(f.cache.len(), 1);
    let second = decide(&f, "/api/x", Some(&token)).unwrap();
    assert!(
        Arc::ptr_eq(first.identity.as_ref().unwrap(), second.identity.as_ref().unwrap()),
        "from the cache"
    );
    // A cached token still expires, and is still checked for revocation.
    assert_eq!(
        decide_at(&f, "GET", "/api/x", Some(&token), NOW + 66).unwrap_err(),
        invalid("demo", TokenError::Expired)
    );
    f.store.revoke_now("svc", &["j1"], NOW + 60, NOW).unwrap();
    assert_eq!(
        decide(&f, "/api/x", Some(&token)).unwrap_err(),
        invalid("demo", TokenError::Revoked)
    );
}

#[test]
fn roles_any_roles_and_audience() {
    let f = fixture();
    let no_reader = demo_token(
        &f,
        json!({"realm_access": {"roles": ["writer"]}, "resource_access": {}}),
    );
    assert!(matches!(
        decide(&f, "/api/x", Some(&no_reader)).unwrap_err(),
        Denied::InsufficientScope { missing, .. } if missing == "reader"
    ));
    assert!(
        decide(&f, "/api/any/x", Some(&no_reader)).is_ok(),
        "writer is one of any_roles"
    );
    let neither = demo_token(&f, json!({"realm_access": {"roles": []}, "resource_access": {}}));
    assert!(decide(&f, "/api/any/x", Some(&neither)).is_err());
    let token = demo_token(&f, json!({}));
    assert_eq!(
        decide(&f, "/api/aud/x", Some(&token)).unwrap_err(),
        invalid("demo", TokenError::WrongAudience)
    );
    let billing = demo_token(&f, json!({"aud": ["orders-api", "billing"], "jti": "j2"}));
    assert!(decide(&f, "/api/aud/x", Some(&billing)).is_ok());
}

#[test]
fn a_route_of_two_realms_picks_the_one_its_iss_names() {
    let f = fixture();
    let local = demo_token(&f, json!({}));
    assert_eq!(
        decide(&f, "/both", Some(&local)).unwrap().identity.unwrap().realm,
        "demo"
    );
    let claims = json!({"iss": "https://idp.example/corp", "exp": NOW + 60, "sub": "x", "azp": "svc"});
    let header = r#"{"alg":"ES256","kid":"c1"}"#;
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let input = format!("{}.{}", b64.encode(header), b64.encode(claims.to_string()));
    let corp_token = format!("{input}.{}", b64.encode(f.corp.sign_input(input.as_bytes()).unwrap()));
    assert_eq!(
        decide(&f, "/both", Some(&corp_token)).unwrap().identity.unwrap().realm,
        "corp"
    );
    // The demo realm's own routes do not take corp's tokens, cached or not.
    assert_eq!(
        decide(&f, "/api/x", Some(&corp_token)).unwrap_err(),
        invalid("demo", TokenError::UnknownKid)
    );
    let stranger = demo_token(&f, json!({"iss": "https://nobody.example"}));
    assert_eq!(
        decide(&f, "/both", Some(&stranger)).unwrap_err(),
        invalid("demo", TokenError::WrongIssuer)
    );
}

#[test]
fn a_remote_realm_without_keys_yet_is_unavailable_and_asks_to_wait_for_its_first_fetch() {
    let f = fixture();
    let token = demo_token(&f, json!({"iss": "https://late.example"}));
    let header = format!("Bearer {token}");
    let t = Tables {
        cache: &f.cache,
        store: &f.store,
        limits: &f.limits,
    };
    let refused = check(t, &f.snap, &http::Method::GET, "/late", Some(header.as_bytes()), NOW).unwrap_err();
    assert!(matches!(refused.denied, Denied::Unavailable { ref realm, .. } if realm == "late"));
    assert!(refused.refetch.is_some(), "no fetch has ended yet: worth waiting for");
    let reply = refused.denied.reply();
    assert_eq!(reply.status, 503);
    assert!(reply.headers.iter().any(|(k, _)| *k == "retry-after"));
    assert!(matches!(f.snap.realm("late").unwrap().keys, Keys::Fetched { .. }));
}

#[test]
fn a_cached_verification_does_not_outlive_its_key() {
    let f = fixture();
    let token = demo_token(&f, json!({}));
    assert!(decide(&f, "/api/x", Some(&token)).is_ok());
    // The same config with the realm's key replaced: the cached entry names a key that is gone.
    let dir = tempfile::tempdir().unwrap();
    let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
    std::fs::copy(certs.join("demo-es256.pem"), dir.path().join("demo-rs256.pem")).unwrap();
    std::fs::write(
        dir.path().join("corp.jwks.json"),
        json!({"keys": [f.corp.jwk]}).to_string(),
    )
    .unwrap();
    let rotated = CONFIG.replace("alg = \"RS256\"", "alg = \"ES256\"");
    let snap = crate::config::load_str(&dir.path().join("proxy.toml"), &rotated).unwrap();
    let t = Tables {
        cache: &f.cache,
        store: &f.store,
        limits: &f.limits,
    };
    let header = format!("Bearer {token}");
    let denied = check(t, &snap, &http::Method::GET, "/api/x", Some(header.as_bytes()), NOW)
        .unwrap_err()
        .denied;
    assert_eq!(
        denied,
        invalid("demo", TokenError::AlgMismatch),
        "verified afresh against the new key"
    );
}
