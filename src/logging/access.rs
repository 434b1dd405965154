//! The access line, rendered byte for byte as tracing's text or JSON formatter renders the same
//! event (a test holds the two side by side), at a fraction of the cost: tracing formats every
//! field through `fmt::Write` and its styling types, and the timestamp's date anew for every
//! line (docs/performance-decisions.md).

use super::{append, ACCESS_FORM, ACCESS_TARGET, BY_TRACING, JSON};
use std::cell::RefCell;
use std::io::Write;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

/// The access line of one request.
pub struct Access<'a> {
    pub method: &'a str,
    /// The normalised path.
    pub path: &'a str,
    /// The matched route's prefix, or "".
    pub route: &'a str,
    /// The status sent, or 0 when none was.
    pub status: u16,
    pub client_id: &'a str,
    pub outcome: &'a str,
    pub latency_us: u64,
}

impl Access<'_> {
    /// Logs the line if `RUST_LOG` lets `tollgate::access` through at `info`.
    pub fn log(&self) {
        if !tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO) {
            return;
        }
        let form = ACCESS_FORM.load(Ordering::Relaxed);
        if form == BY_TRACING {
            self.trace();
            return;
        }
        thread_local! {
            static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        LINE.with_borrow_mut(|line| {
            line.clear();
            if form == JSON {
                self.json(SystemTime::now(), line);
            } else {
                self.text(SystemTime::now(), line);
            }
            append(line);
        });
    }

    /// The event as tracing's formatters take it.
    fn trace(&self) {
        tracing::info!(
            target: ACCESS_TARGET,
            method = %self.method,
            path = %self.path,
            route = self.route,
            status = self.status,
            client_id = self.client_id,
            outcome = self.outcome,
            latency_us = self.latency_us,
        );
    }

    /// The fields in the order tracing records them, each as its formatters show it.
    fn fields(&self) -> [(&'static str, Field<'_>); 7] {
        [
            ("method", Field::Shown(self.method)),
            ("path", Field::Shown(self.path)),
            ("route", Field::Quoted(self.route)),
            ("status", Field::Number(u64::from(self.status))),
            ("client_id", Field::Quoted(self.client_id)),
            ("outcome", Field::Quoted(self.outcome)),
            ("latency_us", Field::Number(self.latency_us)),
        ]
    }

    /// tracing's full text format without colours: `<time>  INFO <target>: name=value ...`.
    fn text(&self, now: SystemTime, out: &mut Vec<u8>) {
        timestamp(now, out);
        out.extend_from_slice(b"  INFO tollgate::access:");
        for (name, value) in self.fields() {
            out.push(b' ');
            out.extend_from_slice(name.as_bytes());
            out.push(b'=');
            match value {
                Field::Shown(s) => out.extend_from_slice(s.as_bytes()),
                Field::Quoted(s) => debug_str(s, out),
                Field::Number(n) => decimal(n, out),
            }
        }
        out.push(b'\n');
    }

    /// tracing's JSON format with the event's fields flattened: timestamp, level, the fields in
    /// order, target.
    fn json(&self, now: SystemTime, out: &mut Vec<u8>) {
        out.extend_from_slice(b"{\"timestamp\":\"");
        timestamp(now, out);
        out.extend_from_slice(b"\",\"level\":\"INFO\"");
        for (name, value) in self.fields() {
            out.extend_from_slice(b",\"");
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(b"\":");
            match value {
                Field::Shown(s) | Field::Quoted(s) => json_str(s, out),
                Field::Number(n) => decimal(n, out),
            }
        }
        out.extend_from_slice(b",\"target\":\"tollgate::access\"}\n");
    }
}

/// How tracing's formatters show a field: `%` (Display) fields as they are, other strings in
/// `Debug` quotes (in JSON both are JSON strings), numbers in decimal.
enum Field<'a> {
    Shown(&'a str),
    Quoted(&'a str),
    Number(u64),
}

/// `s` as `{:?}` writes it. Printable ASCII other than `"` and `\` stands for itself, which
/// covers routes, client ids and outcomes as configured; anything else goes through `Debug`.
fn debug_str(s: &str, out: &mut Vec<u8>) {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        let _ = write!(out, "{s:?}");
    }
}

/// `s` as a JSON string, escaped as serde_json escapes it (as tracing's JSON format does).
fn json_str(s: &str, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail, and a &str always serialises.
    let _ = serde_json::to_writer(&mut *out, s);
}

fn decimal(mut n: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// `now` in UTC as tracing writes it, `2026-12-01T20:20:31.466950Z`. The part up to the seconds
/// is made once a second per thread.
fn timestamp(now: SystemTime, out: &mut Vec<u8>) {
    thread_local! {
        static SECOND: RefCell<(u64, [u8; 20])> = const { RefCell::new((u64::MAX, [0; 20])) };
    }
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != secs {
            *cached = secs;
            *text = date_time(secs);
        }
        out.extend_from_slice(&text[..]);
    });
    let micros = since.subsec_micros();
    let mut frac = [b'0'; 6];
    let mut m = micros;
    for d in frac.iter_mut().rev() {
        *d = b'0' + (m % 10) as u8;
        m /= 10;
    }
    out.extend_from_slice(&frac);
    out.push(b'Z');
}

