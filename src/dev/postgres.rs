//! A private Postgres cluster started from the system's Postgres binaries, for `orgtrail dev`, the
//! benchmarks and the test harness. As root, the server runs as the `postgres` system user,
//! because Postgres refuses to run as root.
//!
//! The postmaster is our child, watched by a keeper thread: it dies with us (the kernel sends it
//! SIGINT, a fast shutdown, when the keeper thread ends, even under kill -9), and the keeper starts
//! it again when it dies on its own. A lock file beside the cluster says whether another orgtrail
//! uses it; holding the lock, a postmaster still running from an earlier process is an orphan and
//! is stopped before ours starts, so a start after any crash needs no manual step.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

const INSTALL_HINT: &str = "install PostgreSQL server binaries (Debian/Ubuntu: apt-get install -y postgresql), \
     or point ORGTRAIL_PG_BIN at the directory holding initdb and pg_ctl";

/// The system user the server runs as when we are root.
const SYSTEM_USER: &str = "postgres";

/// How long a start may take before we give up (crash recovery of a big WAL included).
const START_TIMEOUT: Duration = Duration::from_secs(120);

/// A fast shutdown that takes longer than this becomes an immediate one (crash recovery on the
/// next start, nothing lost).
const FAST_SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Finds the directory holding `initdb` and `postgres`: `ORGTRAIL_PG_BIN`, then the newest
/// `/usr/lib/postgresql/*/bin`, then `PATH`.
pub fn find_binaries() -> anyhow::Result<PathBuf> {
    let has_tools = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("ORGTRAIL_PG_BIN").map(PathBuf::from) {
        if has_tools(&dir) {
            return Ok(dir);
        }
        bail!("ORGTRAIL_PG_BIN={} does not contain initdb and postgres: {INSTALL_HINT}", dir.display());
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
    bail!("PostgreSQL server binaries (initdb, postgres) not found: {INSTALL_HINT}")
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// The uid and gid of the system user, when we are root.
fn system_user() -> anyhow::Result<Option<(u32, u32)>> {
    if !is_root() {
        return Ok(None);
    }
    let name = std::ffi::CString::new(SYSTEM_USER)?;
    // SAFETY: getpwnam returns NULL or a pointer to a static record we read at once.
    let entry = unsafe { libc::getpwnam(name.as_ptr()) };
    if entry.is_null() {
        bail!("the {SYSTEM_USER} system user does not exist ({INSTALL_HINT})");
    }
    // SAFETY: non-null, as checked.
    let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
    Ok(Some((uid, gid)))
}

/// A command run as the system user when we are root.
fn as_system_user(mut command: Command) -> anyhow::Result<Command> {
    if let Some((uid, gid)) = system_user()? {
        command.uid(uid).gid(gid);
    }
    Ok(command)
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
    let Ok(mut command) = as_system_user(Command::new("test")) else { return false };
    command.arg("-x").arg(dir).status().map(|s| s.success()).unwrap_or(false)
}

/// How the cluster trades durability for speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Postgres defaults (fsync on): state survives a machine crash.
    Durable,
    /// fsync and synchronous_commit off: for throwaway test clusters.
    Throwaway,
}

/// What the keeper thread and the owner share.
#[derive(Default)]
struct KeeperState {
    /// Set by [`EmbeddedPostgres::stop`]: the next exit is wanted.
    stopping: bool,
    /// The running postmaster.
    pid: Option<u32>,
    /// The keeper has ended (the postmaster is gone for good).
    ended: bool,
    /// Why the first start failed.
    failed: Option<String>,
    /// The server accepted connections at least once (later exits are crashes to recover from).
    ever_ready: bool,
    /// Times the postmaster died unasked and was started again.
    restarts: u64,
}

struct Keeper {
    state: Mutex<KeeperState>,
    changed: Condvar,
}

impl Keeper {
    fn lock(&self) -> std::sync::MutexGuard<'_, KeeperState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn update(&self, change: impl FnOnce(&mut KeeperState)) {
        change(&mut self.lock());
        self.changed.notify_all();
    }

    /// Sleeps for `pause`, or less when a stop is asked for.
    fn pause(&self, pause: Duration) {
        let deadline = Instant::now() + pause;
        let mut state = self.lock();
        while !state.stopping {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return;
            }
            state = match self.changed.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

/// Everything needed to (re)start the postmaster.
#[derive(Clone)]
struct Server {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    port: u16,
    durability: Durability,
}

impl Server {
    fn log_path(&self) -> PathBuf {
        self.data_dir.join("server.log")
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let tail: Vec<&str> = text.lines().rev().take(5).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    }

    /// Spawns the postmaster; it gets SIGINT when the calling thread ends.
    fn spawn(&self) -> anyhow::Result<Child> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .with_context(|| format!("cannot open {}", self.log_path().display()))?;
        let mut command = as_system_user(Command::new(self.bin_dir.join("postgres")))?;
        command
            .arg("-D")
            .arg(&self.data_dir)
            .args(["-c", "listen_addresses=127.0.0.1", "-p", &self.port.to_string()])
            .args(["-c", "unix_socket_directories=", "-c", "max_connections=200"])
            .current_dir(&self.data_dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group: a terminal's Ctrl-C reaches orgtrail, which stops it in order.
            .process_group(0);
        if self.durability == Durability::Throwaway {
            command.args(["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]);
        } else {
            // Durable as ever (fsync, full-page writes, synchronous commit), with checkpoints
            // spaced for a write-heavy load: after each checkpoint the first change of every page
            // writes the whole page to the WAL, and the event history's indexes change pages all
            // over (one insertion point per account and name). With the defaults (1 GB, 5 min)
            // those full-page images were most of the WAL at organization scale.
            command.args(["-c", "max_wal_size=4GB", "-c", "checkpoint_timeout=15min"]);
            command.args(["-c", "wal_compression=on", "-c", "shared_buffers=256MB"]);
        }
        // SAFETY: getpid has no preconditions.
        let parent = unsafe { libc::getpid() };
        // SAFETY: prctl, getppid and raise are async-signal-safe, as a pre_exec hook requires.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before the request above took effect.
                if libc::getppid() != parent {
                    libc::raise(libc::SIGINT);
                }
                Ok(())
            });
        }
        command.spawn().context("cannot run postgres")
    }

    /// Whether the postmaster `pid` says it accepts connections (its lock file's status line).
    fn ready(&self, pid: u32) -> bool {
        let Ok(text) = std::fs::read_to_string(self.data_dir.join("postmaster.pid")) else { return false };
        let lines: Vec<&str> = text.lines().collect();
        lines.first().and_then(|l| l.trim().parse::<u32>().ok()) == Some(pid)
            && lines.get(7).is_some_and(|status| status.trim() == "ready")
    }
}

/// A running cluster; stopped on [`EmbeddedPostgres::stop`] or drop.
pub struct EmbeddedPostgres {
    server: Server,
    password: String,
    keeper: Arc<Keeper>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Held while the cluster is ours.
    _lock: File,
}

impl EmbeddedPostgres {
    /// Initializes `data_dir` if it is empty, then starts the server on 127.0.0.1:`port` (0: a
    /// free port). `password` protects the `postgres` superuser (scram-sha-256).
    pub fn start(data_dir: &Path, port: u16, password: &str, durability: Durability) -> anyhow::Result<Self> {
        let bin_dir = find_binaries()?;
        std::fs::create_dir_all(data_dir).with_context(|| format!("cannot create {}", data_dir.display()))?;
        let data_dir = data_dir.canonicalize()?;
        let lock = take_lock(&data_dir)?;
        stop_orphan(&data_dir)?;
        let port = if port == 0 { free_port()? } else { port };
        if is_root() {
            hand_to_system_user(&data_dir)?;
        }
        if !data_dir.join("PG_VERSION").exists() {
            initdb(&bin_dir, &data_dir, password)?;
        }
        let server = Server { bin_dir, data_dir, port, durability };
        let keeper = Arc::new(Keeper { state: Mutex::new(KeeperState::default()), changed: Condvar::new() });
        let thread = {
            let server = server.clone();
            let keeper = keeper.clone();
            std::thread::Builder::new()
                .name("postgres-keeper".into())
                .spawn(move || keep(server, keeper))
                .context("cannot start the postgres keeper thread")?
        };
        let mut pg =
            Self { server, password: password.to_owned(), keeper, thread: Some(thread), _lock: lock };
        pg.wait_ready()?;
        Ok(pg)
    }

    /// Waits for the first start to accept connections.
    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let state = self.keeper.lock();
            if let Some(why) = &state.failed {
                let why = why.clone();
                drop(state);
                self.join();
                bail!("postgres did not start in {}: {why}", self.server.data_dir.display());
            }
            if let Some(pid) = state.pid
                && self.server.ready(pid)
            {
                drop(state);
                self.keeper.update(|s| s.ever_ready = true);
                return Ok(());
            }
            if Instant::now() > deadline {
                drop(state);
                self.stop();
                bail!(
                    "postgres did not accept connections within {START_TIMEOUT:?}: {}",
                    self.server.log_tail()
                );
            }
            let _ = self.keeper.changed.wait_timeout(state, Duration::from_millis(50));
        }
    }

    pub fn port(&self) -> u16 {
        self.server.port
    }

    /// Times the server died unasked and was started again.
    pub fn restarts(&self) -> u64 {
        self.keeper.lock().restarts
    }

    /// Connection URL for `database` as the superuser.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres:{}@127.0.0.1:{}/{database}", self.password, self.server.port)
    }

    /// Stops the server: a fast shutdown (open transactions roll back), immediate when it takes
    /// longer than a few seconds. Returns once the postmaster is gone.
    pub fn stop(&mut self) {
        let pid = {
            let mut state = self.keeper.lock();
            state.stopping = true;
            state.pid
        };
        self.keeper.changed.notify_all();
        if let Some(pid) = pid {
            signal(pid, libc::SIGINT);
            if !self.wait_ended(FAST_SHUTDOWN_GRACE) {
                tracing::warn!("postgres is slow to shut down; stopping it at once");
                signal(pid, libc::SIGQUIT);
                if !self.wait_ended(Duration::from_secs(5)) {
                    signal(pid, libc::SIGKILL);
                }
            }
        }
        self.join();
    }

    fn wait_ended(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let mut state = self.keeper.lock();
        while !state.ended {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = match self.keeper.changed.wait_timeout(state, left) {
                Ok((state, _)) => state,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
        true
    }

    fn join(&mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if self.thread.is_some() {
            self.stop();
        }
    }
}

/// The keeper thread: runs the postmaster and starts it again whenever it dies unasked. The
/// postmaster is spawned from this thread, so it follows this thread (and so the process) out.
fn keep(server: Server, keeper: Arc<Keeper>) {
    let began = Instant::now();
    let mut backoff = Duration::from_millis(200);
    loop {
        if keeper.lock().stopping {
            break;
        }
        let ever_ready = keeper.lock().ever_ready;
        match server.spawn() {
            Err(error) if !ever_ready => {
                keeper.update(|s| s.failed = Some(format!("{error:#}")));
                break;
            }
            Err(error) => tracing::error!(error = %format!("{error:#}"), "cannot restart postgres"),
            Ok(mut child) => {
                let pid = child.id();
                let stopping = {
                    let mut state = keeper.lock();
                    state.pid = Some(pid);
                    state.stopping
                };
                keeper.changed.notify_all();
                if stopping {
                    // stop() ran before it could know this pid.
                    signal(pid, libc::SIGINT);
                }
                let ran = Instant::now();
                let status = child.wait();
                keeper.update(|s| s.pid = None);
                if keeper.lock().stopping {
                    break;
                }
                if !keeper.lock().ever_ready {
                    // Backends of a postmaster that was killed hold its shared memory for a
                    // moment: worth waiting for. Anything else (a taken port, a broken cluster)
                    // is reported at once.
                    let tail = server.log_tail();
                    if !tail.contains("pre-existing shared memory block") || began.elapsed() > START_TIMEOUT {
                        let why = match status {
                            Ok(status) => format!("postgres exited with {status}: {tail}"),
                            Err(error) => format!("cannot wait for postgres: {error}"),
                        };
                        keeper.update(|s| s.failed = Some(why));
                        break;
                    }
                } else {
                    tracing::error!(?status, "postgres stopped unexpectedly; starting it again");
                    keeper.update(|s| s.restarts += 1);
                }
                if ran.elapsed() > Duration::from_secs(30) {
                    backoff = Duration::from_millis(200);
                }
            }
        }
        keeper.pause(backoff);
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
    keeper.update(|s| s.ended = true);
}

fn signal(pid: u32, signal: i32) {
    // SAFETY: kill has no memory preconditions; the pid is our own child's.
    unsafe { libc::kill(pid as i32, signal) };
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Takes the lock file beside the cluster (released by the kernel when we exit, however).
fn take_lock(data_dir: &Path) -> anyhow::Result<File> {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let path = data_dir.with_extension("lock");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // SAFETY: flock on a file descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        bail!(
            "another orgtrail (pid {}) uses the Postgres cluster in {}; stop it first",
            holder.trim(),
            data_dir.display()
        );
    }
    file.set_len(0)?;
    write!(file, "{}", std::process::id())?;
    Ok(file)
}

/// With the lock held, a postmaster still running in `data_dir` is left from a process that died:
/// stop it (fast, then immediate), and drop a lock file whose process is not a postmaster.
fn stop_orphan(data_dir: &Path) -> anyhow::Result<()> {
    let pid_file = data_dir.join("postmaster.pid");
    let Ok(text) = std::fs::read_to_string(&pid_file) else { return Ok(()) };
    let Some(pid) = text.lines().next().and_then(|l| l.trim().parse::<i32>().ok()) else { return Ok(()) };
    let is_postgres =
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|comm| comm.trim() == "postgres");
    if !alive(pid) || !is_postgres {
        return Ok(());
    }
    eprintln!(
        "note: stopping the Postgres (pid {pid}) an earlier orgtrail left running in {}",
        data_dir.display()
    );
    for (signal, wait) in [
        (libc::SIGINT, FAST_SHUTDOWN_GRACE * 2),
        (libc::SIGQUIT, Duration::from_secs(5)),
        (libc::SIGKILL, Duration::from_secs(5)),
    ] {
        // SAFETY: kill has no memory preconditions; the pid is the cluster's own postmaster.
        unsafe { libc::kill(pid, signal) };
        let deadline = Instant::now() + wait;
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if !alive(pid) {
            return Ok(());
        }
    }
    bail!("cannot stop the Postgres (pid {pid}) left running in {}", data_dir.display())
}

