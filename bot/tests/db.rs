//! The bot's storage layer against real SQLite files in a temporary directory (or, with
//! `CCRM_TEST_DB=postgres`, a throwaway PostgreSQL cluster): dedup of resent events, keyset
//! and offset paging, session state and approvals derived from events, API keys,
//! reopening and (SQLite) file modes.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use ccrm_bot::db::{ApprovalStatus, Claim, Db, DbError, KeyKind, Target};
use common::event::{Decision, Event, EventKind, Origin, SessionState, Surface};
use common::ids::{ApprovalId, DaemonId, SessionId};
use common::ipc::{ApprovalKind, SessionInfo};
use common::link::LinkEvent;
use tempfile::TempDir;

struct Fixture {
    _dir: TempDir,
    path: PathBuf,
    db: Db,
    /// The PostgreSQL database's URL and cluster when the suite runs on PostgreSQL.
    pg: Option<(String, testkit::PgCluster)>,
}

impl Fixture {
    /// Another handle on the same store (a reopen, or a second process's view).
    async fn reopen(&self) -> Db {
        let target = match &self.pg {
            Some((url, _)) => Target::Postgres(url.clone()),
            None => Target::Sqlite(self.path.clone()),
        };
        Db::connect(&target, &self.path.with_file_name("revoked"))
            .await
            .expect("reopen")
    }
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("data").join("ccrm.db");
    let pg = std::env::var("CCRM_TEST_DB")
        .is_ok_and(|v| v == "postgres")
        .then(|| {
            let cluster = testkit::PgCluster::start().expect("throwaway PostgreSQL cluster");
            (cluster.url("postgres"), cluster)
        });
    let target = match &pg {
        Some((url, _)) => Target::Postgres(url.clone()),
        None => Target::Sqlite(path.clone()),
    };
    let db = Db::connect(&target, &path.with_file_name("revoked"))
        .await
        .expect("open db");
    Fixture {
        _dir: dir,
        path,
        db,
        pg,
    }
}

async fn daemon(db: &Db, name: &str) -> DaemonId {
    let id = DaemonId(name.to_owned());
    db.upsert_daemon(&id, "box", "0.1.0", None, 1_000)
        .await
        .expect("upsert daemon");
    id
}

fn text(seq: u64, session: SessionId, session_seq: u64) -> LinkEvent {
    event(
        seq,
        session,
        session_seq,
        EventKind::AssistantText {
            text: format!("event {seq}"),
        },
    )
}

fn event(seq: u64, session: SessionId, session_seq: u64, kind: EventKind) -> LinkEvent {
    LinkEvent {
        seq,
        event: Event {
            seq: session_seq,
            ts_ms: 10_000 + seq,
            session_id: session,
            kind,
            raw: None,
        },
    }
}

fn info(id: SessionId, state: SessionState) -> SessionInfo {
    serde_json::from_value(serde_json::json!({
        "id": id,
        "name": "work",
        "cwd": "/home/u/proj",
        "permission_mode": "default",
        "state": state,
        "created_ms": 5_000,
        "last_event_ms": 5_000,
    }))
    .expect("session info")
}

