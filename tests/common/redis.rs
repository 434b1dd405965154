//! A real `redis-server` for tests: started on a free port with no persistence, ready when it
//! answers PING, stopped by PID (and restartable on the same port).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Redis {
    /// The plain-text port (pings and [`Redis::command`] use it, TLS or not).
    pub addr: SocketAddr,
    child: Option<Child>,
    tls: Option<Tls>,
}

/// A TLS port beside the plain one, with the certificate files it serves.
struct Tls {
    port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    pub fn start() -> Redis {
        let addr = super::dead_addr();
        let mut r = Redis {
            addr,
            child: None,
            tls: None,
        };
        r.restart();
        r
    }

    /// A server that also speaks TLS, on a second port, with `pki`'s `localhost` certificate.
    pub fn start_tls(pki: &super::Pki) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        for (name, pem) in [
            ("cert.pem", &pki.cert_pem),
            ("key.pem", &pki.key_pem),
            ("ca.pem", &pki.ca_pem),
        ] {
            std::fs::write(dir.path().join(name), pem).unwrap();
        }
        let mut r = Redis {
            addr: super::dead_addr(),
            child: None,
            tls: Some(Tls {
                port: super::dead_addr().port(),
                dir,
            }),
        };
        r.restart();
        r
    }

    /// The TLS port's URL, named as its certificate names it.
    pub fn tls_url(&self) -> String {
        let tls = self.tls.as_ref().expect("started with start_tls");
        format!("rediss://localhost:{}/0", tls.port)
    }

    pub fn url(&self) -> String {
        format!("redis://{}/0", self.addr)
    }

    /// (Re)starts the server on its port and waits until it answers PING.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &self.addr.port().to_string()])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"]);
        if let Some(tls) = &self.tls {
            let file = |name: &str| tls.dir.path().join(name).to_string_lossy().into_owned();
            cmd.args(["--tls-port", &tls.port.to_string(), "--tls-auth-clients", "no"])
                .args(["--tls-cert-file", &file("cert.pem"), "--tls-key-file", &file("key.pem")])
                .args(["--tls-ca-cert-file", &file("ca.pem")]);
        }
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (scripts/ensure-tools.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.pings() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING on {}",
                self.addr
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Kills the server (SIGKILL, by PID) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn pings(&self) -> bool {
        let Ok(mut s) = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 16];
        s.write_all(b"PING\r\n").is_ok() && s.read(&mut buf).is_ok_and(|n| buf[..n].starts_with(b"+PONG"))
    }

    /// One command in RESP, its raw answer (for tests that look at what tollgate stored).
    pub fn command(&self, args: &[&str]) -> String {
        let mut s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
        let mut req = format!("*{}\r\n", args.len());
        for a in args {
            req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        s.write_all(req.as_bytes()).unwrap();
        let mut buf = vec![0u8; 65536];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).to_string()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
