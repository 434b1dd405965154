//! A realm and its clients as validated from the file: keys loaded, roles checked, token
//! contents that depend only on config (roles, audience, scopes, `sub`) computed once.

use super::file::{ClientFile, RealmFile};
use super::Checker;
use crate::model::{Client, ClientKeys, Keys, Realm};
use crate::secret::ClientSecret;
use crate::token::keys::{self, SigningKey};
use crate::token::KeySet;
use jsonwebtoken::jwk::JwkSet;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Identifies what a verification of the realm checks besides the key.
fn verify_tag(name: &str, issuer: &str, roles_claim: Option<&str>, remote: bool) -> u64 {
    let parts: [&[u8]; 4] = [
        name.as_bytes(),
        issuer.as_bytes(),
        roles_claim.unwrap_or("").as_bytes(),
        if remote { b"remote" } else { b"local" },
    ];
    let digest = crate::secret::sha256(&parts);
    u64::from_le_bytes(digest[..8].try_into().unwrap_or_default())
}

/// Gives a realm whose issuer was left to its default the issuer that names `port`, the port
/// the listener was actually bound to (a `:0` listener's port is known only then).
pub(super) fn name_port(realm: &mut Realm, scheme: &str, port: u16) {
    if !realm.default_issuer {
        return;
    }
    realm.issuer = format!("{scheme}://localhost:{port}/realms/{}", realm.name);
    realm.token_endpoint = format!("{}/protocol/openid-connect/token", realm.issuer);
    realm.verify_tag = verify_tag(
        &realm.name,
        &realm.issuer,
        realm.roles_claim.as_deref(),
        realm.is_remote(),
    );
}

pub(super) fn build(c: &mut Checker, name: &str, rf: &RealmFile, default_issuer: String) -> Option<Realm> {
    let before = c.problems.len();
    if name.is_empty() || !name.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)) {
        c.problem(
            format!("realms.{name}"),
            "realm names may hold letters, digits, '-', '_' and '.'",
        );
    }
    let remote = rf.signing_keys.is_empty();
    let issuer = issuer(c, name, rf, default_issuer);
    let Lifespans {
        access,
        refresh,
        leeway,
        session_max,
    } = lifespans(c, name, rf);
    let roles = realm_roles(c, name, rf);
    client_role_names(c, name, rf);
    // Keys first, but every other problem of the realm is still collected before giving up.
    let keys = if remote {
        super::remote::keys(c, name, rf, &issuer).map(|k| (k, bytes::Bytes::new()))
    } else {
        super::remote::local_only(c, name, rf);
        local_keys(c, name, rf)
    };
    let declared = |role: &str| -> Result<Option<String>, String> {
        match role.split_once(':') {
            None if roles.contains(role) => Ok(None),
            None => Err(format!("{role:?} is not a role of realm {name:?}")),
            Some((client, r)) if client.is_empty() || r.is_empty() => Err(format!("{role:?} is not \"client:role\"")),
            Some(_) if role.contains(',') => Err(format!("{role:?}: a client role name may not hold ','")),
            Some((client, r)) => match rf.client_roles.get(client) {
                Some(list) if list.iter().any(|x| x == r) => Ok(None),
                Some(_) => Err(format!("{role:?}: client {client:?} has no role {r:?} in client_roles")),
                None => Ok(Some(format!("realms.{name}: client role {role:?} names client {client:?}, which declares no roles in client_roles; accepted as is"))),
            },
        }
    };

    let mut clients = HashMap::new();
    let mut any_hashed_secret = false;
    for (id, cf) in &rf.clients {
        let key = format!("realms.{name}.clients.{id}");
        if let Some(client) = build_client(c, name, id, cf, &key, &declared) {
            any_hashed_secret |= client.secret.as_ref().is_some_and(ClientSecret::is_hashed);
            clients.insert(id.clone(), client);
        }
    }
    let (keys, jwks_json) = keys?;
    if c.problems.len() > before {
        return None;
    }
    let roles_claim = rf.roles_claim.clone();
    let verify_tag = verify_tag(name, &issuer, roles_claim.as_deref(), remote);
    Some(Realm {
        default_issuer: rf.issuer.is_none(),
        name: name.to_string(),
        token_endpoint: format!("{}/protocol/openid-connect/token", issuer.trim_end_matches('/')),
        issuer,
        access_token_lifespan: access,
        refresh_token_lifespan: refresh,
        leeway,
        roles,
        keys,
        roles_claim,
        verify_tag,
        jwks_json,
        discovery_json: std::sync::OnceLock::new(),
        clients,
        any_hashed_secret,
        client_session_max_lifespan: session_max,
    })
}

/// The realm's `iss`: as configured, else (local realms) the default; a remote realm must name it.
fn issuer(c: &mut Checker, name: &str, rf: &RealmFile, default_issuer: String) -> String {
    let at = |k: &str| format!("realms.{name}.{k}");
    let remote = rf.signing_keys.is_empty();
    let issuer = match (&rf.issuer, remote) {
        (Some(i), _) => i.clone(),
        (None, false) => default_issuer,
        (None, true) => {
            c.problem(
                at("issuer"),
                "required for a remote realm (one without signing_keys): the exact `iss` of its tokens",
            );
            String::new()
        }
    };
    if !(issuer.starts_with("http://") || issuer.starts_with("https://") || issuer.is_empty()) {
        c.problem(at("issuer"), "must be an http:// or https:// URL");
    }
    // A remote issuer's `iss` is compared as written; a local one is normalised.
    if remote {
        issuer
    } else {
        issuer.trim_end_matches('/').to_string()
    }
}

