//! Real headless Chromium for the dashboard tests and bench: Debian's `chromium` driven by
//! its `chromedriver` over WebDriver with `fantoccini` (plain HTTP to loopback). Every
//! wait is bounded. Chromium's performance log is on, so a test can list every URL the
//! browser requested.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::OnceLock;
use std::time::Duration;

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tempfile::TempDir;

/// Bound for any one thing a browser test waits for.
pub const BROWSER_WAIT: Duration = Duration::from_secs(60);

/// The desktop and phone sizes of the screenshots.
pub const SIZES: [(u32, u32, &str); 2] = [(1280, 800, "desktop"), (390, 844, "phone")];

/// Whether Chromium and chromedriver are there, installing them (Debian, as root) once if
/// not. `false` only when they are missing and cannot be installed.
pub fn chromium_available() -> bool {
    static OK: OnceLock<bool> = OnceLock::new();
    *OK.get_or_init(|| {
        if have_chromium() {
            return true;
        }
        eprintln!("chromium/chromedriver missing; trying apt-get install chromium chromium-driver");
        let installed = Command::new("apt-get")
            .args(["install", "-y", "-qq", "chromium", "chromium-driver"])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success());
        installed && have_chromium()
    })
}

fn have_chromium() -> bool {
    Path::new("/usr/bin/chromedriver").exists() && chromium_bin().exists()
}

/// The Chromium binary itself (Debian's `/usr/bin/chromium` is a shell wrapper).
fn chromium_bin() -> PathBuf {
    let real = PathBuf::from("/usr/lib/chromium/chromium");
    if real.exists() {
        real
    } else {
        PathBuf::from("/usr/bin/chromium")
    }
}

/// Prints why a browser test did nothing; loudly, since CI installs Chromium.
pub fn skip_loudly(test: &str) {
    eprintln!(
        "\n!!!!!!!!!!\n!!! SKIPPED {test}: Chromium and chromedriver are missing and could \
         not be installed (scripts/test.sh installs them: apt-get install chromium \
         chromium-driver)\n!!!!!!!!!!\n"
    );
}

/// One chromedriver with one headless Chromium session.
pub struct Browser {
    pub client: Client,
    driver: Option<Child>,
    _profile: TempDir,
}

/// `POST /session/{id}/se/log`: chromedriver's log endpoint.
#[derive(Debug)]
struct GetLog(&'static str);

impl WebDriverCompatibleCommand for GetLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _: &url::Url) -> (axum::http::Method, Option<String>) {
        (
            axum::http::Method::POST,
            Some(json!({"type": self.0}).to_string()),
        )
    }
}

impl Browser {
    /// Starts chromedriver on a free port and a fresh headless Chromium profile.
    pub async fn start() -> Self {
        let mut cmd = Command::new("/usr/bin/chromedriver");
        cmd.arg("--port=0");
        let (driver, line) = spawn_driver(cmd);
        let port: u16 = line
            .rsplit("port ")
            .next()
            .and_then(|p| p.trim().trim_end_matches('.').parse().ok())
            .unwrap_or_else(|| panic!("no port in {line}"));
        let profile = tempfile::tempdir().expect("profile dir");
        let caps = json!({
            "browserName": "chrome",
            "goog:loggingPrefs": {"performance": "ALL", "browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium_bin(),
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--no-default-browser-check",
                    "--disable-extensions", "--mute-audio", "--password-store=basic",
                    "--window-size=1280,800",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
                "perfLoggingPrefs": {"enableNetwork": true, "enablePage": false},
            },
        });
        let caps = caps.as_object().cloned().unwrap_or_default();
        let client = tokio::time::timeout(
            BROWSER_WAIT,
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
                .capabilities(caps)
                .connect(&format!("http://127.0.0.1:{port}")),
        )
        .await
        .expect("chromium did not start in time")
        .expect("webdriver session");
        Self {
            client,
            driver: Some(driver),
            _profile: profile,
        }
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) {
        bounded("goto", self.client.goto(url)).await;
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        bounded("url", self.client.current_url()).await.to_string()
    }

