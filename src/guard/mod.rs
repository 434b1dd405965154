//! The guard: normalised path → route → bearer token → roles. Decides; never writes.

pub mod bearer;
pub mod cache;
pub mod cors;
pub mod policy;
pub mod ratelimit;

use crate::config::Snapshot;
use crate::http_util::{quote, Reply};
use crate::model::{Keys, Realm, Route};
use crate::outcome::Reason;
use crate::store::Store;
use crate::token::{self, Expect, Identity, KeySet, TokenError};
use cache::TokenCache;
use std::sync::Arc;

/// Why a request does not go upstream. Rendered by [`Denied::reply`] alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    BadPath(&'static str),
    NoRoute,
    MethodNotAllowed(String),
    NoToken {
        realm: String,
    },
    InvalidToken {
        realm: String,
        reason: TokenError,
    },
    InsufficientScope {
        realm: String,
        missing: String,
    },
    /// A remote realm's keys were never fetched, or are too old while its issuer fails.
    Unavailable {
        realm: String,
        retry_after: u64,
    },
    /// The token's `scope` lacks some of the route's `scopes` (all of which are named).
    MissingScope {
        realm: String,
        scopes: String,
    },
    /// A claim the route requires is missing or has another value.
    ClaimMismatch {
        realm: String,
        claim: String,
    },
    /// The client used up the route's rate limit.
    RateLimited {
        retry_after: u64,
    },
}

impl Denied {
    /// The label of logs and metrics.
    pub fn reason(&self) -> Reason {
        match self {
            Denied::BadPath(_) => Reason::BadPath,
            Denied::NoRoute => Reason::NoRoute,
            Denied::MethodNotAllowed(_) => Reason::MethodNotAllowed,
            Denied::NoToken { .. } => Reason::NoToken,
            Denied::InvalidToken { .. } => Reason::InvalidToken,
            Denied::InsufficientScope { .. } | Denied::MissingScope { .. } => Reason::InsufficientScope,
            Denied::Unavailable { .. } => Reason::KeysUnavailable,
            Denied::ClaimMismatch { .. } => Reason::Claim,
            Denied::RateLimited { .. } => Reason::RateLimited,
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
            Denied::InvalidToken { realm, reason } => Reply::error(401, "invalid_token", reason.description()).header(
                "www-authenticate",
                format!(
                    "Bearer realm={}, error=\"invalid_token\", error_description={}",
                    quote(realm),
                    quote(reason.description())
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
            Denied::Unavailable { realm, retry_after } => Reply::error(
                503,
                "temporarily_unavailable",
                &format!("the signing keys of realm {realm} cannot be fetched from its issuer now"),
            )
            .header("retry-after", retry_after.to_string()),
            Denied::MissingScope { realm, scopes } => Reply::error(
                403,
                "insufficient_scope",
                &format!("token lacks the scope(s) this route requires: {scopes}"),
            )
            .header(
                "www-authenticate",
                format!(
                    "Bearer realm={}, error=\"insufficient_scope\", scope={}",
                    quote(realm),
                    quote(scopes)
                ),
            ),
            Denied::ClaimMismatch { realm, claim } => Reply::error(
                403,
                "insufficient_scope",
                &format!("token's {claim} claim does not allow this route"),
            )
            .header(
                "www-authenticate",
                format!("Bearer realm={}, error=\"insufficient_scope\"", quote(realm)),
            ),
            Denied::RateLimited { retry_after } => {
                Reply::error(429, "rate_limited", "too many requests from this client on this route")
                    .header("retry-after", retry_after.to_string())
            }
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
    /// Set when the token names a `kid` its remote realm lacks and a refetch of the realm's
    /// keys is under way: the caller may wait for it (briefly) and decide again.
    pub refetch: Option<tokio::sync::watch::Receiver<u64>>,
}

impl From<Denied> for Refused {
    /// A refusal before any route was matched.
    fn from(denied: Denied) -> Refused {
        Refused {
            route: None,
            denied,
            refetch: None,
        }
    }
}

/// What the guard reads besides the snapshot: the verified-token cache, the revocations and
/// the rate-limit buckets.
#[derive(Clone, Copy)]
pub struct Tables<'a> {
    pub cache: &'a TokenCache,
    pub store: &'a dyn Store,
    pub limits: &'a ratelimit::RateLimits,
}

/// Decide a request whose path is already normalised.
pub fn check(
    t: Tables,
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
            refetch: None,
        });
    };
    let mut refetch = None;
    decide(t, snap, route, method, authorization, now, &mut refetch).map_err(|denied| Refused {
        route: Some(route.clone()),
        denied,
        refetch,
    })
}

/// The route's verdict on a request.
fn decide(
    t: Tables,
    snap: &Snapshot,
    route: &Arc<Route>,
    method: &http::Method,
    authorization: Option<&[u8]>,
    now: u64,
    refetch: &mut Option<Refetch>,
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
    let invalid = |reason| Denied::InvalidToken {
        realm: route.realm.clone(),
        reason,
    };
    let credentials = match bearer::from_header(authorization) {
        None => {
            return Err(Denied::NoToken {
                realm: route.realm.clone(),
            })
        }
        Some(Err(reason)) => return Err(invalid(reason)),
        Some(Ok(t)) => t,
    };
    let identity = match cached(t.cache, snap, route, credentials, now, refetch)? {
        Some(id) => id,
        None => verify_fresh(t.cache, snap, route, credentials, now, refetch)?,
    };
    let realm_of = |reason| Denied::InvalidToken {
        realm: identity.realm.clone(),
        reason,
    };
    if crate::store::token_revoked(t.store, &identity.jti, &identity.sid) {
        return Err(realm_of(TokenError::Revoked));
    }
    if let Some(aud) = &route.audience {
        if !identity.audience.iter().any(|a| a == aud) {
            return Err(realm_of(TokenError::WrongAudience));
        }
    }
    roles(route, &identity)?;
    if let Some(p) = &route.policy {
        policy::check(p, &identity)?;
        if let Some(rate) = p.rate_limit {
            t.limits
                .take(&route.prefix, &identity.client_id, rate, std::time::Instant::now())
                .map_err(|retry_after| Denied::RateLimited { retry_after })?;
        }
    }
    Ok(Allowed {
        route: route.clone(),
        identity: Some(identity),
    })
}

