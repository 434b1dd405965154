//! `[egress]` and `[[egress.routes]]`: the serde mirror of the file, and the validated
//! [`Egress`] model built from it (listener, routes, upstreams; token sources in `source`).

mod source;

use super::file::RealmFile;
use super::{Checker, Realm};
use crate::model::egress::{Egress, EgressRoute, EgressUpstream};
use crate::secret::Secret;
use arc_swap::ArcSwapOption;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

/// `[egress]`: the app's outbound calls, sent in plain HTTP to tollgate on loopback.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressFile {
    /// Required: a loopback address, since whoever reaches it makes calls with this tollgate's
    /// tokens. Read once at start.
    pub listen: Option<String>,
    /// None: every outbound call is 404 (closed by default).
    #[serde(default)]
    pub routes: Vec<EgressRouteFile>,
}

/// One `[[egress.routes]]` entry: where calls go and where their token comes from.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EgressRouteFile {
    /// Matched with the request's Host, or an absolute-form target's authority. Default: any
    /// host (a route naming the host wins over one that does not).
    pub host: Option<String>,
    /// Path prefix on segment boundaries after normalisation. Default "/"; longest wins.
    pub prefix: Option<String>,
    /// "http://host[:port]", "https://host[:port]" or "host:port".
    pub upstream: String,
    /// A realm served by this tollgate: tokens minted in process, no secret needed.
    pub realm: Option<String>,
    /// With `realm`: the client the tokens are for.
    pub client: Option<String>,
    /// Scopes asked for. Default: the client's default scopes only.
    pub scope: Option<String>,
    /// Instead of `realm`: any OAuth 2.0 token endpoint (client-credentials grant).
    pub token_endpoint: Option<String>,
    pub client_id: Option<String>,
    /// Plaintext in the config (warned at load); prefer `client_secret_file`.
    pub client_secret: Option<FileSecret>,
    /// A file holding the client secret (a trailing newline is ignored); watched like the config.
    pub client_secret_file: Option<PathBuf>,
    /// PEM private key for private_key_jwt; watched like the config.
    pub private_key: Option<PathBuf>,
    /// Default: RS256 for an RSA key, ES256 / ES384 by curve, EdDSA for Ed25519.
    pub private_key_alg: Option<String>,
    /// `kid` of the assertion's header. Default: the key's RFC 7638 thumbprint.
    pub private_key_kid: Option<String>,
    /// client_secret_basic (default with a secret), client_secret_post, or private_key_jwt
    /// (default with a private key).
    pub client_auth: Option<String>,
    /// Extra token-request parameters.
    pub audience: Option<String>,
    pub resource: Option<String>,
    /// CA bundle (PEM) for the token endpoint's TLS. Default: the system roots.
    pub ca_file: Option<PathBuf>,
    /// Default "2s".
    pub connect_timeout: Option<String>,
    /// Time allowed between reads from the upstream. Default "30s".
    pub read_timeout: Option<String>,
}

/// A secret as written in the file; never printed.
pub struct FileSecret(pub Secret);

impl std::fmt::Debug for FileSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

impl<'de> Deserialize<'de> for FileSecret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| FileSecret(Secret::new(s)))
    }
}

/// Builds `[egress]`, or records its problems. `declared` are the realms the file names (a
/// realm that failed to build has its own problems already).
pub(super) fn build(
    c: &mut Checker,
    f: Option<&EgressFile>,
    realms: &BTreeMap<String, Arc<Realm>>,
    declared: &BTreeMap<String, RealmFile>,
) -> Option<Egress> {
    let f = f?;
    let listen = listen(c, f.listen.as_deref());
    let mut routes: Vec<Arc<EgressRoute>> = Vec::new();
    for (i, rf) in f.routes.iter().enumerate() {
        let key = format!("egress.routes[{i}]");
        if let Some(r) = route(c, &key, rf, realms, declared) {
            if routes.iter().any(|o| o.host == r.host && o.prefix == r.prefix) {
                c.problem(key, format!("another route has the host and prefix {:?}", r.label));
                continue;
            }
            routes.push(Arc::new(r));
        }
    }
    Some(Egress {
        listen: listen?,
        routes,
    })
}

fn listen(c: &mut Checker, v: Option<&str>) -> Option<SocketAddr> {
    let Some(v) = v else {
        c.problem("egress.listen", "required: a loopback address like \"127.0.0.1:15001\"");
        return None;
    };
    match v.parse::<SocketAddr>() {
        Ok(a) if a.ip().is_loopback() => Some(a),
        Ok(_) => {
            c.problem(
                "egress.listen",
                format!("{v:?} is not a loopback address: whoever reaches the egress listener makes calls with this tollgate's tokens; use 127.0.0.1 or [::1]"),
            );
            None
        }
        Err(_) => {
            c.problem(
                "egress.listen",
                format!("{v:?} is not an address like \"127.0.0.1:15001\""),
            );
            None
        }
    }
}

