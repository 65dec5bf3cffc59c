//! [`Daemon`]: the registry of session actors and the dispatch of control-socket commands
//! onto them. Socket framing lives in [`crate::ipc`]; this module only knows commands.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::event::{Event, EventKind, Origin, SessionState, Surface, now_ms};
use common::ids::SessionId;
use common::ipc::{
    ApprovalInfo, Command, DaemonStatus, ErrorBody, ErrorCode, EventsArgs, PromptArgs, SessionInfo,
    StartArgs, UplinkStatus,
};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::session::{self, Ctx, Launch, SessionHandle, by_of};
use crate::store::{self, SessionRecord};

/// Most events returned in one page.
pub const MAX_PAGE: usize = 1000;

/// Where a stream's events go: the connection's reply channel and the request id, so events
/// reach the socket writer without an extra hop.
#[derive(Clone)]
pub struct StreamSink {
    /// The connection's reply channel.
    pub tx: mpsc::Sender<common::ipc::Reply>,
    /// The id of the streaming request.
    pub id: Value,
}

impl StreamSink {
    async fn send(&self, ev: Event) -> Result<(), ()> {
        self.tx
            .send(common::ipc::Reply::event(self.id.clone(), ev))
            .await
            .map_err(|_| ())
    }

    async fn closed(&self) {
        self.tx.closed().await;
    }

    /// Sends one item of a stream that is not a session's events.
    pub async fn send_item<T: serde::Serialize>(&self, item: &T) -> Result<(), ()> {
        let value = serde_json::to_value(item).map_err(|_| ())?;
        self.tx
            .send(common::ipc::Reply::item(self.id.clone(), value))
            .await
            .map_err(|_| ())
    }
}

/// See the module docs.
pub struct Daemon {
    ctx: Arc<Ctx>,
    sessions: Mutex<BTreeMap<SessionId, (SessionHandle, JoinHandle<()>)>>,
    started_ms: u64,
    shutdown_tx: watch::Sender<bool>,
    /// Reads the bot link's state for `daemon.status`; set only when there is an uplink.
    uplink_status: std::sync::OnceLock<UplinkStatusFn>,
    /// Workspaces and one-shot executions.
    work: crate::work::Work,
}

/// How [`Daemon::status`] reads the uplink's state without knowing the uplink.
type UplinkStatusFn = Box<dyn Fn() -> UplinkStatus + Send + Sync>;

