//! The control socket: a Unix-socket listener (0600, in a 0700 runtime dir) and one task
//! per connection. Each request line is handled in its own task, so a long `follow` never
//! holds up other requests on the same connection; replies funnel through one writer task.
//! Malformed and oversized lines get an error reply and the connection stays up.

use std::sync::Arc;

use common::MAX_IPC_LINE;
use common::codec::{JsonLines, LineError};
use common::ipc::{ErrorBody, ErrorCode, Reply, parse_request};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tracing::{Instrument, debug, info_span, warn};

use crate::daemon::{Daemon, StreamSink};

/// Most connections served at once.
const MAX_CONNECTIONS: usize = 256;
/// Most requests in flight on one connection.
const MAX_IN_FLIGHT: usize = 64;

/// Accepts connections until the daemon is asked to shut down.
pub async fn serve(listener: UnixListener, daemon: Arc<Daemon>) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut shutdown = daemon.shutdown_requested();
    let mut conns = JoinSet::new();
    let mut next_id: u64 = 0;
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(s) => s,
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    warn!("too many connections; refusing one");
                    let mut lines = JsonLines::new(stream, MAX_IPC_LINE);
                    let _ = lines.send(&Reply::err(serde_json::Value::Null, ErrorBody::new(ErrorCode::Internal, "too many connections"))).await;
                    continue;
                };
                next_id += 1;
                let d = daemon.clone();
                conns.spawn(async move {
                    handle_connection(stream, d).await;
                    drop(permit);
                }.instrument(info_span!("conn", id = next_id)));
            }
            _ = shutdown.changed() => break,
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
}

async fn handle_connection(stream: UnixStream, daemon: Arc<Daemon>) {
    let (mut reader, mut writer) = JsonLines::new(stream, MAX_IPC_LINE).split();
    let (tx, mut rx) = mpsc::channel::<Reply>(256);
    let writer_task = tokio::spawn(async move {
        while let Some(reply) = rx.recv().await {
            if writer.send(&reply).await.is_err() {
                break;
            }
        }
    });
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let mut tasks = JoinSet::new();
    loop {
        let line = tokio::select! {
            line = reader.next_line() => line,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let line = match line {
            None => break,
            Some(Ok(line)) => line,
            Some(Err(bad @ (LineError::TooLong { .. } | LineError::NotUtf8))) => {
                let err = match bad {
                    LineError::TooLong { max } => ErrorBody::new(
                        ErrorCode::TooLarge,
                        format!("request line longer than {max} bytes refused"),
                    ),
                    _ => ErrorBody::new(ErrorCode::ParseError, "request line is not valid UTF-8"),
                };
                if tx
                    .send(Reply::err(serde_json::Value::Null, err))
                    .await
                    .is_err()
                {
                    break;
                }
                continue;
            }
            Some(Err(LineError::Io(e))) => {
                debug!(error = %e, "read failed");
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        let req = match parse_request(&line) {
            Ok(req) => req,
            Err((id, err)) => {
                if tx.send(Reply::err(id, err)).await.is_err() {
                    break;
                }
                continue;
            }
        };
        let Ok(permit) = in_flight.clone().acquire_owned().await else {
            break;
        };
        let d = daemon.clone();
        let tx = tx.clone();
        tasks.spawn(async move {
            let id = req.id.clone();
            debug!(cmd = req.cmd.name(), "request");
            if Daemon::is_stream(&req.cmd) {
                let sink = StreamSink {
                    tx: tx.clone(),
                    id: id.clone(),
                };
                let reply = match d.stream(req.cmd, sink).await {
                    Ok(data) => Reply::end(id, data),
                    Err(e) => Reply::err(id, e),
                };
                let _ = tx.send(reply).await;
            } else {
                let reply = match d.execute(req.cmd).await {
                    Ok(data) => Reply::ok(id, data),
                    Err(e) => Reply::err(id, e),
                };
                let _ = tx.send(reply).await;
            }
            drop(permit);
        });
    }
    // End of input means the client is gone (clients keep the connection open until their
    // replies arrive), so in-flight streams are aborted. Commands already handed to a
    // session actor still take effect there.
    tasks.shutdown().await;
    drop(tx);
    let _ = writer_task.await;
}
