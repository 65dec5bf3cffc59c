//! The JSON-lines codec against its model (`common::props::codec_matches_model`): the first
//! byte picks the line cap, the next eight the chunk boundaries, the rest is the stream.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cap, rest)) = data.split_first() else {
        return;
    };
    let (cuts, input) = rest.split_at(rest.len().min(8));
    let cuts: Vec<usize> = cuts.iter().map(|c| usize::from(*c) * 7).collect();
    common::props::codec_matches_model(usize::from(cap % 64) + 1, input, &cuts);
});
