//! A route's policy beyond roles (`scopes`, `claims`, `claim_headers`, `rate_limit`, `cors`),
//! checked and built.

use super::file::{ClaimFile, CorsFile, RouteFile};
use super::Checker;
use crate::model::{ClaimPath, Cors, Policy, Rate};
use std::time::Duration;

/// Header names a claim header may not take: hop-by-hop fields, the identity headers and the
/// fields that frame, route or authenticate the request.
const RESERVED: [&str; 15] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "authorization",
    "content-length",
    "content-type",
    "cookie",
    "forwarded",
];

pub(super) fn build(c: &mut Checker, key: &str, rf: &RouteFile) -> Option<Box<Policy>> {
    let has_token_policy =
        !rf.scopes.is_empty() || !rf.claims.is_empty() || !rf.claim_headers.is_empty() || rf.rate_limit.is_some();
    if rf.public && has_token_policy {
        c.problem(
            key,
            "a public route checks no token, so it cannot have scopes, claims, claim_headers or rate_limit",
        );
    }
    if !has_token_policy && rf.cors.is_none() {
        return None;
    }
    for s in &rf.scopes {
        if s.is_empty()
            || s.chars()
                .any(|ch| ch == ' ' || ch == '"' || ch == '\\' || !(' '..='~').contains(&ch))
        {
            c.problem(
                format!("{key}.scopes"),
                format!("{s:?} is not a scope token (RFC 6749 §3.3)"),
            );
        }
    }
    let claims = rf
        .claims
        .iter()
        .map(|(name, v)| {
            if name.is_empty() || name.split('.').any(str::is_empty) {
                c.problem(format!("{key}.claims"), format!("{name:?} is not a claim name"));
            }
            let values = match v {
                ClaimFile::One(s) => vec![s.clone()],
                ClaimFile::Any(list) if list.is_empty() => {
                    c.problem(format!("{key}.claims.{name}"), "an empty list matches nothing");
                    Vec::new()
                }
                ClaimFile::Any(list) => list.clone(),
            };
            (ClaimPath::new(name), values)
        })
        .collect();
    let claim_headers = claim_headers(c, key, rf);
    let rate_limit = rf.rate_limit.as_deref().and_then(|r| match parse_rate(r) {
        Ok(rate) => Some(rate),
        Err(why) => {
            c.problem(format!("{key}.rate_limit"), why);
            None
        }
    });
    let cors = rf.cors.as_ref().map(|cf| cors(c, key, rf, cf));
    Some(Box::new(Policy {
        scopes: rf.scopes.clone(),
        claims,
        claim_headers,
        rate_limit,
        cors,
    }))
}

fn claim_headers(c: &mut Checker, key: &str, rf: &RouteFile) -> Vec<(http::HeaderName, ClaimPath)> {
    let mut out = Vec::new();
    for (name, claim) in &rf.claim_headers {
        let at = format!("{key}.claim_headers");
        let Ok(header) = http::HeaderName::from_bytes(name.as_bytes()) else {
            c.problem(&at, format!("{name:?} is not a header name"));
            continue;
        };
        let lower = header.as_str();
        let identity = crate::token::IDENTITY_HEADERS.iter().any(|h| h.as_str() == lower);
        if identity || RESERVED.contains(&lower) || lower.starts_with("x-forwarded-") || lower.contains('_') {
            c.problem(
                &at,
                format!("{name:?} would shadow a hop-by-hop, identity or request-framing header; pick another name"),
            );
            continue;
        }
        if claim.is_empty() {
            c.problem(&at, format!("{name:?} names no claim"));
            continue;
        }
        out.push((header, ClaimPath::new(claim)));
    }
    out
}

/// "N/s" or "N/m", N ≥ 1.
pub fn parse_rate(s: &str) -> Result<Rate, String> {
    let bad = || format!("{s:?} is not a rate like \"100/s\" or \"600/m\"");
    let (n, unit) = s.trim().split_once('/').ok_or_else(bad)?;
    let per: u32 = n.trim().parse().map_err(|_| bad())?;
    let period = match unit.trim() {
        "s" => Duration::from_secs(1),
        "m" => Duration::from_secs(60),
        _ => return Err(bad()),
    };
    if per == 0 {
        return Err(format!(
            "{s:?}: a rate of zero refuses everything; remove the route instead"
        ));
    }
    Ok(Rate { per, period })
}

fn cors(c: &mut Checker, key: &str, rf: &RouteFile, cf: &CorsFile) -> Cors {
    let at = |k: &str| format!("{key}.cors.{k}");
    let credentials = cf.credentials.unwrap_or(false);
    let any = cf.origins.iter().any(|o| o == "*");
    if cf.origins.is_empty() {
        c.problem(at("origins"), "must list at least one origin");
    }
    if any && credentials {
        c.problem(
            at("origins"),
            "\"*\" with credentials = true would let any site make credentialed calls; list the origins",
        );
    }
    let mut origins = Vec::new();
    for o in cf.origins.iter().filter(|o| *o != "*") {
        let ok = o.split_once("://").is_some_and(|(scheme, host)| {
            matches!(scheme, "http" | "https") && !host.is_empty() && !host.contains('/')
        });
        if !ok {
            c.problem(
                at("origins"),
                format!("{o:?} is not an origin like \"https://app.example.com\" (no path)"),
            );
        }
        origins.push(o.to_ascii_lowercase());
    }
    let methods = match (&cf.methods, &rf.methods) {
        (Some(list), _) | (None, Some(list)) => {
            for m in list {
                if http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()).is_err() {
                    c.problem(at("methods"), format!("{m:?} is not an HTTP method"));
                }
            }
            list.iter()
                .map(|m| m.to_ascii_uppercase())
                .collect::<Vec<_>>()
                .join(", ")
        }
        (None, None) => "GET, HEAD, POST".to_string(),
    };
    let headers = match &cf.headers {
        Some(list) => {
            for h in list {
                if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                    c.problem(at("headers"), format!("{h:?} is not a header name"));
                }
            }
            list.join(", ")
        }
        None => "Authorization, Content-Type".to_string(),
    };
    let max_age = c.duration(&at("max_age"), cf.max_age.as_deref(), Duration::from_secs(300));
    Cors {
        origins,
        any,
        methods,
        headers,
        max_age,
        credentials,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates() {
        assert_eq!(
            parse_rate("100/s").unwrap(),
            Rate {
                per: 100,
                period: Duration::from_secs(1)
            }
        );
        assert_eq!(parse_rate(" 600 / m ").unwrap().period, Duration::from_secs(60));
        for bad in ["", "100", "0/s", "x/s", "10/h", "-1/s", "1.5/s"] {
            assert!(parse_rate(bad).is_err(), "{bad:?}");
        }
    }
}
