//! Who is calling: the bearer-token middleware that admits user tokens (constant-time checks
//! against hashed tokens; a daemon key is not a user token), the [`User`] it leaves in the
//! request, and the audit row every REST action writes under that user's name.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use common::event::{Origin, Surface, now_ms};
use serde_json::Value;
use tracing::error;

use super::AppError;
use crate::AppState;
use crate::auth::{KeyKind, bearer_token};

/// The authenticated user (the name of their token).
#[derive(Clone, Debug)]
pub struct User(pub String);

/// Middleware: a valid user bearer token or 401.
pub async fn require_user(
    State(state): State<Arc<AppState>>,
    mut req: Request,
    next: Next,
) -> Response {
    let token = bearer_token(req.headers()).map(str::to_owned);
    let user = match token {
        Some(t) => match state.db.verify_key(&t, KeyKind::User).await {
            Ok(Some(row)) => Some(row.name),
            Ok(None) => None,
            Err(e) => return AppError::internal(e).into_response(),
        },
        None => None,
    };
    let Some(user) = user else {
        state.hub.metrics.reject();
        return AppError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid bearer token (Authorization: Bearer <token>)",
        )
        .into_response();
    };
    req.extensions_mut().insert(User(user));
    next.run(req).await
}

/// The origin recorded for what `user` does over REST.
pub(super) fn origin(user: &User) -> Origin {
    Origin::user(Surface::Rest, user.0.clone())
}

/// Writes an audit row for a REST action of `user` (a failed write is logged, not fatal).
pub(super) async fn audit(
    state: &AppState,
    user: &User,
    action: &str,
    target: &str,
    detail: Value,
) {
    if let Err(e) = state
        .db
        .audit(
            &format!("rest:{}", user.0),
            action,
            target,
            detail,
            now_ms(),
        )
        .await
    {
        error!(error = %e, "audit write failed");
    }
}
