//! JWS verification of access and refresh tokens against a key set.
//!
//! The algorithm comes from the key the `kid` names, never from the token: a header `alg` that
//! is not that key's is refused before any signature check, so `none`, HS256-with-a-public-key
//! and the like never reach a verifier.

use super::{Identity, KeySet, VerifyKey};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Why a token was not accepted. The description is what `WWW-Authenticate` and the error body
/// say; none of them quotes the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Empty,
    TooLarge,
    Malformed,
    MalformedHeader,
    UnsupportedCrit,
    NoKid,
    UnknownKid,
    AlgMismatch,
    MalformedSignature,
    BadSignature,
    MalformedClaims,
    NoExp,
    MalformedExp,
    Expired,
    NotYetValid,
    IssuedInFuture,
    WrongIssuer,
    WrongType,
    Revoked,
    WrongAudience,
}

impl TokenError {
    pub fn description(self) -> &'static str {
        match self {
            TokenError::Empty => "empty bearer token",
            TokenError::TooLarge => "token too large",
            TokenError::Malformed => "malformed token",
            TokenError::MalformedHeader => "malformed token header",
            TokenError::UnsupportedCrit => "token names critical extensions that are not supported",
            TokenError::NoKid => "token has no kid",
            TokenError::UnknownKid => "unknown kid",
            TokenError::AlgMismatch => "alg does not match the key",
            TokenError::MalformedSignature => "malformed signature",
            TokenError::BadSignature => "bad signature",
            TokenError::MalformedClaims => "malformed claims",
            TokenError::NoExp => "token has no exp",
            TokenError::MalformedExp => "malformed exp",
            TokenError::Expired => "token expired",
            TokenError::NotYetValid => "token not yet valid",
            TokenError::IssuedInFuture => "token issued in the future",
            TokenError::WrongIssuer => "wrong issuer",
            TokenError::WrongType => "wrong token type",
            TokenError::Revoked => "token revoked",
            TokenError::WrongAudience => "wrong audience",
        }
    }
}

/// Which kind of token a check expects in `typ`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Expect {
    Access,
    Refresh,
    Either,
}

/// How strictly the `typ` claim is read.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TypRule {
    /// tollgate's own tokens: `typ` is `Bearer` or `Refresh`, as Keycloak sets it.
    Keycloak,
    /// Another issuer's access tokens: `typ` may be absent (RFC 9068 puts the type in the
    /// header), but a `typ` that names another kind of token (`Refresh`, `ID`, `Logout`) is not
    /// an access token.
    Foreign,
}

/// What a token of a realm must satisfy besides its signature.
#[derive(Clone, Copy, Debug)]
pub struct Rules<'a> {
    pub realm: &'a str,
    pub issuer: &'a str,
    /// Seconds of clock skew allowed on `exp`, `nbf`, `iat`.
    pub leeway: u64,
    pub typ: TypRule,
    /// Where the roles are: `None` for Keycloak's `realm_access` / `resource_access`.
    pub roles_claim: Option<&'a str>,
}

