//! A private Postgres cluster started from the system's Postgres binaries (initdb/pg_ctl), for
//! `orgtrail dev` and the test harness. As root, the server runs as the `postgres` system user,
//! because Postgres refuses to run as root.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

const INSTALL_HINT: &str = "install PostgreSQL server binaries (Debian/Ubuntu: apt-get install -y postgresql), \
     or point ORGTRAIL_PG_BIN at the directory holding initdb and pg_ctl";

/// The system user the server runs as when we are root.
const SYSTEM_USER: &str = "postgres";

/// Finds the directory holding `initdb` and `pg_ctl`: `ORGTRAIL_PG_BIN`, then the newest
/// `/usr/lib/postgresql/*/bin`, then `PATH`.
pub fn find_binaries() -> anyhow::Result<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    if let Some(dir) = std::env::var_os("ORGTRAIL_PG_BIN").map(PathBuf::from) {
        if has_tools(&dir) {
            return Ok(dir);
        }
        bail!("ORGTRAIL_PG_BIN={} does not contain initdb and pg_ctl: {INSTALL_HINT}", dir.display());
    }
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_tools(dir))
        .collect();
    versioned.sort();
    if let Some((_, dir)) = versioned.pop() {
        return Ok(dir);
    }
    for dir in std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default()) {
        if has_tools(&dir) {
            return Ok(dir);
        }
    }
    bail!("PostgreSQL server binaries (initdb, pg_ctl) not found: {INSTALL_HINT}")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Where the cluster of a dev data directory lives: `DATA_DIR/postgres`, unless we are root and
/// the `postgres` system user cannot enter `DATA_DIR` (e.g. it is under /root); then a fixed
/// directory under /var/lib/orgtrail derived from `DATA_DIR`, so restarts find it again.
pub fn cluster_dir_for(data_dir: &Path) -> PathBuf {
    let wanted = data_dir.join("postgres");
    if !is_root() || system_user_can_enter(data_dir) {
        return wanted;
    }
    let digest =
        aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, data_dir.as_os_str().as_encoded_bytes());
    PathBuf::from("/var/lib/orgtrail").join(format!("postgres-{}", &hex::encode(digest.as_ref())[..16]))
}

fn system_user_can_enter(dir: &Path) -> bool {
    Command::new("runuser")
        .args(["-u", SYSTEM_USER, "--", "test", "-x"])
        .arg(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// A running cluster; stopped on [`EmbeddedPostgres::stop`] or drop.
pub struct EmbeddedPostgres {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    port: u16,
    password: String,
    stopped: bool,
}

/// How the cluster trades durability for speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Postgres defaults (fsync on): state survives a machine crash.
    Durable,
    /// fsync and synchronous_commit off: for throwaway test clusters.
    Throwaway,
}

impl EmbeddedPostgres {
    /// Initializes `data_dir` if it is empty, then starts the server on 127.0.0.1:`port` (0: a
    /// free port). `password` protects the `postgres` superuser (scram-sha-256).
    pub fn start(data_dir: &Path, port: u16, password: &str, durability: Durability) -> anyhow::Result<Self> {
        let bin_dir = find_binaries()?;
        std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
        let data_dir = data_dir.canonicalize()?;
        let port = if port == 0 { free_port()? } else { port };
        let mut pg = Self { bin_dir, data_dir, port, password: password.to_owned(), stopped: true };
        if is_root() {
            pg.hand_to_system_user()?;
        }
        if !pg.data_dir.join("PG_VERSION").exists() {
            pg.initdb()?;
        }
        pg.pg_ctl_start(durability)?;
        pg.stopped = false;
        Ok(pg)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connection URL for `database` as the superuser.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres:{}@127.0.0.1:{}/{database}", self.password, self.port)
    }

    fn command(&self, tool: &str) -> Command {
        let path = self.bin_dir.join(tool);
        if is_root() {
            let mut command = Command::new("runuser");
            command.arg("-u").arg(SYSTEM_USER).arg("--").arg(path);
            command
        } else {
            Command::new(path)
        }
    }

    fn hand_to_system_user(&self) -> anyhow::Result<()> {
        let status =
            Command::new("chown").arg("-R").arg(format!("{SYSTEM_USER}:")).arg(&self.data_dir).status()?;
        if !status.success() {
            bail!(
                "cannot hand {} to the {SYSTEM_USER} system user (does the user exist? {INSTALL_HINT})",
                self.data_dir.display()
            );
        }
        if !system_user_can_enter(&self.data_dir) {
            bail!(
                "the {SYSTEM_USER} system user cannot reach {} (a parent directory is private); \
                 choose a data directory under a world-traversable path such as /var/tmp",
                self.data_dir.display()
            );
        }
        Ok(())
    }

    fn initdb(&self) -> anyhow::Result<()> {
        let password_file = self.data_dir.with_extension("pwfile");
        std::fs::write(&password_file, &self.password)?;
        if is_root() {
            Command::new("chown").arg(format!("{SYSTEM_USER}:")).arg(&password_file).status()?;
        }
        let output = self
            .command("initdb")
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-U", "postgres", "-E", "UTF8", "--auth=scram-sha-256", "--no-sync"])
            .arg(format!("--pwfile={}", password_file.display()))
            .output()
            .context("cannot run initdb")?;
        let _ = std::fs::remove_file(&password_file);
        if !output.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
        Ok(())
    }

    fn pg_ctl_start(&self, durability: Durability) -> anyhow::Result<()> {
        let mut options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories='' -c max_connections=200",
            self.port
        );
        if durability == Durability::Throwaway {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let log = self.data_dir.join("server.log");
        let output = self
            .command("pg_ctl")
            .arg("-D")
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&log)
            .arg("-o")
            .arg(options)
            .args(["-w", "-t", "60", "start"])
            .output()
            .context("cannot run pg_ctl")?;
        if !output.status.success() {
            let tail = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = tail.lines().rev().take(5).collect();
            bail!(
                "postgres did not start (is another orgtrail using {}?): {} {}",
                self.data_dir.display(),
                String::from_utf8_lossy(&output.stderr).trim(),
                tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
            );
        }
        Ok(())
    }

    /// Stops the server (fast shutdown: open transactions are rolled back).
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        let result =
            self.command("pg_ctl").arg("-D").arg(&self.data_dir).args(["-m", "fast", "-w", "stop"]).output();
        match result {
            Ok(output) if output.status.success() => tracing::info!("postgres stopped"),
            Ok(output) => {
                tracing::warn!(stderr = %String::from_utf8_lossy(&output.stderr), "pg_ctl stop failed")
            }
            Err(error) => tracing::warn!(%error, "cannot run pg_ctl stop"),
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Creates `database` unless it exists.
pub async fn ensure_database(admin_url: &str, database: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(admin_url).await?;
    let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(database)
        .fetch_one(&mut conn)
        .await?;
    if !exists {
        sqlx::query(&format!("CREATE DATABASE \"{database}\"")).execute(&mut conn).await?;
    }
    Ok(())
}
