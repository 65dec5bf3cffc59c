//! Discord's checks of request bodies, as pure functions: message payloads (content,
//! embeds, components, `allowed_mentions`) and application commands (bulk overwrite).
//!
//! Failures are collected like Discord collects them: one 400 `{"code":50035,"message":
//! "Invalid Form Body","errors":{...}}` whose `errors` object nests by field path (array
//! indexes as string keys) down to `{"_errors":[{"code":..,"message":..}]}`, the shape
//! serenity flattens into `DiscordJsonSingleError { path, code, message }`.
//!
//! The top-level codes and messages (50035, 50006 "Cannot send an empty message") and
//! the limits are Discord's documented ones. The nested error codes use Discord's names
//! where they are documented or commonly seen (`BASE_TYPE_MAX_LENGTH`,
//! `BASE_TYPE_BAD_LENGTH`, `BASE_TYPE_REQUIRED`, `BASE_TYPE_CHOICES`,
//! `COMPONENT_CUSTOM_ID_DUPLICATED`, `APPLICATION_COMMAND_INVALID_NAME`, ...); a few rarer
//! ones are our best reading, so tests should assert on the path and the top-level code
//! rather than on every nested string.
//!
//! Lengths are counted in UTF-16 code units, the stricter reading of "characters".

use std::collections::HashSet;

use serde_json::{Map, Value, json};

use super::error::ApiError;

/// Longest message content.
pub(super) const MAX_CONTENT: usize = 2000;
/// Most embeds in a message.
const MAX_EMBEDS: usize = 10;
/// Most characters over all embeds of a message (titles, descriptions, fields, footers,
/// author names).
const MAX_EMBED_TOTAL: usize = 6000;
/// Most action rows in a message.
const MAX_ROWS: usize = 5;
/// Most buttons in an action row.
const MAX_ROW_WIDTH: usize = 5;
/// Longest `custom_id`.
const MAX_CUSTOM_ID: usize = 100;
/// Most options of a select menu, and most commands' options.
const MAX_OPTIONS: usize = 25;

/// Length in UTF-16 code units.
pub(super) fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

/// The `errors` object of a 50035 reply, built up field by field.
#[derive(Debug, Default)]
pub(super) struct FormErrors {
    root: Map<String, Value>,
}

impl FormErrors {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an error at a dotted path (`"components.0.components.1.custom_id"`; `""` for
    /// the body itself).
    pub fn add(&mut self, path: &str, code: &str, message: impl Into<String>) {
        let mut node = &mut self.root;
        for key in path.split('.').filter(|k| !k.is_empty()) {
            let entry = node
                .entry(key.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            let Value::Object(next) = entry else {
                return;
            };
            node = next;
        }
        let list = node
            .entry("_errors".to_owned())
            .or_insert_with(|| Value::Array(Vec::new()));
        if let Value::Array(list) = list {
            list.push(json!({ "code": code, "message": message.into() }));
        }
    }

    pub fn is_empty(&self) -> bool {
        self.root.is_empty()
    }

    /// `Ok` if nothing was added, else the 50035 error.
    pub fn finish(self) -> Result<(), ApiError> {
        if self.is_empty() {
            Ok(())
        } else {
            Err(self.into_error())
        }
    }

    /// The 50035 error with what was added.
    pub fn into_error(self) -> ApiError {
        ApiError::form(Value::Object(self.root))
    }

    fn max_len(&mut self, path: &str, value: &str, max: usize) {
        if utf16_len(value) > max {
            self.add(
                path,
                "BASE_TYPE_MAX_LENGTH",
                format!("Must be {max} or fewer in length."),
            );
        }
    }

    fn bad_len(&mut self, path: &str, len: usize, min: usize, max: usize) {
        if len < min || len > max {
            self.add(
                path,
                "BASE_TYPE_BAD_LENGTH",
                format!("Must be between {min} and {max} in length."),
            );
        }
    }

    fn required(&mut self, path: &str) {
        self.add(path, "BASE_TYPE_REQUIRED", "This field is required");
    }
}

/// A 50035 with one error at `path`.
pub(super) fn field_error(path: &str, code: &str, message: impl Into<String>) -> ApiError {
    let mut errors = FormErrors::new();
    errors.add(path, code, message);
    errors.into_error()
}

/// `"a.b"` + `"c"` → `"a.b.c"` (no leading dot for an empty prefix).
pub(super) fn join(prefix: &str, key: impl std::fmt::Display) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

fn type_name(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A string field: `Ok(None)` if absent or null.
pub(super) fn opt_string(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    errors: &mut FormErrors,
) -> Option<String> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            errors.add(
                &join(path, key),
                "BASE_TYPE_STRING",
                format!("Could not interpret \"{}\" as string.", type_name(other)),
            );
            None
        }
    }
}