/// A token that verified, and the key that verified it.
#[derive(Debug)]
pub struct Verified {
    pub identity: Identity,
    pub key: Arc<VerifyKey>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    crit: Option<Value>,
    b64: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
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

/// The three parts of a compact JWS.
fn parts(token: &str) -> Result<(&str, &str, &str), TokenError> {
    let mut parts = token.splitn(4, '.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(c), Some(s), None) => Ok((h, c, s)),
        _ => Err(TokenError::Malformed),
    }
}

/// The `iss` of a token, read before anything is verified, only to pick which realm verifies it.
pub fn peek_issuer(token: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Iss {
        iss: Option<String>,
    }
    let (_, c64, _) = parts(token).ok()?;
    let bytes = B64.decode(c64).ok()?;
    serde_json::from_slice::<Iss>(&bytes).ok()?.iss
}

/// The `kid` of a token's header (`""` when it names none), read before it is verified.
pub fn peek_kid(token: &str) -> Option<String> {
    let (h64, _, _) = parts(token).ok()?;
    let bytes = B64.decode(h64).ok()?;
    let header: Header = serde_json::from_slice(&bytes).ok()?;
    Some(header.kid.unwrap_or_default())
}

/// Verify `token` against `keys` and `rules`: structure, kid, alg, signature, time, issuer, typ.
/// Audience and revocation are the caller's (they depend on the route and the store).
pub fn verify(keys: &KeySet, rules: &Rules, token: &str, now: u64, expect: Expect) -> Result<Verified, TokenError> {
    let (h64, c64, s64) = parts(token)?;
    let header_bytes = B64.decode(h64).map_err(|_| TokenError::MalformedHeader)?;
    let header: Header = serde_json::from_slice(&header_bytes).map_err(|_| TokenError::MalformedHeader)?;
    // RFC 7515 §4.1.11: an extension the recipient does not understand makes the JWS invalid,
    // and tollgate understands none; `b64: false` (RFC 7797) changes what was signed.
    if header.crit.is_some() || header.b64.as_ref().is_some_and(|b| b != &Value::Bool(true)) {
        return Err(TokenError::UnsupportedCrit);
    }
    if !header_typ_ok(header.typ.as_deref()) {
        return Err(TokenError::WrongType);
    }
    let key = match &header.kid {
        Some(kid) => keys.get(kid).ok_or(TokenError::UnknownKid)?,
        None if rules.typ == TypRule::Foreign => keys.only().ok_or(TokenError::NoKid)?,
        None => return Err(TokenError::NoKid),
    };
    if header.alg != super::keys::alg_name(key.alg) {
        return Err(TokenError::AlgMismatch);
    }
    let signature = B64.decode(s64).map_err(|_| TokenError::MalformedSignature)?;
    let signing_input = &token[..h64.len() + 1 + c64.len()];
    if !key.verify(signing_input.as_bytes(), &signature) {
        return Err(TokenError::BadSignature);
    }
    let claim_bytes = B64.decode(c64).map_err(|_| TokenError::MalformedClaims)?;
    let all: Value = serde_json::from_slice(&claim_bytes).map_err(|_| TokenError::MalformedClaims)?;
    let claims = Claims::deserialize(&all).map_err(|_| TokenError::MalformedClaims)?;
    let mut identity = check_claims(rules, claims, now, expect)?;
    if let Some(claim) = rules.roles_claim {
        identity.roles = roles_at(&all, claim);
        identity = identity.with_headers();
    }
    identity.claims = all;
    Ok(Verified {
        identity,
        key: key.clone(),
    })
}

/// RFC 9068's `at+jwt`, the plain `JWT`, or nothing.
fn header_typ_ok(typ: Option<&str>) -> bool {
    match typ {
        None => true,
        Some(t) => {
            let t = t.strip_prefix("application/").unwrap_or(t);
            t.eq_ignore_ascii_case("JWT") || t.eq_ignore_ascii_case("at+jwt")
        }
    }
}

/// The roles in claim `name`: a top-level claim of that exact name, else a dotted path into
/// nested objects; an array of strings or one space-separated string.
fn roles_at(claims: &Value, name: &str) -> Vec<String> {
    let found = claims
        .get(name)
        .or_else(|| name.split('.').try_fold(claims, |v, part| v.get(part)));
    let mut roles: Vec<String> = match found {
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        Some(Value::String(s)) => s.split(' ').filter(|r| !r.is_empty()).map(str::to_string).collect(),
        _ => Vec::new(),
    };
    clean_roles(&mut roles);
    roles
}

/// Sorted, without duplicates, and without names that would read as two roles (or none) in
/// the comma-joined `X-Auth-Roles`.
fn clean_roles(roles: &mut Vec<String>) {
    roles.retain(|r| !r.is_empty() && !r.contains(',') && !r.chars().any(char::is_control));
    roles.sort();
    roles.dedup();
}

fn check_claims(rules: &Rules, claims: Claims, now: u64, expect: Expect) -> Result<Identity, TokenError> {
    let leeway = rules.leeway;
    let exp = claims.exp.ok_or(TokenError::NoExp)?;
    if !exp.is_finite() || exp < 0.0 {
        return Err(TokenError::MalformedExp);
    }
    let exp = exp as u64;
    if now > exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    let nbf = claims.nbf.map(|n| n.max(0.0) as u64);
    if nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(TokenError::NotYetValid);
    }
    let iat = claims.iat.map(|n| n.max(0.0) as u64).unwrap_or(0);
    if iat > now.saturating_add(leeway) {
        return Err(TokenError::IssuedInFuture);
    }
    if claims.iss.as_deref() != Some(rules.issuer) {
        return Err(TokenError::WrongIssuer);
    }
    let typ = claims.typ.unwrap_or_default();
    let typ_ok = match (rules.typ, expect) {
        (TypRule::Keycloak, Expect::Access) => typ == "Bearer",
        (TypRule::Keycloak, Expect::Refresh) => typ == "Refresh",
        (TypRule::Keycloak, Expect::Either) => typ == "Bearer" || typ == "Refresh",
        (TypRule::Foreign, Expect::Access) => typ.is_empty() || typ == "Bearer",
        (TypRule::Foreign, _) => false,
    };
    if !typ_ok {
        return Err(TokenError::WrongType);
    }
    let mut roles: Vec<String> = claims.realm_access.unwrap_or_default().roles;
    for (client, r) in claims.resource_access.unwrap_or_default() {
        roles.extend(r.roles.into_iter().map(|role| format!("{client}:{role}")));
    }
    clean_roles(&mut roles);
    let client_id = claims.azp.or(claims.client_id).unwrap_or_default();
    Ok(Identity {
        realm: rules.realm.to_string(),
        subject: claims.sub.unwrap_or_default(),
        client_id,
        roles,
        scope: claims.scope.unwrap_or_default(),
        audience: match claims.aud {
            None => Vec::new(),
            Some(OneOrMany::One(a)) => vec![a],
            Some(OneOrMany::Many(list)) => list,
        },
        jti: claims.jti.unwrap_or_default(),
        sid: claims.sid.unwrap_or_default(),
        exp,
        iat,
        nbf,
        typ,
        headers: None,
        claims: Value::Null,
    }
    .with_headers())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::keys::{generate_pem, SigningKey};
    use jsonwebtoken::Algorithm;
    use serde_json::json;

