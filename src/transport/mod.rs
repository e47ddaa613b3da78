//! How clients reach the relay: raw WebSocket, SockJS, the HTTP API and the
//! web demo, all mounted on one listener, every route in one table
//! ([`routes`]).

pub mod admission;
pub mod connection;
pub mod forwarded;
pub mod http_api;
pub mod routes;
pub mod sockjs;
pub mod web_demo;
pub mod websocket;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;

/// Every answer the node gives: warp's, whose body also carries SockJS's
/// streams and WebSocket upgrades.
pub type Response = warp::reply::Response;

/// The body of a request that a handler reads itself (SockJS's
/// `xhr_send`), rather than through warp's body filters (see
/// `whole_request` in [`routes`]). Its error is warp's own, a concrete type: a
/// boxed `dyn Error` here makes the futures that read it fail to prove
/// themselves `Send` (the compiler loses the box's `'static`).
pub type RequestBody = UnsyncBoxBody<Bytes, warp::Error>;

/// A whole body of bytes, for [`Response::new`] (warp's body type has no
/// name outside warp: this lets the compiler find it).
pub fn full<B: From<Bytes>>(bytes: impl Into<Bytes>) -> B {
    B::from(bytes.into())
}

/// The decoded value of `name` in form-encoded `text` (a URL query, or a
/// form body): `+` is a space, `%XX` a byte, a name without `=` has an
/// empty value.
pub fn form_value(text: &[u8], name: &str) -> Option<Vec<u8>> {
    text.split(|&b| b == b'&').find_map(|pair| {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &b""[..]),
        };
        (key == name.as_bytes()).then(|| {
            let spaced: Vec<u8> = value
                .iter()
                .map(|&b| if b == b'+' { b' ' } else { b })
                .collect();
            percent_encoding::percent_decode(&spaced).collect()
        })
    })
}

/// The decoded value of `name` in a URL's query, as text.
pub fn query_parameter(query: Option<&str>, name: &str) -> Option<String> {
    form_value(query?.as_bytes(), name).map(|value| String::from_utf8_lossy(&value).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_decoded() {
        assert_eq!(
            form_value(b"d=%5B%22x%22%5D", "d"),
            Some(b"[\"x\"]".to_vec())
        );
        assert_eq!(form_value(b"p=p", "d"), None);
        assert_eq!(form_value(b"d=", "d"), Some(Vec::new()));
        assert_eq!(form_value(b"c=%63allback", "c"), Some(b"callback".to_vec()));
    }

    #[test]
    fn query_parameters_are_text() {
        let query = Some("a=1&access_token=x.y%2Bz+w");
        assert_eq!(
            query_parameter(query, "access_token").as_deref(),
            Some("x.y+z w")
        );
        assert_eq!(query_parameter(query, "b"), None);
        assert_eq!(query_parameter(None, "a"), None);
    }
}
