//! The token Keycloak would issue a client: its service account's roles after the scope rule
//! (`TokenManager.getAccess`), which of them its mappers write to realm_access and
//! resource_access, its `aud`, and the claims tollgate's token would lack.

use super::client::RealmCtx;
use super::export::{ClientRep, UserRep};
use super::roles::{Holder, Role};
use super::scopes::{effect, Effect, Scope};
use std::collections::BTreeSet;

/// One client's request, with everything but the client scopes fixed.
pub struct Ask<'a> {
    pub ctx: &'a RealmCtx<'a>,
    pub client: &'a ClientRep,
    pub id: &'a str,
    pub user: Option<&'a UserRep>,
    pub full_scope: bool,
}

/// What Keycloak's token for a client holds, as far as tollgate's config can say it.
pub struct Token {
    pub user: BTreeSet<Role>,
    pub scope: Option<BTreeSet<Role>>,
    pub granted: BTreeSet<Role>,
    pub realm_claim: bool,
    pub all_clients_claim: bool,
    pub client_claims: BTreeSet<String>,
    pub aud: BTreeSet<String>,
    pub lost: Vec<String>,
}

impl Token {
    /// Whether the role reaches the token's realm_access or resource_access.
    pub fn shown(&self, r: &Role) -> bool {
        match r {
            Role::Realm(_) => self.realm_claim,
            Role::Client(c, _) => self.all_clients_claim || self.client_claims.contains(c),
        }
    }

    pub fn roles(&self) -> BTreeSet<&Role> {
        self.granted
            .iter()
            .filter(|r| self.shown(r) && r.unnameable().is_none())
            .collect()
    }
}

impl Ask<'_> {
    /// The token for a request that asks for `scopes` (the default ones, and any optional).
    pub fn token(&self, scopes: &[&Scope]) -> Token {
        let (roles, id, user) = (self.ctx.roles, self.id, self.user);
        let user_roles = roles.expand(roles.of_user(user));
        let scope = (!self.full_scope).then(|| {
            let mut roots: Vec<Role> = roles.of_client(id).collect();
            roots.extend(roles.mapped(&Holder::Client(id.to_string())));
            for s in scopes {
                roots.extend(roles.mapped(&Holder::Scope(s.name.clone())));
            }
            roles.expand(roots)
        });
        let granted = match &scope {
            None => user_roles.clone(),
            Some(s) => user_roles.intersection(s).cloned().collect(),
        };
        let mut t = Token {
            user: user_roles,
            scope,
            granted,
            realm_claim: false,
            all_clients_claim: false,
            client_claims: BTreeSet::new(),
            aud: BTreeSet::new(),
            lost: Vec::new(),
        };
        let elsewhere = self.apply_mappers(&mut t, scopes);
        for (realm, claim, label) in elsewhere {
            if t.granted.iter().any(|r| matches!(r, Role::Realm(_)) == realm) {
                let kind = if realm { "realm" } else { "client" };
                t.lost
                    .push(format!("claim {claim:?} with its {kind} roles (from {label})"));
            }
        }
        let unnameable: Vec<String> = t
            .granted
            .iter()
            .filter(|r| t.shown(r))
            .filter_map(|r| {
                Some(format!(
                    "role {:?}: {} cannot stand in tollgate's config",
                    r.config_name(),
                    r.unnameable()?
                ))
            })
            .collect();
        t.lost.extend(unnameable);
        t
    }

    /// Apply the mappers of the client and of its scopes; returns the role mappers that write
    /// under other claim names (a loss only where there are roles to write).
    fn apply_mappers(&self, t: &mut Token, scopes: &[&Scope]) -> Vec<(bool, String, String)> {
        let (id, client, user) = (self.id, self.client, self.user);
        let mut resolve = false;
        let mut elsewhere = Vec::new();
        let mappers = client
            .protocol_mappers
            .iter()
            .flatten()
            .chain(scopes.iter().flat_map(|s| s.mappers.iter()));
        for m in mappers {
            match effect(m, client, user) {
                Effect::None => {}
                Effect::RealmRoles => t.realm_claim = true,
                Effect::ClientRoles(None) => t.all_clients_claim = true,
                Effect::ClientRoles(Some(c)) => {
                    t.client_claims.insert(c);
                }
                Effect::RolesClaim { realm, claim } => elsewhere.push((realm, claim, m.label())),
                Effect::AudienceResolve => resolve = true,
                Effect::Audience(a) => {
                    t.aud.insert(a);
                }
                Effect::LeftOut(what) => t.lost.push(what),
            }
        }
        if resolve {
            // AudienceResolveProtocolMapper: every client it holds roles of, but itself.
            for r in &t.granted {
                if let Role::Client(c, _) = r {
                    if c != id {
                        t.aud.insert(c.clone());
                    }
                }
            }
        }
        elsewhere
    }

    /// Optional client scopes change Keycloak's token only when asked for; tollgate's tokens for a
    /// client are the same whatever it asks for, so each such change is named.
    pub fn optional_effects(&self, default: &[&Scope], optional: &[&Scope], base: &Token) -> Vec<String> {
        let mut out = Vec::new();
        for s in optional {
            if !s.in_token_scope {
                out.push(format!(
                    "optional scope {:?}: Keycloak takes it without naming it in `scope`; asking tollgate for it is invalid_scope",
                    s.name
                ));
            }
            let mut with: Vec<&Scope> = default.to_vec();
            with.push(s);
            let t = self.token(&with);
            let base_roles = base.roles();
            let extra_roles: Vec<String> = t.roles().difference(&base_roles).map(|r| r.config_name()).collect();
            let extra_aud: Vec<&String> = t.aud.difference(&base.aud).collect();
            let mut adds = Vec::new();
            if !extra_roles.is_empty() {
                adds.push(format!("roles {extra_roles:?}"));
            }
            if !extra_aud.is_empty() {
                adds.push(format!("aud {extra_aud:?}"));
            }
            adds.extend(t.lost.iter().filter(|l| !base.lost.contains(l)).cloned());
            if !adds.is_empty() {
                out.push(format!(
                    "optional scope {:?}: when asked for, Keycloak adds {}; tollgate's tokens are the same either way",
                    s.name,
                    adds.join("; ")
                ));
            }
        }
        out
    }
}
