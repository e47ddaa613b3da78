//! The body of a request that sends a message: `application/json`, at most
//! [`MAX_BODY`] bytes, a JSON object.

use bytes::Bytes;
use http::header;
use http_body_util::{BodyExt, Limited};

use super::errors::ApiError;
use crate::transport::RequestBody;

/// Largest request body the API reads.
pub const MAX_BODY: usize = 64 * 1024;

/// A request's body: `application/json`, at most [`MAX_BODY`] bytes,
/// whether its length was given or it came chunked.
pub async fn json_body(request: http::Request<RequestBody>) -> Result<Bytes, ApiError> {
    let headers = request.headers();
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return Err(ApiError::NotJson);
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|length| length > MAX_BODY as u64) {
        return Err(ApiError::BodyTooLarge);
    }
    match Limited::new(request.into_body(), MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => Err(ApiError::BodyTooLarge),
        Err(_) => Err(ApiError::BodyUnreadable),
    }
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
}
