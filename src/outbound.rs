//! tollgate's own HTTP requests (remote realms' keys, egress token endpoints): one way to build
//! the client, read a bounded body and describe a failure without repeating the URL.

use std::time::Duration;

/// Time allowed for one exchange, connect included.
pub const TIMEOUT: Duration = Duration::from_secs(5);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A client with tollgate's User-Agent, [`TIMEOUT`], no proxy from the environment, the given
/// redirect policy, and TLS checked against `ca_pem` (a PEM bundle) or the built-in roots.
pub fn client(ca_pem: Option<&[u8]>, redirect: reqwest::redirect::Policy) -> Result<reqwest::Client, String> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("tollgate/", env!("CARGO_PKG_VERSION")))
        .timeout(TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .no_proxy()
        .redirect(redirect);
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("ca_file: {e}"))?;
        b = b.tls_built_in_root_certs(false);
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    b.build().map_err(|e| format!("HTTP client: {e}"))
}

/// Why a body was not read.
#[derive(Debug)]
pub enum BodyError {
    /// Longer than the limit (by its Content-Length, or as it arrived).
    TooLarge,
    Failed(String),
}

/// The whole body of `resp`, refused once it passes `max` bytes.
pub async fn body(resp: &mut reqwest::Response, max: usize) -> Result<Vec<u8>, BodyError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| BodyError::Failed(describe(&e)))? {
        if body.len() + chunk.len() > max {
            return Err(BodyError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// What went wrong with a request, without the URL again (reqwest's text repeats it).
pub fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_redirect() {
        "refused redirect"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}
