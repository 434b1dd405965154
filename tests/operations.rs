//! Operations: the CLI, hashed secrets, TLS (listener and upstream), logs, metrics, SIGTERM and SIGINT.

mod common;

use common::*;
use serde_json::Value;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Waits up to 10 s for `child` to exit.
fn wait_for_exit(child: &mut std::process::Child, when: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        assert!(Instant::now() < deadline, "did not exit {when}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn hash_secret(secret: &str) -> String {
    let mut child = Command::new(bin())
        .arg("hash-secret")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{secret}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

#[test]
fn help_version_and_bad_flags() {
    let (code, out, _) = run(&["--help"]);
    assert_eq!(code, 0);
    for verb in ["check", "keygen", "hash-secret", "--config"] {
        assert!(out.contains(verb), "--help lacks {verb}: {out}");
    }
    let (code, out, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert!(out.starts_with("tollgate "), "{out}");
    let (code, out, err) = run(&["--frobnicate"]);
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    let (code, _, err) = run(&["--config", "/nonexistent/proxy.toml"]);
    assert_eq!(code, 2);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let (code, _, err) = run(&["check", "--config", "/nonexistent/proxy.toml"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, _) = run(&["keygen", "--alg", "HS256", "--out", "/tmp/x"]);
    assert_eq!(code, 2);
}

#[test]
fn check_accepts_the_bundled_config_and_names_every_problem() {
    let demo = concat!(env!("CARGO_MANIFEST_DIR"), "/proxy.toml");
    let (code, out, _) = run(&["check", "--config", demo]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok:"), "{out}");
    assert!(out.contains("plaintext"), "plaintext secrets are warned about: {out}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(DEMO_KEY, dir.path().join("demo-rs256.pem")).unwrap();
    let bad = BASE_CONFIG
        .replace("{UPSTREAM}", "127.0.0.1:9")
        .replace("{DOWN}", "127.0.0.1:9")
        .replace(
            "optional_scopes = [\"orders\"]",
            "optional_scopes = [\"orders\"]\nsecrett = \"x\"",
        );
    let path = dir.path().join("proxy.toml");
    std::fs::write(&path, &bad).unwrap();
    let (code, out, _) = run(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(out.contains("secrett"), "unknown key named: {out}");
    let dangling = BASE_CONFIG
        .replace("{UPSTREAM}", "127.0.0.1:9")
        .replace("{DOWN}", "127.0.0.1:9")
        .replace(
            "roles = [\"reader\", \"orders-api:read\"]",
            "roles = [\"ghost\", \"orders-api:nope\"]",
        );
    std::fs::write(&path, &dangling).unwrap();
    let (code, out, _) = run(&["check", "--config", path.to_str().unwrap()]);
    assert_eq!(code, 1);
    assert!(
        out.contains("realms.demo.clients.product-sa-client.service_account_roles"),
        "{out}"
    );
    assert!(
        out.contains("\"ghost\"") && out.contains("\"nope\""),
        "both problems listed: {out}"
    );
    assert!(out.contains(&path.display().to_string()), "file named: {out}");
}

#[test]
fn keygen_writes_private_pkcs8_keys_that_load() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    for alg in ["RS256", "ES256", "EdDSA"] {
        let out = dir.path().join(format!("{alg}.pem"));
        let (code, _, err) = run(&["keygen", "--alg", alg, "--out", out.to_str().unwrap()]);
        assert_eq!(code, 0, "{err}");
        assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
        let pem = std::fs::read_to_string(&out).unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        let alg = tollgate::token::keys::parse_alg(alg).unwrap();
        tollgate::token::keys::SigningKey::from_pem("k", alg, pem.as_bytes()).unwrap();
        // Never overwrites.
        let (code, _, _) = run(&["keygen", "--alg", "RS256", "--out", out.to_str().unwrap()]);
        assert_eq!(code, 2);
    }
}

#[test]
fn a_hashed_secret_is_accepted_and_the_old_plaintext_refused() {
    let phc = hash_secret("rotated-secret");
    assert!(phc.starts_with("$argon2id$"), "{phc}");
    let up = echo::start();
    let config = Config::base()
        .client("demo", "product-sa-client", "secret", phc.as_str())
        .render();
    let tg = Tollgate::start(&config, up.addr);
    let status = |secret: &str| {
        client()
            .post(tg.url("/token"))
            .basic_auth("product-sa-client", Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(status("rotated-secret"), 200);
    assert_eq!(status("rotated-secret"), 200, "second time (cached verification)");
    assert_eq!(status("password"), 401);
    let logs = tg.logs();
    assert!(
        logs.contains("realms.demo.clients.writer.secret is plaintext"),
        "plaintext warned, naming the client"
    );
    assert!(!logs.contains("clients.product-sa-client.secret is plaintext"));
    for secret in ["rotated-secret", "password", "writer-secret", &phc] {
        assert!(!logs.contains(secret), "a secret reached the log");
    }
}

/// tollgate with a TLS listener on the test PKI's server certificate, beside the plain one;
/// `server_keys` are more `[server]` lines.
fn start_with_tls(pki: &Pki, upstream: std::net::SocketAddr, server_keys: &str) -> Tollgate {
    let config = Config::base()
        .server_lines(server_keys)
        .server("tls_listen", "127.0.0.1:0")
        .server("tls_cert", "server.crt")
        .server("tls_key", "server.key")
        .render();
    Tollgate::start_with(
        &config,
        upstream,
        &[
            ("server.crt", pki.cert_pem.as_bytes()),
            ("server.key", pki.key_pem.as_bytes()),
        ],
    )
}

#[test]
fn tokens_are_served_over_the_tls_listener() {
    let pki = pki();
    let up = echo::start();
    let tg = start_with_tls(&pki, up.addr, "");
    let tls_addr = tg.tls.expect("tls listener announced");
    let c = reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem.as_bytes()).unwrap())
        .tls_built_in_root_certs(false)
        .build()
        .unwrap();
    let base = format!("https://localhost:{}", tls_addr.port());
    let r = c
        .post(format!("{base}/realms/demo/protocol/openid-connect/token"))
        .basic_auth("product-sa-client", Some("password"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = r.json::<Value>().unwrap()["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        c.get(format!("{base}/api/orders/1"))
            .bearer_auth(&token)
            .send()
            .unwrap()
            .status(),
        200
    );
    // Kept-alive TLS requests longer than the buffer of the wait between requests.
    for _ in 0..2 {
        let r = c
            .get(format!("{base}/public/x"))
            .header("x-pad", "p".repeat(6000))
            .send()
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.json::<Value>().unwrap()["headers"]["x-pad"][0].as_str().map(str::len),
            Some(6000)
        );
    }
    // A client that does not trust the test CA is refused at the handshake.
    assert!(client().get(format!("{base}/public")).send().is_err());
}

#[test]
fn tls_handshakes_in_progress_count_towards_max_connections() {
    use std::net::TcpStream;
    let pki = pki();
    let up = echo::start();
    let tg = start_with_tls(&pki, up.addr, "max_connections = 2\n");
    tg.wait_for_metric("tollgate_connections_open", 0.0);
    // Two clients connect to the TLS port and never send a ClientHello.
    let tls_addr = tg.tls.expect("tls listener announced");
    let mut silent: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(tls_addr).unwrap()).collect();
    tg.wait_for_metric("tollgate_connections_open", 2.0);

    // They hold the two places: a cleartext client is closed without an answer.
    assert_refused(tg.http, b"GET /public HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(tg.metric("tollgate_connections_refused_total"), Some(1.0));

    // One gives up; its place serves the next client.
    silent.pop();
    tg.wait_for_metric("tollgate_connections_open", 1.0);
    let (status, _) = raw_request(tg.http, b"GET /public HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_eq!(status, 200);
}

#[test]
fn a_tls_upstream_is_verified_against_the_configured_ca() {
    let pki = pki();
    let tls_up = echo::start_tls(&pki.cert_pem, &pki.key_pem);
    let up = echo::start();
    let config = Config::base()
        .server("upstream_ca_file", "ca.pem")
        .add_route(&[
            ("prefix", "/secure".into()),
            ("public", true.into()),
            ("upstream", format!("https://localhost:{}", tls_up.addr.port()).into()),
        ])
        .render();
    let tg = Tollgate::start_with(&config, up.addr, &[("ca.pem", pki.ca_pem.as_bytes())]);
    let r = client().get(tg.url("/secure/x")).send().unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap()["path"], "/secure/x");

    // Without the CA the upstream's certificate is not trusted: 502, not a silent downgrade.
    let config = format!(
        "{}\n[[routes]]\nprefix = \"/secure\"\npublic = true\nupstream = \"https://localhost:{}\"\n",
        BASE_CONFIG,
        tls_up.addr.port()
    );
    let tg = Tollgate::start(&config, up.addr);
    assert_eq!(client().get(tg.url("/secure/x")).send().unwrap().status(), 502);
}

/// The JSON access line of the request to `path`, waiting up to 5 s for the batch to be written.
fn json_access_line(tg: &Tollgate, path: &str) -> Value {
    let needle = format!("\"path\":\"{path}\"");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let logs = tg.logs();
        if let Some(l) = logs.lines().find(|l| l.contains(&needle)) {
            return serde_json::from_str(l).unwrap();
        }
        assert!(Instant::now() < deadline, "no access line for {path}: {logs}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn json_access_logs_carry_the_request_fields_and_no_secret() {
    let up = echo::start();
    let config = Config::base().server("log_format", "json").render();
    let tg = Tollgate::start(&config, up.addr);
    let token = tg.token("product-sa-client", "password");
    assert_eq!(
        client()
            .get(tg.url("/api/orders/./9"))
            .bearer_auth(&token)
            .send()
            .unwrap()
            .status(),
        200
    );
    let v = json_access_line(&tg, "/api/orders/9");
    assert_eq!(v["method"], "GET");
    assert_eq!(v["route"], "/api/orders");
    assert_eq!(v["status"], 200);
    assert_eq!(v["client_id"], "product-sa-client");
    assert_eq!(v["outcome"], "allowed");
    assert!(v["latency_us"].is_u64());
    // A refusal names the route it matched.
    assert_eq!(client().get(tg.url("/api/orders/10")).send().unwrap().status(), 401);
    let v = json_access_line(&tg, "/api/orders/10");
    assert_eq!(
        (v["route"].as_str(), v["status"].as_u64()),
        (Some("/api/orders"), Some(401))
    );
    assert_eq!(
        (v["client_id"].as_str(), v["outcome"].as_str()),
        (Some(""), Some("no_token"))
    );
    let logs = tg.logs();
    assert!(!logs.contains(token.rsplit('.').next().unwrap()) && !logs.contains("password"));
}

#[test]
fn metrics_are_present_after_traffic() {
    let up = echo::start();
    let tg = Tollgate::start(BASE_CONFIG, up.addr);
    let token = tg.token("product-sa-client", "password");
    client()
        .get(tg.url("/api/orders/1"))
        .bearer_auth(&token)
        .send()
        .unwrap();
    client().get(tg.url("/api/orders/1")).send().unwrap();
    client().get(tg.url("/api/write")).bearer_auth(&token).send().unwrap();
    client().get(tg.url("/nowhere")).send().unwrap();
    let m = tg.metrics();
    for want in [
        r#"tollgate_requests_total{route="/api/orders",outcome="allowed"} 1"#,
        // Refusals are counted under the route they matched; a path no route matches has none.
        r#"tollgate_requests_total{route="/api/orders",outcome="no_token"} 1"#,
        r#"tollgate_requests_total{route="/api/write",outcome="insufficient_scope"} 1"#,
        r#"tollgate_requests_total{route="",outcome="no_route"} 1"#,
        r#"tollgate_denials_total{reason="no_token"} 1"#,
        r#"tollgate_denials_total{reason="insufficient_scope"} 1"#,
        r#"tollgate_tokens_issued_total{realm="demo",client="product-sa-client",grant="client_credentials"} 1"#,
        r#"tollgate_upstream_latency_seconds_count{route="/api/orders"} 1"#,
        "tollgate_config_reloads_total 0",
        "tollgate_config_reload_failures_total 0",
        "# TYPE tollgate_upstream_latency_seconds histogram",
        "tollgate_config_last_reload_success_timestamp_seconds ",
        "tollgate_config_info{hash=\"",
    ] {
        assert!(m.contains(want), "missing {want} in\n{m}");
    }
}

#[test]
fn sigterm_drains_requests_in_flight_then_exits_zero() {
    let up = echo::start();
    let mut tg = Tollgate::start(BASE_CONFIG, up.addr);
    let url = tg.url("/slowok/x");
    let slow = std::thread::spawn(move || client().get(url).send().map(|r| r.status().as_u16()));
    // Wait until the slow request is in flight (the upstream holds it for 2 s).
    let deadline = Instant::now() + Duration::from_secs(5);
    while !tg.logs().contains("slowok") && up.connections.load(std::sync::atomic::Ordering::Relaxed) == 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    let pid = tg.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    assert_eq!(slow.join().unwrap().unwrap(), 200, "the request in flight completed");
    assert_eq!(wait_for_exit(&mut tg.child, "after draining").code(), Some(0));
}

#[test]
fn sigint_exits_at_once_and_still_writes_the_access_lines_it_held() {
    let up = echo::start();
    let mut tg = Tollgate::start(BASE_CONFIG, up.addr);
    let c = client();
    // Access lines wait up to 50 ms in memory; SIGINT follows the last reply well inside that.
    for i in 0..20 {
        assert_eq!(
            c.get(tg.url(&format!("/sigint-marker-{i}"))).send().unwrap().status(),
            404
        );
    }
    let pid = tg.child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().unwrap().success());
    assert_eq!(wait_for_exit(&mut tg.child, "on SIGINT").code(), Some(0));
    // The reader thread reaches the end of stderr shortly after the exit.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !tg.logs().contains("/sigint-marker-19") {
        assert!(
            Instant::now() < deadline,
            "the last access line was lost: {}",
            tg.logs()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_second_instance_on_the_same_port_fails_to_start_instead_of_sharing_it() {
    let up = echo::start();
    let tg = Tollgate::start(BASE_CONFIG, up.addr);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(tg.dir.path().join("demo-rs256.pem"), dir.path().join("demo-rs256.pem")).unwrap();
    let config = std::fs::read_to_string(tg.config_path())
        .unwrap()
        .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{}\"", tg.http));
    std::fs::write(dir.path().join("proxy.toml"), config).unwrap();
    let mut second = Command::new(bin())
        .arg("--config")
        .arg(dir.path().join("proxy.toml"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while second.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = second.kill();
            panic!("a second instance started on {} instead of failing", tg.http);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = second.wait_with_output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("server.listen") && stderr.to_lowercase().contains("in use"),
        "{stderr}"
    );
    // The first instance still answers every request.
    let token = tg.token("product-sa-client", "password");
    for _ in 0..20 {
        assert_eq!(tg.get_status("/api/orders/1", &token), 200);
    }
}

#[test]
fn both_threading_models_serve_concurrent_clients() {
    let up = echo::start();
    for (model, threads) in [(false, 2), (false, 1), (true, 2)] {
        let config = Config::base()
            .server("work_stealing", model)
            .server("threads", threads as i64)
            .render();
        let tg = Tollgate::start(&config, up.addr);
        let token = tg.token("product-sa-client", "password");
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let url = tg.url("/api/orders/1");
                let token = token.clone();
                std::thread::spawn(move || {
                    // A client per thread: separate connections, spread over the workers.
                    let c = client();
                    (0..25)
                        .filter(|_| {
                            c.get(&url)
                                .bearer_auth(&token)
                                .send()
                                .map(|r| r.status() == 200)
                                .unwrap_or(false)
                        })
                        .count()
                })
            })
            .collect();
        let ok: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(ok, 200, "work_stealing = {model}, threads = {threads}");
    }
}

#[test]
fn the_listening_line_comes_once_every_port_accepts_connections() {
    let up = echo::start();
    let tg = Tollgate::start(BASE_CONFIG, up.addr);
    // Port 0 in the config: each start gets fresh ports, and connects at once, without retrying.
    for _ in 0..3 {
        let mut child = Command::new(bin())
            .arg("--config")
            .arg(tg.config_path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
        for name in ["http", "admin"] {
            let addr: std::net::SocketAddr = line
                .split_whitespace()
                .find_map(|f| f.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {name}= in {line:?}"));
            if let Err(e) = std::net::TcpStream::connect(addr) {
                let _ = child.kill();
                panic!("{name} {addr} refused a connection right after {line:?}: {e}");
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn a_low_open_files_limit_is_raised_to_the_hard_limit_at_start() {
    use std::os::unix::process::CommandExt;
    let up = echo::start();
    let tg = Tollgate::start(BASE_CONFIG, up.addr);
    let mut cmd = Command::new(bin());
    cmd.arg("--config")
        .arg(tg.config_path())
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            lim.rlim_cur = lim.rlim_max.min(256);
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line).unwrap();
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let _ = child.wait();
    assert!(line.starts_with("tollgate listening"), "{line:?}; stderr: {err}");
    let open_files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect();
    // "Max open files <soft> <hard> files"
    assert_eq!(open_files[3], open_files[4], "soft limit not raised: {limits}");
    if open_files[4] != "256" {
        assert!(err.contains("raised from 256"), "{err}");
    }
}

#[test]
fn the_config_builder_edits_land_where_they_are_named_and_a_missing_target_is_an_error() {
    let text = Config::base()
        .server("threads", 1)
        .client("demo", "writer", "secret", "x")
        .route("/public", "methods", vec!["GET"])
        .render();
    let t: toml::Table = text.parse().unwrap();
    assert_eq!(t["server"]["threads"].as_integer(), Some(1));
    assert_eq!(t["realms"]["demo"]["clients"]["writer"]["secret"].as_str(), Some("x"));
    let routes = t["routes"].as_array().unwrap();
    assert!(routes
        .iter()
        .any(|r| r["prefix"].as_str() == Some("/public") && r.get("methods").is_some()));
    assert!(std::panic::catch_unwind(|| Config::base().route("/nope", "public", true)).is_err());
    assert!(std::panic::catch_unwind(|| Config::base().realm("nope", "leeway", "1s")).is_err());
}