impl Daemon {
    /// Builds the daemon and loads the sessions recorded on disk (as stopped).
    pub fn new(ctx: Ctx) -> Arc<Self> {
        let ctx = Arc::new(ctx);
        let work = crate::work::Work::new(
            &ctx.cfg,
            ctx.claude_bin.clone(),
            ctx.shim.clone(),
            ctx.tag.clone(),
        );
        let daemon = Arc::new(Self {
            ctx: ctx.clone(),
            sessions: Mutex::new(BTreeMap::new()),
            started_ms: now_ms(),
            shutdown_tx: watch::channel(false).0,
            uplink_status: std::sync::OnceLock::new(),
            work,
        });
        for rec in store::load_all(&ctx.cfg.sessions_dir()) {
            match session::start(ctx.clone(), rec, Launch::Stored) {
                Ok((h, task)) => {
                    daemon.lock().insert(h.id, (h, task));
                }
                Err(e) => tracing::warn!(error = %e, "cannot load session"),
            }
        }
        daemon
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, BTreeMap<SessionId, (SessionHandle, JoinHandle<()>)>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Tells the daemon how to read the uplink's state, which `daemon.status` shows. The
    /// wiring passes it in, so this module does not depend on the uplink.
    pub fn set_uplink_status(&self, status: impl Fn() -> UplinkStatus + Send + Sync + 'static) {
        let _ = self.uplink_status.set(Box::new(status));
    }

    /// The workspaces and executions.
    pub fn work(&self) -> &crate::work::Work {
        &self.work
    }

    /// Every session's id, directory and whether it has a live child (what the workspace
    /// commands need to know of sessions).
    pub fn session_dirs(&self) -> Vec<crate::work::SessionDir> {
        self.handles()
            .iter()
            .map(|h| {
                let i = h.info();
                (i.id, i.cwd, i.state.is_live())
            })
            .collect()
    }

    /// A command with a body streamed over the bot link (`workspace.upload`).
    pub async fn execute_with_body(
        &self,
        cmd: Command,
        body: crate::workspace::Body,
    ) -> Result<Value, ErrorBody> {
        match cmd {
            Command::WorkspaceUpload(_) => self.work.upload(body).await,
            Command::SessionFile(a) => {
                let h = self.resolve(&a.session)?;
                let cwd = h.info().cwd;
                crate::inbox::save(body, std::path::Path::new(&cwd), &a)
                    .await
                    .and_then(|s| {
                        serde_json::to_value(s)
                            .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))
                    })
            }
            other => Err(ErrorBody::new(
                ErrorCode::BadRequest,
                format!("`{}` takes no body", other.name()),
            )),
        }
    }

    /// Resolves after `daemon.stop` (or [`Daemon::request_shutdown`]).
    pub fn shutdown_requested(&self) -> watch::Receiver<bool> {
        self.shutdown_tx.subscribe()
    }

    /// Asks the daemon to shut down.
    pub fn request_shutdown(&self) {
        self.shutdown_tx.send_replace(true);
    }

    /// Stops every session (gracefully, then by force after the grace period) and waits
    /// for their actors to end.
    pub async fn shutdown_sessions(&self) {
        let all: Vec<(SessionHandle, JoinHandle<()>)> =
            std::mem::take(&mut *self.lock()).into_values().collect();
        let stops = all.iter().map(|(h, _)| h.shutdown());
        futures::future::join_all(stops).await;
        for (_, task) in all {
            let _ = tokio::time::timeout(Duration::from_secs(2), task).await;
        }
    }

    /// All session handles, oldest first.
    pub fn handles(&self) -> Vec<SessionHandle> {
        let mut v: Vec<SessionHandle> = self.lock().values().map(|(h, _)| h.clone()).collect();
        v.sort_by_key(|h| h.info().created_ms);
        v
    }

    /// Finds a session by full id, unique id prefix, or exact name.
    pub fn resolve(&self, key: &str) -> Result<SessionHandle, ErrorBody> {
        let key = key.trim();
        if key.is_empty() {
            return Err(ErrorBody::new(ErrorCode::BadRequest, "no session given"));
        }
        let sessions = self.lock();
        if let Ok(id) = key.parse::<SessionId>()
            && let Some((h, _)) = sessions.get(&id)
        {
            return Ok(h.clone());
        }
        let by_name: Vec<&SessionHandle> = sessions
            .values()
            .map(|(h, _)| h)
            .filter(|h| h.info().name.as_deref() == Some(key))
            .collect();
        if let [h] = by_name.as_slice() {
            return Ok((*h).clone());
        }
        let hits: Vec<&SessionHandle> = sessions
            .values()
            .map(|(h, _)| h)
            .filter(|h| h.id.has_prefix(key))
            .collect();
        match hits.as_slice() {
            [h] => Ok((*h).clone()),
            [] if key.chars().count() < SessionId::MIN_PREFIX => Err(ErrorBody::new(
                ErrorCode::NotFound,
                format!(
                    "no session is named `{key}`, and an id prefix needs at least {} characters; run `ccrm list` to see them",
                    SessionId::MIN_PREFIX
                ),
            )),
            [] => Err(ErrorBody::new(
                ErrorCode::NotFound,
                format!("no session matches `{key}`; run `ccrm list` to see them"),
            )),
            many => Err(ErrorBody::new(
                ErrorCode::Ambiguous,
                format!(
                    "`{key}` matches {} sessions ({}); give more characters",
                    many.len(),
                    many.iter()
                        .map(|h| h.id.short())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }

    /// Runs one non-streaming command. Streaming commands go through
    /// [`Daemon::stream`]; `follow` flags are ignored here.
    pub async fn execute(&self, cmd: Command) -> Result<Value, ErrorBody> {
        let to_value = |v: &dyn erased::Ser| v.to_json();
        if crate::work::Work::handles(&cmd) {
            return self.work.execute(cmd, &self.session_dirs()).await;
        }
        match cmd {
            Command::DaemonStatus(_) => Ok(to_value(&self.status())),
            Command::DaemonStop(_) => {
                self.request_shutdown();
                Ok(json!({"stopping": true}))
            }
            Command::SessionStart(args) => self.start_session(args).await.map(|i| to_value(&i)),
            Command::SessionsList(_) => {
                let infos: Vec<SessionInfo> =
                    self.handles().iter().map(SessionHandle::info).collect();
                Ok(to_value(&infos))
            }
            Command::SessionGet(r) => {
                let h = self.resolve(&r.session)?;
                Ok(json!({"session": h.info(), "approvals": h.pending()}))
            }
            Command::SessionStop(r) => self.resolve(&r.session)?.stop().await.map(|i| to_value(&i)),
            Command::SessionKill(r) => self.resolve(&r.session)?.kill().await.map(|i| to_value(&i)),
            Command::SessionResume(r) => self
                .resolve(&r.session)?
                .resume()
                .await
                .map(|i| to_value(&i)),
            Command::SessionInterrupt(r) => {
                let h = self.resolve(&r.session)?;
                let interrupted = h.interrupt(Origin::new(Surface::Cli).to_string()).await?;
                Ok(json!({"interrupted": interrupted}))
            }
            Command::SessionAttach(a) => self
                .resolve(&a.session)?
                .attach(a.now)
                .await
                .map(|i| to_value(&i)),
            Command::SessionEvents(a) => {
                let h = self.resolve(&a.session)?;
                let page = h
                    .log
                    .page(a.after, a.limit.unwrap_or(MAX_PAGE).min(MAX_PAGE));
                Ok(
                    json!({"events": page.events, "first_seq": page.first_seq, "last_seq": page.last_seq}),
                )
            }
            Command::PromptSend(p) => {
                let h = self.resolve(&p.session)?;
                let origin = p.origin.unwrap_or_else(|| Origin::new(Surface::Cli));
                h.prompt_with(p.text, p.images, origin)
                    .await
                    .map(|a| to_value(&a))
            }
            Command::ApprovalsList(a) => {
                let list: Vec<ApprovalInfo> = match a.session {
                    Some(s) => self.resolve(&s)?.pending(),
                    None => self
                        .handles()
                        .iter()
                        .flat_map(SessionHandle::pending)
                        .collect(),
                };
                Ok(to_value(&list))
            }
            Command::ApprovalDecide(d) => {
                let h = self.resolve(&d.session)?;
                h.decide(d.approval, d.decision, d.message, by_of(d.origin.as_ref()))
                    .await
                    .map(|i| to_value(&i))
            }
            Command::QuestionAnswer(a) => {
                let h = self.resolve(&a.session)?;
                h.answer(a.approval, a.answers, by_of(a.origin.as_ref()))
                    .await
                    .map(|i| to_value(&i))
            }
            Command::ExecFollow(_) => Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "exec.follow streams; send it as a streaming request",
            )),
            Command::WorkspaceUpload(_) => Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "workspace.upload takes its zip as a body over the bot link; locally use workspace.create with zip_path",
            )),
            Command::SessionFile(_) => Err(ErrorBody::new(
                ErrorCode::BadRequest,
                "session.file takes its file as a body over the bot link; locally copy the file into the session's directory",
            )),
            other => Err(ErrorBody::new(
                ErrorCode::Internal,
                format!("`{}` has no handler", other.name()),
            )),
        }
    }

    /// Whether `cmd` streams (and so goes through [`Daemon::stream`]).
    pub fn is_stream(cmd: &Command) -> bool {
        matches!(
            cmd,
            Command::SessionEvents(EventsArgs { follow: true, .. })
                | Command::PromptSend(PromptArgs { follow: true, .. })
                | Command::ExecFollow(_)
        )
    }

    /// Runs a streaming command: events go to `sink` until the stream ends (the prompt's
    /// turn finished, or the client went away); returns the summary for the end line.
    pub async fn stream(&self, cmd: Command, sink: StreamSink) -> Result<Option<Value>, ErrorBody> {
        match cmd {
            Command::SessionEvents(a) => {
                let h = self.resolve(&a.session)?;
                follow_log(&h, a.after, &sink, |_| false).await;
                Ok(None)
            }
            Command::PromptSend(p) => {
                let h = self.resolve(&p.session)?;
                let origin = p.origin.unwrap_or_else(|| Origin::new(Surface::Cli));
                let start = h.log.last_seq();
                let accepted = h.prompt_with(p.text, p.images, origin).await?;
                let prompt_id = accepted.prompt_id;
                let mut in_turn = false;
                let mut result: Option<Value> = None;
                follow_log(&h, start, &sink, |ev| {
                    // Show only this prompt's turn: from its start to its result.
                    match &ev.kind {
                        EventKind::TurnStarted { prompt_id: id } if *id == prompt_id => in_turn = true,
                        EventKind::TurnResult { prompt_id: Some(id), is_error, subtype, text, .. } if *id == prompt_id => {
                            result = Some(json!({"prompt_id": prompt_id, "is_error": is_error, "subtype": subtype, "text": text}));
                            return Follow::EndAfter;
                        }
                        EventKind::State { state: SessionState::Stopped | SessionState::Failed, reason } => {
                            result = Some(json!({"prompt_id": prompt_id, "is_error": true, "subtype": "session_ended", "text": reason}));
                            return Follow::EndAfter;
                        }
                        _ => {}
                    }
                    if in_turn { Follow::Send } else { Follow::Skip }
                })
                .await;
                Ok(Some(
                    result.unwrap_or_else(|| json!({"prompt_id": prompt_id})),
                ))
            }
            Command::ExecFollow(a) => {
                let (tx, mut rx) = mpsc::channel(64);
                let forward = async {
                    while let Some(item) = rx.recv().await {
                        if sink.send_item(&item).await.is_err() {
                            break;
                        }
                    }
                };
                let (summary, ()) = tokio::join!(self.work.follow(a, tx), forward);
                summary.map(Some)
            }
            other => self.execute(other).await.map(Some),
        }
    }

    async fn start_session(&self, mut a: StartArgs) -> Result<SessionInfo, ErrorBody> {
        if let Some(ws) = a.workspace.take() {
            if !a.cwd.as_os_str().is_empty() {
                return Err(ErrorBody::new(
                    ErrorCode::BadRequest,
                    "give either a cwd or a workspace, not both",
                ));
            }
            a.cwd = self.work.workspaces.path_of(&ws)?;
        }
        if !a.cwd.is_absolute() {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                format!("cwd `{}` must be an absolute path", a.cwd.display()),
            ));
        }
        if !a.cwd.is_dir() {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                format!("cwd `{}` is not an existing directory", a.cwd.display()),
            ));
        }
        let mode = a
            .permission_mode
            .clone()
            .unwrap_or_else(|| self.ctx.cfg.default_permission_mode.clone());
        if !crate::config::PERMISSION_MODES.contains(&mode.as_str()) {
            return Err(ErrorBody::new(
                ErrorCode::BadRequest,
                format!(
                    "permission mode `{mode}` is not one of {}",
                    crate::config::PERMISSION_MODES.join(", ")
                ),
            ));
        }
        let claude_args = a.claude_args.unwrap_or_default();
        common::claude_args::check(&claude_args)
            .map_err(|e| ErrorBody::new(ErrorCode::BadRequest, e))?;
        if let Some(name) = &a.name {
            if name.trim().is_empty() || name.len() > 100 {
                return Err(ErrorBody::new(
                    ErrorCode::BadRequest,
                    "a session name must be 1 to 100 characters",
                ));
            }
            if self
                .handles()
                .iter()
                .any(|h| h.info().name.as_deref() == Some(name.as_str()))
            {
                return Err(ErrorBody::new(
                    ErrorCode::Conflict,
                    format!("a session named `{name}` already exists"),
                ));
            }
        }
        let rec = SessionRecord {
            id: SessionId::new(),
            name: a.name,
            cwd: a.cwd,
            model: a.model.or_else(|| self.ctx.cfg.default_model.clone()),
            permission_mode: mode,
            auto_allow: a.auto_allow,
            allowed_tools: a
                .allowed_tools
                .unwrap_or_else(|| self.ctx.cfg.allowed_tools.clone()),
            session_allowed_tools: Vec::new(),
            created_ms: now_ms(),
            state: SessionState::Starting,
            reason: None,
            has_transcript: false,
            claude_args,
        };
        let (h, task) = session::start(self.ctx.clone(), rec, Launch::New)?;
        self.lock().insert(h.id, (h.clone(), task));
        match tokio::time::timeout(Duration::from_secs(60), h.wait_ready()).await {
            Ok(r) => r,
            Err(_) => Ok(h.info()),
        }
    }

    /// `daemon.status`.
    pub fn status(&self) -> DaemonStatus {
        let mut sessions = BTreeMap::new();
        let mut pending = 0;
        for h in self.handles() {
            let info = h.info();
            *sessions.entry(info.state.as_str().to_owned()).or_insert(0) += 1;
            pending += info.pending;
        }
        DaemonStatus {
            pid: std::process::id(),
            version: common::VERSION.to_owned(),
            protocol: common::IPC_PROTOCOL_VERSION,
            started_ms: self.started_ms,
            socket: self.ctx.cfg.socket_path(),
            state_dir: self.ctx.cfg.state_dir.clone(),
            claude_bin: Some(self.ctx.claude_bin.clone()),
            sessions,
            pending_approvals: pending,
            uplink: self.uplink_status.get().map(|status| status()),
            executions: self.work.executions.counts(),
        }
    }

    /// The state directory (for tests and status).
    pub fn state_dir(&self) -> PathBuf {
        self.ctx.cfg.state_dir.clone()
    }
}

