//! Who a request really comes from when it came through a proxy the
//! operator trusts (`--trusted-proxies`): the address that proxy, and any
//! trusted one before it, wrote into `Forwarded` (RFC 7239) or
//! `X-Forwarded-For`. From any other peer those headers are the client's
//! own words and are ignored, so that no client can pass for another
//! address.

use std::net::IpAddr;
use std::sync::Arc;

use http::HeaderMap;
use ipnet::IpNet;

/// The proxies whose forwarding headers are believed.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Arc<[IpNet]>);

/// One `--trusted-proxies` entry: an address or a network (`10.0.0.7`,
/// `10.0.0.0/8`, `::1`).
pub fn parse_network(entry: &str) -> Result<IpNet, String> {
    let entry = entry.trim();
    entry
        .parse::<IpNet>()
        .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("{entry:?} is not an IP address or network"))
}

impl TrustedProxies {
    pub fn new(networks: &[IpNet]) -> TrustedProxies {
        TrustedProxies(networks.into())
    }

    pub fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(&address))
    }

    /// The client a request from `peer` comes from: with a trusted `peer`,
    /// the nearest address in its forwarding headers that is not a trusted
    /// proxy itself (the farthest one if all are); otherwise `peer`.
    pub fn client_of(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let chain = forwarded_for(headers);
        chain
            .iter()
            .rev()
            .find(|address| !self.trusts(**address))
            .or(chain.first())
            .copied()
            .unwrap_or(peer)
    }
}

/// The addresses a request was forwarded for, farthest first: from
/// `Forwarded` if it has any, else from `X-Forwarded-For`. Entries that
/// are no address (`unknown`, obfuscated names) end the chain there, since
/// nothing before them can be placed.
fn forwarded_for(headers: &HeaderMap) -> Vec<IpAddr> {
    let values = |name| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect::<Vec<_>>()
    };
    let forwarded: Vec<&str> = values(http::header::FORWARDED)
        .into_iter()
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (name, value) = pair.trim().split_once('=')?;
                name.eq_ignore_ascii_case("for").then_some(value)
            })
        })
        .collect();
    let entries = if forwarded.is_empty() {
        values(http::HeaderName::from_static("x-forwarded-for"))
    } else {
        forwarded
    };
    let mut chain: Vec<IpAddr> = Vec::new();
    for entry in entries {
        match address_of(entry) {
            Some(address) => chain.push(address),
            None => chain.clear(),
        }
    }
    chain
}

/// The address of one entry: `192.0.2.60`, `"[2001:db8::17]:4711"`,
/// `192.0.2.60:8080`.
fn address_of(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim().trim_matches('"');
    if let Ok(address) = entry.parse() {
        return Some(address);
    }
    if let Some(bracketed) = entry.strip_prefix('[') {
        return bracketed.split(']').next()?.parse().ok();
    }
    let (host, _port) = entry.rsplit_once(':')?;
    host.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (http::HeaderName::from_static(name), value.parse().unwrap()))
            .collect()
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn only_a_trusted_peer_is_believed() {
        let networks = [
            parse_network("10.0.0.0/8").unwrap(),
            parse_network(" ::1 ").unwrap(),
        ];
        let proxies = TrustedProxies::new(&networks);
        let forwarded = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert_eq!(
            proxies.client_of(ip("10.1.2.3"), &forwarded),
            ip("203.0.113.9")
        );
        assert_eq!(proxies.client_of(ip("::1"), &forwarded), ip("203.0.113.9"));
        assert_eq!(
            proxies.client_of(ip("198.51.100.1"), &forwarded),
            ip("198.51.100.1"),
            "an untrusted peer's header is its own word"
        );
        assert_eq!(
            proxies.client_of(ip("10.1.2.3"), &HeaderMap::new()),
            ip("10.1.2.3")
        );
        assert!(parse_network("nginx").is_err());
    }

    #[test]
    fn the_nearest_untrusted_address_is_the_client() {
        let proxies = TrustedProxies::new(&[parse_network("10.0.0.0/8").unwrap()]);
        // A client's forged first entry is before the real one.
        let chain = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9, 10.0.0.2")]);
        assert_eq!(proxies.client_of(ip("10.0.0.1"), &chain), ip("203.0.113.9"));
        let forwarded = headers(&[(
            "forwarded",
            "for=1.2.3.4, for=\"[2001:db8::17]:4711\";proto=https, for=10.0.0.2",
        )]);
        assert_eq!(
            proxies.client_of(ip("10.0.0.1"), &forwarded),
            ip("2001:db8::17")
        );
        let inside = headers(&[("x-forwarded-for", "10.0.0.9")]);
        assert_eq!(proxies.client_of(ip("10.0.0.1"), &inside), ip("10.0.0.9"));
        let unknown = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(proxies.client_of(ip("10.0.0.1"), &unknown), ip("10.0.0.1"));
    }
}
