//! End-to-end harness: a real `ccrm-bot` process (so it can be killed with -9), a real
//! `ccrmd` linked to it, the real Claude Code CLI, and the fake Messages API.
//!
//! `ccrmd` is another package's binary; it is found beside `ccrm-bot` in the target dir,
//! which `cargo test --workspace` (the README's test command) always builds; [`bins`]
//! refuses one older than the daemon's sources. [`chat`] holds what the chat suites share.
#![allow(dead_code)]

pub mod bins;
pub mod chat;
pub mod cluster;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ccrm_bot::auth::KeyKind;
use ccrm_bot::db::Db;
use serde_json::Value;
use tempfile::TempDir;
use testkit::{ClaudeHome, FakeApi, TEST_API_KEY, claude_bin, claude_env};

/// Bound for anything a test waits on.
pub const WAIT: Duration = Duration::from_secs(90);

pub struct World {
    pub api: FakeApi,
    pub home: ClaudeHome,
    pub dir: TempDir,
    pub work: PathBuf,
    pub bot: Option<Child>,
    pub addr: SocketAddr,
    pub daemon: Option<Child>,
    pub user_token: String,
    pub daemon_key: String,
    pub http: reqwest::Client,
    /// Extra environment for the bot process (applied last, so it can override).
    pub bot_env: Vec<(String, String)>,
    /// Every stderr line of every bot process started so far (ANSI escapes stripped).
    pub bot_log: Arc<Mutex<Vec<String>>>,
    /// The bot's `database_url` when the suite runs on PostgreSQL (`CCRM_TEST_DB=postgres`).
    pub db_url: Option<String>,
    /// That PostgreSQL cluster (dropped after the processes, see `Drop`).
    pub pg: Option<testkit::PgCluster>,
    /// Every stderr line of every ccrmd started so far.
    pub daemon_log: Arc<Mutex<Vec<String>>>,
}

/// Whether the bot suites run on PostgreSQL this time (`CCRM_TEST_DB=postgres`;
/// `scripts/test.sh` runs them once more that way).
pub fn on_postgres() -> bool {
    std::env::var("CCRM_TEST_DB").is_ok_and(|v| v == "postgres")
}

/// A throwaway cluster and the URL of its database, when [`on_postgres`].
pub fn test_pg() -> Option<(testkit::PgCluster, String)> {
    on_postgres().then(|| {
        let pg = testkit::PgCluster::start().expect("throwaway PostgreSQL cluster");
        let url = pg.url("postgres");
        (pg, url)
    })
}

/// Opens the store at `url` (PostgreSQL) or the SQLite file `path`.
pub async fn open_db(url: Option<&str>, path: &Path) -> Db {
    let target = match url {
        Some(u) => ccrm_bot::db::Target::Postgres(u.to_owned()),
        None => ccrm_bot::db::Target::Sqlite(path.to_path_buf()),
    };
    Db::connect(&target, &path.with_file_name("revoked"))
        .await
        .expect("open the store")
}

/// `ccrmd` beside `ccrm-bot`; panics with the command to run when it is missing or stale
/// ([`bins`]).
pub fn ccrmd_bin() -> PathBuf {
    bins::bin("ccrmd")
}

/// `ccrm` beside `ccrm-bot`, checked as [`ccrmd_bin`].
pub fn ccrm_bin() -> PathBuf {
    bins::bin("ccrm")
}

fn spawn_until(
    cmd: std::process::Command,
    ready: &'static str,
    tag: &'static str,
    log: Option<Arc<Mutex<Vec<String>>>>,
) -> Result<(Child, String), String> {
    testkit::process::spawn_ready(cmd, ready, tag, WAIT, log)
}

use testkit::process::strip_ansi;

impl World {
    /// Bot + linked daemon.
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Bot (with extra environment `bot_env`) + linked daemon.
    pub async fn start_with(bot_env: &[(&str, &str)]) -> Self {
        let mut w = Self::bot_only_with(bot_env).await;
        w.start_daemon();
        w.wait_daemon_online().await;
        w
    }

    /// Just the bot (with a daemon key and a user token created).
    pub async fn bot_only() -> Self {
        Self::bot_only_with(&[]).await
    }

    /// Just the bot, with extra environment `bot_env` (e.g. `CCRM_BOT_MAX_BODY_BYTES`).
    pub async fn bot_only_with(bot_env: &[(&str, &str)]) -> Self {
        Self::build(bot_env, test_pg()).await
    }

    /// Just the bot, on a throwaway PostgreSQL cluster whatever `CCRM_TEST_DB` says (the
    /// replica tests).
    pub async fn bot_only_on_postgres(bot_env: &[(&str, &str)]) -> Self {
        let pg = testkit::PgCluster::start().expect("throwaway PostgreSQL cluster");
        let url = pg.url("postgres");
        Self::build(bot_env, Some((pg, url))).await
    }

