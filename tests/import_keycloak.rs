//! `tollgate import-keycloak`: on this repo's fixtures and, where they exist, on the realm exports
//! in ../shared/data/keycloak, the generated config loads, a real tollgate started with it issues
//! each client a token, and that token's realm_access, resource_access, scope and aud equal what
//! Keycloak would issue, computed from the export by an independent reading of Keycloak's rule.

mod common;
#[path = "import_keycloak/generated.rs"]
mod generated;
#[path = "import_keycloak/keycloak.rs"]
mod keycloak;

use common::{bin, claims_of, client, now, sign_with, Tollgate};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keycloak")
        .join(name)
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn tollgate(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Run {
    tollgate_in(Path::new(env!("CARGO_MANIFEST_DIR")), args)
}

/// Run the binary in `cwd` (where import-keycloak writes JWKS files when the config goes to stdout).
fn tollgate_in(cwd: &Path, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Run {
    let out = Command::new(bin())
        .current_dir(cwd)
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn import_into(export: &Path, dir: &Path) -> Run {
    let out = dir.join("proxy.toml");
    tollgate(&[&"import-keycloak", &export, &"--out", &out])
}

fn read_json(p: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

/// What a user does before the generated file runs: a listener (here on free ports, with the
/// admin listener the harness polls), a signing key per realm, and the secrets the export did
/// not hold. Returns each client's secret, where it has one.
fn as_a_user_would(dir: &Path, export: &Value) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(dir.join("proxy.toml")).unwrap();
    let mut doc: toml::Table = toml::from_str(&text).unwrap();
    std::fs::copy(common::DEMO_KEY, dir.join("demo-rs256.pem")).unwrap();
    doc.insert(
        "server".into(),
        toml::Value::Table(toml::from_str("listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"").unwrap()),
    );
    let mut secrets = BTreeMap::new();
    let exported: BTreeMap<String, String> = export["clients"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| Some((c["clientId"].as_str()?.to_string(), c["secret"].as_str()?.to_string())))
        .collect();
    for (_, realm) in doc["realms"].as_table_mut().unwrap().iter_mut() {
        let realm = realm.as_table_mut().unwrap();
        let key: toml::Value = toml::from_str::<toml::Table>(
            "k = [{ kid = \"user-1\", alg = \"RS256\", private_key = \"demo-rs256.pem\" }]",
        )
        .unwrap()["k"]
            .clone();
        realm.entry("signing_keys").or_insert(key);
        let Some(clients) = realm.get_mut("clients").and_then(|c| c.as_table_mut()) else {
            continue;
        };
        for (id, c) in clients.iter_mut() {
            let c = c.as_table_mut().unwrap();
            if c.contains_key("jwks") {
                continue;
            }
            let secret = match c.get("secret").and_then(|s| s.as_str()) {
                Some(s) if !s.starts_with("$argon2") => s.to_string(),
                Some(_) => exported[id].clone(),
                None => {
                    let mine = format!("a-secret-of-my-own-for-{id}");
                    c.insert("secret".into(), toml::Value::from(mine.clone()));
                    mine
                }
            };
            secrets.insert(id.clone(), secret);
        }
    }
    std::fs::write(dir.join("proxy.toml"), toml::to_string(&doc).unwrap()).unwrap();
    secrets
}

fn token_url(tg: &Tollgate, realm: &str) -> String {
    tg.url(&format!("/realms/{realm}/protocol/openid-connect/token"))
}

/// A client_credentials token, as the client's Keycloak authenticator would ask for it.
fn token(tg: &Tollgate, realm: &str, id: &str, how: &Auth) -> Value {
    let url = token_url(tg, realm);
    let req = client().post(&url);
    // The token endpoint as tollgate's default issuer names it.
    let aud = format!(
        "http://localhost:{}/realms/{realm}/protocol/openid-connect/token",
        tg.http.port()
    );
    let claims = json!({ "iss": id, "sub": id, "aud": aud, "exp": now() + 60, "jti": unique_id() });
    let resp = match how {
        Auth::Basic(secret) => req
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")]),
        Auth::Post(secret) => req.form(&[
            ("grant_type", "client_credentials"),
            ("client_id", id),
            ("client_secret", secret),
        ]),
        Auth::SecretJwt(secret) => {
            let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
            let a = jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                &claims,
                &key,
            )
            .unwrap();
            req.form(&[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", a.as_str()),
            ])
        }
        Auth::KeyJwt(pem, alg, kid) => {
            let a = sign_with(pem, *alg, Some(kid), &claims);
            req.form(&[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", a.as_str()),
            ])
        }
    }
    .send()
    .unwrap();
    let status = resp.status();
    let body: Value = resp.json().unwrap();
    assert_eq!(status, 200, "token for {id}: {body}; logs: {}", tg.logs());
    claims_of(body["access_token"].as_str().unwrap())
}

/// A fresh assertion id: each assertion is accepted once.
fn unique_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", now(), N.fetch_add(1, Ordering::Relaxed))
}

enum Auth {
    Basic(String),
    Post(String),
    SecretJwt(String),
    KeyJwt(PathBuf, jsonwebtoken::Algorithm, String),
}

/// The kid of the first key in a JWKS file the importer wrote.
fn kid_in(path: &Path) -> String {
    read_json(path)["keys"][0]["kid"].as_str().unwrap().to_string()
}

/// Every client of the generated config gets a token equal to Keycloak's; the roles tollgate
/// cannot name are left out and said so. Returns how many clients were checked.
fn tokens_equal_keycloaks(tg: &Tollgate, export: &Value, stderr: &str, auth: &BTreeMap<String, Auth>) -> usize {
    let realm = export["realm"].as_str().unwrap();
    for (id, how) in auth {
        let claims = token(tg, realm, id, how);
        let got = keycloak::of_claims(&claims);
        let (want, dropped) = keycloak::expected_in_tollgate(export, id);
        assert_eq!(
            got, want,
            "realm {realm}, client {id}: tollgate's token (left) against Keycloak's (right)"
        );
        for role in dropped {
            assert!(
                stderr.contains(&format!("client {id}: role {role:?}")),
                "{id}: {role} is left out silently:\n{stderr}"
            );
        }
        assert_eq!(claims["azp"], id.as_str());
        assert_eq!(claims["preferred_username"], format!("service-account-{id}"));
    }
    auth.len()
}

#[test]
fn the_shop_export_imports_and_names_each_thing_it_leaves_out() {
    let dir = tempfile::tempdir().unwrap();
    let r = import_into(&fixture("shop-realm.json"), dir.path());
    assert_eq!(r.code, 3, "something is left out: {}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert!(
        lines.iter().all(|l| l.starts_with("left out: realm shop")),
        "{}",
        r.stderr
    );
    for (client, what) in [
        ("legacy-admin", "masks it"),
        ("legacy-admin", "its grants password"),
        ("web-portal", "a public client"),
        ("orders-api", "bearer-only"),
        ("inventory-sync", "claim \"tenant\""),
        ("inventory-sync", "role \"catalog:editor\""),
        ("billing-worker", "optional scope \"audit\""),
        (
            "reports-job",
            "optional scope \"orders\": when asked for, Keycloak adds aud [\"orders-api\"]",
        ),
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.contains(&format!("client {client}: ")) && l.contains(what)),
            "no line for {client} ({what}):\n{}",
            r.stderr
        );
    }
    assert!(lines.iter().any(|l| l.contains("user federation \"corporate-ldap\"")));
    // Disabled clients and Keycloak's own lose nothing and are not listed as left out.
    for quiet in ["old-batch", "admin-cli", "realm-management", "account"] {
        assert!(!r.stderr.contains(&format!("client {quiet}:")), "{quiet}: {}", r.stderr);
    }
    let text = std::fs::read_to_string(dir.path().join("proxy.toml")).unwrap();
    assert!(
        !text.contains("inv-sync-secret-7f3a"),
        "a client-secret secret is written hashed only"
    );
    assert!(
        text.contains("reports-job-hmac-secret-0123456789abcdef"),
        "client-secret-jwt needs the plaintext"
    );
    assert!(text.contains("# Left out: its secret: the export masks it"));
    assert!(dir.path().join("shop-edge-signer.jwks.json").is_file());
    // The same export gives the same bytes, wherever it is written.
    let again = tempfile::tempdir().unwrap();
    assert_eq!(import_into(&fixture("shop-realm.json"), again.path()).code, 3);
    assert_eq!(std::fs::read(again.path().join("proxy.toml")).unwrap(), text.as_bytes());
    let cwd = tempfile::tempdir().unwrap();
    let stdout = tollgate_in(cwd.path(), &[&"import-keycloak", &fixture("shop-realm.json")]);
    assert_eq!(stdout.stdout, text, "without --out the config goes to stdout");
    assert!(
        cwd.path().join("shop-edge-signer.jwks.json").is_file(),
        "and the JWKS files to the current folder"
    );
}

#[test]
fn the_shop_export_issues_keycloaks_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let export = read_json(&fixture("shop-realm.json"));
    let r = import_into(&fixture("shop-realm.json"), dir.path());
    assert_eq!(r.code, 3, "{}", r.stderr);
    let secrets = as_a_user_would(dir.path(), &export);
    let check = tollgate(&[&"check", &"--config", &dir.path().join("proxy.toml")]);
    assert_eq!(check.code, 0, "{}", check.stdout);
    let edge_kid = kid_in(&dir.path().join("shop-edge-signer.jwks.json"));
    let tg = Tollgate::start_in(dir);
    let auth = BTreeMap::from([
        (
            "inventory-sync".to_string(),
            Auth::Basic(secrets["inventory-sync"].clone()),
        ),
        (
            "billing-worker".to_string(),
            Auth::Post(secrets["billing-worker"].clone()),
        ),
        ("legacy-admin".to_string(), Auth::Basic(secrets["legacy-admin"].clone())),
        (
            "reports-job".to_string(),
            Auth::SecretJwt(secrets["reports-job"].clone()),
        ),
        (
            "edge-signer".to_string(),
            Auth::KeyJwt(fixture("edge-signer.key.pem"), jsonwebtoken::Algorithm::RS256, edge_kid),
        ),
    ]);
    assert_eq!(tokens_equal_keycloaks(&tg, &export, &r.stderr, &auth), 5);
    // The rule at work: fullScopeAllowed false keeps billing-worker to its scope, and audience
    // mappers on the client and on its `orders` scope name their audiences.
    let billing = keycloak::of_claims(&token(&tg, "shop", "billing-worker", &auth["billing-worker"]));
    assert!(billing.realm_roles.contains("orders-reader") && !billing.realm_roles.contains("offline_access"));
    let orders = &billing.resource_access["orders-api"];
    assert!(!orders.contains("write"), "outside its scope");
    assert!(
        orders.contains("read"),
        "in its scope through the `orders` client scope's mapping"
    );
    assert!(billing.aud.contains("https://billing.example.com") && billing.aud.contains("orders-api"));
    let edge = keycloak::of_claims(&token(&tg, "shop", "edge-signer", &auth["edge-signer"]));
    assert!(
        edge.realm_roles.contains("ops") && edge.realm_roles.contains("oncall"),
        "group roles, cycle and all"
    );
    // A wrong secret for a hashed one is still refused.
    let bad = client()
        .post(token_url(&tg, "shop"))
        .basic_auth("inventory-sync", Some("not-it"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap();
    assert_eq!(bad.status(), 401);
}

#[test]
fn with_keys_the_output_loads_as_it_is_and_stays_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    let out = dir.path().join("proxy.toml");
    let r = tollgate(&[
        &"import-keycloak",
        &fixture("ci-realm.json"),
        &"--out",
        &out,
        &"--keys",
        &keys,
    ]);
    assert_eq!(r.code, 0, "nothing is left out of ci-realm.json: {}", r.stderr);
    assert!(r.stderr.is_empty(), "{}", r.stderr);
    let check = tollgate(&[&"check", &"--config", &out]);
    assert_eq!(check.code, 0, "{}", check.stdout);
    let key = keys.join("ci-es256.pem");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    let first = (std::fs::read(&out).unwrap(), std::fs::read(&key).unwrap());
    assert_eq!(
        tollgate(&[
            &"import-keycloak",
            &fixture("ci-realm.json"),
            &"--out",
            &out,
            &"--keys",
            &keys
        ])
        .code,
        0
    );
    assert_eq!(
        (std::fs::read(&out).unwrap(), std::fs::read(&key).unwrap()),
        first,
        "a second run keeps the key"
    );

    // Run it as written, on free ports.
    let text = String::from_utf8(first.0).unwrap().replace(
        "listen = \"127.0.0.1:8080\"",
        "listen = \"127.0.0.1:0\"\nadmin_listen = \"127.0.0.1:0\"",
    );
    std::fs::write(&out, text).unwrap();
    let export = read_json(&fixture("ci-realm.json"));
    let kid = kid_in(&dir.path().join("ci-deploy-bot.jwks.json"));
    let tg = Tollgate::start_in(dir);
    let auth = BTreeMap::from([
        (
            "build-runner".to_string(),
            Auth::Basic("build-runner-secret-5d1e".into()),
        ),
        (
            "deploy-bot".to_string(),
            Auth::KeyJwt(fixture("deploy-bot.key.pem"), jsonwebtoken::Algorithm::ES256, kid),
        ),
    ]);
    assert_eq!(tokens_equal_keycloaks(&tg, &export, "", &auth), 2);
    let header = common::header_of(
        client()
            .post(token_url(&tg, "ci"))
            .basic_auth("build-runner", Some("build-runner-secret-5d1e"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .unwrap()
            .json::<Value>()
            .unwrap()["access_token"]
            .as_str()
            .unwrap(),
    );
    assert_eq!(header["alg"], "ES256", "the realm's defaultSignatureAlgorithm");
}

#[test]
fn users_in_the_files_kc_sh_export_dir_writes_count_as_in_the_realm_file() {
    let whole = tempfile::tempdir().unwrap();
    assert_eq!(import_into(&fixture("ci-realm.json"), whole.path()).code, 0);
    // `kc.sh export --dir` writes the users apart, 50 to a file, beside <realm>-realm.json.
    let split = tempfile::tempdir().unwrap();
    let mut realm = read_json(&fixture("ci-realm.json"));
    let users = realm.as_object_mut().unwrap().remove("users").unwrap();
    let (first, rest) = users.as_array().unwrap().split_at(1);
    std::fs::write(split.path().join("ci-realm.json"), realm.to_string()).unwrap();
    for (n, part) in [first, rest].iter().enumerate() {
        let file = json!({ "realm": "ci", "users": part });
        std::fs::write(split.path().join(format!("ci-users-{n}.json")), file.to_string()).unwrap();
    }
    let out = tempfile::tempdir().unwrap();
    assert_eq!(import_into(&split.path().join("ci-realm.json"), out.path()).code, 0);
    assert_eq!(
        std::fs::read_to_string(out.path().join("proxy.toml")).unwrap(),
        std::fs::read_to_string(whole.path().join("proxy.toml")).unwrap()
    );
}

#[test]
fn exit_codes_follow_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let not_realm = dir.path().join("clients.json");
    std::fs::write(&not_realm, r#"{"clients": []}"#).unwrap();
    let r = tollgate(&[&"import-keycloak", &not_realm]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    let garbage = dir.path().join("garbage.json");
    std::fs::write(&garbage, "\u{0}not json").unwrap();
    assert_eq!(tollgate(&[&"import-keycloak", &garbage]).code, 1);
    let missing = tollgate(&[&"import-keycloak", &dir.path().join("nope.json")]);
    assert_eq!(missing.code, 2);
    assert_eq!(missing.stderr.lines().count(), 1, "{}", missing.stderr);
    let flag = tollgate(&[&"import-keycloak", &not_realm, &"--bogus"]);
    assert_eq!(flag.code, 2);
    assert_eq!(flag.stderr.lines().count(), 1, "{}", flag.stderr);
    assert!(flag.stdout.is_empty());
}

/// The realm exports of other projects that CI provides beside the repo (`KEYCLOAK_EXPORTS`
/// names another folder); skipped where absent.
fn shared_exports() -> Option<Vec<PathBuf>> {
    let dir = std::env::var_os("KEYCLOAK_EXPORTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/keycloak"));
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    Some(files)
}

/// Whether Keycloak would issue this client a client-credentials token at all.
fn is_service_account(c: &Value) -> bool {
    let id = c["clientId"].as_str().unwrap_or("");
    c["serviceAccountsEnabled"] == true
        && c["enabled"] != false
        && c["publicClient"] != true
        && c["bearerOnly"] != true
        && c["protocol"].as_str().is_none_or(|p| p == "openid-connect")
        && !id.contains(':')
}

#[test]
fn shared_keycloak_exports_issue_keycloaks_tokens() {
    let Some(files) = shared_exports() else {
        eprintln!("skipped: ../shared/data/keycloak is not here");
        return;
    };
    assert!(!files.is_empty());
    for file in files {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        let export = read_json(&file);
        let dir = tempfile::tempdir().unwrap();
        let r = import_into(&file, dir.path());
        eprintln!(
            "== {name}: exit {}, {} line(s) on stderr\n{}",
            r.code,
            r.stderr.lines().count(),
            r.stderr
        );
        assert!(r.code == 0 || r.code == 3, "{name}: exit {}: {}", r.code, r.stderr);
        assert_eq!(
            r.code == 3,
            !r.stderr.is_empty(),
            "{name}: exit 3 exactly when lines were printed"
        );
        let secrets = as_a_user_would(dir.path(), &export);
        let check = tollgate(&[&"check", &"--config", &dir.path().join("proxy.toml")]);
        assert_eq!(check.code, 0, "{name}: {}", check.stdout);
        // Every service-account client is imported, or a line says why not.
        for c in export["clients"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| is_service_account(c))
        {
            let id = c["clientId"].as_str().unwrap();
            assert!(
                secrets.contains_key(id) || r.stderr.contains(&format!("client {id}: ")),
                "{name}: {id} is missing without a word"
            );
        }
        let tg = Tollgate::start_in(dir);
        let auth: BTreeMap<String, Auth> = secrets.into_iter().map(|(id, s)| (id, Auth::Basic(s))).collect();
        let n = tokens_equal_keycloaks(&tg, &export, &r.stderr, &auth);
        eprintln!("{name}: {n} client(s), each token equal to Keycloak's");
        assert!(n > 0, "{name}: no client to check");
    }
}

mod property {
    //! import → load → token never grants a role the export does not give the client, and
    //! grants exactly Keycloak's, over generated realms: composites with cycles, default roles
    //! of every vintage, groups, missing service-account users, full scope or scope mappings,
    //! client scopes present or Keycloak's built-in ones, role and audience mappers.

    use super::generated::{realm, CLIENTS};
    use super::keycloak;
    use proptest::prelude::*;
    use serde_json::Value;
    use std::collections::BTreeSet;

    /// The roles a token holds, as `role` and `client:role`.
    fn roles_of(t: &keycloak::Token) -> BTreeSet<String> {
        let mut out: BTreeSet<String> = t.realm_roles.iter().cloned().collect();
        for (c, roles) in &t.resource_access {
            out.extend(roles.iter().map(|r| format!("{c}:{r}")));
        }
        out
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]
        #[test]
        fn import_then_token_never_grants_a_role_the_export_does_not_give(bytes in proptest::collection::vec(any::<u8>(), 64..256)) {
            let export = realm(&bytes);
            let t = tollgate::import::translate(
                export.to_string().as_bytes(),
                &[],
                &tollgate::import::Options { source: "generated.json", keys_dir: Some(".") },
            )
            .unwrap();
            let dir = tempfile::tempdir().unwrap();
            std::fs::copy(super::common::DEMO_KEY, dir.path().join("p-rs256.pem")).unwrap();
            let path = dir.path().join("proxy.toml");
            std::fs::write(&path, &t.toml).unwrap();
            let snap = tollgate::config::load(&path, Default::default())
                .unwrap_or_else(|e| panic!("{e}\n{}\n{export}", t.toml));
            let realm = snap.realm("p").unwrap();
            for id in CLIENTS {
                let client = &realm.clients[id];
                let scope = tollgate::issuer::grant::resolve_scope(client, None).unwrap();
                let body = tollgate::issuer::grant::issue(realm, client, &scope, "127.0.0.1", 1_000, None).unwrap();
                let body: Value = serde_json::from_str(&body).unwrap();
                let got = keycloak::of_claims(&super::claims_of(body["access_token"].as_str().unwrap()));
                let want = keycloak::expected(&export, id);
                // Never more than Keycloak gives: every role granted is one the export gives.
                let extra: Vec<_> = roles_of(&got).difference(&roles_of(&want)).cloned().collect();
                prop_assert!(extra.is_empty(), "{id} granted {extra:?}\n{}\n{export}", t.toml);
                prop_assert_eq!(got, want, "{} of\n{}\n{}", id, t.toml, export);
            }
        }
    }
}
