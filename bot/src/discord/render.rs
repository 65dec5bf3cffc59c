//! How chat messages look on Discord, with no I/O: [`fit`] renders [`Rich`] text as
//! Discord Markdown within a length limit (2000 for a message, 4096 for an embed), and
//! [`components`] turns an [`Outgoing`]'s buttons into action rows (buttons, or one select
//! menu for a question's options).
//!
//! [`super::platform`] builds its requests from these.

use serenity::all::{
    ButtonStyle as DcButtonStyle, CreateActionRow, CreateButton, CreateSelectMenu,
    CreateSelectMenuKind, CreateSelectMenuOption,
};

use crate::chat::render::{self, Rich};
use crate::chat::{ButtonStyle, Outgoing};

/// Button label limit.
const LABEL_LIMIT: usize = 80;

/// Select option label limit.
const OPTION_LIMIT: usize = 100;

/// `text` as Discord Markdown within `limit` (cut at a line or word, marked with `…`).
pub fn fit(text: &Rich, limit: usize) -> String {
    let s = text.discord();
    if s.encode_utf16().count() <= limit {
        // Discord refuses an empty message.
        return if s.trim().is_empty() {
            "…".to_owned()
        } else {
            s
        };
    }
    render::split(text, limit.saturating_sub(1), usize::MAX, Rich::discord_len)
        .and_then(|parts| parts.into_iter().next())
        .map_or_else(|| "…".to_owned(), |p| format!("{}…", p.discord()))
}

/// The action rows for `msg`: a select menu for a question's options, else rows of
/// buttons (Discord allows 5 rows of 5).
pub fn components(msg: &Outgoing) -> Vec<CreateActionRow> {
    if msg.buttons.is_empty() {
        return Vec::new();
    }
    if msg.choice {
        let options: Vec<_> = msg
            .buttons
            .iter()
            .flatten()
            .take(25)
            .map(|b| {
                CreateSelectMenuOption::new(
                    render::truncate(&b.label, OPTION_LIMIT),
                    b.data.clone(),
                )
            })
            .collect();
        let menu = CreateSelectMenu::new("choice", CreateSelectMenuKind::String { options })
            .placeholder("Choose an answer");
        return vec![CreateActionRow::SelectMenu(menu)];
    }
    msg.buttons
        .iter()
        .take(5)
        .map(|row| {
            CreateActionRow::Buttons(
                row.iter()
                    .take(5)
                    .map(|b| {
                        CreateButton::new(b.data.clone())
                            .label(render::truncate(&b.label, LABEL_LIMIT))
                            .style(match b.style {
                                ButtonStyle::Primary => DcButtonStyle::Primary,
                                ButtonStyle::Secondary => DcButtonStyle::Secondary,
                                ButtonStyle::Success => DcButtonStyle::Success,
                                ButtonStyle::Danger => DcButtonStyle::Danger,
                            })
                    })
                    .collect(),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::chat::Button;

    #[test]
    fn buttons_and_menus() {
        let b = |label: &str, data: &str, style| Button {
            label: label.into(),
            data: data.into(),
            style,
        };
        let msg = Outgoing {
            text: Rich::text("x"),
            buttons: vec![vec![
                b("Allow", "a:1:a", ButtonStyle::Success),
                b("Deny", "a:1:d", ButtonStyle::Danger),
            ]],
            choice: false,
        };
        let rows = serde_json::to_value(components(&msg)).expect("json");
        assert_eq!(rows[0]["type"], 1);
        assert_eq!(rows[0]["components"][0]["custom_id"], "a:1:a");
        assert_eq!(rows[0]["components"][0]["style"], 3);
        assert_eq!(rows[0]["components"][1]["style"], 4);
        let q = Outgoing {
            choice: true,
            buttons: vec![
                vec![b("Red", "q:2:0", ButtonStyle::Secondary)],
                vec![b("Blue", "q:2:1", ButtonStyle::Secondary)],
            ],
            ..msg
        };
        let rows = serde_json::to_value(components(&q)).expect("json");
        assert_eq!(rows[0]["components"][0]["type"], 3);
        assert_eq!(
            rows[0]["components"][0]["options"],
            json!([{"label": "Red", "value": "q:2:0"}, {"label": "Blue", "value": "q:2:1"}])
        );
        assert!(components(&Outgoing::text(Rich::text("y"))).is_empty());
    }
}
