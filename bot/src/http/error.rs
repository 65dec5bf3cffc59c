//! The REST layer's errors and extractors: [`AppError`] (a status, a stable JSON `code` and a
//! message; 5xx bodies say "internal error" and the detail goes to the log), the mapping of
//! store, hub and daemon errors onto it, and [`AppJson`] / [`AppQuery`], which give a bad body
//! or query string the same JSON error shape. The chat core shares these so its replies say
//! what REST would.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use common::ipc::{ErrorBody, ErrorCode};
use serde_json::json;
use tracing::error;

use crate::db::DbError;
use crate::hub::HubError;

/// An API error: status + stable code + message.
#[derive(Debug)]
pub struct AppError {
    status: StatusCode,
    code: &'static str,
    message: String,
}

impl AppError {
    /// Builds an error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        debug_assert!(
            super::schema::is_documented(code),
            "error code `{code}` is missing from http::schema::ErrorCodeName"
        );
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// The stable code (`not_found`, `WORKSPACE_NOT_FOUND`, ...).
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// A 500 whose detail goes to the log, not to the client.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        error!(error = %e, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error",
        )
    }
}

impl std::fmt::Display for AppError {
    /// The message users see (chat adapters show it as is).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

impl From<DbError> for AppError {
    fn from(e: DbError) -> Self {
        match e {
            DbError::NotFound => Self::new(StatusCode::NOT_FOUND, "not_found", "not found"),
            other => Self::internal(other),
        }
    }
}

impl From<HubError> for AppError {
    fn from(e: HubError) -> Self {
        match e {
            HubError::Offline(d) => Self::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "daemon_offline",
                format!(
                    "daemon {d} is offline; its sessions can be driven again once it reconnects"
                ),
            ),
            HubError::Timeout(d, t) => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "daemon_timeout",
                format!("daemon {d} did not answer within {}s", t.as_secs()),
            ),
            HubError::Daemon(body) => daemon_error(body),
        }
    }
}

/// A hub error on OCC's endpoints (workspaces, executions): a daemon that is offline gets
/// `offline` (the endpoint's 503 `DAEMON_OFFLINE`), and so does one whose link dropped before
/// it answered (the hub fails what was in flight with `ShuttingDown`) or that is stopping,
/// which their documented responses list as `DAEMON_OFFLINE` too; the rest as for any route.
pub fn occ_hub_error(e: HubError, offline: impl FnOnce() -> AppError) -> AppError {
    match e {
        HubError::Offline(_) => offline(),
        HubError::Daemon(body) if body.code == ErrorCode::ShuttingDown => AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "DAEMON_OFFLINE",
            body.message,
        ),
        other => other.into(),
    }
}

