//! The OpenAPI 3.1 document served at `/api/openapi.json`, generated from the code by
//! utoipa: each handler's `#[utoipa::path]` (route, parameters read from its `Path`/`Query`
//! extractors, request body, every response with its status) and the `ToSchema` of the
//! Rust types it reads and writes (the wire types of `common`, the stored rows, the
//! envelopes in [`crate::http::schema`]). The same document is checked in as
//! `docs/openapi.json`; `cargo test -p ccrm-bot --lib openapi` fails when the two differ,
//! and `CCRM_WRITE_OPENAPI=1` with the same command rewrites the file.
//! The bot serves that checked-in file as is ([`DOCUMENT`], compiled in): building the
//! document at run time would link utoipa's builders and every schema into the binary for a
//! result the staleness test already pins byte for byte.
//!
//! `POST /api/sessions/{id}/{action}` is one axum route; the four actions are documented
//! as four paths by the `doc_*` functions here, which only carry their annotations.

use serde_json::{Value, json};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::http::schema::{ErrorResponse, Interrupted};

/// Everything the document lists.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "ccrm-bot API",
        description = "Drive Claude Code sessions on connected ccrmd daemons, run one-shot executions in uploaded workspaces, and answer approvals. Every route but `/healthz` needs `Authorization: Bearer <user token>` (create one with `ccrm-bot keys create <name> --kind user`). Errors are `{\"error\": {\"code\", \"message\"}}` with a stable `code`: 400 when the request does not match this document, 404 for an unknown session, daemon, approval or execution, 409 for the wrong state or an ambiguous key, 422 for a schema-valid value that cannot be served, 503 only when the daemon that must act is offline.",
        license(name = "MIT"),
    ),
    paths(
        crate::http::meta::healthz,
        crate::http::meta::metrics,
        serve,
        crate::http::sessions::list_daemons,
        crate::http::daemons::get_daemon,
        crate::http::sessions::list_sessions,
        crate::http::sessions::create_session,
        crate::http::sessions::get_session,
        crate::http::events::session_events,
        crate::http::events::session_stream,
        crate::http::sessions::prompt,
        doc_interrupt,
        doc_stop,
        doc_kill,
        doc_resume,
        crate::http::approvals::list_approvals,
        crate::http::approvals::decide,
        crate::http::workspaces::list,
        crate::http::workspaces::upload,
        crate::http::workspaces::remove,
        crate::http::executions::execute,
        crate::http::executions::get,
        crate::http::executions::stream,
        crate::http::executions::cancel,
        crate::telegram::webhook::receive,
    ),
    components(schemas(
        crate::http::schema::ErrorCodeName,
        crate::http::schema::ExecQueued,
        crate::http::schema::ExecOutput,
        crate::http::schema::ExecComplete,
        crate::http::schema::ExecFailed,
    )),
    modifiers(&Bearer),
    tags(
        (name = "sessions", description = "start, prompt, follow and control sessions"),
        (name = "approvals", description = "permission requests and questions"),
        (name = "daemons", description = "the connected machines"),
        (name = "workspaces", description = "uploaded project directories (OCC)"),
        (name = "executions", description = "one-shot runs of a fresh claude (OCC)"),
        (name = "meta", description = "health, metrics and this document"),
    )
)]
struct ApiDoc;

/// Adds the bearer scheme and makes it the default requirement of every operation
/// (`/healthz` overrides it with none).
struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "a user token (`ccrm-bot keys create NAME --kind user`)",
                    ))
                    .build(),
            ),
        );
        doc.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// The document as served: `docs/openapi.json`, which the staleness test keeps equal to
/// [`pretty`].
pub const DOCUMENT: &str = include_str!("../../docs/openapi.json");

/// `GET /api/openapi.json`.
#[utoipa::path(get, path = "/api/openapi.json", summary = "This document", tag = "meta", operation_id = "openapi_document",
    responses(
        (status = 200, description = "this document (OpenAPI 3.1)", body = crate::http::schema::OpenApiDocument),
        (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
    ))]
pub async fn serve() -> impl axum::response::IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "application/json")],
        DOCUMENT,
    )
}

/// The document generated from the code (what `docs/openapi.json` must hold).
pub fn document() -> Value {
    let mut doc = ApiDoc::openapi();
    doc.info.version = common::VERSION.to_owned();
    let mut doc = serde_json::to_value(&doc).unwrap_or(Value::Null);
    add_links(&mut doc);
    add_sse_events(&mut doc);
    doc
}

/// The schema of one Server-Sent Event as an OpenAPI 3.1 reader takes a `text/event-stream`
/// response's `schema` (schemathesis validates every event against it): `event` the name,
/// `id` the position to resume after, and `data` JSON text of the named component.
fn sse_event_schema(event: Value, data: &str) -> Value {
    json!({
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": event,
            "id": {"type": "string", "description": "resume after this one with `Last-Event-ID`"},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": {"$ref": format!("#/components/schemas/{data}")},
            },
        },
    })
}