struct Lifespans {
    access: Duration,
    refresh: Duration,
    leeway: Duration,
    session_max: Duration,
}

/// Token lifespans, the clock-skew leeway and the refresh chain's maximum.
fn lifespans(c: &mut Checker, name: &str, rf: &RealmFile) -> Lifespans {
    let at = |k: &str| format!("realms.{name}.{k}");
    let access = c.duration(
        &at("access_token_lifespan"),
        rf.access_token_lifespan.as_deref(),
        Duration::from_secs(300),
    );
    let refresh = c.duration(
        &at("refresh_token_lifespan"),
        rf.refresh_token_lifespan.as_deref(),
        Duration::from_secs(1800),
    );
    let leeway = match rf.leeway.as_deref() {
        Some("0") | Some("0s") => Duration::ZERO,
        other => c.duration(&at("leeway"), other, Duration::from_secs(30)),
    };
    if leeway > Duration::from_secs(600) {
        c.problem(
            at("leeway"),
            "more than 10m of clock skew would keep expired tokens alive",
        );
    }
    let session_max = c.duration(
        &at("client_session_max_lifespan"),
        rf.client_session_max_lifespan.as_deref(),
        Duration::from_secs(10 * 3600),
    );
    Lifespans {
        access,
        refresh,
        leeway,
        session_max,
    }
}

/// Client and client role names, which `X-Auth-Roles` joins with ','.
fn client_role_names(c: &mut Checker, name: &str, rf: &RealmFile) {
    for (client, list) in &rf.client_roles {
        for r in list.iter().map(String::as_str).chain([client.as_str()]) {
            if r.contains(',') {
                c.problem(
                    format!("realms.{name}.client_roles.{client}"),
                    format!("{r:?}: a client or client role name may not hold ','"),
                );
            }
        }
    }
}

fn realm_roles(c: &mut Checker, name: &str, rf: &RealmFile) -> HashSet<String> {
    let mut roles = HashSet::new();
    for r in &rf.roles {
        if r.is_empty() || r.contains(':') || r.contains(',') {
            c.problem(
                format!("realms.{name}.roles"),
                format!("{r:?}: a realm role name may not be empty or hold ':' or ','"),
            );
        } else if !roles.insert(r.clone()) {
            c.problem(format!("realms.{name}.roles"), format!("{r:?} is listed twice"));
        }
    }
    roles
}

/// A realm's own signing keys (the first signs) and its rendered JWKS.
fn local_keys(c: &mut Checker, name: &str, rf: &RealmFile) -> Option<(Keys, bytes::Bytes)> {
    let mut signer = None;
    let mut verify = KeySet::default();
    let mut jwks = Vec::new();
    let mut seen_kids = HashSet::new();
    for (i, kf) in rf.signing_keys.iter().enumerate() {
        let key = format!("realms.{name}.signing_keys[{i}]");
        if kf.kid.is_empty() {
            c.problem(format!("{key}.kid"), "must not be empty");
        }
        if !seen_kids.insert(kf.kid.as_str()) {
            c.problem(format!("{key}.kid"), format!("kid {:?} is used twice", kf.kid));
            continue;
        }
        let Some(alg) = keys::parse_alg(&kf.alg) else {
            c.problem(
                format!("{key}.alg"),
                format!(
                    "{:?} is not one of RS256, RS384, RS512, PS256, ES256, ES384, EdDSA",
                    kf.alg
                ),
            );
            continue;
        };
        let Some((full, bytes)) = c.read_file(&format!("{key}.private_key"), &kf.private_key) else {
            continue;
        };
        match SigningKey::from_pem(&kf.kid, alg, &bytes) {
            Ok(k) => {
                let k = Arc::new(k);
                jwks.push(k.jwk.clone());
                verify.insert(k.public.clone());
                signer.get_or_insert(k);
            }
            Err(reason) => c.problem(format!("{key}.private_key"), format!("{}: {reason}", full.display())),
        }
    }
    let jwks_json = bytes::Bytes::from(serde_json::json!({ "keys": jwks }).to_string());
    Some((
        Keys::Local {
            signer: signer?,
            verify,
        },
        jwks_json,
    ))
}

