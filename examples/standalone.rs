//! The smallest otm server: a SQLite store, the default configuration, on
//! 127.0.0.1:3000. `cargo run -p otm-examples --example standalone`
//!
//! (The `otm-server` binary is the full-featured version of this.)

use std::sync::Arc;

use otm_store::{SqliteConfig, SqliteStore};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = Arc::new(SqliteStore::connect(SqliteConfig::new("example.sqlite3")).await?);
    // The service purges expired rows (SQLite keeps them, never serving
    // them) for as long as it lives.
    let otm = otm_http::Service::new(store, otm_http::Config::default())?;
    // Everything on one address; a real deployment serves
    // `otm.admin_router()` (metrics, readiness) on a private one.
    let app: axum::Router = otm.router();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("otm on http://127.0.0.1:3000");
    // Bounded connections and a graceful stop on Ctrl-C.
    let limits = otm_http::ConnectionLimits::default();
    otm_http::serve(listener, app, limits, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    otm.shutdown().await;
    Ok(())
}