#[tokio::test]
async fn resent_events_are_stored_once() {
    let f = fixture().await;
    let d = daemon(&f.db, "d1").await;
    let s = SessionId::new();
    let first: Vec<LinkEvent> = (1..=5).map(|i| text(i, s, i)).collect();
    let stored = f.db.insert_events(&d, &first).await.expect("insert");
    assert_eq!(stored.len(), 5);
    assert!(stored.windows(2).all(|w| w[0].id < w[1].id), "ids increase");
    assert_eq!(stored[0].seq, 1);
    assert_eq!(stored[0].daemon_id, d);
    assert_eq!(stored[0].event, first[0].event);

    // The same batch again stores nothing.
    let again = f.db.insert_events(&d, &first).await.expect("resend");
    assert!(again.is_empty());

    // An overlapping batch (3..=8) stores only 6..=8, with ids after the first five.
    let overlap: Vec<LinkEvent> = (3..=8).map(|i| text(i, s, i)).collect();
    let stored2 = f.db.insert_events(&d, &overlap).await.expect("overlap");
    assert_eq!(stored2.iter().map(|e| e.seq).collect::<Vec<_>>(), [6, 7, 8]);
    assert!(stored2[0].id > stored[4].id);

    // The same seq from another daemon is a different event.
    let d2 = daemon(&f.db, "d2").await;
    let other =
        f.db.insert_events(&d2, &[text(1, SessionId::new(), 1)])
            .await
            .expect("other daemon");
    assert_eq!(other.len(), 1);

    let page = f.db.events_after(&s, 0, 100).await.expect("page");
    assert_eq!(page.len(), 8);
    assert_eq!(
        page.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    assert_eq!(f.db.counts().await.expect("counts").events, 9);
}

#[tokio::test]
async fn max_seq_per_daemon() {
    let f = fixture().await;
    let d = daemon(&f.db, "d1").await;
    let d2 = daemon(&f.db, "d2").await;
    assert_eq!(f.db.max_seq(&d).await.expect("max"), 0);
    let s = SessionId::new();
    let batch: Vec<LinkEvent> = (1..=42).map(|i| text(i, s, i)).collect();
    f.db.insert_events(&d, &batch).await.expect("insert");
    assert_eq!(f.db.max_seq(&d).await.expect("max"), 42);
    assert_eq!(f.db.max_seq(&d2).await.expect("max"), 0);
    assert_eq!(
        f.db.max_seq(&DaemonId("never".into())).await.expect("max"),
        0
    );
}

#[tokio::test]
async fn events_for_an_unknown_daemon_are_refused() {
    let f = fixture().await;
    let err =
        f.db.insert_events(&DaemonId("ghost".into()), &[text(1, SessionId::new(), 1)])
            .await
            .expect_err("foreign key");
    assert!(matches!(err, DbError::Sqlx(_)), "{err:?}");
    assert_eq!(f.db.counts().await.expect("counts").events, 0);
}

#[tokio::test]
async fn keyset_paging_across_interleaved_sessions() {
    let f = fixture().await;
    let d = daemon(&f.db, "d1").await;
    let (a, b) = (SessionId::new(), SessionId::new());
    // Interleave two sessions so one session's ids have gaps.
    let batch: Vec<LinkEvent> = (1..=50u64)
        .map(|i| {
            if i.is_multiple_of(2) {
                text(i, a, i / 2)
            } else {
                text(i, b, i.div_ceil(2))
            }
        })
        .collect();
    f.db.insert_events(&d, &batch).await.expect("insert");

    let mut seen = Vec::new();
    let mut cursor = 0;
    loop {
        let page = f.db.events_after(&a, cursor, 7).await.expect("page");
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        assert!(page.iter().all(|e| e.event.session_id == a));
        cursor = page.last().map_or(cursor, |e| e.id);
        seen.extend(page.into_iter().map(|e| e.event.seq));
    }
    assert_eq!(seen, (1..=25).collect::<Vec<_>>());

    // All sessions after an id: the SSE/WS catch-up.
    let all = f.db.events_since_id(0, 1000).await.expect("all");
    assert_eq!(all.len(), 50);
    let tail = f.db.events_since_id(all[39].id, 1000).await.expect("tail");
    assert_eq!(tail.len(), 10);
    assert_eq!(tail[0].id, all[40].id);
    assert_eq!(f.db.last_event_id().await.expect("last"), all[49].id);
    assert!(
        f.db.events_after(&SessionId::new(), 0, 10)
            .await
            .expect("none")
            .is_empty()
    );
}

#[tokio::test]
async fn offset_paging() {
    let f = fixture().await;
    let d = daemon(&f.db, "d1").await;
    let s = SessionId::new();
    let batch: Vec<LinkEvent> = (1..=30).map(|i| text(i, s, i)).collect();
    f.db.insert_events(&d, &batch).await.expect("insert");
    let page = f.db.events_offset(&s, 10, 5).await.expect("page");
    assert_eq!(
        page.iter().map(|e| e.event.seq).collect::<Vec<_>>(),
        [11, 12, 13, 14, 15]
    );
    let last = f.db.events_offset(&s, 28, 5).await.expect("last");
    assert_eq!(last.len(), 2);
    assert!(
        f.db.events_offset(&s, 30, 5)
            .await
            .expect("past")
            .is_empty()
    );
}

#[tokio::test]
async fn session_state_follows_state_events() {
    let f = fixture().await;
    let d = daemon(&f.db, "d1").await;
    let s = SessionId::new();
    f.db.upsert_session(&d, &info(s, SessionState::Starting), 6_000)
        .await
        .expect("upsert");
    let got = f.db.get_session(&s).await.expect("get");
    assert_eq!(got.daemon_id, d);
    assert_eq!(got.info.name.as_deref(), Some("work"));
    assert_eq!(got.info.state, SessionState::Starting);

    let state = |state, reason: Option<&str>| EventKind::State {
        state,
        reason: reason.map(str::to_owned),
    };
    let batch = vec![
        event(1, s, 1, state(SessionState::Idle, None)),
        event(2, s, 2, state(SessionState::Active, None)),
        event(3, s, 3, text(3, s, 3).event.kind),
        event(4, s, 4, state(SessionState::Failed, Some("child exited 1"))),
    ];
    f.db.insert_events(&d, &batch).await.expect("insert");
    let got = f.db.get_session(&s).await.expect("get");
    assert_eq!(got.info.state, SessionState::Failed);
    assert_eq!(got.info.reason.as_deref(), Some("child exited 1"));
    assert_eq!(got.updated_ms, 10_004);
    assert_eq!(got.info.cwd, PathBuf::from("/home/u/proj"), "info kept");

    // A resent old state event changes nothing (it is not stored again).
    f.db.insert_events(&d, &batch[1..2]).await.expect("resend");
    assert_eq!(
        f.db.get_session(&s).await.expect("get").info.state,
        SessionState::Failed
    );

    // A state event for a session the daemon never described creates a placeholder row.
    let fresh = SessionId::new();
    f.db.insert_events(&d, &[event(5, fresh, 1, state(SessionState::Idle, None))])
        .await
        .expect("insert");
    let placeholder = f.db.get_session(&fresh).await.expect("placeholder");
    assert_eq!(placeholder.info.state, SessionState::Idle);
    // ... which the daemon's next session update fills in.
    f.db.upsert_session(&d, &info(fresh, SessionState::Active), 7_000)
        .await
        .expect("fill in");
    let filled = f.db.get_session(&fresh).await.expect("get");
    assert_eq!(filled.info.cwd, PathBuf::from("/home/u/proj"));
    assert_eq!(filled.info.state, SessionState::Active);

    // Filters.
    let all = f.db.list_sessions(None, None).await.expect("list");
    assert_eq!(all.len(), 2);
    let failed =
        f.db.list_sessions(Some("d1"), Some("failed"))
            .await
            .expect("list");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].info.id, s);
    assert!(
        f.db.list_sessions(Some("d2"), None)
            .await
            .expect("list")
            .is_empty()
    );
    let counts = f.db.counts().await.expect("counts");
    assert_eq!(counts.sessions_by_state.get("failed"), Some(&1));
    assert_eq!(counts.sessions_by_state.get("active"), Some(&1));

    assert!(matches!(
        f.db.get_session(&SessionId::new()).await,
        Err(DbError::NotFound)
    ));

    // Another daemon cannot take the session over.
    let d2 = daemon(&f.db, "d2").await;
    assert!(
        f.db.upsert_session(&d2, &info(s, SessionState::Idle), 8_000)
            .await
            .is_err()
    );
    f.db.insert_events(&d2, &[event(1, s, 99, state(SessionState::Idle, None))])
        .await
        .expect("insert");
    let still = f.db.get_session(&s).await.expect("get");
    assert_eq!(
        (still.daemon_id, still.info.state),
        (d, SessionState::Failed)
    );
}

