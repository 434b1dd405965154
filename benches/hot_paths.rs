//! Micro-benchmarks of tollgate's per-request hot paths (criterion, `harness = false`).
//!
//! ```sh
//! cargo bench --bench hot_paths -- --warm-up-time 1 --measurement-time 3
//! ```
//!
//! * `sign/*`: `SigningKey::sign` of a typical access-token claim set with the demo keys.
//! * `issue/*`: `grant::issue` (claims + sign + response JSON), per realm signing algorithm.
//! * `token_endpoint/*`: the whole token endpoint after the body is read (form, client
//!   authentication, grant, reply), plaintext vs argon2id secret (argon2 result cached).
//! * `verify/rs256_cold`: `token::verify` of an RS256 access token (no cache).
//! * `guard/*`: `guard::check` on the demo routes: cached token (the normal case) and public.
//! * `form/parse`, `path/normalise`: request parsing.
//!
//! Everything runs against the repo's `proxy.toml` and `certs/` demo keys.

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use jsonwebtoken::Algorithm;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tollgate::config::{self, LoadOptions, Snapshot};
use tollgate::guard::Tables;
use tollgate::issuer::verify_own;
use tollgate::issuer::{endpoints, form, grant};
use tollgate::state::State;
use tollgate::token::keys::SigningKey;
use tollgate::token::Expect;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A claim set shaped like the ones tollgate issues (same fields, realistic lengths).
fn sample_claims() -> Vec<u8> {
    let t = now();
    serde_json::json!({
        "exp": t + 300,
        "iat": t,
        "jti": "0f8fad5b-d9cb-469f-a165-70867728950e",
        "iss": "http://localhost:8080/realms/demo",
        "aud": "orders-api",
        "sub": "4c5e8a1f-9d3b-5a2e-8c7f-1b2d3e4f5a6b",
        "typ": "Bearer",
        "azp": "product-sa-client",
        "sid": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
        "acr": "1",
        "realm_access": {"roles": ["reader"]},
        "resource_access": {"orders-api": {"roles": ["read"]}},
        "scope": "profile email",
        "clientHost": "127.0.0.1",
        "preferred_username": "service-account-product-sa-client",
        "client_id": "product-sa-client",
    })
    .to_string()
    .into_bytes()
}

fn load_key(kid: &str, alg: Algorithm, file: &str) -> SigningKey {
    let pem = std::fs::read(repo().join("certs").join(file)).expect("demo key");
    SigningKey::from_pem(kid, alg, &pem).expect("demo key parses")
}

fn bench_sign(c: &mut Criterion) {
    let claims = sample_claims();
    let mut g = c.benchmark_group("sign");
    for (name, alg, file) in [
        ("rs256", Algorithm::RS256, "demo-rs256.pem"),
        ("es256", Algorithm::ES256, "demo-es256.pem"),
        ("eddsa", Algorithm::EdDSA, "demo-eddsa.pem"),
    ] {
        let key = load_key(&format!("bench-{name}"), alg, file);
        g.bench_function(name, |b| b.iter(|| key.sign(black_box(&claims)).unwrap()));
    }
    g.finish();
}

/// The repo's proxy.toml, loaded as the sidecar loads it.
fn demo_snapshot() -> (Snapshot, PathBuf) {
    let path = repo().join("proxy.toml");
    let snap = config::load(&path, LoadOptions::default()).expect("proxy.toml loads");
    (snap, path)
}

/// A config like proxy.toml but with realms signing with ES256 and EdDSA too, and a client whose
/// secret is an argon2id hash. Written to a temp dir (keys copied next to it).
fn multi_alg_snapshot(dir: &Path) -> (Snapshot, PathBuf) {
    for f in ["demo-rs256.pem", "demo-es256.pem", "demo-eddsa.pem"] {
        std::fs::copy(repo().join("certs").join(f), dir.join(f)).unwrap();
    }
    let phc = tollgate::secret::hash_secret("secret").unwrap();
    let mut toml = String::from(
        "[server]\nlisten = \"127.0.0.1:8080\"\ndefault_realm = \"demo\"\n\n\
         [[routes]]\nprefix = \"/api\"\nrealm = \"demo\"\nroles = [\"reader\"]\nupstream = \"127.0.0.1:9000\"\n\n",
    );
    for (realm, alg, file) in [
        ("demo", "RS256", "demo-rs256.pem"),
        ("es", "ES256", "demo-es256.pem"),
        ("ed", "EdDSA", "demo-eddsa.pem"),
    ] {
        toml.push_str(&format!(
            "[realms.{realm}]\nroles = [\"reader\"]\n\
             signing_keys = [{{ kid = \"{realm}-key\", alg = \"{alg}\", private_key = \"{file}\" }}]\n\
             [realms.{realm}.clients.product-sa-client]\nsecret = \"password\"\nservice_account_roles = [\"reader\"]\n\
             [realms.{realm}.clients.hashed-client]\nsecret = \"{phc}\"\nservice_account_roles = [\"reader\"]\n\n"
        ));
    }
    let path = dir.join("bench.toml");
    std::fs::write(&path, toml).unwrap();
    let snap = config::load(&path, LoadOptions::default()).expect("bench config loads");
    (snap, path)
}

