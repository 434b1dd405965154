//! The guard: normalised path → route → bearer token → roles. Decides; never writes.

pub mod bearer;
pub mod cache;
pub mod path;
pub mod route;

use crate::config::Snapshot;
use crate::http_util::{quote, Reply};
use crate::state::State;
use bearer::{Expect, Identity};
use route::Route;
use std::sync::Arc;

/// Why a request does not go upstream. Rendered by [`Denied::reply`] alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    BadPath(&'static str),
    NoRoute,
    MethodNotAllowed(String),
    NoToken { realm: String },
    InvalidToken { realm: String, reason: &'static str },
    InsufficientScope { realm: String, missing: String },
}

impl Denied {
    /// A short label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            Denied::BadPath(_) => "bad_path",
            Denied::NoRoute => "no_route",
            Denied::MethodNotAllowed(_) => "method_not_allowed",
            Denied::NoToken { .. } => "no_token",
            Denied::InvalidToken { .. } => "invalid_token",
            Denied::InsufficientScope { .. } => "insufficient_scope",
        }
    }

    /// The RFC 6750 answer.
    pub fn reply(&self) -> Reply {
        match self {
            Denied::BadPath(why) => Reply::error(400, "invalid_request", why),
            Denied::NoRoute => Reply::error(404, "not_found", "no route for this path"),
            Denied::MethodNotAllowed(allow) => {
                Reply::error(405, "method_not_allowed", "method not allowed on this route")
                    .header("allow", allow.clone())
            }
            Denied::NoToken { realm } => Reply::error(401, "unauthorized", "bearer token required")
                .header("www-authenticate", format!("Bearer realm={}", quote(realm))),
            Denied::InvalidToken { realm, reason } => Reply::error(401, "invalid_token", reason).header(
                "www-authenticate",
                format!(
                    "Bearer realm={}, error=\"invalid_token\", error_description={}",
                    quote(realm),
                    quote(reason)
                ),
            ),
            Denied::InsufficientScope { realm, missing } => Reply::error(
                403,
                "insufficient_scope",
                &format!("token lacks the role(s) this route requires: {missing}"),
            )
            .header(
                "www-authenticate",
                format!("Bearer realm={}, error=\"insufficient_scope\"", quote(realm)),
            ),
        }
    }
}

/// Where an allowed request goes, and on whose behalf.
#[derive(Debug)]
pub struct Allowed {
    pub route: Arc<Route>,
    pub identity: Option<Arc<Identity>>,
}

/// A request refused by the guard, with the route it matched (none for [`Denied::NoRoute`]),
/// so that denials are logged and counted by route like the requests that pass.
#[derive(Debug)]
pub struct Refused {
    pub route: Option<Arc<Route>>,
    pub denied: Denied,
}

/// Decide a request whose path is already normalised.
pub fn check(
    state: &State,
    snap: &Snapshot,
    method: &http::Method,
    path: &str,
    authorization: Option<&[u8]>,
    now: u64,
) -> Result<Allowed, Refused> {
    let Some(route) = snap.routes.find(path) else {
        return Err(Refused {
            route: None,
            denied: Denied::NoRoute,
        });
    };
    decide(state, snap, route, method, authorization, now).map_err(|denied| Refused {
        route: Some(route.clone()),
        denied,
    })
}

/// The route's verdict on a request.
fn decide(
    state: &State,
    snap: &Snapshot,
    route: &Arc<Route>,
    method: &http::Method,
    authorization: Option<&[u8]>,
    now: u64,
) -> Result<Allowed, Denied> {
    if !route.allows_method(method) {
        let allow = route
            .methods
            .iter()
            .flatten()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        return Err(Denied::MethodNotAllowed(allow));
    }
    if route.public {
        return Ok(Allowed {
            route: route.clone(),
            identity: None,
        });
    }
    let realm_name = &route.realm;
    let Some(realm) = snap.realm(realm_name) else {
        // Validation ties every route to a realm; refuse rather than trust a broken snapshot.
        return Err(Denied::NoRoute);
    };
    let invalid = |reason| Denied::InvalidToken {
        realm: realm_name.clone(),
        reason,
    };
    let credentials = match bearer::from_header(authorization) {
        None => {
            return Err(Denied::NoToken {
                realm: realm_name.clone(),
            })
        }
        Some(Err(reason)) => return Err(invalid(reason)),
        Some(Ok(t)) => t,
    };
    let identity = match state.token_cache.get(credentials, &realm.cache_tag) {
        Some(id) => {
            let leeway = realm.leeway.as_secs();
            if now > id.exp.saturating_add(leeway) {
                return Err(invalid("token expired"));
            }
            if id.nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
                return Err(invalid("token not yet valid"));
            }
            id
        }
        None => {
            let token = bearer::token_text(credentials).map_err(invalid)?;
            let id = Arc::new(bearer::verify(realm, token, now, Expect::Access).map_err(invalid)?);
            state
                .token_cache
                .insert(token, realm.cache_tag.clone(), id.clone(), now);
            id
        }
    };
    if state.store.is_revoked(&identity.jti) || (!identity.sid.is_empty() && state.store.is_revoked(&identity.sid)) {
        return Err(invalid("token revoked"));
    }
    if let Some(aud) = &route.audience {
        if !identity.audience.iter().any(|a| a == aud) {
            return Err(invalid("wrong audience"));
        }
    }
    let missing: Vec<&str> = route
        .roles
        .iter()
        .filter(|r| !identity.has_role(r))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(Denied::InsufficientScope {
            realm: realm_name.clone(),
            missing: missing.join(", "),
        });
    }
    if !route.any_roles.is_empty() && !route.any_roles.iter().any(|r| identity.has_role(r)) {
        return Err(Denied::InsufficientScope {
            realm: realm_name.clone(),
            missing: format!("one of {}", route.any_roles.join(", ")),
        });
    }
    Ok(Allowed {
        route: route.clone(),
        identity: Some(identity),
    })
}
