//! serde structs that mirror `proxy.toml` exactly; no checks beyond the shape of the file.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// The whole file. Unknown keys anywhere are an error naming the key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub server: ServerFile,
    /// Realms by name. At least one is required.
    #[serde(default)]
    pub realms: BTreeMap<String, RealmFile>,
    /// Proxied routes. None means every non-local request is 404 (closed by default).
    #[serde(default)]
    pub routes: Vec<RouteFile>,
    /// The egress listener and its routes. None: no egress listener.
    pub egress: Option<super::egress::EgressFile>,
    /// State shared by several replicas. Default: none (each replica keeps its own in memory).
    pub store: Option<StoreFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    /// `redis://[user:password@]host:port/db`, or `rediss://` for TLS (Redis 7 or Valkey).
    /// Checked at load without connecting; read once at start.
    pub url: String,
    /// Prefix of every key tollgate writes, so that several deployments can share one Redis.
    /// Default "tollgate:".
    pub key_prefix: Option<String>,
    /// PEM bundle the `rediss://` server's certificate is checked against, in place of the
    /// built-in web roots (a private CA, as most self-hosted Redis TLS uses).
    pub ca_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerFile {
    /// Plain HTTP listener. Required unless `tls_listen` is set.
    pub listen: Option<String>,
    /// HTTPS listener (rustls). Needs `tls_cert` and `tls_key`.
    pub tls_listen: Option<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// /healthz, /readyz and /metrics. Default: none (no admin listener).
    pub admin_listen: Option<String>,
    /// Worker threads. Default: the number of cores.
    pub threads: Option<usize>,
    /// Realm served at the short path `/token`. Default: the only realm, if there is one.
    pub default_realm: Option<String>,
    /// Access log format: "text" (default) or "json".
    pub log_format: Option<String>,
    /// CA bundle (PEM) trusted for `https://` upstreams, in place of the system roots.
    pub upstream_ca_file: Option<PathBuf>,
    /// Largest token/introspect/revoke body. Default 64 KiB.
    pub max_form_body: Option<usize>,
    /// Time allowed to read a request's headers, and between body chunks. Default "10s".
    pub client_timeout: Option<String>,
    /// Failed client authentications allowed per client id or address per minute before 429.
    /// Default 20.
    pub auth_failures_per_minute: Option<u32>,
    /// Watch the config and key files and reload on change. Default true; SIGHUP always reloads.
    pub watch: Option<bool>,
    /// true: one multi-threaded runtime whose idle threads steal work from busy ones (pingora's
    /// default model). Default false: shared-nothing workers, each one thread with its own
    /// listener (SO_REUSEPORT) and upstream pool, cheaper per request (docs/performance-decisions.md).
    pub work_stealing: Option<bool>,
    /// Client connections open at once, over every listener and worker; more are closed at
    /// accept. Default 10,000.
    pub max_connections: Option<usize>,
    /// Networks (CIDRs or addresses) of the proxies in front of tollgate whose `X-Forwarded-For`
    /// is believed, for the client address of tokens, throttles and the upstream. Default none:
    /// the peer address is the client.
    #[serde(default)]
    pub trusted_proxies: Vec<String>,
    /// Forward header names holding `_` (nginx's `underscores_in_headers`). Default false: they
    /// are dropped, since CGI-style servers read `X_Auth_Roles` as `X-Auth-Roles`.
    pub underscores_in_headers: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RealmFile {
    /// Token `iss`. Default: `"http://localhost:<listen port>/realms/<name>"`. Required for a
    /// remote realm (one without `signing_keys`), whose tokens must carry exactly this `iss`.
    pub issuer: Option<String>,
    /// Remote realm: the issuer's JWKS URL. Default: the `jwks_uri` of
    /// `{issuer}/.well-known/openid-configuration`.
    pub jwks_uri: Option<String>,
    /// Remote realm: a local JWKS file instead of fetching, watched like the config.
    pub jwks_file: Option<PathBuf>,
    /// Remote realm: CA bundle (PEM) for the issuer's TLS. Default: the system roots.
    pub ca_file: Option<PathBuf>,
    /// Remote realm: how often the keys are fetched again when the issuer's `Cache-Control`
    /// does not say (a `max-age` is honoured within [1m, 24h]). Default "5m".
    pub jwks_refresh: Option<String>,
    /// Remote realm: how long the last keys stay trusted while the issuer cannot be reached.
    /// Default "1h"; past it, its tokens are answered 503.
    pub jwks_max_stale: Option<String>,
    /// Remote realm: accepted algorithms. Default: every asymmetric one tollgate verifies.
    pub algorithms: Option<Vec<String>>,
    /// Remote realm: the claim that holds the roles (an array of strings or a space-separated
    /// string; "a.b" reaches nested objects). Default: Keycloak's `realm_access.roles` and
    /// `resource_access.<client>.roles`.
    pub roles_claim: Option<String>,
    /// Default "5m" (Keycloak's default).
    pub access_token_lifespan: Option<String>,
    /// Lifespan of refresh tokens for clients with `use_refresh_token`. Default "30m".
    pub refresh_token_lifespan: Option<String>,
    /// Clock skew allowed on exp / nbf / iat. Default "30s".
    pub leeway: Option<String>,
    /// Realm roles.
    #[serde(default)]
    pub roles: Vec<String>,
    /// Roles of clients that exist only as audiences (Keycloak's bearer-only clients),
    /// e.g. `orders-api = ["read", "write"]`. A `client:role` naming a client absent from
    /// this table is accepted with a warning.
    #[serde(default)]
    pub client_roles: BTreeMap<String, Vec<String>>,
    /// First = active signer; the others still verify and are published (rotation).
    #[serde(default)]
    pub signing_keys: Vec<KeyFile>,
    #[serde(default)]
    pub clients: BTreeMap<String, ClientFile>,
    /// Longest a refresh chain lives from its original grant, however often it is refreshed
    /// (Keycloak's Client Session Max). Default "10h" (Keycloak's SSO Session Max).
    pub client_session_max_lifespan: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyFile {
    pub kid: String,
    /// RS256, RS384, RS512, PS256, ES256, ES384 or EdDSA.
    pub alg: String,
    /// PKCS#8 (or PKCS#1 / SEC1) PEM private key, relative to the config file.
    pub private_key: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientFile {
    /// Plaintext (warned at load) or an `$argon2id$...` PHC string from `tollgate hash-secret`.
    pub secret: Option<String>,
    /// Default true: a client is listed here to obtain service-account tokens.
    pub service_accounts_enabled: Option<bool>,
    /// Default true. false => invalid_client.
    pub enabled: Option<bool>,
    #[serde(default)]
    pub service_account_roles: Vec<String>,
    /// Default true. false => token roles = service_account_roles ∩ scope_roles.
    pub full_scope_allowed: Option<bool>,
    #[serde(default)]
    pub scope_roles: Vec<String>,
    /// Default ["profile", "email"].
    pub default_scopes: Option<Vec<String>>,
    /// Granted only when asked for in the `scope` parameter.
    #[serde(default)]
    pub optional_scopes: Vec<String>,
    /// `aud` claim. Default: the clients of the token's client roles, else "account"; [] = no `aud`.
    pub audience: Option<Vec<String>>,
    /// JWKS file of the client's public keys, for private_key_jwt.
    pub jwks: Option<PathBuf>,
    /// Also issue a refresh token (Keycloak: client_credentials.use_refresh_token). Default false.
    pub use_refresh_token: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    /// Path prefix, matched on segment boundaries after normalisation.
    pub prefix: String,
    /// Default: all methods.
    pub methods: Option<Vec<String>>,
    /// Default: `server.default_realm`.
    pub realm: Option<String>,
    /// Several realms whose tokens the route takes; the token's `iss` picks the realm.
    pub realms: Option<Vec<String>>,
    /// All of these are required ("client:role" for client roles).
    #[serde(default)]
    pub roles: Vec<String>,
    /// At least one of these is required.
    #[serde(default)]
    pub any_roles: Vec<String>,
    /// The token's `aud` must contain this.
    pub audience: Option<String>,
    /// No token needed. Default false.
    #[serde(default)]
    pub public: bool,
    /// host:port, or https://host:port for a TLS upstream.
    pub upstream: String,
    /// Keep the `Authorization` header on the upstream request. Default true.
    pub forward_token: Option<bool>,
    /// Default "2s".
    pub connect_timeout: Option<String>,
    /// Time allowed between reads from the upstream. Default "30s".
    pub read_timeout: Option<String>,
    /// Scopes the token's space-separated `scope` must all hold.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Claims the token must carry: equal to the string, or one of the list; "a.b" reaches
    /// nested objects; a claim that is a list matches when it holds the value.
    #[serde(default)]
    pub claims: BTreeMap<String, ClaimFile>,
    /// Extra identity headers from claims: header name → claim name.
    #[serde(default)]
    pub claim_headers: BTreeMap<String, String>,
    /// Requests per client (the token's `azp`) on this route: "N/s" or "N/m".
    pub rate_limit: Option<String>,
    /// Browser callers: answered preflights and CORS headers for the allowed origins.
    pub cors: Option<CorsFile>,
}

/// A claim predicate: one value, or any of several.
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum ClaimFile {
    One(String),
    Any(Vec<String>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsFile {
    /// Allowed origins ("https://app.example.com"), or ["*"].
    pub origins: Vec<String>,
    /// Methods a preflight allows. Default: the route's methods, else GET, HEAD, POST.
    pub methods: Option<Vec<String>>,
    /// Request headers a preflight allows. Default: Authorization, Content-Type.
    pub headers: Option<Vec<String>>,
    /// How long a browser may cache a preflight answer. Default "5m".
    pub max_age: Option<String>,
    /// Allow credentials (cookies, HTTP auth) from the allowed origins. Default false.
    pub credentials: Option<bool>,
}