/// An integer field (also given as a numeric string, as Discord accepts).
pub(super) fn opt_int(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    errors: &mut FormErrors,
) -> Option<i64> {
    match obj.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) if n.as_i64().is_some() => n.as_i64(),
        Some(Value::String(s)) if s.trim().parse::<i64>().is_ok() => s.trim().parse().ok(),
        Some(other) => {
            errors.add(
                &join(path, key),
                "NUMBER_TYPE_COERCE",
                format!("Value \"{}\" is not int.", type_name(other)),
            );
            None
        }
    }
}

fn opt_bool(obj: &Map<String, Value>, key: &str, path: &str, errors: &mut FormErrors) -> bool {
    match obj.get(key) {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            errors.add(
                &join(path, key),
                "BASE_TYPE_BOOLEAN",
                format!("Value \"{}\" is not boolean.", type_name(other)),
            );
            false
        }
    }
}

/// An array field: `None` if absent; `Some(vec![])` for null (a null list clears it).
fn opt_array(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
    errors: &mut FormErrors,
) -> Option<Vec<Value>> {
    match obj.get(key) {
        None => None,
        Some(Value::Null) => Some(Vec::new()),
        Some(Value::Array(a)) => Some(a.clone()),
        Some(_) => {
            errors.add(
                &join(path, key),
                "LIST_TYPE_CONVERT",
                "Only iterables may be used in a ListType",
            );
            None
        }
    }
}

/// The body as an object, or a 50035 `DICT_TYPE_CONVERT` at `path`.
pub(super) fn object<'a>(
    v: &'a Value,
    path: &str,
    errors: &mut FormErrors,
) -> Option<&'a Map<String, Value>> {
    if let Value::Object(map) = v {
        Some(map)
    } else {
        errors.add(
            path,
            "DICT_TYPE_CONVERT",
            "Only dictionaries may be used in a DictType",
        );
        None
    }
}

/// A message body as parsed: `None` = field absent (unchanged on an edit).
#[derive(Debug, Default, Clone)]
pub(super) struct MessageDraft {
    /// `null` reads as `Some("")`.
    pub content: Option<String>,
    pub embeds: Option<Vec<Value>>,
    pub components: Option<Vec<Value>>,
    pub flags: Option<u64>,
    /// The `attachments` array (new uploads by placeholder id, kept ones by id).
    pub attachments: Option<Vec<Value>>,
    pub allowed_mentions: Option<Value>,
    pub message_reference: Option<Value>,
    pub tts: bool,
    /// `sticker_ids` or `poll` given: the message is not empty even without content.
    pub has_other_content: bool,
    /// `nonce` (a string of at most 25 characters, or an integer, kept as text).
    pub nonce: Option<String>,
    /// `enforce_nonce`: a repeated nonce returns the message already created.
    pub enforce_nonce: bool,
}

