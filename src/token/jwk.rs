//! JWK Sets published by other issuers: which of their keys are trusted, and for which one
//! algorithm each (RFC 7517, RFC 7518 §6, RFC 8037).

use super::keys::{parse_alg, VerifyKey};
use super::KeySet;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use jsonwebtoken::Algorithm;
use serde_json::Value;
use std::sync::Arc;

/// Keys read from one JWKS at most; a document with more is cut there, with a warning.
pub const MAX_KEYS: usize = 100;

/// A JWKS as trusted: its usable keys, and a line for each key that was skipped and why.
#[derive(Debug, Default)]
pub struct Parsed {
    pub keys: KeySet,
    pub skipped: Vec<String>,
}

/// Every asymmetric signature algorithm tollgate verifies.
pub const ASYMMETRIC: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Parses a JWKS document. Keys not meant for signatures (`use` other than `sig`), symmetric
/// keys, keys of an algorithm outside `allowed` and malformed keys are skipped; the rest are
/// kept. Only a document that is not a JWKS at all is an error.
pub fn parse_jwks(body: &[u8], allowed: &[Algorithm]) -> Result<Parsed, String> {
    let doc: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let list = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("not a JWKS document: no \"keys\" array")?;
    let mut out = Parsed::default();
    for (i, jwk) in list.iter().enumerate() {
        if out.keys.len() >= MAX_KEYS {
            out.skipped
                .push(format!("keys[{i}..]: more than {MAX_KEYS} keys; the rest are ignored"));
            break;
        }
        let kid = jwk.get("kid").and_then(Value::as_str).unwrap_or("");
        match key(jwk, allowed) {
            Ok(None) => {}
            Ok(Some(k)) if out.keys.get(kid).is_some() => {
                drop(k);
                out.skipped
                    .push(format!("keys[{i}] (kid {kid:?}): kid used twice; the first is kept"));
            }
            Ok(Some(k)) => out.keys.insert(Arc::new(k)),
            Err(why) => out.skipped.push(format!("keys[{i}] (kid {kid:?}): {why}")),
        }
    }
    Ok(out)
}

