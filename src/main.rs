//! The `tollgate` command line: run, check, keygen, hash-secret, import-keycloak.

use clap::{Parser, Subcommand};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

// pingora allocates per request and per connection; mimalloc's thread-local pools take most of
// glibc malloc's locking out of that path (docs/performance-decisions.md).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: tollgate::alloc::Mimalloc = tollgate::alloc::Mimalloc;

#[derive(Parser)]
#[command(
    name = "tollgate",
    version,
    about = "OAuth 2.0 client-credentials issuer and bearer-token guard on pingora"
)]
struct Cli {
    /// Config file.
    #[arg(long, global = true, default_value = "./proxy.toml")]
    config: PathBuf,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate the config and every key file it names; print every problem.
    Check,
    /// Write a new PKCS#8 PEM private key (mode 0600).
    Keygen {
        #[arg(long, value_parser = ["RS256", "ES256", "EdDSA"])]
        alg: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Read a client secret on stdin and print its argon2id PHC string.
    HashSecret,
    /// Write the proxy.toml equivalent to a Keycloak realm export; list what it leaves out.
    ImportKeycloak {
        /// The realm export (JSON of `kc.sh export` or the admin console's partial export).
        file: PathBuf,
        /// Write the config here (default: stdout); JWKS files go beside it.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Generate a signing key per realm in this folder and write a listener, so the
        /// config loads as it is.
        #[arg(long)]
        keys: Option<PathBuf>,
    },
}

fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("tollgate: {msg}");
    ExitCode::from(2)
}

/// mimalloc asks for transparent huge pages on its arenas, so each touched 2 MiB region counts
/// whole, and small per-connection objects gain little from them: the process opts out before
/// its first connection (docs/performance-decisions.md).
#[cfg(target_os = "linux")]
fn no_huge_pages() {
    // SAFETY: prctl with integer arguments only; it changes a flag of this process's memory map.
    unsafe {
        libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0);
    }
}

/// mimalloc's `purge_delay` option (its place in `mi_option_t`, mimalloc 3).
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// mimalloc 3 keeps freed memory committed for 1 s before it gives it back (`purge_delay`), and
/// every request frees pingora's per-request state, so under a burst of connections the freed
/// pages pile up; 10 ms (mimalloc 2's delay) gives them back sooner at no measurable CPU cost
/// (docs/performance-decisions.md). `MIMALLOC_PURGE_DELAY` in the environment still decides.
#[cfg(feature = "mimalloc")]
fn prompt_purge() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: mi_option_set only stores the value of an option that mimalloc reads as it goes.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 10) }
    }
}

fn main() -> ExitCode {
    #[cfg(target_os = "linux")]
    no_huge_pages();
    #[cfg(feature = "mimalloc")]
    prompt_purge();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind::*;
            if matches!(
                e.kind(),
                DisplayHelp | DisplayVersion | DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            let text = e.to_string();
            let line = text
                .lines()
                .next()
                .unwrap_or("bad arguments")
                .trim_start_matches("error: ");
            return usage_error(format!("{line} (see --help)"));
        }
    };
    match cli.command {
        None => run(&cli.config),
        Some(Command::Check) => check(&cli.config),
        Some(Command::Keygen { alg, out }) => keygen(&alg, &out),
        Some(Command::HashSecret) => hash_secret(),
        Some(Command::ImportKeycloak { file, out, keys }) => import_keycloak(&file, out.as_deref(), keys.as_deref()),
    }
}

fn run(config: &Path) -> ExitCode {
    if !config.is_file() {
        return usage_error(format!("config file {} not found", config.display()));
    }
    match tollgate::server::run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tollgate: config does not load: {e}");
            ExitCode::from(1)
        }
    }
}

fn check(config: &Path) -> ExitCode {
    if !config.is_file() {
        return usage_error(format!("config file {} not found", config.display()));
    }
    match tollgate::config::load(config, Default::default()) {
        Ok(snap) => {
            for w in &snap.warnings {
                println!("warning: {w}");
            }
            println!(
                "ok: {} realm(s), {} route(s), config hash {}",
                snap.realms.len(),
                snap.routes.iter().count(),
                snap.hash
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            for p in &e.0 {
                println!("{p}");
            }
            println!("{} problem(s); the config would not load", e.0.len());
            ExitCode::from(1)
        }
    }
}

fn keygen(alg: &str, out: &Path) -> ExitCode {
    let Some(alg) = tollgate::token::keys::parse_alg(alg) else {
        return usage_error(format!("unknown alg {alg}"));
    };
    let pem = match tollgate::token::keys::generate_pem(alg) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("tollgate: {e}");
            return ExitCode::from(1);
        }
    };
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(out);
    match file.and_then(|mut f| f.write_all(pem.as_bytes())) {
        Ok(()) => {
            println!("wrote {}", out.display());
            ExitCode::SUCCESS
        }
        Err(e) => usage_error(format!("cannot write {}: {e}", out.display())),
    }
}

fn hash_secret() -> ExitCode {
    let mut input = String::new();
    if let Err(e) = std::io::stdin().take(64 * 1024).read_to_string(&mut input) {
        return usage_error(format!("cannot read stdin: {e}"));
    }
    let secret = input
        .strip_suffix('\n')
        .map(|s| s.strip_suffix('\r').unwrap_or(s))
        .unwrap_or(&input);
    if secret.is_empty() {
        return usage_error("no secret on stdin");
    }
    match tollgate::secret::hash_secret(secret) {
        Ok(phc) => {
            println!("{phc}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tollgate: {e}");
            ExitCode::from(1)
        }
    }
}

/// Exit 0 when the output is complete, 3 when something was left out (each on a line of
/// stderr), 1 when the file is not a realm export.
fn import_keycloak(file: &Path, out: Option<&Path>, keys: Option<&Path>) -> ExitCode {
    use tollgate::import::{run, RunError};
    if !file.is_file() {
        return usage_error(format!("realm export {} not found", file.display()));
    }
    match run(file, out, keys) {
        Ok(ran) => {
            if out.is_none() {
                print!("{}", ran.toml);
            } else {
                for p in &ran.wrote {
                    println!("wrote {}", p.display());
                }
            }
            for line in &ran.left_out {
                eprintln!("left out: {line}");
            }
            if ran.left_out.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(3)
            }
        }
        Err(RunError::NotAnExport(why)) => {
            eprintln!("tollgate: {} is not a Keycloak realm export: {why}", file.display());
            ExitCode::from(1)
        }
        Err(RunError::Io(why)) => usage_error(why),
    }
}

#[cfg(all(test, feature = "mimalloc"))]
mod tests {
    #[test]
    fn the_purge_delay_option_is_the_one_set() {
        // SAFETY: mi_option_get only reads an option's value.
        let get = || unsafe { libmimalloc_sys::mi_option_get(super::MI_OPTION_PURGE_DELAY) };
        // 1,000 ms is purge_delay's default in mimalloc 3 and no other option's, so a mimalloc
        // whose options were renumbered fails here instead of having another option set to 10.
        assert_eq!(get(), 1000);
        super::prompt_purge();
        assert_eq!(get(), 10);
    }
}
