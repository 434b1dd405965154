//! Bearer tokens: `guard::bearer::from_header` on arbitrary header values and
//! `token::verify` against the demo realm of the repo's `proxy.toml`.
//!
//! Input layout: byte 0 picks the mode, bytes 1..9 are `now` (u64 LE), the rest is the payload.
//!
//! * mode 0: the payload is an `Authorization` value for `from_header`; a token it extracts is
//!   then verified.
//! * mode 1: the payload (lossy UTF-8) is a token for `verify`.
//! * mode 2: structured: the payload is `header JSON \0 claims JSON \0 signature bytes`, each
//!   base64url-encoded into a compact JWS, so the fuzzer gets past the base64 stage (bit 4 of
//!   byte 0: use the realm key's own header instead of the fuzzer's, so the signature check is
//!   reached).
//! * mode 3: the payload is claims JSON signed with the realm's real key, so the claim checks
//!   after the signature are fuzzed too (this is the only mode where `Ok` is possible).
//!
//! The fuzzer cannot know the private key, so for modes 0-2 `verify` must never return `Ok`.
#![no_main]

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use libfuzzer_sys::fuzz_target;
use std::sync::{Arc, OnceLock};
use tollgate::config::{LoadOptions, Realm};
use tollgate::guard::bearer::{self, MAX_TOKEN};
use tollgate::token::Expect;

fn realm() -> &'static Arc<Realm> {
    static REALM: OnceLock<Arc<Realm>> = OnceLock::new();
    REALM.get_or_init(|| {
        let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../proxy.toml"));
        let snap = tollgate::config::load(path, LoadOptions::default()).expect("proxy.toml loads");
        snap.realm("demo").expect("proxy.toml has realm demo").clone()
    })
}

/// The encoded header the realm's key itself writes (alg and kid right).
fn real_header() -> &'static str {
    static HEADER: OnceLock<String> = OnceLock::new();
    HEADER.get_or_init(|| {
        let token = realm().signer().expect("a local realm").sign(b"{}").expect("signing works");
        token.split('.').next().unwrap().to_string()
    })
}

fn must_fail(realm: &Realm, token: &str, now: u64, expect: Expect) {
    if let Ok(id) = tollgate::issuer::verify_own(realm, token, now, expect) {
        panic!("a token the fuzzer made was accepted: {token:?} -> {id:?}");
    }
}

fn expect_of(mode: u8) -> Expect {
    match (mode >> 5) & 3 {
        0 | 3 => Expect::Access,
        1 => Expect::Refresh,
        _ => Expect::Either,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let mut now_bytes = [0u8; 8];
    let n = rest.len().min(8);
    now_bytes[..n].copy_from_slice(&rest[..n]);
    let now = u64::from_le_bytes(now_bytes);
    let payload = &rest[n..];
    let realm = realm();

    match mode & 3 {
        0 => match bearer::from_header(Some(payload)) {
            None => {}
            Some(Err(reason)) => assert!(!reason.description().is_empty()),
            Some(Ok(token)) => {
                assert!(!token.is_empty() && token.len() <= MAX_TOKEN);
                assert!(token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b)));
                // The token is a piece of the header value, after the scheme and its space.
                let sp = payload
                    .iter()
                    .position(|&b| b == b' ')
                    .expect("a token follows a space");
                let after = &payload[sp + 1..];
                assert!(
                    after.windows(token.len()).any(|w| w == token.as_bytes()),
                    "token {token:?} is not after the scheme"
                );
                must_fail(realm, token, now, expect_of(mode));
            }
        },
        1 => must_fail(realm, &String::from_utf8_lossy(payload), now, expect_of(mode)),
        2 => {
            let mut parts = payload.splitn(3, |&b| b == 0);
            let header = parts.next().unwrap_or_default();
            let claims = parts.next().unwrap_or_default();
            let signature = parts.next().unwrap_or_default();
            let h64 = if mode & 0x10 != 0 {
                real_header().to_string()
            } else {
                B64.encode(header)
            };
            let token = format!("{h64}.{}.{}", B64.encode(claims), B64.encode(signature));
            must_fail(realm, &token, now, expect_of(mode));
        }
        _ => {
            let expect = expect_of(mode);
            let token = realm.signer().expect("a local realm").sign(payload).expect("signing works");
            match tollgate::issuer::verify_own(realm, &token, now, expect) {
                Err(reason) => assert!(!reason.description().is_empty()),
                Ok(id) => {
                    let leeway = realm.leeway.as_secs();
                    assert_eq!(id.realm, realm.name);
                    match expect {
                        Expect::Access => assert_eq!(id.typ, "Bearer"),
                        Expect::Refresh => assert_eq!(id.typ, "Refresh"),
                        Expect::Either => assert!(id.typ == "Bearer" || id.typ == "Refresh"),
                    }
                    assert!(
                        now <= id.exp.saturating_add(leeway),
                        "expired token accepted: {id:?} at {now}"
                    );
                    assert!(
                        id.iat <= now.saturating_add(leeway),
                        "future iat accepted: {id:?} at {now}"
                    );
                    if let Some(nbf) = id.nbf {
                        assert!(
                            nbf <= now.saturating_add(leeway),
                            "future nbf accepted: {id:?} at {now}"
                        );
                    }
                    assert!(
                        id.roles.windows(2).all(|w| w[0] < w[1]),
                        "roles not sorted and unique: {id:?}"
                    );
                    assert_eq!(id.roles_header, id.roles.join(","));
                }
            }
            // The same claims with any other signature are refused.
            let (signed, sig) = token.rsplit_once('.').unwrap();
            let mut bytes = B64.decode(sig).unwrap();
            let i = payload.len() % bytes.len();
            bytes[i] ^= 1 << (mode & 7);
            must_fail(realm, &format!("{signed}.{}", B64.encode(&bytes)), now, expect);
        }
    }
});