    fn setup() -> (SigningKey, KeySet) {
        let key = SigningKey::from_pem(
            "k1",
            Algorithm::ES256,
            generate_pem(Algorithm::ES256).unwrap().as_bytes(),
        )
        .unwrap();
        let mut set = KeySet::default();
        set.insert(key.public.clone());
        (key, set)
    }

    const RULES: Rules = Rules {
        realm: "corp",
        issuer: "https://idp.example/realms/corp",
        leeway: 5,
        typ: TypRule::Foreign,
        roles_claim: None,
    };

    /// A token signed by `key` with `header` (as JSON text, spacing kept) and `claims`.
    fn token(key: &SigningKey, header: &str, claims: &Value) -> String {
        let input = format!("{}.{}", B64.encode(header), B64.encode(claims.to_string()));
        let signature = B64.encode(key.sign_input(input.as_bytes()).unwrap());
        format!("{input}.{signature}")
    }

    fn claims(now: u64) -> Value {
        json!({"iss": RULES.issuer, "exp": now + 60, "iat": now, "sub": "s", "azp": "svc",
               "realm_access": {"roles": ["reader", "a,b"]}, "resource_access": {"api": {"roles": ["read"]}}})
    }

    #[test]
    fn keycloak_header_spacing_and_rfc_9068_types_verify() {
        let (key, set) = setup();
        let now = 1_000_000;
        for header in [
            r#"{"alg":"ES256","typ" : "JWT","kid" : "k1"}"#,
            r#"{"alg":"ES256","typ":"at+jwt","kid":"k1"}"#,
            r#"{"alg":"ES256","typ":"application/at+jwt","kid":"k1"}"#,
            r#"{"alg":"ES256","kid":"k1"}"#,
            r#"{"alg":"ES256"}"#,
        ] {
            let v = verify(&set, &RULES, &token(&key, header, &claims(now)), now, Expect::Access)
                .unwrap_or_else(|e| panic!("{header}: {e:?}"));
            assert_eq!(v.identity.roles, ["api:read", "reader"], "a role with ',' is dropped");
            assert_eq!(v.identity.client_id, "svc");
        }
    }

