//! Several tollgate replicas sharing one signing key, one issuer and one real redis-server act
//! as one: revocations, assertion ids, failure throttles and rate limits are shared, and a
//! Redis that dies or a replica cut off from it degrade as the contract says.

mod common;

use common::cut::Cuttable;
use common::redis::Redis;
use common::*;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const ISSUER: &str = "http://tollgate.test/realms/demo";

/// One replica's config: everything shared but the store's address (a replica may reach Redis
/// through its own cuttable link).
fn config(store: std::net::SocketAddr) -> String {
    config_with_store(&format!("url = \"redis://{store}/0\""))
}

/// One replica's config with `store` as the `[store]` table's other keys.
fn config_with_store(store: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
default_realm = "demo"
auth_failures_per_minute = 3

[store]
{store}
key_prefix = "t:"

[realms.demo]
issuer = "{ISSUER}"
roles = ["reader"]
signing_keys = [ {{ kid = "demo-rs256", alg = "RS256", private_key = "demo-rs256.pem" }} ]

[realms.demo.clients.product-sa-client]
secret = "password"
service_account_roles = ["reader"]

[realms.demo.clients.other]
secret = "other-secret"
service_account_roles = ["reader"]

[realms.demo.clients.refresher]
secret = "refresher-secret"
service_account_roles = ["reader"]
use_refresh_token = true

[realms.demo.clients.jwt-client]
jwks = "jwt-client.jwks.json"
service_account_roles = ["reader"]

[[routes]]
prefix = "/api/orders"
roles = ["reader"]
upstream = "{{UPSTREAM}}"

[[routes]]
prefix = "/api/limited"
roles = ["reader"]
rate_limit = "5/m"
upstream = "{{UPSTREAM}}"
"#
    )
}

struct Cluster {
    replicas: Vec<Tollgate>,
    redis: Redis,
    _up: echo::Echo,
    key: EncodingKey,
}

fn jwks_and_key() -> (String, EncodingKey) {
    let pem = tollgate::token::keys::generate_pem(Algorithm::ES256).unwrap();
    let jwk = tollgate::token::keys::SigningKey::from_pem("c-es", Algorithm::ES256, pem.as_bytes())
        .unwrap()
        .jwk
        .clone();
    (
        json!({ "keys": [jwk] }).to_string(),
        EncodingKey::from_ec_pem(pem.as_bytes()).unwrap(),
    )
}

/// `n` replicas on one Redis; replica `i` reaches it through `links[i]` where one is given.
fn cluster(n: usize, redis: Redis, links: &[Option<&Cuttable>]) -> Cluster {
    let up = echo::start();
    let (jwks, key) = jwks_and_key();
    let replicas = (0..n)
        .map(|i| {
            let addr = links.get(i).copied().flatten().map_or(redis.addr, |l| l.addr);
            let tg = Tollgate::start_with(&config(addr), up.addr, &[("jwt-client.jwks.json", jwks.as_bytes())]);
            tg.wait_for_metric("tollgate_store_up", 1.0);
            tg
        })
        .collect();
    Cluster {
        replicas,
        redis,
        _up: up,
        key,
    }
}

