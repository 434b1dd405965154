//! An egress route's token source: a realm served here, or a remote token endpoint with its
//! client credentials, checked once at load.

use super::EgressRouteFile;
use crate::config::file::RealmFile;
use crate::config::{Checker, Realm};
use crate::model::egress::{ClientAuth, RemoteSource, SourceKey, SourceKind, TokenSource};
use crate::secret::Secret;
use crate::token::SigningKey;
use jsonwebtoken::Algorithm;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Builds the token source of the route at `key`, or records its problems.
pub(super) fn build(
    c: &mut Checker,
    key: &str,
    rf: &EgressRouteFile,
    realms: &BTreeMap<String, Arc<Realm>>,
    declared: &BTreeMap<String, RealmFile>,
) -> Option<TokenSource> {
    match (&rf.realm, &rf.token_endpoint) {
        (Some(_), Some(_)) => {
            c.problem(key, "set `realm` (a realm served here) or `token_endpoint`, not both");
            None
        }
        (None, None) => {
            c.problem(
                key,
                "a token source is required: `realm` + `client`, or `token_endpoint` + `client_id`",
            );
            None
        }
        (Some(realm), None) => local(c, key, rf, realm, realms, declared),
        (None, Some(url)) => remote(c, key, rf, url),
    }
}

/// The keys only a remote token endpoint takes, by name, and whether each is set.
fn remote_only(rf: &EgressRouteFile) -> [(&'static str, bool); 10] {
    [
        ("client_id", rf.client_id.is_some()),
        ("client_secret", rf.client_secret.is_some()),
        ("client_secret_file", rf.client_secret_file.is_some()),
        ("private_key", rf.private_key.is_some()),
        ("private_key_alg", rf.private_key_alg.is_some()),
        ("private_key_kid", rf.private_key_kid.is_some()),
        ("client_auth", rf.client_auth.is_some()),
        ("audience", rf.audience.is_some()),
        ("resource", rf.resource.is_some()),
        ("ca_file", rf.ca_file.is_some()),
    ]
}

fn local(
    c: &mut Checker,
    key: &str,
    rf: &EgressRouteFile,
    name: &str,
    realms: &BTreeMap<String, Arc<Realm>>,
    declared: &BTreeMap<String, RealmFile>,
) -> Option<TokenSource> {
    for (field, set) in remote_only(rf) {
        if set {
            c.problem(
                format!("{key}.{field}"),
                "only with `token_endpoint`; a realm served here needs no credentials",
            );
        }
    }
    let Some(realm) = realms.get(name) else {
        if !declared.contains_key(name) {
            c.problem(format!("{key}.realm"), format!("no realm named {name:?}"));
        }
        return None;
    };
    let Some(signer) = realm.signer() else {
        c.problem(
            format!("{key}.realm"),
            format!("realm {name:?} is remote and issues no tokens here; name its `token_endpoint` instead"),
        );
        return None;
    };
    let (client, scope) = service_account(c, key, rf, realm)?;
    // Everything a minted token's claims depend on: a change to any of it mints anew.
    let lifespan = realm.access_token_lifespan.as_secs().to_le_bytes();
    let fingerprint = signer.public.fingerprint.to_le_bytes();
    let roles = format!(
        "{:?}{:?}{:?}",
        client.realm_roles, client.resource_access, client.audience
    );
    let parts: [&[u8]; 9] = [
        b"local",
        name.as_bytes(),
        realm.issuer.as_bytes(),
        signer.kid.as_bytes(),
        &fingerprint,
        &lifespan,
        client.id.as_bytes(),
        roles.as_bytes(),
        scope.as_bytes(),
    ];
    Some(TokenSource {
        key: SourceKey(crate::secret::sha256(&parts)),
        client_id: client.id.clone(),
        kind: SourceKind::Local {
            realm: name.to_string(),
            client: client.id.clone(),
            scope,
        },
    })
}

fn remote(c: &mut Checker, key: &str, rf: &EgressRouteFile, url: &str) -> Option<TokenSource> {
    let before = c.problems.len();
    if rf.client.is_some() {
        c.problem(
            format!("{key}.client"),
            "only with `realm`; a token endpoint's client is `client_id`",
        );
    }
    check_endpoint(c, key, url);
    let client_id = match rf.client_id.as_deref() {
        Some(id) if !id.is_empty() && !id.chars().any(char::is_control) => id.to_string(),
        _ => {
            c.problem(
                format!("{key}.client_id"),
                "required with `token_endpoint` (and not empty)",
            );
            String::new()
        }
    };
    let auth = credentials(c, key, rf, &client_id);
    let ca_pem = ca_bundle(c, key, rf);
    if c.problems.len() > before {
        return None;
    }
    let auth = auth?;
    let credential = match &auth {
        ClientAuth::SecretBasic(s) | ClientAuth::SecretPost(s) => {
            crate::secret::sha256(&[s.expose().as_bytes()]).to_vec()
        }
        ClientAuth::PrivateKeyJwt(k) => format!("{}{}", k.kid, k.jwk).into_bytes(),
    };
    let opt = |v: &Option<String>| v.as_deref().unwrap_or("\0").as_bytes().to_vec();
    let parts: [&[u8]; 9] = [
        b"remote",
        url.as_bytes(),
        client_id.as_bytes(),
        auth.name().as_bytes(),
        &credential,
        &opt(&rf.scope),
        &opt(&rf.audience),
        &opt(&rf.resource),
        ca_pem.as_deref().unwrap_or_default(),
    ];
    Some(TokenSource {
        key: SourceKey(crate::secret::sha256(&parts)),
        client_id: client_id.clone(),
        kind: SourceKind::Remote(RemoteSource {
            token_endpoint: url.to_string(),
            client_id,
            auth,
            scope: rf.scope.clone(),
            audience: rf.audience.clone(),
            resource: rf.resource.clone(),
            ca_pem,
        }),
    })
}

/// The enabled service-account client `rf.client` of `realm`, and the scope its tokens are
/// minted with.
fn service_account<'r>(
    c: &mut Checker,
    key: &str,
    rf: &EgressRouteFile,
    realm: &'r Realm,
) -> Option<(&'r crate::model::Client, String)> {
    let name = &realm.name;
    let Some(client_name) = &rf.client else {
        c.problem(format!("{key}.client"), "required with `realm`");
        return None;
    };
    let Some(client) = realm.clients.get(client_name) else {
        c.problem(
            format!("{key}.client"),
            format!("no client {client_name:?} in realm {name:?}"),
        );
        return None;
    };
    if !client.enabled || !client.service_accounts_enabled {
        c.problem(
            format!("{key}.client"),
            format!("client {client_name:?} is disabled or has service accounts disabled"),
        );
        return None;
    }
    let scope = match client.scope_for(rf.scope.as_deref()) {
        Ok(s) => s,
        Err(s) => {
            let why = format!("{s:?} is not a default or optional scope of client {client_name:?}");
            c.problem(format!("{key}.scope"), why);
            return None;
        }
    };
    Some((client, scope))
}

