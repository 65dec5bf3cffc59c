//! Part 3 of the replicas bench: `BENCH_LINKS` simulated daemon links (a load generator
//! on loopback, bounded in time) into one `ccrm-bot` process on PostgreSQL, and the same
//! load into one on SQLite as the baseline: the bot's RSS idle and with every link open,
//! and the commit latency of every frame (sent → acked, the ack following the commit).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use ccrm_bot::auth::KeyKind;
use ccrm_bot::db::{Db, Target};
use common::event::{Event, EventKind};
use common::ids::{DaemonId, SessionId};
use common::link::{DaemonMsg, HubMsg, LinkEvent};
use futures::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use crate::support::{self, WAIT, env_num, mb, ms, pct, rss_kb};

/// The `ccrm-bot` binary on `target` (a PostgreSQL URL, or `None`: SQLite in `data`).
struct Bot {
    child: Child,
    addr: String,
}

impl Bot {
    fn start(data: &Path, config: &Path, db_url: Option<&str>) -> anyhow::Result<Self> {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ccrm-bot"));
        cmd.env("CCRM_BOT_LISTEN", "127.0.0.1:0")
            .env("CCRM_BOT_DATA_DIR", data)
            .env("XDG_CONFIG_HOME", config)
            .env("CCRM_LOG", "warn,ccrm_bot=info")
            .env("NO_COLOR", "1")
            .envs(db_url.map(|u| ("CCRM_BOT_DATABASE_URL", u)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("starting ccrm-bot")?;
        let stderr = child.stderr.take().context("stderr")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("ccrm-bot listening") {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(line);
                    }
                } else if line.contains("ERROR") {
                    eprintln!("[ccrm-bot] {line}");
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(60))
            .context("ccrm-bot did not start")?;
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("addr="))
            .context("no addr= in the listening line")?
            .to_owned();
        Ok(Self { child, addr })
    }
}

impl Drop for Bot {
    fn drop(&mut self) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn delta(seq: u64, session: SessionId) -> LinkEvent {
    LinkEvent {
        seq,
        event: Event {
            seq,
            ts_ms: 1_700_000_000_000 + seq,
            session_id: session,
            kind: EventKind::AssistantDelta {
                text: format!("token {seq} of a streamed answer, about this long "),
            },
            raw: None,
        },
    }
}

/// Streams one event a frame every `period` until `until` on an open link, then waits
/// for the last ack; every frame's sent → acked time.
async fn stream(
    ws: support::Ws,
    session: SessionId,
    start: tokio::time::Instant,
    period: Duration,
    until: tokio::time::Instant,
) -> anyhow::Result<Vec<Duration>> {
    let (mut tx, mut rx) = ws.split();
    let mut tick = tokio::time::interval_at(start, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut in_flight: VecDeque<(u64, Instant)> = VecDeque::new();
    let mut out = Vec::new();
    let mut seq = 0;
    let deadline = until + WAIT;
    loop {
        let sending = tokio::time::Instant::now() < until;
        if !sending && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            _ = tick.tick(), if sending => {
                seq += 1;
                let frame = DaemonMsg::Events { events: vec![delta(seq, session)] };
                in_flight.push_back((seq, Instant::now()));
                tx.send(Message::text(serde_json::to_string(&frame)?)).await?;
            }
            msg = rx.next() => {
                let msg = msg.context("the bot closed a link")??;
                let Message::Text(t) = msg else { continue };
                match serde_json::from_str::<HubMsg>(t.as_str())? {
                    HubMsg::Ack { seq: acked } => {
                        let now = Instant::now();
                        while in_flight.front().is_some_and(|(s, _)| *s <= acked) {
                            if let Some((_, at)) = in_flight.pop_front() {
                                out.push(now - at);
                            }
                        }
                    }
                    HubMsg::Error { error } => bail!("the bot refused a frame: {}", error.message),
                    _ => {}
                }
            }
            () = tokio::time::sleep_until(deadline) => bail!("acks stopped coming"),
            () = tokio::time::sleep_until(until), if sending => {}
        }
    }
    let _ = tx.send(Message::Close(None)).await;
    Ok(out)
}

/// What one bot did under the fleet.
struct FleetRun {
    idle_kb: u64,
    linked_kb: u64,
    latencies: Vec<Duration>,
}

/// `links` links into one bot on `db_url` (or SQLite), each streaming for `secs` s.
async fn fleet(
    dir: &Path,
    db_url: Option<&str>,
    links: usize,
    period: Duration,
    secs: u64,
) -> anyhow::Result<FleetRun> {
    let data = dir.join("bot");
    let target = match db_url {
        Some(u) => Target::Postgres(u.to_owned()),
        None => Target::Sqlite(data.join(ccrm_bot::config::DB_FILE)),
    };
    let db = Db::connect(&target, &data.join("revoked")).await?;
    let (_, key) = db.create_key("bench-fleet", KeyKind::Daemon, 1).await?;
    db.close().await;
    let bot = Bot::start(&data, &dir.join("config"), db_url)?;
    let pid = bot.child.id();
    let http = reqwest::Client::builder().timeout(WAIT).build()?;
    http.get(format!("http://{}/healthz", bot.addr))
        .send()
        .await?;
    let idle_kb = rss_kb(pid)?;
    let mut sockets = Vec::with_capacity(links);
    for d in 0..links {
        let session = SessionId::new();
        let daemon = DaemonId(format!("fleet-{d}"));
        let (ws, _) = support::link(&bot.addr, &key, &daemon, session)
            .await
            .with_context(|| format!("link {d}"))?;
        sockets.push((ws, session));
    }
    let linked_kb = rss_kb(pid)?;
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    let until = start + Duration::from_secs(secs);
    let mut tasks = Vec::with_capacity(links);
    for (i, (ws, session)) in sockets.into_iter().enumerate() {
        // Spread the links' ticks over one period.
        let offset = period.mul_f64(i as f64 / links as f64);
        tasks.push(tokio::spawn(stream(
            ws,
            session,
            start + offset,
            period,
            until,
        )));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await??);
    }
    latencies.sort_unstable();
    ensure!(!latencies.is_empty(), "no frame was acknowledged");
    drop(bot);
    Ok(FleetRun {
        idle_kb,
        linked_kb: linked_kb.max(idle_kb),
        latencies,
    })
}

