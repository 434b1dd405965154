use super::*;
use crate::config::{load, LoadOptions, Snapshot};
use crate::model::egress::{ClientAuth, SourceKind};
use jsonwebtoken::Algorithm;
use std::path::Path;

const BASE: &str = r#"
[server]
listen = "127.0.0.1:8080"
[realms.demo]
roles = ["reader"]
signing_keys = [{ kid = "k1", alg = "RS256", private_key = "demo-rs256.pem" }]
[realms.demo.clients.svc]
secret = "s"
service_account_roles = ["reader"]
optional_scopes = ["orders"]
[realms.demo.clients.off]
secret = "s"
service_accounts_enabled = false
[realms.corp]
issuer = "https://kc.example.com/realms/corp"
"#;

fn dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
    for f in ["demo-rs256.pem", "demo-es256.pem", "demo-eddsa.pem"] {
        std::fs::copy(certs.join(f), d.path().join(f)).unwrap();
    }
    d
}

fn load_in(d: &tempfile::TempDir, egress: &str) -> Result<Snapshot, Vec<String>> {
    let p = d.path().join("proxy.toml");
    std::fs::write(&p, format!("{BASE}{egress}")).unwrap();
    load(&p, LoadOptions::default()).map_err(|e| e.0.iter().map(|p| format!("{}: {}", p.key, p.reason)).collect())
}

fn problems(egress: &str) -> Vec<String> {
    load_in(&dir(), egress).err().unwrap_or_default()
}

#[test]
fn a_local_and_a_remote_route_load_with_their_defaults() {
    let d = dir();
    std::fs::write(d.path().join("svc-a.secret"), "from-file\n").unwrap();
    let snap = load_in(
        &d,
        r#"
[egress]
listen = "127.0.0.1:15001"
[[egress.routes]]
host = "Orders.Internal."
upstream = "https://127.0.0.1:8443"
realm = "demo"
client = "svc"
scope = "orders"
[[egress.routes]]
prefix = "/billing/"
upstream = "http://127.0.0.1"
token_endpoint = "https://kc.example.com/realms/corp/protocol/openid-connect/token"
client_id = "svc-a"
client_secret_file = "svc-a.secret"
audience = "billing"
"#,
    )
    .unwrap();
    let e = snap.egress.as_ref().unwrap();
    assert_eq!(e.listen.to_string(), "127.0.0.1:15001");
    let (local, remote) = (&e.routes[0], &e.routes[1]);
    assert_eq!((local.label.as_str(), local.prefix.as_str()), ("orders.internal/", "/"));
    assert_eq!(local.upstream.host_header, "127.0.0.1:8443");
    assert!(local.upstream.tls);
    match &local.source.kind {
        SourceKind::Local { scope, .. } => assert_eq!(scope, "profile email orders"),
        other => panic!("{other:?}"),
    }
    assert_eq!(remote.label, "*/billing");
    assert_eq!(remote.upstream.port, 80);
    assert_eq!(remote.upstream.host_header, "127.0.0.1");
    let SourceKind::Remote(r) = &remote.source.kind else {
        panic!()
    };
    let ClientAuth::SecretBasic(secret) = &r.auth else {
        panic!("{:?}", r.auth)
    };
    assert_eq!(secret.expose(), "from-file", "the trailing newline is dropped");
    assert!(
        snap.files.iter().any(|f| f.ends_with("svc-a.secret")),
        "the secret file is watched"
    );
    assert!(!format!("{snap:?}").contains("from-file"), "Debug prints no secret");
}

#[test]
fn a_listener_off_loopback_is_refused() {
    for addr in ["0.0.0.0:15001", "10.1.2.3:15001", "[::]:15001"] {
        let p = problems(&format!("[egress]\nlisten = \"{addr}\"\n"));
        assert!(
            p.iter()
                .any(|p| p.starts_with("egress.listen: ") && p.contains("loopback")),
            "{addr}: {p:?}"
        );
    }
    assert!(problems("[egress]\n")
        .iter()
        .any(|p| p.starts_with("egress.listen: required")));
    assert!(load_in(&dir(), "[egress]\nlisten = \"[::1]:15001\"\n").is_ok());
}

#[test]
fn every_problem_of_a_route_is_named_by_its_key() {
    let p = problems(
        r#"
[egress]
listen = "127.0.0.1:15001"
[[egress.routes]]
host = "http://orders"
upstream = "orders.internal"
realm = "demo"
client = "svc"
scope = "admin"
client_secret = "x"
[[egress.routes]]
upstream = "127.0.0.1:9000"
realm = "corp"
client = "svc"
[[egress.routes]]
upstream = "127.0.0.1:9000"
realm = "demo"
client = "off"
[[egress.routes]]
upstream = "127.0.0.1:9000"
[[egress.routes]]
upstream = "127.0.0.1:9000"
token_endpoint = "ftp://x"
client_secret = "a"
private_key = "demo-es256.pem"
[[egress.routes]]
upstream = "127.0.0.1:9000"
token_endpoint = "https://x/token"
client_id = "a"
client_secret = "a"
client_auth = "client_secret_jwt"
[[egress.routes]]
upstream = "127.0.0.1:9000"
token_endpoint = "https://svc:hunter2@x/token"
client_id = "a"
client_secret = "a"
"#,
    );
    let has = |key: &str, words: &str| p.iter().any(|x| x.starts_with(key) && x.contains(words));
    assert!(has("egress.routes[0].host", "not a host name"), "{p:?}");
    assert!(has("egress.routes[0].upstream", "needs a port"), "{p:?}");
    assert!(has("egress.routes[0].scope", "\"admin\""), "{p:?}");
    assert!(
        has("egress.routes[0].client_secret", "only with `token_endpoint`"),
        "{p:?}"
    );
    assert!(has("egress.routes[1].realm", "remote"), "{p:?}");
    assert!(has("egress.routes[2].client", "disabled"), "{p:?}");
    assert!(has("egress.routes[3]", "a token source is required"), "{p:?}");
    assert!(has("egress.routes[4].token_endpoint", "http"), "{p:?}");
    assert!(has("egress.routes[4].client_id", "required"), "{p:?}");
    assert!(has("egress.routes[4]", "exactly one of"), "{p:?}");
    assert!(has("egress.routes[5].client_auth", "client_secret_jwt"), "{p:?}");
    assert!(has("egress.routes[6].token_endpoint", "credentials"), "{p:?}");
    assert!(!p.iter().any(|x| x.contains("hunter2")), "{p:?}");
    assert!(
        !p.iter().any(|x| x.contains("\"a\"") && x.contains("secret")),
        "no secret quoted: {p:?}"
    );
}