/// Reads and checks a message body (create, edit, interaction response or follow-up);
/// `path` prefixes every error (`"data"` inside an interaction callback). Emptiness and
/// the allowed `flags` depend on the endpoint and are checked by the caller.
pub(super) fn message_draft(body: &Value, path: &str, errors: &mut FormErrors) -> MessageDraft {
    let Some(obj) = object(body, path, errors) else {
        return MessageDraft::default();
    };
    let mut draft = MessageDraft {
        content: match obj.get("content") {
            Some(Value::Null) => Some(String::new()),
            _ => opt_string(obj, "content", path, errors),
        },
        embeds: opt_array(obj, "embeds", path, errors),
        components: opt_array(obj, "components", path, errors),
        flags: opt_int(obj, "flags", path, errors).map(|f| f.max(0).unsigned_abs()),
        attachments: opt_array(obj, "attachments", path, errors),
        tts: opt_bool(obj, "tts", path, errors),
        ..MessageDraft::default()
    };
    if let Some(content) = &draft.content {
        errors.max_len(&join(path, "content"), content, MAX_CONTENT);
    }
    if let Some(embeds) = &draft.embeds {
        check_embeds(embeds, &join(path, "embeds"), errors);
    }
    if let Some(components) = &draft.components {
        check_components(components, &join(path, "components"), errors);
    }
    match obj.get("allowed_mentions") {
        None | Some(Value::Null) => {}
        Some(am) => {
            check_allowed_mentions(am, &join(path, "allowed_mentions"), errors);
            draft.allowed_mentions = Some(am.clone());
        }
    }
    match obj.get("message_reference") {
        None | Some(Value::Null) => {}
        Some(r) => {
            if object(r, &join(path, "message_reference"), errors).is_some() {
                draft.message_reference = Some(r.clone());
            }
        }
    }
    let stickers = obj
        .get("sticker_ids")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let poll = obj.get("poll").is_some_and(|p| !p.is_null());
    draft.has_other_content = stickers || poll;
    draft.nonce = match obj.get("nonce") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) => {
            errors.max_len(&join(path, "nonce"), n, MAX_NONCE);
            Some(n.clone())
        }
        Some(Value::Number(n)) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        Some(_) => {
            errors.add(
                &join(path, "nonce"),
                "BASE_TYPE_STRING",
                "Nonce must be a string or an integer.",
            );
            None
        }
    };
    draft.enforce_nonce = opt_bool(obj, "enforce_nonce", path, errors);
    draft
}

/// Longest `nonce` Discord accepts, in characters.
const MAX_NONCE: usize = 25;

/// Embed limits: at most 10; title 256, description 4096, 25 fields (name 256, value
/// 1024, both required), footer 2048, author name 256, colour 0..=0xFFFFFF; 6000
/// characters in total over all embeds.
fn check_embeds(embeds: &[Value], path: &str, errors: &mut FormErrors) {
    if embeds.len() > MAX_EMBEDS {
        errors.add(
            path,
            "BASE_TYPE_MAX_LENGTH",
            format!("Must be {MAX_EMBEDS} or fewer in length."),
        );
    }
    let mut total = 0;
    for (i, embed) in embeds.iter().enumerate() {
        let at = join(path, i);
        let Some(e) = object(embed, &at, errors) else {
            continue;
        };
        let mut text = |key: &str, max: usize, errors: &mut FormErrors| {
            if let Some(s) = opt_string(e, key, &at, errors) {
                errors.max_len(&join(&at, key), &s, max);
                total += utf16_len(&s);
            }
        };
        text("title", 256, errors);
        text("description", 4096, errors);
        for (key, max) in [("footer", 2048), ("author", 256)] {
            let field = if key == "footer" { "text" } else { "name" };
            if let Some(inner) = e.get(key).filter(|v| !v.is_null()) {
                let sub = join(&at, key);
                if let Some(inner) = object(inner, &sub, errors)
                    && let Some(s) = opt_string(inner, field, &sub, errors)
                {
                    errors.max_len(&join(&sub, field), &s, max);
                    total += utf16_len(&s);
                }
            }
        }
        if let Some(color) = opt_int(e, "color", &at, errors)
            && !(0..=0xFF_FFFF).contains(&color)
        {
            errors.add(
                &join(&at, "color"),
                "NUMBER_TYPE_MAX",
                "int value should be less than or equal to 16777215.",
            );
        }
        let Some(fields) = opt_array(e, "fields", &at, errors) else {
            continue;
        };
        let fields_at = join(&at, "fields");
        if fields.len() > MAX_OPTIONS {
            errors.add(
                &fields_at,
                "BASE_TYPE_MAX_LENGTH",
                format!("Must be {MAX_OPTIONS} or fewer in length."),
            );
        }
        for (j, field) in fields.iter().enumerate() {
            let f_at = join(&fields_at, j);
            let Some(f) = object(field, &f_at, errors) else {
                continue;
            };
            for (key, max) in [("name", 256), ("value", 1024)] {
                match opt_string(f, key, &f_at, errors) {
                    Some(s) => {
                        errors.max_len(&join(&f_at, key), &s, max);
                        total += utf16_len(&s);
                    }
                    None => errors.required(&join(&f_at, key)),
                }
            }
        }
    }
    if total > MAX_EMBED_TOTAL {
        errors.add(
            path,
            "MAX_EMBED_SIZE_EXCEEDED",
            format!("Embed size exceeds maximum size of {MAX_EMBED_TOTAL}"),
        );
    }
}

