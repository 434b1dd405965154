use super::*;

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("proxy.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn demo_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
    for f in ["demo-rs256.pem", "demo-es256.pem"] {
        std::fs::copy(certs.join(f), dir.path().join(f)).unwrap();
    }
    dir
}

const MINIMAL: &str = r#"
[server]
listen = "127.0.0.1:8080"
[realms.demo]
roles = ["reader"]
signing_keys = [{ kid = "k1", alg = "RS256", private_key = "demo-rs256.pem" }]
[realms.demo.clients.c]
secret = "s"
service_account_roles = ["reader"]
[[routes]]
prefix = "/api"
roles = ["reader"]
upstream = "127.0.0.1:9000"
"#;

#[test]
fn every_example_config_in_the_repo_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = 0;
    for entry in ["proxy.toml", "deploy/proxy.toml", "bench/proxy.toml"] {
        let p = root.join(entry);
        if p.exists() {
            found += 1;
            if let Err(e) = load(&p, LoadOptions::default()) {
                panic!("{entry} does not load: {e}");
            }
        }
    }
    assert!(found >= 1);
}

#[test]
fn minimal_config_loads_with_defaults() {
    let dir = demo_dir();
    let snap = load(&write(dir.path(), MINIMAL), LoadOptions::default()).unwrap();
    assert_eq!(snap.default_realm.as_deref(), Some("demo"));
    let realm = snap.realm("demo").unwrap();
    assert_eq!(realm.issuer, "http://localhost:8080/realms/demo");
    assert_eq!(realm.access_token_lifespan, Duration::from_secs(300));
    assert_eq!(realm.leeway, Duration::from_secs(30));
    let c = &realm.clients["c"];
    assert!(c.enabled && c.service_accounts_enabled && !c.use_refresh_token);
    assert_eq!(c.audience, vec!["account".to_string()]);
    assert_eq!(c.default_scopes, vec!["profile".to_string(), "email".to_string()]);
    assert!(snap.warnings.iter().any(|w| w.contains("plaintext")));
    assert!(
        !snap.warnings.iter().any(|w| w.contains("\"s\"")),
        "a warning must not quote the secret"
    );
    assert_eq!(snap.hash.len(), 64);
}

#[test]
fn listen_port_option_names_the_real_port_in_the_issuer() {
    let dir = demo_dir();
    let text = MINIMAL.replace("127.0.0.1:8080", "127.0.0.1:0");
    let snap = load(
        &write(dir.path(), &text),
        LoadOptions {
            listen_port: Some(4321),
        },
    )
    .unwrap();
    assert_eq!(snap.realm("demo").unwrap().issuer, "http://localhost:4321/realms/demo");
}

#[test]
fn unknown_keys_are_named() {
    let dir = demo_dir();
    let text = MINIMAL.replace("secret = \"s\"", "secret = \"s\"\nsecrett = \"x\"");
    let err = load(&write(dir.path(), &text), LoadOptions::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("secrett"), "{err}");
}

#[test]
fn every_problem_is_reported_at_once_with_its_key() {
    let dir = demo_dir();
    let text = r#"
[server]
listen = "nonsense"
default_realm = "nope"
max_connections = 0
[realms.demo]
roles = ["reader"]
access_token_lifespan = "soon"
signing_keys = [
  { kid = "k1", alg = "RS256", private_key = "demo-es256.pem" },
  { kid = "k1", alg = "ES256", private_key = "demo-es256.pem" },
  { kid = "k2", alg = "HS256", private_key = "demo-es256.pem" },
  { kid = "k3", alg = "RS256", private_key = "missing.pem" },
]
[realms.demo.clients.c]
secret = "s"
service_account_roles = ["reader", "ghost", "api:x"]
[realms.demo.client_roles]
api = ["y"]
[[routes]]
prefix = "relative"
realm = "demo"
roles = ["phantom"]
upstream = "nohost"
"#;
    let err = load(&write(dir.path(), text), LoadOptions::default()).unwrap_err();
    let keys: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
    for want in [
        "server.listen",
        "server.default_realm",
        "server.max_connections",
        "realms.demo.access_token_lifespan",
        "realms.demo.signing_keys[0].private_key",
        "realms.demo.signing_keys[1].kid",
        "realms.demo.signing_keys[2].alg",
        "realms.demo.signing_keys[3].private_key",
        "realms.demo.clients.c.service_account_roles",
        "routes[0].prefix",
        "routes[0].roles",
        "routes[0].upstream",
    ] {
        assert!(keys.contains(&want), "missing {want} in {keys:?}");
    }
    let text = err.to_string();
    assert!(text.contains("\"ghost\" is not a role"), "{text}");
    assert!(text.contains("client \"api\" has no role \"x\""), "{text}");
}

#[test]
fn broken_toml_names_the_line() {
    let dir = demo_dir();
    let err = load(&write(dir.path(), "[server\nlisten = 1"), LoadOptions::default()).unwrap_err();
    assert!(err.0[0].key.starts_with("line "), "{err}");
}

#[test]
fn parse_errors_never_quote_a_value() {
    let dir = demo_dir();
    let err = load(
        &write(
            dir.path(),
            "[server]\nlisten = \"127.0.0.1:1\"\n[realms.d.clients.c]\nsecret = hunter2\n",
        ),
        LoadOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(!err.contains("hunter2"), "{err}");
    let err = load(
        &write(dir.path(), "[server]\nlisten = \"a\"\nlisten = \"b\"\n"),
        LoadOptions::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("`listen`"), "duplicate keys are named: {err}");
}

#[test]
fn an_empty_audience_means_tokens_without_aud() {
    use base64::Engine;
    let dir = demo_dir();
    let text = MINIMAL.replace(
        "service_account_roles = [\"reader\"]",
        "service_account_roles = [\"reader\"]\naudience = []",
    );
    let snap = load(&write(dir.path(), &text), LoadOptions::default()).unwrap();
    let realm = snap.realm("demo").unwrap();
    let body = crate::issuer::grant::issue(realm, &realm.clients["c"], "profile", "127.0.0.1", 1, None).unwrap();
    let body: serde_json::Value = serde_json::from_str(&body).unwrap();
    let payload = body["access_token"].as_str().unwrap().split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    assert!(claims.get("aud").is_none(), "{claims}");
    assert_eq!(claims["realm_access"]["roles"][0], "reader");
}
