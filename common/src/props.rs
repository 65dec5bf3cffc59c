//! What must hold for the parsers that face outside input: the line codec (the daemon's
//! socket and the claude child's stdio), the child's stdout classifier, the socket request
//! parser and the daemon ⇄ bot link frames. Each check panics with the counterexample when a
//! property fails. Two engines look for one: `proptest` in this module's tests (so `cargo
//! test` exercises them on stable) and the cargo-fuzz targets in `fuzz/` (compiled with
//! `--cfg fuzzing`), so one place says what is true and both search for the opposite.

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use crate::child;
use crate::codec::{BoundedLines, Frame};
use crate::ipc;
use crate::link::{DaemonMsg, HubMsg};

/// The frames a [`BoundedLines`] with cap `max` must yield for `input`, whatever the chunks:
/// every `\n`-terminated line, and a non-empty unterminated rest at the end, is `TooLong`
/// when it has more than `max` bytes, else the line without a trailing `\r` (`NotUtf8` when
/// it is not UTF-8).
pub fn codec_model(max: usize, input: &[u8]) -> Vec<Frame> {
    let mut out = Vec::new();
    let mut pieces: Vec<&[u8]> = input.split(|b| *b == b'\n').collect();
    // `split` yields the (possibly empty) rest after the last newline.
    let rest = pieces.pop().unwrap_or_default();
    let mut one = |line: &[u8]| {
        if line.len() > max {
            out.push(Frame::TooLong);
            return;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.push(match std::str::from_utf8(line) {
            Ok(s) => Frame::Line(s.to_owned()),
            Err(_) => Frame::NotUtf8,
        });
    };
    for line in pieces {
        one(line);
    }
    if !rest.is_empty() {
        one(rest);
    }
    out
}

/// Decodes `input` fed in chunks that end at the offsets in `cuts` (taken modulo the input
/// length) and checks the frames equal [`codec_model`]: chunking never changes what is read,
/// nothing is lost or invented, and a long line costs one `TooLong`, not the stream.
pub fn codec_matches_model(max: usize, input: &[u8], cuts: &[usize]) {
    let max = max.max(1);
    let mut offsets: Vec<usize> = cuts
        .iter()
        .map(|c| if input.is_empty() { 0 } else { c % input.len() })
        .collect();
    offsets.push(input.len());
    offsets.sort_unstable();
    let mut codec = BoundedLines::new(max);
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    let mut at = 0;
    for end in offsets {
        buf.extend_from_slice(&input[at..end]);
        at = end;
        while let Some(frame) = codec
            .decode(&mut buf)
            .expect("decode never fails on content")
        {
            got.push(frame);
        }
    }
    while let Some(frame) = codec
        .decode_eof(&mut buf)
        .expect("decode_eof never fails on content")
    {
        got.push(frame);
    }
    for frame in &got {
        if let Frame::Line(l) = frame {
            assert!(l.len() <= max, "a line over the cap came through: {l:?}");
            assert!(!l.contains('\n'), "a line kept its terminator: {l:?}");
        }
    }
    assert_eq!(got, codec_model(max, input), "max {max}, input {input:?}");
}

/// Any stdout line either is refused as not JSON or is classified, and classifying the parsed
/// value again gives the same answer (the actor may re-read `raw`).
pub fn child_line(line: &str) {
    match child::parse_line(line) {
        Err(e) => assert!(e.snippet.chars().count() <= 120, "snippet too long"),
        Ok((value, msg)) => {
            let again = child::classify(&value);
            assert_eq!(format!("{msg:?}"), format!("{again:?}"), "line {line:?}");
        }
    }
}

/// Any socket line gets a request or an error; an accepted request survives a round trip
/// through its own serialisation unchanged.
pub fn ipc_request(line: &str) {
    match ipc::parse_request(line) {
        Err((_, body)) => assert!(!body.message.is_empty(), "an error says what is wrong"),
        Ok(req) => {
            let text = serde_json::to_string(&req).expect("a request serialises");
            let back = ipc::parse_request(&text).unwrap_or_else(|(_, e)| {
                panic!("re-parse of {text} failed: {}", e.message);
            });
            assert_eq!(back, req, "round trip of {line:?} via {text}");
        }
    }
}

/// Any bytes either fail to parse as a link frame (each direction) or parse to a frame that
/// survives a round trip through its own serialisation.
pub fn link_frame(bytes: &[u8]) {
    if let Ok(msg) = serde_json::from_slice::<DaemonMsg>(bytes) {
        let text = serde_json::to_string(&msg).expect("a daemon frame serialises");
        let back: DaemonMsg = serde_json::from_str(&text).expect("a daemon frame re-parses");
        assert_eq!(back, msg, "round trip via {text}");
    }
    if let Ok(msg) = serde_json::from_slice::<HubMsg>(bytes) {
        let text = serde_json::to_string(&msg).expect("a hub frame serialises");
        let back: HubMsg = serde_json::from_str(&text).expect("a hub frame re-parses");
        assert_eq!(back, msg, "round trip via {text}");
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Bytes that are mostly line material: newlines, `\r`, ASCII, and some invalid UTF-8.
    fn line_bytes() -> impl Strategy<Value = Vec<u8>> {
        prop::collection::vec(
            prop_oneof![
                4 => Just(b'a'),
                2 => Just(b'\n'),
                1 => Just(b'\r'),
                1 => Just(0xff_u8),
                1 => Just(0xc3_u8),
                1 => Just(0xa9_u8),
                2 => any::<u8>(),
            ],
            0..300,
        )
    }

    /// JSON-ish text: valid frames and requests with edits, so the parsers see near misses.
    fn jsonish() -> impl Strategy<Value = String> {
        let seeds = prop_oneof![
            Just(r#"{"id":1,"cmd":"sessions.list"}"#.to_owned()),
            Just(r#"{"id":"x","cmd":"prompt.send","args":{"session":"ab","text":"hi"}}"#.to_owned()),
            Just(r#"{"type":"ack","seq":3}"#.to_owned()),
            Just(r#"{"type":"welcome","protocol":1,"acked_seq":0}"#.to_owned()),
            Just(r#"{"type":"hello","protocol":1,"daemon_id":"d","hostname":"h","version":"1"}"#.to_owned()),
            Just(r#"{"type":"assistant","message":{"content":[{"type":"text","text":"x"}]}}"#.to_owned()),
            Just(r#"{"type":"result","subtype":"success","is_error":false,"result":"ok"}"#.to_owned()),
            Just(r#"{"type":"control_request","request_id":"1","request":{"subtype":"can_use_tool","tool_name":"Write","input":{}}}"#.to_owned()),
        ];
        (seeds, any::<u16>(), "[ -~]{0,8}").prop_map(|(s, at, junk)| {
            let at = usize::from(at) % (s.len() + 1);
            let at = (0..=at).rev().find(|i| s.is_char_boundary(*i)).unwrap_or(0);
            let mut out = s;
            if junk.is_empty() {
                out.truncate(at);
            } else {
                out.insert_str(at, &junk);
            }
            out
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn codec_reads_what_the_model_says(max in 1usize..40, input in line_bytes(), cuts in prop::collection::vec(any::<usize>(), 0..8)) {
            codec_matches_model(max, &input, &cuts);
        }

        #[test]
        fn child_lines_parse_or_are_refused(line in prop_oneof![jsonish(), any::<String>()]) {
            child_line(&line);
        }

        #[test]
        fn socket_requests_round_trip(line in prop_oneof![jsonish(), any::<String>()]) {
            ipc_request(&line);
        }

        #[test]
        fn link_frames_round_trip(line in prop_oneof![jsonish(), any::<String>()]) {
            link_frame(line.as_bytes());
        }
    }

    #[test]
    fn the_model_names_each_kind_of_frame() {
        assert_eq!(
            codec_model(3, b"ab\r\nabcd\n\xff\nxy"),
            vec![
                Frame::Line("ab".into()),
                Frame::TooLong,
                Frame::NotUtf8,
                Frame::Line("xy".into()),
            ]
        );
    }
}
