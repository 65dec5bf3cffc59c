//! The Telegram splitter and HTML renderer (`ccrm_bot::chat::render::props`): the first byte
//! picks the limit, the rest is decoded into rich text; every part fits, its HTML is
//! balanced and escaped, and the parts give back the text.
#![no_main]

use ccrm_bot::chat::render::props;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&limit, rest)) = data.split_first() else {
        return;
    };
    let text = props::rich_from_bytes(rest);
    props::telegram_split_holds(&text, props::limit_from(limit, props::TELEGRAM_LIMIT));
});
