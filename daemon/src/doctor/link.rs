//! The checks that connect: the daemon on its socket, its link to the bot, and a direct
//! probe of the bot (`GET /healthz` over HTTP or HTTPS with the daemon's TLS settings, run
//! by ccrmd: [`crate::probe`]), whose `Date` header gives the clock skew.

use std::path::Path;
use std::time::{Duration, SystemTime};

use common::ipc::{Command, DaemonStatus, NoArgs};

use super::{Finding, Status};
use crate::client::{Client, ClientError};
use crate::config::Config;

/// How long the daemon may take to answer.
const STEP: Duration = Duration::from_secs(10);
/// More unacknowledged events than this means the bot is falling behind (or the link is
/// down for a while).
const LAG_WARN: u64 = 5_000;
/// Clock difference to the bot worth a warning (the `Date` header has 1 s resolution).
const SKEW_WARN_SECS: i64 = 10;

/// `daemon`, `bot_link`, `bot` and `clock`.
pub(super) async fn checks(cfg: Option<&Config>, socket: Option<&Path>) -> Vec<Finding> {
    let mut out = Vec::new();
    let status = match socket {
        None => {
            out.push(Finding::skip(
                "daemon",
                "no socket path (the config failed)",
            ));
            None
        }
        Some(socket) => {
            let (finding, status) = daemon(socket).await;
            out.push(finding);
            status
        }
    };
    let Some(url) = cfg.and_then(|c| c.bot_urls().into_iter().next()) else {
        out.push(Finding::skip(
            "bot_link",
            "no bot configured (bot_url); sessions are reachable from this machine only",
        ));
        return out;
    };
    out.push(bot_link(&url, status.as_ref()));
    let ca = cfg.and_then(|c| c.bot_ca_file.clone());
    match crate::probe::probe_bot(&url, ca.as_deref()).await {
        Ok(p) => {
            out.push(Finding::ok(
                "bot",
                format!("{} answers /healthz ({})", p.base, p.tls_note),
            ));
            let date = p.date.and_then(|d| httpdate::parse_http_date(&d).ok());
            out.push(clock(date));
        }
        Err(e) => {
            let text = format!("{e:#}");
            let fix = if text.contains("certificate") {
                "give the daemon the bot's CA: bot_ca_file = \"/path/ca.pem\" (CCRM_BOT_CA_FILE)"
            } else {
                "check that ccrm-bot runs and that bot_url names its address (the bot logs `ccrm-bot listening addr=...`); a firewall or a proxy in between can also block it"
            };
            out.push(Finding::bad("bot", Status::Fail, text, fix));
            out.push(Finding::skip("clock", "the bot did not answer"));
        }
    }
    out
}

async fn daemon(socket: &Path) -> (Finding, Option<DaemonStatus>) {
    let status = async {
        let mut c = Client::connect(socket).await?;
        let data = c.call(Command::DaemonStatus(NoArgs {})).await?;
        serde_json::from_value::<DaemonStatus>(data)
            .map_err(|e| ClientError::Protocol(e.to_string()))
    };
    match tokio::time::timeout(STEP, status).await {
        Ok(Ok(st)) if st.protocol != common::IPC_PROTOCOL_VERSION => (
            Finding::bad(
                "daemon",
                Status::Fail,
                format!(
                    "ccrmd {} (pid {}) speaks protocol {}, this ccrm speaks {}",
                    st.version,
                    st.pid,
                    st.protocol,
                    common::IPC_PROTOCOL_VERSION
                ),
                "restart the daemon with this version: `ccrm daemon stop && ccrm daemon start`",
            ),
            Some(st),
        ),
        Ok(Ok(st)) => {
            let sessions: usize = st.sessions.values().sum();
            let finding = if st.version == common::VERSION {
                Finding::ok(
                    "daemon",
                    format!(
                        "ccrmd {} running (pid {}), {sessions} session(s), socket {}",
                        st.version,
                        st.pid,
                        socket.display()
                    ),
                )
            } else {
                Finding::bad(
                    "daemon",
                    Status::Warn,
                    format!(
                        "ccrmd {} running (pid {}), but this ccrm is {}",
                        st.version,
                        st.pid,
                        common::VERSION
                    ),
                    "restart the daemon after upgrading: `ccrm daemon stop && ccrm daemon start`",
                )
            };
            (finding, Some(st))
        }
        Ok(Err(ClientError::NotRunning { .. })) => (
            Finding::bad(
                "daemon",
                Status::Fail,
                format!("ccrmd is not running (no answer on {})", socket.display()),
                "start it: `ccrm daemon start`, or `systemctl --user start ccrmd` when installed as a service (`ccrm daemon install`)",
            ),
            None,
        ),
        Ok(Err(e)) => (
            Finding::bad(
                "daemon",
                Status::Fail,
                format!(
                    "ccrmd on {} does not answer properly: {e}",
                    socket.display()
                ),
                "restart it: `ccrm daemon stop && ccrm daemon start`",
            ),
            None,
        ),
        Err(_) => (
            Finding::bad(
                "daemon",
                Status::Fail,
                format!("ccrmd on {} did not answer in 10 s", socket.display()),
                "look at its log (`ccrm daemon start` keeps it in the state dir) and restart it",
            ),
            None,
        ),
    }
}

