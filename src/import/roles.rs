//! Roles as Keycloak resolves them for a service account: the user's realm and client roles and
//! its groups' (with every parent group's), composites expanded recursively across realm and
//! client roles (`RoleUtils.expandCompositeRoles`, safe on cycles), the realm's default role for
//! a service account the export does not hold, and the scope mappings that bound a client
//! without full scope (`TokenManager.getAccess`).

use super::export::{Composites, GroupRep, RealmRep, UserRep};
use std::collections::{BTreeMap, BTreeSet};

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Realm(String),
    Client(String, String),
}

impl Role {
    /// tollgate's spelling: `role` for a realm role, `client:role` for a client role.
    pub fn config_name(&self) -> String {
        match self {
            Role::Realm(r) => r.clone(),
            Role::Client(c, r) => format!("{c}:{r}"),
        }
    }

    /// Why tollgate cannot name this role, if it cannot: its config splits `client:role` at the
    /// first ':' and its `X-Auth-Roles` header at ','.
    pub fn unnameable(&self) -> Option<&'static str> {
        let bad = |s: &str| s.is_empty() || s.contains(',') || s.chars().any(char::is_control);
        match self {
            Role::Realm(r) if bad(r) || r.contains(':') => Some("a realm role name with ':' or ','"),
            Role::Client(c, _) if c.is_empty() || c.contains(':') || c.chars().any(char::is_control) => {
                Some("a client id with ':'")
            }
            Role::Client(_, r) if bad(r) => Some("a role name with ','"),
            _ => None,
        }
    }
}

/// Who holds scope mappings: a client, or a client scope.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Holder {
    Client(String),
    Scope(String),
}

#[derive(Debug, Default)]
struct Group {
    parent: Option<String>,
    roles: Vec<Role>,
}

/// Every role of a realm with its direct composites, its groups, its scope mappings and its
/// default role.
#[derive(Debug, Default)]
pub struct Roles {
    composites: BTreeMap<Role, BTreeSet<Role>>,
    groups: BTreeMap<String, Group>,
    default_groups: Vec<String>,
    mappings: BTreeMap<Holder, BTreeSet<Role>>,
    pub default_role: Option<Role>,
    /// How the default role came to be, where Keycloak made it on import.
    pub default_role_origin: Option<String>,
}

/// Roles named by a composite, a group or a user: realm roles, then each client's.
fn named(realm: Option<&Vec<String>>, client: Option<&BTreeMap<String, Vec<String>>>) -> Vec<Role> {
    let mut out: Vec<Role> = realm
        .into_iter()
        .flatten()
        .map(|r| Role::Realm(r.trim().to_string()))
        .collect();
    for (c, list) in client.into_iter().flatten() {
        out.extend(list.iter().map(|r| Role::Client(c.clone(), r.trim().to_string())));
    }
    out
}

fn composites_of(c: Option<&Composites>) -> Vec<Role> {
    c.map(|c| named(c.realm.as_ref(), c.client.as_ref()))
        .unwrap_or_default()
}

impl Roles {
    pub fn from_export(rep: &RealmRep) -> Roles {
        let mut roles = Roles::default();
        let defined = rep.roles.as_ref();
        for r in defined.and_then(|d| d.realm.as_ref()).into_iter().flatten() {
            if let Some(name) = &r.name {
                roles.define(Role::Realm(name.clone()), composites_of(r.composites.as_ref()));
            }
        }
        for (client, list) in defined.and_then(|d| d.client.as_ref()).into_iter().flatten() {
            for r in list {
                if let Some(name) = &r.name {
                    roles.define(
                        Role::Client(client.clone(), name.clone()),
                        composites_of(r.composites.as_ref()),
                    );
                }
            }
        }
        // Keycloak creates these in every realm it imports.
        for name in ["offline_access", "uma_authorization"] {
            roles.define(Role::Realm(name.into()), vec![]);
        }
        roles.default_role(rep);
        for g in rep.groups.iter().flatten() {
            roles.group(g, None);
        }
        roles.default_groups = rep.default_groups.iter().flatten().map(|p| group_path(p)).collect();
        for m in rep.scope_mappings.iter().flatten() {
            let holder = holder(
                m.client.as_ref(),
                m.client_scope.as_ref().or(m.client_template.as_ref()),
            );
            let list: Vec<Role> = m.roles.iter().flatten().map(|r| Role::Realm(r.trim().into())).collect();
            roles.map_scope(holder, list);
        }
        for (owner, list) in rep.client_scope_mappings.iter().flatten() {
            for m in list {
                let holder = holder(
                    m.client.as_ref(),
                    m.client_scope.as_ref().or(m.client_template.as_ref()),
                );
                let list: Vec<Role> = m
                    .roles
                    .iter()
                    .flatten()
                    .map(|r| Role::Client(owner.clone(), r.trim().into()))
                    .collect();
                roles.map_scope(holder, list);
            }
        }
        roles
    }