fn hand_to_system_user(data_dir: &Path) -> anyhow::Result<()> {
    let status = Command::new("chown").arg("-R").arg(format!("{SYSTEM_USER}:")).arg(data_dir).status()?;
    if !status.success() {
        bail!(
            "cannot hand {} to the {SYSTEM_USER} system user (does the user exist? {INSTALL_HINT})",
            data_dir.display()
        );
    }
    if !system_user_can_enter(data_dir) {
        bail!(
            "the {SYSTEM_USER} system user cannot reach {} (a parent directory is private); \
             choose a data directory under a world-traversable path such as /var/tmp",
            data_dir.display()
        );
    }
    Ok(())
}

fn initdb(bin_dir: &Path, data_dir: &Path, password: &str) -> anyhow::Result<()> {
    let password_file = data_dir.with_extension("pwfile");
    std::fs::write(&password_file, password)?;
    if is_root() {
        Command::new("chown").arg(format!("{SYSTEM_USER}:")).arg(&password_file).status()?;
    }
    let output = as_system_user(Command::new(bin_dir.join("initdb")))?
        .arg("-D")
        .arg(data_dir)
        .args(["-U", "postgres", "-E", "UTF8", "--auth=scram-sha-256", "--no-sync"])
        .arg(format!("--pwfile={}", password_file.display()))
        .current_dir(data_dir)
        .output()
        .context("cannot run initdb")?;
    let _ = std::fs::remove_file(&password_file);
    if !output.status.success() {
        bail!("initdb failed: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
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
