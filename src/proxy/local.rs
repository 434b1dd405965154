//! Requests answered here before any route: framing that could be read two ways, and how a
//! local answer is sent (whether the connection survives an unread body).

use crate::http_util::{self, Reply};
use pingora::http::RequestHeader;
use pingora::prelude::*;
use pingora::proxy::Session;

/// Largest request header block accepted (all names and values), in bytes.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

fn header_bytes(req: &RequestHeader, raw: Option<&[u8]>) -> usize {
    match raw {
        Some(r) => r.len(),
        None => req
            .headers
            .iter()
            .map(|(k, v)| k.as_str().len() + v.len() + 4)
            .sum::<usize>(),
    }
}

/// The fields of a request the proxy reads after its framing check, found in the same pass.
#[derive(Debug, Default, Clone, Copy)]
pub struct Fields<'r> {
    /// The one `Authorization` field (a second is refused).
    pub authorization: Option<&'r http::HeaderValue>,
    /// Whether an `Origin` field came (CORS).
    pub origin: bool,
}

/// Requests whose size or framing could be read two ways are refused before anything else:
/// an oversized header block (431), more than one Content-Length, Content-Length beside
/// Transfer-Encoding, or a transfer coding other than chunked (request smuggling, RFC 9112 §6).
/// The egress listener refuses the same requests. One pass over the fields rather than a
/// lookup for each name, which also picks out the [`Fields`] read after it.
pub fn framing<'r>(req: &'r RequestHeader, raw: Option<&[u8]>) -> Result<Fields<'r>, Reply> {
    if header_bytes(req, raw) > MAX_HEADER_BYTES {
        return Err(Reply::error(431, "invalid_request", "request header fields too large"));
    }
    let (mut cl_count, mut authorizations, mut te_count) = (0, 0, 0);
    let mut te_first: Option<&http::HeaderValue> = None;
    let mut fields = Fields::default();
    for (name, v) in req.headers.iter() {
        if name == http::header::CONTENT_LENGTH {
            cl_count += 1 + usize::from(v.as_bytes().contains(&b','));
        } else if name == http::header::TRANSFER_ENCODING {
            te_count += 1;
            te_first = te_first.or(Some(v));
        } else if name == http::header::AUTHORIZATION {
            authorizations += 1;
            fields.authorization = Some(v);
        } else if name == http::header::ORIGIN {
            fields.origin = true;
        }
    }
    // pingora drops Content-Length when Transfer-Encoding is present; the raw header still shows it.
    if te_count > 0 && cl_count == 0 {
        let raw_cl = raw.is_some_and(|r| {
            r.split(|&b| b == b'\n')
                .any(|line| line.len() > 15 && line[..15].eq_ignore_ascii_case(b"content-length:"))
        });
        cl_count += usize::from(raw_cl);
    }
    if cl_count > 1 {
        return Err(Reply::error(400, "invalid_request", "more than one Content-Length"));
    }
    // One field is verified; a second could be what the upstream reads.
    if authorizations > 1 {
        return Err(Reply::error(400, "invalid_request", "more than one Authorization"));
    }
    if te_count > 0 && cl_count > 0 {
        return Err(Reply::error(
            400,
            "invalid_request",
            "Content-Length together with Transfer-Encoding",
        ));
    }
    if te_count > 1 || te_first.is_some_and(|v| !v.as_bytes().trim_ascii().eq_ignore_ascii_case(b"chunked")) {
        return Err(Reply::error(
            501,
            "invalid_request",
            "only Transfer-Encoding: chunked is supported",
        ));
    }
    Ok(fields)
}

/// The largest unread request body that is read and dropped after a local reply to keep the
/// connection open (nginx discards request bodies the same way); anything larger closes it.
const DISCARD_LIMIT: u64 = 64 * 1024;

/// Whether the unread body of `req` may be read and dropped after the reply: a declared
/// `Content-Length` within [`DISCARD_LIMIT`], no `Transfer-Encoding`, and no
/// `Expect: 100-continue` (such a client may never send the body it announced).
fn discardable_body(req: &RequestHeader) -> bool {
    let h = &req.headers;
    if h.contains_key(http::header::TRANSFER_ENCODING) || h.contains_key(http::header::EXPECT) {
        return false;
    }
    let mut lengths = h.get_all(http::header::CONTENT_LENGTH).iter();
    match (lengths.next(), lengths.next()) {
        (Some(v), None) => std::str::from_utf8(v.as_bytes())
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n <= DISCARD_LIMIT),
        _ => false,
    }
}

/// Answer locally. A body not yet read stays unread until the reply is out; then pingora reads
/// and drops it if it is small (bounded by `client_timeout`), else the connection closes, so a
/// client that is not trusted yet cannot make tollgate read an unbounded body.
pub async fn respond(session: &mut Session, reply: &Reply) -> Result<bool> {
    if !session.is_body_done() {
        // After a 408 the client has stalled mid-body; waiting for the rest would stall again.
        if reply.status != 408 && discardable_body(session.req_header()) {
            // pingora closes a connection answered before its body is read unless told not to.
            session.set_close_on_response_before_downstream_finish(false);
        } else {
            session.set_keepalive(None);
        }
    }
    http_util::send(session, reply).await?;
    Ok(true)
}

/// Answer a request whose framing is in doubt and close the connection: what follows its head
/// cannot be trusted to be the next request.
pub async fn respond_and_close(session: &mut Session, reply: &Reply) -> Result<bool> {
    session.set_keepalive(None);
    http_util::send(session, reply).await?;
    Ok(true)
}