/// Where tokens are fetched from: an http(s) URL without credentials; plain http off
/// loopback is a warning.
fn check_endpoint(c: &mut Checker, key: &str, url: &str) {
    match reqwest::Url::parse(url) {
        // Credentials in the URL would be logged with it; they go in `client_secret_file`.
        Ok(u) if !u.username().is_empty() || u.password().is_some() => c.problem(
            format!("{key}.token_endpoint"),
            "must not hold credentials (user:password@); set `client_id` and `client_secret_file`",
        ),
        Ok(u) if u.scheme() == "https" => {}
        Ok(u) if u.scheme() == "http" => {
            let loopback = u.host_str().is_some_and(|h| {
                h == "localhost"
                    || h.trim_start_matches('[')
                        .trim_end_matches(']')
                        .parse::<std::net::IpAddr>()
                        .is_ok_and(|ip| ip.is_loopback())
            });
            if !loopback {
                c.warnings.push(format!(
                    "{key}.token_endpoint is plain http: the client's credentials and tokens cross the network in clear"
                ));
            }
        }
        _ => c.problem(format!("{key}.token_endpoint"), "must be an http:// or https:// URL"),
    }
}

/// `ca_file`: the PEM bundle the token endpoint's certificate is checked against.
fn ca_bundle(c: &mut Checker, key: &str, rf: &EgressRouteFile) -> Option<Vec<u8>> {
    rf.ca_file.as_ref().and_then(|p| {
        let (path, bytes) = c.read_file(&format!("{key}.ca_file"), p)?;
        match reqwest::Certificate::from_pem_bundle(&bytes) {
            Ok(certs) if !certs.is_empty() => Some(bytes),
            _ => {
                c.problem(
                    format!("{key}.ca_file"),
                    format!("{} holds no PEM certificate", path.display()),
                );
                None
            }
        }
    })
}

