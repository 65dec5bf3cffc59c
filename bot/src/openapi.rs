//! The OpenAPI 3.1 document served at `/api/openapi.json`, written out by hand so it stays
//! readable and has no build-time machinery. Keep it in step with [`crate::http`].

use serde_json::{Value, json};

fn op(summary: &str, params: &[Value], body: Option<&str>, ok: &str) -> Value {
    let mut o = json!({
        "summary": summary,
        "security": [{"bearer": []}],
        "parameters": params,
        "responses": {
            ok: {"description": "success", "content": {"application/json": {"schema": {"type": "object"}}}},
            "400": {"$ref": "#/components/responses/Error"},
            "401": {"$ref": "#/components/responses/Error"},
            "404": {"$ref": "#/components/responses/Error"},
            "409": {"$ref": "#/components/responses/Error"},
            "503": {"$ref": "#/components/responses/Error"}
        }
    });
    if let Some(schema) = body {
        o["requestBody"] = json!({"required": true, "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}});
    }
    o
}

fn path_id(name: &str) -> Value {
    json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}})
}

fn query(name: &str, ty: &str) -> Value {
    json!({"name": name, "in": "query", "required": false, "schema": {"type": ty}})
}

/// The document.
pub fn document() -> Value {
    let mut doc = base();
    add_workspaces(&mut doc);
    doc
}

fn base() -> Value {
    json!({
        "openapi": "3.1.0",
        "info": {"title": "ccrm-bot API", "version": common::VERSION,
                 "description": "Drive Claude Code sessions on connected ccrmd daemons. Every route but /healthz needs `Authorization: Bearer <user token>` (create one with `ccrm-bot keys create <name> --kind user`). Errors are `{\"error\": {\"code\", \"message\"}}`."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
                "NewSession": {"type": "object", "additionalProperties": false, "properties": {
                    "daemon": {"type": "string", "description": "daemon id; optional when exactly one daemon is connected"},
                    "cwd": {"type": "string", "description": "the session's directory (or give `workspace`)"},
                    "workspace": {"type": "string", "description": "start in this workspace of the daemon instead of `cwd`"},
                    "model": {"type": "string"}, "name": {"type": "string"},
                    "permission_mode": {"type": "string", "enum": ["default", "acceptEdits", "plan", "dontAsk", "auto", "bypassPermissions"]},
                    "auto_allow": {"type": "boolean"}, "allowed_tools": {"type": "array", "items": {"type": "string"}}}},
                "Prompt": {"type": "object", "required": ["text"], "additionalProperties": false, "properties": {"text": {"type": "string"}}},
                "Decision": {"type": "object", "additionalProperties": false, "properties": {
                    "decision": {"type": "string", "enum": ["allow", "deny", "allow_session"]},
                    "message": {"type": "string"}, "remember": {"type": "boolean"},
                    "answers": {"type": "array", "items": {"type": "string"}, "description": "for questions: one answer per question"}}}
            }
        },
        "paths": {
            "/healthz": {"get": {"summary": "liveness (no auth)", "security": [], "responses": {"200": {"description": "ok"}}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "security": [{"bearer": []}], "responses": {"200": {"description": "text/plain metrics"}, "401": {"$ref": "#/components/responses/Error"}}}},
            "/api/daemons": {"get": op("connected and known daemons", &[], None, "200")},
            "/api/sessions": {
                "get": op("sessions", &[query("daemon", "string"), query("state", "string")], None, "200"),
                "post": op("start a session on a daemon", &[], Some("NewSession"), "201")
            },
            "/api/sessions/{id}": {"get": op("one session with its pending approvals", &[path_id("id")], None, "200")},
            "/api/sessions/{id}/events": {"get": op("stored events, keyset (`after`) or offset paged", &[path_id("id"), query("after", "integer"), query("offset", "integer"), query("limit", "integer")], None, "200")},
            "/api/sessions/{id}/stream": {"get": {"summary": "Server-Sent Events: stored events after Last-Event-ID (or `after`), then live ones", "security": [{"bearer": []}], "parameters": [path_id("id"), query("after", "integer")], "responses": {"200": {"description": "text/event-stream; each event's id is its row id"}}}},
            "/api/sessions/{id}/prompt": {"post": op("queue a prompt", &[path_id("id")], Some("Prompt"), "202")},
            "/api/sessions/{id}/interrupt": {"post": op("interrupt the running turn", &[path_id("id")], None, "200")},
            "/api/sessions/{id}/stop": {"post": op("stop gracefully", &[path_id("id")], None, "200")},
            "/api/sessions/{id}/kill": {"post": op("kill the child at once", &[path_id("id")], None, "200")},
            "/api/sessions/{id}/resume": {"post": op("resume with history", &[path_id("id")], None, "200")},
            "/api/approvals": {"get": op("pending approvals (all with all=true)", &[query("session", "string"), query("all", "boolean")], None, "200")},
            "/api/approvals/{id}": {"post": op("answer an approval; the first answer wins, later ones get 409 naming who answered", &[path_id("id")], Some("Decision"), "200")},
            "/api/openapi.json": {"get": op("this document", &[], None, "200")}
        }
    })
}