/// The daemon's own view of its link.
fn bot_link(url: &str, status: Option<&DaemonStatus>) -> Finding {
    let Some(st) = status else {
        return Finding::skip(
            "bot_link",
            format!("{url}: the daemon is not running, so it has no link"),
        );
    };
    let Some(link) = &st.uplink else {
        return Finding::bad(
            "bot_link",
            Status::Fail,
            format!("bot_url is {url}, but the running daemon has no uplink"),
            "the daemon was started with another config: restart it (`ccrm daemon stop && ccrm daemon start`)",
        );
    };
    let lag = link.last_seq.saturating_sub(link.acked);
    if link.connected {
        if lag > LAG_WARN {
            return Finding::bad(
                "bot_link",
                Status::Warn,
                format!(
                    "connected to {}, but {lag} events are not acknowledged yet",
                    link.url
                ),
                "the bot is slow to store events: look at its log and its disk",
            );
        }
        return Finding::ok(
            "bot_link",
            format!(
                "connected to {} as daemon {}, key accepted; {lag} event(s) waiting for acknowledgement",
                link.url, link.daemon_id
            ),
        );
    }
    let why = link
        .last_error
        .clone()
        .unwrap_or_else(|| "not connected yet".to_owned());
    let fix = if why.contains("401") || why.contains("API key") {
        "the bot does not accept this daemon's key: create one with `ccrm-bot keys create <name> --kind daemon` on the bot and put it in bot_api_key_file (or CCRM_BOT_API_KEY), then restart the daemon"
    } else if why.contains("certificate") || why.contains("TLS") {
        "set bot_ca_file to the CA that signed the bot's certificate (or use a publicly trusted one), then restart the daemon"
    } else {
        "check that the bot runs and is reachable at bot_url; the daemon keeps retrying (its events wait in the spool)"
    };
    Finding::bad(
        "bot_link",
        Status::Fail,
        format!(
            "not connected to {}: {why} ({lag} event(s) waiting)",
            link.url
        ),
        fix,
    )
}

fn clock(date: Option<SystemTime>) -> Finding {
    let Some(date) = date else {
        return Finding::skip("clock", "the bot sent no Date header");
    };
    let now = SystemTime::now();
    let skew = match date.duration_since(now) {
        Ok(ahead) => i64::try_from(ahead.as_secs()).unwrap_or(i64::MAX),
        Err(behind) => -i64::try_from(behind.duration().as_secs()).unwrap_or(i64::MAX),
    };
    if skew.abs() > SKEW_WARN_SECS {
        Finding::bad(
            "clock",
            Status::Warn,
            format!("the bot's clock is {skew:+} s from this machine's"),
            "run time sync on both machines (`timedatectl set-ntp true`); skew garbles event times and can fail TLS",
        )
    } else {
        Finding::ok(
            "clock",
            format!("within {SKEW_WARN_SECS} s of the bot ({skew:+} s)"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_key_says_how_to_get_one() {
        let st = DaemonStatus {
            uplink: Some(common::ipc::UplinkStatus {
                url: "ws://127.0.0.1:1/ws/daemon".into(),
                daemon_id: "d".into(),
                connected: false,
                last_seq: 7,
                acked: 2,
                last_error: Some(
                    "the bot refused the API key (401); check CCRM_BOT_API_KEY".into(),
                ),
            }),
            ..sample_status()
        };
        let f = bot_link("ws://127.0.0.1:1", Some(&st));
        assert_eq!(f.status, Status::Fail);
        assert!(f.detail.contains("5 event(s) waiting"), "{}", f.detail);
        assert!(f.fix.as_deref().is_some_and(|x| x.contains("keys create")));
    }

    #[test]
    fn clock_skew_beyond_ten_seconds_warns() {
        let now = SystemTime::now();
        assert_eq!(clock(Some(now)).status, Status::Ok);
        let ahead = clock(Some(now + Duration::from_secs(120)));
        assert_eq!(ahead.status, Status::Warn);
        assert!(ahead.detail.contains("+1"), "{}", ahead.detail);
        assert_eq!(clock(None).status, Status::Skip);
    }

    fn sample_status() -> DaemonStatus {
        serde_json::from_value(serde_json::json!({
            "version": "0.1.0", "protocol": 1, "pid": 1, "started_ms": 0, "socket": "/s", "state_dir": "/d",
            "sessions": {}, "pending_approvals": 0
        }))
        .expect("a DaemonStatus")
    }
}
