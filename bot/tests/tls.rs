//! TLS end to end with a certificate made here (rcgen): a real `ccrm-bot` serving HTTPS and
//! WSS, a real `ccrmd` that links over `wss://` trusting the test CA (`bot_ca_file`) and
//! runs a turn through the real Claude Code CLI, REST over `https://`; a daemon without the
//! CA refusing the bot with a clear reason; `ccrm doctor`'s HTTPS probe of the bot (which
//! ccrmd runs for it) trusting the CA or explaining why not; plain `ws://` to another host refused before
//! any connection; the certificate reloaded on SIGHUP; `X-Forwarded-For` believed only
//! from a trusted proxy in the audit log; and replicas on PostgreSQL linking to each other
//! directly over `wss://` when they trust the CA (`replica_ca_file`), through PostgreSQL
//! when they do not.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::cluster::{
    direct_count, direct_link_up, gauge, get_at, post_at, replica_with, wait_online,
};
use common::{WAIT, World, ccrm_bin, ccrmd_bin};
use serde_json::{Value, json};

/// A CA and a server certificate for `localhost` / `127.0.0.1` signed by it, as PEM files.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn make_pki(dir: &Path, name: &str) -> Pki {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("ccrm test CA {name}"));
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let key = rcgen::KeyPair::generate().expect("server key");
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("params");
    let cert = params.signed_by(&key, &ca).expect("server cert");
    let pki = Pki {
        ca: dir.join(format!("{name}-ca.pem")),
        cert: dir.join(format!("{name}-cert.pem")),
        key: dir.join(format!("{name}-key.pem")),
    };
    std::fs::write(&pki.ca, ca.pem()).expect("write ca");
    std::fs::write(&pki.cert, cert.pem()).expect("write cert");
    std::fs::write(&pki.key, key.serialize_pem()).expect("write key");
    pki
}

/// An HTTPS client that trusts only `ca` (no connection reuse, so each request handshakes).
fn https(ca: &Path) -> reqwest012::Client {
    let pem = std::fs::read(ca).expect("read ca");
    reqwest012::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest012::Certificate::from_pem(&pem).expect("pem"))
        .pool_max_idle_per_host(0)
        .timeout(WAIT)
        .build()
        .expect("client")
}

async fn tls_bot(pki: &Pki) -> World {
    let cert = pki.cert.display().to_string();
    let key = pki.key.display().to_string();
    World::bot_only_with(&[
        ("CCRM_BOT_TLS_CERT", cert.as_str()),
        ("CCRM_BOT_TLS_KEY", key.as_str()),
    ])
    .await
}

/// ccrmd linked to `url`, with extra environment.
fn spawn_daemon(w: &mut World, url: &str, extra: &[(&str, String)]) -> Result<(), String> {
    let mut cmd = std::process::Command::new(ccrmd_bin());
    cmd.envs(w.daemon_env())
        .env("CCRM_BOT_URL", url)
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())));
    let (child, _) = testkit::process::spawn_ready(cmd, "ccrmd ready", "ccrmd", WAIT, None)?;
    w.daemon = Some(child);
    Ok(())
}

