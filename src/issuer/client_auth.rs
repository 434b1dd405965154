//! Client authentication at the token, introspection and revocation endpoints:
//! client_secret_basic, client_secret_post, private_key_jwt and client_secret_jwt (RFC 7523).

use super::endpoints::Request;
use super::form::{self, Form};
use super::oauth_error::OAuthError;
use super::secret_check;
use super::throttle::{Attempt, Failure, Refusal};
use crate::config::{Client, Realm, Snapshot};
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

/// Why a presented credential did not authenticate its client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// Counted by the throttle as this kind of failure.
    Counted(Failure),
    /// Could not be decided now (the argon2 pool is full, the replay table is full): 503.
    Unavailable(&'static str),
}

/// Authenticate the client of `req` to `realm`, under the throttle.
pub async fn authenticate<'r>(
    state: &State,
    snap: &Snapshot,
    realm: &'r Realm,
    req: &Request<'_>,
    form: &Form,
) -> Result<&'r Client, OAuthError> {
    let p = presented(req.authorization, form)?;
    let invalid = || OAuthError::InvalidClient {
        basic_realm: (p.method == Method::Basic).then(|| realm.name.clone()),
    };
    let attempt = Attempt {
        realm: &realm.name,
        client_id: &p.client_id,
        addr: req.peer,
    };
    // Checked before the credentials, or guessing would go on behind the 429s.
    let checked = match state
        .throttle
        .check(&attempt, snap.server.auth_failures_per_minute, req.now)
        .await
    {
        Ok(checked) => checked,
        Err(Refusal::Throttled { retry_after }) => {
            let labels = crate::metrics::RealmLabel {
                realm: realm.name.clone(),
            };
            state.metrics.auth_throttled.get_or_create(&labels).inc();
            return Err(OAuthError::TooManyAttempts { retry_after });
        }
        Err(Refusal::Unavailable) => return Err(unavailable("failed authentications cannot be counted now")),
    };
    let result = match p.method {
        Method::Basic | Method::Post => {
            let presented = p.secret.as_deref().unwrap_or("").as_bytes();
            secret_check::check(&state.metrics, snap, realm, &p.client_id, presented).await
        }
        Method::Jwt => match check_assertion(realm, &p.client_id, form, req.now) {
            Ok((client, replay)) => use_once(state, client, &replay, req.now).await,
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(client) if client.enabled => {
            // A success that cannot be recorded still stands; the count expires on its own.
            let _ = state.throttle.succeeded(&attempt, checked).await;
            Ok(client)
        }
        Ok(_) => Err(invalid()),
        Err(Failed::Counted(kind)) => {
            state
                .throttle
                .failed(&attempt, kind, req.now)
                .await
                .map_err(|_| unavailable("failed authentications cannot be counted now"))?;
            Err(invalid())
        }
        Err(Failed::Unavailable(why)) => Err(unavailable(why)),
    }
}

fn unavailable(description: &'static str) -> OAuthError {
    OAuthError::TemporarilyUnavailable {
        description,
        retry_after: 1,
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
    Err(OAuthError::InvalidClient { basic_realm: None })
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

/// Where a verified assertion's id is remembered, and until when.
struct Replay {
    key: String,
    until: u64,
}

/// Records the assertion's id as used: across every replica when the store is shared, and a
/// refusal (503) when that cannot be checked now.
async fn use_once<'r>(state: &State, client: &'r Client, replay: &Replay, now: u64) -> Result<&'r Client, Failed> {
    match state.store.use_once(&replay.key, replay.until, now).await {
        Use::First => Ok(client),
        Use::Replay => Err(Failed::Counted(Failure::NotAGuess)),
        Use::Full | Use::Down => Err(Failed::Unavailable(
            "client assertions cannot be checked for replay now",
        )),
    }
}

/// Check a client assertion. Only an HMAC-signed one (client_secret_jwt) that fails at its
/// signature is a guess at a credential, whichever client it names; one that is not a JWS,
/// names a client without keys for its `alg`, carries a public-key signature that does not
/// verify, or is replayed, could not succeed whatever was guessed.
fn check_assertion<'r>(realm: &'r Realm, id: &str, form: &Form, now: u64) -> Result<(&'r Client, Replay), Failed> {
    let no_guess = Failed::Counted(Failure::NotAGuess);
    let assertion = form.get("client_assertion").unwrap_or("");
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| no_guess)?;
    let hmac = matches!(header.alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512);
    let bad_signature = Failed::Counted(if hmac { Failure::Guess } else { Failure::NotAGuess });
    let client = realm.clients.get(id).ok_or(bad_signature)?;
    let keys: Vec<DecodingKey> = if hmac {
        // client_secret_jwt: the plaintext secret is the HMAC key.
        let secret = client
            .secret
            .as_ref()
            .and_then(|s| s.plaintext())
            .ok_or(bad_signature)?;
        vec![DecodingKey::from_secret(secret.expose().as_bytes())]
    } else {
        let jwks = client.jwks.as_ref().ok_or(no_guess)?;
        jwks.set
            .keys
            .iter()
            .filter(|k| header.kid.is_none() || k.common.key_id == header.kid)
            .filter(|k| jwk_allows(k, header.alg))
            .filter_map(|k| DecodingKey::from_jwk(k).ok())
            .collect()
    };
    let mut v = Validation::new(header.alg);
    v.set_audience(&[realm.token_endpoint.as_str(), realm.issuer.as_str()]);
    v.set_issuer(&[id]);
    v.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
    v.leeway = realm.leeway.as_secs();
    let claims = keys
        .iter()
        .find_map(|k| jsonwebtoken::decode::<AssertionClaims>(assertion, k, &v).ok())
        .ok_or(bad_signature)?
        .claims;
    if claims.sub != id || claims.exp > now + MAX_ASSERTION_LIFETIME {
        return Err(no_guess);
    }
    let jti = claims.jti.ok_or(no_guess)?;
    let replay = Replay {
        key: format!("{}\0{id}\0{jti}", realm.name),
        until: claims.exp + realm.leeway.as_secs(),
    };
    Ok((client, replay))
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

#[cfg(test)]
mod tests;
