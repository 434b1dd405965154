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
//! With `--paired-path PATH`, requests alternate between the URL's path and PATH (same host, same
//! headers): each connection takes them in turn, starting with a different one from its
//! neighbour, so at any moment half the requests in flight are of each kind. Both then meet the
//! same machine at the same moments, and the difference between their latencies is the
//! server's, not the scheduler's: the figures of each path are printed after the total, then
//! the differences of their percentiles with 95% intervals, of the latency from due and of the
//! service time. A request's latency from due also holds its wait behind the request before it
//! on the same connection, which is of the other path; its service time is its own.
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
    /// A second path on the same host, sent in alternation with the URL's (see above).
    #[arg(long)]
    paired_path: Option<String>,
    /// `http://host:port/path`.
    url: String,
}

#[derive(Default)]
struct Tally {
    /// With `--paired-path`: every measured request, for the comparison of the two paths.
    paired: Vec<Sample>,
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

/// One measured request of a paired run.
#[derive(Clone, Copy)]
struct Sample {
    /// Which [`BLOCK`] of the measured time it was due in.
    block: u32,
    /// 0: the URL's path, 1: `--paired-path`.
    which: u8,
    latency: u32,
    service: u32,
}

/// The paired comparison resamples whole slices of time this long, so that a stall of the
/// machine, which delays the requests of both paths around it, stays in or out of a resample
/// whole (a block bootstrap: the samples of one moment are not independent).
const BLOCK: Duration = Duration::from_millis(50);

/// Resamples drawn for the confidence interval of a paired difference.
const RESAMPLES: usize = 1000;

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
    for h in &a.headers {
        if !h.contains(':') || h.contains(['\r', '\n']) {
            return Err(format!("header {h:?} is not `Name: value`"));
        }
    }
    if let Some(p) = &a.paired_path {
        if !p.starts_with('/') || p.contains(|c: char| c.is_ascii_whitespace() || c.is_ascii_control()) {
            return Err(format!("--paired-path {p:?} is not an absolute path"));
        }
    }
    let request = |path: &str| {
        let mut r = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\n");
        for h in &a.headers {
            r.push_str(h);
            r.push_str("\r\n");
        }
        r.push_str("\r\n");
        r.into_bytes()
    };
    // One request, or two taken in turn.
    let requests: Vec<Vec<u8>> = std::iter::once(path.as_str())
        .chain(a.paired_path.as_deref())
        .map(request)
        .collect();

    let interval = Duration::from_secs_f64(1.0 / a.rate);
    let start = Instant::now() + Duration::from_millis(100);
    let measure_from = start + Duration::from_secs_f64(a.warmup);
    let end = measure_from + Duration::from_secs_f64(a.duration);
    let total = total as u64;

