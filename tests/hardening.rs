//! Hardening: limits with clear answers, throttling, smuggling, floods, bounded memory.

mod common;

use common::*;
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn start() -> (Tollgate, echo::Echo) {
    let up = echo::start();
    (Tollgate::start(BASE_CONFIG, up.addr), up)
}

fn status_and_json(r: reqwest::blocking::Response) -> (u16, Value) {
    let s = r.status().as_u16();
    (s, r.json().unwrap_or(Value::Null))
}

#[test]
fn an_8_mib_token_body_is_refused_fast() {
    let (tg, _up) = start();
    let big = vec![b'a'; 8 * 1024 * 1024];
    let t = Instant::now();
    let r = client()
        .post(tg.url("/token"))
        .basic_auth("product-sa-client", Some("password"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big.clone())
        .send();
    // The server answers before the client finishes sending; either the 413 arrives or the
    // connection is cut after it.
    if let Ok(r) = r {
        let (s, v) = status_and_json(r);
        assert_eq!(s, 413);
        assert_eq!(v["error"], "invalid_request");
    }
    assert!(t.elapsed() < Duration::from_millis(900), "took {:?}", t.elapsed());
    // Chunked (no Content-Length): cut off once past the limit.
    let mut s = TcpStream::connect(tg.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let t = Instant::now();
    let head = "POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n";
    s.write_all(head.as_bytes()).unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 16384, "a".repeat(16384));
    for _ in 0..8 {
        if s.write_all(chunk.as_bytes()).is_err() {
            break;
        }
    }
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).unwrap_or(0);
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 413"),
        "{}",
        String::from_utf8_lossy(&buf[..n])
    );
    assert!(t.elapsed() < Duration::from_millis(900));
}