/// What a follow filter wants done with an event.
pub enum Follow {
    /// Skip it.
    Skip,
    /// Send it.
    Send,
    /// Send it and end the stream.
    EndAfter,
}

impl From<bool> for Follow {
    fn from(end: bool) -> Self {
        if end { Self::EndAfter } else { Self::Send }
    }
}

/// Streams `h`'s events after `after` to `sink`, live, until `filter` says stop or the
/// client goes away. Never blocks the session: it reads the log and waits on its watch.
async fn follow_log<F, R>(h: &SessionHandle, mut after: u64, sink: &StreamSink, mut filter: F)
where
    F: FnMut(&Event) -> R,
    R: Into<Follow>,
{
    let mut watch = h.log.subscribe();
    loop {
        let page = h.log.page(after, MAX_PAGE);
        if page.dropped_through > after {
            // The bounded log dropped events this follower had not read yet.
            tracing::warn!(
                after,
                dropped_through = page.dropped_through,
                "follower fell behind the event log"
            );
        }
        for ev in page.events {
            after = ev.seq;
            match filter(&ev).into() {
                Follow::Skip => {}
                Follow::Send => {
                    if sink.send(ev).await.is_err() {
                        return;
                    }
                }
                Follow::EndAfter => {
                    let _ = sink.send(ev).await;
                    return;
                }
            }
        }
        if h.log.last_seq() > after {
            continue;
        }
        tokio::select! {
            changed = watch.changed() => if changed.is_err() { return },
            () = sink.closed() => return,
        }
    }
}

/// Serialisation without generics in `execute`'s match arms.
mod erased {
    pub trait Ser {
        fn to_json(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Ser for T {
        fn to_json(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
        }
    }
}
