//! Hot reload: notify (on the folders of the config and every key file) and SIGHUP lead to
//! load → validate → `ArcSwap::store`. A config that does not validate is logged, counted,
//! and the previous snapshot keeps serving.

use crate::config::{self, LoadOptions};
use crate::state::State;
use notify::{EventKind, RecursiveMode, Watcher};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Bursts of file events closer together than this become one reload.
pub const DEBOUNCE: Duration = Duration::from_millis(150);

/// What a reload did.
#[derive(Debug, PartialEq, Eq)]
pub enum Reloaded {
    Applied,
    Unchanged,
    Rejected,
}

/// Load the config again and install it if it is valid and different.
pub fn reload(state: &State) -> Reloaded {
    let opts = LoadOptions {
        listen_port: state.listen_port,
    };
    match config::load(&state.config_path, opts) {
        Ok(snap) => {
            if snap.hash == state.config.load().hash {
                return Reloaded::Unchanged;
            }
            for w in &snap.warnings {
                tracing::warn!("{w}");
            }
            let old = state.config.load();
            let addresses = |s: &config::Snapshot| {
                let v = &s.server;
                (
                    v.listen,
                    v.tls_listen,
                    v.admin_listen,
                    s.egress.as_ref().map(|e| e.listen),
                )
            };
            if addresses(&old) != addresses(&snap) {
                tracing::warn!("listener addresses changed in the config; they take effect only at the next start");
            }
            if state.config.load().store != snap.store {
                tracing::warn!("[store] changed in the config; it takes effect only at the next start");
            }
            let hash = snap.hash.clone();
            state.install(snap);
            state.metrics.config_reloads.inc();
            tracing::info!(config_hash = %hash, "config reloaded");
            Reloaded::Applied
        }
        Err(e) => {
            state.metrics.config_reload_failures.inc();
            for p in &e.0 {
                tracing::error!(problem = %p, "config reload rejected; the previous config keeps serving");
            }
            Reloaded::Rejected
        }
    }
}

/// Folders to watch and the file names in them that matter.
fn targets(files: &[PathBuf]) -> (BTreeSet<PathBuf>, BTreeSet<std::ffi::OsString>) {
    let mut dirs = BTreeSet::new();
    let mut names = BTreeSet::new();
    for f in files {
        let dir = f
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        dirs.insert(dir.to_path_buf());
        if let Some(n) = f.file_name() {
            names.insert(n.to_os_string());
        }
    }
    (dirs, names)
}

fn relevant(event: &notify::Event, names: &BTreeSet<std::ffi::OsString>) -> bool {
    if matches!(event.kind, EventKind::Access(_)) {
        return false;
    }
    event.paths.iter().any(|p| {
        p.file_name().is_some_and(|n| {
            // Kubernetes swaps a `..data` symlink (via `..data_tmp`) when a ConfigMap changes.
            names.contains(n) || n.to_string_lossy().starts_with("..")
        })
    })
}

/// Run until `shutdown` flips: watch files and SIGHUP, reload on either.
pub async fn run(state: Arc<State>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let (tx, mut rx) = mpsc::channel::<()>(16);
    let names = Arc::new(parking_lot::Mutex::new(BTreeSet::new()));
    let names_cb = names.clone();
    let tx_cb = tx.clone();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(ev) = res {
            if relevant(&ev, &names_cb.lock()) {
                let _ = tx_cb.try_send(());
            }
        }
    });
    let mut watcher = match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::error!("cannot watch config files ({e}); reload with SIGHUP");
            None
        }
    };
    let mut watched: BTreeSet<PathBuf> = BTreeSet::new();
    let mut rewatch = |watcher: &mut Option<notify::RecommendedWatcher>, files: &[PathBuf]| {
        let (dirs, n) = targets(files);
        *names.lock() = n;
        if let Some(w) = watcher.as_mut() {
            for d in watched.difference(&dirs) {
                let _ = w.unwatch(d);
            }
            for d in dirs.difference(&watched) {
                if let Err(e) = w.watch(d, RecursiveMode::NonRecursive) {
                    tracing::warn!("cannot watch {}: {e}", d.display());
                }
            }
        }
        watched = dirs;
    };
    if !state.config.load().server.watch {
        tracing::info!("server.watch = false: config reloads on SIGHUP only");
        watcher = None;
    }
    rewatch(&mut watcher, &state.config.load().files);

    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!("cannot listen for SIGHUP: {e}");
            None
        }
    };
    loop {
        tokio::select! {
            Some(()) = rx.recv() => {
                // Let the burst settle (editors and ConfigMap swaps write several events).
                tokio::time::sleep(DEBOUNCE).await;
                while rx.try_recv().is_ok() {}
            }
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                tracing::info!("SIGHUP: reloading config");
            }
            _ = shutdown.changed() => return,
        }
        let state2 = state.clone();
        let outcome = tokio::task::spawn_blocking(move || reload(&state2))
            .await
            .unwrap_or(Reloaded::Rejected);
        if outcome == Reloaded::Applied {
            if !state.config.load().server.watch {
                tracing::info!("server.watch = false: config reloads on SIGHUP only");
                watcher = None;
            }
            rewatch(&mut watcher, &state.config.load().files);
        }
    }
}
