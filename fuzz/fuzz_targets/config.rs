//! `config::load` on arbitrary TOML text: never panics (every problem is a `ConfigError`).
//!
//! `load` takes a path, so the input is written to one file in a per-process temp dir (reused
//! for every run). The repo's `certs/` is linked into that dir so the demo key paths of the
//! seeds resolve and the fuzzer reaches the checks after key loading.
//!
//! Inputs naming device or pseudo-file trees (`/dev`, `/proc`, `/sys`), or holding a TOML `\u`
//! escape that could spell one, are skipped: the config is trusted local input, and
//! `private_key = "/dev/zero"` would only make the harness read forever, which is not a bug of
//! the parser. Route upstreams are resolved by `load` (getaddrinfo); on a machine whose resolver
//! is slow to fail, expect low exec/s.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::OnceLock;
use tollgate::config::LoadOptions;

fn file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tollgate-fuzz-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let certs = concat!(env!("CARGO_MANIFEST_DIR"), "/../certs");
        let link = dir.join("certs");
        if !link.exists() {
            std::os::unix::fs::symlink(certs, &link).expect("certs link");
        }
        dir.join("proxy.toml")
    })
}

fuzz_target!(|data: &[u8]| {
    let lower = data.to_ascii_lowercase();
    for bad in [&b"/dev"[..], b"/proc", b"/sys", b"\\u"] {
        if lower.windows(bad.len()).any(|w| w == bad) {
            return;
        }
    }
    let path = file();
    std::fs::write(path, data).expect("write the config");
    match tollgate::config::load(path, LoadOptions::default()) {
        Ok(snap) => {
            // A loaded snapshot is usable: every route names a realm it has, prefixes are normal.
            for realm in snap.realms.values() {
                if let Some(signer) = realm.signer() {
                    assert!(tollgate::issuer::own_keys(realm).get(&signer.kid).is_some());
                }
            }
            if let Some(d) = &snap.default_realm {
                assert!(snap.realm(d).is_some());
            }
            assert_eq!(snap.hash.len(), 64);
        }
        Err(e) => {
            assert!(!e.0.is_empty(), "an error without a problem");
            let _ = e.to_string();
        }
    }
});
