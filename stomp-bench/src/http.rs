//! HTTP for the relay's API and its health check: hyper's pooled client,
//! which keeps connections alive and opens one per request in flight.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::error::BenchError;

/// A pooled HTTP/1.1 client.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Full<Bytes>>,
}

/// A response's status and body.
pub struct Answer {
    pub status: StatusCode,
    pub body: Bytes,
}

impl HttpClient {
    /// A client keeping up to `connections` idle connections alive.
    pub fn new(connections: usize) -> HttpClient {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        HttpClient {
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(connections)
                .build(connector),
        }
    }

    pub async fn get(&self, url: &str) -> Result<Answer, BenchError> {
        self.call(Method::GET, url, Bytes::new()).await
    }

    pub async fn post_json(&self, url: &str, json: Bytes) -> Result<Answer, BenchError> {
        self.call(Method::POST, url, json).await
    }

    async fn call(&self, method: Method, url: &str, body: Bytes) -> Result<Answer, BenchError> {
        let request = Request::builder()
            .method(method)
            .uri(url)
            .header("content-type", "application/json")
            .body(Full::new(body))
            .map_err(|error| BenchError::Http(format!("{url}: {error}")))?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|error| BenchError::Http(format!("{url}: {error}")))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|error| BenchError::Http(format!("{url}: {error}")))?
            .to_bytes();
        Ok(Answer { status, body })
    }
}
