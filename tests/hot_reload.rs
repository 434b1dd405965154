//! Hot reload: config and keys change under load without a dropped request.

mod common;

use common::*;
use jsonwebtoken::Algorithm;
use serde_json::Value;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Replace `path` atomically (write a temp file beside it, then rename), as editors and
/// config-management tools do.
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn token_status(tg: &Tollgate, id: &str, secret: &str) -> u16 {
    tg.grant(id, secret).status().as_u16()
}

/// Poll until `f` holds; return how long it took. Fails after `limit`.
fn within(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if f() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn counter(tg: &Tollgate, name: &str) -> u64 {
    tg.metric(name).unwrap_or(0.0) as u64
}

const NEW_CLIENT: &str =
    "\n[realms.demo.clients.newcomer]\nsecret = \"new-secret\"\nservice_account_roles = [\"reader\"]\n";

#[test]
fn a_new_client_works_within_a_second_and_a_removed_one_stops() {
    let up = echo::start();
    let tg = Tollgate::start(BASE_CONFIG, up.addr);
    let base = std::fs::read_to_string(tg.config_path()).unwrap();
    assert_eq!(token_status(&tg, "newcomer", "new-secret"), 401);
    replace(&tg.config_path(), &format!("{base}{NEW_CLIENT}"));
    within(Duration::from_secs(1), "new client", || {
        token_status(&tg, "newcomer", "new-secret") == 200
    });
    assert_eq!(counter(&tg, "tollgate_config_reloads_total"), 1);
    replace(&tg.config_path(), &base);
    within(Duration::from_secs(1), "removed client", || {
        token_status(&tg, "newcomer", "new-secret") == 401
    });
    // readyz names the live config by its hash.
    let ready: Value = client()
        .get(format!("http://{}/readyz", tg.admin))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(ready["config_hash"].as_str().unwrap().len(), 64);
}

#[test]
fn invalid_configs_are_rejected_and_the_old_one_keeps_serving() {
    let up = echo::start();
    let tg = Tollgate::start(BASE_CONFIG, up.addr);
    let base = std::fs::read_to_string(tg.config_path()).unwrap();
    let hash = |tg: &Tollgate| -> String {
        let v: Value = client()
            .get(format!("http://{}/readyz", tg.admin))
            .send()
            .unwrap()
            .json()
            .unwrap();
        v["config_hash"].as_str().unwrap().to_string()
    };
    let before = hash(&tg);
    let broken = [
        format!("{base}\n[realms.demo.clients.x\nsecret = 1"), // broken TOML
        format!("{base}\n[realms.demo.clients.x]\nsecret = \"s\"\nsecrett = \"t\"\n"), // unknown key
        base.replace("roles = [\"reader\", \"orders-api:read\"]", "roles = [\"ghost\"]"), // dangling role
        base.replace("private_key = \"demo-rs256.pem\"", "private_key = \"missing.pem\""), // unreadable key
    ];
    for (i, text) in broken.iter().enumerate() {
        replace(&tg.config_path(), text);
        within(Duration::from_secs(2), "failure counted", || {
            counter(&tg, "tollgate_config_reload_failures_total") == i as u64 + 1
        });
        assert_eq!(
            token_status(&tg, "product-sa-client", "password"),
            200,
            "old config still serves"
        );
        assert_eq!(hash(&tg), before);
    }
    assert!(tg.logs().contains("config reload rejected"));
    replace(&tg.config_path(), &format!("{base}{NEW_CLIENT}"));
    within(Duration::from_secs(1), "valid config applies again", || {
        token_status(&tg, "newcomer", "new-secret") == 200
    });
}

#[test]
fn sighup_reloads_when_watching_is_off() {
    let up = echo::start();
    let config = Config::base().server("watch", false).render();
    let tg = Tollgate::start(&config, up.addr);
    let base = std::fs::read_to_string(tg.config_path()).unwrap();
    replace(&tg.config_path(), &format!("{base}{NEW_CLIENT}"));
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        token_status(&tg, "newcomer", "new-secret"),
        401,
        "not watched, so not yet applied"
    );
    let pid = tg.child.id().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .unwrap()
        .success());
    within(Duration::from_secs(1), "SIGHUP reload", || {
        token_status(&tg, "newcomer", "new-secret") == 200
    });
}