/// Part 3: PostgreSQL replica, then SQLite, under the same fleet.
pub async fn run(pg: &testkit::PgCluster, dir: &Path) -> anyhow::Result<()> {
    let links = usize::try_from(env_num("BENCH_LINKS", 1_000)?)?;
    let rate = env_num("BENCH_RATE", 2)?;
    let secs = env_num("BENCH_SECS", 10)?;
    let period = Duration::from_secs(1) / u32::try_from(rate)?;
    println!(
        "{links} simulated daemon links into one bot, {rate} events/s each ({} events/s in all) for {secs} s",
        links as u64 * rate
    );
    let url = pg.create_db("fleet")?;
    let on_pg = fleet(&dir.join("fleet-pg"), Some(&url), links, period, secs).await?;
    let on_sqlite = fleet(&dir.join("fleet-sqlite"), None, links, period, secs).await?;
    println!(
        "  {:<30} {:>9} {:>9} {:>9} {:>9} {:>10} {:>10}",
        "", "p50 ms", "p90 ms", "p99 ms", "max ms", "idle MB", "linked MB"
    );
    for (name, r) in [
        ("PostgreSQL, 1 replica", &on_pg),
        ("SQLite, one bot (baseline)", &on_sqlite),
    ] {
        let v = &r.latencies;
        println!(
            "  {:<30} {:>9.2} {:>9.2} {:>9.2} {:>9.2} {:>10.2} {:>10.2}",
            name,
            ms(pct(v, 0.5)),
            ms(pct(v, 0.9)),
            ms(pct(v, 0.99)),
            ms(v.last().copied().unwrap_or_default()),
            mb(r.idle_kb),
            mb(r.linked_kb)
        );
    }
    println!(
        "  frames committed: {} on PostgreSQL, {} on SQLite",
        on_pg.latencies.len(),
        on_sqlite.latencies.len()
    );
    Ok(())
}