/// Workspaces, executions and one daemon's health (OCC's shapes and codes).
fn add_workspaces(doc: &mut Value) {
    let daemon = path_id("daemon");
    doc["components"]["schemas"]["Execute"] = json!({"type": "object", "required": ["prompt"], "properties": {
        "executionId": {"type": "string", "description": "letters, digits, -, _ (at most 64); a UUID when left out"},
        "workspaceId": {"type": "string"}, "cwd": {"type": "string", "description": "instead of workspaceId"},
        "daemon": {"type": "string", "description": "id, id prefix or hostname; optional when one daemon is connected"},
        "prompt": {"type": "string"}, "timeoutSecs": {"type": "integer", "default": 600},
        "model": {"type": "string"},
        "allowedTools": {"type": "array", "items": {"type": "string"}, "description": "besides the read-only tools: names or rules such as Bash(git status:*)"}}});
    doc["components"]["schemas"]["WorkspaceUpload"] = json!({"type": "object", "required": ["workspaceId", "name", "processPolicy", "zip"], "properties": {
        "workspaceId": {"type": "string"}, "name": {"type": "string"}, "description": {"type": "string"},
        "processPolicy": {"type": "string", "enum": ["overwrite", "reuse"]},
        "zip": {"type": "string", "format": "binary"}}});
    let paths = &mut doc["paths"];
    paths["/api/daemons/{daemon}"] = json!({"get": op("one daemon's health: status healthy/offline, version, uptime, heartbeat, workers, running, queued", std::slice::from_ref(&daemon), None, "200")});
    let mut upload = op(
        "upload a workspace (multipart, fields in any order; exempt from max_body_bytes, capped by workspace_max_upload_bytes while it streams: 413 ZIP_TOO_LARGE; hostile archives: 400 ZIP_*)",
        std::slice::from_ref(&daemon),
        None,
        "200",
    );
    upload["requestBody"] = json!({"required": true, "content": {"multipart/form-data": {"schema": {"$ref": "#/components/schemas/WorkspaceUpload"}}}});
    paths["/api/daemons/{daemon}/workspaces"] = json!({
        "get": op("the daemon's workspaces: id, name, description, size, files, created, sessions and executions using them", std::slice::from_ref(&daemon), None, "200"),
        "post": upload,
    });
    paths["/api/daemons/{daemon}/workspaces/{id}"] = json!({"delete": op("delete a workspace (409 WORKSPACE_IN_USE while a session or execution uses it)", &[daemon, path_id("id")], None, "200")});
    let mut execute = op(
        "run a prompt in a fresh claude; answers text/event-stream: queued, output, then complete or error (400 BAD_REQUEST, 404 WORKSPACE_NOT_FOUND, 429 WORKERS_BUSY with Retry-After, 503 DAEMON_OFFLINE before it starts)",
        &[],
        Some("Execute"),
        "200",
    );
    execute["responses"]["429"] = json!({"$ref": "#/components/responses/Error"});
    paths["/api/execute"] = json!({"post": execute});
    paths["/api/executions/{id}"] = json!({"get": op("an execution: status, exitCode, whole output, error, result, created/started/finished", &[path_id("id")], None, "200")});
    paths["/api/executions/{id}/stream"] = json!({"get": {"summary": "the execution's events after Last-Event-ID, live until the last", "security": [{"bearer": []}], "parameters": [path_id("id")], "responses": {"200": {"description": "text/event-stream"}}}});
    paths["/api/executions/{id}/cancel"] = json!({"post": op("cancel a queued or running execution (its child and tools are killed)", &[path_id("id")], None, "200")});
}

#[cfg(test)]
mod tests {
    #[test]
    fn document_lists_every_route() {
        let doc = super::document();
        let paths = doc["paths"].as_object().map(|m| m.len()).unwrap_or(0);
        assert_eq!(paths, 22);
        assert_eq!(doc["openapi"], "3.1.0");
    }
}