/// Action rows (classic components, not "components v2"): at most 5 rows of type 1;
/// a row holds 1–5 buttons or exactly one select menu; `custom_id`s are 1–100
/// characters and unique in the message.
fn check_components(rows: &[Value], path: &str, errors: &mut FormErrors) {
    if rows.len() > MAX_ROWS {
        errors.add(
            path,
            "BASE_TYPE_MAX_LENGTH",
            format!("Must be {MAX_ROWS} or fewer in length."),
        );
    }
    let mut seen = HashSet::new();
    for (i, row) in rows.iter().enumerate() {
        let at = join(path, i);
        let Some(r) = object(row, &at, errors) else {
            continue;
        };
        if opt_int(r, "type", &at, errors) != Some(1) {
            errors.add(
                &join(&at, "type"),
                "UNION_TYPE_CHOICES",
                "Value of field \"type\" must be one of (1,).",
            );
            continue;
        }
        let children_at = join(&at, "components");
        let Some(children) = opt_array(r, "components", &at, errors) else {
            errors.required(&children_at);
            continue;
        };
        errors.bad_len(&children_at, children.len(), 1, MAX_ROW_WIDTH);
        let kinds: Vec<Option<i64>> = children
            .iter()
            .map(|c| c.get("type").and_then(Value::as_i64))
            .collect();
        let has_select = kinds.iter().any(|k| matches!(k, Some(3 | 5..=8)));
        if has_select && children.len() > 1 {
            errors.add(
                &children_at,
                "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                "The specified component exceeds the maximum width",
            );
        }
        for (j, child) in children.iter().enumerate() {
            let c_at = join(&children_at, j);
            let Some(c) = object(child, &c_at, errors) else {
                continue;
            };
            match opt_int(c, "type", &c_at, errors) {
                Some(2) => check_button(c, &c_at, &mut seen, errors),
                Some(3) => {
                    check_custom_id(c, &c_at, &mut seen, errors);
                    check_string_select(c, &c_at, errors);
                }
                Some(5..=8) => {
                    check_custom_id(c, &c_at, &mut seen, errors);
                    check_select_bounds(c, &c_at, None, errors);
                }
                _ => errors.add(
                    &join(&c_at, "type"),
                    "UNION_TYPE_CHOICES",
                    "Value of field \"type\" must be one of (2, 3, 5, 6, 7, 8).",
                ),
            }
        }
    }
}

fn check_custom_id(
    c: &Map<String, Value>,
    at: &str,
    seen: &mut HashSet<String>,
    errors: &mut FormErrors,
) {
    let id_at = join(at, "custom_id");
    match opt_string(c, "custom_id", at, errors) {
        None => errors.required(&id_at),
        Some(id) => {
            errors.bad_len(&id_at, utf16_len(&id), 1, MAX_CUSTOM_ID);
            if !seen.insert(id) {
                errors.add(
                    &id_at,
                    "COMPONENT_CUSTOM_ID_DUPLICATED",
                    "Component custom id cannot be duplicated",
                );
            }
        }
    }
}

/// Styles 1–4 need a `custom_id` and no `url`; 5 (link) a `url` and no `custom_id`;
/// 6 (premium) a `sku_id`. Labels are at most 80 characters; non-premium buttons need a
/// label or an emoji.
fn check_button(
    c: &Map<String, Value>,
    at: &str,
    seen: &mut HashSet<String>,
    errors: &mut FormErrors,
) {
    let style = opt_int(c, "style", at, errors);
    let label = opt_string(c, "label", at, errors);
    if let Some(label) = &label {
        errors.max_len(&join(at, "label"), label, 80);
    }
    let has_emoji = c.get("emoji").is_some_and(|e| !e.is_null());
    let url = opt_string(c, "url", at, errors);
    match style {
        Some(1..=4) => {
            check_custom_id(c, at, seen, errors);
            if url.is_some() {
                errors.add(
                    &join(at, "url"),
                    "BUTTON_COMPONENT_URL_NOT_ALLOWED",
                    "A url cannot be specified for a non-link button",
                );
            }
        }
        Some(5) => {
            if url.is_none() {
                errors.required(&join(at, "url"));
            }
            if c.get("custom_id").is_some_and(|v| !v.is_null()) {
                errors.add(
                    &join(at, "custom_id"),
                    "BUTTON_COMPONENT_CUSTOM_ID_NOT_ALLOWED",
                    "A custom id cannot be specified for a link button",
                );
            }
        }
        Some(6) => {
            if c.get("sku_id").is_none_or(Value::is_null) {
                errors.required(&join(at, "sku_id"));
            }
        }
        None if !c.contains_key("style") => errors.required(&join(at, "style")),
        _ => errors.add(
            &join(at, "style"),
            "BASE_TYPE_CHOICES",
            "Value must be one of {1, 2, 3, 4, 5, 6}.",
        ),
    }
    if style != Some(6) && label.as_deref().is_none_or(str::is_empty) && !has_emoji {
        errors.add(
            &join(at, "label"),
            "BUTTON_COMPONENT_LABEL_OR_EMOJI_REQUIRED",
            "A label or an emoji is required",
        );
    }
}