/// Eight answers claim one pending approval at once through two handles on the store (two
/// replicas' pools): the conditional UPDATE lets exactly one win, and every loser is told
/// who. A given-back claim can be won again; a decided approval names its decider.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_claim_on_an_approval_wins_and_losers_learn_who() {
    let f = fixture().await;
    let other = f.reopen().await;
    let d = daemon(&f.db, "d1").await;
    let s = SessionId::new();
    let aid = ApprovalId("req-race".into());
    let ask = event(
        1,
        s,
        1,
        EventKind::PermissionRequest {
            approval_id: aid.clone(),
            tool_name: "Write".into(),
            input: serde_json::json!({"file_path": "/tmp/x"}),
            tool_use_id: Some("toolu_9".into()),
            description: None,
        },
    );
    f.db.insert_events(&d, &[ask]).await.expect("insert");
    let stale = 60_000;
    let mut tasks = Vec::new();
    for i in 0..8u64 {
        let db = if i % 2 == 0 {
            f.db.clone()
        } else {
            other.clone()
        };
        tasks.push(tokio::spawn(async move {
            let by = format!("rest:user{i}");
            let c = db.claim_approval("req-race", &by, 1_000_000, stale).await;
            (by, c.expect("claim"))
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(
            tokio::time::timeout(std::time::Duration::from_secs(60), t)
                .await
                .expect("claims return")
                .expect("claim task"),
        );
    }
    let winners: Vec<&String> = results
        .iter()
        .filter(|(_, c)| matches!(c, Claim::Won(_)))
        .map(|(by, _)| by)
        .collect();
    assert_eq!(winners.len(), 1, "exactly one claim wins: {results:?}");
    let winner = winners[0].clone();
    for (by, c) in &results {
        if by != &winner {
            assert_eq!(
                c,
                &Claim::Taken {
                    by: winner.clone(),
                    decision: None
                },
                "{by} is told who claimed first"
            );
        }
    }
    // The winner's answer never reached the daemon: it gives the claim back, and the next
    // answer wins. A claim older than `stale` may be taken over too.
    f.db.release_approval("req-race", &winner, 1_000_000)
        .await
        .expect("release");
    assert_eq!(
        other
            .claim_approval("req-race", "telegram:bob", 1_000_100, stale)
            .await
            .expect("claim"),
        Claim::Won(1_000_100)
    );
    assert!(matches!(
        f.db.claim_approval("req-race", "rest:carol", 1_000_200, stale)
            .await
            .expect("claim"),
        Claim::Taken { ref by, .. } if by == "telegram:bob"
    ));
    assert_eq!(
        f.db.claim_approval("req-race", "rest:carol", 1_000_100 + stale + 1, stale)
            .await
            .expect("claim"),
        Claim::Won(1_000_100 + stale + 1),
        "a stale claim is taken over"
    );
    // Once the decision is stored, a claim names the decider and the decision.
    let decided = event(
        2,
        s,
        2,
        EventKind::PermissionDecision {
            approval_id: aid.clone(),
            tool_name: "Write".into(),
            decision: Decision::Deny,
            by: "rest:carol".into(),
            message: None,
        },
    );
    f.db.insert_events(&d, &[decided]).await.expect("insert");
    assert_eq!(
        other
            .claim_approval("req-race", "rest:dave", 2_000_000, stale)
            .await
            .expect("claim"),
        Claim::Taken {
            by: "rest:carol".into(),
            decision: Some(Decision::Deny)
        }
    );
    assert_eq!(
        f.db.claim_approval("req-unknown", "rest:dave", 2_000_000, stale)
            .await
            .expect("claim"),
        Claim::Unknown
    );
}

#[tokio::test]
async fn approvals_go_from_pending_to_decided() {
    let f = fixture().await;
    let d = daemon(&f.db, "d1").await;
    let s = SessionId::new();
    let other = SessionId::new();
    let perm = ApprovalId("req-perm".into());
    let question = ApprovalId("req-q".into());
    let asked = vec![
        event(
            1,
            s,
            1,
            EventKind::PermissionRequest {
                approval_id: perm.clone(),
                tool_name: "Write".into(),
                input: serde_json::json!({"file_path": "/tmp/x"}),
                tool_use_id: Some("toolu_1".into()),
                description: None,
            },
        ),
        event(
            2,
            other,
            1,
            EventKind::Question {
                approval_id: question.clone(),
                questions: vec![],
            },
        ),
    ];
    f.db.insert_events(&d, &asked).await.expect("insert");
    let pending = f.db.list_approvals(true, None).await.expect("pending");
    assert_eq!(pending.len(), 2);
    assert!(pending.iter().all(|a| a.status == ApprovalStatus::Pending));
    let p = f.db.get_approval("req-perm").await.expect("get");
    assert_eq!(p.kind, ApprovalKind::Permission);
    assert_eq!(p.tool_name, "Write");
    assert_eq!(p.input["file_path"], "/tmp/x");
    assert_eq!(p.session_id, s);
    assert_eq!(p.decision, None);
    assert_eq!(
        f.db.list_approvals(true, Some(&s))
            .await
            .expect("one session")
            .len(),
        1
    );
    assert_eq!(f.db.counts().await.expect("counts").approvals_pending, 2);

    let decided = vec![
        event(
            3,
            s,
            2,
            EventKind::PermissionDecision {
                approval_id: perm.clone(),
                tool_name: "Write".into(),
                decision: Decision::Deny,
                by: "telegram:alice".into(),
                message: Some("not there".into()),
            },
        ),
        event(
            4,
            other,
            2,
            EventKind::Answer {
                approval_id: question.clone(),
                answers: BTreeMap::from([("Color?".to_owned(), "Blue".to_owned())]),
                by: "cli".into(),
                decision: Decision::Allow,
            },
        ),
        // A second decision for the same request (a late answer) does not change the first.
        event(
            5,
            s,
            3,
            EventKind::PermissionDecision {
                approval_id: perm.clone(),
                tool_name: "Write".into(),
                decision: Decision::Allow,
                by: "cli".into(),
                message: None,
            },
        ),
    ];
    f.db.insert_events(&d, &decided).await.expect("insert");
    assert!(
        f.db.list_approvals(true, None)
            .await
            .expect("pending")
            .is_empty()
    );
    let p = f.db.get_approval("req-perm").await.expect("get");
    assert_eq!(p.status, ApprovalStatus::Decided);
    assert_eq!(p.decision, Some(Decision::Deny));
    assert_eq!(p.decided_by.as_deref(), Some("telegram:alice"));
    assert_eq!(p.message.as_deref(), Some("not there"));
    assert_eq!(p.decided_ms, Some(10_003));
    let q = f.db.get_approval("req-q").await.expect("get");
    assert_eq!(q.kind, ApprovalKind::Question);
    assert_eq!(q.decision, Some(Decision::Allow));
    assert_eq!(
        q.answers
            .as_ref()
            .and_then(|a| a.get("Color?"))
            .map(String::as_str),
        Some("Blue")
    );
    assert_eq!(
        f.db.list_approvals(false, None).await.expect("all").len(),
        2
    );
    assert!(matches!(
        f.db.get_approval("nope").await,
        Err(DbError::NotFound)
    ));
}

#[tokio::test]
async fn keys_verify_by_kind_and_stop_when_revoked() {
    let f = fixture().await;
    let (daemon_id, daemon_secret) =
        f.db.create_key("laptop", KeyKind::Daemon, 1_000)
            .await
            .expect("create");
    let (user_id, user_secret) =
        f.db.create_key("alice", KeyKind::User, 2_000)
            .await
            .expect("create");
    assert!(daemon_secret.starts_with("ccrm_daemon_") && daemon_secret.len() == 12 + 43);
    assert!(user_secret.starts_with("ccrm_user_") && user_secret.len() == 10 + 43);

    let ok =
        f.db.verify_key(&daemon_secret, KeyKind::Daemon)
            .await
            .expect("verify")
            .expect("valid daemon key");
    assert_eq!(
        (ok.id, ok.name.as_str(), ok.kind),
        (daemon_id, "laptop", KeyKind::Daemon)
    );
    let ok =
        f.db.verify_key(&user_secret, KeyKind::User)
            .await
            .expect("verify")
            .expect("valid user token");
    assert_eq!(ok.id, user_id);

    // Kinds are separate, wrong and tampered secrets fail.
    let none = |r: Result<Option<_>, DbError>| r.expect("verify").is_none();
    assert!(none(f.db.verify_key(&user_secret, KeyKind::Daemon).await));
    assert!(none(f.db.verify_key(&daemon_secret, KeyKind::User).await));
    let swapped = daemon_secret.replacen("ccrm_daemon_", "ccrm_user_", 1);
    assert!(none(f.db.verify_key(&swapped, KeyKind::User).await));
    let mut tampered = daemon_secret.clone();
    tampered.pop();
    tampered.push('!');
    assert!(none(f.db.verify_key(&tampered, KeyKind::Daemon).await));
    assert!(none(f.db.verify_key("", KeyKind::Daemon).await));

    // Duplicate names and bad names are refused.
    assert!(
        f.db.create_key("laptop", KeyKind::User, 3_000)
            .await
            .is_err()
    );
    assert!(f.db.create_key("12", KeyKind::User, 3_000).await.is_err());

    // Listing never shows secrets or hashes.
    let keys = f.db.list_keys().await.expect("list");
    assert_eq!(keys.len(), 2);
    let listed = serde_json::to_string(&keys).expect("json");
    assert!(!listed.contains(&daemon_secret[12..]) && !listed.contains("hash"));
    assert!(!listed.contains(&ccrm_bot::auth::hash_secret(&daemon_secret)));

    // Revoke by name and by id; revoked keys fail; unknown keys are NotFound.
    f.db.revoke_key("laptop", 4_000)
        .await
        .expect("revoke by name");
    assert!(none(f.db.verify_key(&daemon_secret, KeyKind::Daemon).await));
    f.db.revoke_key(&user_id.to_string(), 5_000)
        .await
        .expect("revoke by id");
    assert!(none(f.db.verify_key(&user_secret, KeyKind::User).await));
    f.db.revoke_key("laptop", 9_000)
        .await
        .expect("revoking twice is fine");
    let keys = f.db.list_keys().await.expect("list");
    assert_eq!(
        keys[0].revoked_ms,
        Some(4_000),
        "first revocation time kept"
    );
    assert_eq!(keys[1].revoked_ms, Some(5_000));
    assert!(matches!(
        f.db.revoke_key("nobody", 1).await,
        Err(DbError::NotFound)
    ));
    assert!(matches!(
        f.db.revoke_key("999", 1).await,
        Err(DbError::NotFound)
    ));
}

#[tokio::test]
async fn daemons_online_offline_and_touch() {
    let f = fixture().await;
    let (key, _) =
        f.db.create_key("box", KeyKind::Daemon, 1)
            .await
            .expect("key");
    let d = DaemonId("d1".into());
    f.db.upsert_daemon(&d, "box", "0.1.0", Some(key), 1_000)
        .await
        .expect("upsert");
    f.db.touch_daemon(&d, 2_000).await.expect("touch");
    let rows = f.db.list_daemons().await.expect("list");
    assert_eq!(rows.len(), 1);
    assert!(rows[0].online);
    assert_eq!(
        (rows[0].first_seen_ms, rows[0].last_seen_ms),
        (1_000, 2_000)
    );
    assert_eq!(rows[0].key_id, Some(key));
    assert_eq!(f.db.counts().await.expect("counts").daemons_online, 1);

    f.db.set_daemon_online(&d, false, 3_000)
        .await
        .expect("offline");
    assert!(!f.db.list_daemons().await.expect("list")[0].online);
    f.db.upsert_daemon(&d, "box2", "0.2.0", Some(key), 4_000)
        .await
        .expect("hello again");
    let row = &f.db.list_daemons().await.expect("list")[0];
    assert!(row.online);
    assert_eq!((row.hostname.as_str(), row.first_seen_ms), ("box2", 1_000));
    assert_eq!(f.db.set_all_daemons_offline().await.expect("reset"), 1);
    assert_eq!(f.db.counts().await.expect("counts").daemons_online, 0);

    let ghost = DaemonId("ghost".into());
    assert!(matches!(
        f.db.touch_daemon(&ghost, 1).await,
        Err(DbError::NotFound)
    ));
    assert!(matches!(
        f.db.set_daemon_online(&ghost, true, 1).await,
        Err(DbError::NotFound)
    ));
}

#[tokio::test]
async fn audit_log_newest_first() {
    let f = fixture().await;
    for i in 0..5u64 {
        f.db.audit(
            "telegram:alice",
            "prompt.send",
            &format!("s{i}"),
            serde_json::json!({"n": i}),
            1_000 + i,
        )
        .await
        .expect("audit");
    }
    let rows = f.db.list_audit(3).await.expect("list");
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].target, "s4");
    assert_eq!(rows[0].detail["n"], 4);
    assert_eq!(rows[2].ts_ms, 1_002);
    assert_eq!(rows[0].actor, "telegram:alice");
}

