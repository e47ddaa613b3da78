//! The HTML pages of the iframe-based transports: the page an iframe
//! loads (it runs `sockjs-client` in the endpoint's origin), and the
//! prelude of an `htmlfile` stream, which calls back into its parent page.

use http::{Method, Request, StatusCode, header};

use super::Context;
use super::headers::{cacheable, insert};
use super::reply::{method_not_allowed, status_only, text};
use crate::transport::{RequestBody, Response};

/// The page of the `htmlfile` transport, before its frames.
const HTMLFILE_PAGE: &str = r#"<!doctype html>
<html><head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
</head><body><h2>Don't panic!</h2>
  <script>
    document.domain = document.domain;
    var c = parent.{callback};
    c.start();
    function p(d) {c.message(d);};
    window.onload = function() {c.stop();};
  </script>"#;

/// The page iframe-based transports load.
const IFRAME_PAGE: &str = r#"<!DOCTYPE html>
<html>
<head>
  <meta http-equiv="X-UA-Compatible" content="IE=edge" />
  <meta http-equiv="Content-Type" content="text/html; charset=UTF-8" />
  <script src="{client_url}"></script>
  <script>
    document.domain = document.domain;
    SockJS.bootstrap_iframe();
  </script>
</head>
<body>
  <h2>Don't panic!</h2>
  <p>This is a SockJS hidden iframe. It's used for cross domain magic.</p>
</body>
</html>"#;

/// The iframe page for a `sockjs-client` script at `client_url`, and its
/// ETag.
pub(super) fn iframe_page(client_url: &str) -> (String, String) {
    let page = IFRAME_PAGE.replace("{client_url}", client_url);
    let etag = format!("\"{:016x}\"", fnv1a(page.as_bytes()));
    (page, etag)
}

/// What an `htmlfile` stream starts with: the page that hands each frame to
/// `callback` in the parent page.
pub(super) fn htmlfile_prelude(callback: &str) -> String {
    let page = HTMLFILE_PAGE.replace("{callback}", callback);
    // Browsers render an HTML stream only past 1 KiB.
    let padding = " ".repeat(1024usize.saturating_sub(page.len()) + 14);
    format!("{page}{padding}\r\n\r\n")
}

impl Context<'_> {
    pub(super) fn iframe(&self, request: &Request<RequestBody>) -> Response {
        if request.method() != Method::GET {
            return method_not_allowed("GET");
        }
        let etag = &self.endpoint.iframe_etag;
        let mut response = if request
            .headers()
            .get(header::IF_NONE_MATCH)
            .is_some_and(|tag| tag.as_bytes() == etag.as_bytes())
        {
            status_only(StatusCode::NOT_MODIFIED)
        } else {
            let page = self.endpoint.iframe_page.clone();
            text(StatusCode::OK, "text/html; charset=UTF-8", page)
        };
        cacheable(response.headers_mut());
        insert(response.headers_mut(), header::ETAG, etag);
        response
    }
}

/// A stable hash of the iframe page, for its ETag.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, &byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