/// 1–25 options (label and value 1–100, description ≤ 100, values unique), placeholder
/// ≤ 150, and sane `min_values`/`max_values`.
fn check_string_select(c: &Map<String, Value>, at: &str, errors: &mut FormErrors) {
    let options_at = join(at, "options");
    let options = opt_array(c, "options", at, errors).unwrap_or_default();
    errors.bad_len(&options_at, options.len(), 1, MAX_OPTIONS);
    let mut values = HashSet::new();
    let mut defaults = 0;
    for (k, option) in options.iter().enumerate() {
        let o_at = join(&options_at, k);
        let Some(o) = object(option, &o_at, errors) else {
            continue;
        };
        for key in ["label", "value"] {
            match opt_string(o, key, &o_at, errors) {
                None => errors.required(&join(&o_at, key)),
                Some(s) => {
                    errors.bad_len(&join(&o_at, key), utf16_len(&s), 1, 100);
                    if key == "value" && !values.insert(s) {
                        errors.add(
                            &join(&o_at, "value"),
                            "SELECT_COMPONENT_OPTION_VALUE_DUPLICATED",
                            "Select component option values must be unique",
                        );
                    }
                }
            }
        }
        if let Some(d) = opt_string(o, "description", &o_at, errors) {
            errors.max_len(&join(&o_at, "description"), &d, 100);
        }
        if opt_bool(o, "default", &o_at, errors) {
            defaults += 1;
        }
    }
    check_select_bounds(c, at, Some((options.len(), defaults)), errors);
}

/// `min_values` 0–25, `max_values` 1–25, min ≤ max, and for string selects max ≤ the
/// number of options and no more defaults than max.
fn check_select_bounds(
    c: &Map<String, Value>,
    at: &str,
    options: Option<(usize, usize)>,
    errors: &mut FormErrors,
) {
    if let Some(p) = opt_string(c, "placeholder", at, errors) {
        errors.max_len(&join(at, "placeholder"), &p, 150);
    }
    let min = opt_int(c, "min_values", at, errors);
    let max = opt_int(c, "max_values", at, errors);
    if let Some(min) = min
        && !(0..=25).contains(&min)
    {
        errors.add(
            &join(at, "min_values"),
            "NUMBER_TYPE_MAX",
            "int value should be between 0 and 25.",
        );
    }
    if let Some(max) = max
        && !(1..=25).contains(&max)
    {
        errors.add(
            &join(at, "max_values"),
            "NUMBER_TYPE_MAX",
            "int value should be between 1 and 25.",
        );
    }
    let (min, max) = (min.unwrap_or(1), max.unwrap_or(1));
    if min > max {
        errors.add(
            &join(at, "min_values"),
            "SELECT_COMPONENT_MIN_VALUES_INVALID",
            "min_values must be less than or equal to max_values",
        );
    }
    if let Some((count, defaults)) = options {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        if count > 0 && max > count {
            errors.add(
                &join(at, "max_values"),
                "SELECT_COMPONENT_MAX_VALUES_EXCEEDED",
                format!("max_values must be less than or equal to the number of options ({count})"),
            );
        }
        if i64::try_from(defaults).unwrap_or(i64::MAX) > max {
            errors.add(
                &join(at, "options"),
                "SELECT_COMPONENT_TOO_MANY_DEFAULT_VALUES",
                "More default options than max_values",
            );
        }
    }
}

