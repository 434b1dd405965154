//! Test harness: a real tollgate process on 127.0.0.1:0 with a temp config, and a real echo
//! upstream that answers with what it received.
#![allow(dead_code)]

pub mod config;
#[allow(unused_imports)]
pub use config::Config;
pub mod cut;
pub mod echo;
pub mod egress;
pub mod jwks;
pub mod lax;
pub mod redis;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const DEMO_KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/demo-rs256.pem");
pub const ES_KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/demo-es256.pem");
pub const ED_KEY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/demo-eddsa.pem");

/// The realm and clients most tests use. `{UPSTREAM}` is replaced by the echo upstream.
pub const BASE_CONFIG: &str = r#"
[server]
listen = "127.0.0.1:0"
admin_listen = "127.0.0.1:0"
default_realm = "demo"

[realms.demo]
access_token_lifespan = "5m"
leeway = "5s"
roles = ["reader", "writer", "admin"]
client_roles = { orders-api = ["read", "write"] }
signing_keys = [ { kid = "demo-rs256", alg = "RS256", private_key = "demo-rs256.pem" } ]

[realms.demo.clients.product-sa-client]
secret = "password"
service_account_roles = ["reader", "orders-api:read"]
optional_scopes = ["orders"]

[realms.demo.clients.writer]
secret = "writer-secret"
service_account_roles = ["reader", "writer", "admin", "orders-api:write"]
full_scope_allowed = false
scope_roles = ["writer", "orders-api:write"]

[realms.demo.clients.no-sa]
secret = "no-sa-secret"
service_accounts_enabled = false

[realms.demo.clients.disabled]
secret = "disabled-secret"
enabled = false

[[routes]]
prefix = "/api/orders"
methods = ["GET", "POST", "PUT"]
roles = ["reader"]
upstream = "{UPSTREAM}"

[[routes]]
prefix = "/api/write"
roles = ["writer", "orders-api:write"]
upstream = "{UPSTREAM}"

[[routes]]
prefix = "/api/client-role"
roles = ["orders-api:read"]
upstream = "{UPSTREAM}"

[[routes]]
prefix = "/api/any"
any_roles = ["admin", "orders-api:write"]
upstream = "{UPSTREAM}"

[[routes]]
prefix = "/api/aud"
roles = ["reader"]
audience = "billing-api"
upstream = "{UPSTREAM}"

[[routes]]
prefix = "/api/strip"
roles = ["reader"]
forward_token = false
upstream = "{UPSTREAM}"

[[routes]]
prefix = "/public"
public = true
upstream = "{UPSTREAM}"

[[routes]]
prefix = "/slow"
public = true
read_timeout = "300ms"
upstream = "{UPSTREAM}"

[[routes]]
prefix = "/slowok"
public = true
read_timeout = "10s"
upstream = "{UPSTREAM}"

[[routes]]
prefix = "/down"
public = true
upstream = "{DOWN}"
"#;

pub struct Tollgate {
    pub child: Child,
    pub http: SocketAddr,
    pub tls: Option<SocketAddr>,
    pub admin: SocketAddr,
    /// The egress listener, when the config has `[egress]`.
    pub egress: Option<SocketAddr>,
    pub dir: tempfile::TempDir,
    pub stderr: Arc<Mutex<String>>,
}

impl Drop for Tollgate {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An address nothing listens on.
pub fn dead_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_tollgate")
}

impl Tollgate {
    /// Start tollgate with `config` (placeholders `{UPSTREAM}` and `{DOWN}` filled in) in a temp
    /// folder holding the demo keys; return once it answers.
    pub fn start(config: &str, upstream: SocketAddr) -> Tollgate {
        Self::start_with(config, upstream, &[])
    }

