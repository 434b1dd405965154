//! Bearer tokens: read from `Authorization`, verified against the realm's current keys.
//!
//! The algorithm comes from the key the `kid` names, never from the token: a header `alg` that
//! is not that key's is refused before any signature check, so `none`, HS256-with-a-public-key
//! and the like never reach a verifier.

use crate::config::Realm;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use http::{HeaderName, HeaderValue};
use serde::Deserialize;
use std::collections::BTreeMap;

/// Longest bearer token accepted, in bytes.
pub const MAX_TOKEN: usize = 8 * 1024;

/// The headers that tell the upstream who a request speaks for, in the order of
/// [`Identity::headers`].
pub const IDENTITY_HEADERS: [HeaderName; 5] = [
    HeaderName::from_static("x-auth-subject"),
    HeaderName::from_static("x-auth-client-id"),
    HeaderName::from_static("x-auth-realm"),
    HeaderName::from_static("x-auth-roles"),
    HeaderName::from_static("x-auth-scope"),
];

/// Who a verified token speaks for, as the upstream will be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub realm: String,
    pub subject: String,
    pub client_id: String,
    /// Realm roles as `role`, client roles as `client:role`, sorted.
    pub roles: Vec<String>,
    pub scope: String,
    pub audience: Vec<String>,
    pub jti: String,
    /// The grant chain (access and refresh tokens of one client_credentials grant).
    pub sid: String,
    pub exp: u64,
    pub iat: u64,
    pub nbf: Option<u64>,
    pub typ: String,
    /// The values of [`IDENTITY_HEADERS`], made once per token (the verified-token cache keeps
    /// them, so a request copies no claim); `None` if a claim cannot be a header value.
    pub headers: Option<[HeaderValue; 5]>,
}

impl Identity {
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Fills in [`Identity::headers`] from the claims (the roles joined with ',').
    pub fn with_headers(mut self) -> Identity {
        let value = |s: &str| HeaderValue::from_str(s).ok();
        self.headers = (|| {
            Some([
                value(&self.subject)?,
                value(&self.client_id)?,
                value(&self.realm)?,
                value(&self.roles.join(","))?,
                value(&self.scope)?,
            ])
        })();
        self
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
}

#[derive(Deserialize, Default)]
struct Roles {
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Deserialize)]
struct Claims {
    exp: Option<f64>,
    nbf: Option<f64>,
    iat: Option<f64>,
    iss: Option<String>,
    aud: Option<OneOrMany>,
    sub: Option<String>,
    typ: Option<String>,
    azp: Option<String>,
    client_id: Option<String>,
    jti: Option<String>,
    sid: Option<String>,
    scope: Option<String>,
    realm_access: Option<Roles>,
    resource_access: Option<BTreeMap<String, Roles>>,
}

/// Whether `b` may appear in RFC 6750's `b64token` (RFC 7235 `token68`): letters, digits and
/// `-._~+/=`. Written as comparisons rather than a table lookup so that [`is_token68`], which
/// runs over every byte of every bearer token, compiles to vector instructions.
#[inline(always)]
fn token68_byte(b: u8) -> bool {
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    letter | digit | (b == b'-') | (b == b'.') | (b == b'_') | (b == b'~') | (b == b'+') | (b == b'/') | (b == b'=')
}

/// Every byte of `token` is a `token68` byte. No early exit, so the loop vectorises; a junk
/// token costs the same as a good one of its length.
fn is_token68(token: &[u8]) -> bool {
    token.iter().fold(true, |ok, &b| ok & token68_byte(b))
}

/// Extract the credentials from an `Authorization` header value. `None`: no bearer credentials
/// at all. `Some(Err)`: bearer credentials that cannot be a token. Their alphabet is checked by
/// [`token_text`], needed only for a token the cache does not hold (it holds verified ones).
pub fn from_header(value: Option<&[u8]>) -> Option<Result<&[u8], &'static str>> {
    let value = value?;
    let (scheme, rest) = match value.iter().position(|&b| b == b' ') {
        Some(i) => (&value[..i], &value[i + 1..]),
        None => (value, &b""[..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    if token.is_empty() {
        return Some(Err("empty bearer token"));
    }
    if token.len() > MAX_TOKEN {
        return Some(Err("token too large"));
    }
    Some(Ok(token))
}

/// Bearer credentials as a token's text: `token68` bytes only (RFC 6750 §2.1).
pub fn token_text(credentials: &[u8]) -> Result<&str, &'static str> {
    if !is_token68(credentials) {
        return Err("malformed token");
    }
    // Checked to be ASCII above.
    std::str::from_utf8(credentials).map_err(|_| "malformed token")
}

/// Which kind of token a check expects in `typ`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    Access,
    Refresh,
    Either,
}

