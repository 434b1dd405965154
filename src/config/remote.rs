//! Remote realms (no `signing_keys`): where their keys come from and how they are trusted.

use super::file::RealmFile;
use super::Checker;
use crate::model::{Keys, RemoteSettings};
use crate::token::jwk::{self, ASYMMETRIC};
use crate::token::keys::parse_alg;
use crate::token::live::LiveKeys;
use jsonwebtoken::Algorithm;
use std::sync::Arc;
use std::time::Duration;

/// Shortest and longest background refresh, whatever the issuer's `Cache-Control` says.
pub const MIN_REFRESH: Duration = Duration::from_secs(60);
pub const MAX_REFRESH: Duration = Duration::from_secs(24 * 3600);

/// The keys of remote realm `name`: a JWKS file read now, or a live set for the key engine.
pub(super) fn keys(c: &mut Checker, name: &str, rf: &RealmFile, issuer: &str) -> Option<Keys> {
    let at = |k: &str| format!("realms.{name}.{k}");
    let issuing = [
        ("clients", !rf.clients.is_empty()),
        ("access_token_lifespan", rf.access_token_lifespan.is_some()),
        ("refresh_token_lifespan", rf.refresh_token_lifespan.is_some()),
    ];
    for (key, set) in issuing {
        if set {
            c.problem(
                at(key),
                "only a realm that issues tokens (one with signing_keys) has this; a remote realm verifies another issuer's tokens",
            );
        }
    }
    if rf.roles_claim.as_deref().is_some_and(|r| r.trim().is_empty()) {
        c.problem(at("roles_claim"), "must name a claim");
    }
    let algorithms = algorithms(c, name, rf.algorithms.as_deref());
    let refresh = c.duration(
        &at("jwks_refresh"),
        rf.jwks_refresh.as_deref(),
        Duration::from_secs(300),
    );
    if !(MIN_REFRESH..=MAX_REFRESH).contains(&refresh) {
        c.problem(at("jwks_refresh"), "must be between 1m and 24h");
    }
    let max_stale = c.duration(
        &at("jwks_max_stale"),
        rf.jwks_max_stale.as_deref(),
        Duration::from_secs(3600),
    );
    if let Some(path) = &rf.jwks_file {
        for (key, set) in [("jwks_uri", rf.jwks_uri.is_some()), ("ca_file", rf.ca_file.is_some())] {
            if set {
                c.problem(at(key), "not with jwks_file: the keys are read from the file");
            }
        }
        return jwks_file(c, name, path, &algorithms).map(Keys::File);
    }
    if let Some(uri) = &rf.jwks_uri {
        if !(uri.starts_with("https://") || uri.starts_with("http://")) {
            c.problem(at("jwks_uri"), "must be an http:// or https:// URL");
        }
    }
    let ca_pem = rf
        .ca_file
        .as_ref()
        .and_then(|p| c.read_file(&at("ca_file"), p))
        .and_then(|(full, bytes)| match pem::parse_many(&bytes) {
            Ok(blocks) if blocks.iter().any(|b| b.tag() == "CERTIFICATE") => Some(bytes),
            _ => {
                c.problem(at("ca_file"), format!("{}: holds no PEM certificate", full.display()));
                None
            }
        });
    let settings = RemoteSettings {
        realm: name.to_string(),
        issuer: issuer.to_string(),
        jwks_uri: rf.jwks_uri.clone(),
        ca_pem,
        refresh,
        max_stale,
        algorithms,
    };
    Some(Keys::Fetched {
        settings: Arc::new(settings),
        live: Arc::new(LiveKeys::default()),
    })
}

/// Remote-realm keys set on a realm that has signing keys.
pub(super) fn local_only(c: &mut Checker, name: &str, rf: &RealmFile) {
    let remote_only = [
        ("jwks_uri", rf.jwks_uri.is_some()),
        ("jwks_file", rf.jwks_file.is_some()),
        ("ca_file", rf.ca_file.is_some()),
        ("jwks_refresh", rf.jwks_refresh.is_some()),
        ("jwks_max_stale", rf.jwks_max_stale.is_some()),
        ("algorithms", rf.algorithms.is_some()),
        ("roles_claim", rf.roles_claim.is_some()),
    ];
    for (key, set) in remote_only {
        if set {
            c.problem(
                format!("realms.{name}.{key}"),
                "only for a remote realm (one without signing_keys); this realm verifies its own keys",
            );
        }
    }
}

fn algorithms(c: &mut Checker, name: &str, list: Option<&[String]>) -> Vec<Algorithm> {
    let Some(list) = list else {
        return ASYMMETRIC.to_vec();
    };
    if list.is_empty() {
        c.problem(
            format!("realms.{name}.algorithms"),
            "must not be empty; leave it out for every asymmetric one",
        );
    }
    let mut out = Vec::new();
    for a in list {
        match parse_alg(a) {
            Some(alg) => out.push(alg),
            None => c.problem(
                format!("realms.{name}.algorithms"),
                format!("{a:?} is not one of RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384, EdDSA (never none or HS*)"),
            ),
        }
    }
    out
}

fn jwks_file(
    c: &mut Checker,
    name: &str,
    path: &std::path::Path,
    algorithms: &[Algorithm],
) -> Option<crate::token::KeySet> {
    let key = format!("realms.{name}.jwks_file");
    let (full, bytes) = c.read_file(&key, path)?;
    match jwk::parse_jwks(&bytes, algorithms) {
        Err(why) => {
            c.problem(&key, format!("{}: {why}", full.display()));
            None
        }
        Ok(parsed) => {
            for s in parsed.skipped {
                c.warnings.push(format!("{key}: {}: {s}", full.display()));
            }
            if parsed.keys.is_empty() {
                c.problem(&key, format!("{}: holds no usable signature key", full.display()));
                return None;
            }
            Some(parsed.keys)
        }
    }
}
