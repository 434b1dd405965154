//! Secrets: a wrapper that never prints, constant-time comparison, and argon2id client secrets.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use parking_lot::RwLock;
use sha2::{Digest, Sha256};
use std::fmt;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// A secret string whose `Debug` and `Display` print `***`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    h.finalize().into()
}

/// Equal in constant time, whatever the lengths: both sides are hashed first, so neither the
/// length nor the first differing byte shows in the timing.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    sha256(&[a]).ct_eq(&sha256(&[b])).into()
}

/// A client's configured secret.
pub enum ClientSecret {
    Plain(Secret),
    /// argon2id PHC string, plus the digest of the last presented secret that verified, so a
    /// busy client pays argon2's price once per config generation, not once per token.
    Argon2 {
        phc: Arc<str>,
        /// Memory × passes × lanes of its parameters: what one verification costs.
        cost: u64,
        verified: RwLock<Option<[u8; 32]>>,
    },
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientSecret::Plain(_) => f.write_str("Plain(***)"),
            ClientSecret::Argon2 { .. } => f.write_str("Argon2(***)"),
        }
    }
}

/// What comparing a presented secret takes.
#[derive(Debug, PartialEq, Eq)]
pub enum Check {
    Match,
    Mismatch,
    /// An argon2 verification against this PHC string ([`Argon2Pool::verify`]).
    Argon2(Arc<str>),
}

impl ClientSecret {
    /// Parse a config value: a `$argon2...` PHC string, or plaintext.
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.starts_with("$argon2") {
            let hash = PasswordHash::new(value).map_err(|e| format!("not a valid argon2 PHC string: {e}"))?;
            let params = argon2::Params::try_from(&hash);
            let (Some(_), Some(_), Ok(params)) = (hash.salt, hash.hash, params) else {
                return Err("not a complete argon2 PHC string (algorithm, parameters, salt, hash)".into());
            };
            let cost = u64::from(params.m_cost()) * u64::from(params.t_cost()) * u64::from(params.p_cost());
            Ok(ClientSecret::Argon2 {
                phc: value.into(),
                cost,
                verified: RwLock::new(None),
            })
        } else if value.is_empty() {
            Err("empty secret".into())
        } else {
            Ok(ClientSecret::Plain(Secret::new(value)))
        }
    }

    pub fn is_hashed(&self) -> bool {
        matches!(self, ClientSecret::Argon2 { .. })
    }

    /// The argon2 PHC string and its cost, for a hashed secret.
    pub fn argon2(&self) -> Option<(&Arc<str>, u64)> {
        match self {
            ClientSecret::Argon2 { phc, cost, .. } => Some((phc, *cost)),
            ClientSecret::Plain(_) => None,
        }
    }

    /// The plaintext, where there is one (client_secret_jwt needs it as an HMAC key).
    pub fn plaintext(&self) -> Option<&Secret> {
        match self {
            ClientSecret::Plain(s) => Some(s),
            ClientSecret::Argon2 { .. } => None,
        }
    }

    /// Compare `presented` as far as can be done at once: constant time for plaintext and for
    /// the memo of a hashed secret; otherwise the argon2 run still to do.
    pub fn check(&self, presented: &[u8]) -> Check {
        match self {
            ClientSecret::Plain(s) if ct_eq(s.expose().as_bytes(), presented) => Check::Match,
            ClientSecret::Plain(_) => Check::Mismatch,
            ClientSecret::Argon2 { phc, verified, .. } => {
                let known = *verified.read();
                match known {
                    Some(known) if bool::from(known.ct_eq(&memo_digest(presented))) => Check::Match,
                    _ => Check::Argon2(phc.clone()),
                }
            }
        }
    }

    /// Remember `presented` as verified, after its argon2 run matched.
    pub fn remember(&self, presented: &[u8]) {
        if let ClientSecret::Argon2 { verified, .. } = self {
            *verified.write() = Some(memo_digest(presented));
        }
    }

    /// Does `presented` match? Runs argon2 on the calling thread: for tools and tests, never
    /// on a proxy worker (the issuer uses [`ClientSecret::check`] and the pool).
    pub fn verify(&self, presented: &[u8]) -> bool {
        match self.check(presented) {
            Check::Match => true,
            Check::Mismatch => false,
            Check::Argon2(phc) => {
                let ok = argon2_verify(&phc, presented);
                if ok {
                    self.remember(presented);
                }
                ok
            }
        }
    }
}

fn memo_digest(presented: &[u8]) -> [u8; 32] {
    sha256(&[b"tollgate-secret-cache", presented])
}

/// argon2 verification of `presented` against the PHC string `phc`.
pub fn argon2_verify(phc: &str, presented: &[u8]) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default().verify_password(presented, &hash).is_ok(),
        Err(_) => false,
    }
}

/// Work equal to comparing a plaintext secret, for a client that has none.
pub fn dummy_compare(presented: &[u8]) {
    let _ = ct_eq(b"tollgate-dummy", presented);
}

/// argon2 runs waiting for a pool thread, per thread, past which the issuer answers 503.
pub const QUEUE_PER_THREAD: usize = 32;

/// The pool could not take another argon2 run (its queue is full, or it has no thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

struct Job {
    phc: Arc<str>,
    presented: Vec<u8>,
    done: tokio::sync::oneshot::Sender<bool>,
}

/// A few threads that run argon2 verifications off the proxy workers: each worker is a
/// single-threaded runtime, and a 20 ms hash on it would stall every connection it serves.
/// The queue is bounded, so a flood of wrong secrets is answered 503 instead of piling up.
pub struct Argon2Pool {
    queue: std::sync::mpsc::SyncSender<Job>,
}

