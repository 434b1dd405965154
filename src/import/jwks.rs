//! The public keys of a `client-jwt` (private_key_jwt) client as a JWKS document, from what the
//! export carries: `jwks.string`, or the `jwt.credential.certificate` (base64 DER X.509) or
//! `jwt.credential.public.key` (base64 SubjectPublicKeyInfo) attribute, whose `kid` is
//! `jwt.credential.kid` or else Keycloak's `KeyUtils.createKeyId`: base64url(SHA-256(SPKI DER)).

use super::export::{attr, attr_true, ClientRep};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
use serde_json::{json, Value};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// The client's JWKS document, or why the export does not hold its keys.
pub fn client_jwks(client: &ClientRep) -> Result<Vec<u8>, String> {
    let attrs = client.attributes.as_ref();
    let get = |k: &str| attr(attrs, k).filter(|v| !v.trim().is_empty());
    if attr_true(attrs, "use.jwks.url") {
        return Err(match get("jwks.url") {
            Some(url) => format!("its keys are fetched from jwks.url {url}, which the export does not hold: save that JWKS beside the config and set `jwks`"),
            None => "it uses a JWKS URL that the export does not name".into(),
        });
    }
    let alg = get("token.endpoint.auth.signing.alg");
    if attr_true(attrs, "use.jwks.string") {
        let text = get("jwks.string").ok_or("use.jwks.string is set but jwks.string is empty")?;
        return from_jwks_string(&text, alg.as_deref());
    }
    let (spki_der, x5c) = if let Some(cert) = get("jwt.credential.certificate") {
        let der = base64_body(&cert).ok_or("jwt.credential.certificate is not base64 DER")?;
        let (_, parsed) = x509_parser::parse_x509_certificate(&der)
            .map_err(|_| "jwt.credential.certificate is not an X.509 certificate")?;
        (parsed.public_key().raw.to_vec(), Some(STANDARD.encode(&der)))
    } else if let Some(key) = get("jwt.credential.public.key") {
        (
            base64_body(&key).ok_or("jwt.credential.public.key is not base64 DER")?,
            None,
        )
    } else {
        return Err("the export holds no key for it (no jwt.credential.certificate, public key or JWKS)".into());
    };
    let kid = get("jwt.credential.kid").unwrap_or_else(|| B64URL.encode(sha256(&spki_der)));
    let mut jwk = jwk_of_spki(&spki_der)?;
    jwk["kid"] = json!(kid);
    jwk["use"] = json!("sig");
    if let Some(alg) = alg {
        check_alg(&jwk, &alg)?;
        jwk["alg"] = json!(alg);
    }
    if let Some(cert) = x5c {
        jwk["x5c"] = json!([cert]);
    }
    Ok(render(vec![jwk]))
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

fn render(keys: Vec<Value>) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(&json!({ "keys": keys })).unwrap_or_default();
    out.push(b'\n');
    out
}

/// PEM with or without its armour lines, or bare base64 (how Keycloak stores both attributes).
fn base64_body(text: &str) -> Option<Vec<u8>> {
    let body: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("-----"))
        .flat_map(|l| l.chars())
        .filter(|c| !c.is_whitespace())
        .collect();
    STANDARD.decode(body).ok().filter(|b| !b.is_empty())
}

fn jwk_of_spki(der: &[u8]) -> Result<Value, String> {
    let (_, spki) = SubjectPublicKeyInfo::from_der(der).map_err(|_| "not a public key (SubjectPublicKeyInfo)")?;
    let oid = spki.algorithm.algorithm.to_id_string();
    if oid == "1.3.101.112" {
        return Ok(json!({ "kty": "OKP", "crv": "Ed25519", "x": B64URL.encode(&spki.subject_public_key.data) }));
    }
    match spki.parsed().map_err(|_| "an unreadable public key")? {
        PublicKey::RSA(k) => Ok(json!({
            "kty": "RSA",
            "n": B64URL.encode(unsigned(k.modulus)),
            "e": B64URL.encode(unsigned(k.exponent)),
        })),
        PublicKey::EC(point) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string())
                .unwrap_or_default();
            let (crv, len) = match curve.as_str() {
                "1.2.840.10045.3.1.7" => ("P-256", 32),
                "1.3.132.0.34" => ("P-384", 48),
                other => return Err(format!("an EC key on curve {other}, which tollgate does not verify")),
            };
            let data = point.data();
            if data.len() != 1 + 2 * len || data[0] != 4 {
                return Err("an EC key that is not an uncompressed point".into());
            }
            Ok(json!({
                "kty": "EC",
                "crv": crv,
                "x": B64URL.encode(&data[1..=len]),
                "y": B64URL.encode(&data[1 + len..]),
            }))
        }
        _ => Err(format!("a key of type {oid}, which tollgate does not verify")),
    }
}

/// DER integers carry a leading zero when their top bit is set; JWK wants the plain magnitude.
fn unsigned(b: &[u8]) -> &[u8] {
    let zeros = b.iter().take_while(|x| **x == 0).count();
    &b[zeros.min(b.len().saturating_sub(1))..]
}

