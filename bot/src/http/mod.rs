//! The REST API (`/api/...`), SSE streams and `/metrics` (the OpenAPI document is
//! [`crate::openapi`]); the router in
//! the crate root puts them together with the WebSocket endpoints.
//!
//! Every route but `/healthz` needs `Authorization: Bearer <user token>` ([`access`]).
//! Errors are JSON `{"error": {"code", "message"}}` with a stable `code` ([`error`]); 5xx
//! bodies say "internal error" and the detail goes to the log. Bodies are size-limited and
//! parsed by our own extractor so a bad body gets the same error shape. Commands go to the
//! owning daemon through the hub; daemon errors map to HTTP statuses.
//!
//! - [`sessions`]: list, start, show, prompt and control sessions; [`prompt_body`]: a
//!   prompt's JSON or multipart body with images and files.
//! - [`events`]: stored event pages and the SSE stream; [`sse`]: streaming plumbing.
//! - [`approvals`]: pending approvals and decisions.
//! - [`meta`]: health, metrics, the JSON 404.
//! - [`daemons`]: one daemon's health; finding a daemon by id, prefix or hostname.
//! - [`resolve`]: which session a path means (id, unique id prefix or name).
//! - [`guard`]: failed token checks rate-limited per client address, and audited.
//! - [`workspaces`]: workspace uploads (multipart, streamed to the daemon), list, delete.
//! - [`executions`]: `POST /api/execute` (SSE), stored results, resumed streams, cancel.
//! - [`schema`]: the OpenAPI schemas of the bodies (error codes, envelopes, OCC shapes).

pub mod access;
pub mod approvals;
pub mod daemons;
pub mod error;
pub mod events;
pub mod executions;
pub mod guard;
pub mod meta;
pub mod prompt_body;
pub mod resolve;
pub mod schema;
pub mod sessions;
pub mod sse;
pub mod workspaces;

use std::time::Duration;

pub use access::{User, require_user};
pub use error::{AppError, AppJson, AppQuery, daemon_error};
pub use sessions::pick_daemon;
pub use sse::ClientGuard;

/// How long a REST (or chat) call waits for its daemon.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