impl Argon2Pool {
    /// Starts `threads` threads (at least one) behind a queue of `queue` runs.
    pub fn start(threads: usize, queue: usize) -> std::io::Result<Self> {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(queue);
        let rx = Arc::new(parking_lot::Mutex::new(rx));
        for i in 0..threads.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("tollgate-argon2-{i}"))
                .spawn(move || {
                    lower_priority();
                    loop {
                        let next = rx.lock().recv();
                        let Ok(job) = next else { return };
                        let ok = argon2_verify(&job.phc, &job.presented);
                        let _ = job.done.send(ok);
                    }
                })?;
        }
        Ok(Argon2Pool { queue: tx })
    }

    /// Verifies `presented` against `phc` on a pool thread.
    pub async fn verify(&self, phc: Arc<str>, presented: &[u8]) -> Result<bool, Busy> {
        let (done, result) = tokio::sync::oneshot::channel();
        let job = Job {
            phc,
            presented: presented.to_vec(),
            done,
        };
        self.queue.try_send(job).map_err(|_| Busy)?;
        // A pool thread that went away without answering counts as a mismatch.
        Ok(result.await.unwrap_or(false))
    }
}

/// The process's pool: half the cores (at least one thread), started on first use.
pub fn pool() -> Result<&'static Argon2Pool, Busy> {
    static POOL: std::sync::OnceLock<Result<Argon2Pool, String>> = std::sync::OnceLock::new();
    let pool = POOL.get_or_init(|| {
        let threads = std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1));
        Argon2Pool::start(threads, threads * QUEUE_PER_THREAD).map_err(|e| {
            tracing::error!("argon2 threads could not start: {e}");
            e.to_string()
        })
    });
    pool.as_ref().map_err(|_| Busy)
}

/// argon2 threads run at a lower priority than the proxy workers, so hashing yields the CPU to
/// proxied requests whenever both want it.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority with the calling thread's own id changes that thread's nice value only.
    unsafe {
        let _ = libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, 10);
    }
}

/// An argon2id PHC string for `secret`, with a fresh random salt.
pub fn hash_secret(secret: &str) -> Result<String, String> {
    let mut salt_bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut salt_bytes).map_err(|_| "no randomness")?;
    hash_secret_with_salt(secret, &salt_bytes)
}

/// An argon2id PHC string for `secret` with the salt given (tollgate's argon2 parameters).
pub fn hash_secret_with_salt(secret: &str, salt_bytes: &[u8]) -> Result<String, String> {
    let salt = SaltString::encode_b64(salt_bytes).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(secret.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
    }

    #[test]
    fn plaintext_and_argon2_verify() {
        let p = ClientSecret::parse("password").unwrap();
        assert!(p.verify(b"password"));
        assert!(!p.verify(b"passwor"));
        assert!(!p.verify(b"password1"));
        let phc = hash_secret("s3cret").unwrap();
        assert!(phc.starts_with("$argon2id$"));
        let h = ClientSecret::parse(&phc).unwrap();
        assert!(!h.verify(b"wrong"));
        assert!(h.verify(b"s3cret"));
        assert!(h.verify(b"s3cret"), "second time from the cache");
        assert!(!h.verify(b"wrong"), "the cache does not accept other secrets");
        assert!(ClientSecret::parse("$argon2id$garbage").is_err());
    }

    #[test]
    fn check_defers_argon2_and_remembers_only_what_matched() {
        let phc = hash_secret("s3cret").unwrap();
        let h = ClientSecret::parse(&phc).unwrap();
        assert_eq!(h.check(b"s3cret"), Check::Argon2(phc.as_str().into()));
        h.remember(b"s3cret");
        assert_eq!(h.check(b"s3cret"), Check::Match);
        assert!(matches!(h.check(b"other"), Check::Argon2(_)));
        let p = ClientSecret::parse("pw").unwrap();
        assert_eq!((p.check(b"pw"), p.check(b"px")), (Check::Match, Check::Mismatch));
        assert!(p.argon2().is_none());
        let (_, cost) = h.argon2().unwrap();
        let d = argon2::Params::default();
        assert_eq!(
            cost,
            u64::from(d.m_cost()) * u64::from(d.t_cost()) * u64::from(d.p_cost())
        );
    }

    #[tokio::test]
    async fn the_pool_verifies_off_the_caller_and_refuses_past_its_queue() {
        let phc: Arc<str> = hash_secret("s3cret").unwrap().into();
        let pool = Argon2Pool::start(1, 2).unwrap();
        assert_eq!(pool.verify(phc.clone(), b"s3cret").await, Ok(true));
        assert_eq!(pool.verify(phc.clone(), b"wrong").await, Ok(false));
        // One run on the thread and two queued at most: the rest are refused at once.
        let mut waiting = Vec::new();
        let mut refused = 0;
        for _ in 0..6 {
            let (done, result) = tokio::sync::oneshot::channel();
            let job = Job {
                phc: phc.clone(),
                presented: b"wrong".to_vec(),
                done,
            };
            match pool.queue.try_send(job) {
                Ok(()) => waiting.push(result),
                Err(_) => refused += 1,
            }
        }
        assert!(refused >= 3 && waiting.len() <= 3, "{refused} refused");
        assert_eq!(
            pool.verify(phc.clone(), b"s3cret").await,
            Err(Busy),
            "the queue is still full"
        );
        for result in waiting {
            assert_eq!(result.await, Ok(false));
        }
        assert_eq!(pool.verify(phc, b"s3cret").await, Ok(true), "room again once drained");
    }
}
