//! Client authentication decided on an in-memory realm: what was presented, the throttle before
//! the credentials, and how each kind of bad assertion is counted.

use super::*;
use crate::config::{load, LoadOptions};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;
use std::sync::Arc;

const HMAC_SECRET: &str = "a-long-shared-hmac-secret-for-client-secret-jwt";

struct Fixture {
    state: Arc<State>,
    snap: Arc<Snapshot>,
    es_key: String,
    _dir: tempfile::TempDir,
}

/// A realm with a plaintext client, an HMAC client, a disabled client and a client with an
/// ES256 key; `auth_failures_per_minute = 3`.
fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/certs/demo-es256.pem"),
        d.join("k.pem"),
    )
    .unwrap();
    let es_key = crate::token::keys::generate_pem(Algorithm::ES256).unwrap();
    let jwk = crate::token::keys::SigningKey::from_pem("c-es", Algorithm::ES256, es_key.as_bytes())
        .unwrap()
        .jwk
        .clone();
    std::fs::write(d.join("c.jwks.json"), json!({ "keys": [jwk] }).to_string()).unwrap();
    let toml = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\nauth_failures_per_minute = 3\n\
         [realms.demo]\nissuer = \"http://h/realms/demo\"\nroles = []\n\
         signing_keys = [{{ kid = \"k\", alg = \"ES256\", private_key = \"k.pem\" }}]\n\
         [realms.demo.clients.plain]\nsecret = \"pw\"\n\
         [realms.demo.clients.hmac]\nsecret = \"{HMAC_SECRET}\"\n\
         [realms.demo.clients.off]\nsecret = \"off-pw\"\nenabled = false\n\
         [realms.demo.clients.jwt]\njwks = \"c.jwks.json\"\n"
    );
    std::fs::write(d.join("proxy.toml"), toml).unwrap();
    let snap = load(&d.join("proxy.toml"), LoadOptions::default()).unwrap();
    let state = State::new(snap, d.join("proxy.toml"), None).unwrap();
    let snap = state.config.load_full();
    Fixture {
        state,
        snap,
        es_key,
        _dir: dir,
    }
}

fn basic(id: &str, secret: &str) -> Vec<u8> {
    format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))).into_bytes()
}

impl Fixture {
    async fn auth(&self, authorization: Option<&[u8]>, body: &str, peer: &str) -> Result<String, OAuthError> {
        let realm = self.snap.realm("demo").unwrap();
        let form = form::parse(body.as_bytes()).unwrap();
        let req = Request {
            authorization,
            body: body.as_bytes(),
            peer,
            now: crate::http_util::now(),
        };
        authenticate(&self.state, &self.snap, realm, &req, &form)
            .await
            .map(|c| c.id.clone())
    }

    fn assertion(&self, sub: &str, header: Header, key: &EncodingKey) -> String {
        let now = crate::http_util::now();
        let claims = json!({"iss": sub, "sub": sub, "aud": "http://h/realms/demo/protocol/openid-connect/token",
                            "exp": now + 60, "jti": crate::issuer::claims::random_id()});
        jsonwebtoken::encode(&header, &claims, key).unwrap()
    }

    fn check(&self, sub: &str, assertion: &str) -> Result<String, Failed> {
        let realm = self.snap.realm("demo").unwrap();
        let body = format!("client_assertion={assertion}");
        let form = form::parse(body.as_bytes()).unwrap();
        check_assertion(realm, sub, &form, crate::http_util::now()).map(|(c, _)| c.id.clone())
    }
}