fn access_token_of(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).expect("token response is JSON");
    v["access_token"].as_str().expect("access_token").to_string()
}

fn bench_issue(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (snapshot, path) = multi_alg_snapshot(dir.path());
    let mut g = c.benchmark_group("issue");
    for (name, realm) in [("rs256", "demo"), ("es256", "es"), ("eddsa", "ed")] {
        let realm = snapshot.realm(realm).unwrap().clone();
        let client = realm.clients.get("product-sa-client").unwrap();
        g.bench_function(name, |b| {
            b.iter(|| grant::issue(&realm, client, black_box("profile email"), "127.0.0.1", now(), None).unwrap())
        });
    }
    g.finish();

    // The token endpoint once the body is in: form, client authentication, grant, reply.
    let state = State::new(snapshot, path, None).expect("state");
    let snap = state.config.load_full();
    let realm = snap.realm("es").unwrap().clone();
    let body = b"grant_type=client_credentials";
    let mut g = c.benchmark_group("token_endpoint_es256");
    for (name, basic) in [
        ("plaintext_secret", "Basic cHJvZHVjdC1zYS1jbGllbnQ6cGFzc3dvcmQ="), // product-sa-client:password
        ("argon2_secret_cached", "Basic aGFzaGVkLWNsaWVudDpzZWNyZXQ="),     // hashed-client:secret
    ] {
        let req = endpoints::Request {
            authorization: Some(basic.as_bytes()),
            body,
            peer: "127.0.0.1",
            now: now(),
        };
        // The first call pays argon2 once and fills the verification cache, as in the server.
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(endpoints::token(&state, &snap, &realm, &req))
            .expect("client authenticates");
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(endpoints::token(&state, &snap, &realm, black_box(&req)))
                    .unwrap()
            })
        });
    }
    g.finish();
}

fn bench_verify_and_guard(c: &mut Criterion) {
    let (snapshot, path) = demo_snapshot();
    let realm: Arc<_> = snapshot.realm("demo").expect("realm demo").clone();
    let client = realm
        .clients
        .get("product-sa-client")
        .expect("client product-sa-client");
    let t = now();
    let body = grant::issue(&realm, client, "profile email", "127.0.0.1", t, None).expect("issue");
    let token = access_token_of(&body);
    verify_own(&realm, &token, t, Expect::Access).expect("fresh token verifies");

    c.bench_function("verify/rs256_cold", |b| {
        b.iter(|| verify_own(&realm, black_box(&token), t, Expect::Access).unwrap())
    });

    let state = State::new(snapshot, path, None).expect("state");
    let snap = state.config.load();
    let tables = Tables {
        cache: &state.token_cache,
        store: &*state.store,
        limits: &state.rate_limits,
    };
    let header = format!("Bearer {token}");
    let get = http::Method::GET;
    let mut g = c.benchmark_group("guard");
    // First call verifies and fills the token cache; every later one is the cache-hit path.
    tollgate::guard::check(tables, &snap, &get, "/api/orders/1", Some(header.as_bytes()), t).expect("allowed");
    g.bench_function("check_cached_token", |b| {
        b.iter(|| {
            tollgate::guard::check(
                tables,
                &snap,
                &get,
                black_box("/api/orders/1"),
                Some(black_box(header.as_bytes())),
                t,
            )
            .unwrap()
        })
    });
    g.bench_function("check_public_route", |b| {
        b.iter(|| tollgate::guard::check(tables, &snap, &get, black_box("/public/x"), None, t).unwrap())
    });
    g.bench_function("check_no_token_401", |b| {
        b.iter(|| tollgate::guard::check(tables, &snap, &get, black_box("/api/orders/1"), None, t).unwrap_err())
    });
    g.finish();
}

fn bench_parsing(c: &mut Criterion) {
    let body: &[u8] = b"grant_type=client_credentials&scope=orders&client_id=x&client_secret=y";
    c.bench_function("form/parse", |b| b.iter(|| form::parse(black_box(body)).unwrap()));
    c.bench_function("path/normalise", |b| {
        b.iter(|| tollgate::path::normalise(black_box("/api/orders/../orders/%7Ex/1")).unwrap())
    });
}

criterion_group!(benches, bench_sign, bench_issue, bench_verify_and_guard, bench_parsing);
criterion_main!(benches);