    async fn build(bot_env: &[(&str, &str)], pg: Option<(testkit::PgCluster, String)>) -> Self {
        let api = FakeApi::start().await.expect("fake api");
        let dir = tempfile::tempdir().expect("tempdir");
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work).expect("work");
        let work = work.canonicalize().expect("canonical");
        let home = ClaudeHome::new(TEST_API_KEY, &[work.as_path()]).expect("home");
        let (pg, db_url) = pg.map_or((None, None), |(c, u)| (Some(c), Some(u)));
        let db = open_db(db_url.as_deref(), &dir.path().join("bot/ccrm.db")).await;
        let (_, daemon_key) = db
            .create_key("machine-1", KeyKind::Daemon, 1)
            .await
            .expect("key");
        let (_, user_token) = db
            .create_key("alice", KeyKind::User, 1)
            .await
            .expect("token");
        db.close().await;
        let mut w = Self {
            api,
            home,
            dir,
            work,
            bot: None,
            addr: "127.0.0.1:0".parse().expect("addr"),
            daemon: None,
            user_token,
            daemon_key,
            // No idle connection reuse: after a refused oversized body the server closes the
            // connection, and a pooled client could race that close with its next request.
            http: reqwest::Client::builder()
                .timeout(WAIT)
                .pool_max_idle_per_host(0)
                .build()
                .expect("http client"),
            bot_env: bot_env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            bot_log: Arc::default(),
            db_url,
            pg,
            daemon_log: Arc::default(),
        };
        w.start_bot();
        w
    }

    pub fn start_bot(&mut self) {
        let (child, addr) = self.spawn_bot(self.addr, "bot");
        self.addr = addr;
        self.bot = Some(child);
    }

    /// Starts another `ccrm-bot` process on the same database (a replica when it is
    /// PostgreSQL) with its own data directory `<dir>/<name>`; returns it and its address.
    pub fn spawn_bot(&self, listen: SocketAddr, name: &str) -> (Child, SocketAddr) {
        self.spawn_bot_with(listen, name, &[])
    }

    /// [`World::spawn_bot`] with `extra` environment variables on top.
    pub fn spawn_bot_with(
        &self,
        listen: SocketAddr,
        name: &str,
        extra: &[(&str, &str)],
    ) -> (Child, SocketAddr) {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ccrm-bot"));
        cmd.env("CCRM_BOT_LISTEN", listen.to_string())
            .env("CCRM_BOT_DATA_DIR", self.dir.path().join(name))
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("CCRM_LOG", "info")
            .env("NO_COLOR", "1")
            .envs(self.db_url.iter().map(|u| ("CCRM_BOT_DATABASE_URL", u)))
            .envs(self.bot_env.iter().map(|(k, v)| (k, v)))
            .envs(extra.iter().copied());
        let (child, line) =
            spawn_until(cmd, "ccrm-bot listening", "bot", Some(self.bot_log.clone()))
                .expect("ccrm-bot did not start");
        let line = strip_ansi(&line);
        let addr = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix("addr="))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("no addr in {line}"));
        (child, addr)
    }

    /// The bot's store, opened from the test (SQLite file or the PostgreSQL database).
    pub async fn db(&self) -> Db {
        open_db(self.db_url.as_deref(), &self.dir.path().join("bot/ccrm.db")).await
    }

    pub fn runtime_dir(&self) -> PathBuf {
        self.dir.path().join("run")
    }

    pub fn daemon_env(&self) -> Vec<(String, String)> {
        let mut v = claude_env(&self.api, self.home.path());
        v.push((
            "CCRM_RUNTIME_DIR".into(),
            self.runtime_dir().display().to_string(),
        ));
        v.push((
            "CCRM_STATE_DIR".into(),
            self.dir.path().join("state").display().to_string(),
        ));
        v.push((
            "CCRM_CLAUDE_BIN".into(),
            claude_bin().expect("claude").display().to_string(),
        ));
        v.push((
            "XDG_CONFIG_HOME".into(),
            self.dir.path().join("config").display().to_string(),
        ));
        v.push(("CCRM_BOT_URL".into(), format!("ws://{}", self.addr)));
        v.push(("CCRM_BOT_API_KEY".into(), self.daemon_key.clone()));
        v.push(("CCRM_STOP_GRACE_SECS".into(), "3".into()));
        v.push(("CCRM_LOG".into(), "info".into()));
        v.push(("NO_COLOR".into(), "1".into()));
        v
    }

    pub fn start_daemon(&mut self) {
        let mut cmd = std::process::Command::new(ccrmd_bin());
        cmd.envs(self.daemon_env());
        let (child, _) = spawn_until(cmd, "ccrmd ready", "ccrmd", Some(self.daemon_log.clone()))
            .expect("ccrmd did not start");
        self.daemon = Some(child);
    }

    /// Stops `child` as a user would: SIGTERM, up to 15 s, then -9.
    pub fn stop(child: &mut Option<Child>) {
        if let Some(mut c) = child.take() {
            testkit::process::stop(&mut c, Duration::from_secs(15));
        }
    }

    pub fn kill9(child: &mut Option<Child>) {
        if let Some(mut c) = child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(&self.user_token)
            .send()
            .await
            .expect("GET");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self.post_response(path, body).await;
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// `POST` of JSON `body` to `path` as the test user; the response unread (an SSE
    /// stream, say).
    pub async fn post_response(&self, path: &str, body: Value) -> reqwest::Response {
        self.http
            .post(self.url(path))
            .bearer_auth(&self.user_token)
            .json(&body)
            .send()
            .await
            .expect("POST")
    }

    /// Uploads `zip` as workspace `id` on `daemon` with `processPolicy` `policy`; `zip_first`
    /// puts the file before the other fields. The status and the JSON body.
    pub async fn upload_workspace(
        &self,
        daemon: &str,
        id: &str,
        policy: &str,
        zip: Vec<u8>,
        zip_first: bool,
    ) -> (u16, Value) {
        use reqwest::multipart::Form;
        let mut form = Form::new();
        if zip_first {
            form = form.part("zip", zip_part(zip.clone()));
        }
        form = form
            .text("workspaceId", id.to_owned())
            .text("name", format!("Workspace {id}"))
            .text("description", "made by a test")
            .text("processPolicy", policy.to_owned());
        if !zip_first {
            form = form.part("zip", zip_part(zip));
        }
        let r = self
            .post_multipart(&format!("/api/daemons/{daemon}/workspaces"), form)
            .await
            .expect("upload");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// Uploads the small test project as workspace `id` on `daemon` (`overwrite`, the
    /// fields first). The status and the JSON body.
    pub async fn upload_small(&self, daemon: &str, id: &str) -> (u16, Value) {
        self.upload_workspace(
            daemon,
            id,
            "overwrite",
            testkit::zips::small_project(),
            false,
        )
        .await
    }

    /// `POST` of multipart `form` to `path` as the test user; the response unread, or the
    /// send's error (a test of an upload the bot cuts short expects one).
    pub async fn post_multipart(
        &self,
        path: &str,
        form: reqwest::multipart::Form,
    ) -> reqwest::Result<reqwest::Response> {
        self.http
            .post(self.url(path))
            .bearer_auth(&self.user_token)
            .multipart(form)
            .send()
            .await
    }

    /// Waits (bounded) until the daemon shows online.
    pub async fn wait_daemon_online(&self) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (_, v) = self.get("/api/daemons").await;
            if let Some(d) = v["daemons"]
                .as_array()
                .and_then(|a| a.iter().find(|d| d["online"] == true))
            {
                return d["id"].as_str().unwrap_or_default().to_owned();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "daemon never came online: {v}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts a session over REST; returns its id.
    pub async fn new_session(&self, extra: Value) -> String {
        let mut body = serde_json::json!({"cwd": self.work});
        if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            b.extend(e.clone());
        }
        let (status, v) = self.post("/api/sessions", body).await;
        assert_eq!(status, 201, "{v}");
        v["session"]["id"].as_str().expect("session id").to_owned()
    }

    /// The id of the first session `GET /api/sessions` lists (the only one, in suites that
    /// start one).
    pub async fn first_session(&self) -> String {
        let (_, v) = self.get("/api/sessions").await;
        v["sessions"][0]["info"]["id"]
            .as_str()
            .expect("session")
            .to_owned()
    }

    /// The texts of a session's stored prompts, in order.
    pub async fn prompts(&self, session: &str) -> Vec<String> {
        self.all_events(session)
            .await
            .iter()
            .filter(|e| e["event"]["kind"] == "prompt")
            .filter_map(|e| e["event"]["text"].as_str().map(str::to_owned))
            .collect()
    }

    /// Pages every stored event of a session.
    pub async fn all_events(&self, session: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let (status, v) = self
                .get(&format!(
                    "/api/sessions/{session}/events?after={after}&limit=1000"
                ))
                .await;
            assert_eq!(status, 200, "{v}");
            let page = v["events"].as_array().cloned().unwrap_or_default();
            if page.is_empty() {
                return out;
            }
            after = page.last().and_then(|e| e["id"].as_i64()).unwrap_or(after);
            out.extend(page);
        }
    }

    /// Waits (bounded) until a stored event of `session` matches.
    pub async fn wait_stored(&self, session: &str, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let all = self.all_events(session).await;
            if all.iter().any(&pred) {
                return all;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out; {} events stored",
                all.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (bounded) until the audit log holds exactly `n` rows of `action` by `actor`.
    pub async fn wait_audit(&self, actor: &str, action: &str, n: usize) {
        let db = self.db().await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let rows = db.list_audit(200).await.expect("audit");
            let found = rows
                .iter()
                .filter(|r| r.actor == actor && r.action == action)
                .count();
            if found == n {
                break;
            }
            assert!(tokio::time::Instant::now() < deadline, "audit: {rows:#?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        db.close().await;
    }

    /// Waits (bounded) until chat `platform` has recorded showing `session`'s last turn
    /// result: after that a restart cannot show it again. (An answer is posted, then
    /// recorded; a kill between the two shows it twice, which is the honest at-least-once
    /// edge, not what restart tests are about.)
    pub async fn wait_chat_shown(&self, platform: &str, session: &str) {
        let events = self
            .wait_stored(session, |e| e["event"]["kind"] == "turn_result")
            .await;
        let last = events
            .iter()
            .filter(|e| e["event"]["kind"] == "turn_result")
            .filter_map(|e| e["id"].as_i64())
            .max()
            .unwrap_or(0);
        let db = self.db().await;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let marks = db.chat_handled(platform).await.expect("marks");
            if marks
                .iter()
                .any(|(s, id)| s.to_string() == session && *id >= last)
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{platform} never recorded showing event {last}: {marks:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        db.close().await;
    }

    /// The path of ccrmd's control socket.
    pub fn socket(&self) -> PathBuf {
        self.runtime_dir().join("ccrmd.sock")
    }

    /// Everything the bot wrote to stderr so far, one line each.
    pub fn bot_log_text(&self) -> String {
        self.bot_log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// ccrmd's `daemon.status` over its socket.
    pub async fn daemon_status(&self) -> Value {
        let mut c = ccrm_daemon_client(&self.runtime_dir().join("ccrmd.sock")).await;
        c.call(::common::ipc::Command::DaemonStatus(Default::default()))
            .await
            .expect("status")
    }
}

pub async fn ccrm_daemon_client(socket: &Path) -> daemon::client::Client {
    daemon::client::Client::connect(socket)
        .await
        .expect("connect ccrmd")
}

impl Drop for World {
    fn drop(&mut self) {
        Self::stop(&mut self.daemon);
        Self::stop(&mut self.bot);
        // Keep the logs where `zz_secrets_in_logs.rs` reads them, and check them now.
        let secrets = [
            self.user_token.clone(),
            self.daemon_key.clone(),
            testkit::TEST_API_KEY.to_owned(),
        ];
        let mut hits = Vec::new();
        for (what, log) in [("bot", &self.bot_log), ("ccrmd", &self.daemon_log)] {
            let lines = log.lock().unwrap_or_else(|e| e.into_inner()).clone();
            if let Some(file) = keep_log(what, &lines) {
                hits.extend(secret_hits(&file, &lines.join("\n"), &secrets));
            }
        }
        if !hits.is_empty() && !std::thread::panicking() {
            panic!("secrets in the e2e logs:\n{}", hits.join("\n"));
        }
    }
}

/// Where the e2e harness keeps every process log it captured.
pub fn log_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("e2e-logs")
}

/// Writes `lines` to a new file in [`log_dir`]; its path, if it could be written.
fn keep_log(what: &str, lines: &[String]) -> Option<PathBuf> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = log_dir();
    std::fs::create_dir_all(&dir).ok()?;
    let test = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let file = dir.join(format!(
        "{test}-{}-{}-{what}.log",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(&file, text).ok()?;
    Some(file)
}

/// `file:line: what` for every line of `text` holding one of `secrets` or anything shaped
/// like a ccrm secret (`ccrm_user_…`, `ccrm_daemon_…` with 20+ base62 characters).
pub fn secret_hits(file: &Path, text: &str, secrets: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let exact = secrets
            .iter()
            .any(|s| !s.is_empty() && line.contains(s.as_str()));
        let shaped = ["ccrm_user_", "ccrm_daemon_"].iter().any(|p| {
            line.match_indices(p).any(|(at, _)| {
                line[at + p.len()..]
                    .chars()
                    .take_while(char::is_ascii_alphanumeric)
                    .count()
                    >= 20
            })
        });
        if exact || shaped {
            out.push(format!("{}:{}: a secret", file.display(), i + 1));
        }
    }
    out
}

/// A zip file part named `workspace.zip`, as a workspace upload sends it.
pub fn zip_part(bytes: Vec<u8>) -> reqwest::multipart::Part {
    reqwest::multipart::Part::bytes(bytes)
        .file_name("workspace.zip")
        .mime_str("application/zip")
        .expect("mime")
}