/// `parse` ⊆ {users, roles, everyone}, and `parse: ["users"]` excludes a `users` list
/// (same for roles).
fn check_allowed_mentions(am: &Value, path: &str, errors: &mut FormErrors) {
    let Some(obj) = object(am, path, errors) else {
        return;
    };
    let parse = opt_array(obj, "parse", path, errors).unwrap_or_default();
    for (i, p) in parse.iter().enumerate() {
        if !matches!(p.as_str(), Some("users" | "roles" | "everyone")) {
            errors.add(
                &join(&join(path, "parse"), i),
                "BASE_TYPE_CHOICES",
                "Value must be one of ('roles', 'users', 'everyone').",
            );
        }
    }
    for key in ["users", "roles"] {
        let listed = opt_array(obj, key, path, errors).is_some_and(|l| !l.is_empty());
        if listed && parse.iter().any(|p| p.as_str() == Some(key)) {
            errors.add(
                path,
                "MESSAGE_ALLOWED_MENTIONS_PARSE_EXCLUSIVE",
                format!("parse:[\"{key}\"] and {key}: [ids] are mutually exclusive."),
            );
        }
    }
}

// ---- application commands ---------------------------------------------------------

/// Most chat input commands an application can have (globally, and per guild).
const MAX_COMMANDS: usize = 100;

fn check_name(name: Option<String>, at: &str, chat_input: bool, errors: &mut FormErrors) {
    let name_at = join(at, "name");
    let Some(name) = name else {
        errors.required(&name_at);
        return;
    };
    let len = name.chars().count();
    if !(1..=32).contains(&len) {
        errors.bad_len(&name_at, len, 1, 32);
    } else if chat_input
        && !name
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '-' || ch == '_')
    {
        errors.add(
            &name_at,
            "APPLICATION_COMMAND_INVALID_NAME",
            "Command name is invalid",
        );
    }
}

fn check_description(desc: Option<String>, at: &str, errors: &mut FormErrors) {
    let desc_at = join(at, "description");
    match desc {
        None => errors.required(&desc_at),
        Some(d) => errors.bad_len(&desc_at, d.chars().count(), 1, 100),
    }
}

/// Checks a bulk overwrite body: an array of at most 100 chat input commands, each with
/// a valid name (1–32 of `[-_a-z0-9]`), description (1–100), at most 25 options of
/// valid types (required before optional, names unique, subcommands nested properly,
/// choices of the option's type) and unique names per command type.
pub(super) fn commands(body: &Value) -> Result<Vec<Map<String, Value>>, ApiError> {
    let mut errors = FormErrors::new();
    let Value::Array(list) = body else {
        errors.add(
            "",
            "LIST_TYPE_CONVERT",
            "Only iterables may be used in a ListType",
        );
        return Err(errors.into_error());
    };
    let mut names = HashSet::new();
    let mut chat_inputs = 0;
    let mut out = Vec::new();
    for (i, command) in list.iter().enumerate() {
        let at = i.to_string();
        let Some(c) = object(command, &at, &mut errors) else {
            continue;
        };
        let kind = opt_int(c, "type", &at, &mut errors).unwrap_or(1);
        if !(1..=4).contains(&kind) {
            errors.add(
                &join(&at, "type"),
                "BASE_TYPE_CHOICES",
                "Value must be one of {1, 2, 3, 4}.",
            );
        }
        let chat_input = kind == 1;
        let name = opt_string(c, "name", &at, &mut errors);
        if let Some(n) = &name
            && !names.insert((kind, n.clone()))
        {
            errors.add(
                "",
                "APPLICATION_COMMANDS_DUPLICATE_NAME",
                format!("Application command names must be unique ({n})"),
            );
        }
        check_name(name, &at, chat_input, &mut errors);
        let description = opt_string(c, "description", &at, &mut errors);
        if chat_input {
            chat_inputs += 1;
            check_description(description, &at, &mut errors);
            let options = opt_array(c, "options", &at, &mut errors).unwrap_or_default();
            check_options(&options, &join(&at, "options"), 0, &mut errors);
        } else if description.as_deref().is_some_and(|d| !d.is_empty()) {
            errors.add(
                &join(&at, "description"),
                "APPLICATION_COMMAND_DESCRIPTION_NOT_ALLOWED",
                "Description must be empty for user and message commands",
            );
        }
        if let Some(perms) = c.get("default_member_permissions")
            && !perms.is_null()
            && perms.as_str().is_none_or(|p| p.parse::<u64>().is_err())
        {
            errors.add(
                &join(&at, "default_member_permissions"),
                "NUMBER_TYPE_COERCE",
                format!("Value \"{}\" is not snowflake.", type_name(perms)),
            );
        }
        opt_bool(c, "nsfw", &at, &mut errors);
        out.push(c.clone());
    }
    if chat_inputs > MAX_COMMANDS {
        errors.add(
            "",
            "BASE_TYPE_MAX_LENGTH",
            format!("Must be {MAX_COMMANDS} or fewer in length."),
        );
    }
    errors.finish()?;
    Ok(out)
}

