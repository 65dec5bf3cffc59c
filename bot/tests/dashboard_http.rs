//! The dashboard's security over plain HTTP against a real `ccrm-bot` process: headers on
//! every page, the login cookie's attributes, logout and revoked tokens, the origin check
//! and the CSRF token on every state-changing request, and the per-address login limit,
//! each refusal audited. What only a browser can show is in `dashboard.rs`.

mod common;

use ccrm_bot::auth::KeyKind;
use common::World;
use reqwest::header::{HeaderMap, HeaderValue};
use reqwest::redirect::Policy;

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(Policy::none())
        .timeout(common::WAIT)
        .build()
        .expect("client")
}

/// Logs in with `token`; returns the response headers.
async fn login(
    w: &World,
    token: &str,
    extra: &[(&'static str, &'static str)],
) -> reqwest::Response {
    let mut req = client()
        .post(w.url("/login"))
        .header("origin", format!("http://{}", w.addr))
        .form(&[("token", token), ("next", "/sessions/x")]);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.send().await.expect("login")
}

/// The `ccrm_session=...` pair of a login response.
fn cookie_of(res: &reqwest::Response) -> String {
    let set = res
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .expect("set-cookie");
    set.split(';').next().expect("pair").to_owned()
}

/// The CSRF token of a logged-in page.
async fn csrf_of(w: &World, cookie: &str) -> String {
    let html = client()
        .get(w.url("/"))
        .header("cookie", cookie)
        .send()
        .await
        .expect("page")
        .text()
        .await
        .expect("html");
    let needle = "name=\"csrf-token\" content=\"";
    let at = html.find(needle).expect("csrf meta") + needle.len();
    html[at..at + 64].to_owned()
}

fn same_origin(w: &World) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        "origin",
        HeaderValue::from_str(&format!("http://{}", w.addr)).expect("origin"),
    );
    h
}

#[tokio::test]
async fn pages_need_a_login_and_carry_the_security_headers() {
    let w = World::bot_only().await;
    let c = client();
    let res = c
        .get(w.url("/"))
        .header("accept", "text/html")
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 303);
    assert_eq!(res.headers()["location"], "/login");
    let res = c
        .get(w.url("/sessions/00000000-0000-4000-8000-000000000000"))
        .header("sec-fetch-mode", "navigate")
        .send()
        .await
        .expect("get");
    assert_eq!(
        res.headers()["location"],
        "/login?next=/sessions/00000000-0000-4000-8000-000000000000"
    );
    // Background requests get a 401, not a redirect.
    for path in ["/partials/overview", "/partials/pending", "/live"] {
        let res = c.get(w.url(path)).send().await.expect("get");
        assert_eq!(res.status(), 401, "{path}");
    }
    let res = c.get(w.url("/login")).send().await.expect("login page");
    assert_eq!(res.status(), 200);
    let h = res.headers();
    let csp = h["content-security-policy"].to_str().expect("csp");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["referrer-policy"], "same-origin");
    assert_eq!(h["x-content-type-options"], "nosniff");
    let html = res.text().await.expect("html");
    assert!(
        !html.contains("<script>") && !html.contains("onclick"),
        "inline script: {html}"
    );
    // The REST API and its JSON 404 are as before.
    let res = c.get(w.url("/api/sessions")).send().await.expect("api");
    assert_eq!(res.status(), 401);
    let res = c.get(w.url("/nope")).send().await.expect("404");
    assert_eq!(res.status(), 404);
    assert_eq!(
        res.json::<serde_json::Value>().await.expect("json")["error"]["code"],
        "not_found"
    );
    // Assets are compiled in, compressed and cacheable.
    let res = c
        .get(w.url("/login"))
        .send()
        .await
        .expect("login")
        .text()
        .await
        .expect("html");
    let at = res.find("/assets/").expect("asset link");
    let css = &res[at..res[at..].find('"').map_or(res.len(), |e| at + e)];
    let res = c
        .get(w.url(css))
        .header("accept-encoding", "gzip")
        .send()
        .await
        .expect("css");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-encoding"], "gzip");
    assert!(
        res.headers()["cache-control"]
            .to_str()
            .expect("cc")
            .contains("immutable")
    );
}

