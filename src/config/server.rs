//! `[server]`: listeners, limits and the edge's header rules.

use super::file::ServerFile;
use super::Checker;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// `[server]`, resolved. Listener addresses are read once at start.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen: Option<SocketAddr>,
    pub tls_listen: Option<SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    pub admin_listen: Option<SocketAddr>,
    pub threads: Option<usize>,
    pub log_format_json: bool,
    pub upstream_ca_file: Option<PathBuf>,
    pub max_form_body: usize,
    pub client_timeout: Duration,
    pub auth_failures_per_minute: u32,
    pub watch: bool,
    pub work_stealing: bool,
    /// None: [`DEFAULT_MAX_CONNECTIONS`], or less if the open-files limit cannot hold it.
    pub max_connections: Option<usize>,
    /// Whose `X-Forwarded-For` is believed. Default none.
    pub trusted_proxies: crate::client_addr::TrustedProxies,
    /// Forward header names holding `_`. Default false (dropped, as nginx does).
    pub underscores_in_headers: bool,
}

/// Default `server.max_connections`: bounds the memory that idle and busy connections can hold.
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// `[server]` with its defaults; each bad key is a problem on `c`.
pub(super) fn build(c: &mut Checker, s: &ServerFile) -> ServerSettings {
    let listen = addr(c, "server.listen", s.listen.as_ref());
    let tls_listen = addr(c, "server.tls_listen", s.tls_listen.as_ref());
    let admin_listen = addr(c, "server.admin_listen", s.admin_listen.as_ref());
    if s.listen.is_none() && s.tls_listen.is_none() {
        c.problem("server.listen", "required unless server.tls_listen is set");
    }
    if s.tls_listen.is_some() {
        for (key, v) in [("server.tls_cert", &s.tls_cert), ("server.tls_key", &s.tls_key)] {
            match v {
                None => c.problem(key, "required when server.tls_listen is set"),
                Some(p) => {
                    c.read_file(key, p);
                }
            }
        }
    }
    if s.threads == Some(0) {
        c.problem("server.threads", "must be at least 1");
    }
    let log_format_json = match s.log_format.as_deref() {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => {
            c.problem("server.log_format", format!("{other:?} is not \"text\" or \"json\""));
            false
        }
    };
    let upstream_ca_file = s
        .upstream_ca_file
        .as_ref()
        .and_then(|p| c.read_file("server.upstream_ca_file", p).map(|(p, _)| p));
    let client_timeout = c.duration(
        "server.client_timeout",
        s.client_timeout.as_deref(),
        Duration::from_secs(10),
    );
    let max_form_body = s.max_form_body.unwrap_or(64 * 1024);
    if max_form_body == 0 {
        c.problem("server.max_form_body", "must be greater than zero");
    }
    let max_connections = s.max_connections;
    if max_connections == Some(0) {
        c.problem("server.max_connections", "must be at least 1");
    }
    let trusted_proxies = crate::client_addr::TrustedProxies::parse(&s.trusted_proxies).unwrap_or_else(|problems| {
        for p in problems {
            c.problem("server.trusted_proxies", p);
        }
        Default::default()
    });
    ServerSettings {
        listen,
        tls_listen,
        tls_cert: s.tls_cert.as_ref().map(|p| c.base.join(p)),
        tls_key: s.tls_key.as_ref().map(|p| c.base.join(p)),
        admin_listen,
        threads: s.threads,
        log_format_json,
        upstream_ca_file,
        max_form_body,
        client_timeout,
        auth_failures_per_minute: s.auth_failures_per_minute.unwrap_or(20),
        watch: s.watch.unwrap_or(true),
        work_stealing: s.work_stealing.unwrap_or(false),
        max_connections,
        trusted_proxies,
        underscores_in_headers: s.underscores_in_headers.unwrap_or(false),
    }
}

fn addr(c: &mut Checker, key: &str, v: Option<&String>) -> Option<SocketAddr> {
    let v = v?;
    match v.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            c.problem(key, format!("{v:?} is not an address like \"127.0.0.1:8080\""));
            None
        }
    }
}
