//! Generated realm exports for the property test: composites with cycles, default roles of
//! every vintage, groups, missing service-account users, full scope or scope mappings, client
//! scopes present or Keycloak's built-in ones, role and audience mappers.

use serde_json::{json, Value};

struct Bytes<'a>(std::iter::Cycle<std::slice::Iter<'a, u8>>);

impl Bytes<'_> {
    fn pick(&mut self, n: usize) -> usize {
        *self.0.next().unwrap() as usize % n
    }
    fn coin(&mut self, percent: usize) -> bool {
        self.pick(100) < percent
    }
    fn some<T: Clone>(&mut self, from: &[T], percent: usize) -> Vec<T> {
        from.iter().filter(|_| self.coin(percent)).cloned().collect()
    }
}

const REALM_ROLES: [&str; 5] = ["r0", "r1", "r2", "r3", "default-roles-p"];
const API_ROLES: [&str; 3] = ["a0", "a1", "a2"];
pub const CLIENTS: [&str; 3] = ["sa0", "sa1", "sa2"];

fn composites(b: &mut Bytes) -> Value {
    json!({ "realm": b.some(&REALM_ROLES, 20), "client": { "api": b.some(&API_ROLES, 20), "sa0": b.some(&["o"], 10) } })
}

fn mapper(kind: &str, config: Value) -> Value {
    json!({ "name": kind, "protocol": "openid-connect", "protocolMapper": kind, "config": config })
}

/// A realm export made from `bytes`: each byte is one choice.
pub fn realm(bytes: &[u8]) -> Value {
    let mut b = Bytes(bytes.iter().cycle());
    let mut v = roles(&mut b);
    if b.coin(70) {
        client_scopes(&mut b, &mut v);
    }
    clients(&mut b, &mut v);
    v
}

/// Realm and client roles with composites, a default role of one of three vintages, groups.
fn roles(b: &mut Bytes) -> Value {
    let mut realm_roles: Vec<Value> = REALM_ROLES
        .iter()
        .map(|r| json!({ "name": r, "composites": composites(b) }))
        .collect();
    let mut v = json!({ "realm": "p", "accessTokenLifespan": 300 });
    match b.pick(3) {
        0 => v["defaultRole"] = json!({ "name": "default-roles-p" }),
        1 => v["defaultRoles"] = json!(b.some(&REALM_ROLES[..4], 50)),
        _ => {
            realm_roles.pop();
        }
    }
    let client_roles = json!({
        "api": API_ROLES.iter().map(|r| json!({ "name": r, "composites": composites(b) })).collect::<Vec<_>>(),
        "sa0": [{ "name": "o", "composites": composites(b) }],
    });
    v["roles"] = json!({ "realm": realm_roles, "client": client_roles });
    v["groups"] = json!([{ "name": "g", "path": "/g", "realmRoles": b.some(&REALM_ROLES[..4], 40),
        "subGroups": [{ "name": "h", "path": "/g/h", "clientRoles": { "api": b.some(&API_ROLES, 40) } }] }]);
    if b.coin(30) {
        v["defaultGroups"] = json!(["/g/h"]);
    }
    v
}

/// Client scopes of the realm, and its defaults, in place of Keycloak's built-in ones.
fn client_scopes(b: &mut Bytes, v: &mut Value) {
    let scope_names = ["roles", "profile", "s1", "s2"];
    {
        let mut roles_mappers = vec![];
        if b.coin(80) {
            roles_mappers.push(mapper(
                "oidc-usermodel-realm-role-mapper",
                json!({ "claim.name": "realm_access.roles", "access.token.claim": "true" }),
            ));
        }
        if b.coin(80) {
            roles_mappers.push(mapper(
                "oidc-usermodel-client-role-mapper",
                json!({ "claim.name": "resource_access.${client_id}.roles", "access.token.claim": "true" }),
            ));
        }
        if b.coin(80) {
            roles_mappers.push(mapper("oidc-audience-resolve-mapper", json!({})));
        }
        let flag = |b: &mut Bytes| if b.coin(50) { "true" } else { "false" };
        let s1_aud = if b.coin(50) {
            vec![mapper(
                "oidc-audience-mapper",
                json!({ "included.custom.audience": "urn:s1", "access.token.claim": "true" }),
            )]
        } else {
            vec![]
        };
        v["clientScopes"] = json!([
            { "name": "roles", "protocol": "openid-connect", "attributes": { "include.in.token.scope": "false" }, "protocolMappers": roles_mappers },
            { "name": "profile", "protocol": "openid-connect", "attributes": { "include.in.token.scope": flag(b) } },
            { "name": "s1", "protocol": "openid-connect", "attributes": { "include.in.token.scope": flag(b) }, "protocolMappers": s1_aud },
            { "name": "s2", "protocol": "openid-connect" },
            { "name": "saml-only", "protocol": "saml" },
        ]);
        if b.coin(70) {
            v["defaultDefaultClientScopes"] = json!(b.some(&scope_names, 60));
        }
    }
}

/// Three service-account clients, their users (or none), and scope mappings.
fn clients(b: &mut Bytes, v: &mut Value) {
    let mut clients = vec![json!({ "clientId": "api", "bearerOnly": true })];
    let mut users = vec![];
    let mut scope_mappings = vec![];
    let mut api_mappings = vec![];
    for id in CLIENTS {
        let mut c = json!({ "clientId": id, "enabled": true, "publicClient": false, "serviceAccountsEnabled": true,
            "standardFlowEnabled": false, "clientAuthenticatorType": "client-secret-jwt", "secret": format!("secret-of-{id}-0123456789") });
        match b.pick(3) {
            0 => c["fullScopeAllowed"] = json!(true),
            1 => c["fullScopeAllowed"] = json!(false),
            _ => c["consentRequired"] = json!(b.coin(30)),
        }
        if b.coin(60) {
            c["defaultClientScopes"] = json!(b.some(&["roles", "profile", "s1", "s2", "saml-only", "nope"], 60));
        }
        if b.coin(30) {
            c["protocolMappers"] = json!([mapper(
                "oidc-audience-mapper",
                json!({ "included.client.audience": "api", "access.token.claim": "true" })
            )]);
        }
        clients.push(c);
        if b.coin(80) {
            let groups = match b.pick(3) {
                0 => json!(["/g"]),
                1 => json!(["/g/h"]),
                _ => json!([]),
            };
            users.push(json!({ "username": format!("service-account-{id}"), "enabled": true, "serviceAccountClientId": id,
                "realmRoles": b.some(&REALM_ROLES, 30), "clientRoles": { "api": b.some(&API_ROLES, 40), "sa0": b.some(&["o"], 30) }, "groups": groups }));
        }
        if b.coin(50) {
            scope_mappings.push(json!({ "client": id, "roles": b.some(&REALM_ROLES, 40) }));
        }
        if b.coin(50) {
            api_mappings.push(json!({ "client": id, "roles": b.some(&API_ROLES, 50) }));
        }
    }
    if b.coin(50) {
        scope_mappings.push(json!({ "clientScope": "s1", "roles": b.some(&REALM_ROLES, 50) }));
    }
    if b.coin(50) {
        api_mappings.push(json!({ "clientScope": "s2", "roles": b.some(&API_ROLES, 50) }));
    }
    v["clients"] = json!(clients);
    if b.coin(90) {
        v["users"] = json!(users);
    }
    v["scopeMappings"] = json!(scope_mappings);
    v["clientScopeMappings"] = json!({ "api": api_mappings });
}
