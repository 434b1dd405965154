//! `[[routes]]` into [`Route`]s: prefixes normalised, realms and roles checked, upstreams resolved.

use super::file::{FileConfig, RealmFile, RouteFile};
use super::Checker;
use crate::model::{Route, Upstream};

/// Builds the route at `key`, or records its problems.
pub(super) fn build(
    c: &mut Checker,
    key: &str,
    rf: &RouteFile,
    f: &FileConfig,
    default_realm: Option<&str>,
) -> Option<Route> {
    let before = c.problems.len();
    let prefix = prefix(c, key, rf);
    let methods = methods(c, key, rf);
    let realms = realms(c, key, rf, f, default_realm);
    check_roles(c, key, rf, &realms, f);
    if rf.public && (!rf.roles.is_empty() || !rf.any_roles.is_empty() || rf.audience.is_some()) {
        c.problem(key, "a public route cannot also require roles or an audience");
    }
    let upstream = match parse_upstream(&rf.upstream).and_then(resolve) {
        Ok(u) => Some(u),
        Err(reason) => {
            c.problem(format!("{key}.upstream"), reason);
            None
        }
    };
    let (connect_timeout, read_timeout) = c.timeouts(key, rf.connect_timeout.as_deref(), rf.read_timeout.as_deref());
    let policy = super::policy::build(c, key, rf);
    if c.problems.len() > before {
        return None;
    }
    let upstream = upstream?;
    Some(Route {
        prefix: prefix.into(),
        methods,
        realm: realms.first().cloned().unwrap_or_default(),
        realms,
        roles: rf.roles.clone(),
        any_roles: rf.any_roles.clone(),
        audience: rf.audience.clone(),
        public: rf.public,
        upstream,
        forward_token: rf.forward_token.unwrap_or(true),
        connect_timeout,
        read_timeout,
        policy,
    })
}

/// The route's prefix, which must already be a normalised absolute path.
fn prefix(c: &mut Checker, key: &str, rf: &RouteFile) -> String {
    let trimmed = if rf.prefix.len() > 1 {
        rf.prefix.trim_end_matches('/')
    } else {
        rf.prefix.as_str()
    };
    match crate::path::normalise(trimmed) {
        Ok(p) if trimmed.starts_with('/') && p == trimmed => p,
        _ => {
            c.problem(
                format!("{key}.prefix"),
                format!(
                    "{:?} must be a normalised absolute path like \"/api/orders\"",
                    rf.prefix
                ),
            );
            String::new()
        }
    }
}

fn methods(c: &mut Checker, key: &str, rf: &RouteFile) -> Option<Vec<http::Method>> {
    rf.methods.as_ref().map(|list| {
        list.iter()
            .filter_map(|m| match http::Method::from_bytes(m.to_ascii_uppercase().as_bytes()) {
                Ok(m) => Some(m),
                Err(_) => {
                    c.problem(format!("{key}.methods"), format!("{m:?} is not an HTTP method"));
                    None
                }
            })
            .collect::<Vec<_>>()
    })
}

/// The realms whose tokens the route takes: `realm`, `realms` or the default realm.
fn realms(c: &mut Checker, key: &str, rf: &RouteFile, f: &FileConfig, default_realm: Option<&str>) -> Vec<String> {
    let realms: Vec<String> = match (&rf.realm, &rf.realms) {
        (Some(_), Some(_)) => {
            c.problem(format!("{key}.realms"), "set `realm` or `realms`, not both");
            Vec::new()
        }
        (_, Some(list)) if list.is_empty() => {
            c.problem(format!("{key}.realms"), "must name at least one realm");
            Vec::new()
        }
        (_, Some(list)) => list.clone(),
        (Some(r), None) => vec![r.clone()],
        (None, None) => match default_realm {
            Some(r) => vec![r.to_string()],
            // A public route checks no token, so it needs no realm.
            None if rf.public => Vec::new(),
            None => {
                c.problem(format!("{key}.realm"), "required (there is no server.default_realm)");
                Vec::new()
            }
        },
    };
    let field = if rf.realms.is_some() { "realms" } else { "realm" };
    for (i, realm) in realms.iter().enumerate() {
        if realms[..i].contains(realm) {
            c.problem(format!("{key}.realms"), format!("{realm:?} is listed twice"));
        }
        if !f.realms.contains_key(realm) {
            c.problem(format!("{key}.{field}"), format!("no realm named {realm:?}"));
        }
    }
    realms
}

