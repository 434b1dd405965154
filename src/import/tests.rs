use super::*;
use crate::secret::ClientSecret;

const EXPORT: &str = r#"{
  "realm": "demo",
  "accessTokenLifespan": 120,
  "defaultRole": {"name": "default-roles-demo"},
  "roles": {"realm": [{"name": "default-roles-demo", "composites": {"realm": ["reader"]}}, {"name": "reader"}]},
  "users": [{"username": "service-account-svc", "enabled": true, "serviceAccountClientId": "svc", "realmRoles": ["default-roles-demo"]}],
  "clients": [
    {"clientId": "svc", "secret": "s3cret", "serviceAccountsEnabled": true, "publicClient": false, "standardFlowEnabled": false},
    {"clientId": "jwt", "clientAuthenticatorType": "client-secret-jwt", "secret": "hmac-key", "serviceAccountsEnabled": true, "standardFlowEnabled": false},
    {"clientId": "masked", "secret": "**********", "serviceAccountsEnabled": true, "standardFlowEnabled": false},
    {"clientId": "mtls", "clientAuthenticatorType": "client-x509", "serviceAccountsEnabled": true, "standardFlowEnabled": false},
    {"clientId": "spa", "publicClient": true}
  ]
}"#;

fn opts() -> Options<'static> {
    Options {
        source: "demo.json",
        keys_dir: None,
    }
}

fn table(t: &Translation) -> toml::Table {
    toml::from_str(&t.toml).expect("the output is TOML")
}

#[test]
fn the_same_export_gives_the_same_bytes() {
    let a = translate(EXPORT.as_bytes(), &[], &opts()).unwrap();
    let b = translate(EXPORT.as_bytes(), &[], &opts()).unwrap();
    assert_eq!(a.toml, b.toml);
    assert_eq!(a.left_out, b.left_out);
}

#[test]
fn secrets_are_hashed_except_for_client_secret_jwt_and_masked_ones_are_named() {
    let t = translate(EXPORT.as_bytes(), &[], &opts()).unwrap();
    let v = table(&t);
    let clients = v["realms"]["demo"]["clients"].as_table().unwrap();
    let phc = clients["svc"]["secret"].as_str().unwrap();
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    assert!(
        !t.toml.contains("s3cret"),
        "the plaintext of a client-secret client is not written"
    );
    assert!(ClientSecret::parse(phc).unwrap().verify(b"s3cret"));
    assert_eq!(clients["jwt"]["secret"].as_str(), Some("hmac-key"));
    assert!(clients["masked"].get("secret").is_none());
    assert!(!clients.contains_key("mtls") && !clients.contains_key("spa"));
    let lines = t.left_out.join("\n");
    for client in ["masked", "mtls", "spa"] {
        assert!(lines.contains(&format!("client {client}:")), "{lines}");
    }
    assert!(t
        .left_out
        .iter()
        .all(|l| !l.contains("s3cret") && !l.contains("hmac-key")));
}

#[test]
fn the_salt_is_per_client_so_equal_secrets_hash_apart() {
    let two = EXPORT
        .replace(r#""secret": "hmac-key""#, r#""secret": "s3cret""#)
        .replace("client-secret-jwt", "client-secret");
    let v = table(&translate(two.as_bytes(), &[], &opts()).unwrap());
    let clients = v["realms"]["demo"]["clients"].as_table().unwrap();
    assert_ne!(clients["svc"]["secret"].as_str(), clients["jwt"]["secret"].as_str());
}

#[test]
fn lifespan_roles_and_defaults_are_written_with_where_they_came_from() {
    let t = translate(EXPORT.as_bytes(), &[], &opts()).unwrap();
    let v = table(&t);
    let realm = &v["realms"]["demo"];
    assert_eq!(realm["access_token_lifespan"].as_str(), Some("120s"));
    let svc = &realm["clients"]["svc"];
    let roles: Vec<_> = svc["service_account_roles"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r.as_str())
        .collect();
    assert_eq!(roles, ["default-roles-demo", "reader"]);
    assert!(t
        .toml
        .contains("fullScopeAllowed is not in the export: Keycloak's default (true"));
    assert!(t
        .toml
        .contains("the export has no client scopes: Keycloak's built-in defaults"));
}

#[test]
fn a_users_file_beside_the_export_supplies_the_service_accounts() {
    let bare = EXPORT.replace(r#""users": [{"username": "service-account-svc", "enabled": true, "serviceAccountClientId": "svc", "realmRoles": ["default-roles-demo"]}],"#, "");
    let users = br#"{"realm": "demo", "users": [{"username": "x", "enabled": true, "serviceAccountClientId": "svc", "realmRoles": ["reader"]}]}"#;
    let v = table(&translate(bare.as_bytes(), &[users.to_vec()], &opts()).unwrap());
    let roles = v["realms"]["demo"]["clients"]["svc"]["service_account_roles"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(roles, vec![toml::Value::from("reader")]);
}

#[test]
fn what_is_not_a_realm_export_is_refused() {
    assert!(translate(b"{\"clients\": []}", &[], &opts()).is_err());
    assert!(translate(b"not json", &[], &opts()).is_err());
}