    /// The scope mapping of the `offline_access` client scope that Keycloak makes with a realm
    /// whose export has no client scopes.
    pub fn map_built_in_scopes(&mut self) {
        let offline = Role::Realm("offline_access".into());
        self.map_scope(Some(Holder::Scope("offline_access".into())), vec![offline]);
    }

    fn define(&mut self, role: Role, children: Vec<Role>) {
        for child in &children {
            self.composites.entry(child.clone()).or_default();
        }
        self.composites.entry(role).or_default().extend(children);
    }

    fn map_scope(&mut self, holder: Option<Holder>, list: Vec<Role>) {
        if let Some(h) = holder {
            for r in &list {
                self.define(r.clone(), vec![]);
            }
            self.mappings.entry(h).or_default().extend(list);
        }
    }

    /// Keycloak 13+ names it in `defaultRole`; older exports list `defaultRoles` on the realm and
    /// its clients, which Keycloak folds into `default-roles-<realm>` on import; a file with
    /// neither gets Keycloak's default for a new realm.
    fn default_role(&mut self, rep: &RealmRep) {
        let realm = rep.realm.as_deref().unwrap_or_default();
        if let Some(name) = rep.default_role.as_ref().and_then(|r| r.name.clone()) {
            let extra = composites_of(rep.default_role.as_ref().and_then(|r| r.composites.as_ref()));
            self.define(Role::Realm(name.clone()), extra);
            self.default_role = Some(Role::Realm(name));
            return;
        }
        let role = Role::Realm(format!("default-roles-{}", realm.to_lowercase()));
        let mut legacy: Vec<Role> = rep
            .default_roles
            .iter()
            .flatten()
            .map(|r| Role::Realm(r.clone()))
            .collect();
        for c in rep.clients.iter().flatten() {
            if let Some(id) = &c.client_id {
                legacy.extend(
                    c.default_roles
                        .iter()
                        .flatten()
                        .map(|r| Role::Client(id.clone(), r.clone())),
                );
            }
        }
        let defined = |client: Option<&str>, name: &str| {
            let roles = rep.roles.as_ref();
            let list = match client {
                None => roles.and_then(|r| r.realm.as_ref()),
                Some(c) => roles.and_then(|r| r.client.as_ref()).and_then(|m| m.get(c)),
            };
            list.into_iter().flatten().any(|r| r.name.as_deref() == Some(name))
        };
        let Role::Realm(role_name) = &role else { return };
        if defined(None, role_name) {
            self.define(role.clone(), legacy);
        } else if rep.default_roles.is_some() || !legacy.is_empty() {
            self.default_role_origin = Some("made by Keycloak on import from the export's defaultRoles".into());
            self.define(role.clone(), legacy);
        } else {
            self.default_role_origin = Some("Keycloak's default for a new realm".into());
            let account = |r: &str| Role::Client("account".into(), r.into());
            if !defined(Some("account"), "manage-account") {
                self.define(account("manage-account"), vec![account("manage-account-links")]);
            }
            let children = vec![
                Role::Realm("offline_access".into()),
                Role::Realm("uma_authorization".into()),
                account("view-profile"),
                account("manage-account"),
            ];
            self.define(role.clone(), children);
        }
        self.default_role = Some(role);
    }

    fn group(&mut self, g: &GroupRep, parent: Option<&str>) {
        let Some(name) = &g.name else { return };
        let path = match (&g.path, parent) {
            (Some(p), _) => group_path(p),
            (None, Some(parent)) => format!("{parent}/{name}"),
            (None, None) => format!("/{name}"),
        };
        let roles = named(g.realm_roles.as_ref(), g.client_roles.as_ref());
        for r in &roles {
            self.define(r.clone(), vec![]);
        }
        self.groups.insert(
            path.clone(),
            Group {
                parent: parent.map(str::to_string),
                roles,
            },
        );
        for sub in g.sub_groups.iter().flatten() {
            self.group(sub, Some(&path));
        }
    }

    /// Every role of a client, as the scope of a client without full scope always holds them.
    pub fn of_client<'a>(&'a self, client: &'a str) -> impl Iterator<Item = Role> + 'a {
        self.composites
            .keys()
            .filter(move |r| matches!(r, Role::Client(c, _) if c == client))
            .cloned()
    }

    pub fn mapped(&self, holder: &Holder) -> impl Iterator<Item = Role> + '_ {
        self.mappings.get(holder).into_iter().flatten().cloned()
    }

    /// `roots` with every composite below them (`RoleUtils.expandCompositeRoles`).
    pub fn expand(&self, roots: impl IntoIterator<Item = Role>) -> BTreeSet<Role> {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<Role> = roots.into_iter().collect();
        while let Some(r) = stack.pop() {
            if seen.contains(&r) {
                continue;
            }
            if let Some(children) = self.composites.get(&r) {
                stack.extend(children.iter().filter(|c| !seen.contains(*c)).cloned());
            }
            seen.insert(r);
        }
        seen
    }

    /// The direct role mappings of a service account (`RoleUtils.getDeepUserRoleMappings` before
    /// expansion): its own, and those of its groups and their parents. A service account the
    /// export does not hold is made by Keycloak on first use, with the default role and groups.
    pub fn of_user(&self, user: Option<&UserRep>) -> Vec<Role> {
        let (mut out, groups) = match user {
            Some(u) => (
                named(u.realm_roles.as_ref(), u.client_roles.as_ref()),
                u.groups.iter().flatten().map(|p| group_path(p)).collect(),
            ),
            None => (
                self.default_role.clone().into_iter().collect(),
                self.default_groups.clone(),
            ),
        };
        for path in groups {
            let mut at = Some(path);
            while let Some(p) = at {
                let Some(g) = self.groups.get(&p) else { break };
                out.extend(g.roles.iter().cloned());
                at = g.parent.clone();
            }
        }
        out
    }

    /// Every role the realm defines or names, for the config's role lists.
    pub fn all(&self) -> impl Iterator<Item = &Role> {
        self.composites.keys()
    }
}

