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

/// Every config in the repo, and the key files it names (given the demo keys in a copy).
const EXAMPLES: &[(&str, &[(&str, &str)])] = &[
    ("proxy.toml", &[("certs/demo-rs256.pem", "demo-rs256.pem")]),
    ("deploy/proxy.toml", &[("keys/realm-1.pem", "demo-rs256.pem")]),
    ("deploy/replicas/proxy.toml", &[("keys/realm-1.pem", "demo-rs256.pem")]),
    (
        "bench/tollgate.toml",
        &[
            ("demo-rs256.pem", "demo-rs256.pem"),
            ("demo-es256.pem", "demo-es256.pem"),
            ("demo-eddsa.pem", "demo-eddsa.pem"),
        ],
    ),
    (
        "deploy/central-issuer/issuer.toml",
        &[("/etc/tollgate/keys/services-1.pem", "demo-es256.pem")],
    ),
    ("deploy/central-issuer/reports-sidecar.toml", &[]),
    // Any file stands in for the client secret.
    (
        "deploy/egress/billing-sidecar.toml",
        &[("/etc/tollgate/secrets/client-secret", "demo-rs256.pem")],
    ),
    ("deploy/egress/orders-sidecar.toml", &[]),
    ("bench/compare.toml", &[("demo-rs256.pem", "demo-rs256.pem")]),
];

#[test]
fn every_example_config_in_the_repo_loads() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (entry, keys) in EXAMPLES {
        let mut text = std::fs::read_to_string(root.join(entry)).unwrap_or_else(|e| panic!("{entry}: {e}"));
        // bench/tollgate.toml is a template whose ports the bench fills in.
        for placeholder in ["@LISTEN_PORT@", "@UPSTREAM_PORT@", "@ADMIN_PORT@", "@EGRESS_PORT@"] {
            text = text.replace(placeholder, "9000");
        }
        let dir = tempfile::tempdir().unwrap();
        for (i, (named, demo)) in keys.iter().enumerate() {
            assert!(text.contains(named), "{entry} no longer names {named}");
            let copy = dir.path().join(format!("key-{i}.pem"));
            std::fs::copy(root.join("certs").join(demo), &copy).unwrap();
            text = text.replace(named, &copy.to_string_lossy());
        }
        if let Err(e) = load(&write(dir.path(), &text), LoadOptions::default()) {
            panic!("{entry} does not load: {e}");
        }
    }
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

const REMOTE: &str = r#"
[server]
listen = "127.0.0.1:8080"
[realms.corp]
issuer = "https://kc.example.com/realms/corp/"
jwks_refresh = "10m"
jwks_max_stale = "2h"
algorithms = ["RS256", "ES256"]
roles_claim = "roles"
[[routes]]
prefix = "/api"
realm = "corp"
roles = ["anything-the-issuer-grants"]
upstream = "127.0.0.1:9000"
"#;

#[test]
fn a_realm_without_signing_keys_is_remote_and_keeps_its_issuer_exactly() {
    let dir = demo_dir();
    let snap = load(&write(dir.path(), REMOTE), LoadOptions::default()).unwrap();
    let realm = snap.realm("corp").unwrap();
    assert!(realm.is_remote());
    assert_eq!(
        realm.issuer, "https://kc.example.com/realms/corp/",
        "a remote iss is compared as written"
    );
    assert!(realm.signer().is_none());
    let crate::model::Keys::Fetched { settings, .. } = &realm.keys else {
        panic!("fetched keys expected")
    };
    assert_eq!(settings.refresh, Duration::from_secs(600));
    assert_eq!(settings.max_stale, Duration::from_secs(7200));
    assert_eq!(
        settings.algorithms,
        [jsonwebtoken::Algorithm::RS256, jsonwebtoken::Algorithm::ES256]
    );
    assert_eq!(realm.roles_claim.as_deref(), Some("roles"));
}

#[test]
fn remote_realm_mistakes_are_each_reported() {
    let dir = demo_dir();
    let text = r#"
[server]
listen = "127.0.0.1:8080"
[realms.corp]
jwks_uri = "ftp://x"
jwks_file = "missing.json"
algorithms = ["HS256", "none"]
jwks_refresh = "5s"
access_token_lifespan = "5m"
[realms.corp.clients.c]
secret = "s"
[realms.demo]
roles = ["reader"]
roles_claim = "roles"
ca_file = "ca.pem"
signing_keys = [{ kid = "k1", alg = "RS256", private_key = "demo-rs256.pem" }]
[[routes]]
prefix = "/api"
realms = ["demo", "corp", "demo"]
roles = ["reader"]
upstream = "127.0.0.1:9000"
[[routes]]
prefix = "/b"
realm = "demo"
realms = ["demo"]
upstream = "127.0.0.1:9000"
"#;
    let err = load(&write(dir.path(), text), LoadOptions::default()).unwrap_err();
    let keys: Vec<&str> = err.0.iter().map(|p| p.key.as_str()).collect();
    for want in [
        "realms.corp.issuer",
        "realms.corp.jwks_uri",
        "realms.corp.algorithms",
        "realms.corp.jwks_refresh",
        "realms.corp.access_token_lifespan",
        "realms.corp.clients",
        "realms.demo.roles_claim",
        "realms.demo.ca_file",
        "routes[0].realms",
        "routes[1].realms",
    ] {
        assert!(keys.contains(&want), "missing {want} in {keys:?}");
    }
    assert!(err.to_string().contains("never none or HS*"), "{err}");
}