fn eventually(within: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !f() {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn post(tg: &Tollgate, path: &str, basic: (&str, &str), form: &[(&str, &str)]) -> reqwest::blocking::Response {
    client()
        .post(tg.url(path))
        .basic_auth(basic.0, Some(basic.1))
        .form(form)
        .send()
        .unwrap()
}

fn revoke(tg: &Tollgate, basic: (&str, &str), token: &str) -> u16 {
    post(
        tg,
        "/realms/demo/protocol/openid-connect/revoke",
        basic,
        &[("token", token)],
    )
    .status()
    .as_u16()
}

fn assertion(key: &EncodingKey) -> String {
    let now = now();
    let claims = json!({"iss": "jwt-client", "sub": "jwt-client", "aud": ISSUER, "exp": now + 60, "iat": now,
                        "jti": tollgate::issuer::claims::random_id()});
    let mut h = Header::new(Algorithm::ES256);
    h.kid = Some("c-es".into());
    jsonwebtoken::encode(&h, &claims, key).unwrap()
}

const PSC: (&str, &str) = ("product-sa-client", "password");

#[test]
fn a_token_revoked_at_one_replica_is_refused_at_every_other_within_a_second() {
    let c = cluster(3, Redis::start(), &[]);
    let [r1, r2, r3] = &c.replicas[..] else { unreachable!() };
    let token = r1.token(PSC.0, PSC.1);
    let kept = r1.token(PSC.0, PSC.1);
    for r in [r1, r2, r3] {
        assert_eq!(r.get_status("/api/orders/1", &token), 200, "cached at every replica");
    }
    assert_eq!(revoke(r1, PSC, &token), 200);
    let revoked_at = Instant::now();
    assert_eq!(
        r1.get_status("/api/orders/1", &token),
        401,
        "at once where it was revoked"
    );
    eventually(Duration::from_secs(1), "refused at replicas 2 and 3", || {
        r2.get_status("/api/orders/1", &token) == 401 && r3.get_status("/api/orders/1", &token) == 401
    });
    assert!(revoked_at.elapsed() < Duration::from_secs(1));
    assert_eq!(r3.get_status("/api/orders/1", &kept), 200, "only that token");
    let ready: Value = client()
        .get(format!("http://{}/readyz", r2.admin))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(ready["store"], json!({"kind": "redis", "up": true, "revocations": 1}));
}

#[test]
fn an_assertion_accepted_at_one_replica_is_a_replay_at_another() {
    let c = cluster(2, Redis::start(), &[]);
    let a = assertion(&c.key);
    assert_eq!(c.replicas[0].grant_with_assertion(&a).status(), 200);
    let replay = c.replicas[1].grant_with_assertion(&a);
    assert_eq!(replay.status(), 401);
    assert_eq!(replay.json::<Value>().unwrap()["error"], "invalid_client");
    assert_eq!(
        c.replicas[1].grant_with_assertion(&assertion(&c.key)).status(),
        200,
        "a fresh one passes"
    );
}

/// Round trips to the store a replica made for requests (the background's are left out).
fn request_round_trips(tg: &Tollgate) -> u64 {
    tg.metrics()
        .lines()
        .filter(|l| l.starts_with("tollgate_store_operation_duration_seconds_count"))
        .filter(|l| {
            ["revoke", "use_once", "fail"]
                .iter()
                .any(|op| l.contains(&format!("op=\"{op}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[test]
fn issuance_with_an_assertion_costs_one_round_trip_more_than_with_a_secret() {
    let c = cluster(1, Redis::start(), &[]);
    let r = &c.replicas[0];
    let before = request_round_trips(r);
    assert_eq!(r.grant(PSC.0, PSC.1).status(), 200);
    let secret = request_round_trips(r) - before;
    assert_eq!(r.grant_with_assertion(&assertion(&c.key)).status(), 200);
    let jwt = request_round_trips(r) - before - secret;
    assert_eq!((secret, jwt), (1, 2), "the throttle check; then the assertion id too");
}

#[test]
fn failed_authentications_count_across_replicas() {
    let c = cluster(2, Redis::start(), &[]);
    let [r1, r2] = &c.replicas[..] else { unreachable!() };
    let wrong = |r: &Tollgate| r.grant("other", "wrong").status().as_u16();
    assert_eq!((wrong(r1), wrong(r1), wrong(r2)), (401, 401, 401));
    for r in [r1, r2] {
        let refused = r.grant("other", "other-secret");
        assert_eq!(
            refused.status(),
            429,
            "three failures over two replicas reach the limit of 3"
        );
        assert!(refused.headers().contains_key("retry-after"));
    }
    assert_eq!(r2.grant(PSC.0, PSC.1).status(), 200, "another client id is unaffected");
}

#[test]
fn revoking_a_refresh_token_ends_its_grant_at_every_replica() {
    let c = cluster(2, Redis::start(), &[]);
    let [r1, r2] = &c.replicas[..] else { unreachable!() };
    let rs = ("refresher", "refresher-secret");
    let first: Value = post(r1, "/token", rs, &[("grant_type", "client_credentials")])
        .json()
        .unwrap();
    let refresh = |r: &Tollgate, token: &str| {
        post(
            r,
            "/token",
            rs,
            &[("grant_type", "refresh_token"), ("refresh_token", token)],
        )
    };
    let second: Value = refresh(r2, first["refresh_token"].as_str().unwrap()).json().unwrap();
    let access = second["access_token"].as_str().unwrap();
    assert_eq!(r1.get_status("/api/orders/1", access), 200);
    assert_eq!(r2.get_status("/api/orders/1", access), 200);
    assert_eq!(revoke(r1, rs, first["refresh_token"].as_str().unwrap()), 200);
    let later = second["refresh_token"].as_str().unwrap();
    eventually(Duration::from_secs(1), "the chain ends at replica 2", || {
        r2.get_status("/api/orders/1", access) == 401 && refresh(r2, later).status() == 400
    });
    let refused: Value = refresh(r2, later).json().unwrap();
    assert_eq!(refused["error"], "invalid_grant");
    assert_eq!(r1.get_status("/api/orders/1", access), 401);
}

/// Calls `path` with `token` at every replica until stopped; counts the answers that were not 200.
fn traffic(
    replicas: &[&Tollgate],
    token: &str,
    stop: Arc<AtomicBool>,
) -> (std::thread::JoinHandle<()>, Arc<AtomicU64>) {
    let urls: Vec<String> = replicas.iter().map(|r| r.url("/api/orders/1")).collect();
    let (token, failed) = (token.to_string(), Arc::new(AtomicU64::new(0)));
    let f = failed.clone();
    let handle = std::thread::spawn(move || {
        let c = client();
        while !stop.load(Ordering::Relaxed) {
            for u in &urls {
                let ok = c.get(u).bearer_auth(&token).send().is_ok_and(|r| r.status() == 200);
                if !ok {
                    f.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    });
    (handle, failed)
}

#[test]
fn while_redis_is_down_tokens_pass_and_assertions_are_503_and_a_revocation_after_it_returns_reaches_everyone() {
    let mut c = cluster(2, Redis::start(), &[]);
    let (r1, r2) = (&c.replicas[0], &c.replicas[1]);
    let token = r1.token(PSC.0, PSC.1);
    let revoked = r1.token(PSC.0, PSC.1);
    assert_eq!(revoke(r1, PSC, &revoked), 200);
    eventually(Duration::from_secs(1), "revoked at 2", || {
        r2.get_status("/api/orders/1", &revoked) == 401
    });
    let stop = Arc::new(AtomicBool::new(false));
    let (load, failed) = traffic(&[r1, r2], &token, stop.clone());

    c.redis.kill();
    for r in [r1, r2] {
        r.wait_for_metric("tollgate_store_up", 0.0);
        let t = Instant::now();
        let refused = r.grant_with_assertion(&assertion(&c.key));
        assert_eq!(refused.status(), 503);
        assert!(t.elapsed() < Duration::from_millis(500), "bounded: {:?}", t.elapsed());
        assert_eq!(refused.json::<Value>().unwrap()["error"], "temporarily_unavailable");
        let other = r.token(PSC.0, PSC.1);
        assert_eq!(revoke(r, PSC, &other), 503, "never acknowledged unless stored");
        assert_eq!(r.get_status("/api/orders/1", &other), 200, "so it was not revoked");
        assert_eq!(
            r.get_status("/api/orders/1", &revoked),
            401,
            "the revocations known still hold"
        );
    }
    assert!(r1.logs().contains("shared store unreachable"), "a warning");

    c.redis.restart();
    for r in [r1, r2] {
        r.wait_for_metric("tollgate_store_up", 1.0);
    }
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "every valid request passed while Redis was down"
    );
    assert_eq!(revoke(r1, PSC, &token), 200);
    eventually(
        Duration::from_secs(1),
        "a revocation after the restart reaches replica 2",
        || r2.get_status("/api/orders/1", &token) == 401,
    );
    assert_eq!(r2.grant_with_assertion(&assertion(&c.key)).status(), 200);
}

#[test]
fn a_revocation_made_while_a_replica_was_cut_off_is_applied_when_it_reconnects() {
    let redis = Redis::start();
    let link = Cuttable::to(redis.addr);
    let c = cluster(2, redis, &[None, Some(&link)]);
    let (r1, r2) = (&c.replicas[0], &c.replicas[1]);
    let token = r1.token(PSC.0, PSC.1);
    assert_eq!(r2.get_status("/api/orders/1", &token), 200);
    link.cut();
    r2.wait_for_metric("tollgate_store_up", 0.0);
    assert_eq!(revoke(r1, PSC, &token), 200, "replica 1 still reaches Redis");
    assert_eq!(r1.get_status("/api/orders/1", &token), 401);
    assert_eq!(r2.get_status("/api/orders/1", &token), 200, "replica 2 cannot know yet");
    link.restore();
    eventually(
        Duration::from_secs(5),
        "applied at replica 2 once it reconnects",
        || r2.get_status("/api/orders/1", &token) == 401,
    );
    r2.wait_for_metric("tollgate_store_up", 1.0);
}

#[test]
fn a_rate_limit_holds_across_replicas_and_other_clients_are_unaffected() {
    let c = cluster(2, Redis::start(), &[]);
    let (r1, r2) = (&c.replicas[0], &c.replicas[1]);
    let token = r1.token(PSC.0, PSC.1);
    for _ in 0..5 {
        assert_eq!(r1.get_status("/api/limited/x", &token), 200);
    }
    assert_eq!(r1.get_status("/api/limited/x", &token), 429);
    // Replica 1's takes reach the shared bucket within a sync interval.
    eventually(Duration::from_secs(2), "the shared bucket drained", || {
        let keys = c.redis.command(&["KEYS", "t:rl:*"]);
        let Some(key) = keys.lines().find(|l| l.starts_with("t:rl:")) else {
            return false;
        };
        let tokens = c.redis.command(&["HGET", key, "tokens"]);
        tokens
            .lines()
            .nth(1)
            .and_then(|t| t.parse::<f64>().ok())
            .is_some_and(|t| t < 1.0)
    });
    let mut admitted = 0;
    eventually(Duration::from_secs(1), "refused at replica 2 too", || {
        match r2.get_status("/api/limited/x", &token) {
            200 => {
                admitted += 1;
                std::thread::sleep(Duration::from_millis(50));
                false
            }
            s => s == 429,
        }
    });
    assert!(admitted <= 2, "replica 2 admitted {admitted} before its bucket synced");
    let other = r2.token("other", "other-secret");
    assert_eq!(
        r2.get_status("/api/limited/x", &other),
        200,
        "another client is unaffected"
    );
}

/// Replicas on a `rediss://` Redis whose certificate a private CA signed (`ca_file`) share
/// revocations as over plain text; a CA that did not sign it leaves the store down, never
/// trusted, and tokens still pass.
#[test]
fn replicas_share_revocations_over_rediss_with_a_private_ca_and_refuse_another_ca() {
    let pki = pki();
    let redis = Redis::start_tls(&pki);
    let up = echo::start();
    let store = format!("url = \"{}\"\nca_file = \"redis-ca.pem\"", redis.tls_url());
    let (jwks, _) = jwks_and_key();
    let files = |ca: &str| {
        vec![
            ("redis-ca.pem", ca.as_bytes().to_vec()),
            ("jwt-client.jwks.json", jwks.as_bytes().to_vec()),
        ]
    };
    let start = |ca: &str| {
        let owned = files(ca);
        let f: Vec<(&str, &[u8])> = owned.iter().map(|(n, b)| (*n, b.as_slice())).collect();
        Tollgate::start_with(&config_with_store(&store), up.addr, &f)
    };
    let (a, b) = (start(&pki.ca_pem), start(&pki.ca_pem));
    a.wait_for_metric("tollgate_store_up", 1.0);
    b.wait_for_metric("tollgate_store_up", 1.0);
    let token = a.token("product-sa-client", "password");
    assert_eq!(b.get_status("/api/orders/1", &token), 200);
    assert_eq!(revoke(&a, ("product-sa-client", "password"), &token), 200);
    eventually(Duration::from_secs(1), "revoked over TLS at a, refused at b", || {
        b.get_status("/api/orders/1", &token) == 401
    });
    assert!(
        redis.command(&["KEYS", "t:*"]).contains("t:"),
        "the revocation is in this Redis"
    );

    let stranger = start(&common::pki().ca_pem);
    eventually(Duration::from_secs(10), "the store refused as unreachable", || {
        stranger.logs().contains("shared store unreachable")
    });
    assert_eq!(stranger.metric("tollgate_store_up"), Some(0.0));
    let fresh = stranger.token("product-sa-client", "password");
    assert_eq!(stranger.get_status("/api/orders/1", &fresh), 200);
}
