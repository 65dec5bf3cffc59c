//! `/`: the overview. Daemons (online or not, hostname, last seen, how many sessions) and
//! sessions (name, daemon, directory, state, queue, pending approvals, cost, last
//! activity), filtered by daemon, state or "active only". The lists are
//! `templates/overview_partial.html`, which the page script fetches again from
//! `/partials/overview` whenever the live stream says something changed.

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use common::event::{SessionState, now_ms};
use serde::Deserialize;

use super::Web;
use super::cookies::WebUser;
use super::errors::{WebError, urlencode};
use super::page::{Base, pending_total, render};
use super::render::{short_id, state_label, time};

/// The filters (query string of `/` and `/partials/overview`).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Filters {
    /// Only this daemon's sessions.
    #[serde(default)]
    pub daemon: String,
    /// Only sessions in this state.
    #[serde(default)]
    pub state: String,
    /// Only sessions with a running claude (or attached).
    #[serde(default)]
    pub active: Option<String>,
}

impl Filters {
    fn active(&self) -> bool {
        self.active
            .as_deref()
            .is_some_and(|a| !a.is_empty() && a != "0")
    }

    fn query(&self) -> String {
        let mut q = Vec::new();
        if !self.daemon.is_empty() {
            q.push(format!("daemon={}", urlencode(&self.daemon)));
        }
        if !self.state.is_empty() {
            q.push(format!("state={}", urlencode(&self.state)));
        }
        if self.active() {
            q.push("active=1".to_owned());
        }
        q.join("&")
    }
}

/// A daemon row.
pub struct DaemonItem {
    /// Its id.
    pub id: String,
    /// Its machine.
    pub hostname: String,
    /// Link open now.
    pub online: bool,
    /// "5 min ago".
    pub last_seen: String,
    /// Its sessions (all, not only the filtered ones).
    pub sessions: usize,
    /// Its version.
    pub version: String,
}

/// A session row.
pub struct SessionItem {
    /// Full id.
    pub id: String,
    /// Name, else short id.
    pub label: String,
    /// Whether it has a name (the short id is shown beside it then).
    pub named: bool,
    /// Short id.
    pub short: String,
    /// Its daemon's hostname (or id).
    pub daemon: String,
    /// Working directory.
    pub cwd: String,
    /// State for CSS (`waiting_permission`).
    pub state: &'static str,
    /// State for people.
    pub state_label: &'static str,
    /// Prompts waiting.
    pub queued: u64,
    /// Approvals waiting.
    pub pending: u64,
    /// `$0.0123`.
    pub cost: Option<String>,
    /// "just now".
    pub activity: String,
}

/// `templates/overview.html`.
#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    base: Base,
    f: Filters,
    query: String,
    daemon_ids: Vec<(String, String)>,
    states: [&'static str; 7],
    daemons: Vec<DaemonItem>,
    sessions: Vec<SessionItem>,
    total: usize,
    pending_all: u64,
}

/// `templates/overview_partial.html`.
#[derive(Template)]
#[template(path = "overview_partial.html")]
struct OverviewPartial {
    daemons: Vec<DaemonItem>,
    sessions: Vec<SessionItem>,
    total: usize,
    pending_all: u64,
}

const STATES: [&str; 7] = [
    "starting",
    "idle",
    "active",
    "waiting_permission",
    "attached",
    "stopped",
    "failed",
];

/// `GET /`.
pub async fn page(
    State(web): State<Web>,
    user: WebUser,
    Query(f): Query<Filters>,
) -> Result<Response, WebError> {
    let (daemons, sessions, total) = lists(&web, &f).await?;
    let pending_all = pending_total(&web).await?;
    let daemon_ids = daemons
        .iter()
        .map(|d| (d.id.clone(), d.hostname.clone()))
        .collect();
    render(&OverviewPage {
        base: Base::new(&web, &user, "overview", "Sessions").await?,
        query: f.query(),
        f,
        daemon_ids,
        states: STATES,
        daemons,
        sessions,
        total,
        pending_all,
    })
}

/// `GET /partials/overview`.
pub async fn partial(
    State(web): State<Web>,
    _user: WebUser,
    Query(f): Query<Filters>,
) -> Result<Response, WebError> {
    let (daemons, sessions, total) = lists(&web, &f).await?;
    render(&OverviewPartial {
        daemons,
        sessions,
        total,
        pending_all: pending_total(&web).await?,
    })
}

async fn lists(
    web: &Web,
    f: &Filters,
) -> Result<(Vec<DaemonItem>, Vec<SessionItem>, usize), WebError> {
    let db = &web.app.db;
    let now = now_ms();
    let all = db.list_sessions(None, None).await?;
    let pending = db.pending_counts().await?;
    let mut per_daemon: HashMap<String, usize> = HashMap::new();
    for s in &all {
        *per_daemon.entry(s.daemon_id.0.clone()).or_default() += 1;
    }
    let online = crate::replica::online_anywhere(&web.app).await;
    let daemons: Vec<DaemonItem> = db
        .list_daemons()
        .await?
        .into_iter()
        .map(|d| DaemonItem {
            online: online.contains(&d.id),
            sessions: per_daemon.get(&d.id.0).copied().unwrap_or(0),
            last_seen: time::ago(d.last_seen_ms, now),
            id: d.id.0,
            hostname: d.hostname,
            version: d.version,
        })
        .collect();
    let hostnames: HashMap<&str, &str> = daemons
        .iter()
        .map(|d| (d.id.as_str(), d.hostname.as_str()))
        .collect();
    let total = all.len();
    let mut sessions = Vec::new();
    // Newest activity first: what people look for.
    for row in all.iter().rev() {
        let info = &row.info;
        if (!f.daemon.is_empty() && row.daemon_id.0 != f.daemon)
            || (!f.state.is_empty() && info.state.as_str() != f.state)
            || (f.active() && !info.state.is_live())
        {
            continue;
        }
        let act = db.session_activity(&info.id).await?;
        let id = info.id.to_string();
        let live = info.state.is_live();
        sessions.push(SessionItem {
            label: info.name.clone().unwrap_or_else(|| short_id(&id)),
            named: info.name.is_some(),
            short: short_id(&id),
            daemon: hostnames
                .get(row.daemon_id.0.as_str())
                .map_or_else(|| row.daemon_id.0.clone(), |h| (*h).to_owned()),
            cwd: info.cwd.display().to_string(),
            state: info.state.as_str(),
            state_label: state_label(info.state),
            queued: if live && info.state != SessionState::Idle {
                act.queued
            } else {
                0
            },
            pending: pending.get(&info.id).copied().unwrap_or(0),
            cost: act.cost_usd.or(info.cost_usd).map(time::money),
            activity: time::ago(act.last_event_ms.max(info.last_event_ms), now),
            id,
        });
    }
    sessions.sort_by_key(|s| std::cmp::Reverse(s.pending));
    Ok((daemons, sessions, total))
}
