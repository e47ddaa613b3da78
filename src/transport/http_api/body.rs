//! The body of a request that sends a message: `application/json`, at most
//! [`MAX_BODY`] bytes, a JSON object.

use std::future::ready;
use std::pin::pin;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use futures_util::{Stream, StreamExt};
use warp::reject::{LengthRequired, PayloadTooLarge};
use warp::{Filter, Rejection};

use super::errors::ApiError;

/// Largest request body the API reads.
pub const MAX_BODY: usize = 64 * 1024;

/// A request's body, for a route that takes one: sent as
/// `application/json` (415 otherwise), at most [`MAX_BODY`] bytes whether
/// its length was given or it came chunked (413 otherwise), read whole
/// (400 otherwise).
pub fn json() -> impl Filter<Extract = (Bytes,), Error = Rejection> + Clone {
    json_media_type()
        .and(declared_length())
        .and(warp::body::stream())
        .and_then(read_whole)
}

/// Requests that say their body is JSON. The media type is compared as the
/// API always has, before any `;` and in any case, whatever the parameters
/// say: a media-type parser (warp's `json`, `headers::ContentType`) would
/// refuse some the API takes, and warp's `json` takes a body with no
/// `Content-Type` at all.
fn json_media_type() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::header::optional::<String>("content-type")
        // A value that is not text names no media type.
        .or_else(|_| ready(Ok::<_, Rejection>((None,))))
        .and_then(|content_type: Option<String>| {
            ready(if content_type.as_deref().is_some_and(is_json) {
                Ok(())
            } else {
                Err(warp::reject::custom(ApiError::NotJson))
            })
        })
        .untuple_one()
}

fn is_json(content_type: &str) -> bool {
    content_type
        .split(';')
        .next()
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

/// Refuses a body whose declared length is over [`MAX_BODY`] before any of
/// it is read. A body without one (chunked), which warp's limit refuses
/// with 411, is let through to be counted as it is read.
fn declared_length() -> impl Filter<Extract = (), Error = Rejection> + Clone {
    warp::body::content_length_limit(MAX_BODY as u64).or_else(|rejection: Rejection| {
        ready(if rejection.find::<LengthRequired>().is_some() {
            Ok(())
        } else if rejection.find::<PayloadTooLarge>().is_some() {
            Err(warp::reject::custom(ApiError::BodyTooLarge(MAX_BODY)))
        } else {
            Err(rejection)
        })
    })
}

/// The whole body, counted as it arrives: one over [`MAX_BODY`] is refused
/// without reading the rest (warp's `bytes` would read it all).
async fn read_whole<B: Buf>(
    chunks: impl Stream<Item = Result<B, warp::Error>>,
) -> Result<Bytes, Rejection> {
    let mut chunks = pin!(chunks);
    let mut body = BytesMut::new();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|_| warp::reject::custom(ApiError::BodyUnreadable))?;
        if body.len() + chunk.remaining() > MAX_BODY {
            return Err(warp::reject::custom(ApiError::BodyTooLarge(MAX_BODY)));
        }
        body.put(chunk);
    }
    Ok(body.freeze())
}

/// A body as `T`: a JSON object, nothing else (serde would read a struct
/// from an array by position).
pub fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, ApiError> {
    let first = body
        .iter()
        .find(|byte| !matches!(byte, b' ' | b'\t' | b'\n' | b'\r'));
    if first != Some(&b'{') {
        return Err(ApiError::NotAnObject);
    }
    serde_json::from_slice(body).map_err(ApiError::InvalidJson)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    struct Body {
        #[serde(rename = "body")]
        _body: serde_json::Value,
    }

    #[test]
    fn only_json_objects_are_bodies() {
        for body in [
            r#"["notifications","hi",{},true]"#,
            "[null]",
            "1",
            r#""x""#,
            "",
        ] {
            let parsed: Result<Body, ApiError> = parse(&Bytes::from(body));
            assert!(parsed.is_err(), "{body}");
        }
        let parsed: Result<Body, ApiError> = parse(&Bytes::from(r#" {"body": 1}"#));
        assert!(parsed.is_ok());
    }

    #[test]
    fn json_is_the_media_type_before_any_parameter_in_any_case() {
        for json in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            " application/json ;charset",
        ] {
            assert!(is_json(json), "{json}");
        }
        for other in [
            "text/plain",
            "application/json-seq",
            "application/x-www-form-urlencoded",
            "",
        ] {
            assert!(!is_json(other), "{other}");
        }
    }
}
