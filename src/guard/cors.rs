//! CORS for routes that set `cors`: preflights answered here (no token, never upstream), and
//! the headers an allowed origin's responses carry (Fetch standard, CORS protocol).

use crate::http_util::Reply;
use crate::model::Route;
use http::HeaderMap;

/// What a response to an allowed origin must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    pub origin: String,
    pub credentials: bool,
}

/// The CORS answer for `origin` on `route`, if the route has CORS and the origin is allowed.
pub fn allow(route: &Route, headers: &HeaderMap) -> Option<Allow> {
    let cors = route.policy.as_ref()?.cors.as_ref()?;
    let origin = headers.get(http::header::ORIGIN)?.to_str().ok()?;
    Some(Allow {
        origin: cors.allow(origin)?,
        credentials: cors.credentials,
    })
}

/// The local answer to a preflight (`OPTIONS` with `Origin` and
/// `Access-Control-Request-Method`) on a route with CORS: 204 with the allowed methods and
/// headers for an allowed origin, 403 without any CORS header for another.
pub fn preflight(route: &Route, method: &http::Method, headers: &HeaderMap) -> Option<Reply> {
    let cors = route.policy.as_ref()?.cors.as_ref()?;
    if method != http::Method::OPTIONS
        || !headers.contains_key(http::header::ORIGIN)
        || !headers.contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return None;
    }
    let vary = "Origin, Access-Control-Request-Method, Access-Control-Request-Headers";
    let Some(allowed) = allow(route, headers) else {
        return Some(
            Reply::error(403, "cors_origin_not_allowed", "this origin may not call this route").header("vary", vary),
        );
    };
    let mut reply = Reply::empty(204)
        .header("access-control-allow-origin", allowed.origin)
        .header("access-control-allow-methods", cors.methods.clone())
        .header("access-control-allow-headers", cors.headers.clone())
        .header("access-control-max-age", cors.max_age.as_secs().to_string())
        .header("vary", vary);
    if cors.credentials {
        reply = reply.header("access-control-allow-credentials", "true");
    }
    Some(reply)
}

/// Adds an allowed origin's headers to a local reply.
pub fn decorate(reply: Reply, allow: Option<&Allow>) -> Reply {
    let Some(a) = allow else { return reply };
    let reply = reply
        .header("access-control-allow-origin", a.origin.clone())
        .header("vary", "Origin");
    if a.credentials {
        reply.header("access-control-allow-credentials", "true")
    } else {
        reply
    }
}
