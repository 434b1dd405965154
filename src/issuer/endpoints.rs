//! The realm's HTTP endpoints: token, JWKS, discovery, introspection, revocation.
//! Each takes a read request and returns a [`Reply`]; none touches the network itself.

use super::client_auth;
use super::form::{self, Form};
use super::grant;
use super::oauth_error::OAuthError;
use crate::config::{Realm, Snapshot};
use crate::http_util::Reply;
use crate::state::State;
use crate::store::Refused;
use crate::token::Expect;
use serde_json::json;

/// A local request, read in full.
pub struct Request<'a> {
    pub authorization: Option<&'a [u8]>,
    pub body: &'a [u8],
    pub peer: &'a str,
    pub now: u64,
}

fn parse_form(body: &[u8]) -> Result<Form, OAuthError> {
    form::parse(body).map_err(|e| OAuthError::InvalidRequest(e.describe()))
}

pub async fn token(state: &State, snap: &Snapshot, realm: &Realm, req: &Request<'_>) -> Result<Reply, OAuthError> {
    let form = parse_form(req.body)?;
    let grant_type = form
        .get("grant_type")
        .ok_or_else(|| OAuthError::InvalidRequest("Missing form parameter: grant_type".into()))?;
    if grant_type != "client_credentials" && grant_type != "refresh_token" {
        return Err(OAuthError::UnsupportedGrantType(grant_type.to_string()));
    }
    let client = client_auth::authenticate(state, snap, realm, req, &form).await?;
    let body = match grant_type {
        "client_credentials" => grant::client_credentials(realm, client, &form, req.peer, req.now)?,
        _ => grant::refresh_token(state, realm, client, &form, req.peer, req.now)?,
    };
    let labels = crate::metrics::Issued {
        realm: realm.name.clone(),
        client: client.id.clone(),
        grant: grant_type.to_string(),
    };
    state.metrics.tokens_issued.get_or_create(&labels).inc();
    Ok(Reply::json(200, body).no_store())
}

pub fn jwks(realm: &Realm) -> Reply {
    Reply::json(200, realm.jwks_json.clone()).header("cache-control", "max-age=60")
}

pub fn discovery(realm: &Realm) -> Reply {
    let doc = realm.discovery_json.get_or_init(|| discovery_doc(realm));
    Reply::json(200, doc.clone()).header("cache-control", "max-age=60")
}

/// OpenID Connect Discovery 1.0 metadata; depends only on the realm's config.
fn discovery_doc(realm: &Realm) -> bytes::Bytes {
    let base = format!("{}/protocol/openid-connect", realm.issuer);
    let mut algs: Vec<&str> = super::own_keys(realm)
        .iter()
        .map(|k| crate::token::keys::alg_name(k.alg))
        .collect();
    algs.sort();
    algs.dedup();
    let doc = json!({
        "issuer": realm.issuer,
        "token_endpoint": format!("{base}/token"),
        "jwks_uri": format!("{base}/certs"),
        "introspection_endpoint": format!("{base}/token/introspect"),
        "revocation_endpoint": format!("{base}/revoke"),
        "grant_types_supported": ["client_credentials", "refresh_token"],
        "response_types_supported": [],
        "subject_types_supported": ["public"],
        "scopes_supported": ["openid", "profile", "email"],
        "id_token_signing_alg_values_supported": algs,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "client_secret_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA", "HS256", "HS384", "HS512"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "client_secret_jwt"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post", "private_key_jwt", "client_secret_jwt"],
        "claims_supported": ["aud", "sub", "iss", "exp", "iat", "jti", "azp", "scope", "client_id", "preferred_username", "realm_access", "resource_access"],
    });
    bytes::Bytes::from(doc.to_string())
}

/// RFC 7662: anything that is not a live token of this realm is `{"active": false}`.
pub async fn introspect(state: &State, snap: &Snapshot, realm: &Realm, req: &Request<'_>) -> Result<Reply, OAuthError> {
    let form = parse_form(req.body)?;
    client_auth::authenticate(state, snap, realm, req, &form).await?;
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::InvalidRequest("Missing form parameter: token".into()))?;
    let inactive = || Ok(Reply::json(200, r#"{"active":false}"#).no_store());
    let Ok(id) = super::verify_own(realm, token, req.now, Expect::Either) else {
        return inactive();
    };
    if crate::store::token_revoked(&*state.store, &id.jti, &id.sid) {
        return inactive();
    }
    let mut body = json!({
        "active": true,
        "scope": id.scope,
        "client_id": id.client_id,
        "username": format!("service-account-{}", id.client_id),
        "token_type": id.typ,
        "exp": id.exp,
        "iat": id.iat,
        "sub": id.subject,
        "aud": id.audience,
        "iss": realm.issuer,
        "jti": id.jti,
        "azp": id.client_id,
    });
    if let Some(nbf) = id.nbf {
        body["nbf"] = json!(nbf);
    }
    Ok(Reply::json(200, body.to_string()).no_store())
}

/// RFC 7009: 200 whether or not anything was revoked, so a client learns nothing about tokens
/// that are not its own. Revoking a refresh token ends its whole grant chain.
///
/// A revocation that cannot be stored (the client's quota, or the whole table, is full of live
/// revocations; the shared store cannot be reached) is 503: no other client's revocation is
/// ever dropped to make room, and nothing is acknowledged that was not stored.
pub async fn revoke(state: &State, snap: &Snapshot, realm: &Realm, req: &Request<'_>) -> Result<Reply, OAuthError> {
    let form = parse_form(req.body)?;
    let client = client_auth::authenticate(state, snap, realm, req, &form).await?;
    let token = form
        .get("token")
        .ok_or_else(|| OAuthError::InvalidRequest("Missing form parameter: token".into()))?;
    if let Ok(id) = super::verify_own(realm, token, req.now, Expect::Either) {
        if id.client_id == client.id {
            let owner = format!("{}\0{}", realm.name, client.id);
            let until = id.exp + realm.leeway.as_secs();
            let mut ids = vec![id.jti.as_str()];
            if id.typ == "Refresh" && !id.sid.is_empty() {
                ids.push(&id.sid);
            }
            state
                .store
                .revoke(&owner, &ids, until, req.now)
                .await
                .map_err(|refused| match refused {
                    Refused::Full => OAuthError::TemporarilyUnavailable {
                        description: "too many live revocations are held; retry later",
                        retry_after: 60,
                    },
                    Refused::Down => OAuthError::TemporarilyUnavailable {
                        description: "revocations cannot be stored now; retry later",
                        retry_after: 1,
                    },
                })?;
            state.token_cache.remove_matching(&|x| ids.contains(&x));
        }
    }
    Ok(Reply::empty(200).no_store())
}