#[test]
fn a_public_route_needs_no_realm_and_a_jwks_file_is_read_at_load() {
    let dir = demo_dir();
    let key = crate::token::keys::SigningKey::from_pem(
        "f1",
        jsonwebtoken::Algorithm::ES256,
        &std::fs::read(dir.path().join("demo-es256.pem")).unwrap(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("corp.json"),
        serde_json::json!({"keys": [key.jwk, {"kty": "oct", "k": "c2VjcmV0"}]}).to_string(),
    )
    .unwrap();
    let text = r#"
[server]
listen = "127.0.0.1:8080"
[realms.corp]
issuer = "https://idp.example"
jwks_file = "corp.json"
[realms.other]
issuer = "https://other.example"
[[routes]]
prefix = "/open"
public = true
upstream = "127.0.0.1:9000"
"#;
    let snap = load(&write(dir.path(), text), LoadOptions::default()).unwrap();
    let crate::model::Keys::File(set) = &snap.realm("corp").unwrap().keys else {
        panic!("file keys expected")
    };
    assert!(set.get("f1").is_some());
    assert!(
        snap.files.iter().any(|f| f.ends_with("corp.json")),
        "the JWKS file is watched"
    );
    assert!(
        snap.warnings.iter().any(|w| w.contains("never trusted")),
        "{:?}",
        snap.warnings
    );
}

#[test]
fn the_bound_port_is_given_to_default_issuers_only() {
    let dir = demo_dir();
    let text = MINIMAL.replace("listen = \"127.0.0.1:8080\"", "listen = \"127.0.0.1:0\"")
        + "[realms.fixed]\nissuer = \"https://auth.example/realms/fixed\"\nsigning_keys = [{ kid = \"k1\", alg = \"RS256\", private_key = \"demo-rs256.pem\" }]\n";
    let text = text.replace(
        "[[routes]]\nprefix = \"/api\"",
        "[[routes]]\nprefix = \"/api\"\nrealm = \"demo\"",
    );
    let snap = load(&write(dir.path(), &text), LoadOptions::default()).unwrap();
    let before = snap.realm("demo").unwrap().verify_tag;
    let snap = snap.with_listen_port(4321);
    let demo = snap.realm("demo").unwrap();
    assert_eq!(demo.issuer, "http://localhost:4321/realms/demo");
    assert_eq!(
        demo.token_endpoint,
        "http://localhost:4321/realms/demo/protocol/openid-connect/token"
    );
    assert_ne!(
        demo.verify_tag, before,
        "cached verifications against the old issuer do not stand"
    );
    let reloaded = load(
        &write(dir.path(), &text),
        LoadOptions {
            listen_port: Some(4321),
        },
    )
    .unwrap();
    assert_eq!(
        reloaded.realm("demo").unwrap().verify_tag,
        demo.verify_tag,
        "a reload agrees"
    );
    assert_eq!(snap.realm("fixed").unwrap().issuer, "https://auth.example/realms/fixed");
}

#[test]
fn a_store_url_is_checked_without_connecting_and_never_echoed() {
    let dir = demo_dir();
    let snap = load(&write(dir.path(), MINIMAL), LoadOptions::default()).unwrap();
    assert_eq!(snap.store, None, "state in memory by default");
    let with = |store: &str| {
        load(
            &write(dir.path(), &format!("{MINIMAL}\n[store]\n{store}")),
            LoadOptions::default(),
        )
    };
    // Nothing listens on port 1: a load that tried to connect would fail.
    let snap = with(r#"url = "redis://127.0.0.1:1/0""#).unwrap();
    let s = snap.store.unwrap();
    assert_eq!(
        (s.url.as_str(), s.key_prefix.as_str()),
        ("redis://127.0.0.1:1/0", "tollgate:")
    );
    assert!(!format!("{s:?}").contains("127.0.0.1"), "the URL may hold a password");
    let tls = with("url = \"rediss://:pw@cache.example:6380/2\"\nkey_prefix = \"shop:\"").unwrap();
    assert_eq!(tls.store.unwrap().key_prefix, "shop:");
    let err = with("url = \"http://user:hunter2@cache:6379\"\nkey_prefix = \"a b\"").unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("store.url") && text.contains("store.key_prefix"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert!(
        with("url = \"redis://x\"\nhost = \"y\"").is_err(),
        "unknown keys are refused"
    );
    std::fs::write(dir.path().join("ca.pem"), "not a certificate").unwrap();
    for (store, why) in [
        (
            "url = \"redis://x:6379\"\nca_file = \"ca.pem\"",
            "only with a rediss:// URL",
        ),
        (
            "url = \"rediss://x:6380\"\nca_file = \"ca.pem\"",
            "holds no PEM certificate",
        ),
        ("url = \"rediss://x:6380\"\nca_file = \"none.pem\"", "cannot read"),
    ] {
        let text = with(store).unwrap_err().to_string();
        assert!(text.contains("store.ca_file") && text.contains(why), "{text}");
    }
}
