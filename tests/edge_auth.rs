//! Attacker-made lockouts and oracles at the token endpoint: the failure throttle from several
//! source addresses (127.0.0.2, .3, ...), one answer for every client-authentication failure,
//! the same cost for every failure in a realm that mixes plaintext and argon2 secrets, argon2
//! off the proxy worker, and refresh chains that end.

mod common;

use common::*;
use reqwest::blocking::{Client, Response};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// BASE_CONFIG with `lines` added to `[server]`.
fn config(lines: &str) -> Config {
    Config::base().server_lines(lines)
}

fn start(lines: &str) -> (Tollgate, echo::Echo) {
    let up = echo::start();
    (Tollgate::start(&config(lines).render(), up.addr), up)
}

/// A client whose connections leave from `ip`.
fn from(ip: &str) -> Client {
    Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn grant(tg: &Tollgate, c: &Client, id: &str, secret: &str) -> u16 {
    basic(tg, c, id, secret).status().as_u16()
}

fn basic(tg: &Tollgate, c: &Client, id: &str, secret: &str) -> Response {
    c.post(tg.url("/token"))
        .basic_auth(id, Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap()
}

fn with_assertion(tg: &Tollgate, c: &Client, assertion: &str) -> Response {
    c.post(tg.url("/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
        ])
        .send()
        .unwrap()
}

/// An unsigned assertion naming `client` (`alg: none`, no signature).
fn unsigned_assertion(client: &str) -> String {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use base64::Engine;
    let header = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = B64.encode(json!({"iss": client, "sub": client, "aud": "x", "exp": now() + 60}).to_string());
    format!("{header}.{claims}.")
}

#[test]
fn an_attacker_at_one_address_cannot_lock_the_client_out_at_another() {
    let (tg, _up) = start("auth_failures_per_minute = 3");
    let attacker = from("127.0.0.2");
    let statuses: Vec<u16> = (0..8)
        .map(|_| grant(&tg, &attacker, "product-sa-client", "guess"))
        .collect();
    assert_eq!(statuses, [401, 401, 401, 429, 429, 429, 429, 429]);
    // The attacker's own address stays throttled for this client, even with the right secret...
    assert_eq!(grant(&tg, &attacker, "product-sa-client", "password"), 429);
    // ...while the client at its own address, and another client at the attacker's, are served.
    assert_eq!(grant(&tg, &from("127.0.0.3"), "product-sa-client", "password"), 200);
    assert_eq!(grant(&tg, &attacker, "writer", "writer-secret"), 200);
}

#[test]
fn a_client_is_locked_out_everywhere_only_past_ten_times_the_limit() {
    let (tg, _up) = start("auth_failures_per_minute = 2");
    // Nine addresses, two failures each: 18 of the 20 that lock the client id everywhere.
    for i in 10..19 {
        let c = from(&format!("127.0.0.{i}"));
        for _ in 0..3 {
            grant(&tg, &c, "product-sa-client", "guess");
        }
    }
    assert_eq!(grant(&tg, &from("127.0.0.50"), "product-sa-client", "password"), 200);
    // The tenth address takes it to 20: now the client id is refused at every address.
    let c = from("127.0.0.19");
    assert_eq!(grant(&tg, &c, "product-sa-client", "guess"), 401);
    assert_eq!(grant(&tg, &c, "product-sa-client", "guess"), 401);
    let r = basic(&tg, &from("127.0.0.51"), "product-sa-client", "password");
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // One client's failures never make another answer 429.
    assert_eq!(grant(&tg, &from("127.0.0.51"), "writer", "writer-secret"), 200);
}

#[test]
fn a_flood_of_made_up_ids_leaves_real_clients_at_that_address_unaffected() {
    let (tg, _up) = start("auth_failures_per_minute = 3");
    let c = from("127.0.0.2");
    for i in 0..150 {
        let s = grant(&tg, &c, &format!("made-up-{}", i % 50), "guess");
        assert!(s == 401 || s == 429, "{s}");
    }
    assert_eq!(
        grant(&tg, &c, "made-up-1", "guess"),
        429,
        "the made-up ids are throttled"
    );
    assert_eq!(grant(&tg, &c, "product-sa-client", "password"), 200);
    assert_eq!(grant(&tg, &c, "writer", "writer-secret"), 200);
}

#[test]
fn a_success_resets_only_its_own_address() {
    let (tg, _up) = start("auth_failures_per_minute = 3");
    let attacker = from("127.0.0.2");
    let owner = from("127.0.0.3");
    assert_eq!(grant(&tg, &attacker, "product-sa-client", "guess"), 401);
    assert_eq!(grant(&tg, &attacker, "product-sa-client", "guess"), 401);
    assert_eq!(grant(&tg, &owner, "product-sa-client", "password"), 200);
    assert_eq!(grant(&tg, &attacker, "product-sa-client", "guess"), 401);
    assert_eq!(
        grant(&tg, &attacker, "product-sa-client", "guess"),
        429,
        "the owner's login reset nothing of the attacker's"
    );
}

#[test]
fn garbage_assertions_naming_a_client_never_lock_it_out_elsewhere() {
    let (tg, _up) = start("auth_failures_per_minute = 2");
    let garbage = unsigned_assertion("product-sa-client");
    for i in 10..30 {
        let c = from(&format!("127.0.0.{i}"));
        let statuses: Vec<u16> = (0..3)
            .map(|_| with_assertion(&tg, &c, &garbage).status().as_u16())
            .collect();
        assert_eq!(statuses, [401, 401, 429], "127.0.0.{i}");
    }
    assert_eq!(grant(&tg, &from("127.0.0.99"), "product-sa-client", "password"), 200);
}

#[test]
fn the_throttle_counts_the_client_a_trusted_proxy_forwarded_for() {
    let (tg, _up) = start("auth_failures_per_minute = 2\ntrusted_proxies = [\"127.0.0.1\"]");
    let via_proxy = |xff: &str, secret: &str| {
        client()
            .post(tg.url("/token"))
            .basic_auth("product-sa-client", Some(secret))
            .header("x-forwarded-for", xff)
            .form(&[("grant_type", "client_credentials")])
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    let statuses: Vec<u16> = (0..3).map(|_| via_proxy("203.0.113.66", "guess")).collect();
    assert_eq!(statuses, [401, 401, 429]);
    assert_eq!(
        via_proxy("203.0.113.7", "password"),
        200,
        "another client behind the same proxy"
    );
    // A peer that is no trusted proxy cannot pick its address: it is throttled as itself.
    let direct = from("127.0.0.2");
    for xff in ["203.0.113.1", "203.0.113.2", "203.0.113.3"] {
        let r = direct
            .post(tg.url("/token"))
            .basic_auth("product-sa-client", Some("guess"))
            .header("x-forwarded-for", xff)
            .form(&[("grant_type", "client_credentials")])
            .send()
            .unwrap();
        if xff.ends_with('3') {
            assert_eq!(r.status(), 429);
        }
    }
}

#[test]
fn every_client_authentication_failure_reads_the_same() {
    let (tg, _up) = start("auth_failures_per_minute = 1000");
    let c = client();
    let hs = |sub: &str| {
        let claims = json!({"iss": sub, "sub": sub, "aud": tg.url("/realms/demo/protocol/openid-connect/token"),
                            "exp": now() + 60, "jti": sub});
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(b"guess"),
        )
        .unwrap()
    };
    let answers: Vec<(String, Response)> = vec![
        ("unknown id".into(), basic(&tg, &c, "nobody", "x")),
        ("wrong secret".into(), basic(&tg, &c, "product-sa-client", "x")),
        ("disabled".into(), basic(&tg, &c, "disabled", "disabled-secret")),
        (
            "garbage, known".into(),
            with_assertion(&tg, &c, &unsigned_assertion("product-sa-client")),
        ),
        (
            "garbage, unknown".into(),
            with_assertion(&tg, &c, &unsigned_assertion("nobody")),
        ),
        ("hmac, known".into(), with_assertion(&tg, &c, &hs("product-sa-client"))),
        ("hmac, unknown".into(), with_assertion(&tg, &c, &hs("nobody"))),
        (
            "no credentials".into(),
            c.post(tg.url("/token"))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .unwrap(),
        ),
    ];
    let mut bodies = std::collections::BTreeSet::new();
    for (what, r) in answers {
        assert_eq!(r.status(), 401, "{what}");
        bodies.insert(r.text().unwrap());
    }
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let v: Value = serde_json::from_str(bodies.first().unwrap()).unwrap();
    assert_eq!(v["error"], "invalid_client");
}

/// A realm with plaintext clients and one argon2 client (`writer`), one proxy worker.
fn mixed_realm(lines: &str) -> (Tollgate, echo::Echo) {
    let phc = tollgate::secret::hash_secret("hashed-secret").unwrap();
    let up = echo::start();
    let config = config(lines)
        .server("threads", 1)
        .client("demo", "writer", "secret", phc)
        .render();
    (Tollgate::start(&config, up.addr), up)
}

/// The median time of `n` wrong-secret attempts at `id`.
fn median_failure(tg: &Tollgate, id: &str, n: usize) -> Duration {
    let c = client();
    let mut v: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            assert_eq!(grant(tg, &c, id, "not-it"), 401);
            t.elapsed()
        })
        .collect();
    v.sort();
    v[n / 2]
}

