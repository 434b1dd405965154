//! The validated config: `load(path)` reads `proxy.toml` and every key file it names, checks
//! everything, and builds an immutable [`Snapshot`], or returns every problem at once.

pub mod egress;
pub mod file;
mod policy;
mod realm;
pub mod remote;
mod route;
mod server;
mod store;
pub mod watch;

pub use crate::model::{Client, ClientKeys, Realm};
pub use realm::{format_uuid as realm_uuid, stable_uuid};
pub use server::{ServerSettings, DEFAULT_MAX_CONNECTIONS};
pub use store::StoreSettings;

use crate::model::RouteTable;
use file::FileConfig;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// One problem in a config: which file, which key, what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: PathBuf,
    pub key: String,
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.reason)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.reason)
        }
    }
}

/// Every problem of a config that would not load.
#[derive(Debug, Clone)]
pub struct ConfigError(pub Vec<Problem>);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Everything a request needs, checked once; requests never re-validate config.
#[derive(Debug)]
pub struct Snapshot {
    pub server: ServerSettings,
    pub realms: BTreeMap<String, Arc<Realm>>,
    pub default_realm: Option<String>,
    pub routes: RouteTable,
    /// Every route's claim-header names: stripped from each incoming request, whatever its route.
    pub claim_header_names: Vec<http::HeaderName>,
    /// `[store]`: none keeps state in this replica's memory.
    pub store: Option<StoreSettings>,
    /// Hex SHA-256 over the config file and every key file it names.
    pub hash: String,
    /// The config file and every key/JWKS file it names (what the watcher watches).
    pub files: Vec<PathBuf>,
    /// Things that load but deserve a word (plaintext secrets, undeclared client roles).
    pub warnings: Vec<String>,
    /// `[egress]`: the app's outbound calls, with tokens attached. None: no egress listener.
    pub egress: Option<crate::model::egress::Egress>,
}

impl Snapshot {
    pub fn realm(&self, name: &str) -> Option<&Arc<Realm>> {
        self.realms.get(name)
    }

    /// The snapshot with default issuers naming `port`, the port actually bound (called at
    /// start, before the snapshot is shared, so that the config is read only once).
    pub fn with_listen_port(mut self, port: u16) -> Snapshot {
        let scheme = if self.server.listen.is_some() { "http" } else { "https" };
        for realm in self.realms.values_mut() {
            if let Some(realm) = Arc::get_mut(realm) {
                realm::name_port(realm, scheme, port);
            }
        }
        self
    }
}

/// How the listener addresses are known when the issuer default is computed.
/// `listen_port` overrides the port of `server.listen` (the sidecar resolves `:0` at start).
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    pub listen_port: Option<u16>,
}

/// Collects problems while validating.
pub(crate) struct Checker<'a> {
    pub file: &'a Path,
    pub base: PathBuf,
    pub problems: Vec<Problem>,
    pub warnings: Vec<String>,
    pub files: Vec<PathBuf>,
    pub hasher: sha2::Sha256,
}

impl Checker<'_> {
    pub fn problem(&mut self, key: impl Into<String>, reason: impl Into<String>) {
        self.problems.push(Problem {
            file: self.file.to_path_buf(),
            key: key.into(),
            reason: reason.into(),
        });
    }

    pub fn duration(&mut self, key: &str, value: Option<&str>, default: Duration) -> Duration {
        match value {
            None => default,
            Some(v) => match humantime::parse_duration(v) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    self.problem(key, "must be greater than zero");
                    default
                }
                Err(e) => {
                    self.problem(
                        key,
                        format!("{v:?} is not a duration ({e}); use e.g. \"300s\" or \"5m\""),
                    );
                    default
                }
            },
        }
    }

    /// `connect_timeout` (default 2 s) and `read_timeout` (default 30 s) of the route at `key`.
    pub fn timeouts(&mut self, key: &str, connect: Option<&str>, read: Option<&str>) -> (Duration, Duration) {
        (
            self.duration(&format!("{key}.connect_timeout"), connect, Duration::from_secs(2)),
            self.duration(&format!("{key}.read_timeout"), read, Duration::from_secs(30)),
        )
    }

    /// Resolve a path named in the config relative to the config's folder, and read it.
    pub fn read_file(&mut self, key: &str, path: &Path) -> Option<(PathBuf, Vec<u8>)> {
        use sha2::Digest;
        let full = self.base.join(path);
        self.files.push(full.clone());
        match std::fs::read(&full) {
            Ok(bytes) => {
                self.hasher.update(full.to_string_lossy().as_bytes());
                self.hasher.update(&bytes);
                Some((full, bytes))
            }
            Err(e) => {
                self.problem(key, format!("cannot read {}: {e}", full.display()));
                None
            }
        }
    }
}

/// Read, parse and validate the config at `path`.
pub fn load(path: &Path, opts: LoadOptions) -> Result<Snapshot, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError(vec![Problem {
            file: path.to_path_buf(),
            key: String::new(),
            reason: format!("cannot read: {e}"),
        }])
    })?;
    load_text(path, &text, opts)
}

