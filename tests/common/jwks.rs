//! A test-controlled issuer of keys: serves a discovery document and a JWKS whose body, status
//! and Cache-Control a test changes while tollgate runs, and counts the fetches.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tollgate::token::SigningKey;

/// What the server answers on `/certs`.
pub struct Served {
    pub status: u16,
    pub body: Vec<u8>,
    pub cache_control: Option<String>,
}

pub struct JwksServer {
    pub addr: SocketAddr,
    pub served: Arc<Mutex<Served>>,
    /// GETs of `/certs` so far.
    pub fetches: Arc<AtomicUsize>,
    /// GETs of the discovery document so far.
    pub discoveries: Arc<AtomicUsize>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl JwksServer {
    pub fn start(keys: &[&SigningKey]) -> JwksServer {
        Self::start_on("127.0.0.1:0".parse().unwrap(), jwks(keys))
    }

    /// Listens on `addr` (a port chosen earlier, for an issuer that comes up late).
    pub fn start_on(addr: SocketAddr, body: Vec<u8>) -> JwksServer {
        let listener = TcpListener::bind(addr).unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(Mutex::new(Served {
            status: 200,
            body,
            cache_control: None,
        }));
        let fetches = Arc::new(AtomicUsize::new(0));
        let discoveries = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, f, d, st) = (served.clone(), fetches.clone(), discoveries.clone(), stop.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if st.load(Ordering::Relaxed) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (s, f, d) = (s.clone(), f.clone(), d.clone());
                std::thread::spawn(move || answer(conn, addr, &s, &f, &d));
            }
        });
        JwksServer {
            addr,
            served,
            fetches,
            discoveries,
            stop,
        }
    }

    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.addr.port())
    }

    pub fn jwks_uri(&self) -> String {
        format!("http://127.0.0.1:{}/certs", self.addr.port())
    }

    pub fn serve(&self, status: u16, body: Vec<u8>) {
        let mut s = self.served.lock().unwrap();
        s.status = status;
        s.body = body;
    }

    pub fn fetched(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    /// Stops accepting: the port then refuses connections.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = std::net::TcpStream::connect(self.addr);
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn answer(
    mut conn: std::net::TcpStream,
    addr: SocketAddr,
    served: &Mutex<Served>,
    fetches: &AtomicUsize,
    discoveries: &AtomicUsize,
) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
    }
    let (status, body, cache_control) = if path == "/certs" {
        fetches.fetch_add(1, Ordering::SeqCst);
        let s = served.lock().unwrap();
        (s.status, s.body.clone(), s.cache_control.clone())
    } else if path.ends_with("/.well-known/openid-configuration") {
        discoveries.fetch_add(1, Ordering::SeqCst);
        let issuer = format!(
            "http://127.0.0.1:{}{}",
            addr.port(),
            path.trim_end_matches("/.well-known/openid-configuration")
        );
        let doc = json!({"issuer": issuer, "jwks_uri": format!("http://127.0.0.1:{}/certs", addr.port())});
        (200, doc.to_string().into_bytes(), None)
    } else {
        (404, b"{}".to_vec(), None)
    };
    let mut head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    if let Some(cc) = cache_control {
        head.push_str(&format!("cache-control: {cc}\r\n"));
    }
    head.push_str("\r\n");
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(&body);
}

/// A JWKS of the public halves of `keys`.
pub fn jwks(keys: &[&SigningKey]) -> Vec<u8> {
    json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
        .to_string()
        .into_bytes()
}

/// A new key of `alg` named `kid`.
pub fn new_key(alg: jsonwebtoken::Algorithm, kid: &str) -> SigningKey {
    let pem = tollgate::token::keys::generate_pem(alg).unwrap();
    SigningKey::from_pem(kid, alg, pem.as_bytes()).unwrap()
}

/// A compact JWS with exactly `header` (JSON text, spacing kept) and `claims`, signed by `key`.
pub fn sign(key: &SigningKey, header: &str, claims: &Value) -> String {
    let input = format!("{}.{}", B64.encode(header), B64.encode(claims.to_string()));
    let signature = key.sign_input(input.as_bytes()).unwrap();
    format!("{input}.{}", B64.encode(signature))
}

/// The usual header of `key`'s tokens.
pub fn header(key: &SigningKey) -> String {
    json!({"alg": tollgate::token::keys::alg_name(key.alg), "typ": "JWT", "kid": key.kid}).to_string()
}