/// One JWK as a verifier. `Ok(None)`: a key that is not for signature verification, skipped
/// without a word (an issuer's encryption keys are normal in its JWKS).
fn key(jwk: &Value, allowed: &[Algorithm]) -> Result<Option<VerifyKey>, String> {
    let text = |name: &str| jwk.get(name).and_then(Value::as_str);
    if text("use").is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    if let Some(ops) = jwk.get("key_ops").and_then(Value::as_array) {
        if !ops.iter().any(|o| o == "verify") {
            return Ok(None);
        }
    }
    let kid = text("kid").unwrap_or("");
    let kty = text("kty").ok_or("no kty")?;
    let bytes = |name: &str| -> Result<Vec<u8>, String> {
        let v = text(name).ok_or_else(|| format!("no {name:?}"))?;
        B64.decode(v.trim_end_matches('='))
            .map_err(|_| format!("{name:?} is not base64url"))
    };
    let (default_alg, public) = match kty {
        "RSA" => (Algorithm::RS256, rsa_public_der(&bytes("n")?, &bytes("e")?)),
        "EC" => {
            let (alg, len) = match text("crv") {
                Some("P-256") => (Algorithm::ES256, 32),
                Some("P-384") => (Algorithm::ES384, 48),
                other => return Err(format!("EC curve {other:?} is not P-256 or P-384")),
            };
            let (x, y) = (bytes("x")?, bytes("y")?);
            if x.len() != len || y.len() != len {
                return Err("EC coordinates of the wrong length".into());
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (alg, point)
        }
        "OKP" => {
            if text("crv") != Some("Ed25519") {
                return Err(format!("OKP curve {:?} is not Ed25519", text("crv")));
            }
            let x = bytes("x")?;
            if x.len() != 32 {
                return Err("Ed25519 key of the wrong length".into());
            }
            (Algorithm::EdDSA, x)
        }
        "oct" => return Err("symmetric keys are never trusted".into()),
        other => return Err(format!("key type {other:?} is not RSA, EC or OKP")),
    };
    let alg = match text("alg") {
        None => default_alg,
        Some(name) => {
            let alg = parse_alg(name).ok_or_else(|| format!("alg {name:?} is not a signature algorithm"))?;
            if !fits(alg, default_alg) {
                return Err(format!("alg {name:?} does not fit a {kty} key"));
            }
            alg
        }
    };
    if !allowed.contains(&alg) {
        return Err(format!("alg {} is not in algorithms", super::keys::alg_name(alg)));
    }
    VerifyKey::from_public(kid, alg, &public).map(Some)
}

/// Whether `alg` can be used with a key whose type's own algorithm is `of_type`.
fn fits(alg: Algorithm, of_type: Algorithm) -> bool {
    use Algorithm::*;
    match of_type {
        RS256 => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
        other => alg == other,
    }
}

/// DER `RSAPublicKey` (RFC 8017 §A.1.1): SEQUENCE { modulus INTEGER, publicExponent INTEGER }.
pub fn rsa_public_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    fn length(out: &mut Vec<u8>, len: usize) {
        match len {
            0..=127 => out.push(len as u8),
            128..=255 => out.extend_from_slice(&[0x81, len as u8]),
            _ => out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]),
        }
    }
    fn integer(out: &mut Vec<u8>, v: &[u8]) {
        let v = &v[v.iter().position(|&b| b != 0).unwrap_or(v.len())..];
        let pad = v.first().is_none_or(|&b| b & 0x80 != 0);
        out.push(0x02);
        length(out, v.len() + usize::from(pad));
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
    }
    let mut body = Vec::with_capacity(n.len() + e.len() + 12);
    integer(&mut body, n);
    integer(&mut body, e);
    let mut out = Vec::with_capacity(body.len() + 4);
    out.push(0x30);
    length(&mut out, body.len());
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::keys::{generate_pem, SigningKey};
    use serde_json::json;

    fn jwks_of(keys: &[&SigningKey]) -> Vec<u8> {
        json!({ "keys": keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
            .to_string()
            .into_bytes()
    }

    fn key_for(alg: Algorithm, kid: &str) -> SigningKey {
        SigningKey::from_pem(kid, alg, generate_pem(alg).unwrap().as_bytes()).unwrap()
    }

    #[test]
    fn published_keys_verify_what_their_private_halves_signed() {
        let keys = [
            key_for(Algorithm::RS256, "r"),
            key_for(Algorithm::ES256, "e"),
            key_for(Algorithm::ES384, "e384"),
            key_for(Algorithm::EdDSA, "d"),
        ];
        let parsed = parse_jwks(&jwks_of(&keys.iter().collect::<Vec<_>>()), &ASYMMETRIC).unwrap();
        assert!(parsed.skipped.is_empty(), "{:?}", parsed.skipped);
        for k in &keys {
            let token = k.sign(b"{}").unwrap();
            let (input, sig) = token.rsplit_once('.').unwrap();
            let sig = B64.decode(sig).unwrap();
            let public = parsed.keys.get(&k.kid).expect("published");
            assert_eq!(public.alg, k.alg);
            assert!(public.verify(input.as_bytes(), &sig), "{}", k.kid);
            assert_eq!(public.fingerprint, k.public.fingerprint, "same key, same fingerprint");
        }
    }

    #[test]
    fn the_rsa_der_is_the_one_aws_lc_produces() {
        let k = key_for(Algorithm::RS256, "r");
        let n = B64.decode(k.jwk["n"].as_str().unwrap()).unwrap();
        let e = B64.decode(k.jwk["e"].as_str().unwrap()).unwrap();
        let from_jwk = VerifyKey::from_public("r", Algorithm::RS256, &rsa_public_der(&n, &e)).unwrap();
        assert_eq!(from_jwk.fingerprint, k.public.fingerprint);
    }

    #[test]
    fn only_signature_keys_of_allowed_asymmetric_algorithms_are_kept() {
        let rsa = key_for(Algorithm::RS256, "rsa");
        let ec = key_for(Algorithm::ES256, "ec");
        let mut enc = rsa.jwk.clone();
        enc["kid"] = json!("enc");
        enc["use"] = json!("enc");
        enc["alg"] = json!("RSA-OAEP");
        let mut wrong_alg = ec.jwk.clone();
        wrong_alg["kid"] = json!("wrong");
        wrong_alg["alg"] = json!("RS256");
        let mut no_alg = rsa.jwk.clone();
        no_alg["kid"] = json!("no-alg");
        no_alg.as_object_mut().unwrap().remove("alg");
        let doc = json!({ "keys": [
            rsa.jwk, ec.jwk, enc, wrong_alg, no_alg,
            { "kty": "oct", "kid": "hmac", "k": "c2VjcmV0" },
            { "kty": "RSA", "kid": "junk", "n": "!!", "e": "AQAB" },
            { "kty": "EC", "kid": "p521", "crv": "P-521", "x": "AA", "y": "AA" },
            { "kid": "no-kty" },
            "not an object",
        ]});
        let parsed = parse_jwks(doc.to_string().as_bytes(), &[Algorithm::RS256]).unwrap();
        let mut kept: Vec<&str> = parsed.keys.iter().map(|k| k.kid.as_str()).collect();
        kept.sort();
        assert_eq!(kept, ["no-alg", "rsa"], "skipped: {:?}", parsed.skipped);
        assert_eq!(parsed.keys.get("no-alg").unwrap().alg, Algorithm::RS256);
        let skipped = parsed.skipped.join("\n");
        for why in [
            "not in algorithms",
            "does not fit",
            "never trusted",
            "base64url",
            "P-521",
            "no kty",
        ] {
            assert!(skipped.contains(why), "{why}: {skipped}");
        }
        assert!(
            !skipped.contains("\"enc\""),
            "encryption keys are skipped quietly: {skipped}"
        );
    }

    #[test]
    fn documents_that_are_not_a_jwks_are_errors() {
        for body in [&b"<html>"[..], b"{}", b"{\"keys\": 3}", b"[]"] {
            assert!(
                parse_jwks(body, &ASYMMETRIC).is_err(),
                "{:?}",
                String::from_utf8_lossy(body)
            );
        }
        assert!(parse_jwks(b"{\"keys\": []}", &ASYMMETRIC).unwrap().keys.is_empty());
    }
}
