//! Part 3 of the replicas bench: `BENCH_LINKS` simulated daemon links (a load generator
//! on loopback, bounded in time) into one `ccrm-bot` process on PostgreSQL, and the same
//! load into one on SQLite as the baseline: the bot's RSS idle and with every link open,
//! and the commit latency of every frame (sent → acked, the ack following the commit).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, ensure};
use ccrm_bot::auth::KeyKind;
use ccrm_bot::db::{Db, Target};
use common::ids::{DaemonId, SessionId};

use crate::support::fleet::stream;
use crate::support::{self, BotProcess, WAIT, env_num, mb, ms, pct, rss_kb};

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
    let bot = BotProcess::start_on(&data, &dir.join("config"), db_url)?;
    let pid = bot.pid();
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
        latencies.extend(t.await??.latencies);
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
