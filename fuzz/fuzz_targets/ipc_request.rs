//! A control-socket line: an error that says what is wrong, or a request that survives a round
//! trip (`common::props::ipc_request`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(line) = std::str::from_utf8(data) {
        common::props::ipc_request(line);
    }
});
