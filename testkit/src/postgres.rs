//! A throwaway PostgreSQL cluster for tests: `initdb` into a temporary directory owned by
//! the `postgres` user (PostgreSQL refuses to run as root), a server listening only on a
//! Unix socket in that directory, dropped (fast shutdown, then SIGKILL) with the value.
//!
//! Debian's binaries are found under `/usr/lib/postgresql/<version>/bin/` (the newest
//! version wins); `scripts/test.sh` installs the `postgresql` package when it is missing.
//! The server takes a random port number, which on a socket-only server is just the
//! socket's name (`.s.PGSQL.<port>`) inside a directory of its own, so two clusters never
//! collide; a start that fails anyway is retried on another number. Every wait is bounded.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, bail};

/// How long `initdb` and the server's start may take on a loaded machine.
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a fast shutdown may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(20);

/// One running throwaway cluster.
pub struct PgCluster {
    dir: tempfile::TempDir,
    port: u16,
    server: Option<Child>,
    uid: u32,
    gid: u32,
    bin: PathBuf,
}

impl std::fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgCluster")
            .field("dir", &self.dir.path())
            .field("port", &self.port)
            .finish()
    }
}

/// The directory of Debian's PostgreSQL binaries (newest version), if installed.
pub fn pg_bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The uid and gid of the `postgres` user, from `/etc/passwd`.
fn postgres_user() -> anyhow::Result<(u32, u32)> {
    let passwd = std::fs::read_to_string("/etc/passwd").context("reading /etc/passwd")?;
    for line in passwd.lines() {
        let f: Vec<&str> = line.split(':').collect();
        if f.first() == Some(&"postgres") && f.len() > 3 {
            return Ok((f[2].parse()?, f[3].parse()?));
        }
    }
    bail!("no `postgres` user: install Debian's postgresql package (scripts/test.sh does)")
}

impl PgCluster {
    /// Creates and starts a cluster. Fails with a message naming what is missing.
    pub fn start() -> anyhow::Result<Self> {
        let bin = pg_bin_dir().context(
            "PostgreSQL is not installed under /usr/lib/postgresql: apt-get install postgresql",
        )?;
        let (uid, gid) = postgres_user()?;
        let dir = tempfile::Builder::new().prefix("ccrm-pg-").tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))?;
        let data = dir.path().join("data");
        let out = Command::new(bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"])
            .args(["--locale", "C.UTF-8"])
            .uid(uid)
            .gid(gid)
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .env("LC_ALL", "C.UTF-8")
            .stdin(Stdio::null())
            .output()
            .context("running initdb")?;
        if !out.status.success() {
            bail!(
                "initdb failed: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let mut cluster = Self {
            dir,
            port: 0,
            server: None,
            uid,
            gid,
            bin,
        };
        let mut last = String::new();
        for _ in 0..5 {
            let port = 20_000 + (uuid::Uuid::new_v4().as_u128() % 40_000) as u16;
            match cluster.spawn(port) {
                Ok(child) => {
                    cluster.port = port;
                    cluster.server = Some(child);
                    return Ok(cluster);
                }
                Err(e) => last = e,
            }
        }
        bail!("the PostgreSQL server did not start: {last}")
    }

    fn spawn(&self, port: u16) -> Result<Child, String> {
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(self.dir.path().join("data"))
            .arg("-k")
            .arg(self.dir.path())
            .args(["-p", &port.to_string()])
            // Socket only; a throwaway cluster needs no durability.
            .args(["-c", "listen_addresses="])
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=300"])
            .args(["-c", "shared_buffers=32MB"])
            .uid(self.uid)
            .gid(self.gid)
            .current_dir(self.dir.path())
            .env_clear()
            .env("LC_ALL", "C.UTF-8");
        let (child, _) = crate::process::spawn_ready(
            cmd,
            "ready to accept connections",
            "postgres",
            START_TIMEOUT,
            None,
        )?;
        Ok(child)
    }

    /// The URL of database `db` on this cluster (user `postgres`, trust auth, over the
    /// socket).
    pub fn url(&self, db: &str) -> String {
        format!(
            "postgres://postgres@localhost/{db}?host={}&port={}",
            self.dir.path().display(),
            self.port
        )
    }

    /// Creates database `name` (with `createdb`, bounded) and returns its URL.
    pub fn create_db(&self, name: &str) -> anyhow::Result<String> {
        let mut child = Command::new(self.bin.join("createdb"))
            .args(["-h"])
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-U", "postgres", name])
            .env_clear()
            .stdin(Stdio::null())
            .spawn()
            .context("running createdb")?;
        let status = wait_bounded(&mut child, START_TIMEOUT)?;
        if !status.success() {
            bail!("createdb {name} failed: {status}");
        }
        Ok(self.url(name))
    }

    /// The cluster's directory (data and socket).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.server.as_ref().map(Child::id)
    }
}

/// Waits for `child` at most `timeout`, killing it after that.
fn wait_bounded(child: &mut Child, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("timed out after {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        let Some(mut child) = self.server.take() else {
            return;
        };
        // SIGINT is PostgreSQL's fast shutdown: clients are disconnected, nothing waits.
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        if wait_bounded(&mut child, STOP_TIMEOUT).is_err() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