/// Replaces the plain-string schema of the three event streams with their events: an
/// execution's `queued`, `output`, `complete` and `error`, each with its own `data`; a
/// session's events named by their kind (the `kind` tags of `EventKind`), each a
/// `StoredEvent`.
fn add_sse_events(doc: &mut Value) {
    let exec = json!({"oneOf": [
        sse_event_schema(json!({"const": "queued"}), "ExecQueued"),
        sse_event_schema(json!({"const": "output"}), "ExecOutput"),
        sse_event_schema(json!({"const": "complete"}), "ExecComplete"),
        sse_event_schema(json!({"const": "error"}), "ExecFailed"),
    ]});
    let kinds: Vec<Value> = doc["components"]["schemas"]["EventKind"]["oneOf"]
        .as_array()
        .map(|variants| {
            variants
                .iter()
                .filter_map(|v| v["properties"]["kind"]["enum"].get(0).cloned())
                .collect()
        })
        .unwrap_or_default();
    let session = sse_event_schema(json!({"type": "string", "enum": kinds}), "StoredEvent");
    let paths = &mut doc["paths"];
    for (path, method, schema) in [
        ("/api/execute", "post", &exec),
        ("/api/executions/{id}/stream", "get", &exec),
        ("/api/sessions/{id}/stream", "get", &session),
    ] {
        paths[path][method]["responses"]["200"]["content"]["text/event-stream"]["schema"] =
            schema.clone();
    }
}

/// OpenAPI links from the replies that name a session to the operations on it, so clients
/// (and schemathesis' stateful phase) can go start → prompt → events → stop; and from lists
/// of daemons, approvals and an uploaded workspace to what acts on them.
fn add_links(doc: &mut Value) {
    let on_session = |from: &str| {
        let id = json!({"id": from});
        let mut links = serde_json::Map::new();
        for op in [
            "get_session",
            "prompt",
            "session_events",
            "interrupt_session",
            "stop_session",
            "kill_session",
            "resume_session",
        ] {
            links.insert(op.to_owned(), json!({"operationId": op, "parameters": id}));
        }
        Value::Object(links)
    };
    let paths = &mut doc["paths"];
    paths["/api/sessions"]["post"]["responses"]["201"]["links"] =
        on_session("$response.body#/session/id");
    paths["/api/sessions/{id}/prompt"]["post"]["responses"]["202"]["links"] =
        on_session("$response.body#/session_id");
    let first_daemon = json!({"daemon": "$response.body#/daemons/0/id"});
    paths["/api/daemons"]["get"]["responses"]["200"]["links"] = json!({
        "get_daemon": {"operationId": "get_daemon", "parameters": first_daemon},
        "list_workspaces": {"operationId": "list_workspaces", "parameters": first_daemon},
    });
    paths["/api/daemons/{daemon}/workspaces"]["post"]["responses"]["200"]["links"] = json!({
        "delete_workspace": {"operationId": "delete_workspace", "parameters":
            {"daemon": "$request.path.daemon", "id": "$response.body#/workspaceId"}},
    });
    paths["/api/approvals"]["get"]["responses"]["200"]["links"] = json!({
        "decide": {"operationId": "decide", "parameters": {"id": "$response.body#/approvals/0/id"}},
    });
    paths["/api/sessions/{id}"]["get"]["responses"]["200"]["links"] = json!({
        "decide": {"operationId": "decide", "parameters": {"id": "$response.body#/approvals/0/id"}},
    });
}

/// The document as checked in: pretty JSON with a final newline.
pub fn pretty() -> String {
    let mut s = serde_json::to_string_pretty(&document()).unwrap_or_default();
    s.push('\n');
    s
}

macro_rules! doc_action {
    ($fn:ident, $op:literal, $path:literal, $summary:literal, $ok:literal, $body:ty, $extra:literal) => {
        #[doc = $summary]
        #[utoipa::path(post, path = $path, tag = "sessions", summary = $summary, operation_id = $op,
            params(("id" = String, Path, description = "the session: its id, a unique id prefix (4+ characters) or its name")),
            responses(
                (status = 200, description = $ok, body = $body),
                (status = 400, description = "not a session id", body = ErrorResponse),
                (status = 401, description = "missing or invalid bearer token", body = ErrorResponse),
                (status = 404, description = "no such session", body = ErrorResponse),
                (status = 409, description = $extra, body = ErrorResponse),
                (status = 502, description = "the daemon could not start claude", body = ErrorResponse),
                (status = 503, description = "the session's daemon is offline", body = ErrorResponse),
                (status = 504, description = "the daemon did not answer in time", body = ErrorResponse),
            ))]
        #[allow(dead_code)]
        fn $fn() {}
    };
}

doc_action!(
    doc_interrupt,
    "interrupt_session",
    "/api/sessions/{id}/interrupt",
    "Interrupt the running turn (queued prompts stay)",
    "whether a turn was running",
    Interrupted,
    "the session is in the wrong state"
);
doc_action!(
    doc_stop,
    "stop_session",
    "/api/sessions/{id}/stop",
    "Stop gracefully (interrupt, close stdin, then signals)",
    "the session, stopped",
    common::ipc::SessionInfo,
    "the session is in the wrong state"
);
doc_action!(
    doc_kill,
    "kill_session",
    "/api/sessions/{id}/kill",
    "Kill the child at once",
    "the session, stopped",
    common::ipc::SessionInfo,
    "the session is in the wrong state"
);
doc_action!(
    doc_resume,
    "resume_session",
    "/api/sessions/{id}/resume",
    "Resume a stopped or failed session with its history",
    "the session, starting again",
    common::ipc::SessionInfo,
    "the session is running already"
);

#[cfg(test)]
mod tests;
