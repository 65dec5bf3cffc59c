//! The Discord splitter and Markdown renderer (`ccrm_bot::chat::render::props`): the first
//! byte picks the limit, the second whether the rest is rich text or Claude's Markdown;
//! every part fits, its code fences pair up, and the parts give back the text.
#![no_main]

use ccrm_bot::chat::render::{markdown, props};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [limit, how, rest @ ..] = data else {
        return;
    };
    let text = if how % 2 == 0 {
        props::rich_from_bytes(rest)
    } else {
        markdown(&String::from_utf8_lossy(rest))
    };
    props::discord_split_holds(&text, props::limit_from(*limit, props::DISCORD_LIMIT));
});
