//! A presented client secret, checked with the same work whether or not the client exists and
//! whatever kind of secret it has, and with argon2 on the blocking pool, never on a worker.
//!
//! In a realm where any client has an argon2 secret, every failure costs one argon2 run with
//! the parameters of the realm's costliest hash: a known hashed client its own, a known
//! plaintext client or an unknown id a run against that hash, whose result is thrown away.
//! Otherwise every failure costs one constant-time compare.

use super::client_auth::Failed;
use super::throttle::Failure;
use crate::config::{Client, Realm, Snapshot};
use crate::metrics::Metrics;
use crate::secret::{self, Check};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;

const BUSY: &str = "too many client secrets are being checked; retry shortly";

/// Check `presented` as the secret of client `id` of `realm`; argon2 runs are counted in
/// `metrics`.
pub async fn check<'r>(
    metrics: &Metrics,
    snap: &Snapshot,
    realm: &'r Realm,
    id: &str,
    presented: &[u8],
) -> Result<&'r Client, Failed> {
    let wrong = Failed::Counted(Failure::Guess);
    let client = realm.clients.get(id);
    let Some((client, secret)) = client.and_then(|c| Some((c, c.secret.as_ref()?))) else {
        secret::dummy_compare(presented);
        if let Some(phc) = dummy_hash(snap, realm) {
            run(metrics, phc, presented).await?;
        }
        return Err(wrong);
    };
    match secret.check(presented) {
        Check::Match => Ok(client),
        Check::Mismatch => {
            if let Some(phc) = dummy_hash(snap, realm) {
                run(metrics, phc, presented).await?;
            }
            Err(wrong)
        }
        Check::Argon2(phc) => {
            if run(metrics, phc, presented).await? {
                secret.remember(presented);
                Ok(client)
            } else {
                Err(wrong)
            }
        }
    }
}

async fn run(metrics: &Metrics, phc: Arc<str>, presented: &[u8]) -> Result<bool, Failed> {
    let verified = match secret::pool() {
        Ok(pool) => pool.verify(phc, presented).await,
        Err(busy) => Err(busy),
    };
    match verified {
        Ok(matched) => {
            metrics.secret_hash_runs.inc();
            Ok(matched)
        }
        Err(_) => {
            metrics.secret_hash_busy.inc();
            Err(Failed::Unavailable(BUSY))
        }
    }
}

/// Realms' stand-in hashes, for one config generation (the snapshot's hash) at a time.
type Stand = Option<(String, HashMap<String, Arc<str>>)>;

/// The hash a failure in `realm` is checked against when its client has no hash of its own:
/// the realm's costliest argon2 secret, found once per config generation.
fn dummy_hash(snap: &Snapshot, realm: &Realm) -> Option<Arc<str>> {
    static STAND_INS: Mutex<Stand> = parking_lot::const_mutex(None);
    if !realm.any_hashed_secret {
        return None;
    }
    let mut cache = STAND_INS.lock();
    if cache.as_ref().is_none_or(|(generation, _)| *generation != snap.hash) {
        *cache = Some((snap.hash.clone(), HashMap::new()));
    }
    let (_, by_realm) = cache.as_mut()?;
    if let Some(phc) = by_realm.get(&realm.name) {
        return Some(phc.clone());
    }
    let phc = costliest(realm)?;
    by_realm.insert(realm.name.clone(), phc.clone());
    Some(phc)
}