#[test]
fn oversized_headers_and_bearer_tokens_get_clear_answers() {
    let (tg, _up) = start();
    let r = client()
        .get(tg.url("/public/x"))
        .header("x-filler", "a".repeat(40 * 1024))
        .send()
        .unwrap();
    assert_eq!(r.status(), 431);
    let r = client()
        .get(tg.url("/api/orders/1"))
        .bearer_auth("a".repeat(9 * 1024))
        .send()
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("token too large"));
    // Invalid UTF-8 in a form value.
    let r = client()
        .post(tg.url("/token"))
        .basic_auth("product-sa-client", Some("password"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=client_credentials&scope=%ff%fe")
        .send()
        .unwrap();
    let (s, v) = status_and_json(r);
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_request")));
}

#[test]
fn duplicate_content_length_and_te_with_cl_are_refused() {
    let (tg, _up) = start();
    for req in [
        "POST /public/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        "POST /public/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\nConnection: close\r\n\r\nhello",
        "POST /public/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\nConnection: close\r\n\r\nhello!",
        "POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST /public/x HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "POST /token HTTP/1.1\r\nHost: x\r\nContent-Length: 29\r\nContent-Length: 29\r\nContent-Type: application/x-www-form-urlencoded\r\nConnection: close\r\n\r\ngrant_type=client_credentials",
    ] {
        let (status, _) = raw_request(tg.http, req.as_bytes());
        assert_eq!(status, 400, "{req:?}");
    }
    let (status, _) = raw_request(
        tg.http,
        b"POST /public/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    );
    assert_eq!(status, 501);
}

#[test]
fn requests_shorter_than_the_http2_preface_are_answered() {
    // Cleartext HTTP/2 is told from HTTP/1 by its 24-byte preface; a whole HTTP/1.0 request can
    // be shorter than that, and must not wait for bytes that will never come.
    let (tg, _up) = start();
    for (req, want) in [
        (&b"GET /x HTTP/1.0\r\n\r\n"[..], 404),
        (&b"GET /public HTTP/1.0\n\n"[..], 200),
        (&b"PUT /x HTTP/1.0\r\n\r\n"[..], 404),
        (&b"PRI /x HTTP/1.0\r\n\r\n"[..], 404),
    ] {
        assert!(req.len() < 24);
        let t = Instant::now();
        let (status, _) = raw_request(tg.http, req);
        assert_eq!(status, want, "{:?}", String::from_utf8_lossy(req));
        assert!(t.elapsed() < Duration::from_secs(5), "answered after {:?}", t.elapsed());
    }
}

#[test]
fn two_hundred_dribbling_bodies_do_not_delay_a_normal_request() {
    let (tg, _up) = start();
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut s = TcpStream::connect(tg.http).unwrap();
        s.write_all(b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\ngrant_type=").unwrap();
        slow.push(s);
    }
    for s in slow.iter_mut() {
        let _ = s.write_all(b"c");
    }
    let t = Instant::now();
    let token = tg.token("product-sa-client", "password");
    assert!(!token.is_empty());
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "normal request took {:?}",
        t.elapsed()
    );
    drop(slow);
}

/// tollgate with `server.client_timeout = "500ms"`, in front of an echo upstream.
fn start_with_client_timeout_500ms() -> (Tollgate, echo::Echo) {
    let up = echo::start();
    let config = Config::base().server("client_timeout", "500ms").render();
    (Tollgate::start(&config, up.addr), up)
}

#[test]
fn a_stalled_body_is_cut_off_with_408() {
    let (tg, _up) = start_with_client_timeout_500ms();
    let mut s = TcpStream::connect(tg.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /token HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant").unwrap();
    let t = Instant::now();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(t.elapsed() < Duration::from_secs(3));
    // And a proxied upload that stalls.
    let mut s = TcpStream::connect(tg.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /public/up HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        .unwrap();
    let n = s.read(&mut buf).unwrap_or(0);
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408") || text.starts_with("HTTP/1.1 400"),
        "{text}"
    );
}

#[test]
fn a_request_head_sent_byte_by_byte_is_cut_off_at_client_timeout() {
    let (tg, _up) = start_with_client_timeout_500ms();
    // A header line every 100 ms: each read is quick, the head never ends.
    let mut s = TcpStream::connect(tg.http).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
    let t = Instant::now();
    s.write_all(b"GET /public/x HTTP/1.1\r\nHost: x\r\n").unwrap();
    let closed_after = loop {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "still open after 5 s of dribbling"
        );
        if s.write_all(b"X-Slow: 1\r\n").is_err() {
            break t.elapsed();
        }
        let mut buf = [0u8; 64];
        match s.read(&mut buf) {
            Ok(0) => break t.elapsed(),
            Ok(n) => panic!("answered: {}", String::from_utf8_lossy(&buf[..n])),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break t.elapsed(),
        }
    };
    assert!(
        closed_after >= Duration::from_millis(450),
        "closed after {closed_after:?}"
    );
    // Once the head is in, the deadline is gone: a 2 s upstream answer still arrives, twice on
    // one connection.
    let c = client();
    for _ in 0..2 {
        assert_eq!(c.get(tg.url("/slowok/x")).send().unwrap().status(), 200);
    }
}

#[test]
fn repeated_wrong_secrets_are_throttled_without_locking_out_others() {
    let (tg, _up) = start();
    let attempt = |id: &str, secret: &str| tg.grant(id, secret);
    let mut throttled = None;
    for i in 0..60 {
        let r = attempt("product-sa-client", "wrong");
        match r.status().as_u16() {
            401 => {}
            429 => {
                throttled.get_or_insert((i, r.headers()["retry-after"].to_str().unwrap().parse::<u64>().unwrap()));
                assert_eq!(r.json::<Value>().unwrap()["error"], "slow_down");
            }
            s => panic!("unexpected {s}"),
        }
    }
    let (first, retry_after) = throttled.expect("60 wrong secrets in a row are throttled");
    assert!(first <= 21, "throttled from attempt {first}");
    assert!((1..=60).contains(&retry_after));
    // The throttled client is refused even with the right secret until the window passes...
    assert_eq!(attempt("product-sa-client", "password").status(), 429);
    // ...while another client is unaffected.
    assert_eq!(attempt("writer", "writer-secret").status(), 200);
    assert!(tg.metrics().contains("tollgate_auth_throttled_total{realm=\"demo\"}"));
}

#[test]
fn unknown_client_costs_what_a_wrong_secret_costs() {
    // With an argon2 client in the realm, a wrong secret costs an argon2 run; an unknown client
    // must cost one too, or timing would tell which clients exist.
    let phc = tollgate::secret::hash_secret("hashed-secret").unwrap();
    let up = echo::start();
    let config = Config::base()
        .client("demo", "writer", "secret", phc)
        .server("auth_failures_per_minute", 1000)
        .render();
    let tg = Tollgate::start(&config, up.addr);
    let time = |id: &str| {
        let mut v: Vec<Duration> = (0..7)
            .map(|_| {
                let t = Instant::now();
                let r = client()
                    .post(tg.url("/token"))
                    .basic_auth(id, Some("not-it"))
                    .form(&[("grant_type", "client_credentials")])
                    .send()
                    .unwrap();
                assert_eq!(r.status(), 401);
                t.elapsed()
            })
            .collect();
        v.sort();
        v[3]
    };
    let known = time("writer");
    let unknown = time("nobody-by-this-name");
    assert!(
        known > Duration::from_millis(2),
        "argon2 ran for the known client: {known:?}"
    );
    assert!(unknown * 2 > known, "unknown {unknown:?} vs known-wrong {known:?}");
}

#[test]
fn thousands_of_junk_tokens_and_unknown_clients_do_not_grow_memory() {
    let (tg, _up) = start();
    let pid = tg.child.id();
    let c = client();
    // Warm up so allocator pools exist before measuring.
    for i in 0..200 {
        c.get(tg.url("/api/orders/1"))
            .bearer_auth(format!("junk.{i}.x"))
            .send()
            .unwrap();
    }
    let before = rss_kib(pid);
    let good = tg.token("product-sa-client", "password");
    let (h, _) = good.split_once('.').unwrap();
    for i in 0..3000 {
        // Well-formed header naming the real kid, junk payload and signature.
        let t = format!("{h}.eyJzdWIiOiJ4In0{i}.c2lnbmF0dXJl{i}");
        let r = c.get(tg.url("/api/orders/1")).bearer_auth(&t).send().unwrap();
        assert_eq!(r.status(), 401);
        if i % 3 == 0 {
            let r = c
                .post(tg.url("/token"))
                .basic_auth(format!("ghost-{i}"), Some("x"))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .unwrap();
            assert!(r.status() == 401 || r.status() == 429);
        }
    }
    let after = rss_kib(pid);
    assert!(after < before + 16 * 1024, "RSS grew from {before} KiB to {after} KiB");
    assert!(
        tg.metrics().contains("tollgate_token_cache_entries 0"),
        "junk never enters the verified-token cache"
    );
}

/// Reads one HTTP/1.1 response with a Content-Length body from `s`; returns its head and body.
fn read_response(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        assert_eq!(s.read(&mut byte).unwrap(), 1, "connection closed mid-head: {buf:?}");
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().to_string())
        })
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).unwrap();
    head + &String::from_utf8_lossy(&body)
}

