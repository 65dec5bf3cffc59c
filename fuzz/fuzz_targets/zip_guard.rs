//! The workspace zip guard (`ccrm_daemon::workspace::props`): an archive built from the
//! input (hostile names, kinds, lying sizes, flipped bytes; see `testkit::zips::from_fuzz`),
//! or the raw input when it starts like a zip, unpacked into a scratch directory: never a
//! panic, nothing outside the target, the caps kept.
#![no_main]

use ccrm_daemon::workspace::props;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.starts_with(b"PK") {
        props::unpack_holds(data, &props::LIMITS);
    } else {
        props::unpack_holds(&testkit::zips::from_fuzz(data), &props::LIMITS);
    }
});