/// Option types 1 (subcommand) .. 11 (attachment).
fn check_options(options: &[Value], at: &str, depth: u8, errors: &mut FormErrors) {
    if options.len() > MAX_OPTIONS {
        errors.add(
            at,
            "BASE_TYPE_MAX_LENGTH",
            format!("Must be {MAX_OPTIONS} or fewer in length."),
        );
    }
    let mut names = HashSet::new();
    let mut optional_seen = false;
    let mut has_sub = false;
    let mut has_value = false;
    for (j, option) in options.iter().enumerate() {
        let o_at = join(at, j);
        let Some(o) = object(option, &o_at, errors) else {
            continue;
        };
        let kind = opt_int(o, "type", &o_at, errors);
        match kind {
            Some(1..=11) => {}
            None if !o.contains_key("type") => errors.required(&join(&o_at, "type")),
            _ => errors.add(
                &join(&o_at, "type"),
                "BASE_TYPE_CHOICES",
                "Value must be one of {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}.",
            ),
        }
        let kind = kind.unwrap_or(0);
        let name = opt_string(o, "name", &o_at, errors);
        if let Some(n) = &name
            && !names.insert(n.clone())
        {
            errors.add(
                at,
                "APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS",
                format!("Option name {n} is already used in these options"),
            );
        }
        check_name(name, &o_at, true, errors);
        check_description(opt_string(o, "description", &o_at, errors), &o_at, errors);
        let required = opt_bool(o, "required", &o_at, errors);
        if matches!(kind, 1 | 2) {
            has_sub = true;
            if required {
                errors.add(
                    &join(&o_at, "required"),
                    "APPLICATION_COMMAND_OPTION_REQUIRED_NOT_ALLOWED",
                    "Subcommands and groups cannot be required",
                );
            }
            // A group (depth 0) holds subcommands; a subcommand holds values.
            if (kind == 2 && depth > 0) || (kind == 1 && depth > 1) {
                errors.add(
                    &join(&o_at, "type"),
                    "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
                    "Subcommands and groups cannot be nested this deep",
                );
            }
            let nested = opt_array(o, "options", &o_at, errors).unwrap_or_default();
            if kind == 2
                && nested
                    .iter()
                    .any(|n| n.get("type").and_then(Value::as_i64) != Some(1))
            {
                errors.add(
                    &join(&o_at, "options"),
                    "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
                    "A subcommand group may only contain subcommands",
                );
            }
            check_options(&nested, &join(&o_at, "options"), depth + 1, errors);
        } else {
            has_value = true;
            if required && optional_seen {
                errors.add(
                    at,
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                );
            }
            optional_seen |= !required;
            check_choices(o, kind, &o_at, errors);
        }
    }
    if has_sub && has_value {
        errors.add(
            at,
            "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID",
            "Subcommands cannot be mixed with other option types",
        );
    }
}

