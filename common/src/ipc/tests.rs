//! Parsing and round trips of the `ccrm` ⇄ `ccrmd` requests and replies.

use super::*;

#[test]
fn parses_commands_with_and_without_args() {
    let r = parse_request(r#"{"id":1,"cmd":"sessions.list"}"#).expect("parse");
    assert_eq!(r.cmd, Command::SessionsList(NoArgs {}));
    let r = parse_request(r#"{"id":"x","cmd":"daemon.status","args":null}"#).expect("parse");
    assert_eq!(r.id, Value::from("x"));
    let r = parse_request(r#"{"id":2,"cmd":"prompt.send","args":{"session":"ab","text":"hi"}}"#)
        .expect("parse");
    match r.cmd {
        Command::PromptSend(p) => {
            assert_eq!(p.text, "hi");
            assert!(!p.follow);
        }
        other => panic!("wrong command {other:?}"),
    }
}

#[test]
fn bad_requests_get_specific_codes() {
    let (_, e) = parse_request("not json").expect_err("garbage");
    assert_eq!(e.code, ErrorCode::ParseError);
    let (_, e) = parse_request("[1,2]").expect_err("array");
    assert_eq!(e.code, ErrorCode::BadRequest);
    let (id, e) = parse_request(r#"{"id":9,"cmd":"nope"}"#).expect_err("unknown");
    assert_eq!(e.code, ErrorCode::UnknownCommand);
    assert_eq!(id, Value::from(9));
    let (_, e) = parse_request(r#"{"id":9,"cmd":"prompt.send","args":{"session":1}}"#)
        .expect_err("bad args");
    assert_eq!(e.code, ErrorCode::BadRequest);
    assert!(e.message.contains("prompt.send"), "{}", e.message);
    let (_, e) =
        parse_request(r#"{"id":9,"cmd":"daemon.stop","args":{"x":1}}"#).expect_err("extra args");
    assert_eq!(e.code, ErrorCode::BadRequest);
}

#[test]
fn requests_round_trip() {
    let cmds = vec![
        Command::DaemonStatus(NoArgs {}),
        Command::SessionStart(StartArgs {
            cwd: "/tmp".into(),
            model: Some("sonnet".into()),
            ..Default::default()
        }),
        Command::SessionAttach(AttachArgs {
            session: "ab".into(),
            now: true,
        }),
        Command::ApprovalDecide(DecideArgs {
            session: "ab".into(),
            approval: None,
            decision: Decision::Deny,
            message: Some("no".into()),
            origin: None,
        }),
        Command::QuestionAnswer(AnswerArgs {
            session: "ab".into(),
            approval: Some("x".into()),
            answers: vec!["1".into()],
            origin: None,
        }),
    ];
    for cmd in cmds {
        let req = Request {
            id: Value::from(3),
            cmd,
        };
        let line = serde_json::to_string(&req).expect("ser");
        let back = parse_request(&line).expect("parse");
        assert_eq!(back, req);
        assert_eq!(
            serde_json::from_str::<Value>(&line).expect("json")["cmd"],
            req.cmd.name()
        );
    }
}

#[test]
fn attach_now_defaults_to_false() {
    let r =
        parse_request(r#"{"id":1,"cmd":"session.attach","args":{"session":"ab"}}"#).expect("parse");
    assert_eq!(
        r.cmd,
        Command::SessionAttach(AttachArgs {
            session: "ab".into(),
            now: false
        })
    );
}

#[test]
fn replies_round_trip() {
    for reply in [
        Reply::ok(Value::from(1), serde_json::json!({"a": 1})),
        Reply::err(Value::Null, ErrorBody::new(ErrorCode::TooLarge, "big")),
        Reply::end(Value::from(2), None),
    ] {
        let line = serde_json::to_string(&reply).expect("ser");
        assert_eq!(serde_json::from_str::<Reply>(&line).expect("de"), reply);
    }
}