/// The route's roles checked against those its realms declare: each must be a role of at least
/// one of them (with several realms, a token of any one may carry it). A remote realm (no
/// signing keys) that declares no roles accepts any: its issuer decides which exist.
fn check_roles(c: &mut Checker, key: &str, rf: &RouteFile, realms: &[String], f: &FileConfig) {
    let files: Vec<&RealmFile> = realms.iter().filter_map(|r| f.realms.get(r)).collect();
    if files
        .iter()
        .any(|r| r.signing_keys.is_empty() && r.roles.is_empty() && r.client_roles.is_empty())
    {
        return;
    }
    for (field, list) in [("roles", &rf.roles), ("any_roles", &rf.any_roles)] {
        for r in list {
            let declared = |rfile: &&RealmFile| match r.split_once(':') {
                None => rfile.roles.contains(r),
                Some((client, role)) => rfile
                    .client_roles
                    .get(client)
                    .is_none_or(|declared| declared.iter().any(|d| d == role)),
            };
            if !files.iter().any(declared) {
                let names = realms.iter().map(|r| format!("{r:?}")).collect::<Vec<_>>().join(" or ");
                c.problem(
                    format!("{key}.{field}"),
                    format!("{r:?} is not a role of realm {names}"),
                );
                continue;
            }
            if let Some((client, _)) = r.split_once(':') {
                if files.iter().all(|rfile| !rfile.client_roles.contains_key(client)) {
                    c.warnings.push(format!("{key}.{field}: client role {r:?} names client {client:?}, which declares no roles in client_roles; accepted as is"));
                }
            }
        }
    }
}

/// The parts of an `upstream` value: (authority, tls, host for SNI).
/// An upstream's scheme: whether it is TLS, whether it was written, and the rest of `s`.
pub(super) fn split_scheme(s: &str) -> Result<(bool, bool, &str), String> {
    match s.split_once("://") {
        None => Ok((false, false, s)),
        Some(("https", rest)) => Ok((true, true, rest)),
        Some(("http", rest)) => Ok((false, true, rest)),
        Some((scheme, _)) => Err(format!("scheme {scheme:?} is not http or https")),
    }
}

fn parse_upstream(s: &str) -> Result<(String, bool, String), String> {
    let (tls, _, rest) = split_scheme(s)?;
    let rest = rest.trim_end_matches('/');
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| format!("{s:?} needs a port, like \"127.0.0.1:9000\""))?;
    let port: u16 = port.parse().map_err(|_| format!("{s:?}: {port:?} is not a port"))?;
    if host.is_empty() || rest.contains('/') {
        return Err(format!("{s:?} is not host:port"));
    }
    let sni = host.trim_start_matches('[').trim_end_matches(']').to_string();
    Ok((format!("{host}:{port}"), tls, sni))
}

fn resolve((authority, tls, sni): (String, bool, String)) -> Result<Upstream, String> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<std::net::SocketAddr> = authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority:?}: {e}"))?
        .collect();
    // IPv4 first, as Envoy's V4_PREFERRED: `localhost` should mean 127.0.0.1 where both exist.
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{authority:?} resolves to no address"))?;
    Ok(Upstream {
        addr,
        authority,
        tls,
        sni,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_forms() {
        let u = parse_upstream("127.0.0.1:9000").and_then(resolve).unwrap();
        assert_eq!((u.addr.to_string().as_str(), u.tls), ("127.0.0.1:9000", false));
        let (authority, tls, sni) = parse_upstream("https://api.internal:8443").unwrap();
        assert_eq!(
            (authority.as_str(), tls, sni.as_str()),
            ("api.internal:8443", true, "api.internal")
        );
        assert!(parse_upstream("ftp://x:1").is_err());
        assert!(parse_upstream("nohost").is_err());
        assert!(parse_upstream("h:notaport").is_err());
    }
}