fn roles(route: &Route, identity: &Identity) -> Result<(), Denied> {
    let missing: Vec<&str> = route
        .roles
        .iter()
        .filter(|r| !identity.has_role(r))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return Err(Denied::InsufficientScope {
            realm: identity.realm.clone(),
            missing: missing.join(", "),
        });
    }
    if !route.any_roles.is_empty() && !route.any_roles.iter().any(|r| identity.has_role(r)) {
        return Err(Denied::InsufficientScope {
            realm: identity.realm.clone(),
            missing: format!("one of {}", route.any_roles.join(", ")),
        });
    }
    Ok(())
}

/// The keys `realm` verifies with now, or why there are none (and, while its first fetch is
/// under way, what to wait on for it).
fn keys_of<'r>(realm: &'r Realm, now: u64, wait: &mut Option<Refetch>) -> Result<KeysNow<'r>, Denied> {
    match &realm.keys {
        Keys::Local { verify, .. } => Ok(KeysNow::Borrowed(verify)),
        Keys::File(set) => Ok(KeysNow::Borrowed(set)),
        Keys::Fetched { settings, live } => match live.usable(now, settings.max_stale) {
            Ok(fetched) => Ok(KeysNow::Fetched(fetched)),
            Err(u) => {
                *wait = live.first_fetch();
                Err(Denied::Unavailable {
                    realm: realm.name.clone(),
                    retry_after: u.retry_after,
                })
            }
        },
    }
}

type Refetch = tokio::sync::watch::Receiver<u64>;

enum KeysNow<'r> {
    Borrowed(&'r KeySet),
    Fetched(Arc<token::live::Fetched>),
}

impl KeysNow<'_> {
    fn set(&self) -> &KeySet {
        match self {
            KeysNow::Borrowed(s) => s,
            KeysNow::Fetched(f) => &f.keys,
        }
    }
}

/// A verification the cache holds for `credentials`, if it still stands: the same realm rules,
/// the key that verified it still published under its kid, and still within its lifetime.
fn cached(
    cache: &TokenCache,
    snap: &Snapshot,
    route: &Route,
    credentials: &[u8],
    now: u64,
    wait: &mut Option<Refetch>,
) -> Result<Option<Arc<Identity>>, Denied> {
    let Some(hit) = cache.get(credentials) else {
        return Ok(None);
    };
    let id = hit.identity;
    let realm = match snap.realm(&id.realm) {
        Some(r) if r.verify_tag == hit.realm_tag && route.realms.contains(&r.name) => r,
        _ => return Ok(None),
    };
    if !keys_of(realm, now, wait)?.set().still(&hit.kid, hit.key_fingerprint) {
        return Ok(None);
    }
    let leeway = realm.leeway.as_secs();
    let invalid = |reason| Denied::InvalidToken {
        realm: realm.name.clone(),
        reason,
    };
    if now > id.exp.saturating_add(leeway) {
        return Err(invalid(TokenError::Expired));
    }
    if id.nbf.is_some_and(|nbf| nbf > now.saturating_add(leeway)) {
        return Err(invalid(TokenError::NotYetValid));
    }
    Ok(Some(id))
}

/// Verifies a token the cache does not hold against the realm its `iss` picks, and caches it.
fn verify_fresh(
    cache: &TokenCache,
    snap: &Snapshot,
    route: &Route,
    credentials: &[u8],
    now: u64,
    refetch: &mut Option<Refetch>,
) -> Result<Arc<Identity>, Denied> {
    let invalid = |realm: &str, reason| Denied::InvalidToken {
        realm: realm.to_string(),
        reason,
    };
    let token = bearer::token_text(credentials).map_err(|r| invalid(&route.realm, r))?;
    let realm = pick_realm(snap, route, token).ok_or_else(|| invalid(&route.realm, TokenError::WrongIssuer))?;
    let keys = keys_of(realm, now, refetch)?;
    match token::verify(keys.set(), &realm.rules(), token, now, Expect::Access) {
        Ok(v) => {
            let id = Arc::new(v.identity);
            cache.insert(token, realm.verify_tag, &v.key, id.clone(), now);
            Ok(id)
        }
        Err(TokenError::UnknownKid) => {
            if let (Some(live), Some(kid)) = (realm.live(), token::verify::peek_kid(token)) {
                *refetch = live.refetch_for(&kid);
            }
            Err(invalid(&realm.name, TokenError::UnknownKid))
        }
        Err(reason) => Err(invalid(&realm.name, reason)),
    }
}

/// The realm whose tokens `token` claims to be: the route's only realm, or among several the
/// one whose issuer is the token's `iss`.
fn pick_realm<'s>(snap: &'s Snapshot, route: &Route, token: &str) -> Option<&'s Arc<Realm>> {
    if let [only] = route.realms.as_slice() {
        return snap.realm(only);
    }
    let iss = token::verify::peek_issuer(token)?;
    route
        .realms
        .iter()
        .filter_map(|r| snap.realm(r))
        .find(|r| r.issuer == iss)
}

#[cfg(test)]
mod tests;