/// argon2 runs so far (real verifications and equal-cost stand-ins).
fn hash_runs(tg: &Tollgate) -> f64 {
    tg.metric("tollgate_secret_hash_checks_total")
        .expect("exported from the start")
}

#[test]
fn in_a_mixed_realm_a_plaintext_client_and_an_unknown_id_cost_one_argon2_run_as_a_hashed_client_does() {
    let (tg, _up) = mixed_realm("auth_failures_per_minute = 1000");
    let c = client();
    for id in ["writer", "product-sa-client", "nobody-by-this-name", "writer"] {
        let before = hash_runs(&tg);
        assert_eq!(grant(&tg, &c, id, "not-it"), 401, "{id}");
        assert_eq!(hash_runs(&tg), before + 1.0, "{id}: one argon2 run per failure");
    }
    // The stand-in is the realm's own (costliest) hash, so each run costs the same; a right
    // plaintext secret needs none.
    let before = hash_runs(&tg);
    assert_eq!(grant(&tg, &c, "product-sa-client", "password"), 200);
    assert_eq!(hash_runs(&tg), before);
}

#[test]
fn wrong_secrets_for_an_argon2_client_do_not_stall_the_proxy_worker() {
    let (tg, _up) = mixed_realm("auth_failures_per_minute = 100000");
    let one_run = median_failure(&tg, "writer", 3);
    let public = |n: usize| {
        let c = client();
        let mut v: Vec<Duration> = (0..n)
            .map(|_| {
                let t = Instant::now();
                assert_eq!(c.get(tg.url("/public/x")).send().unwrap().status(), 200);
                t.elapsed()
            })
            .collect();
        v.sort();
        v[n / 2]
    };
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let url = tg.url("/token");
    // Enough connections at once to overflow the pool's queue and keep every thread busy.
    let threads = std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1));
    let attackers: Vec<_> = (0..(tollgate::secret::QUEUE_PER_THREAD + 1) * threads + 8)
        .map(|_| {
            let (stop, url) = (stop.clone(), url.clone());
            std::thread::spawn(move || {
                // A queued run waits for those ahead of it: the queue's length in argon2 runs.
                let c = Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
                let mut seen = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let r = c
                        .post(&url)
                        .basic_auth("writer", Some("not-it"))
                        .form(&[("grant_type", "client_credentials")])
                        .send()
                        .unwrap();
                    let status = r.status().as_u16();
                    let retry = r.headers().contains_key("retry-after");
                    let error = r.json::<Value>().unwrap()["error"].as_str().unwrap_or("").to_string();
                    seen.push((status, error, retry));
                }
                seen
            })
        })
        .collect();
    std::thread::sleep(one_run * 3);
    let busy = public(20);
    // A right plaintext secret needs no argon2 and is served meanwhile.
    assert_eq!(grant(&tg, &client(), "product-sa-client", "password"), 200);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen: Vec<(u16, String, bool)> = attackers.into_iter().flat_map(|a| a.join().unwrap()).collect();
    // Run inline on the workers, argon2 would hold each public request behind the runs of the
    // ~20 attacking connections each worker holds (by estimate some ten runs at the median); on the pool,
    // it waits for none. Three runs leaves room for a host busy with other work, which slows
    // the public requests but not the `one_run` measured before.
    assert!(
        busy < one_run * 3,
        "public route p50 {busy:?} under attack, one argon2 run {one_run:?}"
    );
    assert!(tg.metric("tollgate_secret_hash_busy_total").is_some_and(|n| n > 0.0));
    assert!(
        seen.iter()
            .any(|(s, e, retry)| *s == 503 && e == "temporarily_unavailable" && *retry),
        "the full queue answered 503: {:?}",
        &seen[..seen.len().min(20)]
    );
    assert!(seen.iter().all(|(s, _, _)| *s == 401 || *s == 503));
}

