//! The access line: one per request, in tollgate's own schema (README, "Access log"), as JSON
//! (serde_json) or as logfmt text, with an RFC 3339 UTC timestamp (humantime).
//!
//! Fields, in this order: `timestamp`, `level` (`INFO`), `target` (`tollgate::access`), `method`,
//! `path` (normalised), `route` (the matched prefix, or ""), `status` (0 when none was sent),
//! `client_id` ("" without a token), `outcome`, `latency_us`.

use super::{append, ACCESS_FORM, ACCESS_TARGET, JSON};
use serde::{Serialize, Serializer};
use std::cell::RefCell;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

/// The access line of one request.
#[derive(Serialize)]
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

/// An access line as written: its time and fixed fields, then the request's.
#[derive(Serialize)]
struct Line<'a> {
    #[serde(serialize_with = "rfc3339")]
    timestamp: SystemTime,
    level: &'static str,
    target: &'static str,
    #[serde(flatten)]
    access: &'a Access<'a>,
}

fn rfc3339<S: Serializer>(at: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_micros(*at))
}

impl Access<'_> {
    /// Whether `RUST_LOG` lets `tollgate::access` through at `info`: callers skip gathering a
    /// line's fields (its latency is a clock read) when it would not be written.
    pub fn enabled() -> bool {
        tracing::enabled!(target: ACCESS_TARGET, tracing::Level::INFO)
    }

    /// Logs the line if [`Access::enabled`].
    pub fn log(&self) {
        if !Access::enabled() {
            return;
        }
        thread_local! {
            static LINE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
        }
        LINE.with_borrow_mut(|line| {
            line.clear();
            if ACCESS_FORM.load(Ordering::Relaxed) == JSON {
                self.json(SystemTime::now(), line);
            } else {
                self.text(SystemTime::now(), line);
            }
            append(line);
        });
    }

    fn line(&self, timestamp: SystemTime) -> Line<'_> {
        Line {
            timestamp,
            level: "INFO",
            target: ACCESS_TARGET,
            access: self,
        }
    }

    /// One JSON object and a newline.
    fn json(&self, now: SystemTime, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail, and every field serialises.
        let _ = serde_json::to_writer(&mut *out, &self.line(now));
        out.push(b'\n');
    }

    /// logfmt: `key=value` pairs separated by spaces, a value in JSON string quotes when it is
    /// empty or holds anything but printable ASCII other than space, `"`, `=` and `\`.
    fn text(&self, now: SystemTime, out: &mut Vec<u8>) {
        use std::io::Write;
        let _ = write!(
            out,
            "timestamp={} level=INFO target={ACCESS_TARGET}",
            humantime::format_rfc3339_micros(now)
        );
        for (key, value) in [("method", self.method), ("path", self.path), ("route", self.route)] {
            pair(out, key, value);
        }
        let _ = write!(out, " status={}", self.status);
        pair(out, "client_id", self.client_id);
        pair(out, "outcome", self.outcome);
        let _ = writeln!(out, " latency_us={}", self.latency_us);
    }
}

/// ` key=value`, the value quoted when logfmt needs it.
fn pair(out: &mut Vec<u8>, key: &str, value: &str) {
    out.push(b' ');
    out.extend_from_slice(key.as_bytes());
    out.push(b'=');
    let bare = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b'=' | b'\\'));
    if bare {
        out.extend_from_slice(value.as_bytes());
    } else {
        let _ = serde_json::to_writer(&mut *out, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::time::{Duration, UNIX_EPOCH};

    const AT: u64 = 1_796_155_231;

    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::new(AT, 466_950_123)
    }

    fn allowed() -> Access<'static> {
        Access {
            method: "GET",
            path: "/api/orders/1",
            route: "/api/orders",
            status: 200,
            client_id: "product-sa-client",
            outcome: "allowed",
            latency_us: 1234,
        }
    }

    fn odd() -> Access<'static> {
        Access {
            method: "PATCH",
            path: "/a b/\"q\"/\u{e9}",
            route: "",
            status: 0,
            client_id: "tab\there\nnl k=v \\",
            outcome: "it's",
            latency_us: u64::MAX,
        }
    }

    fn text(a: &Access) -> String {
        let mut out = Vec::new();
        a.text(at(), &mut out);
        String::from_utf8(out).unwrap()
    }

    fn json(a: &Access) -> Value {
        let mut out = Vec::new();
        a.json(at(), &mut out);
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
        assert!(out.ends_with(b"\n"));
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn a_text_line_is_logfmt_in_the_documented_order() {
        assert_eq!(
            text(&allowed()),
            "timestamp=2026-12-01T20:00:31.466950Z level=INFO target=tollgate::access method=GET \
             path=/api/orders/1 route=/api/orders status=200 client_id=product-sa-client \
             outcome=allowed latency_us=1234\n"
        );
    }

    #[test]
    fn text_values_that_logfmt_cannot_hold_bare_are_quoted_and_escaped() {
        let line = text(&odd());
        assert!(line.contains(r#" path="/a b/\"q\"/é" route="" status=0 "#), "{line}");
        assert!(
            line.contains(r#" client_id="tab\there\nnl k=v \\" outcome=it's "#),
            "{line}"
        );
        assert!(line.ends_with(&format!(" latency_us={}\n", u64::MAX)));
        assert_eq!(line.matches('\n').count(), 1, "one line whatever the values");
    }

    #[test]
    fn a_json_line_carries_every_field_with_its_type() {
        let mut raw = Vec::new();
        allowed().json(at(), &mut raw);
        let raw = String::from_utf8(raw).unwrap();
        let keys = [
            "timestamp",
            "level",
            "target",
            "method",
            "path",
            "route",
            "status",
            "client_id",
            "outcome",
            "latency_us",
        ];
        let at: Vec<usize> = keys.iter().map(|k| raw.find(&format!("\"{k}\":")).unwrap()).collect();
        assert!(at.windows(2).all(|w| w[0] < w[1]), "in the documented order: {raw}");
        let v = json(&allowed());
        assert_eq!(v.as_object().unwrap().len(), keys.len());
        assert_eq!(v["timestamp"], "2026-12-01T20:00:31.466950Z");
        assert_eq!(
            (v["level"].as_str(), v["target"].as_str()),
            (Some("INFO"), Some(ACCESS_TARGET))
        );
        assert_eq!(
            (v["status"].as_u64(), v["latency_us"].as_u64()),
            (Some(200), Some(1234))
        );
        let v = json(&odd());
        assert_eq!(v["path"], odd().path);
        assert_eq!(v["client_id"], odd().client_id);
        assert_eq!(v["latency_us"].as_u64(), Some(u64::MAX));
    }
}
