//! The web demo at `/` (`web-demo/`): its page, script and style, and the
//! STOMP.js and sockjs-client bundles it loads (from npm, put in place by
//! `build.rs`), built into the binary so that `cargo run --release` serves
//! a working page with nothing beside it and no internet. `config.json` tells the page where this node's
//! WebSocket and SockJS endpoints are.

use http::{HeaderMap, HeaderValue, Method, StatusCode, header};

use super::{Response, full};

/// One file of the demo.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        path: "/index.html",
        content_type: "text/html; charset=utf-8",
        bytes: include_bytes!("../../web-demo/index.html"),
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../web-demo/app.js"),
    },
    Asset {
        path: "/app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../web-demo/app.css"),
    },
    Asset {
        path: "/vendor/stomp.umd.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/stomp.umd.min.js")),
    },
    Asset {
        path: "/vendor/sockjs.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!(concat!(env!("OUT_DIR"), "/sockjs.min.js")),
    },
];

/// The demo's files, and its `config.json`.
pub struct WebDemo {
    config: String,
}

impl WebDemo {
    pub fn new(ws_path: &str, sockjs_path: &str) -> WebDemo {
        let config = serde_json::json!({ "ws_path": ws_path, "sockjs_path": sockjs_path });
        WebDemo {
            config: config.to_string(),
        }
    }

    /// The answer for a demo file; `None` for any other path.
    pub fn respond(&self, method: &Method, path: &str, headers: &HeaderMap) -> Option<Response> {
        let (content_type, bytes): (&str, &[u8]) = if path == "/config.json" {
            ("application/json", self.config.as_bytes())
        } else {
            let path = if path == "/" { "/index.html" } else { path };
            let asset = ASSETS.iter().find(|asset| asset.path == path)?;
            (asset.content_type, asset.bytes)
        };
        if method != Method::GET && method != Method::HEAD {
            let mut response = Response::new(full(""));
            *response.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Some(response);
        }
        // Built into the binary: the version's files never change under
        // one ETag, and browsers revalidate rather than keep a stale page.
        let etag = format!("\"{}-{:x}\"", env!("CARGO_PKG_VERSION"), bytes.len());
        let unchanged = headers
            .get(header::IF_NONE_MATCH)
            .is_some_and(|tag| tag.as_bytes() == etag.as_bytes());
        let mut response = if unchanged {
            let mut response = Response::new(full(""));
            *response.status_mut() = StatusCode::NOT_MODIFIED;
            response
        } else {
            Response::new(full(bytes.to_vec()))
        };
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
        headers.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        if let Ok(etag) = HeaderValue::from_str(&etag) {
            headers.insert(header::ETAG, etag);
        }
        Some(response)
    }
}