fn costliest(realm: &Realm) -> Option<Arc<str>> {
    realm
        .clients
        .values()
        .filter_map(|c| c.secret.as_ref()?.argon2())
        .max_by_key(|(_, cost)| *cost)
        .map(|(phc, _)| phc.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{load, LoadOptions};

    /// A realm of one hashed client, one plaintext client and one client with neither.
    fn mixed_realm(dir: &std::path::Path) -> Snapshot {
        let key = concat!(env!("CARGO_MANIFEST_DIR"), "/certs/demo-es256.pem");
        std::fs::copy(key, dir.join("k.pem")).unwrap();
        std::fs::write(dir.join("c.jwks.json"), r#"{"keys":[{"kty":"oct","k":"AAAA"}]}"#).unwrap();
        let phc = secret::hash_secret("hashed-secret").unwrap();
        let toml = format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[realms.demo]\nroles = []\n\
             signing_keys = [{{ kid = \"k\", alg = \"ES256\", private_key = \"k.pem\" }}]\n\
             [realms.demo.clients.hashed]\nsecret = \"{phc}\"\n\
             [realms.demo.clients.plain]\nsecret = \"plain-secret\"\n\
             [realms.demo.clients.keys-only]\njwks = \"c.jwks.json\"\n"
        );
        std::fs::write(dir.join("proxy.toml"), toml).unwrap();
        load(&dir.join("proxy.toml"), LoadOptions::default()).unwrap()
    }

    /// Check `presented` for `id`: did it pass, and how many argon2 runs did it cost?
    async fn counted(snap: &Snapshot, id: &str, presented: &str) -> (bool, u64) {
        let metrics = Metrics::default();
        let realm = snap.realm("demo").unwrap();
        let ok = check(&metrics, snap, realm, id, presented.as_bytes()).await.is_ok();
        (ok, metrics.secret_hash_runs.get())
    }

    #[tokio::test]
    async fn right_secrets_pass_and_every_failure_is_a_counted_guess() {
        let dir = tempfile::tempdir().unwrap();
        let snap = mixed_realm(dir.path());
        let realm = snap.realm("demo").unwrap();
        for (id, secret, ok) in [
            ("hashed", "hashed-secret", true),
            ("hashed", "hashed-secret", true),
            ("plain", "plain-secret", true),
            ("hashed", "nope", false),
            ("plain", "nope", false),
            ("keys-only", "nope", false),
            ("nobody", "nope", false),
        ] {
            let r = check(&Metrics::default(), &snap, realm, id, secret.as_bytes()).await;
            match ok {
                true => assert_eq!(r.map(|c| c.id.as_str()), Ok(id)),
                false => assert_eq!(r.err(), Some(Failed::Counted(Failure::Guess)), "{id}"),
            }
        }
    }

    #[tokio::test]
    async fn in_a_mixed_realm_every_failure_costs_one_argon2_run() {
        let dir = tempfile::tempdir().unwrap();
        let snap = mixed_realm(dir.path());
        // The stand-in for clients without a hash of their own is the realm's costliest hash
        // (below), so one run is one run at the same parameters for every failure.
        for id in ["hashed", "plain", "keys-only", "nobody"] {
            assert_eq!(counted(&snap, id, "nope").await, (false, 1), "{id}");
        }
        assert_eq!(
            counted(&snap, "plain", "plain-secret").await,
            (true, 0),
            "plaintext needs no argon2"
        );
        assert_eq!(counted(&snap, "hashed", "hashed-secret").await, (true, 1));
        assert_eq!(counted(&snap, "hashed", "hashed-secret").await, (true, 0), "remembered");
    }

    #[tokio::test]
    async fn in_a_realm_without_hashes_no_failure_runs_argon2() {
        let dir = tempfile::tempdir().unwrap();
        let snap = mixed_realm(dir.path());
        let toml = std::fs::read_to_string(dir.path().join("proxy.toml")).unwrap();
        let plain_only: String = toml
            .lines()
            .filter(|l| !l.contains("$argon2") && !l.contains("clients.hashed"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(dir.path().join("proxy.toml"), plain_only).unwrap();
        let plain = load(&dir.path().join("proxy.toml"), LoadOptions::default()).unwrap();
        assert!(snap.realm("demo").unwrap().any_hashed_secret);
        for id in ["plain", "keys-only", "nobody", "hashed"] {
            assert_eq!(counted(&plain, id, "nope").await, (false, 0), "{id}");
        }
    }

    #[test]
    fn the_stand_in_is_the_costliest_hash_of_the_realm() {
        let dir = tempfile::tempdir().unwrap();
        let snap = mixed_realm(dir.path());
        let realm = snap.realm("demo").unwrap();
        let own = realm.clients["hashed"]
            .secret
            .as_ref()
            .unwrap()
            .argon2()
            .unwrap()
            .0
            .clone();
        assert_eq!(dummy_hash(&snap, realm), Some(own.clone()));
        assert_eq!(dummy_hash(&snap, realm), Some(own), "from the cache");
    }
}
