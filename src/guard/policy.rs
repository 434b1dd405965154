//! A route's policy beyond roles, decided on a verified identity (cached or fresh alike):
//! scopes, claims, and the values of its claim headers.

use super::Denied;
use crate::model::{ClaimPath, Policy};
use crate::token::Identity;
use http::{HeaderName, HeaderValue};
use serde_json::Value;
use std::borrow::Cow;

/// Scopes first (RFC 6750 names the missing ones), then each claim.
pub fn check(policy: &Policy, id: &Identity) -> Result<(), Denied> {
    if !policy.scopes.is_empty() {
        let held = |s: &str| id.scope.split(' ').any(|h| h == s);
        if policy.scopes.iter().any(|s| !held(s)) {
            return Err(Denied::MissingScope {
                realm: id.realm.clone(),
                scopes: policy.scopes.join(" "),
            });
        }
    }
    for (path, wanted) in &policy.claims {
        let ok = lookup(&id.claims, path).is_some_and(|v| matches(v, wanted));
        if !ok {
            return Err(Denied::ClaimMismatch {
                realm: id.realm.clone(),
                claim: path.name.clone(),
            });
        }
    }
    Ok(())
}

/// The claim at `path`: a top-level claim of the whole dotted name first (URL-shaped claim
/// names hold dots), else the path through nested objects.
pub fn lookup<'v>(claims: &'v Value, path: &ClaimPath) -> Option<&'v Value> {
    if path.parts.len() > 1 {
        if let Some(v) = claims.get(&path.name) {
            return Some(v);
        }
    }
    path.parts.iter().try_fold(claims, |v, part| v.get(part))
}

/// A string, number or boolean claim as text (a string borrowed); nothing else is.
fn text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        _ => None,
    }
}

/// A claim equal to one of `wanted`, or a list claim holding one of them.
fn matches(v: &Value, wanted: &[String]) -> bool {
    let one = |v: &Value| text(v).is_some_and(|t| wanted.iter().any(|w| *w == t));
    match v {
        Value::Array(items) => items.iter().any(one),
        other => one(other),
    }
}

/// The claim headers' values for `id`: text for strings and numbers, lists comma-joined; a
/// header whose claim is missing, or cannot be a header value, is left out.
pub fn claim_headers(policy: &Policy, id: &Identity) -> Vec<(HeaderName, HeaderValue)> {
    policy
        .claim_headers
        .iter()
        .filter_map(|(name, path)| {
            let v = lookup(&id.claims, path)?;
            let rendered = match v {
                Value::Array(items) => {
                    let parts: Vec<Cow<str>> = items.iter().filter_map(text).collect();
                    Cow::Owned((!parts.is_empty()).then(|| parts.join(","))?)
                }
                other => text(other)?,
            };
            Some((name.clone(), HeaderValue::from_str(&rendered).ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn id(claims: Value) -> Identity {
        Identity {
            realm: "r".into(),
            subject: String::new(),
            client_id: "c".into(),
            roles: vec![],
            scope: claims["scope"].as_str().unwrap_or("").into(),
            audience: vec![],
            jti: String::new(),
            sid: String::new(),
            exp: 0,
            iat: 0,
            nbf: None,
            typ: String::new(),
            headers: None,
            claims,
        }
    }

    fn policy(scopes: &[&str], claims: &[(&str, &[&str])]) -> Policy {
        Policy {
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            claims: claims
                .iter()
                .map(|(k, v)| (ClaimPath::new(k), v.iter().map(|s| s.to_string()).collect()))
                .collect(),
            ..Policy::default()
        }
    }

    #[test]
    fn scopes_and_claims() {
        let token = id(
            json!({"scope": "orders:read profile", "tenant": "acme", "tier": 3, "groups": ["a", "b"],
                              "org": {"id": "o1"}, "https://x.example/team": "red"}),
        );
        assert!(check(&policy(&["orders:read"], &[]), &token).is_ok());
        assert_eq!(
            check(&policy(&["orders:read", "orders:write"], &[]), &token),
            Err(Denied::MissingScope {
                realm: "r".into(),
                scopes: "orders:read orders:write".into()
            })
        );
        for (claim, values, ok) in [
            ("tenant", &["acme"][..], true),
            ("tenant", &["other", "acme"][..], true),
            ("tenant", &["other"][..], false),
            ("tier", &["3"][..], true),
            ("groups", &["b"][..], true),
            ("groups", &["c"][..], false),
            ("org.id", &["o1"][..], true),
            ("https://x.example/team", &["red"][..], true),
            ("missing", &["x"][..], false),
            ("org", &["o1"][..], false),
        ] {
            let r = check(&policy(&[], &[(claim, values)]), &token);
            assert_eq!(r.is_ok(), ok, "{claim} {values:?}");
        }
    }

    #[test]
    fn claim_headers_render_text_and_lists() {
        let token = id(json!({"tenant": "acme", "tier": 3, "groups": ["a", "b"], "bad": "x\ny", "obj": {}}));
        let mut p = Policy::default();
        for (h, c) in [
            ("x-tenant", "tenant"),
            ("x-tier", "tier"),
            ("x-groups", "groups"),
            ("x-bad", "bad"),
            ("x-obj", "obj"),
            ("x-none", "none"),
        ] {
            p.claim_headers.push((HeaderName::from_static(h), ClaimPath::new(c)));
        }
        let got: Vec<(String, String)> = claim_headers(&p, &token)
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        assert_eq!(
            got,
            [
                ("x-tenant".into(), "acme".into()),
                ("x-tier".into(), "3".into()),
                ("x-groups".into(), "a,b".into())
            ]
        );
    }
}
