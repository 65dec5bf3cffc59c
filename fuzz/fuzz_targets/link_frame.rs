//! A daemon ⇄ bot WebSocket frame, either direction: refused, or a frame that survives a round
//! trip (`common::props::link_frame`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::props::link_frame(data);
});
