//! Grants: client_credentials (RFC 6749 §4.4) and, for clients that enable it, refresh_token.

use super::claims::{self, Issue};
use super::form::Form;
use super::oauth_error::OAuthError;
use crate::config::{Client, Realm};
use crate::state::State;
use crate::token::Expect;
use serde::Serialize;

/// The scope a token gets: the client's default scopes, plus each optional scope asked for.
/// Anything asked for that is neither is `invalid_scope`.
pub fn resolve_scope(client: &Client, requested: Option<&str>) -> Result<String, OAuthError> {
    client.scope_for(requested).map_err(OAuthError::InvalidScope)
}

/// The grant chain a token is issued in: its `sid`, and when its original grant was made.
#[derive(Debug, Clone, Copy)]
pub struct Session<'a> {
    pub sid: &'a str,
    pub started: u64,
}

/// Sign an access token (and a refresh token, where the client uses them) and render the
/// RFC 6749 §5.1 response body. `session`: the chain being refreshed, none for a new grant.
pub fn issue(
    realm: &Realm,
    client: &Client,
    scope: &str,
    peer: &str,
    now: u64,
    session: Option<Session>,
) -> Result<String, OAuthError> {
    let new_sid;
    let session = match session {
        Some(s) => s,
        None => {
            new_sid = claims::random_id();
            Session {
                sid: &new_sid,
                started: now,
            }
        }
    };
    // A refresh chain ends at its client session's max lifespan, however often it is renewed;
    // nothing it issues outlives that.
    let session_end = client.use_refresh_token.then(|| {
        session
            .started
            .saturating_add(realm.client_session_max_lifespan.as_secs())
    });
    let i = Issue {
        realm,
        client,
        scope,
        peer,
        now,
        sid: session.sid,
        started: session.started,
        session_end,
    };
    let jti = claims::random_id();
    let username = format!("service-account-{}", client.id);
    let access_claims = claims::access(&i, &jti, &username);
    let access_exp = access_claims.exp;
    let access = sign(realm, &access_claims)?;
    let refresh = if client.use_refresh_token {
        let rjti = claims::random_id();
        let c = claims::refresh(&i, &rjti);
        Some((sign(realm, &c)?, c.exp))
    } else {
        None
    };
    Ok(TokenResponse {
        access_token: &access,
        expires_in: access_exp.saturating_sub(now),
        refresh: refresh.as_ref().map(|(token, exp)| Refresh {
            token,
            expires_in: exp.saturating_sub(now),
            session_state: session.sid,
        }),
        scope,
    }
    .render())
}

/// The RFC 6749 §5.1 token response.
struct TokenResponse<'a> {
    access_token: &'a str,
    expires_in: u64,
    refresh: Option<Refresh<'a>>,
    scope: &'a str,
}

/// The refresh token of a response, for a client that uses them.
struct Refresh<'a> {
    token: &'a str,
    expires_in: u64,
    session_state: &'a str,
}

