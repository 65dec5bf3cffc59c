//! A claude stdout line: refused as not JSON, or classified the same way twice
//! (`common::props::child_line`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(line) = std::str::from_utf8(data) {
        common::props::child_line(line);
    }
});
