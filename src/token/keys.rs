//! Keys: a realm's signing keys (PEM loading, alg/key agreement, JWS signing, their JWKS entry)
//! and the public keys that verify, local or fetched from another issuer's JWKS.
//!
//! Keys are parsed once, when a config snapshot is built, into aws-lc-rs key objects; signing
//! and verifying then never re-parse key material (jsonwebtoken's `encode`/`decode` would parse
//! the DER on every call, which costs more than an ES256 signature itself).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, KeyPair};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::{json, Value};
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// A public key that verifies JWS signatures with its one algorithm.
pub struct VerifyKey {
    pub kid: String,
    pub alg: Algorithm,
    verifier: sig::ParsedPublicKey,
    /// Identifies the key material and its algorithm, so a verified-token cache can tell that
    /// the key a token was checked with is still the one published under its kid.
    pub fingerprint: u64,
}

impl fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

impl VerifyKey {
    /// A verifier for `alg` over `public`: DER RSAPublicKey (PKCS#1) for RSA, the uncompressed
    /// point for EC, the 32 raw bytes for Ed25519.
    pub fn from_public(kid: &str, alg: Algorithm, public: &[u8]) -> Result<Self, String> {
        let verify_alg: &'static dyn sig::VerificationAlgorithm = match alg {
            Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
            Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
            Algorithm::RS512 => &sig::RSA_PKCS1_2048_8192_SHA512,
            Algorithm::PS256 => &sig::RSA_PSS_2048_8192_SHA256,
            Algorithm::PS384 => &sig::RSA_PSS_2048_8192_SHA384,
            Algorithm::PS512 => &sig::RSA_PSS_2048_8192_SHA512,
            Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
            Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
            Algorithm::EdDSA => &sig::ED25519,
            other => return Err(format!("{} is not an asymmetric signature algorithm", alg_name(other))),
        };
        let verifier = sig::ParsedPublicKey::new(verify_alg, public)
            .map_err(|_| format!("not a usable public key for {}", alg_name(alg)))?;
        let digest = crate::secret::sha256(&[alg_name(alg).as_bytes(), public]);
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        Ok(VerifyKey {
            kid: kid.to_string(),
            alg,
            verifier,
            fingerprint: u64::from_le_bytes(first),
        })
    }

    /// Check `signature` over `signing_input` with this key's own algorithm.
    pub fn verify(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        self.verifier.verify_sig(signing_input, signature).is_ok()
    }
}

/// One signing key of a realm: the private half signs, the public half verifies.
pub struct SigningKey {
    pub kid: String,
    pub alg: Algorithm,
    signer: Signer,
    /// The public half, which verifies what this key signed.
    pub public: Arc<VerifyKey>,
    /// `base64url({"alg","kid","typ":"JWT"})`, computed once.
    header_b64: String,
    /// This key's entry in the realm JWKS.
    pub jwk: Value,
}

enum Signer {
    Rsa(sig::RsaKeyPair, &'static dyn sig::RsaEncoding),
    Ecdsa(sig::EcdsaKeyPair),
    Ed25519(sig::Ed25519KeyPair),
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// The algorithms a realm key may have, by their JOSE names.
pub fn parse_alg(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

pub fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        _ => "unsupported",
    }
}

impl SigningKey {
    /// Load a PEM private key from `path` for `alg`. The error says what is wrong without
    /// quoting any of the file.
    pub fn load(kid: &str, alg: Algorithm, path: &Path) -> Result<Self, String> {
        let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::from_pem(kid, alg, &text).map_err(|reason| format!("{}: {reason}", path.display()))
    }

