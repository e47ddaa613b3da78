//! How clients reach the relay: raw WebSocket, SockJS, the HTTP API and the
//! web demo, all mounted on one listener.

pub mod admission;
pub mod connection;
pub mod http_api;
pub mod sockjs;
pub mod web_demo;
pub mod websocket;

use bytes::Bytes;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;

/// An error a response body may end with.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The body of every answer the node gives: warp's replies, WebSocket
/// upgrades, and SockJS's streaming responses, which warp's own body type
/// cannot carry.
pub type Body = UnsyncBoxBody<Bytes, BoxError>;

/// Every answer the node gives.
pub type Response = http::Response<Body>;

/// A whole body of bytes.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    http_body_util::Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A warp reply as one of the node's answers.
pub fn from_warp(response: warp::reply::Response) -> Response {
    response.map(|body| body.map_err(BoxError::from).boxed_unsync())
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
