//! Binds every listening socket before pingora starts; stands in for pingora's own binding in
//! `ListenerEndpointBuilder::listen` / `bind_tcp` (pingora-core `listeners/l4.rs`).
//!
//! Why: pingora binds when a service starts, on that service's thread, after `Server::run` has
//! begun, and retries a port in use thirty times a second apart; tollgate must know its ports
//! (port 0 becomes a concrete port that the issuer and the listening line name) and fail start-up
//! on a held port before it prints the line. It also binds one SO_REUSEPORT socket per worker for
//! the same address, which pingora's fd table (one fd per address string) cannot hold.
//!
//! On a pingora upgrade, re-check: that `ListenerEndpointBuilder::listen` still takes a socket
//! from the fd table handed to `start_service` instead of binding (see [`prebind`] and
//! `prebound.rs`), keyed by the address's `to_string()`; and pingora's listen backlog (65535),
//! which [`bind`] copies.

use pingora::server::{Fds, ListenFds};
use std::net::{SocketAddr, TcpListener};
use std::os::fd::IntoRawFd;
use std::sync::Arc;

/// The listening sockets of one configured address, all bound to `addr`: one per worker with
/// SO_REUSEPORT (the kernel spreads connections over them), or one alone.
pub struct Bound {
    pub addr: SocketAddr,
    pub sockets: Vec<TcpListener>,
}

/// Binds `addr` `count` times, before pingora starts, so the startup line is printed only once
/// every port is held, and a failed bind is a start-up error, not pingora's thirty one-second
/// retries on a service thread. A port-0 address becomes a concrete free port, which the issuer
/// and the startup line name.
///
/// With SO_REUSEPORT the address is first bound once without it: a port another process holds
/// (another tollgate included, whose workers use SO_REUSEPORT) fails start-up instead of being
/// shared. That probe is closed before the workers bind, so a free port it found may be taken
/// by another process in between; the port is then chosen again, up to five times. A single
/// socket without SO_REUSEPORT (the admin port, or one runtime for all) is bound once and kept.
pub fn bind_address(key: &str, addr: SocketAddr, count: usize, reuseport: bool) -> Result<Bound, String> {
    const ATTEMPTS: usize = 5;
    let attempt = || -> std::io::Result<Bound> {
        if !reuseport {
            let socket = bind(addr, false)?;
            return Ok(Bound {
                addr: socket.local_addr()?,
                sockets: vec![socket],
            });
        }
        let concrete = probe(addr)?;
        let sockets = (0..count.max(1))
            .map(|_| bind(concrete, true))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Bound {
            addr: concrete,
            sockets,
        })
    };
    let mut tries = 1;
    loop {
        match attempt() {
            Err(e) if addr.port() == 0 && e.kind() == std::io::ErrorKind::AddrInUse && tries < ATTEMPTS => tries += 1,
            result => return result.map_err(|e| format!("{key}: {e}")),
        }
    }
}

/// Binds `addr` without SO_REUSEPORT and without listening, and returns the address bound: the
/// port is free unless this fails. A listening probe could take a client's SYN and then close,
/// and the client would wait out its 1 s SYN retransmission before reaching the workers.
fn probe(addr: SocketAddr) -> std::io::Result<SocketAddr> {
    socket_bound_to(addr, false)?
        .local_addr()?
        .as_socket()
        .ok_or_else(|| std::io::Error::other("not an inet socket"))
}

/// One listening socket: SO_REUSEADDR, SO_REUSEPORT if asked, non-blocking, backlog 65535.
fn bind(addr: SocketAddr, reuseport: bool) -> std::io::Result<TcpListener> {
    let s = socket_bound_to(addr, reuseport)?;
    s.set_nonblocking(true)?;
    s.listen(65535)?;
    Ok(s.into())
}

/// A TCP socket bound to `addr` with SO_REUSEADDR, and SO_REUSEPORT if asked; not listening.
fn socket_bound_to(addr: SocketAddr, reuseport: bool) -> std::io::Result<socket2::Socket> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(reuseport)?;
    s.bind(&addr.into())?;
    Ok(s)
}

/// A socket bound by [`bind_address`], handed to a pingora listening service through its own fd
/// table (pingora takes a socket from the table instead of binding when the address is in it).
pub fn prebind(addr: SocketAddr, socket: TcpListener) -> ListenFds {
    let mut fds = Fds::new();
    fds.add(addr.to_string(), socket.into_raw_fd());
    Arc::new(parking_lot::Mutex::new(fds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_bound_once_per_worker_and_a_held_port_fails() {
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let workers = bind_address("server.listen", any, 3, true).unwrap();
        assert_ne!(workers.addr.port(), 0);
        assert_eq!(workers.sockets.len(), 3);
        for s in &workers.sockets {
            assert_eq!(s.local_addr().unwrap(), workers.addr);
        }
        // Held by reuseport sockets of this process: another start on that port is refused.
        let err = bind_address("server.listen", workers.addr, 2, true).err().unwrap();
        assert!(err.starts_with("server.listen: "), "{err}");
        // Held by another program's plain listener: refused too.
        let other = TcpListener::bind(any).unwrap();
        assert!(bind_address("server.listen", other.local_addr().unwrap(), 2, true).is_err());
        // One socket alone, kept: the port it names is held until it is dropped.
        let admin = bind_address("server.admin_listen", any, 1, false).unwrap();
        assert_eq!(admin.sockets.len(), 1);
        assert!(TcpListener::bind(admin.addr).is_err(), "the admin port is held");
        let err = bind_address("server.admin_listen", admin.addr, 1, false).err().unwrap();
        assert!(err.starts_with("server.admin_listen: "), "{err}");
    }
}