fn build_client(
    c: &mut Checker,
    realm: &str,
    id: &str,
    cf: &ClientFile,
    key: &str,
    declared: &dyn Fn(&str) -> Result<Option<String>, String>,
) -> Option<Client> {
    let before = c.problems.len();
    if id.is_empty() || id.contains(':') || id.chars().any(|ch| ch.is_control()) {
        c.problem(key, "a client id may not be empty or hold ':' or control characters");
    }
    let secret = client_secret(c, key, cf);
    let jwks = client_keys(c, key, cf);
    if cf.secret.is_none() && cf.jwks.is_none() {
        c.problem(key, "needs a `secret` or a `jwks` file to authenticate with");
    }
    let check_roles = |c: &mut Checker, field: &str, list: &[String]| {
        for r in list {
            match declared(r) {
                Ok(None) => {}
                Ok(Some(warning)) => c.warnings.push(warning),
                Err(reason) => c.problem(format!("{key}.{field}"), reason),
            }
        }
    };
    check_roles(c, "service_account_roles", &cf.service_account_roles);
    check_roles(c, "scope_roles", &cf.scope_roles);

    let (realm_roles, resource_access) = granted_roles(cf);
    let default_scopes = cf
        .default_scopes
        .clone()
        .unwrap_or_else(|| vec!["profile".into(), "email".into()]);
    check_scopes(c, key, default_scopes.iter().chain(&cf.optional_scopes));
    let audience = match &cf.audience {
        // An empty list: tokens without `aud`, as Keycloak issues them to a client that has none.
        Some(list) => list.clone(),
        None if resource_access.is_empty() => vec!["account".to_string()],
        None => resource_access.keys().cloned().collect(),
    };
    if c.problems.len() > before {
        return None;
    }
    Some(Client {
        id: id.to_string(),
        secret,
        jwks,
        enabled: cf.enabled.unwrap_or(true),
        service_accounts_enabled: cf.service_accounts_enabled.unwrap_or(true),
        use_refresh_token: cf.use_refresh_token.unwrap_or(false),
        subject: stable_uuid(&[b"tollgate-sub", realm.as_bytes(), id.as_bytes()]),
        realm_roles,
        resource_access,
        default_scopes,
        optional_scopes: cf.optional_scopes.clone(),
        audience,
    })
}

/// The client's secret, plaintext (with a warning) or an argon2 PHC string.
fn client_secret(c: &mut Checker, key: &str, cf: &ClientFile) -> Option<ClientSecret> {
    match cf.secret.as_deref().map(ClientSecret::parse) {
        None => None,
        Some(Ok(s)) => {
            if !s.is_hashed() {
                c.warnings.push(format!(
                    "{key}.secret is plaintext; store `tollgate hash-secret` output instead"
                ));
            }
            Some(s)
        }
        Some(Err(reason)) => {
            c.problem(format!("{key}.secret"), reason);
            None
        }
    }
}

/// The public keys a client signs its assertions with (`jwks`), read and parsed.
fn client_keys(c: &mut Checker, key: &str, cf: &ClientFile) -> Option<ClientKeys> {
    match &cf.jwks {
        None => None,
        Some(p) => match c.read_file(&format!("{key}.jwks"), p) {
            None => None,
            Some((full, bytes)) => match serde_json::from_slice::<JwkSet>(&bytes) {
                Ok(set) if !set.keys.is_empty() => Some(ClientKeys { set }),
                Ok(_) => {
                    c.problem(format!("{key}.jwks"), format!("{}: holds no keys", full.display()));
                    None
                }
                Err(e) => {
                    c.problem(
                        format!("{key}.jwks"),
                        format!("{}: not a JWKS document: {e}", full.display()),
                    );
                    None
                }
            },
        },
    }
}

/// The realm roles and client roles its tokens carry.
fn granted_roles(cf: &ClientFile) -> (Vec<String>, BTreeMap<String, Vec<String>>) {
    // Keycloak's rule: a client without full scope gets only the roles in its scope mappings.
    let full_scope = cf.full_scope_allowed.unwrap_or(true);
    let granted: BTreeSet<&String> = cf
        .service_account_roles
        .iter()
        .filter(|r| full_scope || cf.scope_roles.contains(r))
        .collect();
    let mut realm_roles = Vec::new();
    let mut resource_access: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in granted {
        match r.split_once(':') {
            None => realm_roles.push(r.clone()),
            Some((client, role)) => resource_access
                .entry(client.to_string())
                .or_default()
                .push(role.to_string()),
        }
    }
    (realm_roles, resource_access)
}

/// Every scope must be a scope token (RFC 6749 §3.3).
fn check_scopes<'s>(c: &mut Checker, key: &str, scopes: impl Iterator<Item = &'s String>) {
    for s in scopes {
        if s.is_empty()
            || s.chars()
                .any(|ch| ch == ' ' || ch == '"' || ch == '\\' || !(' '..='~').contains(&ch))
        {
            c.problem(
                format!("{key}.default_scopes"),
                format!("{s:?} is not a valid scope token (RFC 6749 §3.3)"),
            );
        }
    }
}

/// A UUID-shaped identifier derived from `parts` (version 8, RFC 9562 §5.8).
pub fn stable_uuid(parts: &[&[u8]]) -> String {
    let mut b = crate::secret::sha256(parts);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    format_uuid(&b[..16])
}

/// The 8-4-4-4-12 lower-case hex form of the first 16 bytes of `b`.
pub fn format_uuid(b: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().take(16).enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(HEX[(byte >> 4) as usize] as char);
        s.push(HEX[(byte & 0x0f) as usize] as char);
    }
    s
}
