//! Path normalisation before any route is matched (RFC 3986 §6.2.2 and §5.2.4).
//!
//! Unreserved characters are decoded, every other escape is kept (upper-cased) so the upstream
//! sees exactly the path that was authorised; `.`/`..` segments are resolved and `//` collapsed.
//! What could still mean something different to the upstream (an encoded `/`, `\`, `;` or NUL,
//! a raw `\`, a control character, a climb above the root) is refused rather than guessed at.
//!
//! Path parameters (`/admin;jsessionid=1`) are cut off every segment: Tomcat, Jetty and Spring
//! strip them before routing, so the route is matched on what those servers route on, and the
//! upstream is sent that same cut path, which every server reads one way.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    NotAbsolute,
    BadEscape,
    EncodedSeparator,
    EncodedSemicolon,
    Backslash,
    ControlCharacter,
    AboveRoot,
    DotParameters,
    TooLong,
}

impl PathError {
    pub fn describe(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "path must start with '/'",
            PathError::BadEscape => "malformed percent-encoding in path",
            PathError::EncodedSeparator => "path holds an encoded '/', '\\' or NUL",
            PathError::EncodedSemicolon => "path holds an encoded ';'",
            PathError::Backslash => "path holds a backslash",
            PathError::ControlCharacter => "path holds a control character",
            PathError::AboveRoot => "path climbs above the root",
            PathError::DotParameters => "path holds a dot segment with parameters (\"..;\")",
            PathError::TooLong => "path too long",
        }
    }
}

/// Longest path accepted, in bytes.
pub const MAX_PATH: usize = 8 * 1024;

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The common case: nothing to decode, no dot segment, no empty segment, no path parameter.
/// Such a path is already normal.
fn is_plain(raw: &[u8]) -> bool {
    let mut prev = 0u8;
    for &b in raw {
        let ok = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'/' | b'-'
                    | b'_'
                    | b'~'
                    | b'.'
                    | b'!'
                    | b'$'
                    | b'&'
                    | b'\''
                    | b'('
                    | b')'
                    | b'*'
                    | b'+'
                    | b','
                    | b'='
                    | b':'
                    | b'@'
            );
        if !ok || (b == b'/' && prev == b'/') || (b == b'.' && prev == b'/') {
            return false;
        }
        prev = b;
    }
    true
}

/// Normalise the path part of a request target (no query).
pub fn normalise(text: &str) -> Result<String, PathError> {
    let raw = text.as_bytes();
    if raw.len() > MAX_PATH {
        return Err(PathError::TooLong);
    }
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_plain(raw) {
        return Ok(text.to_owned());
    }
    let decoded = decode(raw)?;
    let path = resolve(&decoded)?;
    // Escaping can triple a byte: the normal form must fit the limit too, or it would not be
    // its own normal form (found by fuzz/fuzz_targets/path.rs).
    if path.len() > MAX_PATH {
        return Err(PathError::TooLong);
    }
    // Only ASCII was kept unescaped, so this cannot fail.
    String::from_utf8(path).map_err(|_| PathError::BadEscape)
}

/// Pass 1 of [`normalise`]: unreserved escapes decoded, every other escape upper-cased, bytes
/// outside ASCII escaped; escaped separators, backslashes and control characters refused.
fn decode(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut decoded = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        match b {
            b'%' => {
                let (Some(h), Some(l)) = (
                    raw.get(i + 1).and_then(|&x| hex(x)),
                    raw.get(i + 2).and_then(|&x| hex(x)),
                ) else {
                    return Err(PathError::BadEscape);
                };
                let v = h << 4 | l;
                match v {
                    b'/' | b'\\' | 0 => return Err(PathError::EncodedSeparator),
                    // Some decoders take it for a parameter separator, some for data.
                    b';' => return Err(PathError::EncodedSemicolon),
                    v if unreserved(v) => decoded.push(v),
                    v => {
                        const HEX: &[u8; 16] = b"0123456789ABCDEF";
                        decoded.extend_from_slice(&[b'%', HEX[(v >> 4) as usize], HEX[(v & 15) as usize]]);
                    }
                }
                i += 3;
                continue;
            }
            b'\\' => return Err(PathError::Backslash),
            0..=0x1f | 0x7f => return Err(PathError::ControlCharacter),
            b if b >= 0x80 => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                decoded.extend_from_slice(&[b'%', HEX[(b >> 4) as usize], HEX[(b & 15) as usize]]);
            }
            b => decoded.push(b),
        }
        i += 1;
    }
    Ok(decoded)
}