    let tallies: Vec<Tally> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..a.conns as u64)
            .map(|k| {
                let requests = &requests;
                let stride = a.conns as u64;
                s.spawn(move || {
                    let due = (k..total)
                        .step_by(stride as usize)
                        .map(|i| start + interval.mul_f64(i as f64))
                        .take_while(|d| *d < end);
                    connection(addr, requests, k as usize, due, measure_from)
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
        t.paired.extend(x.paired);
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

/// One keep-alive connection sending the requests due at `due`, in order, one at a time; with
/// more than one request to send, they are taken in turn, starting with `requests[first % n]`.
fn connection(
    addr: SocketAddr,
    requests: &[Vec<u8>],
    first: usize,
    due: impl Iterator<Item = Instant>,
    measure_from: Instant,
) -> Tally {
    // Sleep to the microsecond rather than the kernel's default 50 µs slack.
    // SAFETY: prctl with PR_SET_TIMERSLACK takes a plain integer and touches no memory.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1);
    }
    let mut t = Tally::default();
    let mut conn: Option<BufReader<TcpStream>> = None;
    let mut body = Vec::new();
    for (j, d) in due.enumerate() {
        let which = (first + j) % requests.len();
        let request = &requests[which];
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
                    if requests.len() > 1 {
                        t.paired.push(Sample {
                            block: ((d - measure_from).as_micros() / BLOCK.as_micros()) as u32,
                            which: which as u8,
                            latency: micros(done - d),
                            service: micros(done - sent),
                        });
                    }
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
    if let Some(b) = &a.paired_path {
        let a_path = parse_url(&a.url).map(|u| u.2).unwrap_or_default();
        for (which, path) in [a_path.as_str(), b.as_str()].into_iter().enumerate() {
            let of = |f: fn(&Sample) -> u32| {
                let mut v: Vec<u32> = t.paired.iter().filter(|s| s.which as usize == which).map(f).collect();
                v.sort_unstable();
                v
            };
            let (latency, service) = (of(|s| s.latency), of(|s| s.service));
            println!(
                "  paired {path}: {} requests, latency p50 {}us p90 {}us p99 {}us p99.9 {}us, service p50 {}us p99 {}us",
                latency.len(),
                percentile(&latency, 50.0),
                percentile(&latency, 90.0),
                percentile(&latency, 99.0),
                percentile(&latency, 99.9),
                percentile(&service, 50.0),
                percentile(&service, 99.0),
            );
        }
        type Measure = fn(&Sample) -> u32;
        let measures: [(&str, Measure); 2] = [("latency", |s| s.latency), ("service", |s| s.service)];
        for (what, value) in measures {
            for p in [50.0, 99.0] {
                let (d, lo, hi) = paired_difference(&t.paired, value, p);
                println!("  paired difference p{p} {what}: {d}us (95% CI {lo}us to {hi}us)");
            }
        }
    }
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

/// The difference between the `p`th percentiles of the two paths (the URL's minus
/// `--paired-path`'s) of `value`, and a 95% confidence interval for it from a paired block
/// bootstrap: [`RESAMPLES`] times, as many [`BLOCK`]s as were measured are drawn with
/// replacement, and the difference is taken over the requests of both paths in the drawn blocks.
fn paired_difference(samples: &[Sample], value: fn(&Sample) -> u32, p: f64) -> (i64, i64, i64) {
    let diff = |a: &mut Vec<u32>, b: &mut Vec<u32>| -> i64 {
        i64::from(nth_percentile(a, p)) - i64::from(nth_percentile(b, p))
    };
    let blocks = samples.iter().map(|s| s.block as usize + 1).max().unwrap_or(0);
    let mut by_block: Vec<[Vec<u32>; 2]> = vec![Default::default(); blocks];
    for s in samples {
        by_block[s.block as usize][s.which as usize & 1].push(value(s));
    }
    let (mut a, mut b): (Vec<u32>, Vec<u32>) = (Vec::new(), Vec::new());
    for [x, y] in &by_block {
        a.extend(x);
        b.extend(y);
    }
    let observed = diff(&mut a, &mut b);
    if blocks == 0 {
        return (0, 0, 0);
    }
    // splitmix64, seeded: the same samples give the same interval.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut diffs: Vec<i64> = (0..RESAMPLES)
        .map(|_| {
            a.clear();
            b.clear();
            for _ in 0..blocks {
                let [x, y] = &by_block[(next() % blocks as u64) as usize];
                a.extend(x);
                b.extend(y);
            }
            diff(&mut a, &mut b)
        })
        .collect();
    diffs.sort_unstable();
    let at = |q: f64| diffs[((q * RESAMPLES as f64) as usize).min(RESAMPLES - 1)];
    (observed, at(0.025), at(0.975))
}

/// The `p`th percentile (nearest rank) of unsorted values, reordering them.
fn nth_percentile(v: &mut [u32], p: f64) -> u32 {
    if v.is_empty() {
        return 0;
    }
    let i = ((p / 100.0) * v.len() as f64).ceil() as usize;
    *v.select_nth_unstable(i.clamp(1, v.len()) - 1).1
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
    fn a_paired_difference_is_found_with_an_interval_around_it() {
        // Path 0 is 100 us slower than path 1 in every block; block k is k * 1000 us slow for
        // both (a machine stall is the same for the two).
        let samples: Vec<Sample> = (0..200u32)
            .flat_map(|block| {
                (0..100u32).flat_map(move |i| {
                    let base = block * 1000 + i * 3;
                    [
                        Sample {
                            block,
                            which: 0,
                            latency: base + 100,
                            service: 0,
                        },
                        Sample {
                            block,
                            which: 1,
                            latency: base,
                            service: 0,
                        },
                    ]
                })
            })
            .collect();
        let (d, lo, hi) = paired_difference(&samples, |s| s.latency, 99.0);
        assert_eq!(d, 100);
        assert!(lo <= 100 && 100 <= hi, "{lo}..{hi}");
        // No difference at all: the interval is around zero, however large the stalls.
        let same: Vec<Sample> = samples
            .iter()
            .map(|s| Sample {
                latency: s.latency - 100 * u32::from(s.which == 0),
                ..*s
            })
            .collect();
        let (d, lo, hi) = paired_difference(&same, |s| s.latency, 99.0);
        assert_eq!(d, 0);
        assert!(lo <= 0 && 0 <= hi, "{lo}..{hi}");
        assert_eq!(paired_difference(&[], |s| s.latency, 99.0), (0, 0, 0));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<u32> = (1..=100).collect();
        assert_eq!(percentile(&v, 50.0), 50);
        assert_eq!(percentile(&v, 99.0), 99);
        assert_eq!(percentile(&v, 99.9), 100);
        assert_eq!(percentile(&[], 99.0), 0);
        let mut shuffled: Vec<u32> = (1..=100).rev().collect();
        assert_eq!(nth_percentile(&mut shuffled, 99.0), 99);
    }
}
