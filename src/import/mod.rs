//! `tollgate import-keycloak`: a Keycloak realm export turned into the `proxy.toml` that issues
//! the same client-credentials tokens, and a list of what could not be translated.

mod client;
pub mod export;
pub mod jwks;
pub mod render;
pub mod roles;
pub mod scopes;
mod token;

use client::{Outcome, RealmCtx};
use export::{RealmRep, UserRep};
use render::{ClientOut, Credential, Document, KeyOut, RealmOut};
use roles::{Role, Roles};
use scopes::Catalogue;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

pub struct Options<'a> {
    /// How the header names the export.
    pub source: &'a str,
    /// The key folder as the generated config names it: signing keys are generated there.
    pub keys_dir: Option<&'a str>,
}

/// The generated config and the files that go with it.
#[derive(Debug)]
pub struct Translation {
    pub toml: String,
    /// One line per thing left out, naming its realm and client.
    pub left_out: Vec<String>,
    /// JWKS files to write beside the config: (file name, document).
    pub jwks: Vec<(String, Vec<u8>)>,
    /// Signing keys to generate in the key folder unless there already: (file name, alg).
    pub keys: Vec<(String, jsonwebtoken::Algorithm)>,
}

/// The algorithms a signing key can be generated for; another realm default falls back to RS256.
const GENERATED: [&str; 7] = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"];

/// Translate an export (`input`) and the users files `kc.sh export --dir` writes beside it.
/// Err: the input is not a realm export, and why.
pub fn translate(input: &[u8], users_files: &[Vec<u8>], opts: &Options) -> Result<Translation, String> {
    let mut reps = export::parse(input)?;
    for f in users_files {
        for extra in export::parse(f)? {
            if let Some(r) = reps.iter_mut().find(|r| r.realm == extra.realm) {
                r.users
                    .get_or_insert_with(Vec::new)
                    .extend(extra.users.unwrap_or_default());
            }
        }
    }
    let mut left_out = Vec::new();
    let mut realms = Vec::new();
    let mut jwks = Vec::new();
    let mut keys = Vec::new();
    for rep in &reps {
        let (realm, files) = realm(rep, opts, &mut left_out);
        if let Some(k) = &realm.key {
            if let Some(alg) = crate::token::keys::parse_alg(&k.alg) {
                let name = k.path.rsplit('/').next().unwrap_or(&k.path).to_string();
                keys.push((name, alg));
            }
        }
        jwks.extend(files);
        realms.push(realm);
    }
    let toml = render::render(&Document {
        source: opts.source,
        realms: &realms,
        left_out: left_out.len(),
        complete_server: opts.keys_dir.is_some(),
    });
    Ok(Translation {
        toml,
        left_out,
        jwks,
        keys,
    })
}

/// A file name from export names: what a path may hold, the rest as '_'.
fn file_name(parts: &[&str], suffix: &str) -> String {
    let joined = parts.join("-");
    let clean: String = joined
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}{suffix}", clean.trim_start_matches('.'))
}

fn lifespans(rep: &RealmRep, refresh: bool) -> (String, String, Option<(String, String)>) {
    let (lifespan, note) = match rep.access_token_lifespan {
        Some(s) if s > 0 => (format!("{s}s"), format!("accessTokenLifespan of the export ({s} s)")),
        _ => (
            "300s".into(),
            "accessTokenLifespan is not in the export: Keycloak's default (300 s)".into(),
        ),
    };
    // Keycloak's refresh tokens last the SSO session's idle time, within its maximum.
    let idle = rep.sso_session_idle_timeout.filter(|s| *s > 0).unwrap_or(1800);
    let max = rep.sso_session_max_lifespan.filter(|s| *s > 0).unwrap_or(36000);
    let r = refresh.then(|| {
        (
            format!("{}s", idle.min(max)),
            format!("refresh tokens: the SSO session idle timeout ({idle} s) within its maximum ({max} s)"),
        )
    });
    (lifespan, note, r)
}

/// Lines for what the realm holds beyond its clients that tollgate does not take.
fn realm_lines(rep: &RealmRep, has_clients: bool) -> Vec<String> {
    let mut out = Vec::new();
    let components = rep.components.as_ref();
    for c in components
        .and_then(|c| c.get("org.keycloak.storage.UserStorageProvider"))
        .into_iter()
        .flatten()
    {
        out.push(format!(
            "user federation {:?} ({}): service accounts are local users, so their tokens are unaffected",
            c.name.as_deref().unwrap_or(""),
            c.provider_id.as_deref().unwrap_or("?")
        ));
    }
    for p in rep.user_federation_providers.iter().flatten() {
        let name = p.get("displayName").and_then(|v| v.as_str()).unwrap_or("");
        out.push(format!(
            "user federation {name:?}: service accounts are local users, so their tokens are unaffected"
        ));
    }
    if rep.users.is_none() && has_clients {
        out.push("the export holds no users (a partial export?): each service account gets the roles Keycloak gives a new one, not the roles it has in your Keycloak".into());
    }
    if rep.enabled == Some(false) {
        out.push("the realm is disabled in the export: its clients are written disabled".into());
    }
    out
}

