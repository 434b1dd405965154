//! Property tests of the input parsers: the path normaliser (`path`) and the form parser
//! (`issuer::form`). The fuzz targets under `fuzz/` check the same invariants on raw bytes.

use proptest::prelude::*;
use std::collections::BTreeMap;
use tollgate::issuer::form::{self, FormError};
use tollgate::path::normalise;

// ---------------------------------------------------------------------------------------------
// Path normaliser
// ---------------------------------------------------------------------------------------------

/// Pieces of hostile-looking paths: separators, dots raw and encoded (once and twice), escapes
/// of reserved and non-ASCII bytes, plain letters and hex digits.
const PATH_PIECES: &[&str] = &[
    "/", "/", "/", ".", ".", "..", "%2e", "%2E", "%252e", "%252E", "%25", "%41", "%61", "%7e", "%3f", "%3B", "%20",
    "%c3%a9", ";", "a", "b", "x", "admin", "public", "0", "9", "f", "F", "e", "2", "5", "\u{e9}", "~", "-", "_",
];

/// Pieces that make a path refused: escapes of '/', '\' and NUL, raw '\', stray '%', controls.
const BAD_PIECES: &[&str] = &["%", "%2f", "%2F", "%5c", "%5C", "%00", "\\", "\t", "%g"];

fn path_piece() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        12 => prop::sample::select(PATH_PIECES),
        1 => prop::sample::select(BAD_PIECES),
    ]
}

/// A path-ish string, usually (not always) absolute.
fn pathish() -> impl Strategy<Value = String> {
    (prop::bool::weighted(0.9), prop::collection::vec(path_piece(), 0..20)).prop_map(|(absolute, pieces)| {
        let body = pieces.concat();
        if absolute {
            format!("/{body}")
        } else {
            body
        }
    })
}

/// Pieces for climbing out of a prefix and into another: dot segments raw, encoded once and
/// twice, and the other prefix spelled plainly or encoded.
fn climbing_piece() -> impl Strategy<Value = &'static str> {
    const CLIMB: &[&str] = &[
        "/..",
        "/../",
        "/%2e%2e",
        "/%2E%2E/",
        "/.%2e",
        "/%252e%252e",
        "/admin",
        "/%61dmin",
        "/%2561dmin",
        "/admin%2f",
        "/ADMIN",
        "\\..\\admin",
        "/..;",
    ];
    prop_oneof![2 => path_piece(), 1 => prop::sample::select(CLIMB)]
}

fn plain_segment() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{1,8}"
}

/// Everything an accepted path must satisfy.
fn check_invariants(input: &str, out: &str) -> Result<(), TestCaseError> {
    prop_assert!(out.starts_with('/'), "{:?} -> {:?}: not absolute", input, out);
    prop_assert!(!out.contains("//"), "{:?} -> {:?}: empty segment", input, out);
    prop_assert!(
        out.split('/').all(|s| s != "." && s != ".."),
        "{:?} -> {:?}: dot segment",
        input,
        out
    );
    let upper = out.to_ascii_uppercase();
    for bad in ["%2F", "%5C", "%00"] {
        prop_assert!(!upper.contains(bad), "{:?} -> {:?}: holds {}", input, out, bad);
    }
    prop_assert!(!out.contains('\\'), "{:?} -> {:?}: raw backslash", input, out);
    prop_assert!(out.is_ascii(), "{:?} -> {:?}: not ASCII", input, out);
    prop_assert!(
        !out.bytes().any(|b| b.is_ascii_control()),
        "{:?} -> {:?}: control character",
        input,
        out
    );
    prop_assert_eq!(
        normalise(out),
        Ok(out.to_string()),
        "{:?} -> {:?}: not idempotent",
        input,
        out
    );
    Ok(())
}