#[tokio::test]
async fn reopening_keeps_data_and_migrations_are_idempotent() {
    let f = fixture().await;
    let d = daemon(&f.db, "d1").await;
    let s = SessionId::new();
    let batch: Vec<LinkEvent> = (1..=3).map(|i| text(i, s, i)).collect();
    f.db.insert_events(&d, &batch).await.expect("insert");
    f.db.create_key("k", KeyKind::User, 1).await.expect("key");
    f.db.close().await;

    let reopened = f.reopen().await;
    assert_eq!(reopened.max_seq(&d).await.expect("max"), 3);
    assert_eq!(
        reopened.events_after(&s, 0, 10).await.expect("page").len(),
        3
    );
    assert_eq!(reopened.list_keys().await.expect("keys").len(), 1);
    // A second handle on the same file at the same time (the `keys` CLI beside a running
    // server) also works.
    let second = f.reopen().await;
    assert_eq!(second.list_daemons().await.expect("daemons").len(), 1);
    // Dedup still holds across the reopen.
    assert!(
        reopened
            .insert_events(&d, &batch)
            .await
            .expect("resend")
            .is_empty()
    );
}

#[tokio::test]
async fn files_are_private() {
    let f = fixture().await;
    if f.pg.is_some() {
        // PostgreSQL keeps no files of ours.
        return;
    }
    let d = daemon(&f.db, "d1").await;
    f.db.insert_events(&d, &[text(1, SessionId::new(), 1)])
        .await
        .expect("insert");
    let mode =
        |p: &std::path::Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    assert_eq!(mode(&f.path), 0o600, "db file");
    let dir = f.path.parent().expect("dir");
    assert_eq!(mode(dir), 0o700, "data dir");
    let wal = dir.join("ccrm.db-wal");
    assert!(wal.exists(), "WAL mode");
    assert_eq!(mode(&wal), 0o600, "wal file");

    // An existing directory and file with loose modes are tightened on open.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::set_permissions(&f.path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let _again = Db::open(&f.path).await.expect("reopen");
    assert_eq!(mode(dir), 0o700);
    assert_eq!(mode(&f.path), 0o600);

    // A shared sticky directory (like /tmp) is left as it is; the file is still 0600.
    let shared = dir.join("shared");
    std::fs::create_dir(&shared).expect("mkdir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let inside = shared.join("x.db");
    let _shared = Db::open(&inside).await.expect("open in sticky dir");
    let full = std::fs::metadata(&shared)
        .expect("meta")
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(full, 0o1777);
    assert_eq!(mode(&inside), 0o600);
}

#[tokio::test]
async fn prompts_and_other_kinds_round_trip_through_storage() {
    let f = fixture().await;
    let d = daemon(&f.db, "d1").await;
    let s = SessionId::new();
    let mut ev = event(
        1,
        s,
        1,
        EventKind::Prompt {
            prompt_id: 1,
            text: "héllo ✓".into(),
            origin: Origin::user(Surface::Discord, "bob"),
            queued_behind: 0,
        },
    );
    ev.event.raw = Some(serde_json::json!({"type": "user", "big": "x".repeat(10_000)}));
    f.db.insert_events(&d, std::slice::from_ref(&ev))
        .await
        .expect("insert");
    let page = f.db.events_after(&s, 0, 10).await.expect("page");
    assert_eq!(page[0].event, ev.event);
}

#[tokio::test]
async fn large_overlapping_batches_store_each_seq_once_in_order() {
    let f = fixture().await;
    let d = daemon(&f.db, "d1").await;
    let sessions = [SessionId::new(), SessionId::new(), SessionId::new()];
    let make = |i: u64| {
        let s = sessions[usize::try_from(i % 3).unwrap_or(0)];
        if i.is_multiple_of(97) {
            event(
                i,
                s,
                i,
                EventKind::State {
                    state: SessionState::Active,
                    reason: None,
                },
            )
        } else {
            text(i, s, i)
        }
    };
    let first: Vec<LinkEvent> = (1..=300).map(make).collect();
    assert_eq!(
        f.db.insert_events(&d, &first).await.expect("insert").len(),
        300
    );

    // 150..=700 overlaps the first 151 events; a seq repeated inside the batch counts once.
    let mut second: Vec<LinkEvent> = (150..=700).map(make).collect();
    second.insert(400, make(500));
    let stored = f.db.insert_events(&d, &second).await.expect("insert");
    assert_eq!(
        stored.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (301..=700).collect::<Vec<_>>()
    );
    assert!(stored.windows(2).all(|w| w[0].id < w[1].id));
    for e in &stored {
        assert_eq!(e.event, make(e.seq).event);
    }
    let all = f.db.events_since_id(0, 10_000).await.expect("all");
    assert_eq!(all.len(), 700);
    assert_eq!(f.db.max_seq(&d).await.expect("max"), 700);
    // State events inside big batches still reach the sessions table.
    assert_eq!(
        f.db.list_sessions(None, Some("active"))
            .await
            .expect("list")
            .len(),
        3
    );
}

/// The ingest writer's group commit: frames of several daemons (resends, the same seqs on
/// two daemons, state changes and approvals, session updates, touches) in one transaction
/// each, with what it reports matching what was stored.
#[tokio::test]
async fn group_commits_store_each_event_once_and_report_it_exactly() {
    use ccrm_bot::db::{Write, Written};
    let f = fixture().await;
    let d1 = daemon(&f.db, "d1").await;
    let d2 = daemon(&f.db, "d2").await;
    let (s1, s2) = (SessionId::new(), SessionId::new());
    let mut w = f.db.event_writer().await.expect("writer");
    let stored = |r: &Written| match r {
        Written::Events(e) => e
            .iter()
            .map(|e| (e.daemon_id.0.clone(), e.seq))
            .collect::<Vec<_>>(),
        other => panic!("expected events, got {other:?}"),
    };

    // The one-trip path: plain events only. d1 3..4 was sent twice (a resend in the same
    // group), d2 uses the same seqs as d1, and d1's second frame overlaps its first.
    f.db.insert_events(&d1, &[text(1, s1, 1), text(2, s1, 2)])
        .await
        .expect("first");
    let a: Vec<LinkEvent> = (1..=4).map(|i| text(i, s1, i)).collect();
    let b: Vec<LinkEvent> = (1..=70).map(|i| text(i, s2, i)).collect();
    let c: Vec<LinkEvent> = (3..=6).map(|i| text(i, s1, i)).collect();
    let out = w
        .commit(&[
            (&d1, Write::Events(&a)),
            (&d2, Write::Events(&b)),
            (&d1, Write::Events(&c)),
            (&d2, Write::Touch(77_000)),
        ])
        .await
        .expect("group");
    assert_eq!(stored(&out[0]), [("d1".into(), 3), ("d1".into(), 4)]);
    assert_eq!(stored(&out[1]).len(), 70);
    assert_eq!(stored(&out[2]), [("d1".into(), 5), ("d1".into(), 6)]);
    assert!(matches!(out[3], Written::Done));
    // What was reported is what is stored, with the same row ids.
    let all = f.db.events_since_id(0, 1000).await.expect("all");
    assert_eq!(all.len(), 2 + 2 + 70 + 2);
    for r in &out[..3] {
        let Written::Events(evs) = r else {
            unreachable!()
        };
        for e in evs {
            assert!(all.contains(e), "reported {e:?} is not stored as such");
        }
    }
    let daemons = f.db.list_daemons().await.expect("daemons");
    assert_eq!(
        daemons.iter().find(|d| d.id == d2).map(|d| d.last_seen_ms),
        Some(77_000)
    );

    // The transaction path: a state change, an approval and a session update, plus a
    // session of another daemon, refused without failing the group.
    let approval = ApprovalId("toolu_1".into());
    let frame = vec![
        event(
            7,
            s1,
            7,
            EventKind::State {
                state: SessionState::Active,
                reason: None,
            },
        ),
        event(
            8,
            s1,
            8,
            EventKind::PermissionRequest {
                approval_id: approval.clone(),
                tool_name: "Write".into(),
                input: serde_json::json!({"file_path": "/x"}),
                tool_use_id: None,
                description: None,
            },
        ),
    ];
    let mine = info(s1, SessionState::Active);
    let theirs = info(s2, SessionState::Idle);
    f.db.upsert_session(&d2, &theirs, 1)
        .await
        .expect("d2 owns s2");
    let out = w
        .commit(&[
            (&d1, Write::Events(&frame)),
            (&d1, Write::Session(&mine, 90_000)),
            (&d1, Write::Session(&theirs, 90_000)),
            (&d1, Write::Events(&frame)),
        ])
        .await
        .expect("group with derived rows");
    assert_eq!(stored(&out[0]), [("d1".into(), 7), ("d1".into(), 8)]);
    assert!(matches!(out[1], Written::Done));
    assert!(matches!(&out[2], Written::Refused(why) if why.contains("another daemon")));
    assert!(
        stored(&out[3]).is_empty(),
        "the resend in the same group is a duplicate"
    );
    assert_eq!(
        f.db.get_session(&s1).await.expect("s1").info.state,
        SessionState::Active
    );
    let pending =
        f.db.list_approvals(true, Some(&s1))
            .await
            .expect("approvals");
    assert_eq!(pending.len(), 1);
    assert_eq!(f.db.get_session(&s2).await.expect("s2").daemon_id, d2);

    // A turn's groups without an approval (committed inline on SQLite): new state events
    // set the session's state, a state event of a session never described makes its
    // placeholder row, a session update is stored in its turn and another daemon's is
    // refused without failing the group, and a resent state event changes nothing.
    let fresh = SessionId::new();
    let state = |seq, session, state, reason: Option<&str>| {
        event(
            seq,
            session,
            seq,
            EventKind::State {
                state,
                reason: reason.map(str::to_owned),
            },
        )
    };
    let turn = vec![
        text(9, s1, 9),
        state(10, s1, SessionState::Idle, None),
        state(11, fresh, SessionState::Failed, Some("child exited 1")),
    ];
    let described = info(s1, SessionState::Idle);
    let out = w
        .commit(&[
            (&d1, Write::Events(&turn)),
            (&d1, Write::Session(&described, 95_000)),
            (&d1, Write::Session(&theirs, 95_000)),
            (&d1, Write::Events(&turn[1..2])),
            (&d1, Write::Touch(96_000)),
        ])
        .await
        .expect("group without approvals");
    assert_eq!(stored(&out[0]).len(), 3);
    assert!(matches!(out[1], Written::Done));
    assert!(matches!(&out[2], Written::Refused(why) if why.contains("another daemon")));
    assert!(stored(&out[3]).is_empty(), "a resend is a duplicate");
    assert!(matches!(out[4], Written::Done));
    let got = f.db.get_session(&s1).await.expect("s1");
    assert_eq!(got.info.state, SessionState::Idle);
    assert_eq!(got.updated_ms, 95_000, "the session update came last");
    let placeholder = f.db.get_session(&fresh).await.expect("placeholder");
    assert_eq!(placeholder.daemon_id, d1);
    assert_eq!(placeholder.info.state, SessionState::Failed);
    assert_eq!(placeholder.info.reason.as_deref(), Some("child exited 1"));
    assert_eq!(f.db.get_session(&s2).await.expect("s2").daemon_id, d2);
    // The state event of another daemon's session leaves that session alone.
    let other = vec![state(12, s2, SessionState::Failed, Some("not yours"))];
    let out = w
        .commit(&[(&d1, Write::Events(&other))])
        .await
        .expect("stored as history");
    assert_eq!(stored(&out[0]).len(), 1);
    assert_eq!(
        f.db.get_session(&s2).await.expect("s2").info.state,
        SessionState::Idle
    );
}