    pub fn start_with(config: &str, upstream: SocketAddr, files: &[(&str, &[u8])]) -> Tollgate {
        let dir = tempfile::tempdir().unwrap();
        for (name, src) in [
            ("demo-rs256.pem", DEMO_KEY),
            ("demo-es256.pem", ES_KEY),
            ("demo-eddsa.pem", ED_KEY),
        ] {
            std::fs::copy(src, dir.path().join(name)).unwrap();
        }
        for (name, bytes) in files {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let text = config
            .replace("{UPSTREAM}", &upstream.to_string())
            .replace("{DOWN}", &dead_addr().to_string());
        std::fs::write(dir.path().join("proxy.toml"), text).unwrap();
        Self::spawn(dir)
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("proxy.toml")
    }

    /// Start on a folder already holding `proxy.toml` and its files.
    pub fn start_in(dir: tempfile::TempDir) -> Tollgate {
        Self::spawn(dir)
    }

    fn spawn(dir: tempfile::TempDir) -> Tollgate {
        let mut child = Command::new(bin())
            .arg("--config")
            .arg(dir.path().join("proxy.toml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = stderr.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert!(
            line.starts_with("tollgate listening"),
            "unexpected first line {line:?}; stderr: {}",
            stderr.lock().unwrap()
        );
        let field = |name: &str| -> SocketAddr {
            let v = line
                .split_whitespace()
                .find_map(|f| f.strip_prefix(&format!("{name}=")))
                .unwrap();
            v.parse().unwrap()
        };
        let optional = |name: &str| -> Option<SocketAddr> {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.parse().ok())
        };
        let tg = Tollgate {
            http: field("http"),
            tls: optional("tls"),
            admin: field("admin"),
            egress: optional("egress"),
            child,
            dir,
            stderr,
        };
        tg.wait_ready();
        tg
    }

    /// Poll until both listeners answer (readiness, not a sleep).
    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let c = client();
        loop {
            let admin_ok = c
                .get(format!("http://{}/readyz", self.admin))
                .send()
                .map(|r| r.status() == 200)
                .unwrap_or(false);
            let main_ok = c
                .get(self.url("/realms/demo/.well-known/openid-configuration"))
                .send()
                .map(|r| r.status().as_u16() != 0)
                .unwrap_or(false);
            if admin_ok && main_ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "tollgate did not become ready; stderr: {}",
                self.stderr.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn metrics(&self) -> String {
        client()
            .get(format!("http://{}/metrics", self.admin))
            .send()
            .unwrap()
            .text()
            .unwrap()
    }

    /// `GET path` on the proxy listener, its body decoded from JSON.
    pub fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str) -> T {
        client().get(self.url(path)).send().unwrap().json().unwrap()
    }

    /// The value of the unlabelled series `name` in `/metrics`, if it is there.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.metrics()
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
    }

    /// Polls the admin port until the unlabelled series `name` reads `want` (the server sees a
    /// closed connection only when it next polls it).
    pub fn wait_for_metric(&self, name: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.metric(name) != Some(want) {
            assert!(
                Instant::now() < deadline,
                "{name} never reached {want}:\n{}",
                self.metrics()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Status of `GET path` with `token` as the bearer.
    pub fn get_status(&self, path: &str, token: &str) -> u16 {
        client()
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
            .as_u16()
    }

    /// A client_credentials request for `id`/`secret` via client_secret_basic, as answered.
    pub fn grant(&self, id: &str, secret: &str) -> reqwest::blocking::Response {
        client()
            .post(self.url("/realms/demo/protocol/openid-connect/token"))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .unwrap()
    }

    /// A client_credentials request authenticated by the client assertion `a` (private_key_jwt
    /// or client_secret_jwt), as answered.
    pub fn grant_with_assertion(&self, a: &str) -> reqwest::blocking::Response {
        client()
            .post(self.url("/realms/demo/protocol/openid-connect/token"))
            .form(&[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", a),
            ])
            .send()
            .unwrap()
    }

    /// A client_credentials token for `id`/`secret` via client_secret_basic.
    pub fn token(&self, id: &str, secret: &str) -> String {
        let r = self.grant(id, secret);
        assert_eq!(r.status(), 200, "token request for {id} failed");
        let v: Value = r.json().unwrap();
        v["access_token"].as_str().unwrap().to_string()
    }

    pub fn logs(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

/// The claims of a JWT, unverified (for tests that inspect what was issued).
pub fn claims_of(token: &str) -> Value {
    let part = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&B64.decode(part).unwrap()).unwrap()
}

pub fn header_of(token: &str) -> Value {
    let part = token.split('.').next().unwrap();
    serde_json::from_slice(&B64.decode(part).unwrap()).unwrap()
}

/// Sign arbitrary claims with a PEM key, independently of tollgate (jsonwebtoken's own path).
pub fn sign_with(pem_path: &Path, alg: jsonwebtoken::Algorithm, kid: Option<&str>, claims: &Value) -> String {
    let pem = std::fs::read(pem_path).unwrap();
    let key = match alg {
        jsonwebtoken::Algorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(&pem).unwrap(),
        jsonwebtoken::Algorithm::EdDSA => jsonwebtoken::EncodingKey::from_ed_pem(&pem).unwrap(),
        _ => jsonwebtoken::EncodingKey::from_rsa_pem(&pem).unwrap(),
    };
    let mut h = jsonwebtoken::Header::new(alg);
    h.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&h, claims, &key).unwrap()
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Send `request` byte for byte over a fresh TCP connection (no client-side normalisation) and
/// return (status, body).
pub fn raw_request(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Connects to `addr`, sends `request` and asserts that the connection is closed (or reset)
/// without a byte of answer, as one past `server.max_connections` is.
pub fn assert_refused(addr: SocketAddr, request: &[u8]) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(request);
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(n) => assert_eq!(n, 0, "the connection past the limit got {:?}", &buf[..n]),
        Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
    }
}

/// VmRSS of a process in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap()
}

pub struct Pki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// A test CA and a localhost certificate it signed.
pub fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}
