//! [`Client`]: the `ccrm` side of the control socket. One request at a time; streaming
//! calls hand each event to a callback until the end line.

use std::path::{Path, PathBuf};

use common::MAX_IPC_LINE;
use common::codec::JsonLines;
use common::event::Event;
use common::ipc::{Command, ErrorBody, Reply, Request};
use serde_json::Value;
use tokio::net::UnixStream;

/// What can go wrong talking to the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon listens on the socket.
    #[error("ccrmd is not running (no socket at {}): run `ccrm daemon start`", socket.display())]
    NotRunning {
        /// The socket tried.
        socket: PathBuf,
    },
    /// The daemon answered with an error.
    #[error("{0}")]
    Daemon(ErrorBody),
    /// The connection failed.
    #[error("connection to ccrmd failed: {0}")]
    Io(#[from] std::io::Error),
    /// The daemon said something we cannot read.
    #[error("unexpected reply from ccrmd: {0}")]
    Protocol(String),
}

/// A connection to ccrmd.
pub struct Client {
    lines: JsonLines<UnixStream>,
    next_id: u64,
}

impl Client {
    /// Connects to the socket at `socket`.
    pub async fn connect(socket: &Path) -> Result<Self, ClientError> {
        match UnixStream::connect(socket).await {
            Ok(s) => Ok(Self {
                lines: JsonLines::new(s, 64 * MAX_IPC_LINE),
                next_id: 0,
            }),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                Err(ClientError::NotRunning {
                    socket: socket.to_owned(),
                })
            }
            Err(e) => Err(ClientError::Io(e)),
        }
    }

    async fn send(&mut self, cmd: Command) -> Result<Value, ClientError> {
        self.next_id += 1;
        let id = Value::from(self.next_id);
        self.lines
            .send(&Request {
                id: id.clone(),
                cmd,
            })
            .await?;
        Ok(id)
    }

    async fn read(&mut self) -> Result<Reply, ClientError> {
        match self.lines.next_line().await {
            None => Err(ClientError::Protocol("ccrmd closed the connection".into())),
            Some(Err(e)) => Err(ClientError::Protocol(e.to_string())),
            Some(Ok(line)) => serde_json::from_str(&line)
                .map_err(|e| ClientError::Protocol(format!("{e}: {line}"))),
        }
    }

    /// Sends a command and returns its `data`.
    pub async fn call(&mut self, cmd: Command) -> Result<Value, ClientError> {
        let id = self.send(cmd).await?;
        loop {
            let reply = self.read().await?;
            if reply.id != id {
                continue;
            }
            return match (reply.ok, reply.error) {
                (true, _) => Ok(reply.data.unwrap_or(Value::Null)),
                (false, Some(e)) => Err(ClientError::Daemon(e)),
                (false, None) => Err(ClientError::Protocol("error reply without error".into())),
            };
        }
    }

    /// Sends a streaming command; calls `on_event` for each event and returns the end
    /// line's `data`.
    pub async fn stream(
        &mut self,
        cmd: Command,
        mut on_event: impl FnMut(&Event),
    ) -> Result<Option<Value>, ClientError> {
        let id = self.send(cmd).await?;
        loop {
            let reply = self.read().await?;
            if reply.id != id {
                continue;
            }
            if !reply.ok {
                return Err(reply.error.map_or_else(
                    || ClientError::Protocol("error reply without error".into()),
                    ClientError::Daemon,
                ));
            }
            if let Some(ev) = &reply.event {
                on_event(ev);
            }
            if reply.end {
                return Ok(reply.data);
            }
            if reply.event.is_none() {
                // A non-streaming answer to a streaming call: treat it as the end.
                return Ok(reply.data);
            }
        }
    }

    /// Sends a streaming command whose items are not session events (`exec.follow`); calls
    /// `on_item` for each and returns the end line's `data`.
    pub async fn stream_items(
        &mut self,
        cmd: Command,
        mut on_item: impl FnMut(&Value),
    ) -> Result<Option<Value>, ClientError> {
        let id = self.send(cmd).await?;
        loop {
            let reply = self.read().await?;
            if reply.id != id {
                continue;
            }
            if !reply.ok {
                return Err(reply.error.map_or_else(
                    || ClientError::Protocol("error reply without error".into()),
                    ClientError::Daemon,
                ));
            }
            match (&reply.item, reply.end) {
                (Some(item), _) => on_item(item),
                (None, _) => return Ok(reply.data),
            }
        }
    }
}