/// Is `path` the route prefix `prefix` or below it (segment boundary, as routes match)?
fn under(path: &str, prefix: &str) -> bool {
    path.strip_prefix(prefix)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// A lax upstream: percent-decodes every escape once, takes '\' for '/', then removes dot
/// segments (RFC 3986 §5.2.4) and collapses empty segments. Escapes of bytes that are not UTF-8
/// stay as they are.
fn lax_upstream(path: &str) -> String {
    let b = path.as_bytes();
    let mut decoded = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
            decoded.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
            continue;
        }
        decoded.push(b[i]);
        i += 1;
    }
    let decoded = String::from_utf8_lossy(&decoded).replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

proptest! {
    /// Whatever the input, an accepted path meets every invariant and is its own normal form.
    #[test]
    fn normalised_paths_meet_the_invariants(input in pathish()) {
        if let Ok(out) = normalise(&input) {
            check_invariants(&input, &out)?;
        }
    }

    /// Same, on arbitrary Unicode strings behind a '/'.
    #[test]
    fn normalised_arbitrary_strings_meet_the_invariants(s in any::<String>()) {
        let input = format!("/{s}");
        if let Ok(out) = normalise(&input) {
            check_invariants(&input, &out)?;
        }
    }

    /// Long paths of non-ASCII text: escaping grows them up to ninefold (U+FFFD is
    /// `%EF%BF%BD`), and an accepted one must still fit the limit and be its own normal form.
    #[test]
    fn long_escaped_paths_meet_the_invariants(
        s in "[a/\u{e9}\u{20ac}\u{1f600}\u{fffd}]{600,1600}",
    ) {
        let input = format!("/{s}");
        if let Ok(out) = normalise(&input) {
            check_invariants(&input, &out)?;
            prop_assert!(out.len() <= tollgate::path::MAX_PATH);
        }
    }

    /// Plain segments separated by runs of '/' normalise to themselves with the runs collapsed.
    #[test]
    fn plain_segments_only_lose_duplicate_slashes(
        parts in prop::collection::vec((1usize..4, plain_segment()), 0..8),
        trailing in 0usize..3,
    ) {
        let mut input = String::new();
        for (slashes, seg) in &parts {
            input.push_str(&"/".repeat(*slashes));
            input.push_str(seg);
        }
        input.push_str(&"/".repeat(trailing));
        if input.is_empty() {
            input.push('/');
        }
        let segs: Vec<&str> = parts.iter().map(|(_, s)| s.as_str()).collect();
        let mut expected = format!("/{}", segs.join("/"));
        if trailing > 0 && !segs.is_empty() {
            expected.push('/');
        }
        prop_assert_eq!(normalise(&input), Ok(expected));
    }

    /// Going down one plain segment and back up (`x/..`, raw or encoded) changes nothing:
    /// `P/x/../` normalises exactly as `P/` does, errors included.
    #[test]
    fn down_and_up_again_is_a_no_op(
        p in pathish(),
        x in plain_segment(),
        up in prop::sample::select(&["..", "../", "%2e%2e", "%2E%2E/", ".%2e/", "%2e./"][..]),
    ) {
        prop_assert_eq!(normalise(&format!("{p}/{x}/{up}")), normalise(&format!("{p}/")));
    }

    /// A request below "/public" that the guard does not route under "/admin" does not reach
    /// "/admin" at an upstream that decodes once more and resolves dots and backslashes itself:
    /// the guard and that upstream agree on which of the two prefixes the path is under.
    #[test]
    fn public_never_reaches_admin_upstream(
        suffix in prop::collection::vec(climbing_piece(), 0..16),
        lead in prop::sample::select(&["/public/", "/public", "//public/./", "/x/../public/"][..]),
    ) {
        let input = format!("{lead}{}", suffix.concat());
        if let Ok(out) = normalise(&input) {
            let upstream = lax_upstream(&out);
            for prefix in ["/admin", "/public"] {
                prop_assert_eq!(
                    under(&out, prefix),
                    under(&upstream, prefix),
                    "{:?} -> guard {:?}, upstream {:?} disagree on {}",
                    input,
                    out,
                    upstream,
                    prefix
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Form parser
// ---------------------------------------------------------------------------------------------

/// `application/x-www-form-urlencoded` as browsers write it: every byte but the unreserved ones
/// percent-encoded, space as '+'.
fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for &b in s.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            b' ' => out.push('+'),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn encode_pairs<'a>(pairs: impl IntoIterator<Item = (&'a String, &'a String)>) -> String {
    pairs
        .into_iter()
        .map(|(k, v)| format!("{}={}", urlencode(k), urlencode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Keys and values: mostly short and printable, sometimes any Unicode.
fn form_text() -> impl Strategy<Value = String> {
    prop_oneof![3 => "[a-z_ +%&=.~-]{0,8}", 1 => any::<String>()]
}

proptest! {
    /// Encoding distinct keys and parsing gives back every pair with a non-empty value; names
    /// with an empty value count as absent.
    #[test]
    fn encoded_forms_round_trip(map in prop::collection::btree_map(form_text(), form_text(), 0..20)) {
        let body = encode_pairs(&map);
        let parsed = form::parse(body.as_bytes());
        prop_assert!(parsed.is_ok(), "{:?} -> {:?}", body, parsed.as_ref().err());
        let parsed = parsed.unwrap();
        for (k, v) in &map {
            if v.is_empty() {
                prop_assert_eq!(parsed.get(k), None, "{:?}: empty value of {:?} is not absent", body, k);
            } else {
                prop_assert_eq!(parsed.get(k), Some(v.as_str()), "{:?}: {:?}", body, k);
            }
        }
    }

    /// A body with a repeated name (whatever the values, empty ones included) is refused and
    /// names it.
    #[test]
    fn repeated_names_are_refused(
        map in prop::collection::btree_map(form_text(), form_text(), 1..20),
        pick in any::<prop::sample::Index>(),
        at in any::<prop::sample::Index>(),
        value in form_text(),
    ) {
        let pairs: Vec<(&String, &String)> = map.iter().collect();
        let i = pick.index(pairs.len());
        let repeated = pairs[i].0.clone();
        // Insert the repeat anywhere after the first occurrence.
        let j = i + 1 + at.index(pairs.len() - i);
        let mut with_repeat = pairs.clone();
        with_repeat.insert(j, (&repeated, &value));
        let body = encode_pairs(with_repeat);
        prop_assert_eq!(form::parse(body.as_bytes()).err(), Some(FormError::Repeated(repeated)), "{:?}", body);
    }

    /// Arbitrary bytes never panic the parser or the decoder.
    #[test]
    fn parse_never_panics(body in any::<Vec<u8>>()) {
        let _ = form::parse(&body);
        let _ = form::decode(&body);
    }

    /// Form-shaped bytes (escapes, '+', '&', '=' and stray '%') never panic either.
    #[test]
    fn parse_never_panics_on_form_like_bytes(body in "([a-c=&+%]|%[0-9a-fA-F]{0,2}|%[89a-f][0-9a-f]){0,40}") {
        let _ = form::parse(body.as_bytes());
        let _ = form::decode(body.as_bytes());
    }
}

#[test]
fn lax_upstream_model() {
    assert_eq!(lax_upstream("/public/%2e%2e/admin"), "/admin");
    assert_eq!(lax_upstream("/public/%252e%252e/admin"), "/public/%2e%2e/admin");
    assert_eq!(lax_upstream("/a\\..\\b"), "/b");
    assert!(under("/admin", "/admin") && under("/admin/x", "/admin") && !under("/adminx", "/admin"));
    let mut m = BTreeMap::new();
    m.insert("a b".to_string(), "c&d=e".to_string());
    assert_eq!(encode_pairs(&m), "a+b=c%26d%3De");
}
