//! The checked-in `docs/openapi.json` against the generated document, and the document's
//! coverage of every operation with its errors.

use std::path::PathBuf;

use serde_json::Value;

fn checked_in() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/openapi.json")
}

#[test]
fn checked_in_document_is_current() {
    let want = super::pretty();
    let path = checked_in();
    if std::env::var_os("CCRM_WRITE_OPENAPI").is_some() {
        if let Err(e) = std::fs::write(&path, &want) {
            panic!("cannot write {}: {e}", path.display());
        }
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/openapi.json is stale (or missing): regenerate it with\n  \
         CCRM_WRITE_OPENAPI=1 cargo test -p ccrm-bot --lib openapi::tests::checked_in_document_is_current\n\
         and commit it"
    );
}

#[test]
fn every_operation_has_typed_responses_and_errors() {
    let doc = super::document();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().map(|m| m.len()).unwrap_or(0);
    assert_eq!(paths, 23, "one path per route (the action route as four)");
    let mut ops = 0;
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            ops += 1;
            let responses = op["responses"].as_object();
            let responses = responses.unwrap_or_else(|| panic!("{method} {path}: no responses"));
            for (status, r) in responses {
                let content = r["content"].as_object();
                let content =
                    content.unwrap_or_else(|| panic!("{method} {path} {status}: no body"));
                for (ct, media) in content {
                    let schema = &media["schema"];
                    assert!(
                        schema != &Value::Null && schema != &serde_json::json!({"type": "object"}),
                        "{method} {path} {status} {ct}: an empty schema"
                    );
                }
            }
            if path == "/telegram/webhook" {
                // Telegram's secret header, not the bearer token.
                assert!(responses.contains_key("401"), "{method} {path}: no 401");
                assert_eq!(op["security"], serde_json::json!([{}]));
            } else if path != "/healthz" {
                assert!(responses.contains_key("401"), "{method} {path}: no 401");
                assert_eq!(
                    op.get("security"),
                    None,
                    "{method} {path}: uses the default"
                );
            }
        }
    }
    assert_eq!(ops, 25);
    assert_eq!(doc["security"][0]["bearer"], serde_json::json!([]));
    assert_eq!(
        doc["paths"]["/healthz"]["get"]["security"],
        serde_json::json!([{}])
    );
}

#[test]
fn event_streams_document_each_event_with_its_data() {
    let doc = super::document();
    let schemas = &doc["components"]["schemas"];
    let stream = |path: &str, method: &str| {
        doc["paths"][path][method]["responses"]["200"]["content"]["text/event-stream"]["schema"]
            .clone()
    };
    let exec = stream("/api/execute", "post");
    assert_eq!(exec, stream("/api/executions/{id}/stream", "get"));
    let names: Vec<&str> = exec["oneOf"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["properties"]["event"]["const"].as_str())
        .collect();
    assert_eq!(names, ["queued", "output", "complete", "error"]);
    let session = stream("/api/sessions/{id}/stream", "get");
    let kinds = session["properties"]["event"]["enum"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    let variants = schemas["EventKind"]["oneOf"]
        .as_array()
        .map(Vec::len)
        .unwrap_or(0);
    assert!(
        kinds > 10 && kinds == variants,
        "{kinds} kinds, {variants} variants"
    );
    for event in exec["oneOf"]
        .as_array()
        .into_iter()
        .flatten()
        .chain([&session])
    {
        let data = &event["properties"]["data"];
        assert_eq!(data["contentMediaType"], "application/json");
        let name = data["contentSchema"]["$ref"]
            .as_str()
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .unwrap_or_else(|| panic!("no contentSchema: {event}"));
        assert!(schemas[name].is_object(), "{name} is not a component");
    }
}

#[test]
fn served_document_is_the_generated_one() {
    let served: Value = serde_json::from_str(super::DOCUMENT).unwrap_or(Value::Null);
    assert_eq!(
        served,
        super::document(),
        "the compiled-in docs/openapi.json differs from the generated document: regenerate it \
         (see checked_in_document_is_current) and rebuild"
    );
}
