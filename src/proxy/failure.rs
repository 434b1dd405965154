//! What the client is told when proxying fails: built once from pingora's error.

use crate::http_util::Reply;
use crate::outcome::Outcome;
use pingora::{Error, ErrorSource, ErrorType};

/// A failed proxy attempt as the client and the metrics see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyFailure {
    /// The status sent, or 0 when the client is gone and nothing can be.
    pub status: u16,
    pub code: &'static str,
    pub description: &'static str,
    pub outcome: Outcome,
}

impl ProxyFailure {
    pub fn of(e: &Error) -> ProxyFailure {
        use ErrorType::*;
        let (status, code, description, outcome) = match (e.esource(), e.etype()) {
            (_, HTTPStatus(c)) => (*c, "proxy_error", "request failed", Outcome::Error),
            (ErrorSource::Downstream, ReadTimedout) => (
                408,
                "request_timeout",
                "request body not received in time",
                Outcome::RequestTimeout,
            ),
            (ErrorSource::Downstream, ReadError | WriteError | ConnectionClosed | WriteTimedout) => {
                (0, "", "", Outcome::ClientGone)
            }
            (ErrorSource::Downstream, _) => (400, "invalid_request", "malformed request", Outcome::Error),
            (_, ConnectTimedout | ReadTimedout | WriteTimedout) => (
                504,
                "upstream_timeout",
                "the upstream did not answer in time",
                Outcome::UpstreamTimeout,
            ),
            (ErrorSource::Upstream, _) => (
                502,
                "bad_gateway",
                "the upstream is unreachable or failed",
                Outcome::UpstreamError,
            ),
            _ => (500, "server_error", "internal error", Outcome::Error),
        };
        ProxyFailure {
            status,
            code,
            description,
            outcome,
        }
    }

    /// The answer to send, unless the client is gone.
    pub fn reply(&self) -> Option<Reply> {
        (self.status > 0).then(|| Reply::error(self.status, self.code, self.description))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(source: ErrorSource, etype: ErrorType) -> ProxyFailure {
        let e = match source {
            ErrorSource::Upstream => Error::new_up(etype),
            ErrorSource::Downstream => Error::new_down(etype),
            _ => Error::new_in(etype),
        };
        ProxyFailure::of(&e)
    }

    #[test]
    fn each_failure_has_one_status_code_and_outcome() {
        use ErrorType::*;
        let cases = [
            (ErrorSource::Upstream, ConnectTimedout, 504, Outcome::UpstreamTimeout),
            (ErrorSource::Upstream, ReadTimedout, 504, Outcome::UpstreamTimeout),
            (ErrorSource::Upstream, ConnectRefused, 502, Outcome::UpstreamError),
            (ErrorSource::Downstream, ReadTimedout, 408, Outcome::RequestTimeout),
            (ErrorSource::Downstream, ConnectionClosed, 0, Outcome::ClientGone),
            (ErrorSource::Downstream, InvalidHTTPHeader, 400, Outcome::Error),
            (ErrorSource::Internal, InternalError, 500, Outcome::Error),
            (ErrorSource::Upstream, HTTPStatus(413), 413, Outcome::Error),
        ];
        for (source, etype, status, outcome) in cases {
            let f = failure(source, etype.clone());
            assert_eq!((f.status, f.outcome), (status, outcome), "{etype:?}");
            assert_eq!(f.reply().is_some(), status > 0);
        }
    }
}
