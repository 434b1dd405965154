//! A constant-rate (open-loop) HTTP/1.1 load generator, used by `bench/run.sh` to measure latency
//! at a fixed fraction of peak load, as wrk2 does (wrk2 is not packaged; wrk can only send as
//! fast as the server answers).
//!
//! ```sh
//! cargo run --release --example openloop -- --rate 7500 --duration 10 --conns 32 \
//!     -H "Authorization: Bearer ..." http://127.0.0.1:8080/api/orders/1
//! ```
//!
//! Request `i` is due at `start + i / rate`, spread round-robin over `conns` keep-alive
//! connections, each on its own thread. A latency is measured from when its request was *due*,
//! not from when the connection got round to sending it, so a server that stalls cannot hide the
//! queue behind it ("coordinated omission"). Thread wake-up lateness is in that figure too; it is
//! the same for every URL measured, so differences between URLs are the server's.
//!
//! Output mimics wrk's (`N requests in`, `Requests/sec:`, a `Latency Distribution` in µs, `Non-2xx
//! or 3xx responses:` and `Socket errors:` when there are any) so one parser reads both, plus the
//! service time (from the moment the request was written).

use clap::Parser;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

#[derive(Parser)]
struct Args {
    /// Requests per second, over all connections.
    #[arg(long)]
    rate: f64,
    /// Seconds measured (after the warm-up).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds sent at the same rate before measuring starts.
    #[arg(long, default_value_t = 1.0)]
    warmup: f64,
    /// Keep-alive connections (one thread each).
    #[arg(long, default_value_t = 16)]
    conns: usize,
    /// Extra request header, `Name: value`; repeatable.
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// `http://host:port/path`.
    url: String,
}

#[derive(Default)]
struct Tally {
    /// Microseconds from due to the last byte of the response.
    latency: Vec<u32>,
    /// Microseconds from the request written to the last byte of the response.
    service: Vec<u32>,
    non_2xx: u64,
    connect_errors: u64,
    read_errors: u64,
    write_errors: u64,
    timeouts: u64,
}

fn main() {
    let a = Args::parse();
    if let Err(e) = run(&a) {
        eprintln!("openloop: {e}");
        std::process::exit(2);
    }
}

fn run(a: &Args) -> Result<(), String> {
    if !(a.rate > 0.0 && a.duration > 0.0 && a.warmup >= 0.0 && a.conns > 0) {
        return Err("--rate, --duration and --conns must be positive".into());
    }
    let total = (a.rate * (a.warmup + a.duration)).ceil();
    if total > 20_000_000.0 {
        return Err("more than 20 million requests: lower --rate or --duration".into());
    }
    let (addr, host, path) = parse_url(&a.url)?;
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n");
    for h in &a.headers {
        if !h.contains(':') || h.contains(['\r', '\n']) {
            return Err(format!("header {h:?} is not `Name: value`"));
        }
        request.push_str(h);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let request = request.into_bytes();

    let interval = Duration::from_secs_f64(1.0 / a.rate);
    let start = Instant::now() + Duration::from_millis(100);
    let measure_from = start + Duration::from_secs_f64(a.warmup);
    let end = measure_from + Duration::from_secs_f64(a.duration);
    let total = total as u64;

    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..a.conns as u64)
            .map(|k| {
                let request = &request;
                let stride = a.conns as u64;
                s.spawn(move || {
                    let due = (k..total)
                        .step_by(stride as usize)
                        .map(|i| start + interval.mul_f64(i as f64))
                        .take_while(|d| *d < end);
                    connection(addr, request, due, measure_from)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_default()).collect()
    });

    let mut t = Tally::default();
    for x in tallies {
        t.latency.extend(x.latency);
        t.service.extend(x.service);
        t.non_2xx += x.non_2xx;
        t.connect_errors += x.connect_errors;
        t.read_errors += x.read_errors;
        t.write_errors += x.write_errors;
        t.timeouts += x.timeouts;
    }
    report(a, &mut t);
    Ok(())
}

fn parse_url(url: &str) -> Result<(SocketAddr, String, String), String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| format!("{url}: only http:// URLs"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let addr = host
        .to_socket_addrs()
        .map_err(|e| format!("{host}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host}: no address"))?;
    Ok((addr, host.to_string(), path.to_string()))
}

/// One keep-alive connection sending the requests due at `due`, in order, one at a time.
fn connection(addr: SocketAddr, request: &[u8], due: impl Iterator<Item = Instant>, measure_from: Instant) -> Tally {
    // Sleep to the microsecond rather than the kernel's default 50 µs slack.
    // SAFETY: prctl with PR_SET_TIMERSLACK takes a plain integer and touches no memory.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1);
    }
    let mut t = Tally::default();
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut body = Vec::new();
    for d in due {
        let now = Instant::now();
        if d > now {
            std::thread::sleep(d - now);
        }
        let measured = d >= measure_from;
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match open(addr) {
                Ok(c) => conn.insert(c),
                Err(_) => {
                    t.connect_errors += measured as u64;
                    continue;
                }
            },
        };
        let sent = Instant::now();
        if c.get_mut().write_all(request).is_err() {
            t.write_errors += measured as u64;
            conn = None;
            continue;
        }
        match read_response(c, &mut body) {
            Ok((status, keep_alive)) => {
                let done = Instant::now();
                if measured {
                    t.latency.push(micros(done - d));
                    t.service.push(micros(done - sent));
                    if !(200..400).contains(&status) {
                        t.non_2xx += 1;
                    }
                }
                if !keep_alive {
                    conn = None;
                }
            }
            Err(e) => {
                if measured {
                    match e.kind() {
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => t.timeouts += 1,
                        _ => t.read_errors += 1,
                    }
                }
                conn = None;
            }
        }
    }
    t
}

