//! The otm router served in-process on a loopback socket, recording every
//! request it receives (for tests that check what reached the server).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use otm_http::Config;
use otm_store::BlobStore;

/// Every request a [`TestServer`] received: method, URI, headers and body.
pub type RequestLog = Arc<Mutex<Vec<String>>>;

async fn record(State(log): State<RequestLog>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    let mut entry = format!("{} {}\n", parts.method, parts.uri);
    for (name, value) in &parts.headers {
        entry.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    entry.push_str(&String::from_utf8_lossy(&bytes));
    log.lock().unwrap_or_else(|p| p.into_inner()).push(entry);
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Serves `app` on `listener` in the background, with each connection's
/// peer address (for per-client limits), until the test ends.
pub fn spawn_app(listener: tokio::net::TcpListener, app: Router) {
    tokio::spawn(async move {
        let _ = axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .await;
    });
}

/// The otm router on `127.0.0.1:<free port>`, recording every request.
pub struct TestServer {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// What the server received.
    pub log: RequestLog,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestServer {
    /// Serves `store` with the default configuration.
    pub async fn start(store: Arc<dyn BlobStore>) -> TestServer {
        Self::start_with(store, Config::default()).await
    }

    /// Serves `store` with `config`: the public and the operator routes
    /// on one address.
    pub async fn start_with(store: Arc<dyn BlobStore>, config: Config) -> TestServer {
        let log: RequestLog = Arc::default();
        let otm = otm_http::Service::new(store, config).expect("the service starts");
        let app: Router = otm
            .router_with_admin()
            .layer(axum::middleware::from_fn_with_state(log.clone(), record));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await;
        });
        TestServer {
            base: format!("http://{addr}"),
            log,
            task,
        }
    }

    /// The whole request log as one text.
    pub fn log_text(&self) -> String {
        self.log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .join("\n----\n")
    }
}
