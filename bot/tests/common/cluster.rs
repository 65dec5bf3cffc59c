//! What the replica suites share: more `ccrm-bot` replicas of a [`World`]'s PostgreSQL
//! database ([`replica`], [`replica_with`] with more environment; killed with -9 when
//! dropped), a ccrmd linked to a list of bot URLs ([`daemon_to`], stopped when dropped),
//! REST calls to a given replica ([`get_at`], [`post_at`]), the daemons a replica lists
//! online ([`wait_online`]), a replica's `/metrics` gauges ([`gauge`]), its direct links to
//! other replicas ([`direct_link_up`], [`direct_count`]) and the chat leader as they report
//! it ([`leads`], [`one_leader`]).

use std::net::SocketAddr;
use std::process::Child;
use std::time::Duration;

use serde_json::Value;

use super::{WAIT, World};

/// One more replica of `w`'s database, killed with -9 when dropped.
pub struct Replica {
    pub child: Option<Child>,
    pub addr: SocketAddr,
}

impl Drop for Replica {
    fn drop(&mut self) {
        World::kill9(&mut self.child);
    }
}

/// Starts replica `name` (its own data directory) on port 0.
pub fn replica(w: &World, name: &str) -> Replica {
    replica_with(w, name, &[])
}

/// [`replica`] with `extra` environment variables.
pub fn replica_with(w: &World, name: &str, extra: &[(&str, &str)]) -> Replica {
    let (child, addr) = w.spawn_bot_with("127.0.0.1:0".parse().expect("addr"), name, extra);
    Replica {
        child: Some(child),
        addr,
    }
}

/// A ccrmd started by [`daemon_to`], stopped when dropped: a failing test leaves neither
/// it nor its claude children behind (a plain `Child` is not killed on drop).
pub struct Daemon(pub Option<Child>);

impl Drop for Daemon {
    fn drop(&mut self) {
        World::stop(&mut self.0);
    }
}

/// The World's ccrmd, but linked to `bot_urls` (comma-separated) instead.
pub fn daemon_to(w: &World, bot_urls: &str) -> Daemon {
    let mut env = w.daemon_env();
    for (k, v) in &mut env {
        if k == "CCRM_BOT_URL" {
            *v = bot_urls.to_owned();
        }
    }
    let mut cmd = std::process::Command::new(super::ccrmd_bin());
    cmd.envs(env);
    let (child, _) = testkit::process::spawn_ready(cmd, "ccrmd ready", "ccrmd", WAIT, None)
        .expect("ccrmd did not start");
    Daemon(Some(child))
}

/// `GET path` on replica `addr` as the World's user.
pub async fn get_at(w: &World, addr: SocketAddr, path: &str) -> (u16, Value) {
    let r = w
        .http
        .get(format!("http://{addr}{path}"))
        .bearer_auth(&w.user_token)
        .send()
        .await
        .expect("GET");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// `POST path` with a JSON `body` on replica `addr` as the World's user.
pub async fn post_at(w: &World, addr: SocketAddr, path: &str, body: Value) -> (u16, Value) {
    let r = w
        .http
        .post(format!("http://{addr}{path}"))
        .bearer_auth(&w.user_token)
        .json(&body)
        .send()
        .await
        .expect("POST");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// The value of gauge `name` in replica `addr`'s `/metrics` (`None`: it does not answer).
pub async fn gauge(w: &World, addr: SocketAddr, name: &str) -> Option<f64> {
    let r = w
        .http
        .get(format!("http://{addr}/metrics"))
        .bearer_auth(&w.user_token)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()?;
    let text = r.text().await.ok()?;
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

/// Whether replica `addr` says it leads the chat adapters (`None`: it does not answer).
pub async fn leads(w: &World, addr: SocketAddr) -> Option<bool> {
    gauge(w, addr, "ccrm_chat_leader").await.map(|v| v == 1.0)
}

/// The replicas among `addrs` that say they lead.
pub async fn leaders(w: &World, addrs: &[SocketAddr]) -> Vec<SocketAddr> {
    let mut out = Vec::new();
    for a in addrs {
        if leads(w, *a).await == Some(true) {
            out.push(*a);
        }
    }
    out
}

/// Waits (bounded by `within`) until exactly one of `addrs` leads; returns it.
pub async fn one_leader(w: &World, addrs: &[SocketAddr], within: Duration) -> SocketAddr {
    let found = tokio::time::timeout(within, async {
        loop {
            let l = leaders(w, addrs).await;
            if l.len() == 1 {
                return l[0];
            }
            assert!(l.len() < 2, "two leaders at once: {l:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no replica of {addrs:?} took the lead within {within:?}"))
}

/// A replica's count of calls and replies sent over direct links.
pub async fn direct_count(w: &World, addr: SocketAddr) -> f64 {
    gauge(w, addr, "ccrm_replica_direct_total")
        .await
        .expect("ccrm_replica_direct_total")
}

/// Waits (bounded) until each replica of `addrs` (plain HTTP) reports a direct link up;
/// returns the first one's count of direct messages then.
pub async fn direct_link_up(w: &World, addrs: &[SocketAddr]) -> f64 {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut links = Vec::new();
        for a in addrs {
            links.push(gauge(w, *a, "ccrm_replica_links").await);
        }
        if links.iter().all(|l| *l >= Some(1.0)) {
            return direct_count(w, addrs[0]).await;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no direct links at {addrs:?}: {links:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (bounded) until replica `addr` lists `n` daemons online.
pub async fn wait_online(w: &World, addr: SocketAddr, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, v) = get_at(w, addr, "/api/daemons").await;
        let online: Vec<Value> = v["daemons"]
            .as_array()
            .map(|a| a.iter().filter(|d| d["online"] == true).cloned().collect())
            .unwrap_or_default();
        if online.len() >= n {
            return online;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{n} daemons never came online at {addr}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
