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
    assert_eq!(paths, 22, "one path per route (the action route as four)");
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
            if path != "/healthz" {
                assert!(responses.contains_key("401"), "{method} {path}: no 401");
                assert_eq!(
                    op.get("security"),
                    None,
                    "{method} {path}: uses the default"
                );
            }
        }
    }
    assert_eq!(ops, 24);
    assert_eq!(doc["security"][0]["bearer"], serde_json::json!([]));
    assert_eq!(
        doc["paths"]["/healthz"]["get"]["security"],
        serde_json::json!([{}])
    );
}