impl TokenResponse<'_> {
    /// The JSON body, with Keycloak's fields in Keycloak's order. Written by hand: the tokens
    /// are compact JWSs (base64url and dots), which need no escaping, and serde_json's escape
    /// scan of a token was most of the time spent rendering the response.
    fn render(&self) -> String {
        use std::fmt::Write;
        debug_assert!(jws_is_plain(self.access_token));
        let refresh_len = self
            .refresh
            .as_ref()
            .map_or(0, |r| r.token.len() + r.session_state.len());
        let mut out = String::with_capacity(self.access_token.len() + refresh_len + self.scope.len() + 200);
        out.push_str(r#"{"access_token":""#);
        out.push_str(self.access_token);
        // Writing to a String cannot fail.
        let _ = write!(out, r#"","expires_in":{},"refresh_expires_in":"#, self.expires_in);
        match &self.refresh {
            None => out.push('0'),
            Some(r) => {
                debug_assert!(jws_is_plain(r.token));
                let _ = write!(out, r#"{},"refresh_token":"{}""#, r.expires_in, r.token);
            }
        }
        out.push_str(r#","token_type":"Bearer","not-before-policy":0"#);
        if let Some(r) = &self.refresh {
            out.push_str(r#","session_state":"#);
            push_json_string(&mut out, r.session_state);
        }
        out.push_str(r#","scope":"#);
        push_json_string(&mut out, self.scope);
        out.push('}');
        out
    }
}

/// Whether `token` is made only of base64url characters and dots (a compact JWS).
fn jws_is_plain(token: &str) -> bool {
    token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// Appends `s` to `out` as a JSON string, escaped.
fn push_json_string(out: &mut String, s: &str) {
    // serde_json escapes exactly as JSON requires; serialising a &str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// Serialise `claims` into a buffer sized for a typical token, and sign them with the realm's key.
fn sign(realm: &Realm, claims: &impl Serialize) -> Result<String, OAuthError> {
    let mut body = Vec::with_capacity(1024);
    serde_json::to_writer(&mut body, claims).map_err(|_| OAuthError::ServerError("cannot encode claims"))?;
    realm
        .signer()
        .ok_or(OAuthError::ServerError("this realm issues no tokens"))?
        .sign(&body)
        .map_err(|_| OAuthError::ServerError("signing failed"))
}

pub fn client_credentials(
    realm: &Realm,
    client: &Client,
    form: &Form,
    peer: &str,
    now: u64,
) -> Result<String, OAuthError> {
    if !client.service_accounts_enabled {
        return Err(OAuthError::UnauthorizedClient(
            "Client not enabled to retrieve service account",
        ));
    }
    let scope = resolve_scope(client, form.get("scope"))?;
    issue(realm, client, &scope, peer, now, None)
}

pub fn refresh_token(
    state: &State,
    realm: &Realm,
    client: &Client,
    form: &Form,
    peer: &str,
    now: u64,
) -> Result<String, OAuthError> {
    if !client.use_refresh_token {
        return Err(OAuthError::UnauthorizedClient(
            "Client not allowed to use refresh tokens",
        ));
    }
    let token = form
        .get("refresh_token")
        .ok_or_else(|| OAuthError::InvalidRequest("refresh_token is missing".into()))?;
    let id = super::verify_own(realm, token, now, Expect::Refresh)
        .map_err(|_| OAuthError::InvalidGrant("Invalid refresh token"))?;
    let started = chain_start(token).unwrap_or(id.iat);
    if now >= started.saturating_add(realm.client_session_max_lifespan.as_secs()) {
        return Err(OAuthError::InvalidGrant("Session not active"));
    }
    if id.client_id != client.id {
        return Err(OAuthError::InvalidGrant(
            "Token client and authorized client don't match",
        ));
    }
    if crate::store::token_revoked(&*state.store, &id.jti, &id.sid) {
        return Err(OAuthError::InvalidGrant("Token is not active"));
    }
    // A narrower scope may be asked for; never a wider one (RFC 6749 §6).
    let scope = match form.get("scope") {
        None => id.scope.clone(),
        Some(asked) => {
            let granted: Vec<&str> = id.scope.split(' ').collect();
            if let Some(extra) = asked.split(' ').find(|s| !s.is_empty() && !granted.contains(s)) {
                return Err(OAuthError::InvalidScope(extra.to_string()));
            }
            resolve_scope(client, Some(asked))?
        }
    };
    let session = Session { sid: &id.sid, started };
    issue(realm, client, &scope, peer, now, Some(session))
}

/// When the chain of a refresh token (already verified) began: its `auth_time`. A refresh
/// token issued before chains carried one has none; its own `iat` stands in.
fn chain_start(verified: &str) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Started {
        auth_time: Option<u64>,
    }
    jsonwebtoken::dangerous::insecure_decode_claims::<Started>(verified)
        .ok()?
        .auth_time
}

#[cfg(test)]
mod tests {
    use super::{Refresh, TokenResponse};

    #[test]
    fn token_response_has_keycloak_fields_in_keycloak_order() {
        let mut r = TokenResponse {
            access_token: "a.b.c",
            expires_in: 300,
            refresh: None,
            scope: "profile \"x\"",
        };
        let plain = r.render();
        assert_eq!(
            plain,
            r#"{"access_token":"a.b.c","expires_in":300,"refresh_expires_in":0,"token_type":"Bearer","not-before-policy":0,"scope":"profile \"x\""}"#
        );
        r.refresh = Some(Refresh {
            token: "d.e-f_",
            expires_in: 1800,
            session_state: "s\n",
        });
        let with_refresh = r.render();
        assert_eq!(
            with_refresh,
            r#"{"access_token":"a.b.c","expires_in":300,"refresh_expires_in":1800,"refresh_token":"d.e-f_","token_type":"Bearer","not-before-policy":0,"session_state":"s\n","scope":"profile \"x\""}"#
        );
        for body in [plain, with_refresh] {
            let v: serde_json::Value = serde_json::from_str(&body).expect("valid JSON");
            assert_eq!(v["scope"], "profile \"x\"");
        }
    }

    #[test]
    fn an_empty_audience_means_tokens_without_aud() {
        use base64::Engine;
        let dir = tempfile::tempdir().unwrap();
        let key = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/demo-rs256.pem");
        std::fs::copy(key, dir.path().join("k.pem")).unwrap();
        let text = "[server]\nlisten = \"127.0.0.1:0\"\n[realms.demo]\nroles = [\"reader\"]\n\
                    signing_keys = [{ kid = \"k1\", alg = \"RS256\", private_key = \"k.pem\" }]\n\
                    [realms.demo.clients.c]\nsecret = \"s\"\nservice_account_roles = [\"reader\"]\naudience = []\n";
        let snap = crate::config::load_str(&dir.path().join("proxy.toml"), text).unwrap();
        let realm = snap.realm("demo").unwrap();
        let body = super::issue(realm, &realm.clients["c"], "profile", "127.0.0.1", 1, None).unwrap();
        let body: serde_json::Value = serde_json::from_str(&body).unwrap();
        let payload = body["access_token"].as_str().unwrap().split('.').nth(1).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(payload)
                .unwrap(),
        )
        .unwrap();
        assert!(claims.get("aud").is_none(), "{claims}");
        assert_eq!(claims["azp"], "c");
    }
}