    /// Runs `script` (a function body; `arguments` are `args`) and returns its result.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> Value {
        bounded("execute", self.client.execute(script, args)).await
    }

    /// Polls (bounded) until `script` returns a truthy value; returns it.
    pub async fn wait_js(&self, what: &str, script: &str) -> Value {
        let deadline = tokio::time::Instant::now() + BROWSER_WAIT;
        loop {
            let v = self.js(script, vec![]).await;
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return v;
            }
            if tokio::time::Instant::now() > deadline {
                let text = self
                    .js(
                        "return document.body ? document.body.innerText : ''",
                        vec![],
                    )
                    .await;
                let url = self.url().await;
                panic!("timed out waiting for {what} on {url}; page text:\n{text}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits (bounded) until an element matching `css` exists and returns it. The page may
    /// re-render between the check and the lookup (live updates replace nodes): then it
    /// looks again, within the same bound.
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        let deadline = tokio::time::Instant::now() + BROWSER_WAIT;
        let script = format!("return !!document.querySelector({})", json!(css));
        loop {
            self.wait_js(css, &script).await;
            match tokio::time::timeout(BROWSER_WAIT, self.client.find(Locator::Css(css))).await {
                Ok(Ok(el)) => return el,
                Ok(Err(e)) if e.is_no_such_element() && tokio::time::Instant::now() < deadline => {}
                Ok(Err(e)) => panic!("find {css} failed: {e:?}"),
                Err(_) => panic!("find {css} timed out"),
            }
        }
    }

    /// Runs `act` on the first element matching `css`, finding it again (bounded) when
    /// the page replaced it in between (a stale element).
    async fn on_element<F, Fut>(&self, what: &str, css: &str, act: F)
    where
        F: Fn(fantoccini::elements::Element) -> Fut,
        Fut: std::future::Future<Output = Result<(), fantoccini::error::CmdError>>,
    {
        let deadline = tokio::time::Instant::now() + BROWSER_WAIT;
        loop {
            let el = self.find(css).await;
            match tokio::time::timeout(BROWSER_WAIT, act(el)).await {
                Ok(Ok(())) => return,
                Ok(Err(e))
                    if e.is_stale_element_reference() && tokio::time::Instant::now() < deadline => {
                }
                Ok(Err(e)) => panic!("{what} {css} failed: {e:?}"),
                Err(_) => panic!("{what} {css} timed out"),
            }
        }
    }

    /// Waits (bounded) until the text of the first `css` element contains `needle`.
    pub async fn wait_text(&self, css: &str, needle: &str) -> String {
        let script = format!(
            "const n = [...document.querySelectorAll({})].find(e => e.textContent.includes({})); \
             return n ? n.textContent : null;",
            json!(css),
            json!(needle)
        );
        self.wait_js(&format!("`{needle}` in {css}"), &script)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// Logs in at `base` with `token` through the login form.
    pub async fn login(&self, base: &str, token: &str) {
        self.goto(&format!("{base}/login")).await;
        let input = self.find("#token").await;
        bounded("type token", input.send_keys(token)).await;
        let button = self.find("form.login button[type=submit]").await;
        bounded("submit", button.click()).await;
        self.wait_js(
            "the overview after login",
            "return location.pathname === '/' && !!document.getElementById('overview')",
        )
        .await;
    }

    /// Clicks the first element matching `css`.
    pub async fn click(&self, css: &str) {
        self.on_element("click", css, |el| async move { el.click().await })
            .await;
    }

    /// Types `text` into the first element matching `css`.
    pub async fn type_into(&self, css: &str, text: &str) {
        self.on_element(
            "type into",
            css,
            |el| async move { el.send_keys(text).await },
        )
        .await;
    }

    /// Saves PNG screenshots of the current page at the desktop and phone sizes under
    /// `target/dashboard-screenshots/<name>-<size>.png`, then restores the desktop size.
    pub async fn screenshots(&self, name: &str) {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("screenshot dir");
        for (w, h, label) in SIZES {
            bounded("resize", self.client.set_window_size(w, h)).await;
            // Let layout settle at the new size (a frame), then capture.
            self.js(
                "return await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => r(true))))",
                vec![],
            )
            .await;
            let png = bounded("screenshot", self.client.screenshot()).await;
            assert!(png.starts_with(b"\x89PNG"), "not a PNG");
            let path = dir.join(format!("{name}-{label}.png"));
            std::fs::write(&path, png).expect("write screenshot");
            eprintln!("screenshot: {}", path.display());
        }
        bounded("resize", self.client.set_window_size(1280, 800)).await;
    }

    /// Every URL the browser requested so far, from Chromium's performance log
    /// (`Network.requestWillBeSent`, WebSocket and EventSource requests included).
    pub async fn requested_urls(&self) -> Vec<String> {
        let entries = bounded("log", self.client.issue_cmd(GetLog("performance"))).await;
        let mut urls = Vec::new();
        for entry in entries.as_array().into_iter().flatten() {
            let Some(msg) = entry["message"]
                .as_str()
                .and_then(|m| serde_json::from_str::<Value>(m).ok())
            else {
                continue;
            };
            let method = msg["message"]["method"].as_str().unwrap_or_default();
            let params = &msg["message"]["params"];
            let url = match method {
                "Network.requestWillBeSent" => params["request"]["url"].as_str(),
                "Network.webSocketCreated" => params["url"].as_str(),
                _ => None,
            };
            if let Some(u) = url {
                urls.push(u.to_owned());
            }
            if let Some(doc) = params["documentURL"].as_str() {
                urls.push(doc.to_owned());
            }
        }
        urls
    }

    /// Ends the browser session and chromedriver.
    pub async fn close(mut self) {
        let client = self.client.clone();
        let _ = tokio::time::timeout(Duration::from_secs(20), client.close()).await;
        self.stop_driver();
    }

    fn stop_driver(&mut self) {
        if let Some(mut d) = self.driver.take() {
            // SIGTERM: chromedriver quits the Chromium it started.
            testkit::process::stop(&mut d, Duration::from_secs(10));
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.stop_driver();
    }
}

fn spawn_driver(cmd: Command) -> (Child, String) {
    // chromedriver prints its "started successfully on port N" line on stdout.
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let mut cmd = cmd;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn chromedriver");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(t) = &tx
                && line.contains("started successfully on port")
            {
                let _ = t.send(line);
                tx = None;
            }
        }
    });
    match rx.recv_timeout(BROWSER_WAIT) {
        Ok(line) => (child, line),
        Err(_) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromedriver did not start");
        }
    }
}

/// `target/dashboard-screenshots` of this workspace.
pub fn screenshot_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("target")
        .join("dashboard-screenshots")
}

/// Awaits a WebDriver call, bounded, and fails the test with what it was on error.
pub async fn bounded<T, E: std::fmt::Debug>(
    what: &str,
    fut: impl std::future::Future<Output = Result<T, E>>,
) -> T {
    match tokio::time::timeout(BROWSER_WAIT, fut).await {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => panic!("{what} failed: {e:?}"),
        Err(_) => panic!("{what} timed out"),
    }
}
