//! The egress listener's routes and token sources as validated from `[egress]`: plain data that
//! the egress proxy and its token cache read.

use crate::secret::Secret;
use crate::token::SigningKey;
use arc_swap::ArcSwapOption;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// `[egress]`, resolved.
#[derive(Debug)]
pub struct Egress {
    /// A loopback address; read once at start, like the other listeners.
    pub listen: SocketAddr,
    /// In file order; matching picks by host first, then by longest prefix.
    pub routes: Vec<Arc<EgressRoute>>,
}

/// One `[[egress.routes]]` entry.
#[derive(Debug)]
pub struct EgressRoute {
    /// `host` + `prefix` (`*` for any host): the `route` label of metrics and access lines.
    pub label: String,
    /// Lower case, without a trailing dot; with a port only if the file gave one. None: any host.
    pub host: Option<String>,
    /// Normalised like an ingress route's prefix.
    pub prefix: String,
    pub upstream: EgressUpstream,
    pub source: Arc<TokenSource>,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

/// Where an egress route forwards to.
#[derive(Debug)]
pub struct EgressUpstream {
    /// The host as written (a name or an IP literal, without brackets).
    pub host: String,
    pub port: u16,
    pub tls: bool,
    /// The `Host` the upstream receives: its authority, the scheme's default port left out.
    pub host_header: http::HeaderValue,
    /// The address connected to: an IP literal's at once, a name's as last resolved (names are
    /// resolved at load and again in the background, so a moved service is followed).
    pub addr: ArcSwapOption<SocketAddr>,
}

impl EgressUpstream {
    /// Whether `host` is a name that needs resolving (not an IP literal).
    pub fn is_name(&self) -> bool {
        self.host.parse::<std::net::IpAddr>().is_err()
    }
}

/// Identifies a token source and all of its parameters (credentials included, by digest): two
/// routes with equal keys share one cached token, and a reload that keeps a key keeps its token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceKey(pub [u8; 32]);

/// Where an egress route's tokens come from.
#[derive(Debug)]
pub struct TokenSource {
    pub key: SourceKey,
    /// The client the tokens are for (access lines name it).
    pub client_id: String,
    pub kind: SourceKind,
}

#[derive(Debug)]
pub enum SourceKind {
    /// A realm served by this tollgate: minted in process with the token endpoint's own code.
    Local {
        realm: String,
        client: String,
        /// Resolved against the client's default and optional scopes at load.
        scope: String,
    },
    /// Any OAuth 2.0 token endpoint, over HTTP(S).
    Remote(RemoteSource),
}

/// A client-credentials grant at another token endpoint.
#[derive(Debug)]
pub struct RemoteSource {
    pub token_endpoint: String,
    pub client_id: String,
    pub auth: ClientAuth,
    pub scope: Option<String>,
    /// Extra token-request parameters (RFC 8707 `resource`, and the `audience` that Auth0,
    /// Okta and Keycloak's token exchange read).
    pub audience: Option<String>,
    pub resource: Option<String>,
    /// CA bundle (PEM) for the token endpoint's TLS; None: the system roots.
    pub ca_pem: Option<Vec<u8>>,
}

/// How tollgate authenticates to a remote token endpoint.
#[derive(Debug)]
pub enum ClientAuth {
    /// `Authorization: Basic` (RFC 6749 §2.3.1).
    SecretBasic(Secret),
    /// `client_id` and `client_secret` in the body.
    SecretPost(Secret),
    /// A JWT assertion signed with the client's private key (RFC 7523).
    PrivateKeyJwt(Arc<SigningKey>),
}

impl ClientAuth {
    pub fn name(&self) -> &'static str {
        match self {
            ClientAuth::SecretBasic(_) => "client_secret_basic",
            ClientAuth::SecretPost(_) => "client_secret_post",
            ClientAuth::PrivateKeyJwt(_) => "private_key_jwt",
        }
    }
}
