//! Tokens from a remote token endpoint, a second real tollgate process: refreshed before they
//! expire and never sent expired, one fetch for concurrent first calls, the cached token while
//! the endpoint is down, each kind of client authentication, TLS verified.

use crate::common::egress::{
    bearer_of, eventually, issued, issuer_config, received_at, remote_route, token_endpoint, unix_now, Sidecar,
    SECRET_AUTH,
};
use crate::common::{claims_of, client, dead_addr, echo, pki, Tollgate, BASE_CONFIG};
use serde_json::Value;
use std::collections::HashSet;
use std::time::{Duration, Instant};

#[test]
fn remote_tokens_are_refreshed_before_they_expire_and_never_sent_expired() {
    let up = echo::start();
    let port = dead_addr().port();
    let issuer = Tollgate::start(&issuer_config(port, "4s"), up.addr);
    let side = Sidecar::start(&remote_route(&token_endpoint(&issuer), "/", SECRET_AUTH), up.addr, &[]);
    let mut seen: Vec<(String, f64, f64)> = Vec::new();
    let started = Instant::now();
    // Longer than two lifespans.
    while started.elapsed() < Duration::from_secs(10) {
        // When the upstream read the request: the moment the token had to be valid.
        let (token, received) = side.get_token_received("/x");
        let c = claims_of(&token);
        let (iat, exp) = (c["iat"].as_f64().unwrap(), c["exp"].as_f64().unwrap());
        assert!(
            exp > received,
            "an expired token reached the upstream: exp {exp}, received at {received}"
        );
        assert_eq!(c["azp"], "product-sa-client");
        if seen.last().is_none_or(|(t, _, _)| *t != token) {
            seen.push((token, iat, exp));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(seen.len() >= 3, "{} tokens over 10 s of a 4 s lifespan", seen.len());
    for pair in seen.windows(2) {
        assert!(
            pair[1].1 < pair[0].2,
            "the next token was fetched before the last expired"
        );
    }
    let n = issued(&issuer, "product-sa-client") as usize;
    assert!(
        n >= seen.len() && n <= seen.len() + 1,
        "{n} issued, {} seen",
        seen.len()
    );
    assert!(!side.tg.logs().contains("password"), "{}", side.tg.logs());
}

#[test]
fn forty_concurrent_first_calls_make_one_token_request() {
    let up = echo::start();
    let issuer = Tollgate::start(BASE_CONFIG, up.addr);
    let side = Sidecar::start(&remote_route(&token_endpoint(&issuer), "/", SECRET_AUTH), up.addr, &[]);
    let url = side.url("/first");
    let barrier = std::sync::Arc::new(std::sync::Barrier::new(40));
    let calls: Vec<_> = (0..40)
        .map(|_| {
            let (url, barrier) = (url.clone(), barrier.clone());
            std::thread::spawn(move || {
                let c = client();
                barrier.wait();
                let r = c.get(url).send().unwrap();
                assert_eq!(r.status(), 200);
                bearer_of(&r.json().unwrap())
            })
        })
        .collect();
    let tokens: HashSet<String> = calls.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(tokens.len(), 1);
    assert_eq!(issued(&issuer, "product-sa-client"), 1.0, "one token issued");
    // One request reached the endpoint (a failed one would not count as issued): the sidecar
    // made one attempt, and the issuer answered one token request.
    let fetched = |result: &str| {
        side.metric(&format!(
            r#"tollgate_egress_token_fetches_total{{route="*/",result="{result}"}}"#
        ))
    };
    assert_eq!((fetched("ok"), fetched("error"), fetched("refused")), (1.0, 0.0, 0.0));
    // Every answer of the issuer's realm endpoints but the harness's discovery probes.
    let endpoint_requests = || -> f64 {
        issuer
            .metrics()
            .lines()
            .filter(|l| l.starts_with(r#"tollgate_requests_total{route="","#) && !l.contains("discovery"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    // The issuer counts a request once its answer is out.
    eventually(Duration::from_secs(3), "the issuer's count", || {
        endpoint_requests() >= 1.0
    });
    assert_eq!(endpoint_requests(), 1.0, "one token request reached the endpoint");
}

#[test]
fn a_stopped_endpoint_leaves_the_cached_token_serving_until_it_expires_then_503_then_recovery() {
    let up = echo::start();
    let port = dead_addr().port();
    let config = issuer_config(port, "6s");
    let mut issuer = Tollgate::start(&config, up.addr);
    let side = Sidecar::start(&remote_route(&token_endpoint(&issuer), "/", SECRET_AUTH), up.addr, &[]);
    let first = side.get_token("/x");
    let exp = claims_of(&first)["exp"].as_f64().unwrap();
    issuer.child.kill().unwrap();
    issuer.child.wait().unwrap();

    // The endpoint is gone before the token's refresh point (half of its 6 s): every refresh
    // fails, and the cached token serves on.
    let mut last_served = None;
    let refused = loop {
        let r = side.get("/x");
        if r.status() != 200 {
            break r;
        }
        let echoed: Value = r.json().unwrap();
        assert_eq!(bearer_of(&echoed), first, "only the cached token can be had");
        let received = received_at(&echoed);
        assert!(exp > received, "an expired token reached the upstream");
        last_served = Some(received);
        assert!(unix_now() < exp + 5.0, "still 200 long after exp");
        std::thread::sleep(Duration::from_millis(50));
    };
    let last_served = last_served.expect("the cached token served after the endpoint stopped");
    assert!(
        last_served > exp - 2.0,
        "the cached token stopped serving {:.1} s before it expired",
        exp - last_served
    );
    assert!(unix_now() > exp - 1.5, "503 well before the token expired");
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().unwrap();
    assert_eq!(body["error"], "temporarily_unavailable", "{body}");
    // Still 503, promptly, while the endpoint is down.
    let t = Instant::now();
    assert_eq!(side.get("/x").status(), 503);
    assert!(t.elapsed() < Duration::from_secs(7), "{:?}", t.elapsed());

    let _back = Tollgate::start(&config, up.addr);
    eventually(Duration::from_secs(30), "recovery", || side.get("/x").status() == 200);
    let fresh = side.get_token("/x");
    assert_ne!(fresh, first);
    assert!(claims_of(&fresh)["exp"].as_f64().unwrap() > unix_now());
    assert!(
        side.tg.logs().contains("egress token not fetched"),
        "{}",
        side.tg.logs()
    );
}

#[test]
fn client_secrets_from_a_file_in_basic_and_post() {
    let up = echo::start();
    let issuer = Tollgate::start(BASE_CONFIG, up.addr);
    let file = "client_id = \"product-sa-client\"\nclient_secret_file = \"svc.secret\"";
    let routes = format!(
        "{}{}",
        remote_route(&token_endpoint(&issuer), "/basic", file),
        remote_route(
            &token_endpoint(&issuer),
            "/post",
            &format!("{file}\nclient_auth = \"client_secret_post\"")
        )
    );
    let side = Sidecar::start(&routes, up.addr, &[("svc.secret", b"password\n")]);
    for path in ["/basic/x", "/post/x"] {
        let token = side.get_token(path);
        assert_eq!(claims_of(&token)["azp"], "product-sa-client", "{path}");
    }
    assert_eq!(issued(&issuer, "product-sa-client"), 2.0, "one token per source");
    assert!(!side.tg.logs().contains("password"));
}

#[test]
fn private_key_jwt_toward_a_second_tollgate() {
    use tollgate::token::{keys::generate_pem, SigningKey};
    let es = jsonwebtoken::Algorithm::ES256;
    let pem = generate_pem(es).unwrap();
    let jwk = SigningKey::from_pem("svc-jwt-1", es, pem.as_bytes()).unwrap().jwk;
    let jwks = serde_json::json!({ "keys": [jwk] }).to_string();
    let up = echo::start();
    let port = dead_addr().port();
    let client_lines =
        "\n[realms.demo.clients.svc-jwt]\njwks = \"svc-jwt.jwks.json\"\nservice_account_roles = [\"reader\"]\n";
    let issuer = Tollgate::start_with(
        &format!("{}{client_lines}", issuer_config(port, "5m")),
        up.addr,
        &[("svc-jwt.jwks.json", jwks.as_bytes())],
    );
    let auth = |key: &str| format!("client_id = \"svc-jwt\"\nprivate_key = \"{key}\"\nprivate_key_kid = \"svc-jwt-1\"");
    let other = generate_pem(es).unwrap();
    let routes = format!(
        "{}{}",
        remote_route(&token_endpoint(&issuer), "/", &auth("svc.pem")),
        remote_route(&token_endpoint(&issuer), "/wrong-key", &auth("other.pem"))
    );
    let side = Sidecar::start(
        &routes,
        up.addr,
        &[("svc.pem", pem.as_bytes()), ("other.pem", other.as_bytes())],
    );
    for _ in 0..3 {
        assert_eq!(claims_of(&side.get_token("/x"))["azp"], "svc-jwt");
    }
    assert_eq!(issued(&issuer, "svc-jwt"), 1.0);
    // A key the issuer does not know: refused by the endpoint, 503 to the app.
    assert_eq!(side.get("/wrong-key/x").status(), 503);
    assert!(
        side.tg.logs().contains("answered 401 (invalid_client)"),
        "{}",
        side.tg.logs()
    );
}

#[test]
fn tls_upstreams_and_token_endpoints_are_verified_against_the_configured_cas() {
    let pki = pki();
    let tls_up = echo::start_tls(&pki.cert_pem, &pki.key_pem);
    let up = echo::start();
    let tls = dead_addr();
    let _issuer = Tollgate::start_with(
        &BASE_CONFIG.replace(
            "\nlisten = \"127.0.0.1:0\"",
            &format!("\nlisten = \"127.0.0.1:0\"\ntls_listen = \"{tls}\"\ntls_cert = \"server.crt\"\ntls_key = \"server.key\""),
        ),
        up.addr,
        &[("server.crt", pki.cert_pem.as_bytes()), ("server.key", pki.key_pem.as_bytes())],
    );
    let endpoint = format!(
        "https://localhost:{}/realms/demo/protocol/openid-connect/token",
        tls.port()
    );
    let routes = format!(
        "{}{}[[egress.routes]]\nprefix = \"/tls-upstream\"\nupstream = \"https://localhost:{}\"\nrealm = \"demo\"\nclient = \"writer\"\n",
        remote_route(&endpoint, "/trusted", &format!("{SECRET_AUTH}\nca_file = \"ca.pem\"")),
        remote_route(&endpoint, "/untrusted", SECRET_AUTH),
        tls_up.addr.port()
    );
    let base = BASE_CONFIG.replace("[server]\n", "[server]\nupstream_ca_file = \"ca.pem\"\n");
    let side = Sidecar::start_on(&base, &routes, up.addr, &[("ca.pem", pki.ca_pem.as_bytes())]);
    assert_eq!(claims_of(&side.get_token("/trusted/x"))["azp"], "product-sa-client");
    assert_eq!(
        side.get("/untrusted/x").status(),
        503,
        "an endpoint the system roots do not vouch for"
    );
    let v: Value = side.get("/tls-upstream/y").json().unwrap();
    assert_eq!(
        (v["path"].as_str(), v["headers"]["host"][0].as_str()),
        (
            Some("/tls-upstream/y"),
            Some(format!("localhost:{}", tls_up.addr.port()).as_str())
        )
    );
    assert_eq!(claims_of(&bearer_of(&v))["azp"], "writer");
}
