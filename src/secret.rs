//! Secrets: a wrapper that never prints, constant-time comparison, and argon2id client secrets.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use parking_lot::RwLock;
use sha2::{Digest, Sha256};
use std::fmt;
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
        phc: String,
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

impl ClientSecret {
    /// Parse a config value: a `$argon2...` PHC string, or plaintext.
    pub fn parse(value: &str) -> Result<Self, String> {
        if value.starts_with("$argon2") {
            let hash = PasswordHash::new(value).map_err(|e| format!("not a valid argon2 PHC string: {e}"))?;
            if hash.salt.is_none() || hash.hash.is_none() || argon2::Params::try_from(&hash).is_err() {
                return Err("not a complete argon2 PHC string (algorithm, parameters, salt, hash)".into());
            }
            Ok(ClientSecret::Argon2 {
                phc: value.to_string(),
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

    /// The plaintext, where there is one (client_secret_jwt needs it as an HMAC key).
    pub fn plaintext(&self) -> Option<&Secret> {
        match self {
            ClientSecret::Plain(s) => Some(s),
            ClientSecret::Argon2 { .. } => None,
        }
    }

    /// Does `presented` match? Constant time for plaintext; argon2 for hashed, remembered on
    /// success.
    pub fn verify(&self, presented: &[u8]) -> bool {
        match self {
            ClientSecret::Plain(s) => ct_eq(s.expose().as_bytes(), presented),
            ClientSecret::Argon2 { phc, verified } => {
                let digest = sha256(&[b"tollgate-secret-cache", presented]);
                if let Some(known) = *verified.read() {
                    if bool::from(known.ct_eq(&digest)) {
                        return true;
                    }
                }
                let ok = argon2_verify(phc, presented);
                if ok {
                    *verified.write() = Some(digest);
                }
                ok
            }
        }
    }
}

fn argon2_verify(phc: &str, presented: &[u8]) -> bool {
    match PasswordHash::new(phc) {
        Ok(hash) => Argon2::default().verify_password(presented, &hash).is_ok(),
        Err(_) => false,
    }
}

/// The work an unknown client costs, so that it matches a known client with a wrong secret.
pub fn dummy_verify(hashed: bool) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    if hashed {
        let phc = DUMMY.get_or_init(|| hash_secret("tollgate-dummy").unwrap_or_default());
        let _ = argon2_verify(phc, b"not-the-secret");
    } else {
        let _ = ct_eq(b"tollgate-dummy", b"not-the-secret");
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
}
