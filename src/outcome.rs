//! What became of a request: the one label that access lines and metrics carry.

use crate::issuer::Endpoint;
use prometheus_client::encoding::{EncodeLabelValue, LabelValueEncoder};
use std::fmt::{self, Write};

/// The outcome of one request on the proxy listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Outcome {
    /// Nothing was decided (the request ended before the guard saw it).
    #[default]
    Unset,
    /// Forwarded with a verified token.
    Allowed,
    /// Forwarded on a public route.
    Public,
    /// A CORS preflight answered here.
    Preflight,
    /// Refused before routing: framing or headers that could be read two ways.
    BadRequest,
    /// Refused by the guard.
    Denied(Reason),
    /// Served by a local issuer endpoint.
    Served(Endpoint),
    /// A local issuer endpoint answered this OAuth error code (`OAuthError::code`).
    OAuth(&'static str),
    /// The client did not send its request in time (408).
    RequestTimeout,
    /// The upstream did not answer in time (504).
    UpstreamTimeout,
    /// The upstream was unreachable or failed (502).
    UpstreamError,
    /// The client went away before an answer could be sent.
    ClientGone,
    /// Anything else that failed (500).
    Error,
}

/// Why the guard refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    BadPath,
    NoRoute,
    MethodNotAllowed,
    NoToken,
    InvalidToken,
    InsufficientScope,
    KeysUnavailable,
    Claim,
    RateLimited,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::BadPath => "bad_path",
            Reason::NoRoute => "no_route",
            Reason::MethodNotAllowed => "method_not_allowed",
            Reason::NoToken => "no_token",
            Reason::InvalidToken => "invalid_token",
            Reason::InsufficientScope => "insufficient_scope",
            Reason::KeysUnavailable => "keys_unavailable",
            Reason::Claim => "claim",
            Reason::RateLimited => "rate_limited",
        }
    }
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Unset => "",
            Outcome::Allowed => "allowed",
            Outcome::Public => "public",
            Outcome::Preflight => "preflight",
            Outcome::BadRequest => "bad_request",
            Outcome::Denied(r) => r.as_str(),
            Outcome::Served(e) => e.label(),
            Outcome::OAuth(code) => code,
            Outcome::RequestTimeout => "request_timeout",
            Outcome::UpstreamTimeout => "upstream_timeout",
            Outcome::UpstreamError => "upstream_error",
            Outcome::ClientGone => "client_gone",
            Outcome::Error => "error",
        }
    }
}

/// The outcome of one call on the egress listener, the label of its access line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum EgressOutcome {
    /// Nothing was decided (the call ended before its request was read).
    #[default]
    Unset,
    /// Forwarded with a token.
    Sent,
    /// Forwarded again with a new token after the upstream answered 401.
    Retried,
    /// Refused before routing: framing that could be read two ways, `CONNECT`, a bad target.
    BadRequest,
    /// No egress route for the call's host and path (404).
    NoRoute,
    /// No token could be had for the call (503).
    NoToken,
    /// The app did not send its request in time (408).
    RequestTimeout,
    /// The upstream did not answer in time (504).
    UpstreamTimeout,
    /// The upstream was unreachable, failed, or refused the token again (502).
    UpstreamError,
    /// The app went away before an answer could be sent.
    ClientGone,
    /// Anything else that failed (500).
    Error,
}

impl EgressOutcome {
    /// What a call that failed to proxy with `status` (0: none could be sent) became.
    pub fn of_failure(status: u16) -> EgressOutcome {
        match status {
            503 => EgressOutcome::NoToken,
            408 => EgressOutcome::RequestTimeout,
            504 => EgressOutcome::UpstreamTimeout,
            502 => EgressOutcome::UpstreamError,
            0 => EgressOutcome::ClientGone,
            _ => EgressOutcome::Error,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EgressOutcome::Unset => "",
            EgressOutcome::Sent => "egress",
            EgressOutcome::Retried => "egress_retried",
            EgressOutcome::BadRequest => "egress_bad_request",
            EgressOutcome::NoRoute => "egress_no_route",
            EgressOutcome::NoToken => "egress_no_token",
            EgressOutcome::RequestTimeout => "egress_request_timeout",
            EgressOutcome::UpstreamTimeout => "egress_upstream_timeout",
            EgressOutcome::UpstreamError => "egress_upstream_error",
            EgressOutcome::ClientGone => "egress_client_gone",
            EgressOutcome::Error => "egress_error",
        }
    }
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        encoder.write_str(self.as_str())
    }
}

impl EncodeLabelValue for Reason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> fmt::Result {
        encoder.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_is_labelled_by_its_reason() {
        assert_eq!(Outcome::Denied(Reason::Claim).as_str(), "claim");
        assert_eq!(Outcome::Served(Endpoint::Revoke).as_str(), "revoke");
        assert_eq!(Outcome::default().as_str(), "");
    }

    #[test]
    fn an_egress_failure_is_labelled_by_its_status() {
        assert_eq!(EgressOutcome::of_failure(503).as_str(), "egress_no_token");
        assert_eq!(EgressOutcome::of_failure(0).as_str(), "egress_client_gone");
        assert_eq!(EgressOutcome::of_failure(500).as_str(), "egress_error");
        assert_eq!(EgressOutcome::default().as_str(), "");
    }
}
