//! A realm and its clients as validated from the file.

use crate::secret::ClientSecret;
use crate::token::live::LiveKeys;
use crate::token::{KeySet, Rules, SigningKey, TypRule};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::Algorithm;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

#[derive(Debug)]
pub struct Realm {
    pub name: String,
    pub issuer: String,
    /// The issuer was not configured: it names the listener's port.
    pub default_issuer: bool,
    /// `<issuer>/protocol/openid-connect/token`: what a client assertion's `aud` may name.
    pub token_endpoint: String,
    pub access_token_lifespan: Duration,
    pub refresh_token_lifespan: Duration,
    pub leeway: Duration,
    /// Declared roles. A remote realm declares none unless it lists them to catch typos.
    pub roles: HashSet<String>,
    pub keys: Keys,
    /// Where a remote realm's tokens keep their roles (`None`: Keycloak's claims).
    pub roles_claim: Option<String>,
    /// Identifies what a verification of this realm checked besides the key (name, issuer,
    /// token rules), so a cached verification is used only while they are unchanged.
    pub verify_tag: u64,
    /// The JWKS document, rendered once (local realms).
    pub jwks_json: bytes::Bytes,
    /// The discovery document, rendered by the issuer on first use (a realm lives as long as
    /// its config snapshot, so a reload renders it anew).
    pub discovery_json: std::sync::OnceLock<bytes::Bytes>,
    pub clients: HashMap<String, Client>,
    /// Does any client use an argon2 secret (an unknown client then costs an argon2 run too)?
    pub any_hashed_secret: bool,
    /// Longest a refresh chain lives from its original grant (Keycloak's Client Session Max).
    pub client_session_max_lifespan: Duration,
}

/// Where a realm's verifying keys come from.
#[derive(Debug)]
pub enum Keys {
    /// A realm that issues tokens: the active signer (the first key) and every key that still
    /// verifies.
    Local { signer: Arc<SigningKey>, verify: KeySet },
    /// A remote realm's keys from a local JWKS file (reloaded with the config).
    File(KeySet),
    /// A remote realm's keys fetched from its issuer by the key engine.
    Fetched {
        settings: Arc<RemoteSettings>,
        live: Arc<LiveKeys>,
    },
}

/// What the key engine of a remote realm needs; equal settings share one engine across reloads.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteSettings {
    pub realm: String,
    pub issuer: String,
    /// `None`: the `jwks_uri` of the issuer's discovery document.
    pub jwks_uri: Option<String>,
    /// CA bundle (PEM) for the issuer's TLS; `None`: the system roots.
    pub ca_pem: Option<Vec<u8>>,
    pub refresh: Duration,
    pub max_stale: Duration,
    pub algorithms: Vec<Algorithm>,
}

impl Realm {
    /// The key that signs this realm's tokens; `None` for a remote realm.
    pub fn signer(&self) -> Option<&Arc<SigningKey>> {
        match &self.keys {
            Keys::Local { signer, .. } => Some(signer),
            _ => None,
        }
    }

    pub fn is_remote(&self) -> bool {
        !matches!(self.keys, Keys::Local { .. })
    }

    /// What its tokens must satisfy besides a signature.
    pub fn rules(&self) -> Rules<'_> {
        Rules {
            realm: &self.name,
            issuer: &self.issuer,
            leeway: self.leeway.as_secs(),
            typ: if self.is_remote() {
                TypRule::Foreign
            } else {
                TypRule::Keycloak
            },
            roles_claim: self.roles_claim.as_deref(),
        }
    }

    /// The live keys of a fetched remote realm.
    pub fn live(&self) -> Option<&Arc<LiveKeys>> {
        match &self.keys {
            Keys::Fetched { live, .. } => Some(live),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub struct Client {
    pub id: String,
    pub secret: Option<ClientSecret>,
    pub jwks: Option<ClientKeys>,
    pub enabled: bool,
    pub service_accounts_enabled: bool,
    pub use_refresh_token: bool,
    /// `sub` of its tokens: stable for the realm and client across restarts and replicas.
    pub subject: String,
    /// Token roles after the scope rule: realm roles and `client -> roles`.
    pub realm_roles: Vec<String>,
    pub resource_access: BTreeMap<String, Vec<String>>,
    pub default_scopes: Vec<String>,
    pub optional_scopes: Vec<String>,
    pub audience: Vec<String>,
}

impl Client {
    /// The `scope` of a token for this client when `requested` is asked (Keycloak's rule: the
    /// default scopes, then the optional ones asked for); `Err` names a scope it may not have.
    pub fn scope_for(&self, requested: Option<&str>) -> Result<String, String> {
        let client = self;
        let mut scopes: Vec<&str> = Vec::new();
        for s in requested.unwrap_or("").split(' ').filter(|s| !s.is_empty()) {
            let known = s == "openid"
                || client.default_scopes.iter().any(|d| d == s)
                || client.optional_scopes.iter().any(|o| o == s);
            if !known {
                return Err(s.to_string());
            }
            if !scopes.contains(&s) {
                scopes.push(s);
            }
        }
        let mut out: Vec<&str> = Vec::new();
        if scopes.contains(&"openid") {
            out.push("openid");
        }
        out.extend(client.default_scopes.iter().map(String::as_str));
        out.extend(
            scopes
                .iter()
                .copied()
                .filter(|s| *s != "openid" && !client.default_scopes.iter().any(|d| d == s)),
        );
        Ok(out.join(" "))
    }
}

/// A client's public keys for private_key_jwt.
#[derive(Debug)]
pub struct ClientKeys {
    pub set: JwkSet,
}