fn route(
    c: &mut Checker,
    key: &str,
    rf: &EgressRouteFile,
    realms: &BTreeMap<String, Arc<Realm>>,
    declared: &BTreeMap<String, RealmFile>,
) -> Option<EgressRoute> {
    let before = c.problems.len();
    let host = rf.host.as_deref().and_then(|h| match normalise_host(h) {
        Ok(h) => Some(h),
        Err(reason) => {
            c.problem(format!("{key}.host"), reason);
            None
        }
    });
    let prefix = prefix(c, key, rf.prefix.as_deref().unwrap_or("/"));
    let upstream = match parse_upstream(&rf.upstream) {
        Ok(u) => upstream(c, key, u),
        Err(reason) => {
            c.problem(format!("{key}.upstream"), reason);
            None
        }
    };
    let (connect_timeout, read_timeout) = c.timeouts(key, rf.connect_timeout.as_deref(), rf.read_timeout.as_deref());
    let source = source::build(c, key, rf, realms, declared);
    if c.problems.len() > before {
        return None;
    }
    Some(EgressRoute {
        label: format!("{}{prefix}", host.as_deref().unwrap_or("*")),
        host,
        prefix,
        upstream: upstream?,
        source: Arc::new(source?),
        connect_timeout,
        read_timeout,
    })
}

fn prefix(c: &mut Checker, key: &str, raw: &str) -> String {
    let trimmed = if raw.len() > 1 { raw.trim_end_matches('/') } else { raw };
    match crate::path::normalise(trimmed) {
        Ok(p) if trimmed.starts_with('/') && p == trimmed => p,
        _ => {
            c.problem(
                format!("{key}.prefix"),
                format!("{raw:?} must be a normalised absolute path like \"/api/orders\""),
            );
            String::new()
        }
    }
}

/// A `host` value in the form requests are compared in: lower case, no trailing dot, a port
/// only if one is given.
pub fn normalise_host(raw: &str) -> Result<String, String> {
    let h = raw.trim().to_ascii_lowercase();
    let (name, port) = split_port(&h).ok_or_else(|| format!("{raw:?} is not a host name or host:port"))?;
    let name = name.strip_suffix('.').unwrap_or(name);
    let plain = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    let ipv6 = name.len() > 2
        && name.starts_with('[')
        && name.ends_with(']')
        && name[1..name.len() - 1].parse::<std::net::Ipv6Addr>().is_ok();
    if !(plain || ipv6) {
        return Err(format!(
            "{raw:?} is not a host name (no scheme, path or wildcard; leave `host` out to match any host)"
        ));
    }
    Ok(match port {
        Some(p) => format!("{name}:{p}"),
        None => name.to_string(),
    })
}

/// `name[:port]` (IPv6 in brackets) into the name and the port, if the port is digits.
fn split_port(h: &str) -> Option<(&str, Option<u16>)> {
    let colon = if h.starts_with('[') {
        let end = h.find(']')?;
        match &h[end + 1..] {
            "" => return Some((h, None)),
            rest if rest.starts_with(':') => end + 1,
            _ => return None,
        }
    } else {
        match h.rfind(':') {
            None => return Some((h, None)),
            Some(i) => i,
        }
    };
    let port = h[colon + 1..].parse::<u16>().ok()?;
    Some((&h[..colon], Some(port)))
}

/// An egress `upstream` taken apart.
#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    /// Without brackets.
    host: String,
    port: u16,
    tls: bool,
    /// The authority the upstream is sent as `Host`, the scheme's default port left out.
    authority: String,
}

fn parse_upstream(s: &str) -> Result<Parsed, String> {
    let (tls, explicit, rest) = super::route::split_scheme(s)?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) {
        return Err(format!(
            "{s:?} is not scheme://host[:port] (the request's own path is sent on)"
        ));
    }
    let (name, port) = split_port(rest).ok_or_else(|| format!("{s:?}: bad port"))?;
    normalise_host(name).map_err(|_| format!("{s:?}: {name:?} is not a host name"))?;
    let default_port = if tls { 443 } else { 80 };
    let port = match (port, explicit) {
        (Some(p), _) => p,
        (None, true) => default_port,
        (None, false) => return Err(format!("{s:?} needs a port, or a scheme like \"http://{s}\"")),
    };
    Ok(Parsed {
        host: name.trim_start_matches('[').trim_end_matches(']').to_string(),
        port,
        tls,
        authority: if port == default_port {
            name.to_string()
        } else {
            format!("{name}:{port}")
        },
    })
}

fn upstream(c: &mut Checker, key: &str, p: Parsed) -> Option<EgressUpstream> {
    let Ok(host_header) = http::HeaderValue::from_str(&p.authority) else {
        c.problem(format!("{key}.upstream"), "not a valid host");
        return None;
    };
    let addr = match p.host.parse::<IpAddr>() {
        Ok(ip) => Some(SocketAddr::new(ip, p.port)),
        Err(_) => match resolve(&p.host, p.port) {
            Ok(a) => Some(a),
            Err(e) => {
                c.warnings.push(format!(
                    "{key}.upstream: {:?} does not resolve now ({e}); it is tried again every few seconds and its calls are 502 until then",
                    p.host
                ));
                None
            }
        },
    };
    Some(EgressUpstream {
        host: p.host,
        port: p.port,
        tls: p.tls,
        host_header,
        addr: ArcSwapOption::from(addr.map(Arc::new)),
    })
}

/// The address of `host`, IPv4 first where both exist (as the ingress routes resolve).
pub fn resolve(host: &str, port: u16) -> std::io::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    let addrs: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
    pick(&addrs).ok_or_else(|| std::io::Error::other("no address"))
}

/// IPv4 first, as Envoy's V4_PREFERRED.
pub fn pick(addrs: &[SocketAddr]) -> Option<SocketAddr> {
    addrs.iter().find(|a| a.is_ipv4()).or(addrs.first()).copied()
}

#[cfg(test)]
mod tests;
