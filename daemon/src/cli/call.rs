//! How a `ccrm` command reaches ccrmd: finding the socket (flag, else the config), connecting,
//! sending one request and printing its reply, decoding reply data, and [`Failure`], the
//! error every command returns. The command modules ([`super::sessions`],
//! [`super::approvals`], ...) build on this; it knows none of them.

use std::path::PathBuf;
use std::process::ExitCode;

use common::ipc::{Command, SessionRef};
use serde_json::Value;

use super::args::Cli;
use super::output::print_json;
use crate::client::{Client, ClientError};
use crate::config::{Config, Overrides};

/// Why a command failed: the daemon or the connection ([`ClientError`], which `--json`
/// reports with its own code), or anything else.
#[derive(Debug, thiserror::Error)]
pub(super) enum Failure {
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

/// The control socket: `--socket` (or `CCRM_SOCKET`), else the one the config names.
pub(super) fn socket_path(cli: &Cli) -> Result<PathBuf, Failure> {
    if let Some(s) = &cli.socket {
        return Ok(s.clone());
    }
    Ok(load_config(cli)?.socket_path())
}

/// The ccrmd config, from `--config` (or `CCRM_CONFIG`) and the usual layers.
pub(super) fn load_config(cli: &Cli) -> anyhow::Result<Config> {
    Config::load(&Overrides {
        config_file: cli.config.clone(),
        ..Default::default()
    })
}

/// Connects to ccrmd.
pub(super) async fn connect(cli: &Cli) -> Result<Client, Failure> {
    Ok(Client::connect(&socket_path(cli)?).await?)
}

/// Sends `cmd` and prints the reply data: as JSON with `--json`, else with `human`. Most
/// commands are this one request.
pub(super) async fn send_and_print(
    cli: &Cli,
    cmd: Command,
    human: impl FnOnce(Value) -> Result<(), Failure>,
) -> Result<ExitCode, Failure> {
    let data = connect(cli).await?.call(cmd).await?;
    if cli.json {
        print_json(&data);
    } else {
        human(data)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads reply data as `T`; data of another shape is a protocol error.
pub(super) fn decode<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, Failure> {
    serde_json::from_value(v).map_err(|e| Failure::Client(ClientError::Protocol(e.to_string())))
}

/// The request arguments that name one session.
pub(super) fn session_ref(session: &str) -> SessionRef {
    SessionRef {
        session: session.to_owned(),
    }
}
