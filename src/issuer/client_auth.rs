//! Client authentication at the token, introspection and revocation endpoints:
//! client_secret_basic, client_secret_post, private_key_jwt and client_secret_jwt (RFC 7523).

use super::form::{self, Form};
use super::oauth_error::OAuthError;
use crate::config::{Client, Realm};
use crate::state::State;
use crate::store::Use;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Longest lifetime a client assertion may claim (`exp` minus now).
pub const MAX_ASSERTION_LIFETIME: u64 = 600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Basic,
    Post,
    Jwt,
}

/// What the request presented, before anything is checked.
struct Presented {
    method: Method,
    client_id: String,
    secret: Option<String>,
}

const BAD_CLIENT: &str = "Invalid client or Invalid client credentials";

/// Authenticate the client of a request to `realm`. `authorization` is the raw header value.
pub fn authenticate<'r>(
    state: &State,
    realm: &'r Realm,
    authorization: Option<&[u8]>,
    form: &Form,
    peer: &str,
    now: u64,
) -> Result<&'r Client, OAuthError> {
    let p = presented(authorization, form)?;
    let basic_realm = (p.method == Method::Basic).then(|| realm.name.clone());
    let fail = |description| OAuthError::InvalidClient {
        description,
        basic_realm: basic_realm.clone(),
    };

    let limit = state.config.load().server.auth_failures_per_minute;
    let client_key = format!("c\0{}\0{}", realm.name, p.client_id);
    let addr_key = format!("a\0{peer}");
    for key in [&client_key, &addr_key] {
        if let Some(retry_after) =
            state
                .throttle
                .blocked(key, limit.saturating_mul(if key == &addr_key { 5 } else { 1 }), now)
        {
            state
                .metrics
                .inc("tollgate_auth_throttled_total", &[("realm", &realm.name)]);
            return Err(OAuthError::TooManyAttempts { retry_after });
        }
    }
    let result = match p.method {
        Method::Basic | Method::Post => check_secret(realm, &p.client_id, p.secret.as_deref().unwrap_or("")),
        Method::Jwt => check_assertion(state, realm, &p.client_id, form, now),
    };
    match result {
        Ok(client) if client.enabled => {
            state.throttle.succeed(&client_key);
            Ok(client)
        }
        Ok(_) => Err(fail(BAD_CLIENT)),
        Err(description) => {
            state.throttle.fail(&client_key, now);
            state.throttle.fail(&addr_key, now);
            Err(fail(description))
        }
    }
}

fn presented(authorization: Option<&[u8]>, form: &Form) -> Result<Presented, OAuthError> {
    let basic = authorization.filter(|v| v.len() > 6 && v[..6].eq_ignore_ascii_case(b"basic "));
    let post = form.has("client_secret");
    let jwt = form.has("client_assertion") || form.has("client_assertion_type");
    if [basic.is_some(), post, jwt].iter().filter(|x| **x).count() > 1 {
        return Err(OAuthError::InvalidRequest(
            "more than one client authentication method in one request".into(),
        ));
    }
    let invalid = |d: &str| OAuthError::InvalidRequest(d.into());
    if let Some(value) = basic {
        let decoded = STANDARD
            .decode(value[6..].trim_ascii())
            .map_err(|_| invalid("malformed Basic credentials"))?;
        let colon = decoded
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| invalid("malformed Basic credentials"))?;
        // RFC 6749 §2.3.1: both halves are form-urlencoded before base64.
        let id = form::decode(&decoded[..colon]).map_err(|_| invalid("malformed Basic credentials"))?;
        let secret = form::decode(&decoded[colon + 1..]).map_err(|_| invalid("malformed Basic credentials"))?;
        if form.get("client_id").is_some_and(|body_id| body_id != id) {
            return Err(invalid("client_id does not match the Basic credentials"));
        }
        return Ok(Presented {
            method: Method::Basic,
            client_id: id,
            secret: Some(secret),
        });
    }
    if post {
        let id = form
            .get("client_id")
            .ok_or_else(|| invalid("client_secret without client_id"))?;
        return Ok(Presented {
            method: Method::Post,
            client_id: id.to_string(),
            secret: form.get("client_secret").map(str::to_string),
        });
    }
    if jwt {
        if form.get("client_assertion_type") != Some(JWT_BEARER) {
            return Err(invalid(
                "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ));
        }
        let assertion = form
            .get("client_assertion")
            .ok_or_else(|| invalid("client_assertion is missing"))?;
        let id = assertion_subject(assertion).ok_or_else(|| invalid("client_assertion is not a JWT with a sub"))?;
        if form.get("client_id").is_some_and(|body_id| body_id != id) {
            return Err(invalid("client_id does not match the client assertion"));
        }
        return Ok(Presented {
            method: Method::Jwt,
            client_id: id,
            secret: None,
        });
    }
    Err(OAuthError::InvalidClient {
        description: "client authentication required",
        basic_realm: None,
    })
}

/// Compare a presented secret, doing the same work whether or not the client exists.
fn check_secret<'r>(realm: &'r Realm, id: &str, presented: &str) -> Result<&'r Client, &'static str> {
    match realm.clients.get(id) {
        Some(client) => match &client.secret {
            Some(secret) if secret.verify(presented.as_bytes()) => Ok(client),
            Some(_) => Err(BAD_CLIENT),
            None => {
                crate::secret::dummy_verify(realm.any_hashed_secret);
                Err(BAD_CLIENT)
            }
        },
        None => {
            crate::secret::dummy_verify(realm.any_hashed_secret);
            Err(BAD_CLIENT)
        }
    }
}