/// Verify `token` against `realm`: structure, kid, alg, signature, time, issuer, typ.
/// Audience and revocation are the caller's (they depend on the route and the store).
pub fn verify(realm: &Realm, token: &str, now: u64, expect: Expect) -> Result<Identity, &'static str> {
    let mut parts = token.splitn(4, '.');
    let (Some(h64), Some(c64), Some(s64), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err("malformed token");
    };
    let header_bytes = B64.decode(h64).map_err(|_| "malformed token header")?;
    let header: Header = serde_json::from_slice(&header_bytes).map_err(|_| "malformed token header")?;
    let kid = header.kid.ok_or("token has no kid")?;
    let key = realm.keys.get(&kid).ok_or("unknown kid")?;
    if header.alg != crate::keys::alg_name(key.alg) {
        return Err("alg does not match the key");
    }
    let signature = B64.decode(s64).map_err(|_| "malformed signature")?;
    let signing_input = &token[..h64.len() + 1 + c64.len()];
    if !key.verify(signing_input.as_bytes(), &signature) {
        return Err("bad signature");
    }
    let claim_bytes = B64.decode(c64).map_err(|_| "malformed claims")?;
    let claims: Claims = serde_json::from_slice(&claim_bytes).map_err(|_| "malformed claims")?;
    check_claims(realm, claims, now, expect)
}

fn check_claims(realm: &Realm, claims: Claims, now: u64, expect: Expect) -> Result<Identity, &'static str> {
    let leeway = realm.leeway.as_secs();
    let exp = claims.exp.ok_or("token has no exp")?;
    if !exp.is_finite() || exp < 0.0 {
        return Err("malformed exp");
    }
    let exp = exp as u64;
    if now > exp.saturating_add(leeway) {
        return Err("token expired");
    }
    let nbf = claims.nbf.map(|n| n.max(0.0) as u64);
    if let Some(nbf) = nbf {
        if nbf > now.saturating_add(leeway) {
            return Err("token not yet valid");
        }
    }
    let iat = claims.iat.map(|n| n.max(0.0) as u64).unwrap_or(0);
    if iat > now.saturating_add(leeway) {
        return Err("token issued in the future");
    }
    if claims.iss.as_deref() != Some(realm.issuer.as_str()) {
        return Err("wrong issuer");
    }
    let typ = claims.typ.unwrap_or_default();
    let typ_ok = match expect {
        Expect::Access => typ == "Bearer",
        Expect::Refresh => typ == "Refresh",
        Expect::Either => typ == "Bearer" || typ == "Refresh",
    };
    if !typ_ok {
        return Err("wrong token type");
    }
    let mut roles: Vec<String> = claims.realm_access.unwrap_or_default().roles;
    for (client, r) in claims.resource_access.unwrap_or_default() {
        roles.extend(r.roles.into_iter().map(|role| format!("{client}:{role}")));
    }
    roles.sort();
    roles.dedup();
    let client_id = claims.azp.or(claims.client_id).unwrap_or_default();
    Ok(Identity {
        realm: realm.name.clone(),
        subject: claims.sub.unwrap_or_default(),
        client_id,
        roles,
        scope: claims.scope.unwrap_or_default(),
        audience: claims.aud.map(OneOrMany::into_vec).unwrap_or_default(),
        jti: claims.jti.unwrap_or_default(),
        sid: claims.sid.unwrap_or_default(),
        exp,
        iat,
        nbf,
        typ,
        headers: None,
    }
    .with_headers())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token68_test_is_rfc_7235s_alphabet_for_every_byte() {
        for b in 0..=255u8 {
            let spec = b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b);
            assert_eq!(token68_byte(b), spec, "byte {b:#04x}");
            assert_eq!(is_token68(&[b'a', b, b'z']), spec, "byte {b:#04x} inside a token");
        }
        assert!(is_token68(b""));
    }

    #[test]
    fn identity_headers_are_made_once_from_the_claims_or_not_at_all() {
        let id = |subject: &str| {
            Identity {
                realm: "demo".into(),
                subject: subject.into(),
                client_id: "orders".into(),
                roles: vec!["orders:write".into(), "reader".into()],
                scope: "profile email".into(),
                audience: vec![],
                jti: "j".into(),
                sid: "s".into(),
                exp: 1,
                iat: 0,
                nbf: None,
                typ: "Bearer".into(),
                headers: None,
            }
            .with_headers()
        };
        let values = id("service-account-orders")
            .headers
            .expect("plain claims are header values");
        let values: Vec<&str> = values.iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(
            values,
            [
                "service-account-orders",
                "orders",
                "demo",
                "orders:write,reader",
                "profile email"
            ]
        );
        assert_eq!(id("a\nX-Injected: 1").headers, None);
        assert_eq!(
            id("tab\tis fine").headers.map(|h| h[0].clone()),
            Some(HeaderValue::from_static("tab\tis fine"))
        );
    }

    #[test]
    fn header_forms() {
        let token = |h: &'static [u8]| from_header(Some(h)).map(|r| r.and_then(token_text));
        assert!(from_header(None).is_none());
        assert!(from_header(Some(b"Basic abc")).is_none());
        assert_eq!(token(b"Bearer abc.def.ghi"), Some(Ok("abc.def.ghi")));
        assert_eq!(token(b"bearer  abc"), Some(Ok("abc")));
        assert_eq!(token(b"Bearer"), Some(Err("empty bearer token")));
        assert_eq!(token(b"Bearer a\"b"), Some(Err("malformed token")));
        assert_eq!(from_header(Some(b"Bearer a\"b")), Some(Ok(&b"a\"b"[..])));
        assert_eq!(token_text(&[b'a', 0xc3, 0xa9]), Err("malformed token"));
        let big = format!("Bearer {}", "a".repeat(MAX_TOKEN + 1));
        assert_eq!(from_header(Some(big.as_bytes())), Some(Err("token too large")));
    }
}
