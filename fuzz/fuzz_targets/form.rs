//! `issuer::form::parse` and `issuer::form::decode` on arbitrary bytes: never panic, and what
//! they accept is consistent with what they return.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::issuer::form::{self, FormError, MAX_PARAMS};

fuzz_target!(|data: &[u8]| {
    // decode: a successful decode is valid UTF-8 (it is a String) and never longer than the input
    // (every escape is three bytes for one).
    if let Ok(s) = form::decode(data) {
        assert!(s.len() <= data.len());
        // Without '%' or '+', decoding is the identity.
        if !data.contains(&b'%') && !data.contains(&b'+') {
            assert_eq!(s.as_bytes(), data);
        }
    }

    match form::parse(data) {
        Ok(f) => {
            // Every non-empty part of an accepted body is a name (with a value) the form knows,
            // unless its value is empty; and no two parts decode to the same name.
            let mut names = Vec::new();
            for part in data.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
                let (k, v) = match part.iter().position(|&b| b == b'=') {
                    Some(i) => (&part[..i], &part[i + 1..]),
                    None => (part, &b""[..]),
                };
                let k = form::decode(k).expect("an accepted body has decodable names");
                let v = form::decode(v).expect("an accepted body has decodable values");
                assert!(!names.contains(&k), "repeated name {k:?} was accepted");
                if v.is_empty() {
                    assert_eq!(f.get(&k), None, "an empty value counts as absent");
                } else {
                    assert_eq!(f.get(&k), Some(v.as_str()));
                }
                names.push(k);
            }
            assert!(names.len() <= MAX_PARAMS);
        }
        Err(FormError::Repeated(name)) => {
            // The name reported really is repeated in the body.
            let count = data
                .split(|&b| b == b'&')
                .filter(|p| !p.is_empty())
                .filter(|part| {
                    let k = match part.iter().position(|&b| b == b'=') {
                        Some(i) => &part[..i],
                        None => part,
                    };
                    form::decode(k).as_deref() == Ok(name.as_str())
                })
                .count();
            assert!(count >= 2, "{name:?} reported as repeated but appears {count} time(s)");
        }
        Err(e) => {
            let _ = e.describe();
        }
    }
});
