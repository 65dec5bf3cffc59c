//! `ccrm-bot`: the bot that doubles as the server (DESIGN.md "Programs"): the WebSocket hub
//! that daemons dial, SQLite storage, the REST API with SSE, `/metrics`, and (later) the
//! dashboard and chat adapters.
//!
//! Layout:
//! - [`config`]: defaults → TOML → `CCRM_BOT_*` env → flags.
//! - [`db`]: the SQLite store (sqlx, WAL, `migrations/`).
//! - [`auth`] and [`keys`]: hashed API keys and user tokens, constant-time checks.
//! - [`hub`]: connected daemons, bot → daemon commands, live event fan-out, session routes.
//! - [`ingest`]: the group-commit task every daemon link stores through.
//! - [`ws`]: the daemon link (`/ws/daemon`), the dashboard socket (`/ws/dashboard`) and
//!   other replicas' direct links (`/ws/replica`).
//! - [`http`]: REST routes, SSE, metrics; [`openapi`]: the API document generated from
//!   them (served at `/api/openapi.json`).
//! - [`dashboard`]: the web dashboard at `/` (login cookie, pages, live stream).
//! - [`upload`]: streaming a workspace upload to a daemon with flow control;
//!   [`executions`]: following executions on their daemons and recording them.
//! - [`tls`]: HTTPS/WSS (`tls_cert` / `tls_key`, reloaded on SIGHUP) and the [`tls::Listener`]
//!   that [`serve`] accepts on.
//! - [`attach`]: images and files sent with a prompt (scaled images, files saved in the
//!   session's `.ccrm/inbox/` on its daemon).
//! - [`linediff`]: the line diff of a file-editing tool call that chat and the dashboard show.
//! - [`chat`]: the platform-neutral chat core; [`telegram`] and [`discord`]: its adapters,
//!   started by [`serve`] when `CCRM_BOT_TELEGRAM_TOKEN` / `CCRM_BOT_DISCORD_TOKEN` is set.

pub mod attach;
pub mod auth;
pub mod chat;
pub mod config;
pub mod dashboard;
pub mod db;
pub mod discord;
pub mod executions;
pub mod failpoint;
pub mod http;
pub mod hub;
pub mod ingest;
pub mod keys;
pub mod linediff;
pub mod openapi;
pub mod replica;
pub mod telegram;
pub mod tls;
pub mod upload;
pub mod ws;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, post};
use tokio::sync::broadcast;

/// Everything a request handler can reach.
pub struct AppState {
    /// The store.
    pub db: db::Db,
    /// Connected daemons and live events.
    pub hub: Arc<hub::Hub>,
    /// Settings.
    pub cfg: config::BotConfig,
    /// Where daemon links hand what they receive to be committed.
    pub ingest: ingest::Ingest,
    /// The tasks that record executions.
    pub recorders: executions::Recorders,
    /// Failed token checks per client address (429 after too many).
    pub auth_guard: http::guard::AuthGuard,
    /// The Telegram adapter's webhook receiver while it runs in webhook mode.
    pub telegram_hook: telegram::webhook::Hook,
    /// This replica's side of a shared PostgreSQL database (`None` on SQLite).
    pub replicas: Option<Arc<replica::Replicas>>,
}

impl AppState {
    /// Opens the database of `cfg` and builds the state.
    pub async fn open(cfg: config::BotConfig) -> anyhow::Result<Arc<Self>> {
        let db = db::Db::connect(&cfg.database()?, &cfg.data_dir.join("revoked")).await?;
        // Links from before a restart are gone; daemons say hello again. (On PostgreSQL
        // other replicas may hold links: each link marks its own daemon.)
        if !db.is_postgres() {
            db.set_all_daemons_offline().await?;
        }
        let hub = Arc::new(hub::Hub::new());
        // On PostgreSQL every replica publishes events through its tailer, in row-id
        // order whichever replica stored them; the ingest publishes nothing itself.
        let mut replicas = None;
        let ingest = if db.is_postgres() {
            let ingest = ingest::Ingest::start(&db, broadcast::channel(1).0).await?;
            replica::spawn_tail(db.clone(), hub.events_sender()).await?;
            if let Some(pool) = db.pg_pool() {
                let me = replica::start(pool.clone(), hub.clone()).await?;
                tracing::info!(replica = me.id(), "replica of a shared PostgreSQL database");
                replicas = Some(me);
            }
            ingest
        } else {
            ingest::Ingest::start(&db, hub.events_sender()).await?
        };
        // WAL checkpoints off the ingest path; the task ends when the pool closes.
        tokio::spawn(db.clone().checkpoint_loop());
        Ok(Arc::new(Self {
            db,
            hub,
            ingest,
            recorders: executions::Recorders::default(),
            auth_guard: http::guard::AuthGuard::new(cfg.auth_failures_per_minute),
            telegram_hook: telegram::webhook::Hook::default(),
            replicas,
            cfg,
        }))
    }
}

