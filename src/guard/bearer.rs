//! Bearer credentials as they arrive in `Authorization` (RFC 6750 §2.1).

use crate::token::TokenError;

/// Longest bearer token accepted, in bytes.
pub const MAX_TOKEN: usize = 8 * 1024;

/// Whether `b` may appear in RFC 6750's `b64token` (RFC 7235 `token68`): letters, digits and
/// `-._~+/=`. Written as comparisons rather than a table lookup so that [`is_token68`], which
/// runs over every byte of every bearer token, compiles to vector instructions.
#[inline(always)]
fn token68_byte(b: u8) -> bool {
    let letter = (b | 0x20).wrapping_sub(b'a') < 26;
    let digit = b.wrapping_sub(b'0') < 10;
    letter | digit | (b == b'-') | (b == b'.') | (b == b'_') | (b == b'~') | (b == b'+') | (b == b'/') | (b == b'=')
}

/// Every byte of `token` is a `token68` byte. No early exit, so the loop vectorises; a junk
/// token costs the same as a good one of its length.
fn is_token68(token: &[u8]) -> bool {
    token.iter().fold(true, |ok, &b| ok & token68_byte(b))
}

/// Extract the credentials from an `Authorization` header value. `None`: no bearer credentials
/// at all. `Some(Err)`: bearer credentials that cannot be a token. Their alphabet is checked by
/// [`token_text`], needed only for a token the cache does not hold (it holds verified ones).
pub fn from_header(value: Option<&[u8]>) -> Option<Result<&[u8], TokenError>> {
    let value = value?;
    let (scheme, rest) = match value.iter().position(|&b| b == b' ') {
        Some(i) => (&value[..i], &value[i + 1..]),
        None => (value, &b""[..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return None;
    }
    let token = rest.trim_ascii();
    if token.is_empty() {
        return Some(Err(TokenError::Empty));
    }
    if token.len() > MAX_TOKEN {
        return Some(Err(TokenError::TooLarge));
    }
    Some(Ok(token))
}

/// Bearer credentials as a token's text: `token68` bytes only (RFC 6750 §2.1).
pub fn token_text(credentials: &[u8]) -> Result<&str, TokenError> {
    if !is_token68(credentials) {
        return Err(TokenError::Malformed);
    }
    // Checked to be ASCII above.
    std::str::from_utf8(credentials).map_err(|_| TokenError::Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token68_test_is_rfc_7235s_alphabet_for_every_byte() {
        for b in 0..=255u8 {
            let spec = b.is_ascii_alphanumeric() || b"-._~+/=".contains(&b);
            assert_eq!(token68_byte(b), spec, "byte {b:#04x}");
            assert_eq!(is_token68(&[b'a', b, b'z']), spec, "byte {b:#04x} inside a token");
        }
        assert!(is_token68(b""));
    }

    #[test]
    fn header_forms() {
        let token = |h: &'static [u8]| from_header(Some(h)).map(|r| r.and_then(token_text));
        assert!(from_header(None).is_none());
        assert!(from_header(Some(b"Basic abc")).is_none());
        assert_eq!(token(b"Bearer abc.def.ghi"), Some(Ok("abc.def.ghi")));
        assert_eq!(token(b"bearer  abc"), Some(Ok("abc")));
        assert_eq!(token(b"Bearer"), Some(Err(TokenError::Empty)));
        assert_eq!(token(b"Bearer a\"b"), Some(Err(TokenError::Malformed)));
        assert_eq!(from_header(Some(b"Bearer a\"b")), Some(Ok(&b"a\"b"[..])));
        assert_eq!(token_text(&[b'a', 0xc3, 0xa9]), Err(TokenError::Malformed));
        let big = format!("Bearer {}", "a".repeat(MAX_TOKEN + 1));
        assert_eq!(from_header(Some(big.as_bytes())), Some(Err(TokenError::TooLarge)));
    }
}
