//! The client connection limit's default and the open-files limit it has to fit in.
//!
//! No pingora function is replaced here: pingora has no connection limit. Every connection holds
//! memory, more with a request in flight (docs/performance-decisions.md), so the limit is what
//! bounds it; the place itself is a [`crate::counters::Connection`], taken in `capped.rs`.

use crate::config::DEFAULT_MAX_CONNECTIONS;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// When the last "limit reached" warning was logged (seconds since the epoch).
static LAST_WARNING: AtomicU64 = AtomicU64::new(0);

/// At most one warning per this many seconds while connections are being refused.
const WARN_EVERY_SECS: u64 = 10;

/// Descriptors kept for listeners, config and key files, logs and the admin port.
const RESERVED_FDS: u64 = 64;

/// The limit when `server.max_connections` is not set: [`DEFAULT_MAX_CONNECTIONS`], or what an
/// open-files limit of `open_files` can hold with a client and an upstream socket per
/// connection and a few dozen descriptors to spare (HAProxy derives its `maxconn` the same way).
fn default_max(open_files: u64) -> usize {
    let fit = open_files.saturating_sub(RESERVED_FDS) / 2;
    (fit.max(1) as usize).min(DEFAULT_MAX_CONNECTIONS)
}

/// Open files that `max` connections can need: a client and an upstream socket each.
fn fds_needed(max: usize) -> u64 {
    max as u64 * 2 + RESERVED_FDS
}

/// At start: raises the open-files limit, says when it constrains the connection limit, and
/// returns the limit to use while `server.max_connections` is not set.
pub fn limits_at_start(configured: Option<usize>) -> usize {
    let open_files = match raise_open_files_limit() {
        Ok((before, after)) => {
            if after > before {
                tracing::info!("open-files limit (RLIMIT_NOFILE) raised from {before} to its hard limit {after}");
            }
            after
        }
        Err(e) => {
            tracing::warn!("could not read or raise the open-files limit: {e}");
            1024
        }
    };
    let default = default_max(open_files);
    match configured {
        Some(max) if fds_needed(max) > open_files => tracing::warn!(
            "server.max_connections = {max} can need {} open files (a client and an upstream socket each); the open-files limit is {open_files}",
            fds_needed(max)
        ),
        None if default < DEFAULT_MAX_CONNECTIONS => tracing::info!(
            "client connections limited to {default} by the open-files limit ({open_files}); set server.max_connections to choose"
        ),
        _ => {}
    }
    default
}

/// Logs that connections are being refused, at most once per [`WARN_EVERY_SECS`].
pub fn warn_limit_reached(max: usize) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let last = LAST_WARNING.load(Ordering::Relaxed);
    if now >= last + WARN_EVERY_SECS
        && LAST_WARNING
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(
            max_connections = max,
            "client connection limit reached; closing new connections (see tollgate_connections_refused_total)"
        );
    }
}

/// Raises the soft open-files limit to the hard one, as Go's runtime does at start: each
/// proxied request holds two sockets, and a soft limit of 1,024 (a login shell's default) would
/// cap a sidecar at a few hundred clients. Returns the soft limit before and after.
fn raise_open_files_limit() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let before = lim.rlim_cur;
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok((before, lim.rlim_cur))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_limit_fits_the_open_files_limit() {
        assert_eq!(default_max(1_048_576), DEFAULT_MAX_CONNECTIONS);
        assert_eq!(default_max(20_000), DEFAULT_MAX_CONNECTIONS - 32);
        assert_eq!(default_max(1_024), 480);
        assert_eq!(default_max(10), 1);
    }

    #[test]
    fn the_open_files_limit_ends_at_the_hard_limit() {
        let (before, after) = raise_open_files_limit().unwrap();
        assert!(after >= before);
        let mut lim = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: as above.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
        assert_eq!(lim.rlim_cur, lim.rlim_max);
    }
}
