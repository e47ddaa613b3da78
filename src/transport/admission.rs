//! Which TCP connections the node lets in: at most so many in all and so
//! many from one address (`--max-connections`, `--max-connections-per-ip`),
//! so that one client, or a crowd, cannot take every socket of the node.
//! A connection past a limit is answered with a 503 and closed. A trusted
//! proxy's connections count in all only: each request through it counts
//! for the client it was forwarded for instead, while it lasts (an upgraded
//! WebSocket, for its session). And which pages may open sessions
//! (`--allowed-origins`): others get a 403.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use http::{HeaderMap, StatusCode, header};
use parking_lot::Mutex;

use super::{Response, full};

/// The limits (0: none) and the connections counted against them.
#[derive(Debug)]
pub struct Admission {
    max_total: usize,
    max_per_address: usize,
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the server has too many connections")]
    Total,
    #[error("too many connections from your address")]
    PerAddress,
}

/// Holds one connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct Ticket {
    admission: Arc<Admission>,
    /// Counted in all.
    total: bool,
    /// Counted for this address.
    address: Option<IpAddr>,
}

/// The place of the client a trusted proxy forwarded a request for, held
/// beside the proxy connection's [`Ticket`].
#[derive(Debug)]
pub struct ForwardedTicket(pub Ticket);

impl Admission {
    pub fn new(max_total: usize, max_per_address: usize) -> Arc<Admission> {
        Arc::new(Admission {
            max_total,
            max_per_address,
            open: Mutex::default(),
        })
    }

    /// A place for a connection from `address`, if the limits allow one.
    pub fn admit(self: &Arc<Self>, address: IpAddr) -> Result<Ticket, Refusal> {
        self.take(true, Some(address))
    }

    /// A place for a trusted proxy's connection: in all only, since every
    /// client behind it shares its address.
    pub fn admit_proxy(self: &Arc<Self>) -> Result<Ticket, Refusal> {
        self.take(true, None)
    }

    /// A place for the client a trusted proxy forwarded a request for.
    pub fn admit_forwarded(self: &Arc<Self>, client: IpAddr) -> Result<ForwardedTicket, Refusal> {
        self.take(false, Some(client)).map(ForwardedTicket)
    }

    fn take(self: &Arc<Self>, total: bool, address: Option<IpAddr>) -> Result<Ticket, Refusal> {
        let mut open = self.open.lock();
        if total && self.max_total != 0 && open.total >= self.max_total {
            return Err(Refusal::Total);
        }
        if let Some(address) = address {
            let from_address = open.by_address.get(&address).copied().unwrap_or(0);
            if self.max_per_address != 0 && from_address >= self.max_per_address {
                return Err(Refusal::PerAddress);
            }
            open.by_address.insert(address, from_address + 1);
        }
        if total {
            open.total += 1;
        }
        Ok(Ticket {
            admission: self.clone(),
            total,
            address,
        })
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut open = self.admission.open.lock();
        if self.total {
            open.total = open.total.saturating_sub(1);
        }
        if let Some(address) = &self.address
            && let Some(count) = open.by_address.get_mut(address)
        {
            *count -= 1;
            if *count == 0 {
                open.by_address.remove(address);
            }
        }
    }
}

/// The answer to a request turned away (one a proxy forwarded).
pub fn refused(refusal: Refusal) -> Response {
    let mut response = Response::new(full(format!("{refusal}\n")));
    *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, http::HeaderValue::from_static("5"));
    response
}

/// The whole answer to a connection turned away.
pub fn refusal_response(refusal: Refusal) -> Vec<u8> {
    let body = format!("{refusal}\n");
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\nretry-after: 5\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The origins whose pages may open sessions (`--allowed-origins`; none
/// listed: any). A browser names the page's origin in `Origin` on WebSocket
/// upgrades and cross-origin requests, so a page elsewhere cannot borrow
/// its visitor's cookies or network position to open sessions here.
/// Requests without `Origin` come from no page (tools, services) and pass.
#[derive(Debug, Clone)]
pub struct AllowedOrigins(Arc<[String]>);

impl AllowedOrigins {
    pub fn new(origins: &[String]) -> AllowedOrigins {
        AllowedOrigins(origins.into())
    }

    /// Whether a request with these headers may open sessions.
    pub fn allow(&self, headers: &HeaderMap) -> bool {
        if self.0.is_empty() {
            return true;
        }
        match headers.get(header::ORIGIN) {
            None => true,
            Some(origin) => origin
                .to_str()
                .is_ok_and(|origin| self.0.iter().any(|allowed| allowed == origin)),
        }
    }

    /// The 403 for a request whose page may not open sessions; `None` when
    /// it may.
    pub fn refusal(&self, headers: &HeaderMap) -> Option<Response> {
        if self.allow(headers) {
            return None;
        }
        let mut response = Response::new(full(
            "this page's origin may not connect to this relay (--allowed-origins)",
        ));
        *response.status_mut() = StatusCode::FORBIDDEN;
        Some(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_origins_or_none_may_open_sessions() {
        let with_origin = |origin: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ORIGIN, origin.parse().unwrap());
            headers
        };
        let listed = AllowedOrigins::new(&["https://good.example".to_owned()]);
        assert!(listed.allow(&with_origin("https://good.example")));
        assert!(listed.allow(&HeaderMap::new()), "no page, no Origin");
        assert!(!listed.allow(&with_origin("https://evil.example")));
        let refusal = listed.refusal(&with_origin("https://evil.example"));
        assert_eq!(refusal.map(|r| r.status()), Some(StatusCode::FORBIDDEN));
        let any = AllowedOrigins::new(&[]);
        assert!(any.allow(&with_origin("https://evil.example")));
    }

    #[test]
    fn places_are_counted_per_address_and_in_all_and_freed() {
        let admission = Admission::new(3, 2);
        let (a, b): (IpAddr, IpAddr) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = admission.admit(a).unwrap();
        let _second = admission.admit(a).unwrap();
        assert_eq!(admission.admit(a).unwrap_err(), Refusal::PerAddress);
        let _third = admission.admit(b).unwrap();
        assert_eq!(admission.admit(b).unwrap_err(), Refusal::Total);
        drop(first);
        assert!(admission.admit(a).is_ok());
        assert!(Admission::new(0, 0).admit(a).is_ok(), "0 is no limit");
    }

    #[test]
    fn a_proxy_counts_in_all_and_its_clients_each_for_their_own_address() {
        let (proxy, client): (IpAddr, IpAddr) =
            ("10.0.0.1".parse().unwrap(), "203.0.113.9".parse().unwrap());
        let admission = Admission::new(3, 1);
        let first = admission.admit_proxy().unwrap();
        let _second = admission.admit_proxy().unwrap();
        let forwarded = admission.admit_forwarded(client).unwrap();
        assert_eq!(
            admission.admit_forwarded(client).unwrap_err(),
            Refusal::PerAddress
        );
        assert!(
            admission.admit(proxy).is_ok(),
            "forwarded clients are not in the total"
        );
        drop((first, forwarded));
        assert!(admission.admit_forwarded(client).is_ok());
    }
}