fn open(addr: SocketAddr) -> std::io::Result<BufReader<TcpStream>> {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    Ok(BufReader::with_capacity(64 * 1024, s))
}

fn micros(d: Duration) -> u32 {
    d.as_micros().min(u32::MAX as u128) as u32
}

fn bad(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// Reads one response (head and body, Content-Length or chunked); returns its status and whether
/// the connection stays open.
fn read_response(c: &mut BufReader<TcpStream>, scratch: &mut Vec<u8>) -> std::io::Result<(u16, bool)> {
    let mut line = String::new();
    if c.read_line(&mut line)? == 0 {
        return Err(bad("connection closed"));
    }
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("bad status line"))?;
    let (mut length, mut chunked, mut keep_alive) = (None, false, !line.starts_with("HTTP/1.0"));
    loop {
        line.clear();
        if c.read_line(&mut line)? == 0 {
            return Err(bad("connection closed in the head"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let Some((name, value)) = l.split_once(':') else {
            return Err(bad("bad header line"));
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<u64>().map_err(|_| bad("bad content-length"))?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            keep_alive = !value.eq_ignore_ascii_case("close");
        }
    }
    if chunked {
        loop {
            line.clear();
            c.read_line(&mut line)?;
            let size = u64::from_str_radix(line.trim_end().split(';').next().unwrap_or(""), 16)
                .map_err(|_| bad("bad chunk size"))?;
            skip(c, size, scratch)?;
            line.clear();
            c.read_line(&mut line)?; // the CRLF after the chunk (or the end of the trailers)
            if size == 0 {
                return Ok((status, keep_alive));
            }
        }
    }
    match length {
        Some(n) => skip(c, n, scratch)?,
        None if status == 204 || status == 304 => {}
        None => {
            // Delimited by close.
            scratch.clear();
            c.read_to_end(scratch)?;
            keep_alive = false;
        }
    }
    Ok((status, keep_alive))
}

fn skip(c: &mut BufReader<TcpStream>, mut n: u64, scratch: &mut Vec<u8>) -> std::io::Result<()> {
    scratch.resize(16 * 1024, 0);
    while n > 0 {
        let want = n.min(scratch.len() as u64) as usize;
        c.read_exact(&mut scratch[..want])?;
        n -= want as u64;
    }
    Ok(())
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

fn report(a: &Args, t: &mut Tally) {
    t.latency.sort_unstable();
    t.service.sort_unstable();
    let n = t.latency.len();
    println!(
        "Open-loop {} req/s for {}s over {} connections to {}",
        a.rate, a.duration, a.conns, a.url
    );
    println!("  Latency Distribution (from when each request was due)");
    for p in [50.0, 75.0, 90.0, 99.0, 99.9] {
        println!("  {:>6}%  {:.2}us", p, percentile(&t.latency, p) as f64);
    }
    println!("  max {}us", t.latency.last().copied().unwrap_or(0));
    println!(
        "  service time (from when it was written): p50 {}us p99 {}us",
        percentile(&t.service, 50.0),
        percentile(&t.service, 99.0)
    );
    println!("  {n} requests in {:.2}s", a.duration);
    println!("Requests/sec: {:.1}", n as f64 / a.duration);
    if t.non_2xx > 0 {
        println!("  Non-2xx or 3xx responses: {}", t.non_2xx);
    }
    if t.connect_errors + t.read_errors + t.write_errors + t.timeouts > 0 {
        println!(
            "  Socket errors: connect {}, read {}, write {}, timeout {}",
            t.connect_errors, t.read_errors, t.write_errors, t.timeouts
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// Serves `wire` to one connection and returns a reader over the client side.
    fn reader_of(wire: &'static [u8]) -> BufReader<TcpStream> {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            s.write_all(wire).unwrap();
        });
        open(addr).unwrap()
    }

    #[test]
    fn reads_content_length_chunked_and_close_delimited_responses() {
        let mut scratch = Vec::new();
        let mut r = reader_of(
            b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello\
              HTTP/1.1 404 Not Found\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n\
              HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 2\r\n\r\nno\
              ",
        );
        assert_eq!(read_response(&mut r, &mut scratch).unwrap(), (200, true));
        assert_eq!(read_response(&mut r, &mut scratch).unwrap(), (404, true));
        assert_eq!(read_response(&mut r, &mut scratch).unwrap(), (401, false));
        assert!(read_response(&mut r, &mut scratch).is_err(), "nothing more to read");

        let mut r = reader_of(b"HTTP/1.0 200 OK\r\n\r\nuntil the end");
        assert_eq!(read_response(&mut r, &mut scratch).unwrap(), (200, false));
        assert_eq!(scratch, b"until the end");
    }

    #[test]
    fn malformed_responses_are_errors_not_panics() {
        let mut scratch = Vec::new();
        for wire in [
            &b"garbage\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
        ] {
            let mut r = reader_of(wire);
            assert!(
                read_response(&mut r, &mut scratch).is_err(),
                "{}",
                String::from_utf8_lossy(wire)
            );
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 99.9), 100);
        assert_eq!(percentile(&[], 99.0), 0);
    }
}
