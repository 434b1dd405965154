//! One Keycloak client translated: whether tollgate can serve it, how it authenticates, and the
//! token Keycloak would issue it (roles after the scope rule, `scope`, `aud`), with whatever
//! that token holds and tollgate's would not.

use super::export::{attr_true, ClientRep, UserRep};
use super::jwks;
use super::render::{ClientOut, Credential};
use super::roles::{Role, Roles};
use super::scopes::{untranslatable_attributes, Catalogue, Scope, ScopesFrom};
use super::token::{Ask, Token};
use std::collections::{BTreeMap, BTreeSet};

/// Keycloak's own clients: its account console and admin machinery, which tollgate does not
/// stand in for.
pub const BUILT_IN: [&str; 6] = [
    "account",
    "account-console",
    "admin-cli",
    "broker",
    "realm-management",
    "security-admin-console",
];

pub struct RealmCtx<'a> {
    pub name: &'a str,
    pub roles: &'a Roles,
    pub scopes: &'a Catalogue,
    /// Service-account users by the client they belong to.
    pub users: &'a BTreeMap<String, &'a UserRep>,
    pub disabled: bool,
}

/// A client translated, or left out with the reason.
pub enum Outcome {
    Client(Box<ClientOut>, Option<Vec<u8>>),
    LeftOut(String),
    /// Disabled, or one of Keycloak's own: nothing is lost.
    Skipped(String),
}

/// The grants Keycloak would answer for this client, other than client_credentials.
fn other_grants(c: &ClientRep) -> Vec<&'static str> {
    let attrs = c.attributes.as_ref();
    let mut out = Vec::new();
    // Keycloak's defaults on import: the standard flow on, the others off.
    if c.standard_flow_enabled.unwrap_or(true) {
        out.push("authorization_code");
    }
    if c.implicit_flow_enabled == Some(true) {
        out.push("implicit");
    }
    if c.direct_access_grants_enabled == Some(true) {
        out.push("password");
    }
    for (key, grant) in [
        ("oauth2.device.authorization.grant.enabled", "device_code"),
        ("oidc.ciba.grant.enabled", "ciba"),
        ("standard.token.exchange.enabled", "token-exchange"),
    ] {
        if attr_true(attrs, key) {
            out.push(grant);
        }
    }
    out
}

/// A salt for this client's hash that is the same on every run, so the same export gives the
/// same file. It is derived from public names only, never from the secret.
fn salt(realm: &str, id: &str) -> [u8; 16] {
    let d = crate::secret::sha256(&[b"tollgate-import-salt", realm.as_bytes(), id.as_bytes()]);
    let mut s = [0u8; 16];
    s.copy_from_slice(&d[..16]);
    s
}

/// How the client authenticates (Missing, with a line, when the export does not hold it); Err
/// when tollgate cannot authenticate it at all.
fn credential(
    ctx: &RealmCtx,
    id: &str,
    c: &ClientRep,
    lost: &mut Vec<String>,
) -> Result<(Credential, Option<Vec<u8>>), String> {
    let kind = c.client_authenticator_type.as_deref().unwrap_or("client-secret");
    match kind {
        "client-secret" | "client-secret-jwt" => match c.secret.as_deref().map(str::trim) {
            None | Some("") => {
                lost.push(
                    "its secret: none in the export (Keycloak makes a random one on import); set `secret`".into(),
                );
                Ok((Credential::Missing, None))
            }
            Some(s) if s.chars().all(|ch| ch == '*') => {
                lost.push("its secret: the export masks it (**********); set `secret`".into());
                Ok((Credential::Missing, None))
            }
            Some(s) if kind == "client-secret-jwt" => Ok((Credential::Plain(s.to_string()), None)),
            Some(s) => match crate::secret::hash_secret_with_salt(s, &salt(ctx.name, id)) {
                Ok(phc) => Ok((Credential::Hashed(phc), None)),
                Err(e) => Err(format!("its secret cannot be hashed ({e})")),
            },
        },
        "client-jwt" => match jwks::client_jwks(c) {
            Ok(doc) => Ok((Credential::Jwks(String::new()), Some(doc))),
            Err(why) => {
                lost.push(format!("its keys: {why}"));
                Ok((Credential::Missing, None))
            }
        },
        "client-x509" => {
            Err("it authenticates with a TLS client certificate (client-x509), which tollgate does not take".into())
        }
        other => Err(format!("it authenticates with {other:?}, which tollgate does not know")),
    }
}

/// Whether tollgate can serve the client at all, and if not, why.
fn admit(ctx: &RealmCtx, c: &ClientRep, id: &str) -> Result<(), Outcome> {
    let grants = || match other_grants(c) {
        g if g.is_empty() => String::new(),
        g => format!(" ({})", g.join(", ")),
    };
    if BUILT_IN.contains(&id) || id == format!("{}-realm", ctx.name) {
        return Err(Outcome::Skipped(format!("{id} (Keycloak's own)")));
    }
    if c.enabled == Some(false) {
        return Err(Outcome::Skipped(format!("{id} (disabled)")));
    }
    if c.protocol.as_deref().is_some_and(|p| p != "openid-connect") {
        return Err(Outcome::LeftOut(format!(
            "a {} client: tollgate speaks OpenID Connect only",
            c.protocol.as_deref().unwrap_or("")
        )));
    }
    if c.bearer_only == Some(true) {
        return Err(Outcome::LeftOut(
            "bearer-only (a resource server): its roles are in client_roles; the [[routes]] that guard it are yours to write".into(),
        ));
    }
    if c.public_client == Some(true) {
        return Err(Outcome::LeftOut(format!(
            "a public client{}: tollgate issues client-credentials tokens to confidential clients only",
            grants()
        )));
    }
    if c.service_accounts_enabled != Some(true) {
        return Err(Outcome::LeftOut(format!(
            "no service account{}: tollgate issues client-credentials tokens only",
            grants()
        )));
    }
    if id.contains(':') || id.chars().any(char::is_control) {
        return Err(Outcome::LeftOut(
            "its client id holds ':', which tollgate's config cannot name".into(),
        ));
    }
    Ok(())
}