#[derive(Deserialize)]
struct AssertionPeek {
    sub: Option<String>,
    iss: Option<String>,
}

/// `sub` (else `iss`) of an assertion, read before its signature is checked, only to find the
/// client whose keys will check it.
fn assertion_subject(assertion: &str) -> Option<String> {
    let claims: AssertionPeek = jsonwebtoken::dangerous::insecure_decode_claims(assertion).ok()?;
    claims.sub.or(claims.iss)
}

#[derive(Deserialize)]
struct AssertionClaims {
    sub: String,
    exp: u64,
    jti: Option<String>,
}

fn check_assertion<'r>(
    state: &State,
    realm: &'r Realm,
    id: &str,
    form: &Form,
    now: u64,
) -> Result<&'r Client, &'static str> {
    let assertion = form.get("client_assertion").unwrap_or("");
    let client = realm.clients.get(id).ok_or(BAD_CLIENT)?;
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| "malformed client assertion")?;
    let keys: Vec<DecodingKey> = match header.alg {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            // client_secret_jwt: the plaintext secret is the HMAC key.
            let secret = client.secret.as_ref().and_then(|s| s.plaintext()).ok_or(BAD_CLIENT)?;
            vec![DecodingKey::from_secret(secret.expose().as_bytes())]
        }
        alg => {
            let jwks = client.jwks.as_ref().ok_or(BAD_CLIENT)?;
            jwks.set
                .keys
                .iter()
                .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
                .filter(|k| jwk_allows(k, alg))
                .filter_map(|k| DecodingKey::from_jwk(k).ok())
                .collect()
        }
    };
    let mut v = Validation::new(header.alg);
    v.set_audience(&[realm.token_endpoint.as_str(), realm.issuer.as_str()]);
    v.set_issuer(&[id]);
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    v.leeway = realm.leeway.as_secs();
    let claims = keys
        .iter()
        .find_map(|k| jsonwebtoken::decode::<AssertionClaims>(assertion, k, &v).ok())
        .ok_or("client assertion is invalid: bad signature, audience, issuer or expiry")?
        .claims;
    if claims.sub != id {
        return Err("client assertion sub is not the client");
    }
    if claims.exp > now + MAX_ASSERTION_LIFETIME {
        return Err("client assertion lives too long");
    }
    let jti = claims.jti.ok_or("client assertion has no jti")?;
    match state.store.use_once(
        &format!("{}\0{id}\0{jti}", realm.name),
        claims.exp + realm.leeway.as_secs(),
        now,
    ) {
        Use::First => Ok(client),
        Use::Replay => Err("client assertion already used"),
        Use::Full => Err("client assertion cannot be checked for replay now"),
    }
}

/// A client key may verify `alg` only if its type fits and its own `alg`, if any, is `alg`.
fn jwk_allows(k: &jsonwebtoken::jwk::Jwk, alg: Algorithm) -> bool {
    use jsonwebtoken::jwk::AlgorithmParameters as P;
    if let Some(ka) = k.common.key_algorithm {
        if crate::token::keys::alg_name(alg) != format!("{ka:?}").as_str() {
            return false;
        }
    }
    matches!(
        (&k.algorithm, alg),
        (
            P::RSA(_),
            Algorithm::RS256
                | Algorithm::RS384
                | Algorithm::RS512
                | Algorithm::PS256
                | Algorithm::PS384
                | Algorithm::PS512
        ) | (P::EllipticCurve(_), Algorithm::ES256 | Algorithm::ES384)
            | (P::OctetKeyPair(_), Algorithm::EdDSA)
    )
}
