//! A lax upstream: it reads each request the way permissive frameworks do, and answers with the
//! handler that ran and what that handler was told, so tests can assert that a token never
//! reaches a handler its roles do not allow.
//!
//! - Symfony / IIS / Laminas: the path is taken from `X-Original-URL` or `X-Rewrite-URL` when
//!   either is present.
//! - Tomcat / Jetty / Spring: `;parameters` are cut off every segment before routing, then the
//!   path is percent-decoded once and its dot segments resolved.
//! - Spring / Rails / Express: `X-HTTP-Method-Override`, `X-HTTP-Method` and
//!   `X-Method-Override` replace the method.
//! - CGI / WSGI / Rack: header names are read as `HTTP_` + upper case with `-` and `_` alike,
//!   values of names that collide joined with ','.
//!
//! Handlers, by longest prefix of that path: `/api/orders/admin` "admin", `/api/orders`
//! "orders", `/public` "public", anything else "none".

use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

pub struct Lax {
    pub addr: SocketAddr,
}

pub fn start() -> Lax {
    let addr = super::echo::serve_forever(|sock| async move {
        let _ = serve(sock).await;
    });
    Lax { addr }
}

/// The handler a framework routes `path` (already read its way) to.
pub fn handler(path: &str) -> &'static str {
    let under = |p: &str| path == p || path.starts_with(&format!("{p}/"));
    if under("/api/orders/admin") {
        "admin"
    } else if under("/api/orders") {
        "orders"
    } else if under("/public") {
        "public"
    } else {
        "none"
    }
}

/// Tomcat's reading of a request target: parameters cut, decoded once, dots resolved.
pub fn tomcat_path(target: &str) -> String {
    let path = target.split('?').next().unwrap_or("");
    let cut: Vec<&str> = path.split('/').map(|seg| seg.split(';').next().unwrap_or("")).collect();
    let decoded = percent_decode(&cut.join("/"));
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn serve(sock: tokio::net::TcpStream) -> std::io::Result<()> {
    let (r, mut w) = sock.into_split();
    let mut r = BufReader::new(r);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut headers: Vec<(String, String)> = Vec::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h).await?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let length = get("content-length").and_then(|v| v.parse::<u64>().ok());
        let chunked = get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let (body_len, chunk_lines) = read_body(&mut r, length, chunked).await?;
        let mut cgi: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in &headers {
            let name = format!("HTTP_{}", k.to_ascii_uppercase().replace('-', "_"));
            cgi.entry(name)
                .and_modify(|e| {
                    e.push(',');
                    e.push_str(v);
                })
                .or_insert_with(|| v.clone());
        }
        let routed_on = get("x-original-url")
            .or_else(|| get("x-rewrite-url"))
            .unwrap_or(target.clone());
        let path = tomcat_path(&routed_on);
        let effective_method = ["x-http-method-override", "x-http-method", "x-method-override"]
            .iter()
            .find_map(|h| get(h))
            .unwrap_or(method.clone());
        let authorization: Vec<&String> = headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v)
            .collect();
        let names: Vec<&String> = headers.iter().map(|(k, _)| k).collect();
        let body = json!({
            "handler": handler(&path),
            "path": path,
            "target": target,
            "method": effective_method,
            "roles": cgi.get("HTTP_X_AUTH_ROLES"),
            "cgi": cgi,
            "names": names,
            "authorization": authorization,
            "chunk_lines": chunk_lines,
            "body_len": body_len,
        })
        .to_string();
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
            body.len(),
            body
        );
        w.write_all(resp.as_bytes()).await?;
        w.flush().await?;
    }
}

/// Reads a Content-Length or chunked body; returns its length and the chunk-size lines as they
/// arrived (extensions included).
async fn read_body<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    length: Option<u64>,
    chunked: bool,
) -> std::io::Result<(u64, Vec<String>)> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut total = 0u64;
    let mut lines = Vec::new();
    if let Some(cl) = length {
        let mut left = cl;
        while left > 0 {
            let n = r.read(&mut buf[..left.min(65536) as usize]).await?;
            if n == 0 {
                break;
            }
            left -= n as u64;
            total += n as u64;
        }
    } else if chunked {
        loop {
            let mut size = Vec::new();
            r.read_until(b'\n', &mut size).await?;
            let text = String::from_utf8_lossy(&size).to_string();
            lines.push(text.clone());
            let n = u64::from_str_radix(text.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
            if n == 0 {
                let mut end = String::new();
                r.read_line(&mut end).await?;
                break;
            }
            let mut left = n + 2;
            while left > 0 {
                let k = r.read(&mut buf[..left.min(65536) as usize]).await?;
                if k == 0 {
                    break;
                }
                left -= k as u64;
            }
            total += n;
        }
    }
    Ok((total, lines))
}
