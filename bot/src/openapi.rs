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
    json!({
        "openapi": "3.1.0",
        "info": {"title": "ccrm-bot API", "version": common::VERSION,
                 "description": "Drive Claude Code sessions on connected ccrmd daemons. Every route but /healthz needs `Authorization: Bearer <user token>` (create one with `ccrm-bot keys create <name> --kind user`). Errors are `{\"error\": {\"code\", \"message\"}}`."},
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"Error": {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}},
            "schemas": {
                "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": {"code": {"type": "string"}, "message": {"type": "string"}}}}},
                "NewSession": {"type": "object", "required": ["cwd"], "additionalProperties": false, "properties": {
                    "daemon": {"type": "string", "description": "daemon id; optional when exactly one daemon is connected"},
                    "cwd": {"type": "string"}, "model": {"type": "string"}, "name": {"type": "string"},
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

#[cfg(test)]
mod tests {
    #[test]
    fn document_lists_every_route() {
        let doc = super::document();
        let paths = doc["paths"].as_object().map(|m| m.len()).unwrap_or(0);
        assert_eq!(paths, 15);
        assert_eq!(doc["openapi"], "3.1.0");
    }
}
