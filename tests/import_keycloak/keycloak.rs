//! What Keycloak puts in a service account's access token (no `scope` parameter asked), read
//! from a realm export's JSON. Written from Keycloak's source (RoleUtils.getDeepUserRoleMappings
//! and expandCompositeRoles, TokenManager.getAccess, DefaultClientSessionContext.getScopeString,
//! the role, audience and audience-resolve mappers, RepresentationToModel's import defaults) and
//! kept apart from tollgate's importer, so that the tests compare two separate readings.

use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Token {
    pub realm_roles: BTreeSet<String>,
    pub resource_access: BTreeMap<String, BTreeSet<String>>,
    pub scope: BTreeSet<String>,
    pub aud: BTreeSet<String>,
}

/// A role: ("", name) for a realm role, (client id, name) for a client role.
pub type Role = (String, String);

fn list(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str()).map(str::to_string).collect())
        .unwrap_or_default()
}

/// `{"realm": [...], "client": {"c": [...]}}` as roles.
fn named(realm: &Value, client: &Value) -> Vec<Role> {
    let mut out: Vec<Role> = list(realm)
        .into_iter()
        .map(|r| (String::new(), r.trim().to_string()))
        .collect();
    if let Some(m) = client.as_object() {
        for (c, roles) in m {
            out.extend(list(roles).into_iter().map(|r| (c.clone(), r.trim().to_string())));
        }
    }
    out
}