#[test]
fn a_configmap_style_symlink_swap_is_seen() {
    let up = echo::start();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::copy(DEMO_KEY, d.join("demo-rs256.pem")).unwrap();
    let text = BASE_CONFIG
        .replace("{UPSTREAM}", &up.addr.to_string())
        .replace("{DOWN}", &dead_addr().to_string());
    // Kubernetes: proxy.toml -> ..data/proxy.toml, ..data -> ..2026_01, swapped by renaming ..data_tmp.
    std::fs::create_dir(d.join("..2026_01")).unwrap();
    std::fs::write(d.join("..2026_01/proxy.toml"), &text).unwrap();
    std::os::unix::fs::symlink("..2026_01", d.join("..data")).unwrap();
    std::os::unix::fs::symlink("..data/proxy.toml", d.join("proxy.toml")).unwrap();
    let tg = Tollgate::start_in(dir);
    assert_eq!(token_status(&tg, "newcomer", "new-secret"), 401);
    let d = tg.dir.path();
    std::fs::create_dir(d.join("..2026_02")).unwrap();
    std::fs::write(d.join("..2026_02/proxy.toml"), format!("{text}{NEW_CLIENT}")).unwrap();
    std::os::unix::fs::symlink("..2026_02", d.join("..data_tmp")).unwrap();
    std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
    within(Duration::from_secs(1), "ConfigMap swap", || {
        token_status(&tg, "newcomer", "new-secret") == 200
    });
}

#[test]
fn key_rotation_new_kid_signs_old_verifies_until_removed() {
    let up = echo::start();
    let tg = Tollgate::start(BASE_CONFIG, up.addr);
    let base = std::fs::read_to_string(tg.config_path()).unwrap();
    let old_token = tg.token("product-sa-client", "password");
    assert_eq!(header_of(&old_token)["kid"], "demo-rs256");
    // The discovery document is rendered once per config: it must follow the new keys.
    let algs = || -> Vec<String> {
        let d: Value = tg.get_json("/realms/demo/.well-known/openid-configuration");
        serde_json::from_value(d["id_token_signing_alg_values_supported"].clone()).unwrap()
    };
    assert_eq!(algs(), ["RS256"]);
    // A new key in front: it signs, the old one still verifies and stays published.
    std::fs::write(
        tg.dir.path().join("new.pem"),
        tollgate::token::keys::generate_pem(Algorithm::ES256).unwrap(),
    )
    .unwrap();
    let old_key = r#"{ kid = "demo-rs256", alg = "RS256", private_key = "demo-rs256.pem" }"#;
    let new_key = r#"{ kid = "new-es256", alg = "ES256", private_key = "new.pem" }"#;
    replace(
        &tg.config_path(),
        &base.replace(old_key, &format!("{new_key}, {old_key}")),
    );
    within(Duration::from_secs(1), "rotation", || {
        header_of(&tg.token("product-sa-client", "password"))["kid"] == "new-es256"
    });
    assert_eq!(algs(), ["ES256", "RS256"]);
    let jwks: Value = tg.get_json("/realms/demo/protocol/openid-connect/certs");
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, ["new-es256", "demo-rs256"]);
    let new_token = tg.token("product-sa-client", "password");
    let call = |t: &str| {
        client()
            .get(tg.url("/api/orders/1"))
            .bearer_auth(t)
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(call(&old_token), 200);
    assert_eq!(call(&new_token), 200);
    // The old key removed: its tokens stop at once, even though they were verified (and cached) before.
    replace(&tg.config_path(), &base.replace(old_key, new_key));
    within(Duration::from_secs(1), "old key removed", || call(&old_token) == 401);
    assert_eq!(call(&new_token), 200);
}

#[test]
fn no_request_fails_across_reloads_under_concurrent_traffic() {
    let up = echo::start();
    let tg = Arc::new(Tollgate::start(BASE_CONFIG, up.addr));
    let base = std::fs::read_to_string(tg.config_path()).unwrap();
    let token = tg.token("product-sa-client", "password");
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let workers: Vec<_> = (0..16)
        .map(|i| {
            let (tg, stop, ok, failures, token) =
                (tg.clone(), stop.clone(), ok.clone(), failures.clone(), token.clone());
            std::thread::spawn(move || {
                let c = client();
                while !stop.load(Ordering::Relaxed) {
                    let r = if i % 4 == 0 {
                        c.post(tg.url("/token"))
                            .basic_auth("product-sa-client", Some("password"))
                            .form(&[("grant_type", "client_credentials")])
                            .send()
                    } else {
                        c.get(tg.url("/api/orders/1")).bearer_auth(&token).send()
                    };
                    match r {
                        Ok(r) if r.status() == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => failures.lock().unwrap().push(format!("status {}", r.status())),
                        Err(e) => failures.lock().unwrap().push(format!("error {e}")),
                    }
                }
            })
        })
        .collect();
    for i in 0..12u64 {
        let text = if i % 2 == 0 {
            format!("{base}{NEW_CLIENT}")
        } else {
            base.clone()
        };
        replace(&tg.config_path(), &text);
        let reloads = i + 1;
        within(Duration::from_secs(2), "reload applied", || {
            counter(&tg, "tollgate_config_reloads_total") == reloads
        });
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    let failures = failures.lock().unwrap();
    assert!(
        failures.is_empty(),
        "{} requests failed across reloads: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(
        ok.load(Ordering::Relaxed) > 200,
        "traffic flowed: {}",
        ok.load(Ordering::Relaxed)
    );
}
