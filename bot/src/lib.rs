//! `ccrm-bot`: the bot that doubles as the server (DESIGN.md "Programs"). For now it serves
//! only `/healthz`; the WebSocket hub, SQLite, REST API and chat adapters plug in here.

use std::future::Future;

use axum::{Json, Router, routing::get};
use serde_json::json;
use tokio::net::TcpListener;

/// The HTTP routes.
pub fn router() -> Router {
    Router::new().route("/healthz", get(healthz))
}

async fn healthz() -> Json<serde_json::Value> {
    Json(json!({"ok": true, "version": common::VERSION}))
}

/// Serves on an already bound listener until `shutdown` resolves (bind first, so tests can
/// use port 0 and know the address before anything runs).
pub async fn serve(
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, router())
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}