    #[test]
    fn crit_b64_foreign_types_and_wrong_algs_are_refused() {
        let (key, set) = setup();
        let now = 1_000_000;
        let check =
            |header: &str, claims: &Value| verify(&set, &RULES, &token(&key, header, claims), now, Expect::Access);
        let c = claims(now);
        assert_eq!(
            check(r#"{"alg":"ES256","kid":"k1","crit":["exp"],"exp":1}"#, &c).unwrap_err(),
            TokenError::UnsupportedCrit
        );
        assert_eq!(
            check(r#"{"alg":"ES256","kid":"k1","b64":false,"crit":["b64"]}"#, &c).unwrap_err(),
            TokenError::UnsupportedCrit
        );
        assert_eq!(
            check(r#"{"alg":"ES256","kid":"k1","typ":"logout+jwt"}"#, &c).unwrap_err(),
            TokenError::WrongType
        );
        assert_eq!(
            check(r#"{"alg":"RS256","kid":"k1"}"#, &c).unwrap_err(),
            TokenError::AlgMismatch
        );
        assert_eq!(
            check(r#"{"alg":"none","kid":"k1"}"#, &c).unwrap_err(),
            TokenError::AlgMismatch
        );
        assert_eq!(
            check(r#"{"alg":"ES256","kid":"k2"}"#, &c).unwrap_err(),
            TokenError::UnknownKid
        );
        for typ in ["Refresh", "ID", "Logout", "Offline"] {
            let mut c = claims(now);
            c["typ"] = json!(typ);
            assert_eq!(
                check(r#"{"alg":"ES256","kid":"k1"}"#, &c).unwrap_err(),
                TokenError::WrongType,
                "{typ}"
            );
        }
        let mut c = claims(now);
        c["typ"] = json!("Bearer");
        assert!(check(r#"{"alg":"ES256","kid":"k1"}"#, &c).is_ok());
        let mut c = claims(now);
        c["iss"] = json!("https://other.example");
        assert_eq!(
            check(r#"{"alg":"ES256","kid":"k1"}"#, &c).unwrap_err(),
            TokenError::WrongIssuer
        );
    }

    #[test]
    fn roles_come_from_the_configured_claim() {
        let (key, set) = setup();
        let now = 1_000_000;
        let mut c = claims(now);
        c["roles"] = json!(["admin", "reader"]);
        c["scp"] = json!("a b  c");
        c["https://example.com/groups"] = json!(["g1"]);
        c["nested"] = json!({"deep": {"roles": ["n1"]}});
        let header = r#"{"alg":"ES256","kid":"k1"}"#;
        let t = token(&key, header, &c);
        for (claim, want) in [
            ("roles", vec!["admin", "reader"]),
            ("scp", vec!["a", "b", "c"]),
            ("https://example.com/groups", vec!["g1"]),
            ("nested.deep.roles", vec!["n1"]),
            ("missing", vec![]),
        ] {
            let rules = Rules {
                roles_claim: Some(claim),
                ..RULES
            };
            let v = verify(&set, &rules, &t, now, Expect::Access).unwrap();
            assert_eq!(v.identity.roles, want, "{claim}");
            let header_roles = v.identity.headers.as_ref().unwrap()[3].to_str().unwrap().to_string();
            assert_eq!(header_roles, want.join(","), "{claim}");
        }
    }

    #[test]
    fn local_tokens_need_a_kid_and_keycloak_types() {
        let (key, set) = setup();
        let now = 1_000_000;
        let rules = Rules {
            typ: TypRule::Keycloak,
            ..RULES
        };
        let mut c = claims(now);
        assert_eq!(
            verify(
                &set,
                &rules,
                &token(&key, r#"{"alg":"ES256"}"#, &c),
                now,
                Expect::Access
            )
            .unwrap_err(),
            TokenError::NoKid
        );
        assert_eq!(
            verify(
                &set,
                &rules,
                &token(&key, r#"{"alg":"ES256","kid":"k1"}"#, &c),
                now,
                Expect::Access
            )
            .unwrap_err(),
            TokenError::WrongType
        );
        c["typ"] = json!("Refresh");
        let t = token(&key, r#"{"alg":"ES256","kid":"k1"}"#, &c);
        assert!(verify(&set, &rules, &t, now, Expect::Refresh).is_ok());
        assert!(verify(&set, &rules, &t, now, Expect::Access).is_err());
    }
}
