//! The headers SockJS answers carry: CORS (any page may use an endpoint;
//! `--allowed-origins` is checked before a request gets here), caching
//! (session answers never, static ones for a year) and the sticky-session
//! cookie.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, header};

use super::Context;

/// A year, for what may be cached.
pub(super) const CACHE_SECONDS: u32 = 31_536_000;
const NOT_CACHED: &str = "no-store, no-cache, no-transform, must-revalidate, max-age=0";

impl Context<'_> {
    /// CORS, no caching and, where wanted, the sticky-session cookie.
    pub(super) fn session_headers(&self, request: &HeaderMap, headers: &mut HeaderMap) {
        not_cached(headers);
        cors(request, headers);
        if self.settings().cookie_needed {
            let value = jsessionid(request).unwrap_or_else(|| "dummy".to_owned());
            insert(
                headers,
                header::SET_COOKIE,
                &format!("JSESSIONID={value}; path=/"),
            );
        }
    }
}

/// The client's `JSESSIONID` cookie, echoed back for sticky sessions.
fn jsessionid(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .find_map(|cookie| cookie.trim().strip_prefix("JSESSIONID="))
        .map(str::to_owned)
}

/// CORS as SockJS answers it: the request's origin with credentials, or
/// any origin without.
pub(super) fn cors(request: &HeaderMap, headers: &mut HeaderMap) {
    match request.get(header::ORIGIN) {
        Some(origin) => {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            insert(headers, header::ACCESS_CONTROL_ALLOW_CREDENTIALS, "true");
        }
        None => insert(headers, header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
    }
}

pub(super) fn cacheable(headers: &mut HeaderMap) {
    insert(
        headers,
        header::CACHE_CONTROL,
        &format!("public, max-age={CACHE_SECONDS}"),
    );
    let expires = std::time::SystemTime::now() + Duration::from_secs(u64::from(CACHE_SECONDS));
    insert(headers, header::EXPIRES, &httpdate(expires));
}

pub(super) fn not_cached(headers: &mut HeaderMap) {
    insert(headers, header::CACHE_CONTROL, NOT_CACHED);
}

pub(super) fn insert(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// An HTTP date (`Expires`).
fn httpdate(time: std::time::SystemTime) -> String {
    httpdate::fmt_http_date(time)
}