/// All routes.
pub fn router(state: Arc<AppState>) -> Router {
    let api = Router::new()
        .route("/metrics", get(http::meta::metrics))
        .route("/api/daemons", get(http::sessions::list_daemons))
        .route(
            "/api/sessions",
            get(http::sessions::list_sessions).post(http::sessions::create_session),
        )
        .route("/api/sessions/{id}", get(http::sessions::get_session))
        .route(
            "/api/sessions/{id}/events",
            get(http::events::session_events),
        )
        .route(
            "/api/sessions/{id}/stream",
            get(http::events::session_stream),
        )
        .route(
            "/api/sessions/{id}/prompt",
            // Images and files have their own caps, checked as the body is read.
            post(http::sessions::prompt).layer(DefaultBodyLimit::disable()),
        )
        .route(
            "/api/sessions/{id}/{action}",
            post(http::sessions::session_action),
        )
        .route("/api/daemons/{daemon}", get(http::daemons::get_daemon))
        .route(
            "/api/daemons/{daemon}/workspaces",
            // The upload has its own cap (`workspace_max_upload_bytes`), checked as it streams.
            get(http::workspaces::list)
                .merge(post(http::workspaces::upload).layer(DefaultBodyLimit::disable())),
        )
        .route(
            "/api/daemons/{daemon}/workspaces/{id}",
            delete(http::workspaces::remove),
        )
        .route("/api/execute", post(http::executions::execute))
        .route("/api/executions/{id}", get(http::executions::get))
        .route("/api/executions/{id}/stream", get(http::executions::stream))
        .route(
            "/api/executions/{id}/cancel",
            post(http::executions::cancel),
        )
        .route("/api/approvals", get(http::approvals::list_approvals))
        .route("/api/approvals/{id}", post(http::approvals::decide))
        .route("/api/openapi.json", get(openapi::serve))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            http::require_user,
        ));
    Router::new()
        .route("/healthz", get(http::meta::healthz))
        .route("/ws/daemon", get(ws::daemon_ws))
        .route("/ws/dashboard", get(ws::dashboard_ws))
        .route("/ws/replica", get(ws::replica_ws))
        .merge(api)
        .merge(telegram::webhook::routes(&state))
        .merge(dashboard::routes(state.clone()))
        .fallback(http::meta::not_found)
        .layer(DefaultBodyLimit::max(state.cfg.max_body_bytes))
        .with_state(state)
}

/// Runs the configured chat adapters until `stop` turns true (on the elected leader, see
/// [`replica::leader`]); ends when all have ended.
fn chat_adapters(
    state: Arc<AppState>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let mut tasks = Vec::new();
        if let Some(token) = state.cfg.telegram_token.clone() {
            let (state, stop) = (state.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = telegram::run(state, token, stop).await {
                    tracing::error!(error = format!("{e:#}"), "telegram adapter failed");
                }
            }));
        }
        if let Some(token) = state.cfg.discord_token.clone() {
            let (state, stop) = (state.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                if let Err(e) = discord::run(state, token, stop).await {
                    tracing::error!(error = format!("{e:#}"), "discord adapter failed");
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    })
}

/// Serves `state` on an already bound listener until `shutdown` resolves (bind first, so
/// tests can use port 0 and know the address before anything runs). A plain
/// [`tokio::net::TcpListener`] serves HTTP/WS; [`tls::Listener::tls`] serves HTTPS/WSS.
pub async fn serve(
    listener: impl Into<tls::Listener>,
    state: Arc<AppState>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    // TCP_NODELAY is set on every connection by the listener.
    let listener: tls::Listener = listener.into();
    if let Some(me) = &state.replicas {
        me.advertise(
            state.cfg.replica_url.clone().or_else(|| listener.own_url()),
            state.cfg.replica_ca_file.clone(),
        );
    }
    // The chat adapters stop with the server.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // On exactly one replica at a time (the elected leader; on SQLite, this bot).
    let adapters: Vec<_> = replica::leader::spawn(state.clone(), stop_rx.clone(), chat_adapters)
        .into_iter()
        .collect();
    drop(stop_rx);
    // Executions the bot had not seen end before a restart are followed again.
    state.recorders.resume(&state).await;
    let shutdown = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    // The peer address feeds the audit log (see `http::access`) and the dashboard's login
    // limiter.
    let app = router(state).into_make_service_with_connect_info::<tls::PeerAddr>();
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    for a in adapters {
        let _ = a.await;
    }
    served?;
    Ok(())
}
