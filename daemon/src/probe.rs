//! The TLS checks `ccrm` has ccrmd run for it: `ccrm doctor`'s direct probe of the bot
//! (`GET /healthz` over HTTP or HTTPS with the daemon's TLS settings; its `Date` header gives
//! the clock skew) and `ccrm daemon install`'s check of a `--bot-ca-file`.
//!
//! `ccrm` runs the ccrmd beside it with a hidden first argument ([`PROBE_ARG`],
//! [`CHECK_CA_ARG`], like the exec shim's) and reads one JSON line back. So only ccrmd links
//! rustls, ring and the public web roots (about 1 MB less in `ccrm`, issue 16), and both
//! checks use the very TLS code the uplink dials with.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// `ccrmd __ccrm-probe-bot URL [CA_FILE]`: probe the bot of `URL`, print an [`Answer`].
pub const PROBE_ARG: &str = "__ccrm-probe-bot";
/// `ccrmd __ccrm-check-ca CA_FILE`: build the client config from `CA_FILE`, print an [`Answer`].
pub const CHECK_CA_ARG: &str = "__ccrm-check-ca";

/// How long each network step of the probe may take.
const STEP: Duration = Duration::from_secs(10);
/// How long `ccrm` waits for ccrmd's answer (connect, handshake, request and answer, each
/// bounded by [`STEP`] inside ccrmd).
const WHOLE: Duration = Duration::from_secs(45);

/// What the bot answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    /// `http(s)://host[:port]` as probed.
    pub base: String,
    /// How the connection was secured, in words.
    pub tls_note: String,
    /// The bot's `Date` header, if it sent one.
    pub date: Option<String>,
}

/// ccrmd's one line of output.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Answer {
    Probe(Probe),
    CaOk,
    Error(String),
}

/// ccrmd's side: when `argv[1]` is one of the hidden arguments, run that check, print its
/// [`Answer`] and return the exit code; `None` for a normal start.
pub fn serve(argv: &[OsString]) -> Option<ExitCode> {
    let mode = argv.get(1)?;
    let rest = argv.get(2..).unwrap_or_default();
    let answer = if mode == PROBE_ARG {
        let (Some(url), ca) = (rest.first(), rest.get(1)) else {
            return Some(usage());
        };
        let url = url.to_string_lossy().into_owned();
        let ca = ca.map(PathBuf::from);
        match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => match rt.block_on(probe(&url, ca.as_deref())) {
                Ok(p) => Answer::Probe(p),
                Err(e) => Answer::Error(format!("{e:#}")),
            },
            Err(e) => Answer::Error(format!("cannot start a runtime: {e}")),
        }
    } else if mode == CHECK_CA_ARG {
        let Some(ca) = rest.first() else {
            return Some(usage());
        };
        match crate::tls::client_config(Some(Path::new(ca))) {
            Ok(_) => Answer::CaOk,
            Err(e) => Answer::Error(format!("{e:#}")),
        }
    } else {
        return None;
    };
    println!("{}", serde_json::to_string(&answer).unwrap_or_default());
    Some(ExitCode::SUCCESS)
}

fn usage() -> ExitCode {
    eprintln!("ccrmd: {PROBE_ARG} URL [CA_FILE] | {CHECK_CA_ARG} CA_FILE (used by ccrm)");
    ExitCode::from(2)
}