    pub fn from_pem(kid: &str, alg: Algorithm, pem_bytes: &[u8]) -> Result<Self, String> {
        let block = pem::parse(pem_bytes).map_err(|_| "not a PEM file".to_string())?;
        let der = block.contents();
        let tag = block.tag();
        let rsa = |der: &[u8]| -> Result<sig::RsaKeyPair, String> {
            match tag {
                "PRIVATE KEY" => sig::RsaKeyPair::from_pkcs8(der),
                "RSA PRIVATE KEY" => sig::RsaKeyPair::from_der(der),
                _ => return Err(format!("PEM block {tag:?} is not an RSA private key")),
            }
            .map_err(|e| format!("not a usable RSA private key for {}: {e}", alg_name(alg)))
        };
        let ec = |signing: &'static sig::EcdsaSigningAlgorithm, curve: &str| {
            match tag {
                "PRIVATE KEY" => sig::EcdsaKeyPair::from_pkcs8(signing, der),
                "EC PRIVATE KEY" => sig::EcdsaKeyPair::from_private_key_der(signing, der),
                _ => return Err(format!("PEM block {tag:?} is not an EC private key")),
            }
            .map_err(|_| format!("not a {curve} EC private key, as {} needs", alg_name(alg)))
        };
        let signer = match alg {
            Algorithm::RS256 => Signer::Rsa(rsa(der)?, &sig::RSA_PKCS1_SHA256),
            Algorithm::RS384 => Signer::Rsa(rsa(der)?, &sig::RSA_PKCS1_SHA384),
            Algorithm::RS512 => Signer::Rsa(rsa(der)?, &sig::RSA_PKCS1_SHA512),
            Algorithm::PS256 => Signer::Rsa(rsa(der)?, &sig::RSA_PSS_SHA256),
            Algorithm::PS384 => Signer::Rsa(rsa(der)?, &sig::RSA_PSS_SHA384),
            Algorithm::PS512 => Signer::Rsa(rsa(der)?, &sig::RSA_PSS_SHA512),
            Algorithm::ES256 => Signer::Ecdsa(ec(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256")?),
            Algorithm::ES384 => Signer::Ecdsa(ec(&sig::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384")?),
            Algorithm::EdDSA => {
                if tag != "PRIVATE KEY" {
                    return Err(format!("PEM block {tag:?} is not a PKCS#8 Ed25519 key"));
                }
                let kp = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                    .map_err(|_| "not an Ed25519 private key, as EdDSA needs".to_string())?;
                Signer::Ed25519(kp)
            }
            other => return Err(format!("{} is not a signing algorithm here", alg_name(other))),
        };
        let public = match &signer {
            Signer::Rsa(kp, _) => kp.public_key().as_ref().to_vec(),
            Signer::Ecdsa(kp) => kp.public_key().as_ref().to_vec(),
            Signer::Ed25519(kp) => kp.public_key().as_ref().to_vec(),
        };
        let public_key = VerifyKey::from_public(kid, alg, &public)
            .map_err(|_| "public half of the key does not parse".to_string())?;
        let jwk = build_jwk(kid, alg, &signer, &public);
        let header = json!({"alg": alg_name(alg), "typ": "JWT", "kid": kid});
        let header_b64 = B64.encode(header.to_string());
        Ok(SigningKey {
            kid: kid.to_string(),
            alg,
            signer,
            public: Arc::new(public_key),
            header_b64,
            jwk,
        })
    }

    /// Sign `claims` (already JSON) into a compact JWS with this key's header.
    pub fn sign(&self, claims_json: &[u8]) -> Result<String, String> {
        let mut out = String::with_capacity(self.header_b64.len() + claims_json.len() * 4 / 3 + 400);
        out.push_str(&self.header_b64);
        out.push('.');
        B64.encode_string(claims_json, &mut out);
        let signature = self.sign_input(out.as_bytes())?;
        out.push('.');
        B64.encode_string(signature, &mut out);
        Ok(out)
    }

    /// The signature over a JWS signing input `msg` (`header.claims`, both base64url).
    pub fn sign_input(&self, msg: &[u8]) -> Result<Vec<u8>, String> {
        let rng = SystemRandom::new();
        match &self.signer {
            Signer::Rsa(kp, enc) => {
                let mut out = vec![0u8; kp.public_modulus_len()];
                kp.sign(*enc, &rng, msg, &mut out).map_err(|_| "RSA signing failed")?;
                Ok(out)
            }
            Signer::Ecdsa(kp) => Ok(kp
                .sign(&rng, msg)
                .map_err(|_| "ECDSA signing failed")?
                .as_ref()
                .to_vec()),
            Signer::Ed25519(kp) => Ok(kp.sign(msg).as_ref().to_vec()),
        }
    }

    /// Check `signature` over `signing_input` with this key's own algorithm.
    pub fn verify(&self, signing_input: &[u8], signature: &[u8]) -> bool {
        self.public.verify(signing_input, signature)
    }
}

fn build_jwk(kid: &str, alg: Algorithm, signer: &Signer, public: &[u8]) -> Value {
    match signer {
        Signer::Rsa(kp, _) => {
            let pk = kp.public_key();
            json!({
                "kid": kid, "kty": "RSA", "alg": alg_name(alg), "use": "sig",
                "n": B64.encode(pk.modulus().big_endian_without_leading_zero()),
                "e": B64.encode(pk.exponent().big_endian_without_leading_zero()),
            })
        }
        Signer::Ecdsa(_) => {
            // Uncompressed point: 0x04 || X || Y.
            let coord = (public.len() - 1) / 2;
            let crv = if coord == 32 { "P-256" } else { "P-384" };
            json!({
                "kid": kid, "kty": "EC", "alg": alg_name(alg), "use": "sig", "crv": crv,
                "x": B64.encode(&public[1..1 + coord]),
                "y": B64.encode(&public[1 + coord..]),
            })
        }
        Signer::Ed25519(_) => json!({
            "kid": kid, "kty": "OKP", "alg": "EdDSA", "use": "sig", "crv": "Ed25519",
            "x": B64.encode(public),
        }),
    }
}

/// A new PKCS#8 PEM private key for `alg` (RS256 → RSA-2048, ES256 → P-256, EdDSA → Ed25519).
pub fn generate_pem(alg: Algorithm) -> Result<String, String> {
    use aws_lc_rs::encoding::AsDer;
    let rng = SystemRandom::new();
    let der: Vec<u8> = match alg {
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256 => {
            let kp =
                sig::RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(|_| "RSA key generation failed")?;
            let doc: aws_lc_rs::encoding::Pkcs8V1Der = kp.as_der().map_err(|_| "RSA key encoding failed")?;
            doc.as_ref().to_vec()
        }
        Algorithm::ES256 => sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "EC key generation failed")?
            .as_ref()
            .to_vec(),
        Algorithm::ES384 => sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P384_SHA384_FIXED_SIGNING, &rng)
            .map_err(|_| "EC key generation failed")?
            .as_ref()
            .to_vec(),
        Algorithm::EdDSA => sig::Ed25519KeyPair::generate_pkcs8v1(&rng)
            .map_err(|_| "Ed25519 key generation failed")?
            .as_ref()
            .to_vec(),
        other => return Err(format!("cannot generate a key for {}", alg_name(other))),
    };
    Ok(pem::encode(&pem::Pem::new("PRIVATE KEY", der)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(alg: Algorithm) {
        let pem = generate_pem(alg).unwrap();
        let key = SigningKey::from_pem("k1", alg, pem.as_bytes()).unwrap();
        let token = key.sign(br#"{"a":1}"#).unwrap();
        let (input, sig_b64) = token.rsplit_once('.').unwrap();
        let sig = B64.decode(sig_b64).unwrap();
        assert!(key.verify(input.as_bytes(), &sig));
        let mut bad = input.as_bytes().to_vec();
        bad[0] ^= 1;
        assert!(!key.verify(&bad, &sig));
        // An independent library accepts it through the published JWK.
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.jwk.clone()).unwrap();
        let dk = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
        let mut v = jsonwebtoken::Validation::new(alg);
        v.required_spec_claims.clear();
        v.validate_exp = false;
        let data = jsonwebtoken::decode::<Value>(&token, &dk, &v).unwrap();
        assert_eq!(data.claims["a"], 1);
        assert_eq!(data.header.kid.as_deref(), Some("k1"));
    }

    #[test]
    fn rs256_es256_eddsa_sign_and_verify_through_jwk() {
        roundtrip(Algorithm::RS256);
        roundtrip(Algorithm::ES256);
        roundtrip(Algorithm::EdDSA);
    }

    #[test]
    fn key_of_the_wrong_type_for_alg_is_refused() {
        let ec = generate_pem(Algorithm::ES256).unwrap();
        let err = SigningKey::from_pem("k", Algorithm::RS256, ec.as_bytes()).unwrap_err();
        assert!(err.contains("RSA"), "{err}");
        let rsa = generate_pem(Algorithm::RS256).unwrap();
        assert!(SigningKey::from_pem("k", Algorithm::ES256, rsa.as_bytes()).is_err());
        assert!(SigningKey::from_pem("k", Algorithm::EdDSA, rsa.as_bytes()).is_err());
        let p384 = generate_pem(Algorithm::ES384).unwrap();
        assert!(SigningKey::from_pem("k", Algorithm::ES256, p384.as_bytes()).is_err());
    }
}
