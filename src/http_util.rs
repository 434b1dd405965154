//! A small locally-generated response, and the one function that writes it to pingora.

use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::proxy::Session;
use serde_json::json;

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    pub body: Bytes,
}

impl Reply {
    pub fn json(status: u16, body: impl Into<Bytes>) -> Self {
        Reply {
            status,
            headers: vec![("content-type", "application/json".into())],
            body: body.into(),
        }
    }

    /// A response without a body (RFC 7009 revocation answers so).
    pub fn empty(status: u16) -> Self {
        Reply {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// `{"error","error_description"}`: the one shape of every error body.
    pub fn error(status: u16, error: &str, description: &str) -> Self {
        Self::json(
            status,
            json!({"error": error, "error_description": description}).to_string(),
        )
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 §5.1).
    pub fn no_store(self) -> Self {
        self.header("cache-control", "no-store").header("pragma", "no-cache")
    }

    pub fn to_header(&self) -> pingora::Result<ResponseHeader> {
        let mut h = ResponseHeader::build(self.status, Some(self.headers.len() + 2))?;
        for (k, v) in &self.headers {
            h.insert_header(*k, v.as_str())?;
        }
        h.insert_header("content-length", self.body.len().to_string())?;
        Ok(h)
    }
}

/// Write `reply` as the whole response of `session`.
pub async fn send(session: &mut Session, reply: &Reply) -> pingora::Result<()> {
    let head_only = session.req_header().method == http::Method::HEAD;
    let header = reply.to_header()?;
    let body_empty = reply.body.is_empty() || head_only;
    session.write_response_header(Box::new(header), body_empty).await?;
    if !body_empty {
        session.write_response_body(Some(reply.body.clone()), true).await?;
    }
    Ok(())
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Escape a value for a quoted-string in `WWW-Authenticate` (RFC 9110 §5.6.4).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' | '\\' => {
                out.push('\\');
                out.push(ch);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