/// Keycloak's `token.endpoint.auth.signing.alg` pins the algorithm; it must fit the key.
fn check_alg(jwk: &Value, alg: &str) -> Result<(), String> {
    let fits = match jwk["kty"].as_str() {
        Some("RSA") => alg.starts_with("RS") || alg.starts_with("PS"),
        Some("EC") => (alg == "ES256" && jwk["crv"] == "P-256") || (alg == "ES384" && jwk["crv"] == "P-384"),
        Some("OKP") => alg == "EdDSA" || alg == "Ed25519",
        _ => false,
    };
    match (fits, crate::token::keys::parse_alg(alg)) {
        (true, Some(_)) => Ok(()),
        (true, None) if alg == "Ed25519" => Ok(()),
        _ => Err(format!(
            "token.endpoint.auth.signing.alg {alg} does not fit its key, or tollgate does not verify it"
        )),
    }
}

/// An inline JWKS (`jwks.string`): its signing keys, each pinned to the client's algorithm
/// where one is set.
fn from_jwks_string(text: &str, alg: Option<&str>) -> Result<Vec<u8>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|_| "jwks.string is not JSON")?;
    let keys: Vec<Value> = doc["keys"]
        .as_array()
        .ok_or("jwks.string has no \"keys\"")?
        .iter()
        .filter(|k| k["use"].as_str().is_none_or(|u| u == "sig"))
        .filter(|k| matches!(k["kty"].as_str(), Some("RSA" | "EC" | "OKP")))
        .cloned()
        .collect();
    if keys.is_empty() {
        return Err("jwks.string holds no public signing key".into());
    }
    let mut out = Vec::with_capacity(keys.len());
    for mut k in keys {
        if let Some(alg) = alg {
            check_alg(&k, alg)?;
            if k.get("alg").is_none() {
                k["alg"] = json!(alg);
            }
        }
        out.push(k);
    }
    Ok(render(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::jwk::JwkSet;

    fn client(attrs: Value) -> ClientRep {
        serde_json::from_value(json!({ "clientId": "c", "attributes": attrs })).unwrap()
    }

    fn keys_of(bytes: &[u8]) -> JwkSet {
        let set: JwkSet = serde_json::from_slice(bytes).unwrap();
        for k in &set.keys {
            jsonwebtoken::DecodingKey::from_jwk(k).expect("a usable key");
        }
        set
    }

    #[test]
    fn a_certificate_becomes_a_jwk_with_keycloaks_kid() {
        use jsonwebtoken::Algorithm::{EdDSA, ES256, RS256};
        for alg in [RS256, ES256, EdDSA] {
            let key = rcgen::KeyPair::from_pem(&crate::token::keys::generate_pem(alg).unwrap()).unwrap();
            let cert = rcgen::CertificateParams::new(vec!["c".into()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            let b64 = STANDARD.encode(cert.der());
            let bytes = client_jwks(&client(json!({ "jwt.credential.certificate": b64 }))).unwrap();
            let set = keys_of(&bytes);
            let spki = key.public_key_der();
            let want = B64URL.encode(sha256(&spki));
            assert_eq!(set.keys[0].common.key_id.as_deref(), Some(want.as_str()));
            // The same key given as a bare public key yields the same JWK.
            let pk = client(json!({ "jwt.credential.public.key": STANDARD.encode(&spki), "jwt.credential.kid": "k1" }));
            let set2 = keys_of(&client_jwks(&pk).unwrap());
            assert_eq!(set2.keys[0].common.key_id.as_deref(), Some("k1"));
            assert_eq!(set2.keys[0].algorithm, set.keys[0].algorithm);
        }
    }

    #[test]
    fn the_signing_alg_pins_the_key_and_must_fit_it() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pem = key.public_key_pem();
        let ok = client(json!({ "jwt.credential.public.key": pem, "token.endpoint.auth.signing.alg": "ES256" }));
        let set = keys_of(&client_jwks(&ok).unwrap());
        assert_eq!(
            set.keys[0].common.key_algorithm,
            Some(jsonwebtoken::jwk::KeyAlgorithm::ES256)
        );
        let bad = client(json!({ "jwt.credential.public.key": pem, "token.endpoint.auth.signing.alg": "RS256" }));
        assert!(client_jwks(&bad).is_err());
    }

    #[test]
    fn keys_the_export_does_not_hold_are_named() {
        let url = client(json!({ "use.jwks.url": "true", "jwks.url": "https://app/jwks" }));
        assert!(client_jwks(&url).unwrap_err().contains("https://app/jwks"));
        assert!(client_jwks(&client(json!({}))).is_err());
        assert!(client_jwks(&client(json!({ "jwt.credential.certificate": "not base64!" }))).is_err());
        let inline = json!({ "keys": [
            { "kty": "oct", "k": "c2VjcmV0" },
            { "kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB" },
        ]});
        let s = client(json!({ "use.jwks.string": "true", "jwks.string": inline.to_string() }));
        assert!(client_jwks(&s).is_err(), "no public signing key in it");
    }
}
