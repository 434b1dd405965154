//! Grants: client_credentials (RFC 6749 §4.4) and, for clients that enable it, refresh_token.

use super::claims::{self, Issue};
use super::form::Form;
use super::oauth_error::OAuthError;
use crate::config::{Client, Realm};
use crate::guard::bearer::{self, Expect};
use crate::state::State;
use serde::Serialize;

/// The scope a token gets: the client's default scopes, plus each optional scope asked for.
/// Anything asked for that is neither is `invalid_scope`.
pub fn resolve_scope(client: &Client, requested: Option<&str>) -> Result<String, OAuthError> {
    let mut scopes: Vec<&str> = Vec::new();
    for s in requested.unwrap_or("").split(' ').filter(|s| !s.is_empty()) {
        let known = s == "openid"
            || client.default_scopes.iter().any(|d| d == s)
            || client.optional_scopes.iter().any(|o| o == s);
        if !known {
            return Err(OAuthError::InvalidScope(s.to_string()));
        }
        if !scopes.contains(&s) {
            scopes.push(s);
        }
    }
    let mut out: Vec<&str> = Vec::new();
    if scopes.contains(&"openid") {
        out.push("openid");
    }
    out.extend(client.default_scopes.iter().map(String::as_str));
    out.extend(
        scopes
            .iter()
            .copied()
            .filter(|s| *s != "openid" && !client.default_scopes.iter().any(|d| d == s)),
    );
    Ok(out.join(" "))
}

/// Sign an access token (and a refresh token, where the client uses them) and render the
/// RFC 6749 §5.1 response body.
pub fn issue(
    realm: &Realm,
    client: &Client,
    scope: &str,
    peer: &str,
    now: u64,
    sid: Option<&str>,
) -> Result<String, OAuthError> {
    let new_sid;
    let sid = match sid {
        Some(s) => s,
        None => {
            new_sid = claims::random_id();
            &new_sid
        }
    };
    let i = Issue {
        realm,
        client,
        scope,
        peer,
        now,
        sid,
    };
    let jti = claims::random_id();
    let username = format!("service-account-{}", client.id);
    let access = sign(realm, &claims::access(&i, &jti, &username))?;
    let lifespan = realm.access_token_lifespan.as_secs();
    let mut resp = TokenResponse {
        access_token: &access,
        expires_in: lifespan,
        refresh_expires_in: 0,
        refresh_token: None,
        token_type: "Bearer",
        not_before_policy: 0,
        session_state: None,
        scope,
    };
    let refresh;
    if client.use_refresh_token {
        let rjti = claims::random_id();
        refresh = sign(realm, &claims::refresh(&i, &rjti))?;
        resp.refresh_token = Some(&refresh);
        resp.refresh_expires_in = realm.refresh_token_lifespan.as_secs();
        resp.session_state = Some(sid);
    }
    let mut body = Vec::with_capacity(access.len() + resp.refresh_token.map_or(0, str::len) + 256);
    serde_json::to_writer(&mut body, &resp).map_err(|_| OAuthError::ServerError("cannot encode response"))?;
    String::from_utf8(body).map_err(|_| OAuthError::ServerError("cannot encode response"))
}

/// The RFC 6749 §5.1 token response, in the order Keycloak writes its fields.
#[derive(Serialize)]
struct TokenResponse<'a> {
    access_token: &'a str,
    expires_in: u64,
    refresh_expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
    token_type: &'static str,
    #[serde(rename = "not-before-policy")]
    not_before_policy: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_state: Option<&'a str>,
    scope: &'a str,
}

/// Serialise `claims` into a buffer sized for a typical token, and sign them with the realm's key.
fn sign(realm: &Realm, claims: &impl Serialize) -> Result<String, OAuthError> {
    let mut body = Vec::with_capacity(1024);
    serde_json::to_writer(&mut body, claims).map_err(|_| OAuthError::ServerError("cannot encode claims"))?;
    realm
        .signer
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
    let id = bearer::verify(realm, token, now, Expect::Refresh)
        .map_err(|_| OAuthError::InvalidGrant("Invalid refresh token"))?;
    if id.client_id != client.id {
        return Err(OAuthError::InvalidGrant(
            "Token client and authorized client don't match",
        ));
    }
    if state.store.is_revoked(&id.jti) || (!id.sid.is_empty() && state.store.is_revoked(&id.sid)) {
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
    issue(realm, client, &scope, peer, now, Some(&id.sid))
}

#[cfg(test)]
mod tests {
    use super::TokenResponse;

    #[test]
    fn token_response_has_keycloak_fields_in_keycloak_order() {
        let mut r = TokenResponse {
            access_token: "a.b.c",
            expires_in: 300,
            refresh_expires_in: 0,
            refresh_token: None,
            token_type: "Bearer",
            not_before_policy: 0,
            session_state: None,
            scope: "profile \"x\"",
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"access_token":"a.b.c","expires_in":300,"refresh_expires_in":0,"token_type":"Bearer","not-before-policy":0,"scope":"profile \"x\""}"#
        );
        r.refresh_token = Some("d.e.f");
        r.refresh_expires_in = 1800;
        r.session_state = Some("s");
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"access_token":"a.b.c","expires_in":300,"refresh_expires_in":1800,"refresh_token":"d.e.f","token_type":"Bearer","not-before-policy":0,"session_state":"s","scope":"profile \"x\""}"#
        );
    }
}
