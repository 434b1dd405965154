//! serde mirror of the parts of Keycloak's realm representation (`kc.sh export`, the admin
//! console's partial export, or a hand-written import file) that shape a service-account token.
//! Every field is optional, as in Keycloak's own representation: an absent field takes the value
//! Keycloak gives it on import, which the translation supplies.

use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RealmRep {
    pub realm: Option<String>,
    pub enabled: Option<bool>,
    pub keycloak_version: Option<String>,
    /// Seconds.
    pub access_token_lifespan: Option<i64>,
    pub sso_session_idle_timeout: Option<i64>,
    pub sso_session_max_lifespan: Option<i64>,
    pub default_signature_algorithm: Option<String>,
    pub attributes: BTreeMap<String, Value>,
    pub roles: Option<RolesRep>,
    /// Keycloak 13+: the composite every new user is granted (`default-roles-<realm>`).
    pub default_role: Option<RoleRep>,
    /// Before Keycloak 13: the realm roles every new user is granted.
    pub default_roles: Option<Vec<String>>,
    pub default_groups: Option<Vec<String>>,
    pub groups: Option<Vec<GroupRep>>,
    pub users: Option<Vec<UserRep>>,
    pub clients: Option<Vec<ClientRep>>,
    pub client_scopes: Option<Vec<ClientScopeRep>>,
    pub default_default_client_scopes: Option<Vec<String>>,
    pub default_optional_client_scopes: Option<Vec<String>>,
    pub scope_mappings: Option<Vec<ScopeMappingRep>>,
    /// Roles of the key's client, mapped into the scope of other clients or client scopes.
    pub client_scope_mappings: Option<BTreeMap<String, Vec<ScopeMappingRep>>>,
    pub user_federation_providers: Option<Vec<Value>>,
    pub components: Option<BTreeMap<String, Vec<ComponentRep>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RolesRep {
    pub realm: Option<Vec<RoleRep>>,
    pub client: Option<BTreeMap<String, Vec<RoleRep>>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct RoleRep {
    pub name: Option<String>,
    pub composites: Option<Composites>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default)]
pub struct Composites {
    pub realm: Option<Vec<String>>,
    pub client: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GroupRep {
    pub name: Option<String>,
    pub path: Option<String>,
    pub realm_roles: Option<Vec<String>>,
    pub client_roles: Option<BTreeMap<String, Vec<String>>>,
    pub sub_groups: Option<Vec<GroupRep>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct UserRep {
    pub username: Option<String>,
    pub enabled: Option<bool>,
    pub service_account_client_id: Option<String>,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub attributes: Option<BTreeMap<String, Value>>,
    pub realm_roles: Option<Vec<String>>,
    pub client_roles: Option<BTreeMap<String, Vec<String>>>,
    pub groups: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClientRep {
    pub client_id: Option<String>,
    pub enabled: Option<bool>,
    pub protocol: Option<String>,
    pub public_client: Option<bool>,
    pub bearer_only: Option<bool>,
    pub consent_required: Option<bool>,
    pub service_accounts_enabled: Option<bool>,
    pub standard_flow_enabled: Option<bool>,
    pub implicit_flow_enabled: Option<bool>,
    pub direct_access_grants_enabled: Option<bool>,
    pub client_authenticator_type: Option<String>,
    pub secret: Option<String>,
    pub full_scope_allowed: Option<bool>,
    pub default_client_scopes: Option<Vec<String>>,
    pub optional_client_scopes: Option<Vec<String>>,
    pub protocol_mappers: Option<Vec<MapperRep>>,
    pub attributes: Option<BTreeMap<String, Value>>,
    pub web_origins: Option<Vec<String>>,
    /// Before Keycloak 13: this client's roles that every new user is granted.
    pub default_roles: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ClientScopeRep {
    pub name: Option<String>,
    pub protocol: Option<String>,
    pub attributes: Option<BTreeMap<String, Value>>,
    pub protocol_mappers: Option<Vec<MapperRep>>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MapperRep {
    pub name: Option<String>,
    pub protocol: Option<String>,
    pub protocol_mapper: Option<String>,
    pub config: Option<BTreeMap<String, Value>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ScopeMappingRep {
    pub client: Option<String>,
    pub client_scope: Option<String>,
    /// Before Keycloak 4: client scopes were client templates.
    pub client_template: Option<String>,
    pub roles: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ComponentRep {
    pub name: Option<String>,
    pub provider_id: Option<String>,
}

/// A string attribute as Keycloak reads it: exports hold strings, hand-written files sometimes
/// booleans or numbers.
pub fn attr(map: Option<&BTreeMap<String, Value>>, key: &str) -> Option<String> {
    match map?.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        // A list (a user attribute) counts through its first value.
        Value::Array(items) => items.first().and_then(|v| v.as_str()).map(str::to_string),
        _ => None,
    }
}

/// `Boolean.parseBoolean` of a string attribute: only "true" (any case) is true.
pub fn attr_true(map: Option<&BTreeMap<String, Value>>, key: &str) -> bool {
    attr(map, key).is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

impl MapperRep {
    pub fn config(&self, key: &str) -> Option<String> {
        attr(self.config.as_ref(), key)
    }

    /// Where it writes, for the lines that name it.
    pub fn label(&self) -> String {
        format!(
            "mapper {:?} ({})",
            self.name.as_deref().unwrap_or(""),
            self.protocol_mapper.as_deref().unwrap_or("no type")
        )
    }
}

/// The realms of a file: one realm object, or a list of them (`kc.sh export` of several realms
/// into one file). Anything else is not a realm export.
pub fn parse(bytes: &[u8]) -> Result<Vec<RealmRep>, String> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("not JSON: {e}"))?;
    let items = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    if items.is_empty() {
        return Err("an empty list, not a realm".into());
    }
    let mut realms = Vec::with_capacity(items.len());
    for item in items {
        let Some(name) = item.get("realm").and_then(Value::as_str) else {
            return Err("no \"realm\" name at the top level".into());
        };
        let name = name.to_string();
        let rep: RealmRep =
            serde_json::from_value(item).map_err(|e| format!("realm {name:?} does not have Keycloak's shape: {e}"))?;
        realms.push(rep);
    }
    Ok(realms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_realm_object_or_a_list_of_them_is_an_export() {
        assert_eq!(parse(br#"{"realm":"a"}"#).unwrap().len(), 1);
        assert_eq!(parse(br#"[{"realm":"a"},{"realm":"b"}]"#).unwrap().len(), 2);
        for bad in [
            &b"nope"[..],
            b"{}",
            b"[]",
            b"[1]",
            br#"{"realm":1}"#,
            br#"{"realm":"a","clients":{}}"#,
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn attributes_read_as_keycloak_reads_them() {
        let map: BTreeMap<String, Value> =
            serde_json::from_str(r#"{"a":"TRUE","b":true,"c":"yes","d":["x","y"],"e":300}"#).unwrap();
        assert!(attr_true(Some(&map), "a"));
        assert!(attr_true(Some(&map), "b"));
        assert!(!attr_true(Some(&map), "c"));
        assert!(!attr_true(Some(&map), "missing"));
        assert_eq!(attr(Some(&map), "d").as_deref(), Some("x"));
        assert_eq!(attr(Some(&map), "e").as_deref(), Some("300"));
    }
}