/// The client's one credential and how it is presented.
fn credentials(c: &mut Checker, key: &str, rf: &EgressRouteFile, client_id: &str) -> Option<ClientAuth> {
    let given = [
        rf.client_secret.is_some(),
        rf.client_secret_file.is_some(),
        rf.private_key.is_some(),
    ];
    if given.iter().filter(|g| **g).count() != 1 {
        c.problem(
            key,
            "set exactly one of `client_secret`, `client_secret_file` and `private_key`",
        );
        return None;
    }
    let method = rf.client_auth.as_deref();
    if let Some(path) = &rf.private_key {
        if !matches!(method, None | Some("private_key_jwt")) {
            c.problem(
                format!("{key}.client_auth"),
                "a `private_key` authenticates with private_key_jwt",
            );
            return None;
        }
        return signing_key(c, key, rf, path, client_id).map(|k| ClientAuth::PrivateKeyJwt(Arc::new(k)));
    }
    let secret = match (&rf.client_secret, &rf.client_secret_file) {
        (Some(s), _) => {
            c.warnings.push(format!(
                "{key}.client_secret is plaintext in the config; `client_secret_file` keeps it out"
            ));
            s.0.clone()
        }
        (None, Some(path)) => secret_file(c, &format!("{key}.client_secret_file"), path)?,
        (None, None) => return None,
    };
    match method {
        None | Some("client_secret_basic") => Some(ClientAuth::SecretBasic(secret)),
        Some("client_secret_post") => Some(ClientAuth::SecretPost(secret)),
        Some("private_key_jwt") => {
            c.problem(
                format!("{key}.client_auth"),
                "private_key_jwt needs a `private_key`, not a secret",
            );
            None
        }
        Some(other) => {
            c.problem(
                format!("{key}.client_auth"),
                format!("{other:?} is not client_secret_basic, client_secret_post or private_key_jwt"),
            );
            None
        }
    }
}

/// A secret file's content, without the trailing newline editors and `echo` add.
fn secret_file(c: &mut Checker, key: &str, path: &std::path::Path) -> Option<Secret> {
    let (full, bytes) = c.read_file(key, path)?;
    match String::from_utf8(bytes) {
        Ok(text) if !text.trim_end_matches(['\r', '\n']).is_empty() => {
            Some(Secret::new(text.trim_end_matches(['\r', '\n'])))
        }
        Ok(_) => {
            c.problem(key, format!("{} is empty", full.display()));
            None
        }
        Err(_) => {
            c.problem(key, format!("{} is not UTF-8 text", full.display()));
            None
        }
    }
}

fn signing_key(
    c: &mut Checker,
    key: &str,
    rf: &EgressRouteFile,
    path: &std::path::Path,
    client_id: &str,
) -> Option<SigningKey> {
    let field = format!("{key}.private_key");
    let (full, pem) = c.read_file(&field, path)?;
    let algs: Vec<Algorithm> = match rf.private_key_alg.as_deref() {
        None => vec![Algorithm::RS256, Algorithm::ES256, Algorithm::ES384, Algorithm::EdDSA],
        Some(name) => match crate::token::keys::parse_alg(name) {
            Some(a) => vec![a],
            None => {
                c.problem(
                    format!("{key}.private_key_alg"),
                    format!("{name:?} is not RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA"),
                );
                return None;
            }
        },
    };
    let kid = rf.private_key_kid.as_deref().unwrap_or(client_id);
    let mut last = String::new();
    for alg in algs {
        match SigningKey::from_pem(kid, alg, &pem) {
            Ok(k) if rf.private_key_kid.is_some() => return Some(k),
            Ok(k) => {
                // The default kid is the key's own thumbprint, as JWKS tools publish it.
                return SigningKey::from_pem(&thumbprint(&k.jwk), alg, &pem).ok();
            }
            Err(e) => last = e,
        }
    }
    c.problem(field, format!("{}: {last}", full.display()));
    None
}

/// The RFC 7638 thumbprint of a public JWK: SHA-256 over its required members in order.
pub fn thumbprint(jwk: &serde_json::Value) -> String {
    use base64::Engine;
    use sha2::Digest;
    let s = |k: &str| jwk.get(k).and_then(|v| v.as_str()).unwrap_or_default();
    let canonical = match s("kty") {
        "RSA" => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, s("e"), s("n")),
        "EC" => format!(
            r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
            s("crv"),
            s("x"),
            s("y")
        ),
        kty => format!(r#"{{"crv":"{}","kty":"{kty}","x":"{}"}}"#, s("crv"), s("x")),
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(canonical.as_bytes()))
}