/// `ccrm`'s side of the probe: the ccrmd beside `ccrm` (or on PATH) probes the bot of `url`
/// trusting `ca` (or the public web roots).
pub async fn probe_bot(url: &str, ca: Option<&Path>) -> anyhow::Result<Probe> {
    let mut cmd = tokio::process::Command::new(crate::up::find_bin("ccrmd")?);
    cmd.arg(PROBE_ARG).arg(url);
    if let Some(ca) = ca {
        cmd.arg(ca);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let out = tokio::time::timeout(WHOLE, cmd.output())
        .await
        .context("ccrmd's probe of the bot did not finish in 45 s")?
        .context("cannot run ccrmd to probe the bot")?;
    match answer(&out)? {
        Answer::Probe(p) => Ok(p),
        Answer::Error(e) => bail!("{e}"),
        Answer::CaOk => bail!("ccrmd answered the probe with a CA check"),
    }
}

/// `ccrm`'s side of the CA check: `ccrmd` (the program the service runs) loads `ca` as the
/// uplink would; its error says what is wrong with the file.
pub fn check_ca(ccrmd: &Path, ca: &Path) -> anyhow::Result<()> {
    let out = std::process::Command::new(ccrmd)
        .arg(CHECK_CA_ARG)
        .arg(ca)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {} to check the CA file", ccrmd.display()))?;
    match answer(&out)? {
        Answer::CaOk => Ok(()),
        Answer::Error(e) => bail!("{e}"),
        Answer::Probe(_) => bail!("ccrmd answered the CA check with a probe"),
    }
}

fn answer(out: &std::process::Output) -> anyhow::Result<Answer> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    serde_json::from_str(line).map_err(|_| {
        anyhow::anyhow!(
            "ccrmd gave no answer ({}): {} (is ccrmd the same version as ccrm?)",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })
}

/// `GET /healthz` on the bot of `url` (`ws(s)://host[:port][/...]`).
async fn probe(url: &str, ca: Option<&Path>) -> anyhow::Result<Probe> {
    let tls = url.starts_with("wss://");
    let host = crate::config::ws_host(url).context("bot_url has no host")?;
    let rest = url.split_once("://").map_or("", |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let port = authority
        .rsplit_once(':')
        .filter(|(h, _)| !h.ends_with(':') && !authority.ends_with(']'))
        .and_then(|(_, p)| p.parse::<u16>().ok())
        .unwrap_or(if tls { 443 } else { 80 });
    let base = format!("{}://{authority}", if tls { "https" } else { "http" });
    let tcp = tokio::time::timeout(STEP, tokio::net::TcpStream::connect((host.as_str(), port)))
        .await
        .with_context(|| format!("{base}: connecting timed out"))?
        .with_context(|| format!("{base}: cannot connect"))?;
    let request =
        format!("GET /healthz HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
    let (head, tls_note) = if tls {
        let config = crate::tls::client_config(ca)?;
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .with_context(|| format!("{host} is not a valid TLS server name"))?;
        let stream = tokio::time::timeout(
            STEP,
            tokio_rustls::TlsConnector::from(config).connect(name, tcp),
        )
        .await
        .with_context(|| format!("{base}: TLS handshake timed out"))?
        .map_err(|e| match crate::tls::explain(&e) {
            Some(why) => anyhow::anyhow!("{base}: {why}"),
            None => anyhow::Error::from(e).context(format!("{base}: TLS handshake failed")),
        })?;
        let note = match ca {
            Some(ca) => format!("TLS, certificate signed by the CA in {}", ca.display()),
            None => "TLS, publicly trusted certificate".to_owned(),
        };
        (exchange(stream, &request).await?, note)
    } else {
        (exchange(tcp, &request).await?, "plain, no TLS".to_owned())
    };
    let status_line = head.lines().next().unwrap_or("");
    if !status_line.contains(" 200") {
        bail!("{base}/healthz answered `{status_line}` (is this a ccrm-bot?)");
    }
    let date = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("date")
            .then(|| v.trim().to_owned())
    });
    Ok(Probe {
        base,
        tls_note,
        date,
    })
}

/// Sends `request` and reads the response head (at most 16 KiB).
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    request: &str,
) -> anyhow::Result<String> {
    tokio::time::timeout(STEP, s.write_all(request.as_bytes()))
        .await
        .context("sending the request timed out")??;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(STEP, s.read(&mut chunk))
            .await
            .context("the bot did not answer in 10 s")??;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.len() > 16 * 1024 {
            break;
        }
    }
    if buf.is_empty() {
        bail!("the bot closed the connection without an answer");
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_round_trip_and_other_arguments_are_a_normal_start() {
        let p = Answer::Probe(Probe {
            base: "https://bot:8443".into(),
            tls_note: "TLS".into(),
            date: None,
        });
        let line = serde_json::to_string(&p).expect("json");
        assert!(line.starts_with("{\"probe\":"), "{line}");
        let out = std::process::Output {
            status: std::process::ExitStatus::default(),
            stdout: format!("{line}\n").into_bytes(),
            stderr: Vec::new(),
        };
        assert!(matches!(answer(&out), Ok(Answer::Probe(q)) if q.base == "https://bot:8443"));
        let garbled = std::process::Output {
            stdout: b"usage".to_vec(),
            stderr: b"unknown argument".to_vec(),
            ..out
        };
        let err = answer(&garbled).expect_err("no JSON");
        assert!(format!("{err}").contains("unknown argument"), "{err}");
        let argv: Vec<OsString> = vec!["ccrmd".into(), "--print-config".into()];
        assert!(serve(&argv).is_none());
        assert!(serve(&argv[..1]).is_none());
    }
}
