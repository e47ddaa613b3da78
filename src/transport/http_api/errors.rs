//! Why the API refuses a request, and how it says so: `{"error": "..."}`
//! with the status the refusal calls for.

use std::fmt;

use http::{HeaderValue, StatusCode, header};
use warp::Reply;

use crate::auth::InvalidUserName;
use crate::broker::destination::DestinationError;
use crate::error::{Chain, ClientText};
use crate::transport::Response;

/// A refusal of an API request. Each names what was wrong in words the
/// caller can act on; the variant decides the status (and the header that
/// goes with a 401 or a 405).
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("no such API route")]
    NoRoute,
    #[error("the path is not valid percent-encoded UTF-8")]
    BadPathSegment,
    #[error(
        "a valid 'Authorization' is required: Bearer with the API token, or a login holding the API role (with no --api-token, loopback clients need none)"
    )]
    Unauthenticated,
    #[error(
        "a web page may not use the API unless its origin is in --allowed-origins or it holds a token"
    )]
    CrossSite,
    #[error("this route answers {0}")]
    MethodNotAllowed(Methods),
    #[error("the body must be sent as 'Content-Type: application/json'")]
    NotJson,
    /// The limit it is over.
    #[error("the body is larger than {0} bytes")]
    BodyTooLarge(usize),
    #[error("the body could not be read whole")]
    BodyUnreadable,
    /// serde would read a struct from an array by position: only an
    /// object is a body.
    #[error("invalid JSON body: expected an object")]
    NotAnObject,
    #[error("invalid JSON body: {0}")]
    InvalidJson(serde_json::Error),
    #[error("{0:?} is not a user name: {1}")]
    BadUserName(String, InvalidUserName),
    #[error("destination {0:?} is not /user/queue/{{name}}, /user/topic/{{name}} or {{name}}")]
    NotAUserDestination(String),
    /// A header no STOMP version could carry: refused before anything is
    /// sent.
    #[error("header {0:?} cannot be sent: {1}")]
    UnportableHeader(String, &'static str),
    #[error("at most {0} users at a time")]
    TooManyUsers(usize),
    #[error("persist keeps messages for named users; \"all\" means those connected now")]
    PersistForEveryone,
    #[error("give either \"users\": [...] or \"all\": true")]
    NoRecipients,
    #[error("{0}")]
    BadTopic(DestinationError),
    #[error("{0} is not a topic")]
    NotATopic(String),
    /// The registry, the broker or the offline store could not do the
    /// work: the caller is told the error's client text (see
    /// [`ApiError::unavailable`]).
    #[error("{0}")]
    Unavailable(String),
}

/// The methods a route answers, as `Allow` lists them: HEAD wherever GET.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Methods {
    Post,
    GetOrHead,
}

impl Methods {
    fn allow(self) -> &'static str {
        match self {
            Methods::Post => "POST",
            Methods::GetOrHead => "GET, HEAD",
        }
    }
}

impl fmt::Display for Methods {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.allow())
    }
}

impl ApiError {
    /// The refusal when the registry or the broker cannot answer: the
    /// caller is told the error's client text, the log the whole chain of
    /// causes.
    pub fn unavailable<E: std::error::Error + ClientText + 'static>(error: E) -> ApiError {
        tracing::warn!(error = %Chain(&error), "an API request could not be served");
        ApiError::Unavailable(error.client_text().into_owned())
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ApiError::CrossSite => StatusCode::FORBIDDEN,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::NotJson => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BodyTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::BadPathSegment
            | ApiError::BodyUnreadable
            | ApiError::NotAnObject
            | ApiError::InvalidJson(_)
            | ApiError::BadUserName(..)
            | ApiError::NotAUserDestination(_)
            | ApiError::UnportableHeader(..)
            | ApiError::TooManyUsers(_)
            | ApiError::PersistForEveryone
            | ApiError::NoRecipients
            | ApiError::BadTopic(_)
            | ApiError::NotATopic(_) => StatusCode::BAD_REQUEST,
        }
    }

    /// The answer: its status, `{"error": "..."}`, and the header that says
    /// what to do next (how to authenticate, which methods to use).
    pub fn answer(&self) -> Response {
        let mut response = warp::reply::with_status(
            warp::reply::json(&serde_json::json!({ "error": self.to_string() })),
            self.status(),
        )
        .into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::Unauthenticated => {
                headers.insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"stomp-relay\""),
                );
            }
            ApiError::MethodNotAllowed(methods) => {
                headers.insert(header::ALLOW, HeaderValue::from_static(methods.allow()));
            }
            _ => {}
        }
        response
    }
}

/// A check's refusal travels to the API's `recover` as a warp rejection.
impl warp::reject::Reject for ApiError {}

impl Reply for ApiError {
    fn into_response(self) -> Response {
        self.answer()
    }
}
