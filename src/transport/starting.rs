//! What a node answers while it starts: bound, but waiting for RabbitMQ or
//! Redis. `/healthz` says the process serves, so that an orchestrator does
//! not kill a node that only waits; `/readyz`, and everything else, says
//! it is not ready and what it waits for. Each connection gets one answer
//! and is closed, so that none is still held by this responder once the
//! node serves.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use parking_lot::Mutex;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The responder of a starting node, until [`Starting::serve`] hands the
/// listener back.
pub struct Starting {
    waiting_for: Arc<Mutex<&'static str>>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<TcpListener>,
}

impl Starting {
    /// Answers on `listener` until the node serves.
    pub fn answer(listener: TcpListener) -> Starting {
        let waiting_for = Arc::new(Mutex::new("its services"));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(respond(listener, waiting_for.clone(), stopped));
        Starting {
            waiting_for,
            stop,
            task,
        }
    }

    /// Says what the node waits for now ("RabbitMQ", "Redis").
    pub fn waiting_for(&self, service: &'static str) {
        *self.waiting_for.lock() = service;
    }

    /// Stops answering and gives the listener back, for the node to serve.
    pub async fn serve(self) -> std::io::Result<TcpListener> {
        let _ = self.stop.send(());
        self.task.await.map_err(std::io::Error::other)
    }
}

async fn respond(
    listener: TcpListener,
    waiting_for: Arc<Mutex<&'static str>>,
    mut stopped: oneshot::Receiver<()>,
) -> TcpListener {
    loop {
        let accepted = tokio::select! {
            _ = &mut stopped => return listener,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let waiting_for = waiting_for.clone();
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let service = *waiting_for.lock();
                async move { Ok::<_, Infallible>(answer(&request, service)) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .keep_alive(false)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// The answer to one request while the node waits for `service`.
fn answer(request: &Request<Incoming>, service: &str) -> Response<Full<Bytes>> {
    let (status, text) = match request.uri().path() {
        "/healthz" => (StatusCode::OK, "ok".to_owned()),
        _ => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("starting: waiting for {service}"),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(text)));
    *response.status_mut() = status;
    response
}
