//! Opens keep-alive connections one at a time, makes one request on each, and holds them all
//! idle: what a server's memory looks like under a large pool of idle clients. Used by
//! `bench/run.sh` to measure RSS per idle keep-alive connection.
//!
//! ```sh
//! cargo run --release --example idleconns -- --conns 1000 --hold 30 http://127.0.0.1:8080/public/x
//! ```
//!
//! Prints `holding N connections` once every connection has had its answer, then holds them for
//! `--hold` seconds (or until killed).

use clap::Parser;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

#[derive(Parser)]
struct Args {
    /// Connections to open.
    #[arg(long, default_value_t = 1000)]
    conns: usize,
    /// Seconds to hold them after the last answer.
    #[arg(long, default_value_t = 30)]
    hold: u64,
    /// `http://host:port/path`
    url: String,
}

fn main() {
    let args = Args::parse();
    let rest = args
        .url
        .strip_prefix("http://")
        .unwrap_or_else(|| fail("the URL must start with http://"));
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n");
    let mut held = Vec::with_capacity(args.conns);
    for i in 0..args.conns {
        let stream = TcpStream::connect(host).unwrap_or_else(|e| fail(&format!("connection {i}: {e}")));
        stream.set_read_timeout(Some(Duration::from_secs(10))).ok();
        let mut reader = BufReader::new(stream);
        reader
            .get_mut()
            .write_all(request.as_bytes())
            .unwrap_or_else(|e| fail(&format!("connection {i}: {e}")));
        read_response(&mut reader).unwrap_or_else(|e| fail(&format!("connection {i}: {e}")));
        held.push(reader);
    }
    println!("holding {} connections", held.len());
    std::io::stdout().flush().ok();
    std::thread::sleep(Duration::from_secs(args.hold));
}

/// Reads one response with a Content-Length body; a status other than 200 is an error.
fn read_response(r: &mut BufReader<TcpStream>) -> Result<(), String> {
    let mut line = String::new();
    r.read_line(&mut line).map_err(|e| e.to_string())?;
    if !line.starts_with("HTTP/1.1 200") {
        return Err(format!("answer {:?}", line.trim_end()));
    }
    let mut len = 0usize;
    loop {
        line.clear();
        r.read_line(&mut line).map_err(|e| e.to_string())?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().map_err(|_| format!("bad Content-Length {v:?}"))?;
            }
        }
    }
    let mut body = vec![0; len];
    r.read_exact(&mut body).map_err(|e| e.to_string())
}

fn fail(msg: &str) -> ! {
    eprintln!("idleconns: {msg}");
    std::process::exit(1);
}