fn realm(rep: &RealmRep, opts: &Options, left_out: &mut Vec<String>) -> (RealmOut, Vec<(String, Vec<u8>)>) {
    let name = rep.realm.clone().unwrap_or_default();
    let mut roles = Roles::from_export(rep);
    let scopes = Catalogue::from_export(rep);
    if scopes.built_in {
        roles.map_built_in_scopes();
    }
    let mut users: BTreeMap<String, &UserRep> = BTreeMap::new();
    for u in rep.users.iter().flatten() {
        if let Some(c) = &u.service_account_client_id {
            users.entry(c.clone()).or_insert(u);
        }
    }
    let ctx = RealmCtx {
        name: &name,
        roles: &roles,
        scopes: &scopes,
        users: &users,
        disabled: rep.enabled == Some(false),
    };
    let mut notes = Vec::new();
    if let Some(origin) = &roles.default_role_origin {
        let role = roles.default_role.as_ref().map(Role::config_name).unwrap_or_default();
        notes.push(format!("default role {role}: {origin}"));
    }
    let (clients, files) = clients(&ctx, rep, &mut notes, left_out);
    for line in realm_lines(rep, !clients.is_empty()) {
        notes.push(format!("Left out: {line}"));
        left_out.push(format!("realm {name}: {line}"));
    }
    if name.is_empty() || !name.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_.".contains(ch)) {
        let line =
            "its name is not a tollgate realm name (letters, digits, '-', '_', '.'): rename the table".to_string();
        left_out.push(format!("realm {name}: {line}"));
        notes.push(format!("Left out: {line}"));
    }
    let (realm_roles, client_roles) = declared_roles(&roles, &mut notes);
    let refresh = clients.iter().any(|c| c.use_refresh_token);
    let (lifespan, lifespan_note, refresh) = lifespans(rep, refresh);
    let (key_alg, key) = signing_key(rep, &name, opts);
    let issuer = export::attr(Some(&rep.attributes), "frontendUrl")
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
        .map(|u| format!("{}/realms/{name}", u.trim_end_matches('/')));
    let out = RealmOut {
        name,
        notes,
        issuer,
        lifespan,
        lifespan_note,
        refresh,
        roles: realm_roles,
        client_roles,
        key,
        key_alg,
        clients,
    };
    (out, files)
}

/// The realm's clients, in client-id order, and the key files their exported public keys go
/// to; what is skipped is noted, what is lost goes to `left_out`.
fn clients(
    ctx: &RealmCtx,
    rep: &RealmRep,
    notes: &mut Vec<String>,
    left_out: &mut Vec<String>,
) -> (Vec<ClientOut>, Vec<(String, Vec<u8>)>) {
    let name = ctx.name;
    let mut clients = Vec::new();
    let mut skipped = Vec::new();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut sorted: Vec<_> = rep.clients.iter().flatten().collect();
    sorted.sort_by(|a, b| a.client_id.cmp(&b.client_id));
    for c in sorted {
        let id = c.client_id.as_deref().unwrap_or("");
        match client::translate(ctx, c) {
            Outcome::Skipped(what) => skipped.push(what),
            Outcome::LeftOut(why) => left_out.push(format!("realm {name}, client {id}: {why}")),
            Outcome::Client(mut out, doc) => {
                if let Some(doc) = doc {
                    let mut file = file_name(&[name, id], ".jwks.json");
                    while files.iter().any(|(f, _)| *f == file) {
                        file = format!("x{file}");
                    }
                    out.notes.push(format!("its public keys, from the export, in {file}"));
                    out.credential = Credential::Jwks(file.clone());
                    files.push((file, doc));
                }
                left_out.extend(out.left_out.iter().map(|l| format!("realm {name}, client {id}: {l}")));
                clients.push(*out);
            }
        }
    }
    if !skipped.is_empty() {
        notes.push(format!("not imported, nothing lost: {}", skipped.join(", ")));
    }
    (clients, files)
}

/// The realm roles and, per client, the client roles the config declares; roles its syntax
/// cannot name are noted instead.
fn declared_roles(roles: &Roles, notes: &mut Vec<String>) -> (Vec<String>, BTreeMap<String, Vec<String>>) {
    let mut unnameable = BTreeSet::new();
    let mut realm_roles = Vec::new();
    let mut client_roles: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in roles.all() {
        match (r.unnameable(), r) {
            (Some(_), _) => {
                unnameable.insert(r.config_name());
            }
            (None, Role::Realm(n)) => realm_roles.push(n.clone()),
            (None, Role::Client(c, n)) => client_roles.entry(c.clone()).or_default().push(n.clone()),
        }
    }
    if !unnameable.is_empty() {
        let list: Vec<_> = unnameable.into_iter().collect();
        notes.push(format!(
            "roles tollgate's config cannot name (':' or ','), not listed: {}",
            list.join(", ")
        ));
    }
    (realm_roles, client_roles)
}

