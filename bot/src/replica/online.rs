//! Who is online anywhere (both backends; on SQLite only this bot's links count): the
//! daemons whose link some live replica holds (`daemon_links` rows whose replica's
//! heartbeat is fresh), for the REST routes, the dashboard and chat.

use common::ids::DaemonId;

use super::wire::fresh;

/// The daemons whose link some live replica holds (empty on SQLite, or if the query
/// fails).
pub async fn linked_daemons(db: &crate::db::Db) -> std::collections::HashSet<String> {
    let Some(pool) = db.pg_pool() else {
        return std::collections::HashSet::new();
    };
    sqlx::query_scalar::<_, String>(concat!(
        "SELECT l.daemon_id FROM daemon_links l WHERE ",
        fresh!()
    ))
    .fetch_all(pool)
    .await
    .map(|v| v.into_iter().collect())
    .unwrap_or_default()
}

/// The daemons with a link to this replica or (on PostgreSQL) to any other one.
pub async fn online_anywhere(state: &crate::AppState) -> Vec<DaemonId> {
    let mut online = state.hub.online();
    for d in linked_daemons(&state.db).await {
        let d = DaemonId(d);
        if !online.contains(&d) {
            online.push(d);
        }
    }
    online
}

/// Whether `daemon` has a link to this replica or (on PostgreSQL) to any other one.
pub async fn online_somewhere(state: &crate::AppState, daemon: &DaemonId) -> bool {
    state.hub.is_online(daemon) || linked_daemons(&state.db).await.contains(&daemon.0)
}

/// Whether `daemon` is linked to this replica or (on PostgreSQL) to a live other one and
/// announced `feature` there.
pub async fn feature_somewhere(state: &crate::AppState, daemon: &DaemonId, feature: &str) -> bool {
    if state.hub.has_feature(daemon, feature) {
        return true;
    }
    let Some(pool) = state.db.pg_pool() else {
        return false;
    };
    let found: Option<String> = sqlx::query_scalar(concat!(
        "SELECT l.features FROM daemon_links l WHERE l.daemon_id = $1 AND ",
        fresh!()
    ))
    .bind(daemon.0.as_str())
    .fetch_optional(pool)
    .await
    .ok()
    .flatten();
    found
        .and_then(|f| serde_json::from_str::<Vec<String>>(&f).ok())
        .is_some_and(|f| f.iter().any(|x| x == feature))
}