pub fn translate(ctx: &RealmCtx, c: &ClientRep) -> Outcome {
    let Some(id) = c.client_id.clone() else {
        return Outcome::Skipped("a client without a clientId".into());
    };
    if let Err(o) = admit(ctx, c, &id) {
        return o;
    }
    let mut lost = Vec::new();
    let (credential, jwks_doc) = match credential(ctx, &id, c, &mut lost) {
        Ok(x) => x,
        Err(why) => return Outcome::LeftOut(why),
    };
    lost.extend(untranslatable(c));

    let user = ctx.users.get(&id).copied();
    let consent = c.consent_required == Some(true);
    let full = c.full_scope_allowed.unwrap_or(!consent);
    let scopes = ctx.scopes.of_client(c);
    let ask = Ask {
        ctx,
        client: c,
        id: &id,
        user,
        full_scope: full,
    };
    let t = ask.token(&scopes.default);
    lost.extend(t.lost.iter().cloned());
    lost.extend(ask.optional_effects(&scopes.default, &scopes.optional, &t));

    let shown = |set: &BTreeSet<Role>| -> Vec<String> {
        let mut v: Vec<String> = set
            .iter()
            .filter(|r| t.shown(r) && r.unnameable().is_none())
            .map(Role::config_name)
            .collect();
        v.sort();
        v
    };
    let notes = notes(ctx, user, &t);
    let disabled = if ctx.disabled {
        Some("the realm is disabled in the export".into())
    } else {
        user.filter(|u| u.enabled != Some(true))
            .map(|_| "its service-account user is disabled in the export (Keycloak refuses its tokens)".to_string())
    };
    let in_scope = |list: &[&Scope]| {
        list.iter()
            .filter(|s| s.in_token_scope)
            .map(|s| s.name.clone())
            .collect::<Vec<_>>()
    };
    Outcome::Client(
        Box::new(ClientOut {
            id,
            notes,
            left_out: lost,
            disabled,
            credential,
            use_refresh_token: attr_true(c.attributes.as_ref(), "client_credentials.use_refresh_token"),
            service_account_roles: shown(&t.user),
            full_scope_allowed: full,
            full_scope_note: c.full_scope_allowed.is_none().then(|| {
                format!("fullScopeAllowed is not in the export: Keycloak's default ({full}, as consentRequired is {consent})")
            }),
            scope_roles: t.scope.as_ref().map(&shown).unwrap_or_default(),
            default_scopes: in_scope(&scopes.default),
            optional_scopes: in_scope(&scopes.optional),
            scopes_note: scopes_note(scopes.from),
            audience_note: if t.aud.is_empty() {
                "Keycloak's tokens for it carry no `aud` (no audience mapper, no roles of other clients)".into()
            } else {
                "`aud` as Keycloak sets it: audience mappers, and the clients of its roles (audience resolve)".into()
            },
            audience: t.aud.into_iter().collect(),
        }),
        jwks_doc,
    )
}

/// Where the client's roles came from, and which claims Keycloak leaves out of its tokens.
fn notes(ctx: &RealmCtx, user: Option<&UserRep>, t: &Token) -> Vec<String> {
    let mut notes = vec![match user {
        Some(u) => format!(
            "service account: user {:?} of the export",
            u.username.as_deref().unwrap_or("")
        ),
        None => format!(
            "no service-account user in the export: Keycloak makes one on first use, with the default role {}",
            ctx.roles
                .default_role
                .as_ref()
                .map(Role::config_name)
                .unwrap_or_default()
        ),
    }];
    if !t.realm_claim {
        notes.push("no realm-role mapper reaches its tokens (no `roles` scope): Keycloak's carry no realm_access, nor do these".into());
    }
    if !t.all_clients_claim && t.client_claims.is_empty() {
        notes
            .push("no client-role mapper reaches its tokens: Keycloak's carry no resource_access, nor do these".into());
    }
    notes
}

/// What the client does in Keycloak beyond client_credentials that tollgate has no setting for.
fn untranslatable(c: &ClientRep) -> Vec<String> {
    let mut out = Vec::new();
    let grants = other_grants(c);
    if !grants.is_empty() {
        out.push(format!(
            "its grants {}: tollgate issues client_credentials only",
            grants.join(", ")
        ));
    }
    out.extend(untranslatable_attributes(c));
    out
}

fn scopes_note(from: ScopesFrom) -> Option<String> {
    match from {
        ScopesFrom::Client => None,
        ScopesFrom::Realm => Some("the client names no client scopes: the realm's defaults".into()),
        ScopesFrom::BuiltIn => Some("the export has no client scopes: Keycloak's built-in defaults".into()),
    }
}
