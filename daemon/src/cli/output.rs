//! Human output shared by the `ccrm` commands: session tables and details, pending
//! approvals with the commands that answer them, one-line previews of tool input, relative
//! times, and pretty JSON for `--json`. Pure printing; no requests.

use common::ipc::{ApprovalInfo, ApprovalKind, SessionInfo};
use serde_json::Value;

/// Prints reply data as pretty JSON (the `--json` output of most commands).
pub(super) fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// How long ago `ms` (Unix milliseconds) was, roughly: `5s ago`, `3m ago`, `2h ago`, `4d ago`.
pub(super) fn ago(ms: u64) -> String {
    let secs = common::event::now_ms().saturating_sub(ms) / 1000;
    match secs {
        0..60 => format!("{secs}s ago"),
        60..3600 => format!("{}m ago", secs / 60),
        3600..86400 => format!("{}h ago", secs / 3600),
        _ => format!("{}d ago", secs / 86400),
    }
}

/// How claude runs, as CCRM called it: `interactive` while the TUI is attached in tmux,
/// else `subprocess` (the stream-json child, or none while stopped).
pub(super) fn mode(s: &SessionInfo) -> &'static str {
    if s.state == common::event::SessionState::Attached {
        "interactive"
    } else {
        "subprocess"
    }
}

/// Prints sessions as a table, or how to start one when there are none.
pub(super) fn print_sessions(list: &[SessionInfo]) {
    if list.is_empty() {
        println!("no sessions; start one with `ccrm start`");
        return;
    }
    println!(
        "{:<9} {:<16} {:<18} {:<11} {:>5} {:>7}  {:<10} CWD",
        "ID", "NAME", "STATE", "MODE", "QUEUE", "PENDING", "CREATED"
    );
    for s in list {
        println!(
            "{:<9} {:<16} {:<18} {:<11} {:>5} {:>7}  {:<10} {}",
            s.id.short(),
            s.name.as_deref().unwrap_or("-"),
            s.state.as_str(),
            mode(s),
            s.queued,
            s.pending,
            ago(s.created_ms),
            s.cwd.display()
        );
    }
}

/// Prints one session's details.
pub(super) fn print_session(s: &SessionInfo) {
    println!("session {}", s.id);
    if let Some(n) = &s.name {
        println!("  name:        {n}");
    }
    println!("  state:       {}", s.state);
    if let Some(r) = &s.reason {
        println!("  reason:      {r}");
    }
    println!("  cwd:         {}", s.cwd.display());
    println!(
        "  model:       {}",
        s.model.as_deref().unwrap_or("(default)")
    );
    println!(
        "  permissions: {}{}",
        s.permission_mode,
        if s.auto_allow { ", auto-allow" } else { "" }
    );
    if !s.session_allowed_tools.is_empty() {
        println!(
            "  allowed for this session: {}",
            s.session_allowed_tools.join(", ")
        );
    }
    if let Some(pid) = s.pid {
        println!("  pid:         {pid}");
    }
    println!("  turns:       {} (queued {})", s.turns, s.queued);
    if let Some(c) = s.cost_usd {
        println!("  cost:        ${c:.4}");
    }
}

/// Prints pending approvals and questions, each with the command that answers it.
pub(super) fn print_approvals(list: &[ApprovalInfo]) {
    for a in list {
        let sid = a.session_id.short();
        match a.kind {
            ApprovalKind::Permission => {
                println!(
                    "⏸  {} wants to use {}: {}",
                    sid,
                    a.tool_name,
                    preview(&a.input, 200)
                );
                println!(
                    "   ccrm approve {sid} {}   |   ccrm deny {sid} {} -m \"why\"",
                    a.approval_id.short(),
                    a.approval_id.short()
                );
            }
            ApprovalKind::Question => {
                for q in &a.questions {
                    println!("?  {sid} asks: {}", q.question);
                    for (i, o) in q.options.iter().enumerate() {
                        println!(
                            "     {}. {}{}",
                            i + 1,
                            o.label,
                            o.description
                                .as_deref()
                                .map(|d| format!(" — {d}"))
                                .unwrap_or_default()
                        );
                    }
                }
                println!(
                    "   ccrm answer {sid} <choice> --request {}",
                    a.approval_id.short()
                );
            }
        }
    }
}

/// A byte count for people: `512 B`, `3.4 KiB`, `12.0 MiB`, `1.2 GiB`.
pub(super) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// A one-line, length-capped preview of a tool input.
pub fn preview(v: &Value, max: usize) -> String {
    let s = match v {
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    };
    let s = s.replace('\n', "⏎");
    if s.chars().count() > max {
        format!("{}…", s.chars().take(max).collect::<String>())
    } else {
        s
    }
}
