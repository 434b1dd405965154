//! A tiny upstream for the demo: answers every request with JSON naming the method, path and
//! the X-Auth-* identity headers tollgate added. Usage: echo_upstream [ADDR] (default 127.0.0.1:9000).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;

fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9000".into());
    let listener = TcpListener::bind(&addr)?;
    for stream in listener.incoming().flatten() {
        std::thread::spawn(move || {
            let _ = serve(stream);
        });
    }
    Ok(())
}

fn serve(stream: std::net::TcpStream) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut w = stream.try_clone()?;
    let mut r = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_string(),
            parts.next().unwrap_or("").to_string(),
        );
        let mut auth = Vec::new();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            r.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                if k == "content-length" {
                    len = v.trim().parse().unwrap_or(0);
                }
                if k.starts_with("x-auth-") {
                    auth.push(format!("{:?}:{:?}", k, v.trim()));
                }
            }
        }
        std::io::copy(&mut (&mut r).take(len as u64), &mut std::io::sink())?;
        let body = format!(
            "{{\"method\":{method:?},\"path\":{path:?},\"identity\":{{{}}}}}\n",
            auth.join(",")
        );
        let resp = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        // One write, no Nagle: a response split over segments would wait out delayed ACKs.
        w.write_all(resp.as_bytes())?;
    }
}