#[test]
fn a_refused_request_keeps_its_connection_when_its_body_is_small_and_closes_it_otherwise() {
    let (tg, _up) = start();
    // No token: 401 before the body is read; the 11 bytes are read and dropped after the reply,
    // and the next request on the same connection is served.
    let mut s = TcpStream::connect(tg.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /api/orders/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world")
        .unwrap();
    let first = read_response(&mut s);
    assert!(first.starts_with("HTTP/1.1 401"), "{first}");
    s.write_all(b"GET /public/x HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let second = read_response(&mut s);
    assert!(second.starts_with("HTTP/1.1 200"), "{second}");
    assert!(
        second.contains("\"/public/x\""),
        "the second request reached the upstream: {second}"
    );

    // Bodies tollgate will not read for an untrusted client: a declared 10 MB, a chunked one,
    // and one announced with Expect: 100-continue. The reply comes, then the connection closes.
    for head in [
        "POST /api/orders/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\nabc",
        "POST /api/orders/1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n",
        "POST /api/orders/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(tg.http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(head.as_bytes()).unwrap();
        let reply = read_response(&mut s);
        assert!(reply.starts_with("HTTP/1.1 401"), "{head:?}: {reply}");
        let t = Instant::now();
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        assert!(
            rest.is_empty() && t.elapsed() < Duration::from_secs(3),
            "{head:?}: the connection stayed open ({} more bytes, {:?})",
            rest.len(),
            t.elapsed()
        );
    }
}

fn metric(tg: &Tollgate, name: &str) -> f64 {
    tg.metric(name)
        .unwrap_or_else(|| panic!("no {name} in\n{}", tg.metrics()))
}

#[test]
fn connections_past_max_connections_are_closed_while_the_admin_port_answers() {
    let up = echo::start();
    let config = Config::base().server("max_connections", 3).render();
    let tg = Tollgate::start(&config, up.addr);
    // The readiness checks' connections are gone before the count starts.
    tg.wait_for_metric("tollgate_connections_open", 0.0);
    let served = |s: &mut TcpStream| {
        s.write_all(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let r = read_response(s);
        assert!(r.starts_with("HTTP/1.1 404"), "{r}");
    };
    let connect = || {
        let s = TcpStream::connect(tg.http).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s
    };
    let mut held: Vec<TcpStream> = (0..3)
        .map(|_| {
            let mut s = connect();
            served(&mut s);
            s
        })
        .collect();
    assert_eq!(metric(&tg, "tollgate_connections_open"), 3.0);

    // A fourth is closed without an answer; the three stay usable.
    assert_refused(tg.http, b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_eq!(metric(&tg, "tollgate_connections_refused_total"), 1.0);
    served(&mut held[0]);

    // Closing one frees its place for a new client.
    held.pop();
    tg.wait_for_metric("tollgate_connections_open", 2.0);
    let mut again = connect();
    served(&mut again);
    assert!(tg.logs().contains("client connection limit reached"), "{}", tg.logs());
}
