//! `path::normalise`: never panics, and every path it accepts is safe to route on and to
//! forward (the invariants the proxy relies on), and is its own normal form.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::path::normalise;

/// At most 120 characters of `s`, for assertion messages (a failing path can be 8 KiB).
fn short(s: &str) -> String {
    match s.char_indices().nth(120) {
        Some((i, _)) => format!("{:?}… ({} bytes)", &s[..i], s.len()),
        None => format!("{s:?}"),
    }
}

fn check(raw: &str) {
    let Ok(out) = normalise(raw) else { return };
    assert!(out.starts_with('/'), "{} -> {}: not absolute", short(raw), short(&out));
    assert!(!out.contains("//"), "{} -> {}: empty segment", short(raw), short(&out));
    for seg in out.split('/') {
        assert!(
            seg != "." && seg != "..",
            "{} -> {}: dot segment",
            short(raw),
            short(&out)
        );
    }
    let upper = out.to_ascii_uppercase();
    for bad in ["%2F", "%5C", "%00"] {
        assert!(!upper.contains(bad), "{} -> {}: holds {bad}", short(raw), short(&out));
    }
    assert!(!out.contains('\\'), "{} -> {}: raw backslash", short(raw), short(&out));
    assert!(out.is_ascii(), "{} -> {}: not ASCII", short(raw), short(&out));
    assert!(
        !out.bytes().any(|b| b.is_ascii_control()),
        "{} -> {}: control character",
        short(raw),
        short(&out)
    );
    assert_eq!(
        normalise(&out).as_deref(),
        Ok(out.as_str()),
        "{} -> {}: not idempotent",
        short(raw),
        short(&out)
    );
}

fuzz_target!(|data: &[u8]| {
    match std::str::from_utf8(data) {
        Ok(s) => check(s),
        Err(_) => check(&String::from_utf8_lossy(data)),
    }
});