/// Pass 2 of [`normalise`]: path parameters cut, empty and `.` segments dropped, `..` popped;
/// a trailing slash kept.
fn resolve(decoded: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out: Vec<&[u8]> = Vec::new();
    let segments: Vec<&[u8]> = decoded[1..].split(|&b| b == b'/').collect();
    let last = segments.len() - 1;
    let mut trailing_slash = false;
    for (n, seg) in segments.iter().enumerate() {
        let mut seg: &[u8] = seg;
        if let Some(semi) = seg.iter().position(|&b| b == b';') {
            // `..;x` is a climb to servers that strip parameters and a name to the rest: a
            // path written that way is refused rather than resolved either way.
            if matches!(&seg[..semi], b"." | b"..") {
                return Err(PathError::DotParameters);
            }
            seg = &seg[..semi];
        }
        match seg {
            b"" | b"." => trailing_slash = n == last,
            b".." => {
                if out.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = n == last;
            }
            s => {
                out.push(s);
                trailing_slash = false;
            }
        }
    }
    let mut path = Vec::with_capacity(decoded.len());
    for s in &out {
        path.push(b'/');
        path.extend_from_slice(s);
    }
    if path.is_empty() || trailing_slash {
        path.push(b'/');
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(s: &str) -> Result<String, PathError> {
        normalise(s)
    }

    #[test]
    fn plain_paths_are_unchanged() {
        for p in ["/", "/api/orders", "/api/orders/", "/a/b.json", "/a/%20b", "/A/Case"] {
            assert_eq!(n(p).unwrap(), p);
        }
    }

    #[test]
    fn dots_and_slashes_resolve() {
        assert_eq!(n("/api/public/../orders").unwrap(), "/api/orders");
        assert_eq!(n("/api/./orders").unwrap(), "/api/orders");
        assert_eq!(n("//api///orders").unwrap(), "/api/orders");
        assert_eq!(n("/api/orders/.").unwrap(), "/api/orders/");
        assert_eq!(n("/api/orders/x/..").unwrap(), "/api/orders/");
        assert_eq!(n("/api/%2e%2e/admin").unwrap(), "/admin");
        assert_eq!(n("/api/%2E/x").unwrap(), "/api/x");
        assert_eq!(n("/%61pi").unwrap(), "/api");
    }

    #[test]
    fn tricks_are_refused() {
        assert_eq!(n("/.."), Err(PathError::AboveRoot));
        assert_eq!(n("/a/../../etc"), Err(PathError::AboveRoot));
        assert_eq!(n("/a%2fb"), Err(PathError::EncodedSeparator));
        assert_eq!(n("/a%2Fb"), Err(PathError::EncodedSeparator));
        assert_eq!(n("/a%5cb"), Err(PathError::EncodedSeparator));
        assert_eq!(n("/a%00b"), Err(PathError::EncodedSeparator));
        assert_eq!(n("/a\\b"), Err(PathError::Backslash));
        assert_eq!(n("/a%zz"), Err(PathError::BadEscape));
        assert_eq!(n("/a%2"), Err(PathError::BadEscape));
        assert_eq!(n("a/b"), Err(PathError::NotAbsolute));
        assert_eq!(n("/a\tb"), Err(PathError::ControlCharacter));
        assert_eq!(n("/public/..;/admin"), Err(PathError::DotParameters));
        assert_eq!(n("/public/.;x/admin"), Err(PathError::DotParameters));
        assert_eq!(n("/public/%2e%2e;/admin"), Err(PathError::DotParameters));
        assert_eq!(n("/a%3bb"), Err(PathError::EncodedSemicolon));
        assert_eq!(n("/a%3Bb"), Err(PathError::EncodedSemicolon));
    }

    #[test]
    fn path_parameters_are_cut_off_every_segment() {
        assert_eq!(n("/public/a..;b/x").unwrap(), "/public/a../x");
        assert_eq!(n("/api/orders/admin;x").unwrap(), "/api/orders/admin");
        assert_eq!(n("/api/orders/admin;").unwrap(), "/api/orders/admin");
        assert_eq!(n("/api/orders/admin;jsessionid=1").unwrap(), "/api/orders/admin");
        assert_eq!(n("/api/orders/admin;x/users/7").unwrap(), "/api/orders/admin/users/7");
        assert_eq!(n("/api;v=1/orders;a=b;c=d/admin").unwrap(), "/api/orders/admin");
        assert_eq!(
            n("/api/;x/orders").unwrap(),
            "/api/orders",
            "a segment of parameters alone is empty"
        );
        assert_eq!(n("/api/orders/;x").unwrap(), "/api/orders/");
        assert_eq!(n("/public;x/../admin").unwrap(), "/admin");
        assert_eq!(n("/api/or%64ers/admin;x%41").unwrap(), "/api/orders/admin");
        for p in ["/api/orders/admin;x", "/a;b/c;d", "/;"] {
            let once = n(p).unwrap();
            assert!(!once.contains(';'), "{p} -> {once}");
            assert_eq!(n(&once), Ok(once.clone()), "{p}: its own normal form");
        }
    }

    #[test]
    fn double_encoding_is_not_decoded_twice() {
        assert_eq!(n("/api/%252e%252e/admin").unwrap(), "/api/%252e%252e/admin");
        assert_eq!(n("/a%252fb").unwrap(), "/a%252fb");
    }

    #[test]
    fn escaping_cannot_grow_a_path_past_the_limit() {
        // 2 733 bytes of input, 8 197 once 'é' is escaped: accepting it would give a path that
        // does not normalise to itself (TooLong).
        let long = format!("/{}", "\u{e9}".repeat(1366));
        assert_eq!(n(&long), Err(PathError::TooLong));
        let fits = format!("/a{}", "\u{e9}".repeat(1365));
        let out = n(&fits).unwrap();
        assert_eq!(out.len(), MAX_PATH);
        assert_eq!(n(&out), Ok(out.clone()));
    }

    #[test]
    fn reserved_escapes_are_kept_upper_cased() {
        assert_eq!(n("/a%3fb").unwrap(), "/a%3Fb");
        assert_eq!(n("/caf\u{e9}").unwrap(), "/caf%C3%A9");
    }
}
