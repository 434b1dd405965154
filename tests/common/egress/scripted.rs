//! A real HTTP/1.1 upstream whose answers a test scripts: a queue of statuses to answer next
//! (200 once it is empty), and a record of every request it read (target, Authorization, body
//! length), so a test can see what tollgate sent and how often.

use serde_json::json;
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// One request as the upstream read it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub authorization: Vec<String>,
    pub host: String,
    pub body_len: usize,
}

pub struct Scripted {
    pub addr: SocketAddr,
    answers: Arc<Mutex<VecDeque<u16>>>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Scripted {
    pub fn start() -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let answers = Arc::new(Mutex::new(VecDeque::new()));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (a, s) = (answers.clone(), seen.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (a, s) = (a.clone(), s.clone());
                std::thread::spawn(move || {
                    let _ = serve(conn, &a, &s);
                });
            }
        });
        Scripted { addr, answers, seen }
    }

    /// Answers the next requests with these statuses, in order.
    pub fn answer(&self, statuses: &[u16]) {
        self.answers.lock().unwrap().extend(statuses);
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(conn: TcpStream, answers: &Mutex<VecDeque<u16>>, seen: &Mutex<Vec<Seen>>) -> std::io::Result<()> {
    let mut w = conn.try_clone()?;
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let (mut authorization, mut host, mut length, mut chunked) = (Vec::new(), String::new(), 0usize, false);
        loop {
            let mut h = String::new();
            r.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let Some((k, v)) = h.split_once(':') else { continue };
            let v = v.trim().to_string();
            match k.trim().to_ascii_lowercase().as_str() {
                "authorization" => authorization.push(v),
                "host" => host = v,
                "content-length" => length = v.parse().unwrap_or(0),
                "transfer-encoding" => chunked = v.eq_ignore_ascii_case("chunked"),
                _ => {}
            }
        }
        let body_len = if chunked {
            read_chunked(&mut r)?
        } else {
            skip(&mut r, length)?
        };
        let status = answers.lock().unwrap().pop_front().unwrap_or(200);
        seen.lock().unwrap().push(Seen {
            method,
            target: target.clone(),
            authorization: authorization.clone(),
            host,
            body_len,
        });
        let body = json!({"status": status, "target": target, "authorization": authorization, "body_len": body_len})
            .to_string();
        let challenge = if status == 401 {
            "www-authenticate: Bearer error=\"invalid_token\"\r\n"
        } else {
            ""
        };
        write!(
            w,
            "HTTP/1.1 {status} Scripted\r\ncontent-type: application/json\r\n{challenge}content-length: {}\r\n\r\n{body}",
            body.len()
        )?;
        w.flush()?;
    }
}

fn skip(r: &mut impl Read, n: usize) -> std::io::Result<usize> {
    std::io::copy(&mut r.take(n as u64), &mut std::io::sink()).map(|n| n as usize)
}

fn read_chunked(r: &mut BufReader<TcpStream>) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let mut size = String::new();
        r.read_line(&mut size)?;
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16).unwrap_or(0);
        if n == 0 {
            let mut end = String::new();
            r.read_line(&mut end)?;
            return Ok(total);
        }
        total += skip(r, n)?;
        let mut crlf = String::new();
        r.read_line(&mut crlf)?;
    }
}
