//! The claims of tollgate's tokens, shaped like Keycloak's service-account tokens.

use crate::config::{Client, Realm};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Serialize)]
pub struct RolesRef<'a> {
    pub roles: &'a [String],
}

#[derive(Serialize)]
#[serde(untagged)]
pub enum Aud<'a> {
    One(&'a str),
    Many(&'a [String]),
}

impl<'a> Aud<'a> {
    pub fn of(list: &'a [String]) -> Self {
        match list {
            [one] => Aud::One(one),
            many => Aud::Many(many),
        }
    }

    /// No audience: the claim is left out, as Keycloak leaves it out.
    pub fn is_empty(&self) -> bool {
        matches!(self, Aud::Many([]))
    }
}

#[derive(Serialize)]
#[allow(non_snake_case)]
pub struct AccessClaims<'a> {
    pub exp: u64,
    pub iat: u64,
    pub jti: &'a str,
    pub iss: &'a str,
    #[serde(skip_serializing_if = "Aud::is_empty")]
    pub aud: Aud<'a>,
    pub sub: &'a str,
    pub typ: &'static str,
    pub azp: &'a str,
    pub sid: &'a str,
    pub acr: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub realm_access: Option<RolesRef<'a>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub resource_access: BTreeMap<&'a str, RolesRef<'a>>,
    pub scope: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    pub clientHost: &'a str,
    pub preferred_username: &'a str,
    pub clientAddress: &'a str,
    pub client_id: &'a str,
}

#[derive(Serialize)]
pub struct RefreshClaims<'a> {
    pub exp: u64,
    pub iat: u64,
    pub jti: &'a str,
    pub iss: &'a str,
    pub aud: &'a str,
    pub sub: &'a str,
    pub typ: &'static str,
    pub azp: &'a str,
    pub sid: &'a str,
    pub scope: &'a str,
    /// When the chain's original grant was made (its client session started).
    pub auth_time: u64,
}

/// Everything that varies per token.
pub struct Issue<'a> {
    pub realm: &'a Realm,
    pub client: &'a Client,
    pub scope: &'a str,
    pub peer: &'a str,
    pub now: u64,
    pub sid: &'a str,
    /// When the grant chain began.
    pub started: u64,
    /// When the grant chain ends, for a client with refresh tokens: no token outlives it.
    pub session_end: Option<u64>,
}

impl Issue<'_> {
    /// `now + lifespan`, cut at the end of the chain.
    fn expiry(&self, lifespan: std::time::Duration) -> u64 {
        let exp = self.now.saturating_add(lifespan.as_secs());
        self.session_end.map_or(exp, |end| exp.min(end))
    }
}

pub fn access<'a>(i: &'a Issue<'a>, jti: &'a str, username: &'a str) -> AccessClaims<'a> {
    let c = i.client;
    AccessClaims {
        exp: i.expiry(i.realm.access_token_lifespan),
        iat: i.now,
        jti,
        iss: &i.realm.issuer,
        aud: Aud::of(&c.audience),
        sub: &c.subject,
        typ: "Bearer",
        azp: &c.id,
        sid: i.sid,
        acr: "1",
        realm_access: (!c.realm_roles.is_empty()).then_some(RolesRef { roles: &c.realm_roles }),
        resource_access: c
            .resource_access
            .iter()
            .map(|(k, v)| (k.as_str(), RolesRef { roles: v }))
            .collect(),
        scope: i.scope,
        email_verified: i.scope.split(' ').any(|s| s == "email").then_some(false),
        clientHost: i.peer,
        preferred_username: username,
        clientAddress: i.peer,
        client_id: &c.id,
    }
}

pub fn refresh<'a>(i: &'a Issue<'a>, jti: &'a str) -> RefreshClaims<'a> {
    RefreshClaims {
        exp: i.expiry(i.realm.refresh_token_lifespan),
        iat: i.now,
        jti,
        iss: &i.realm.issuer,
        aud: &i.realm.issuer,
        sub: &i.client.subject,
        typ: "Refresh",
        azp: &i.client.id,
        sid: i.sid,
        scope: i.scope,
        auth_time: i.started,
    }
}

/// A random UUID (v4) for `jti` and `sid`, from the thread's ChaCha12 generator (seeded and
/// periodically reseeded from the OS): unpredictable like aws-lc's DRBG, without its per-call
/// RDRAND and AES-CTR work (docs/performance-decisions.md).
pub fn random_id() -> String {
    use rand::RngCore;
    let mut b = [0u8; 16];
    rand::rng().fill_bytes(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    crate::config::realm_uuid(&b)
}

#[cfg(test)]
mod tests {
    use super::random_id;

    #[test]
    fn uuid_text_form() {
        let b: Vec<u8> = (0u8..16).map(|i| i * 17).collect();
        assert_eq!(crate::config::realm_uuid(&b), "00112233-4455-6677-8899-aabbccddeeff");
    }

    #[test]
    fn random_ids_are_v4_uuids_and_do_not_repeat() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let id = random_id();
            let b = id.as_bytes();
            assert_eq!(id.len(), 36, "{id}");
            assert!(b[8] == b'-' && b[13] == b'-' && b[18] == b'-' && b[23] == b'-', "{id}");
            assert_eq!(b[14], b'4', "version 4: {id}");
            assert!(matches!(b[19], b'8' | b'9' | b'a' | b'b'), "RFC 9562 variant: {id}");
            assert!(id
                .bytes()
                .all(|c| c == b'-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
            assert!(seen.insert(id), "a repeated id");
        }
    }
}