/// `choices` only on string (3), integer (4) and number (10) options: at most 25, names
/// 1–100, values of the option's type (strings ≤ 100).
fn check_choices(o: &Map<String, Value>, kind: i64, at: &str, errors: &mut FormErrors) {
    let Some(choices) = opt_array(o, "choices", at, errors) else {
        return;
    };
    let choices_at = join(at, "choices");
    if !matches!(kind, 3 | 4 | 10) && !choices.is_empty() {
        errors.add(
            &choices_at,
            "APPLICATION_COMMAND_OPTION_CHOICES_NOT_ALLOWED",
            "Choices are only allowed on string, integer and number options",
        );
        return;
    }
    if choices.len() > MAX_OPTIONS {
        errors.add(
            &choices_at,
            "BASE_TYPE_MAX_LENGTH",
            format!("Must be {MAX_OPTIONS} or fewer in length."),
        );
    }
    for (k, choice) in choices.iter().enumerate() {
        let c_at = join(&choices_at, k);
        let Some(c) = object(choice, &c_at, errors) else {
            continue;
        };
        match opt_string(c, "name", &c_at, errors) {
            None => errors.required(&join(&c_at, "name")),
            Some(n) => errors.bad_len(&join(&c_at, "name"), n.chars().count(), 1, 100),
        }
        let value_at = join(&c_at, "value");
        match (kind, c.get("value")) {
            (3, Some(Value::String(s))) => errors.bad_len(&value_at, s.chars().count(), 1, 100),
            (4, Some(Value::Number(n))) if n.is_i64() || n.is_u64() => {}
            (10, Some(Value::Number(_))) => {}
            (_, None) => errors.required(&value_at),
            (_, Some(v)) => errors.add(
                &value_at,
                "APPLICATION_COMMAND_OPTION_CHOICE_VALUE_INVALID",
                format!("Choice value {v} does not match the option type"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors_of(result: Result<(), ApiError>) -> Value {
        result
            .err()
            .map(|e| e.body["errors"].clone())
            .unwrap_or(Value::Null)
    }

    #[test]
    fn nested_paths_build_discords_error_tree() {
        let mut e = FormErrors::new();
        e.add("components.0.components.1.custom_id", "X", "m");
        e.add("content", "Y", "n");
        assert_eq!(
            errors_of(e.finish()),
            json!({
                "components": {"0": {"components": {"1": {"custom_id": {
                    "_errors": [{"code": "X", "message": "m"}]}}}}},
                "content": {"_errors": [{"code": "Y", "message": "n"}]},
            })
        );
    }

    #[test]
    fn content_counts_utf16_units() {
        let mut e = FormErrors::new();
        // 1000 astral characters are 2000 UTF-16 units: allowed; one more is not.
        message_draft(&json!({"content": "𝄞".repeat(1000)}), "", &mut e);
        assert!(e.is_empty());
        message_draft(
            &json!({"content": format!("{}a", "𝄞".repeat(1000))}),
            "",
            &mut e,
        );
        assert_eq!(
            errors_of(e.finish())["content"]["_errors"][0]["code"],
            "BASE_TYPE_MAX_LENGTH"
        );
    }

    #[test]
    fn select_must_be_alone_in_its_row_and_values_unique() {
        let mut e = FormErrors::new();
        let body = json!({"components": [{"type": 1, "components": [
            {"type": 3, "custom_id": "s", "options": [
                {"label": "a", "value": "v"}, {"label": "b", "value": "v"}]},
            {"type": 2, "style": 1, "label": "x", "custom_id": "b"},
        ]}]});
        message_draft(&body, "", &mut e);
        let errors = errors_of(e.finish());
        let row = &errors["components"]["0"]["components"];
        assert_eq!(row["_errors"][0]["code"], "COMPONENT_LAYOUT_WIDTH_EXCEEDED");
        assert_eq!(
            row["0"]["options"]["1"]["value"]["_errors"][0]["code"],
            "SELECT_COMPONENT_OPTION_VALUE_DUPLICATED"
        );
    }

    #[test]
    fn commands_check_option_order_and_names() {
        let body = json!([{
            "name": "Bad Name", "description": "d",
            "options": [
                {"type": 3, "name": "a", "description": "d"},
                {"type": 3, "name": "b", "description": "d", "required": true},
                {"type": 12, "name": "a", "description": "d"},
            ],
        }]);
        let err = commands(&body).err().map(|e| e.body).unwrap_or(Value::Null);
        assert_eq!(err["code"], 50035);
        let errors = &err["errors"]["0"];
        assert_eq!(
            errors["name"]["_errors"][0]["code"],
            "APPLICATION_COMMAND_INVALID_NAME"
        );
        let codes: Vec<&str> = errors["options"]["_errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["code"].as_str())
            .collect();
        assert!(codes.contains(&"APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID"));
        assert!(codes.contains(&"APPLICATION_COMMAND_OPTIONS_NAME_ALREADY_EXISTS"));
        assert_eq!(
            errors["options"]["2"]["type"]["_errors"][0]["code"],
            "BASE_TYPE_CHOICES"
        );
    }
}