/// Parse and validate config `text` as if read from `path` (key files are found beside it):
/// for tests that build a snapshot in memory.
pub fn load_str(path: &Path, text: &str) -> Result<Snapshot, ConfigError> {
    load_text(path, text, LoadOptions::default())
}

fn load_text(path: &Path, text: &str, opts: LoadOptions) -> Result<Snapshot, ConfigError> {
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    hasher.update(text.as_bytes());
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut c = Checker {
        file: path,
        base,
        problems: Vec::new(),
        warnings: Vec::new(),
        files: vec![path.to_path_buf()],
        hasher,
    };
    let parsed: FileConfig = match toml::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            let key = e.span().map(|s| line_of(text, s.start)).unwrap_or_default();
            // Quote the text only where it is a key: a value could be a secret.
            let near = e
                .span()
                .filter(|_| e.message().contains("duplicate key"))
                .and_then(|s| text.get(s))
                .map(|t| t.lines().next().unwrap_or("").trim())
                .filter(|t| !t.is_empty() && t.len() <= 80)
                .map(|t| format!(" (at `{t}`)"))
                .unwrap_or_default();
            c.problem(key, format!("{}{near}", e.message().trim_end()));
            return Err(ConfigError(c.problems));
        }
    };
    validate(parsed, &mut c, opts)
}

fn claim_header_names(routes: &[crate::model::Route]) -> Vec<http::HeaderName> {
    let mut names: Vec<http::HeaderName> = routes
        .iter()
        .filter_map(|r| r.policy.as_ref())
        .flat_map(|p| p.claim_headers.iter().map(|(n, _)| n.clone()))
        .collect();
    names.sort_by(|a, b| a.as_str().cmp(b.as_str()));
    names.dedup();
    names
}

fn line_of(text: &str, offset: usize) -> String {
    let line = text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1;
    format!("line {line}")
}

fn validate(f: FileConfig, c: &mut Checker, opts: LoadOptions) -> Result<Snapshot, ConfigError> {
    use sha2::Digest;
    let server = server::build(c, &f.server);
    // The port tokens name in their default issuer: the plain listener's, else the TLS one's.
    let (scheme, port) = match (server.listen, server.tls_listen) {
        (Some(a), _) => ("http", opts.listen_port.unwrap_or(a.port())),
        (None, Some(a)) => ("https", opts.listen_port.unwrap_or(a.port())),
        _ => ("http", 0),
    };
    let realms = realms(c, &f, scheme, port);
    let default_realm = match &f.server.default_realm {
        Some(r) if !f.realms.contains_key(r) => {
            c.problem("server.default_realm", format!("no realm named {r:?}"));
            None
        }
        Some(r) => Some(r.clone()),
        None if f.realms.len() == 1 => f.realms.keys().next().cloned(),
        None => None,
    };
    let store = f.store.as_ref().and_then(|sf| store::build(c, sf));
    let routes = routes(c, &f, default_realm.as_deref());
    let egress = egress::build(c, f.egress.as_ref(), &realms, &f.realms);
    if !c.problems.is_empty() {
        return Err(ConfigError(std::mem::take(&mut c.problems)));
    }
    let hash = hex::encode(std::mem::take(&mut c.hasher).finalize());
    Ok(Snapshot {
        server,
        realms,
        default_realm,
        claim_header_names: claim_header_names(&routes),
        routes: RouteTable::new(routes),
        store,
        hash,
        files: std::mem::take(&mut c.files),
        warnings: std::mem::take(&mut c.warnings),
        egress,
    })
}

fn realms(c: &mut Checker, f: &FileConfig, scheme: &str, port: u16) -> BTreeMap<String, Arc<Realm>> {
    if f.realms.is_empty() {
        c.problem("realms", "at least one realm is required");
    }
    let mut realms = BTreeMap::new();
    for (name, rf) in &f.realms {
        let default_issuer = format!("{scheme}://localhost:{port}/realms/{name}");
        if let Some(realm) = realm::build(c, name, rf, default_issuer) {
            realms.insert(name.clone(), Arc::new(realm));
        }
    }
    realms
}

/// Every route that builds, and a problem for each prefix given twice.
fn routes(c: &mut Checker, f: &FileConfig, default_realm: Option<&str>) -> Vec<crate::model::Route> {
    let mut routes = Vec::new();
    for (i, rf) in f.routes.iter().enumerate() {
        if let Some(r) = route::build(c, &format!("routes[{i}]"), rf, f, default_realm) {
            routes.push(r);
        }
    }
    let mut seen = std::collections::HashSet::new();
    for r in &routes {
        if !seen.insert(r.prefix.clone()) {
            let prefix = r.prefix.clone();
            c.problem("routes", format!("two routes have the prefix {prefix:?}"));
        }
    }
    routes
}

#[cfg(test)]
mod tests;