/// The realm's signing algorithm (its default, where tollgate can generate that key type,
/// else RS256), and the key file to generate when a keys folder was given.
fn signing_key(rep: &RealmRep, name: &str, opts: &Options) -> (String, Option<KeyOut>) {
    let wanted = rep
        .default_signature_algorithm
        .clone()
        .unwrap_or_else(|| "RS256".into());
    let key_alg = if GENERATED.contains(&wanted.as_str()) {
        wanted
    } else {
        "RS256".into()
    };
    let key = opts.keys_dir.map(|dir| KeyOut {
        kid: format!("{name}-1"),
        alg: key_alg.clone(),
        path: format!("{dir}/{}", file_name(&[name, &key_alg.to_lowercase()], ".pem")),
    });
    (key_alg, key)
}

/// What `run` did.
pub struct Ran {
    pub toml: String,
    pub left_out: Vec<String>,
    /// Files written, the config (with `--out`) last.
    pub wrote: Vec<PathBuf>,
}

#[derive(Debug)]
pub enum RunError {
    /// Exit 1: the file is not a realm export.
    NotAnExport(String),
    /// A file could not be read or written.
    Io(String),
}

/// The users files `kc.sh export --dir` writes beside `<realm>-realm.json`.
fn users_files(file: &Path) -> Result<Vec<Vec<u8>>, RunError> {
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let Some(prefix) = name.strip_suffix("-realm.json") else {
        return Ok(vec![]);
    };
    let dir = file.parent().unwrap_or(Path::new(""));
    let mut out = Vec::new();
    for n in 0.. {
        let p = dir.join(format!("{prefix}-users-{n}.json"));
        if !p.is_file() {
            break;
        }
        out.push(std::fs::read(&p).map_err(|e| RunError::Io(format!("cannot read {}: {e}", p.display())))?);
    }
    Ok(out)
}

/// `dir` as a config in `base` names it: relative when inside `base`, else absolute.
fn as_named_from(dir: &Path, base: &Path) -> Result<String, RunError> {
    let io = |p: &Path, e: std::io::Error| RunError::Io(format!("{}: {e}", p.display()));
    let d = dir.canonicalize().map_err(|e| io(dir, e))?;
    let b = base.canonicalize().map_err(|e| io(base, e))?;
    let shown = match d.strip_prefix(&b) {
        Ok(rel) if rel.as_os_str().is_empty() => PathBuf::from("."),
        Ok(rel) => rel.to_path_buf(),
        Err(_) => d,
    };
    Ok(shown.to_string_lossy().into_owned())
}

fn write_key(path: &Path, alg: jsonwebtoken::Algorithm) -> Result<(), RunError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let pem = crate::token::keys::generate_pem(alg).map_err(RunError::Io)?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| f.write_all(pem.as_bytes()))
        .map_err(|e| RunError::Io(format!("cannot write {}: {e}", path.display())))
}

/// Read `file`, translate it, and write the config (to `out`, else only returned), the JWKS
/// files beside it and, with `keys`, a signing key per realm that the folder does not hold yet.
pub fn run(file: &Path, out: Option<&Path>, keys: Option<&Path>) -> Result<Ran, RunError> {
    let input = std::fs::read(file).map_err(|e| RunError::Io(format!("cannot read {}: {e}", file.display())))?;
    let extra = users_files(file)?;
    let out_dir = out
        .and_then(Path::parent)
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let io = |p: &Path, e: std::io::Error| RunError::Io(format!("cannot write {}: {e}", p.display()));
    std::fs::create_dir_all(&out_dir).map_err(|e| io(&out_dir, e))?;
    let keys_named = match keys {
        Some(k) => {
            std::fs::create_dir_all(k).map_err(|e| io(k, e))?;
            Some(as_named_from(k, &out_dir)?)
        }
        None => None,
    };
    let source = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let t = translate(
        &input,
        &extra,
        &Options {
            source: &source,
            keys_dir: keys_named.as_deref(),
        },
    )
    .map_err(RunError::NotAnExport)?;
    let mut wrote = Vec::new();
    for (name, doc) in &t.jwks {
        let p = out_dir.join(name);
        std::fs::write(&p, doc).map_err(|e| io(&p, e))?;
        wrote.push(p);
    }
    if let Some(k) = keys {
        for (name, alg) in &t.keys {
            let p = k.join(name);
            if !p.exists() {
                write_key(&p, *alg)?;
                wrote.push(p);
            }
        }
    }
    if let Some(o) = out {
        std::fs::write(o, &t.toml).map_err(|e| io(o, e))?;
        wrote.push(o.to_path_buf());
    }
    Ok(Ran {
        toml: t.toml,
        left_out: t.left_out,
        wrote,
    })
}

#[cfg(test)]
mod tests;