/// Maps a daemon error to an HTTP status, keeping its code and message.
pub fn daemon_error(body: ErrorBody) -> AppError {
    let (status, code) = match body.code {
        ErrorCode::NotFound => (StatusCode::NOT_FOUND, "not_found"),
        ErrorCode::Ambiguous => (StatusCode::CONFLICT, "ambiguous"),
        // What reaches a daemon already passed the REST schema: a refusal there is about
        // the value (no such directory, a name in use, answers that do not fit), not its form.
        ErrorCode::BadRequest => (StatusCode::UNPROCESSABLE_ENTITY, "unprocessable"),
        ErrorCode::ParseError | ErrorCode::UnknownCommand => {
            (StatusCode::BAD_REQUEST, "bad_request")
        }
        ErrorCode::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
        ErrorCode::BadState => (StatusCode::CONFLICT, "bad_state"),
        ErrorCode::AlreadyDecided => (StatusCode::CONFLICT, "already_decided"),
        ErrorCode::Conflict => (StatusCode::CONFLICT, "conflict"),
        ErrorCode::NotSupported => (StatusCode::NOT_IMPLEMENTED, "not_supported"),
        ErrorCode::SpawnFailed => (StatusCode::BAD_GATEWAY, "spawn_failed"),
        ErrorCode::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
        ErrorCode::Internal => (StatusCode::BAD_GATEWAY, "daemon_internal"),
        // Workspaces and executions keep OCC's upper-case codes.
        ErrorCode::WorkspaceNotFound => (StatusCode::NOT_FOUND, "WORKSPACE_NOT_FOUND"),
        ErrorCode::WorkspaceInUse => (StatusCode::CONFLICT, "WORKSPACE_IN_USE"),
        ErrorCode::WorkersBusy => (StatusCode::TOO_MANY_REQUESTS, "WORKERS_BUSY"),
        ErrorCode::BadWorkspaceId => (StatusCode::BAD_REQUEST, "BAD_WORKSPACE_ID"),
        // A hostile or broken archive is a well-formed upload the daemon refuses: 422.
        ErrorCode::ZipPathTraversal => (StatusCode::UNPROCESSABLE_ENTITY, "ZIP_PATH_TRAVERSAL"),
        ErrorCode::ZipAbsolutePath => (StatusCode::UNPROCESSABLE_ENTITY, "ZIP_ABSOLUTE_PATH"),
        ErrorCode::ZipSymlink => (StatusCode::UNPROCESSABLE_ENTITY, "ZIP_SYMLINK"),
        ErrorCode::ZipSpecialFile => (StatusCode::UNPROCESSABLE_ENTITY, "ZIP_SPECIAL_FILE"),
        ErrorCode::ZipBadName => (StatusCode::UNPROCESSABLE_ENTITY, "ZIP_BAD_NAME"),
        ErrorCode::ZipDuplicate => (StatusCode::UNPROCESSABLE_ENTITY, "ZIP_DUPLICATE"),
        ErrorCode::ZipTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "ZIP_TOO_LARGE"),
        ErrorCode::ZipTooManyFiles => (StatusCode::UNPROCESSABLE_ENTITY, "ZIP_TOO_MANY_FILES"),
        ErrorCode::ZipRatio => (StatusCode::UNPROCESSABLE_ENTITY, "ZIP_RATIO"),
        ErrorCode::ZipEncrypted => (StatusCode::UNPROCESSABLE_ENTITY, "ZIP_ENCRYPTED"),
        ErrorCode::ZipCorrupt => (StatusCode::UNPROCESSABLE_ENTITY, "ZIP_CORRUPT"),
    };
    AppError::new(status, code, body.message)
}

/// JSON body extractor that turns rejections into [`AppError`]s.
pub struct AppJson<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequest<S> for AppJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(Self(v)),
            Err(JsonRejection::BytesRejection(e))
                if e.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                Err(AppError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    "request body too large",
                ))
            }
            Err(e) => Err(AppError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                e.body_text(),
            )),
        }
    }
}

/// Query string extractor that turns rejections into [`AppError`]s (a `?limit=abc` gets
/// the same JSON error shape as a bad body).
pub struct AppQuery<T>(pub T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> FromRequestParts<S> for AppQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(Self(v)),
            Err(e) => Err(AppError::new(
                StatusCode::BAD_REQUEST,
                "bad_request",
                e.body_text(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use common::ids::DaemonId;

    /// On OCC's endpoints a request in flight when the daemon's link drops (or while it
    /// stops) is the documented `DAEMON_OFFLINE`, not the daemon's own `shutting_down`; an
    /// offline daemon gets the endpoint's own answer; the rest map as on any route.
    #[test]
    fn a_daemon_gone_mid_request_is_daemon_offline_on_occ_routes() {
        let d = DaemonId("d1".into());
        let offline = || AppError::new(StatusCode::SERVICE_UNAVAILABLE, "DAEMON_OFFLINE", "off");
        let e = occ_hub_error(
            HubError::Daemon(ErrorBody::new(
                ErrorCode::ShuttingDown,
                "daemon d1 disconnected before answering",
            )),
            offline,
        );
        assert_eq!(
            (e.status(), e.code()),
            (StatusCode::SERVICE_UNAVAILABLE, "DAEMON_OFFLINE")
        );
        let e = occ_hub_error(HubError::Offline(d), offline);
        assert_eq!(e.code(), "DAEMON_OFFLINE");
        let e = occ_hub_error(
            HubError::Daemon(ErrorBody::new(ErrorCode::NotFound, "no such execution")),
            offline,
        );
        assert_eq!((e.status(), e.code()), (StatusCode::NOT_FOUND, "not_found"));
        // Elsewhere the daemon's code is kept.
        let e = AppError::from(HubError::Daemon(ErrorBody::new(
            ErrorCode::ShuttingDown,
            "stopping",
        )));
        assert_eq!(e.code(), "shutting_down");
    }
}
