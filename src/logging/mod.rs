//! Logging: tracing to stderr, text or JSON, level from `RUST_LOG` (default `info`), in colour
//! only at a terminal.
//!
//! Access lines (target `tollgate::access`, one per request) are gathered in memory and written
//! in batches: at 64 KiB, every 50 ms, and at exit, because one `write(2)` per line under the
//! shared stderr lock makes the workers wait on each other (docs/performance-decisions.md).
//! Every other event (start-up, reloads, warnings) is written at once.
//!
//! Access lines have their own schema and renderer (the `access` module); tracing only decides
//! whether they are logged (`RUST_LOG`).

mod access;

pub use access::Access;

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tracing_subscriber::EnvFilter;

/// The tracing target of the per-request access line.
pub const ACCESS_TARGET: &str = "tollgate::access";

/// Batched access lines not yet written.
static PENDING: Mutex<Vec<u8>> = Mutex::new(Vec::new());

/// A batch this large is written by the request that fills it, without waiting for the timer.
const BATCH_BYTES: usize = 64 * 1024;

/// How long an access line may wait in memory.
const FLUSH_EVERY: Duration = Duration::from_millis(50);

/// How access lines are rendered: logfmt text or JSON, as the other events are.
static ACCESS_FORM: AtomicU8 = AtomicU8::new(TEXT);
const TEXT: u8 = 1;
const JSON: u8 = 2;

pub fn init(json: bool) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ansi = colour();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(io::stderr);
    // A second init (tests, or `check` after a failed start) is harmless: keep the first.
    let installed = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
    if installed.is_ok() {
        ACCESS_FORM.store(if json { JSON } else { TEXT }, Ordering::Relaxed);
        let _ = std::thread::Builder::new().name("access-log".into()).spawn(|| loop {
            std::thread::sleep(FLUSH_EVERY);
            flush();
        });
    }
}

/// Colours only for a person at a terminal: escape codes in a file, a pipe or a container's log
/// are noise to every reader after it, and rendering them was more than half of an access
/// line's cost. `NO_COLOR` (no-color.org) turns them off at a terminal too.
fn colour() -> bool {
    io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// Write out every batched access line (called by the timer and before the process exits).
pub fn flush() {
    let batch = std::mem::take(&mut *PENDING.lock().unwrap_or_else(|e| e.into_inner()));
    write_out(&batch);
}

fn write_out(batch: &[u8]) {
    if !batch.is_empty() {
        // Nowhere to report a failed log write; the request it describes is already served.
        let _ = io::stderr().lock().write_all(batch);
    }
}

/// Adds `line` to the pending batch, and writes the batch out if that filled it.
fn append(line: &[u8]) {
    let full = {
        let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        pending.extend_from_slice(line);
        (pending.len() >= BATCH_BYTES).then(|| std::mem::take(&mut *pending))
    };
    if let Some(batch) = full {
        write_out(&batch);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_lines_wait_for_a_flush() {
        append(b"line one\n");
        assert!(PENDING.lock().unwrap().ends_with(b"line one\n"));
        flush();
        assert!(PENDING.lock().unwrap().is_empty());
    }
}