#[test]
fn two_routes_with_one_host_and_prefix_are_refused_and_one_source_has_one_key() {
    let route = |host: &str| {
        format!(
            "[[egress.routes]]\nhost = \"{host}\"\nupstream = \"127.0.0.1:9000\"\nrealm = \"demo\"\nclient = \"svc\"\n"
        )
    };
    let twice = format!("[egress]\nlisten = \"127.0.0.1:1\"\n{}{}", route("a"), route("A."));
    assert!(problems(&twice)
        .iter()
        .any(|p| p.contains("another route has the host and prefix")));
    let snap = load_in(
        &dir(),
        &format!("[egress]\nlisten = \"127.0.0.1:1\"\n{}{}", route("a"), route("b")),
    )
    .unwrap();
    let routes = &snap.egress.as_ref().unwrap().routes;
    assert_eq!(routes[0].source.key, routes[1].source.key, "one cached token for both");
}

#[test]
fn private_key_jwt_takes_the_key_type_and_a_thumbprint_kid() {
    let d = dir();
    let remote = |key: &str, extra: &str| {
        format!(
            "[egress]\nlisten = \"127.0.0.1:1\"\n[[egress.routes]]\nupstream = \"127.0.0.1:9000\"\ntoken_endpoint = \"https://idp/token\"\nclient_id = \"svc-a\"\nprivate_key = \"{key}\"\n{extra}"
        )
    };
    for (file, alg) in [
        ("demo-es256.pem", Algorithm::ES256),
        ("demo-rs256.pem", Algorithm::RS256),
        ("demo-eddsa.pem", Algorithm::EdDSA),
    ] {
        let snap = load_in(&d, &remote(file, "")).unwrap();
        let SourceKind::Remote(r) = &snap.egress.as_ref().unwrap().routes[0].source.kind else {
            panic!()
        };
        let ClientAuth::PrivateKeyJwt(k) = &r.auth else {
            panic!()
        };
        assert_eq!(k.alg, alg, "{file}");
        assert_eq!(k.kid, source::thumbprint(&k.jwk), "{file}");
    }
    let snap = load_in(
        &d,
        &remote(
            "demo-rs256.pem",
            "private_key_kid = \"svc-a-1\"\nprivate_key_alg = \"PS256\"\n",
        ),
    )
    .unwrap();
    let SourceKind::Remote(r) = &snap.egress.as_ref().unwrap().routes[0].source.kind else {
        panic!()
    };
    let ClientAuth::PrivateKeyJwt(k) = &r.auth else {
        panic!()
    };
    assert_eq!((k.kid.as_str(), k.alg), ("svc-a-1", Algorithm::PS256));
    let p = load_in(&d, &remote("demo-es256.pem", "client_auth = \"client_secret_post\"\n")).unwrap_err();
    assert!(p.iter().any(|p| p.contains("private_key_jwt")), "{p:?}");
}

#[test]
fn the_rfc_7638_example_thumbprint() {
    // RFC 7638 §3.1.
    let jwk = serde_json::json!({
        "kty": "RSA",
        "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
        "e": "AQAB",
        "alg": "RS256",
        "kid": "2011-04-29",
    });
    assert_eq!(source::thumbprint(&jwk), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
}

#[test]
fn upstream_and_host_forms() {
    let p = |s| parse_upstream(s);
    let u = p("https://orders.internal").unwrap();
    assert_eq!(
        (u.host.as_str(), u.port, u.tls, u.authority.as_str()),
        ("orders.internal", 443, true, "orders.internal")
    );
    let u = p("http://[::1]:9000/").unwrap();
    assert_eq!(
        (u.host.as_str(), u.port, u.authority.as_str()),
        ("::1", 9000, "[::1]:9000")
    );
    assert_eq!(p("orders:8443").unwrap().authority, "orders:8443");
    for bad in [
        "ftp://x",
        "http://x/api",
        "orders",
        "http://u@x",
        "http://x:99999",
        "http://a b",
    ] {
        assert!(p(bad).is_err(), "{bad}");
    }
    assert_eq!(normalise_host("Orders.Internal.:8080").unwrap(), "orders.internal:8080");
    assert_eq!(normalise_host("[::1]").unwrap(), "[::1]");
    for bad in ["*.internal", "http://x", "x/y", "", "[", "[zz]"] {
        assert!(normalise_host(bad).is_err(), "{bad}");
    }
}