#[test]
fn what_was_presented() {
    let form = |b: &str| form::parse(b.as_bytes()).unwrap();
    let p = presented(Some(&basic("a%3Ab", "s%26t")), &form("")).unwrap();
    assert_eq!(
        (p.method, p.client_id.as_str(), p.secret.as_deref()),
        (Method::Basic, "a:b", Some("s&t"))
    );
    let p = presented(None, &form("client_id=c&client_secret=s")).unwrap();
    assert_eq!((p.method, p.client_id.as_str()), (Method::Post, "c"));
    let two = presented(Some(&basic("c", "s")), &form("client_secret=s&client_id=c"));
    assert!(matches!(two, Err(OAuthError::InvalidRequest(_))));
    let other_id = presented(Some(&basic("c", "s")), &form("client_id=d"));
    assert!(matches!(other_id, Err(OAuthError::InvalidRequest(_))));
    assert!(matches!(
        presented(Some(b"Basic !!!"), &form("")),
        Err(OAuthError::InvalidRequest(_))
    ));
    assert_eq!(
        presented(None, &form("grant_type=client_credentials")).err(),
        Some(OAuthError::InvalidClient { basic_realm: None })
    );
    let jwt = format!(
        "client_assertion_type={JWT_BEARER}&client_assertion=x.{}.y",
        B64URL.encode(r#"{"sub":"jwt"}"#)
    );
    let p = presented(None, &form(&jwt)).unwrap();
    assert_eq!((p.method, p.client_id.as_str()), (Method::Jwt, "jwt"));
}

#[tokio::test]
async fn the_throttle_is_checked_before_the_credentials_per_address() {
    let f = fixture();
    let wrong = basic("plain", "nope");
    let right = basic("plain", "pw");
    for _ in 0..3 {
        let r = f.auth(Some(&wrong), "", "10.0.0.1").await;
        assert_eq!(
            r,
            Err(OAuthError::InvalidClient {
                basic_realm: Some("demo".into())
            })
        );
    }
    assert!(matches!(
        f.auth(Some(&right), "", "10.0.0.1").await,
        Err(OAuthError::TooManyAttempts { .. })
    ));
    assert_eq!(f.auth(Some(&right), "", "10.0.0.2").await, Ok("plain".into()));
    assert_eq!(
        f.auth(Some(&basic("hmac", HMAC_SECRET)), "", "10.0.0.1").await,
        Ok("hmac".into())
    );
}

#[tokio::test]
async fn a_disabled_client_is_invalid_client_and_a_right_secret_is_not_counted() {
    let f = fixture();
    for _ in 0..5 {
        let r = f.auth(None, "client_id=off&client_secret=off-pw", "10.0.0.1").await;
        assert_eq!(r, Err(OAuthError::InvalidClient { basic_realm: None }));
    }
}

#[test]
fn only_a_failed_hmac_assertion_is_a_guess() {
    let f = fixture();
    let guess = Err(Failed::Counted(Failure::Guess));
    let no_guess = Err(Failed::Counted(Failure::NotAGuess));
    let hs = |sub: &str, key: &[u8]| f.assertion(sub, Header::new(Algorithm::HS256), &EncodingKey::from_secret(key));
    let mut es_header = Header::new(Algorithm::ES256);
    es_header.kid = Some("c-es".into());
    let es_key = EncodingKey::from_ec_pem(f.es_key.as_bytes()).unwrap();
    let other = crate::token::keys::generate_pem(Algorithm::ES256).unwrap();
    let other = EncodingKey::from_ec_pem(other.as_bytes()).unwrap();
    let unsigned = format!(
        "{}.{}.",
        B64URL.encode(r#"{"alg":"none"}"#),
        B64URL.encode(r#"{"sub":"plain"}"#)
    );

    assert_eq!(f.check("hmac", &hs("hmac", HMAC_SECRET.as_bytes())), Ok("hmac".into()));
    assert_eq!(f.check("hmac", &hs("hmac", b"guess")), guess);
    assert_eq!(
        f.check("nobody", &hs("nobody", b"guess")),
        guess,
        "whether or not the client exists"
    );
    assert_eq!(
        f.check("jwt", &hs("jwt", b"guess")),
        guess,
        "a client without a plaintext secret too"
    );
    assert_eq!(f.check("plain", &unsigned), no_guess);
    assert_eq!(f.check("plain", "not-a-jwt"), no_guess);
    assert_eq!(f.check("jwt", &f.assertion("jwt", es_header.clone(), &other)), no_guess);
    assert_eq!(
        f.check("plain", &f.assertion("plain", es_header.clone(), &es_key)),
        no_guess
    );
    assert_eq!(
        f.check("nobody", &f.assertion("nobody", es_header.clone(), &es_key)),
        no_guess
    );
    let good = f.assertion("jwt", es_header, &es_key);
    // A replay is refused by the store after the signature check (tests/shared_store.rs).
    assert_eq!(f.check("jwt", &good), Ok("jwt".into()));
}