fn is_true(v: &Value) -> bool {
    match v {
        Value::Bool(b) => *b,
        Value::String(s) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

struct Realm<'a> {
    v: &'a Value,
    composites: HashMap<Role, Vec<Role>>,
    default_role: Role,
}

impl<'a> Realm<'a> {
    fn new(v: &'a Value) -> Self {
        let mut composites: HashMap<Role, Vec<Role>> = HashMap::new();
        for r in v["roles"]["realm"].as_array().into_iter().flatten() {
            let c = &r["composites"];
            composites.insert(
                (String::new(), r["name"].as_str().unwrap_or("").into()),
                named(&c["realm"], &c["client"]),
            );
        }
        if let Some(m) = v["roles"]["client"].as_object() {
            for (client, roles) in m {
                for r in roles.as_array().into_iter().flatten() {
                    let c = &r["composites"];
                    composites.insert(
                        (client.clone(), r["name"].as_str().unwrap_or("").into()),
                        named(&c["realm"], &c["client"]),
                    );
                }
            }
        }
        // The default role: named (Keycloak 13+); else `default-roles-<realm>`, to which import
        // adds the legacy `defaultRoles` lists (convertDeprecatedDefaultRoles), or which is
        // Keycloak's default for a new realm when the file has neither.
        let realm = v["realm"].as_str().unwrap_or("");
        let default_role = match v["defaultRole"]["name"].as_str() {
            Some(n) => (String::new(), n.to_string()),
            None => {
                let role = (String::new(), format!("default-roles-{}", realm.to_lowercase()));
                let mut legacy: Vec<Role> = list(&v["defaultRoles"])
                    .into_iter()
                    .map(|r| (String::new(), r))
                    .collect();
                for c in v["clients"].as_array().into_iter().flatten() {
                    let id = c["clientId"].as_str().unwrap_or("").to_string();
                    legacy.extend(list(&c["defaultRoles"]).into_iter().map(|r| (id.clone(), r)));
                }
                let is_legacy = v.get("defaultRoles").is_some() || !legacy.is_empty();
                if !is_legacy && !composites.contains_key(&role) {
                    let acct = |r: &str| ("account".to_string(), r.to_string());
                    legacy = vec![
                        (String::new(), "offline_access".into()),
                        (String::new(), "uma_authorization".into()),
                        acct("view-profile"),
                        acct("manage-account"),
                    ];
                    composites
                        .entry(acct("manage-account"))
                        .or_insert_with(|| vec![acct("manage-account-links")]);
                }
                composites.entry(role.clone()).or_default().extend(legacy);
                role
            }
        };
        Realm {
            v,
            composites,
            default_role,
        }
    }

    fn expand(&self, roots: Vec<Role>) -> HashSet<Role> {
        let mut seen = HashSet::new();
        let mut todo = roots;
        while let Some(r) = todo.pop() {
            if seen.insert(r.clone()) {
                todo.extend(self.composites.get(&r).cloned().unwrap_or_default());
            }
        }
        seen
    }

    /// Group roles of `path` and of every group above it.
    fn group_roles(&self, path: &str) -> Vec<Role> {
        fn walk(groups: &Value, parent: &str, want: &str, out: &mut Vec<Role>) -> bool {
            for g in groups.as_array().into_iter().flatten() {
                let p = g["path"]
                    .as_str()
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("{parent}/{}", g["name"].as_str().unwrap_or("")));
                let mine = named(&g["realmRoles"], &g["clientRoles"]);
                if p == want || walk(&g["subGroups"], &p, want, out) {
                    out.extend(mine);
                    return true;
                }
            }
            false
        }
        let mut out = Vec::new();
        let want = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/{path}")
        };
        walk(&self.v["groups"], "", &want, &mut out);
        out
    }

    fn user_roles(&self, client_id: &str) -> HashSet<Role> {
        let user = self.v["users"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|u| u["serviceAccountClientId"] == client_id);
        let mut roots = Vec::new();
        let groups = match user {
            Some(u) => {
                roots.extend(named(&u["realmRoles"], &u["clientRoles"]));
                list(&u["groups"])
            }
            // Made on first use: the default role and the default groups.
            None => {
                roots.push(self.default_role.clone());
                list(&self.v["defaultGroups"])
            }
        };
        for g in groups {
            roots.extend(self.group_roles(&g));
        }
        self.expand(roots)
    }

    /// Keycloak's built-in client scopes, as a realm without `clientScopes` gets them.
    fn built_in_scopes() -> Value {
        let on = |claim: &str, kind: &str| json!({"protocolMapper": kind, "config": {"claim.name": claim, "access.token.claim": "true"}});
        json!([
            {"name": "profile"}, {"name": "email"},
            {"name": "address"}, {"name": "phone"}, {"name": "offline_access"}, {"name": "microprofile-jwt"},
            {"name": "roles", "attributes": {"include.in.token.scope": "false"}, "protocolMappers": [
                on("realm_access.roles", "oidc-usermodel-realm-role-mapper"),
                on("resource_access.${client_id}.roles", "oidc-usermodel-client-role-mapper"),
                {"protocolMapper": "oidc-audience-resolve-mapper", "config": {}}]},
            {"name": "web-origins", "attributes": {"include.in.token.scope": "false"}},
            {"name": "acr", "attributes": {"include.in.token.scope": "false"}},
            {"name": "basic", "attributes": {"include.in.token.scope": "false"}},
        ])
    }

    /// The client's default client scopes of its protocol.
    fn default_scopes(&self, client: &Value) -> Vec<Value> {
        let built_in = self.v.get("clientScopes").is_none();
        let all = if built_in {
            Self::built_in_scopes()
        } else {
            self.v["clientScopes"].clone()
        };
        let names = if client.get("defaultClientScopes").is_some() || client.get("optionalClientScopes").is_some() {
            list(&client["defaultClientScopes"])
        } else if self.v.get("defaultDefaultClientScopes").is_some() {
            list(&self.v["defaultDefaultClientScopes"])
        } else if built_in {
            ["profile", "email", "roles", "web-origins", "acr", "basic"]
                .map(String::from)
                .to_vec()
        } else {
            vec![]
        };
        let mut out: Vec<Value> = Vec::new();
        for n in names {
            if let Some(s) = all.as_array().into_iter().flatten().find(|s| s["name"] == n.as_str()) {
                let oidc = s["protocol"].as_str().is_none_or(|p| p == "openid-connect");
                if oidc && !out.iter().any(|o| o["name"] == s["name"]) {
                    out.push(s.clone());
                }
            }
        }
        out
    }

    /// TokenManager.getAccess's scope: the client's own roles, and the scope mappings of the
    /// client and of its client scopes, expanded.
    fn scope_roles(&self, client_id: &str, scopes: &[Value]) -> HashSet<Role> {
        let mut roots: Vec<Role> = list(&self.v["roles"]["client"][client_id])
            .into_iter()
            .map(|r| (client_id.to_string(), r))
            .collect();
        roots.extend(self.composites.keys().filter(|(c, _)| c == client_id).cloned());
        let scope_names: Vec<&str> = scopes.iter().filter_map(|s| s["name"].as_str()).collect();
        let holds =
            |m: &Value| m["client"] == client_id || m["clientScope"].as_str().is_some_and(|s| scope_names.contains(&s));
        for m in self.v["scopeMappings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| holds(m))
        {
            roots.extend(list(&m["roles"]).into_iter().map(|r| (String::new(), r)));
        }
        if let Some(owners) = self.v["clientScopeMappings"].as_object() {
            for (owner, ms) in owners {
                for m in ms.as_array().into_iter().flatten().filter(|m| holds(m)) {
                    roots.extend(list(&m["roles"]).into_iter().map(|r| (owner.clone(), r)));
                }
            }
        }
        self.expand(roots)
    }
}

