//! How clients reach the relay: raw WebSocket, SockJS, the HTTP API and the
//! web demo, all mounted on one listener, every route in one table
//! ([`routes`]).

pub mod admission;
pub mod connection;
pub mod forwarded;
pub mod http_api;
pub mod routes;
pub mod sockjs;
pub mod starting;
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

/// The decoded value of the first field `name` of form-encoded `text` (a
/// URL query, or a form body), read as browsers write it: `+` is a space,
/// `%XX` a byte, a name without `=` has an empty value, and bytes that are
/// not UTF-8 become U+FFFD.
pub fn form_value(text: &[u8], name: &str) -> Option<String> {
    form_urlencoded::parse(text).find_map(|(key, value)| (key == name).then(|| value.into_owned()))
}

/// The decoded value of `name` in a URL's query.
pub fn query_parameter(query: Option<&str>, name: &str) -> Option<String> {
    form_value(query?.as_bytes(), name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_fields_are_decoded() {
        assert_eq!(
            form_value(b"d=%5B%22x%22%5D", "d").as_deref(),
            Some("[\"x\"]")
        );
        assert_eq!(form_value(b"p=p", "d"), None);
        assert_eq!(form_value(b"d=", "d").as_deref(), Some(""));
        assert_eq!(form_value(b"d", "d").as_deref(), Some(""));
        assert_eq!(
            form_value(b"c=%63allback&c=x", "c").as_deref(),
            Some("callback")
        );
        assert_eq!(form_value(b"d=%FF", "d").as_deref(), Some("\u{FFFD}"));
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