/// `ccrm --json doctor` with the daemon's settings and `extra`: its `bot` finding (the
/// direct probe of the bot, which ccrmd runs for `ccrm` with the same TLS settings).
fn doctor_bot(w: &World, url: &str, extra: &[(&str, String)]) -> Value {
    let out = std::process::Command::new(ccrm_bin())
        .args(["--json", "doctor"])
        .envs(w.daemon_env())
        .env("CCRM_BOT_URL", url)
        .env("CCRM_BOT_API_KEY", "ccrm_daemon_unused")
        .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(std::process::Stdio::null())
        .output()
        .expect("ccrm doctor");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    report["findings"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["check"] == "bot"))
        .cloned()
        .unwrap_or_else(|| {
            panic!(
                "no bot finding: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

async fn get(client: &reqwest012::Client, w: &World, url: &str) -> (u16, Value) {
    let r = client
        .get(url)
        .bearer_auth(&w.user_token)
        .send()
        .await
        .expect("GET over https");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_with_the_ca_links_over_wss_and_rest_works_over_https() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(dir.path(), "a");
    let mut w = tls_bot(&pki).await;
    let port = w.addr.port();
    let base = format!("https://localhost:{port}");
    let client = https(&pki.ca);

    // Plain HTTP on the TLS port gets nowhere; HTTPS answers.
    let plain = reqwest012::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(plain.is_err() || plain.is_ok_and(|r| !r.status().is_success()));
    let (status, _) = get(&client, &w, &format!("{base}/healthz")).await;
    assert_eq!(status, 200);
    let (status, _) = get(
        &client,
        &w,
        &format!("https://127.0.0.1:{port}/api/daemons"),
    )
    .await;
    assert_eq!(status, 200, "the IP address is in the certificate too");

    // `ccrm doctor` reaches the bot over HTTPS trusting the CA.
    let ca = [("CCRM_BOT_CA_FILE", pki.ca.display().to_string())];
    let bot = doctor_bot(&w, &format!("wss://localhost:{port}"), &ca);
    assert_eq!(bot["status"], "ok", "{bot}");
    assert!(
        bot["detail"]
            .as_str()
            .is_some_and(|d| d.contains(&format!("https://localhost:{port}"))
                && d.contains("TLS, certificate signed by the CA")),
        "{bot}"
    );

    spawn_daemon(&mut w, &format!("wss://localhost:{port}"), &ca).expect("ccrmd starts");
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, v) = get(&client, &w, &format!("{base}/api/daemons")).await;
        if v["daemons"][0]["online"] == true {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never online: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let st = w.daemon_status().await;
    assert_eq!(st["uplink"]["connected"], true, "{st}");
    assert!(
        st["uplink"]["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("wss://localhost:")),
        "{st}"
    );

    // A turn over the TLS link, both ways: start and prompt over REST, events back.
    let r = client
        .post(format!("{base}/api/sessions"))
        .bearer_auth(&w.user_token)
        .json(&json!({"cwd": w.work}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 201);
    let v: Value = r.json().await.expect("json");
    let id = v["session"]["id"].as_str().expect("id").to_owned();
    let r = client
        .post(format!("{base}/api/sessions/{id}/prompt"))
        .bearer_auth(&w.user_token)
        .json(&json!({"text": "hello over tls"}))
        .send()
        .await
        .expect("POST prompt");
    assert!(r.status().is_success());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, v) = get(
            &client,
            &w,
            &format!("{base}/api/sessions/{id}/events?limit=1000"),
        )
        .await;
        if v.to_string().contains("Echo: hello over tls") {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "no answer: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The audit log has the caller's address (no proxy: the peer's).
    let db = w.db().await;
    let rows = db.list_audit(50).await.expect("audit");
    db.close().await;
    let start = rows
        .iter()
        .find(|r| r.action == "session.start")
        .expect("audited");
    assert_eq!(start.detail["addr"], "127.0.0.1", "{start:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_ca_the_daemon_refuses_the_bot_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(dir.path(), "b");
    let mut w = tls_bot(&pki).await;
    let port = w.addr.port();
    spawn_daemon(&mut w, &format!("wss://localhost:{port}"), &[]).expect("ccrmd starts");
    let deadline = tokio::time::Instant::now() + WAIT;
    let why = loop {
        let st = w.daemon_status().await;
        if let Some(e) = st["uplink"]["last_error"].as_str() {
            break e.to_owned();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no failure recorded: {st}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        why.contains("not trusted") && why.contains("unknown CA") && why.contains("bot_ca_file"),
        "{why}"
    );
    // `ccrm doctor` says the same, with the fix.
    let bot = doctor_bot(&w, &format!("wss://localhost:{port}"), &[]);
    assert_eq!(bot["status"], "fail", "{bot}");
    assert!(
        bot["detail"]
            .as_str()
            .is_some_and(|d| d.contains("unknown CA")),
        "{bot}"
    );
    assert!(
        bot["fix"]
            .as_str()
            .is_some_and(|f| f.contains("bot_ca_file")),
        "{bot}"
    );
    assert_eq!(w.daemon_status().await["uplink"]["connected"], false);
    let (_, v) = get(
        &https(&pki.ca),
        &w,
        &format!("https://localhost:{port}/api/daemons"),
    )
    .await;
    assert_eq!(v["daemons"].as_array().map(Vec::len), Some(0), "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_ws_to_another_host_is_refused_before_connecting() {
    let mut w = World::bot_only().await;
    // No connection is attempted: the config is refused first (the name is not resolved).
    let err = spawn_daemon(&mut w, "ws://bot.example.com:7878", &[])
        .expect_err("ccrmd must refuse a clear-text key to another host");
    assert!(
        err.contains("clear text") && err.contains("allow_insecure_bot") && err.contains("wss://"),
        "{err}"
    );
    // `allow_insecure_bot = true` lifts the refusal (config unit tests); it is not tried
    // here because the daemon would then dial that host.
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_certificate_and_keeps_the_old_one_on_a_bad_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = make_pki(dir.path(), "first");
    let second = make_pki(dir.path(), "second");
    let w = tls_bot(&first).await;
    let url = format!("https://localhost:{}/healthz", w.addr.port());
    let ok = |pki: &Pki| {
        let client = https(&pki.ca);
        let url = url.clone();
        async move {
            client
                .get(url)
                .send()
                .await
                .is_ok_and(|r| r.status() == 200)
        }
    };
    assert!(ok(&first).await);
    assert!(
        !ok(&second).await,
        "the second CA did not sign the first certificate"
    );

    let pid = nix::unistd::Pid::from_raw(w.bot.as_ref().expect("bot").id() as i32);
    let reloads = |w: &World, what: &str| w.bot_log_text().matches(what).count();
    std::fs::copy(&second.cert, &first.cert).expect("new cert");
    std::fs::copy(&second.key, &first.key).expect("new key");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("hup");
    let deadline = tokio::time::Instant::now() + WAIT;
    while reloads(&w, "TLS certificate reloaded") < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            w.bot_log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok(&second).await, "new connections get the new certificate");
    assert!(!ok(&first).await);

    std::fs::write(&first.cert, "garbage").expect("bad cert");
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("hup");
    let deadline = tokio::time::Instant::now() + WAIT;
    while reloads(&w, "TLS reload failed") < 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            w.bot_log_text()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        ok(&second).await,
        "a bad file keeps the previous certificate"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_for_counts_only_from_a_trusted_proxy() {
    let w = World::start_with(&[("CCRM_BOT_TRUSTED_PROXIES", "127.0.0.1")]).await;
    let r = w
        .http
        .post(w.url("/api/sessions"))
        .bearer_auth(&w.user_token)
        .header("x-forwarded-for", "198.51.100.7, 203.0.113.9")
        .json(&json!({"cwd": w.work, "name": "proxied"}))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status().as_u16(), 201);
    let db = w.db().await;
    let rows = db.list_audit(50).await.expect("audit");
    db.close().await;
    let row = rows
        .iter()
        .find(|r| r.action == "session.start")
        .expect("audited");
    assert_eq!(
        row.detail["addr"], "203.0.113.9",
        "the proxy's last hop is the client: {row:?}"
    );
}

/// Waits (bounded) until session `sid`'s events, read on replica `addr`, contain `text`.
async fn wait_answer(w: &World, addr: std::net::SocketAddr, sid: &str, text: &str) {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let (_, v) = get_at(w, addr, &format!("/api/sessions/{sid}/events?limit=1000")).await;
        if v.to_string().contains(text) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no `{text}` at {addr}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_link_directly_over_wss_when_they_trust_the_replica_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = make_pki(dir.path(), "r");
    let (cert, key, ca) = (
        pki.cert.display().to_string(),
        pki.key.display().to_string(),
        pki.ca.display().to_string(),
    );
    // C (the World's bot) serves TLS and holds the daemon's link; A trusts C's CA for its
    // links to other replicas, B does not. A and B serve plain HTTP on loopback.
    let mut w = World::bot_only_on_postgres(&[
        ("CCRM_BOT_TLS_CERT", cert.as_str()),
        ("CCRM_BOT_TLS_KEY", key.as_str()),
    ])
    .await;
    let port = w.addr.port();
    spawn_daemon(
        &mut w,
        &format!("wss://localhost:{port}"),
        &[("CCRM_BOT_CA_FILE", ca.clone())],
    )
    .expect("ccrmd starts");
    // (An empty setting counts as unset: A and B drop the World's TLS settings.)
    let plain = [("CCRM_BOT_TLS_CERT", ""), ("CCRM_BOT_TLS_KEY", "")];
    let trusting = [
        plain[0],
        plain[1],
        ("CCRM_BOT_REPLICA_CA_FILE", ca.as_str()),
    ];
    let a = replica_with(&w, "bot-a", &trusting);
    let b = replica_with(&w, "bot-b", &plain);
    let online = wait_online(&w, a.addr, 1).await;
    let daemon = online[0]["id"].as_str().expect("id").to_owned();

    // The session starts through A: a call routed to C through PostgreSQL, after which A
    // dials C's wss:// address; the prompt then goes over that link.
    let (status, v) = post_at(
        &w,
        a.addr,
        "/api/sessions",
        json!({"cwd": w.work, "daemon": daemon}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let sid = v["session"]["id"].as_str().expect("id").to_owned();
    let before = direct_link_up(&w, &[a.addr]).await;
    let prompt = json!({"text": "hello over wss between replicas"});
    let (status, v) = post_at(&w, a.addr, &format!("/api/sessions/{sid}/prompt"), prompt).await;
    assert_eq!(status, 202, "{v}");
    wait_answer(&w, a.addr, &sid, "Echo: hello over wss between replicas").await;
    assert!(
        direct_count(&w, a.addr).await > before,
        "the prompt went over A's TLS link to C"
    );

    // B cannot verify C's certificate: no link, and its calls go through PostgreSQL.
    let prompt = json!({"text": "via B without the CA"});
    let (status, v) = post_at(&w, b.addr, &format!("/api/sessions/{sid}/prompt"), prompt).await;
    assert_eq!(status, 202, "{v}");
    wait_answer(&w, b.addr, &sid, "Echo: via B without the CA").await;
    let deadline = tokio::time::Instant::now() + WAIT;
    while !w.bot_log_text().contains("cannot link to another replica") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "B never said why it did not link"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(gauge(&w, b.addr, "ccrm_replica_links").await, Some(0.0));
}
