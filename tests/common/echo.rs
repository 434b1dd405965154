//! A real HTTP/1.1 upstream for tests: answers every request with JSON describing what it got
//! (method, path with query, headers, body length, and the Unix time its head was read, as
//! `received_at`). `/slow...` waits 2 s before answering.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

pub struct Echo {
    pub addr: SocketAddr,
    /// Connections accepted so far (to see upstream keep-alive at work).
    pub connections: Arc<AtomicUsize>,
}

pub fn start() -> Echo {
    spawn(None)
}

/// The same echo upstream behind TLS, with the given PEM certificate chain and key.
pub fn start_tls(cert_pem: &str, key_pem: &str) -> Echo {
    use tokio_rustls::rustls;
    let certs: Vec<_> = rustls_pemfile_certs(cert_pem);
    let key = rustls::pki_types::PrivateKeyDer::try_from(pem::parse(key_pem).unwrap().into_contents()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    spawn(Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))))
}

/// Run the echo server on its own thread and runtime; plain TCP, or TLS with `acceptor`.
fn spawn(acceptor: Option<tokio_rustls::TlsAcceptor>) -> Echo {
    let connections = Arc::new(AtomicUsize::new(0));
    let conns = connections.clone();
    let addr = serve_forever(move |sock| {
        conns.fetch_add(1, Ordering::Relaxed);
        let acceptor = acceptor.clone();
        async move {
            let _ = match acceptor {
                None => serve(sock).await,
                Some(a) => match a.accept(sock).await {
                    Ok(tls) => serve(tls).await,
                    Err(e) => Err(e),
                },
            };
        }
    });
    Echo { addr, connections }
}

/// Runs `conn` on every connection accepted on a free 127.0.0.1 port, on a thread and runtime
/// of its own (the test's runtime, if any, is not shared); returns the address once listening.
pub fn serve_forever<F, Fut>(conn: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(conn(sock));
            }
        });
    });
    rx.recv().unwrap()
}

fn rustls_pemfile_certs(pem_text: &str) -> Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>> {
    pem::parse_many(pem_text)
        .unwrap()
        .into_iter()
        .map(|p| tokio_rustls::rustls::pki_types::CertificateDer::from(p.into_contents()))
        .collect()
}

async fn serve<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(sock: S) -> std::io::Result<()> {
    let (r, mut w) = tokio::io::split(sock);
    let mut r = BufReader::new(r);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let received_at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut names: Vec<String> = Vec::new();
        loop {
            let mut h = String::new();
            r.read_line(&mut h).await?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                names.push(k.trim().to_string());
                headers
                    .entry(k.trim().to_ascii_lowercase())
                    .or_default()
                    .push(v.trim().to_string());
            }
        }
        let mut body_len: u64 = 0;
        let mut buf = vec![0u8; 64 * 1024];
        if let Some(cl) = headers.get("content-length").and_then(|v| v[0].parse::<u64>().ok()) {
            let mut left = cl;
            while left > 0 {
                let n = r.read(&mut buf[..left.min(65536) as usize]).await?;
                if n == 0 {
                    return Ok(());
                }
                left -= n as u64;
                body_len += n as u64;
            }
        } else if headers
            .get("transfer-encoding")
            .is_some_and(|v| v[0].eq_ignore_ascii_case("chunked"))
        {
            loop {
                let mut size = String::new();
                r.read_line(&mut size).await?;
                let n = u64::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
                if n == 0 {
                    let mut end = String::new();
                    r.read_line(&mut end).await?;
                    break;
                }
                let mut left = n;
                while left > 0 {
                    let k = r.read(&mut buf[..left.min(65536) as usize]).await?;
                    if k == 0 {
                        return Ok(());
                    }
                    left -= k as u64;
                }
                body_len += n;
                let mut crlf = String::new();
                r.read_line(&mut crlf).await?;
            }
        }
        if target.starts_with("/slow") {
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        }
        let body =
            serde_json::json!({"method": method, "path": target, "headers": headers, "names": names, "body_len": body_len, "received_at": received_at}).to_string();
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{}",
            body.len(),
            body
        );
        w.write_all(resp.as_bytes()).await?;
        w.flush().await?;
    }
}
