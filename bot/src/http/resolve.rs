//! Which session a REST path means: a full id, a unique id prefix (at least
//! [`SessionId::MIN_PREFIX`] characters, the CLI's rule) or a session name, as `ccrm` accepts
//! them. A unique name wins over prefixes; several matches are 409 `ambiguous` listing the
//! candidates by name; none is 404. Handlers then work with the full id, so replies always
//! carry it.

use axum::http::StatusCode;
use common::ids::SessionId;

use super::AppError;
use crate::AppState;
use crate::db::SessionMatch;

/// The longest key looked up (names are at most 100 characters; ids 36).
const MAX_KEY: usize = 200;

/// The session `key` names (see the module docs).
pub async fn resolve_session(state: &AppState, key: &str) -> Result<SessionId, AppError> {
    let key = key.trim();
    if let Ok(id) = key.parse::<SessionId>() {
        return Ok(id);
    }
    if key.is_empty() || key.len() > MAX_KEY {
        return Err(AppError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such session: give its id, a unique id prefix or its name",
        ));
    }
    let lower = key.to_ascii_lowercase();
    let prefix = (key.chars().count() >= SessionId::MIN_PREFIX
        && lower.chars().all(|c| c.is_ascii_hexdigit() || c == '-'))
    .then_some(lower.as_str());
    let found = state.db.find_sessions(key, prefix).await?;
    let named: Vec<&SessionMatch> = found
        .iter()
        .filter(|m| m.name.as_deref() == Some(key))
        .collect();
    if let [one] = named.as_slice() {
        return Ok(one.id);
    }
    let hits: Vec<&SessionMatch> = if named.is_empty() {
        found.iter().collect()
    } else {
        named
    };
    match hits.as_slice() {
        [one] => Ok(one.id),
        [] if prefix.is_none() && key.chars().count() < SessionId::MIN_PREFIX => {
            Err(AppError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!(
                    "no session is named `{key}`, and an id prefix needs at least {} characters; see GET /api/sessions",
                    SessionId::MIN_PREFIX
                ),
            ))
        }
        [] => Err(AppError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no session matches `{key}` (an id, id prefix or name); see GET /api/sessions"),
        )),
        many => Err(AppError::new(
            StatusCode::CONFLICT,
            "ambiguous",
            format!(
                "`{key}` matches {} sessions: {}; give more characters of the id",
                many.len(),
                many.iter()
                    .map(|m| candidate(m))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )),
    }
}

/// One candidate as a person reads it: its name (or short id) with the full id and daemon.
fn candidate(m: &SessionMatch) -> String {
    match &m.name {
        Some(n) => format!("{n} ({} on {})", m.id, m.daemon_id),
        None => format!("{} on {}", m.id, m.daemon_id),
    }
}