#[test]
fn a_refresh_chain_ends_at_its_client_session_max_lifespan() {
    let up = echo::start();
    let config = Config::base()
        .realm("demo", "client_session_max_lifespan", "2s")
        .client("demo", "refresher", "secret", "refresher-secret")
        .client("demo", "refresher", "service_account_roles", vec!["reader"])
        .client("demo", "refresher", "use_refresh_token", true)
        .render();
    let tg = Tollgate::start(&config, up.addr);
    let post = |form: &[(&str, &str)]| -> (u16, Value) {
        let r = client()
            .post(tg.url("/token"))
            .basic_auth("refresher", Some("refresher-secret"))
            .form(form)
            .send()
            .unwrap();
        (r.status().as_u16(), r.json().unwrap())
    };
    let (_, first) = post(&[("grant_type", "client_credentials")]);
    let refresh = first["refresh_token"].as_str().unwrap().to_string();
    let started = claims_of(&refresh)["auth_time"].as_u64().unwrap();
    // Nothing of the chain outlives its end, the access token included.
    assert!(first["expires_in"].as_u64().unwrap() <= 2, "{first}");
    assert!(first["refresh_expires_in"].as_u64().unwrap() <= 2, "{first}");
    let (status, second) = post(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)]);
    assert_eq!(status, 200, "{second}");
    let renewed = second["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(
        claims_of(&renewed)["auth_time"].as_u64(),
        Some(started),
        "the chain keeps its start"
    );
    assert!(claims_of(&renewed)["exp"].as_u64().unwrap() <= started + 2);
    // Past the end (still inside the realm's 5 s leeway on the token's own exp): refused.
    while now() < started + 2 {
        std::thread::sleep(Duration::from_millis(100));
    }
    let (status, v) = post(&[("grant_type", "refresh_token"), ("refresh_token", &renewed)]);
    assert_eq!((status, v["error"].as_str()), (400, Some("invalid_grant")), "{v}");
}