/// The token Keycloak issues `client_id` from this export, for a request without `scope`.
pub fn expected(v: &Value, client_id: &str) -> Token {
    let realm = Realm::new(v);
    let client = v["clients"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["clientId"] == client_id)
        .cloned()
        .unwrap_or_default();
    let scopes = realm.default_scopes(&client);
    let full = match client.get("fullScopeAllowed") {
        Some(f) => is_true(f),
        None => !client.get("consentRequired").is_some_and(is_true),
    };
    let mut granted = realm.user_roles(client_id);
    if !full {
        // The client's own roles are always in its scope, those its import created included.
        let scope = realm.scope_roles(client_id, &scopes);
        granted.retain(|r| scope.contains(r) || r.0 == client_id);
    }
    let mut t = Token::default();
    let mut mappers: Vec<Value> = list_values(&client["protocolMappers"]);
    for s in &scopes {
        mappers.extend(list_values(&s["protocolMappers"]));
        let include = s["attributes"].get("include.in.token.scope").is_none_or(is_true);
        if include {
            t.scope.insert(s["name"].as_str().unwrap_or("").to_string());
        }
    }
    let (mut realm_claim, mut all_clients, mut some_clients, mut resolve) = (false, false, BTreeSet::new(), false);
    for m in mappers
        .iter()
        .filter(|m| m["protocol"].as_str().is_none_or(|p| p == "openid-connect"))
    {
        let cfg = &m["config"];
        let in_access = cfg["access.token.claim"] == "true";
        match m["protocolMapper"].as_str().unwrap_or("") {
            "oidc-usermodel-realm-role-mapper" if in_access && cfg["claim.name"] == "realm_access.roles" => {
                realm_claim = true
            }
            "oidc-usermodel-client-role-mapper"
                if in_access && cfg["claim.name"] == "resource_access.${client_id}.roles" =>
            {
                match cfg["usermodel.clientRoleMapping.clientId"]
                    .as_str()
                    .filter(|c| !c.is_empty())
                {
                    Some(c) => {
                        some_clients.insert(c.to_string());
                    }
                    None => all_clients = true,
                }
            }
            "oidc-audience-resolve-mapper" if cfg.get("access.token.claim").is_none_or(|v| v == "true") => {
                resolve = true
            }
            "oidc-audience-mapper" if in_access => {
                let pick = |k: &str| cfg[k].as_str().filter(|s| !s.trim().is_empty());
                if let Some(a) = pick("included.client.audience").or_else(|| pick("included.custom.audience")) {
                    t.aud.insert(a.to_string());
                }
            }
            _ => {}
        }
    }
    for (c, r) in &granted {
        if c.is_empty() {
            if realm_claim {
                t.realm_roles.insert(r.clone());
            }
        } else {
            if all_clients || some_clients.contains(c) {
                t.resource_access.entry(c.clone()).or_default().insert(r.clone());
            }
            if resolve && c != client_id {
                t.aud.insert(c.clone());
            }
        }
    }
    t
}

fn list_values(v: &Value) -> Vec<Value> {
    v.as_array().cloned().unwrap_or_default()
}

/// Roles that tollgate's config cannot name (its importer leaves them out and says so).
pub fn unnameable(client: &str, role: &str) -> bool {
    let bad = |s: &str| s.contains(',') || s.chars().any(char::is_control);
    if client.is_empty() {
        role.contains(':') || bad(role)
    } else {
        client.contains(':') || bad(role)
    }
}

/// `expected` without the roles tollgate cannot name.
pub fn expected_in_tollgate(v: &Value, client_id: &str) -> (Token, Vec<String>) {
    let mut t = expected(v, client_id);
    let mut dropped = Vec::new();
    t.realm_roles.retain(|r| {
        let keep = !unnameable("", r);
        if !keep {
            dropped.push(r.clone());
        }
        keep
    });
    for (c, roles) in t.resource_access.iter_mut() {
        roles.retain(|r| {
            let keep = !unnameable(c, r);
            if !keep {
                dropped.push(format!("{c}:{r}"));
            }
            keep
        });
    }
    t.resource_access.retain(|_, r| !r.is_empty());
    (t, dropped)
}

/// The same four claims, read from a token tollgate issued.
pub fn of_claims(claims: &Value) -> Token {
    let set = |v: &Value| list(v).into_iter().collect::<BTreeSet<_>>();
    let mut t = Token {
        realm_roles: set(&claims["realm_access"]["roles"]),
        ..Token::default()
    };
    if let Some(m) = claims["resource_access"].as_object() {
        for (c, v) in m {
            t.resource_access.insert(c.clone(), set(&v["roles"]));
        }
    }
    t.scope = claims["scope"]
        .as_str()
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    t.aud = match &claims["aud"] {
        Value::String(s) => [s.clone()].into(),
        other => set(other),
    };
    t
}