/// `YYYY-MM-DDTHH:MM:SS.` for `secs` after the Unix epoch (years up to 9999).
fn date_time(secs: u64) -> [u8; 20] {
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    let mut s = [0u8; 20];
    let mut put = |at: usize, v: u64, width: usize| {
        let mut v = v;
        for i in (at..at + width).rev() {
            s[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, y as u64, 4);
    put(5, m, 2);
    put(8, d, 2);
    put(11, rem / 3600, 2);
    put(14, rem / 60 % 60, 2);
    put(17, rem % 60, 2);
    s[4] = b'-';
    s[7] = b'-';
    s[10] = b'T';
    s[13] = b':';
    s[16] = b':';
    s[19] = b'.';
    s
}

/// The proleptic Gregorian date of day `z` after 1970-01-01 (Howard Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u64, u64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097) as u64;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe as i64 + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;
    use std::sync::Mutex;
    use std::time::Duration;
    use tracing_subscriber::fmt::writer::MakeWriter;

    /// Collects what a test subscriber writes.
    #[derive(Clone, Default)]
    struct Captured(std::sync::Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    /// What tracing's formatter writes for `line`, and what [`Access`] writes, each with its
    /// timestamp (`len` bytes from `at`) cut out and checked for shape.
    fn both(line: &Access, json: bool) -> (String, String) {
        let captured = Captured::default();
        let builder = tracing_subscriber::fmt().with_ansi(false).with_writer(captured.clone());
        if json {
            let sub = builder.json().flatten_event(true).finish();
            tracing::subscriber::with_default(sub, || line.trace());
        } else {
            tracing::subscriber::with_default(builder.finish(), || line.trace());
        }
        let theirs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        let mut ours = Vec::new();
        if json {
            line.json(SystemTime::now(), &mut ours);
        } else {
            line.text(SystemTime::now(), &mut ours);
        }
        let ours = String::from_utf8(ours).unwrap();
        let at = if json { r#"{"timestamp":""#.len() } else { 0 };
        let cut = |s: &str| {
            let stamp = &s[at..at + 27];
            assert!(
                stamp.ends_with('Z') && stamp.as_bytes()[10] == b'T' && stamp.as_bytes()[19] == b'.',
                "{s}"
            );
            format!("{}{}", &s[..at], &s[at + 27..])
        };
        (cut(&theirs), cut(&ours))
    }

    #[test]
    fn an_access_line_is_written_as_tracing_writes_it_in_text_and_json() {
        let lines = [
            Access {
                method: "GET",
                path: "/api/orders/1",
                route: "/api/orders",
                status: 200,
                client_id: "product-sa-client",
                outcome: "allowed",
                latency_us: 1234,
            },
            Access {
                method: "POST",
                path: "/token",
                route: "",
                status: 0,
                client_id: "",
                outcome: "token",
                latency_us: 0,
            },
            Access {
                method: "PATCH",
                path: "/a b/\"q\"/\u{e9}",
                route: "/r\\\"x\"",
                status: 503,
                client_id: "tab\there\nnl \u{1f600} \u{7f} \u{301}",
                outcome: "it's",
                latency_us: u64::MAX,
            },
        ];
        for line in &lines {
            for json in [false, true] {
                let (theirs, ours) = both(line, json);
                assert_eq!(theirs, ours);
            }
        }
    }

    #[test]
    fn every_printable_ascii_string_is_quoted_as_debug_quotes_it() {
        let all: String = (0x20u8..0x7f).map(char::from).collect();
        for s in [all.as_str(), "", "plain", "a\"b", "c\\d"] {
            let mut out = Vec::new();
            debug_str(s, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), format!("{s:?}"));
        }
    }

    #[test]
    fn timestamps_are_utc_calendar_dates() {
        let at = |secs: u64, micros: u32| {
            let mut out = Vec::new();
            timestamp(UNIX_EPOCH + Duration::new(secs, micros * 1000 + 999), &mut out);
            String::from_utf8(out).unwrap()
        };
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.000005Z");
        assert_eq!(at(951_868_799, 999_999), "2000-02-29T23:59:59.999999Z");
        assert_eq!(at(4_107_542_400, 120), "2100-03-01T00:00:00.000120Z");
        assert_eq!(at(1_796_155_231, 466_950), "2026-12-01T20:00:31.466950Z");
        assert_eq!(at(253_402_300_799, 1), "9999-12-31T23:59:59.000001Z");
        // The cached second is replaced when the second changes, back or forth.
        assert_eq!(at(0, 1), "1970-01-01T00:00:00.000001Z");
    }

    #[test]
    fn decimals_are_written_in_full() {
        for n in [0, 7, 10, 99_999, u64::MAX] {
            let mut out = Vec::new();
            decimal(n, &mut out);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }
}
