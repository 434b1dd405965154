//! Who the client is: the peer address, or the address a trusted proxy says it forwarded for.
//!
//! The rule is nginx's `real_ip_recursive on` and Envoy's trusted hops: `X-Forwarded-For` is
//! believed only when the peer is in `server.trusted_proxies`, and then read from the right,
//! skipping every address that is itself a trusted proxy; the first one that is not is the
//! client. Anything a client wrote further left is never believed.

use ipnet::IpNet;
use std::net::IpAddr;

/// `server.trusted_proxies`: the networks whose `X-Forwarded-For` is believed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses CIDRs (`10.0.0.0/8`, `fd00::/8`) and bare addresses (a /32 or /128 network).
    pub fn parse(entries: &[String]) -> Result<Self, Vec<String>> {
        let mut nets = Vec::with_capacity(entries.len());
        let mut problems = Vec::new();
        for e in entries {
            let e = e.trim();
            match e.parse::<IpNet>() {
                Ok(n) => nets.push(n.trunc()),
                Err(_) => match e.parse::<IpAddr>() {
                    Ok(a) => nets.push(IpNet::from(a)),
                    Err(_) => problems.push(format!("{e:?} is not a CIDR like \"10.0.0.0/8\" or an address")),
                },
            }
        }
        if problems.is_empty() {
            Ok(TrustedProxies(nets))
        } else {
            Err(problems)
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        self.0.iter().any(|n| n.contains(&addr))
    }
}

/// The client's address: `peer` itself unless it is a trusted proxy, else the rightmost address
/// of `forwarded_for` (the `X-Forwarded-For` field values, in order) that is not a trusted
/// proxy. An entry that is not an address stops the walk at the trusted hop that passed it on.
pub fn resolve<'a>(peer: IpAddr, trusted: &TrustedProxies, forwarded_for: impl Iterator<Item = &'a [u8]>) -> IpAddr {
    let peer = peer.to_canonical();
    if trusted.is_empty() || !trusted.contains(peer) {
        return peer;
    }
    let mut entries: Vec<&[u8]> = Vec::new();
    for value in forwarded_for {
        entries.extend(value.split(|&b| b == b',').map(<[u8]>::trim_ascii));
    }
    let mut client = peer;
    for entry in entries.iter().rev() {
        let Some(addr) = std::str::from_utf8(entry).ok().and_then(|s| s.parse::<IpAddr>().ok()) else {
            break;
        };
        client = addr.to_canonical();
        if !trusted.contains(client) {
            break;
        }
    }
    client
}

/// The peer address of a pingora session, if it is an IP socket.
pub fn peer_ip(session: &pingora::proxy::Session) -> Option<IpAddr> {
    session.client_addr().and_then(|a| a.as_inet()).map(|a| a.ip())
}

/// The client of a request as [`resolve`] finds it, from the session's peer and its
/// `X-Forwarded-For` fields.
pub fn of_request(session: &pingora::proxy::Session, trusted: &TrustedProxies) -> Option<IpAddr> {
    let peer = peer_ip(session)?;
    let xff = session.req_header().headers.get_all("x-forwarded-for");
    Some(resolve(peer, trusted, xff.iter().map(|v| v.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn trusted(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    fn client(peer: &str, t: &TrustedProxies, xff: &[&str]) -> String {
        resolve(ip(peer), t, xff.iter().map(|s| s.as_bytes())).to_string()
    }

    #[test]
    fn forwarded_for_is_ignored_from_a_peer_that_is_not_trusted() {
        let none = TrustedProxies::default();
        assert_eq!(client("198.51.100.7", &none, &["203.0.113.9"]), "198.51.100.7");
        let t = trusted(&["10.0.0.0/8"]);
        assert_eq!(client("198.51.100.7", &t, &["203.0.113.9"]), "198.51.100.7");
    }

    #[test]
    fn the_rightmost_address_that_is_not_a_trusted_proxy_is_the_client() {
        let t = trusted(&["10.0.0.0/8", "192.168.1.1"]);
        assert_eq!(client("10.1.2.3", &t, &["203.0.113.9"]), "203.0.113.9");
        // What the client wrote on the left is not believed.
        assert_eq!(
            client("10.1.2.3", &t, &["6.6.6.6, 203.0.113.9, 192.168.1.1"]),
            "203.0.113.9"
        );
        // Several fields read as one list, in order.
        assert_eq!(
            client("10.1.2.3", &t, &["6.6.6.6", "203.0.113.9,10.9.9.9"]),
            "203.0.113.9"
        );
        // Every hop trusted: the leftmost is the client.
        assert_eq!(client("10.1.2.3", &t, &["10.0.0.1, 10.0.0.2"]), "10.0.0.1");
        // No header: the proxy itself.
        assert_eq!(client("10.1.2.3", &t, &[]), "10.1.2.3");
        // Garbage stops the walk at the trusted hop that passed it on.
        assert_eq!(client("10.1.2.3", &t, &["203.0.113.9, junk, 10.0.0.5"]), "10.0.0.5");
        assert_eq!(client("10.1.2.3", &t, &["unknown"]), "10.1.2.3");
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let t = trusted(&["fd00::/8", "127.0.0.1/32"]);
        assert_eq!(client("fd00::1", &t, &["2001:db8::5"]), "2001:db8::5");
        assert_eq!(client("::ffff:127.0.0.1", &t, &["203.0.113.9"]), "203.0.113.9");
        assert_eq!(client("::ffff:198.51.100.1", &t, &["203.0.113.9"]), "198.51.100.1");
    }

    #[test]
    fn bad_entries_are_each_named() {
        let e = TrustedProxies::parse(&["10.0.0.0/8".into(), "nope".into(), "1.2.3.4/40".into()]).unwrap_err();
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[0].contains("nope"));
        assert!(
            trusted(&["10.1.2.3/8"]).contains(ip("10.200.0.1")),
            "host bits are ignored"
        );
    }
}
