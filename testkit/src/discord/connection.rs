//! One task per gateway WebSocket connection ([`serve`]): it writes what the
//! [`Gateway`](super::gateway::Gateway) queues for the connection, feeds the client's
//! frames back into it, and records when an INTERACTION_CREATE reached the socket.
//!
//! The bridge between the socket and the shared state: the gateway's protocol lives in
//! `gateway`, the state it is part of in `world`, the HTTP upgrade in the parent module.

use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::ws::{CloseFrame, Message as WsMessage, WebSocket};
use futures::SinkExt as _;
use tokio::sync::mpsc;

use super::gateway::ConnCmd;
use super::world::World;
use super::{Shared, lock};

/// Serves one WebSocket connection until it ends or is closed.
pub(super) async fn serve(
    shared: Arc<Shared>,
    mut socket: WebSocket,
    query: Result<(), (u16, &'static str)>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let conn = {
        let mut world = lock(&shared.world);
        let conn = world.gw.open(tx);
        if let Err((code, reason)) = query {
            world.gw.close(conn, Some((code, reason)));
        }
        conn
    };
    shared.changed();
    tracing::debug!(conn, "fake Discord gateway: connected");
    loop {
        tokio::select! {
            cmd = rx.recv() => match cmd {
                None | Some(ConnCmd::Drop) => break,
                Some(ConnCmd::Send(out)) => {
                    let text = out.json().to_string();
                    if socket.send(WsMessage::Text(text.into())).await.is_err() {
                        break;
                    }
                    let at = SystemTime::now();
                    {
                        let mut world = lock(&shared.world);
                        world.gw.written(conn, &out, at);
                        if let Some(id) = out.interaction {
                            world.interaction_written(id, at);
                        }
                    }
                    shared.changed();
                }
                Some(ConnCmd::Close(code, reason)) => {
                    let frame = CloseFrame { code, reason: reason.into() };
                    let _ = socket.send(WsMessage::Close(Some(frame))).await;
                    let at = SystemTime::now();
                    lock(&shared.world).gw.record_close(conn, false, at, Some(code));
                    shared.changed();
                    break;
                }
            },
            msg = socket.recv() => {
                let at = SystemTime::now();
                match msg {
                    None | Some(Err(_)) => break,
                    Some(Ok(WsMessage::Text(text))) => {
                        on_client_frame(&shared, |w| w.gw.client_text(conn, text.as_str(), at));
                    }
                    Some(Ok(WsMessage::Binary(_))) => {
                        on_client_frame(&shared, |w| {
                            w.gw.close(conn, Some((4002, "FakeDiscord speaks JSON text frames.")));
                        });
                    }
                    Some(Ok(WsMessage::Close(frame))) => {
                        let code = frame.map(|f| f.code);
                        on_client_frame(&shared, |w| w.gw.record_close(conn, true, at, code));
                        // Flushes the close reply tungstenite queued.
                        let _ = socket.flush().await;
                        break;
                    }
                    Some(Ok(WsMessage::Ping(_) | WsMessage::Pong(_))) => {}
                }
            }
        }
    }
    lock(&shared.world).gw.gone(conn);
    shared.changed();
    tracing::debug!(conn, "fake Discord gateway: connection ended");
}

fn on_client_frame(shared: &Shared, f: impl FnOnce(&mut World)) {
    f(&mut lock(&shared.world));
    shared.changed();
}