#[tokio::test]
async fn login_gives_a_strict_cookie_and_logout_or_revoking_ends_it() {
    let w = World::bot_only().await;
    let res = login(&w, &w.user_token, &[]).await;
    assert_eq!(res.status(), 303);
    let location = res.headers()["location"].to_str().expect("loc").to_owned();
    assert_eq!(location, "/sessions/x");
    let set = res.headers()["set-cookie"]
        .to_str()
        .expect("cookie")
        .to_owned();
    for part in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=604800"] {
        assert!(set.contains(part), "{set}");
    }
    assert!(!set.contains("Secure"), "plain http gets no Secure: {set}");
    assert!(!set.contains(&w.user_token) && !location.contains(&w.user_token));
    let cookie = cookie_of(&res);
    // Behind an https proxy the cookie is Secure.
    let res = login(&w, &w.user_token, &[("x-forwarded-proto", "https")]).await;
    assert!(
        res.headers()["set-cookie"]
            .to_str()
            .expect("c")
            .contains("; Secure")
    );

    let page = client()
        .get(w.url("/"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("page");
    assert_eq!(page.status(), 200);
    assert!(page.text().await.expect("html").contains("alice"));

    // Logout ends it.
    let csrf = csrf_of(&w, &cookie).await;
    let res = client()
        .post(w.url("/logout"))
        .headers(same_origin(&w))
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .expect("logout");
    assert_eq!(res.status(), 303);
    assert!(
        res.headers()["set-cookie"]
            .to_str()
            .expect("c")
            .contains("Max-Age=0")
    );
    let res = client()
        .get(w.url("/partials/pending"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("after logout");
    assert_eq!(res.status(), 401);

    // Revoking the token ends its logins too.
    let cookie = cookie_of(&login(&w, &w.user_token, &[]).await);
    let db = w.db().await;
    let keys = db.list_keys().await.expect("keys");
    let alice = keys
        .iter()
        .find(|k| k.name == "alice" && k.kind == KeyKind::User)
        .expect("alice");
    db.revoke_key(&alice.id.to_string(), 2)
        .await
        .expect("revoke");
    db.close().await;
    let res = client()
        .get(w.url("/partials/pending"))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("after revoke");
    assert_eq!(res.status(), 401);
    w.wait_audit("dashboard:alice", "web.login", 3).await;
    w.wait_audit("dashboard:alice", "web.logout", 1).await;
}

#[tokio::test]
async fn changes_need_this_origin_and_the_login_token() {
    let w = World::bot_only().await;
    let cookie = cookie_of(&login(&w, &w.user_token, &[]).await);
    let csrf = csrf_of(&w, &cookie).await;
    let target = w.url("/sessions/00000000-0000-4000-8000-000000000000/control/stop");
    let post = |origin: Option<&str>, site: Option<&str>, token: Option<&str>| {
        let mut req = client().post(&target).header("cookie", &cookie);
        if let Some(o) = origin {
            req = req.header("origin", o);
        }
        if let Some(s) = site {
            req = req.header("sec-fetch-site", s);
        }
        let form: Vec<(&str, &str)> = token.map(|t| vec![("csrf", t)]).unwrap_or_default();
        req.form(&form).send()
    };
    let ours = format!("http://{}", w.addr);
    // Another origin (another port of the same host is same-site, not same-origin).
    let res = post(Some("http://127.0.0.1:1"), None, Some(&csrf))
        .await
        .expect("post");
    assert_eq!(res.status(), 403);
    assert!(
        res.text()
            .await
            .expect("html")
            .contains("did not come from a dashboard page")
    );
    let res = post(Some(&ours), Some("same-site"), Some(&csrf))
        .await
        .expect("post");
    assert_eq!(res.status(), 403);
    // This origin without the login's token, or with a wrong one.
    let res = post(Some(&ours), Some("same-origin"), None)
        .await
        .expect("post");
    assert_eq!(res.status(), 403);
    let res = post(Some(&ours), None, Some("0".repeat(64).as_str()))
        .await
        .expect("post");
    assert_eq!(res.status(), 403);
    // With both, the request is carried out (here: the session does not exist).
    let res = post(Some(&ours), Some("same-origin"), Some(&csrf))
        .await
        .expect("post");
    assert_eq!(res.status(), 404);
    assert!(
        res.text()
            .await
            .expect("html")
            .contains("There is no session")
    );
    // The script's form of the same: JSON errors.
    let res = client()
        .post(&target)
        .header("cookie", &cookie)
        .header("origin", &ours)
        .header("x-csrf-token", &csrf)
        .header("x-requested-with", "fetch")
        .form(&[("x", "y")])
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), 404);
    let v: serde_json::Value = res.json().await.expect("json");
    assert_eq!(v["error"]["code"], "not_found");
    w.wait_audit("dashboard:127.0.0.1", "web.refused", 2).await;
    w.wait_audit("dashboard:alice", "web.refused", 2).await;
}

#[tokio::test]
async fn failed_logins_are_limited_per_address_and_audited() {
    let w = World::bot_only_with(&[("CCRM_BOT_WEB_LOGIN_ATTEMPTS_PER_MINUTE", "3")]).await;
    for _ in 0..3 {
        let res = login(&w, "ccrm_user_guess", &[]).await;
        assert_eq!(res.status(), 401);
        assert!(res.headers().get("set-cookie").is_none());
    }
    // Over the limit even the right token waits.
    let res = login(&w, &w.user_token, &[]).await;
    assert_eq!(res.status(), 429);
    assert!(
        res.text()
            .await
            .expect("html")
            .contains("Too many login attempts")
    );
    w.wait_audit("dashboard:127.0.0.1", "web.login_failed", 3)
        .await;
    w.wait_audit("dashboard:127.0.0.1", "web.login_limited", 1)
        .await;
    assert!(
        !w.bot_log_text().contains(&w.user_token),
        "a token was logged"
    );
}
