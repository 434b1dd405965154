//! Strict `application/x-www-form-urlencoded` parsing for the OAuth endpoints.
//!
//! RFC 6749 §3.2: a parameter may not appear twice; an empty value counts as absent. Malformed
//! percent-encoding and invalid UTF-8 are refused rather than guessed at.

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FormError {
    BadEncoding,
    BadUtf8,
    Repeated(String),
    TooManyParameters,
}

impl FormError {
    pub fn describe(&self) -> String {
        match self {
            FormError::BadEncoding => "malformed percent-encoding in the form body".into(),
            FormError::BadUtf8 => "form body is not valid UTF-8".into(),
            FormError::Repeated(name) => format!("parameter {name:?} is repeated"),
            FormError::TooManyParameters => "too many form parameters".into(),
        }
    }
}

pub const MAX_PARAMS: usize = 64;

#[derive(Debug, Default)]
pub struct Form {
    pairs: Vec<(String, String)>,
}

impl Form {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }
}

/// Decode one form-urlencoded component (`+` is a space).
pub fn decode(raw: &[u8]) -> Result<String, FormError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = raw.get(i + 1..i + 3).ok_or(FormError::BadEncoding)?;
                let s = std::str::from_utf8(hex).map_err(|_| FormError::BadEncoding)?;
                if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(FormError::BadEncoding);
                }
                out.push(u8::from_str_radix(s, 16).map_err(|_| FormError::BadEncoding)?);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| FormError::BadUtf8)
}

pub fn parse(body: &[u8]) -> Result<Form, FormError> {
    let mut form = Form::default();
    for part in body.split(|&b| b == b'&') {
        if part.is_empty() {
            continue;
        }
        let (k, v) = match part.iter().position(|&b| b == b'=') {
            Some(i) => (&part[..i], &part[i + 1..]),
            None => (part, &b""[..]),
        };
        let k = decode(k)?;
        let v = decode(v)?;
        if form.pairs.iter().any(|(name, _)| *name == k) {
            return Err(FormError::Repeated(k));
        }
        if form.pairs.len() >= MAX_PARAMS {
            return Err(FormError::TooManyParameters);
        }
        if !v.is_empty() {
            form.pairs.push((k, v));
        } else {
            // Remember the name so a later repeat is still caught, without a value.
            form.pairs.push((k, String::new()));
        }
    }
    form.pairs.retain(|(_, v)| !v.is_empty());
    Ok(form)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_decodes() {
        let f = parse(b"grant_type=client_credentials&scope=a+b%20c&x=").unwrap();
        assert_eq!(f.get("grant_type"), Some("client_credentials"));
        assert_eq!(f.get("scope"), Some("a b c"));
        assert_eq!(f.get("x"), None, "empty values count as absent");
    }

    #[test]
    fn refuses_repeats_bad_escapes_and_bad_utf8() {
        assert_eq!(parse(b"a=1&a=2").unwrap_err(), FormError::Repeated("a".into()));
        assert_eq!(parse(b"a=&a=2").unwrap_err(), FormError::Repeated("a".into()));
        assert_eq!(parse(b"a=%zz").unwrap_err(), FormError::BadEncoding);
        assert_eq!(parse(b"a=%4").unwrap_err(), FormError::BadEncoding);
        assert_eq!(parse(b"a=%+1").unwrap_err(), FormError::BadEncoding);
        assert_eq!(parse(b"a=%ff").unwrap_err(), FormError::BadUtf8);
        let many: Vec<String> = (0..=MAX_PARAMS).map(|i| format!("p{i}=1")).collect();
        assert_eq!(
            parse(many.join("&").as_bytes()).unwrap_err(),
            FormError::TooManyParameters
        );
    }
}