fn holder(client: Option<&String>, scope: Option<&String>) -> Option<Holder> {
    match (client, scope) {
        (Some(c), _) => Some(Holder::Client(c.clone())),
        (None, Some(s)) => Some(Holder::Scope(s.clone())),
        _ => None,
    }
}

fn group_path(p: &str) -> String {
    if p.starts_with('/') {
        p.to_string()
    } else {
        format!("/{p}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn realm(json: &str) -> Roles {
        Roles::from_export(&serde_json::from_str(json).unwrap())
    }

    fn names(set: &BTreeSet<Role>) -> Vec<String> {
        set.iter().map(Role::config_name).collect()
    }

    #[test]
    fn composites_expand_across_realm_and_client_roles_and_survive_cycles() {
        let r = realm(
            r#"{"realm":"r","roles":{"realm":[
                {"name":"a","composites":{"realm":["b"],"client":{"api":["read"]}}},
                {"name":"b","composites":{"realm":["a"]}}],
              "client":{"api":[{"name":"read","composites":{"client":{"api":["list"]},"realm":["b"]}}]}}}"#,
        );
        let got = r.expand([Role::Realm("a".into())]);
        assert_eq!(names(&got), ["a", "b", "api:list", "api:read"]);
    }

    #[test]
    fn a_missing_service_account_gets_the_default_role_and_groups() {
        let r = realm(
            r#"{"realm":"Demo","defaultRole":{"name":"default-roles-demo"},
              "roles":{"realm":[{"name":"default-roles-demo","composites":{"realm":["offline_access"]}}]},
              "defaultGroups":["/ops"],
              "groups":[{"name":"ops","path":"/ops","realmRoles":["oncall"],
                         "subGroups":[{"name":"db","path":"/ops/db","clientRoles":{"db":["admin"]}}]}]}"#,
        );
        let missing = r.expand(r.of_user(None));
        assert_eq!(names(&missing), ["default-roles-demo", "offline_access", "oncall"]);
        let user: UserRep = serde_json::from_str(r#"{"groups":["/ops/db"],"realmRoles":[" x "]}"#).unwrap();
        assert_eq!(names(&r.expand(r.of_user(Some(&user)))), ["oncall", "x", "db:admin"]);
    }

    #[test]
    fn a_realm_without_a_default_role_gets_keycloaks() {
        let r = realm(
            r#"{"realm":"Old","defaultRoles":["offline_access"],"clients":[{"clientId":"account","defaultRoles":["view-profile"]}]}"#,
        );
        assert_eq!(r.default_role, Some(Role::Realm("default-roles-old".into())));
        assert_eq!(
            names(&r.expand(r.of_user(None))),
            ["default-roles-old", "offline_access", "account:view-profile"]
        );
        let fresh = realm(r#"{"realm":"new"}"#);
        assert_eq!(
            names(&fresh.expand(fresh.of_user(None))),
            [
                "default-roles-new",
                "offline_access",
                "uma_authorization",
                "account:manage-account",
                "account:manage-account-links",
                "account:view-profile"
            ]
        );
    }

    #[test]
    fn scope_mappings_are_held_by_clients_and_client_scopes() {
        let r = realm(
            r#"{"realm":"r","scopeMappings":[{"client":"c","roles":["x"]},{"clientScope":"s","roles":["y"]}],
              "clientScopeMappings":{"api":[{"client":"c","roles":["read"]}]}}"#,
        );
        let c: Vec<_> = r.mapped(&Holder::Client("c".into())).map(|x| x.config_name()).collect();
        assert_eq!(c, ["x", "api:read"]);
        let s: Vec<_> = r.mapped(&Holder::Scope("s".into())).map(|x| x.config_name()).collect();
        assert_eq!(s, ["y"]);
    }

    #[test]
    fn names_tollgate_cannot_hold_are_told_apart() {
        assert!(Role::Realm("a:b".into()).unnameable().is_some());
        assert!(Role::Realm("a,b".into()).unnameable().is_some());
        assert!(Role::Client("urn:x".into(), "r".into()).unnameable().is_some());
        assert!(Role::Client("kafka".into(), "topic:x:owner".into())
            .unnameable()
            .is_none());
        assert!(Role::Realm("Semantic Model Management".into()).unnameable().is_none());
    }
}
