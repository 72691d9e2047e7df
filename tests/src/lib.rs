//! End-to-end test harness for Skein: real `skein` processes, real Docker,
//! real sockets.
//!
//! The pieces:
//!
//! * [`skein_bin`] finds the `skein` binary (`$SKEIN_BIN`, else the one next
//!   to the running test executable in `target/<profile>/`). The harness does
//!   not build it: run `cargo build` (or `scripts/test.sh`) first.
//! * [`Agent`] runs one `skein agent` in a fresh temporary directory with its
//!   own dynamic-port range, waits until its API answers, and offers the CLI
//!   ([`Agent::cli`], [`Agent::cli_json`]) and raw HTTP ([`Agent::http_get`],
//!   [`Agent::http_post`]). Dropping it SIGKILLs the process and removes every
//!   container labelled `skein.node=<node id>`, also when the test panicked.
//! * [`poll_until`] / [`poll_until_ok`]: the only way to wait. Tests never sleep
//!   for a fixed time; they poll a condition with a deadline and get a message
//!   saying what they waited for when it expires.
//! * [`Cluster`] (module [`cluster`]) runs several agents, each in its own
//!   network namespace on a private bridge, so a test can kill, restart and
//!   partition nodes; [`Bridge`] and [`Netns`] are its plumbing.
//! * Docker helpers ([`docker`], [`containers_with_label`], [`container_labels`],
//!   [`container_inspect`], [`ContainerGuard`]; [`try_docker_on`] and friends
//!   for another engine) and small utilities ([`unique_name`],
//!   [`write_manifest`], [`dedent`]).
//! * Image plumbing: [`registry::Registry`] (a real `docker-registry` on
//!   loopback, optionally with htpasswd auth), [`engine::Engine`] (a second
//!   Docker Engine with its own image store, for agents started with
//!   [`AgentOpts::docker_host`]) and [`images::unique_image`] (a fresh image
//!   per test, removed on drop).
//!
//! Every external command (the CLI, `docker`) runs with a timeout, so a hung
//! process fails the test instead of hanging the suite.
//!
//! Agent processes are started with `PR_SET_PDEATHSIG = SIGKILL`: if the test
//! process dies without unwinding (abort, SIGKILL from a test runner's
//! timeout), its agents die too instead of lingering. The signal is tied to
//! the *thread* that spawned the agent, so start (and restart) an [`Agent`] on
//! the thread that keeps using it — the test's own thread — not on a helper
//! thread that exits early.
//!
//! Environment variables read by the harness:
//!
//! * `SKEIN_BIN` — path of the `skein` binary to test.
//! * `SKEIN_E2E_KEEP_TMP=1` — keep an agent's temporary directory (data dir and
//!   log) when its test panicked; the path is printed.
//! * `SKEIN_E2E_NODE_LIST` — a file to which the node id of every agent started
//!   is appended (one per line); `scripts/test.sh` uses it to tell this run's
//!   leftover containers from those of other runs on the same Docker daemon.

pub mod cluster;
pub use cluster::*;
pub mod engine;
pub mod images;
pub mod old;
pub mod registry;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::io::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use serde_json::{json, Value};

/// The demo image built by `scripts/build-demo-image.sh`: busybox httpd on
/// port 80 answering `hello from <container hostname>`.
pub const DEMO_IMAGE: &str = "skein-demo/web:latest";

/// How long [`Agent::start`] / [`Agent::restart`] wait for the API by default.
pub const AGENT_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Default limit for one CLI invocation ([`Agent::cli`]) or `docker` command.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);

/// Limit for one HTTP request made by the harness.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// Lowest port handed out by [`reserve_port_range`].
pub const PORT_SPAN_START: u16 = 21000;
/// Highest port handed out by [`reserve_port_range`].
pub const PORT_SPAN_END: u16 = 59999;
/// Number of ports in each agent's `--port-range`.
pub const PORT_RANGE_LEN: u16 = 50;

/// Hosts that must never go through an HTTP proxy, passed to every child
/// process (the CLI's HTTP client honours `*_PROXY` variables): loopback and
/// the private subnets of [`cluster`] test networks.
const NO_PROXY: &str = "127.0.0.1,localhost,::1,10.211.0.0/16";

// ---------------------------------------------------------------------------
// The skein binary
// ---------------------------------------------------------------------------

/// Path of the `skein` binary under test.
///
/// `$SKEIN_BIN` if set (and non-empty), else `skein` in the target directory
/// of the running test executable: tests run as `target/debug/deps/<test>-<hash>`
/// so the binary is `target/debug/skein`.
///
/// # Panics
///
/// If the binary does not exist, with a message telling to build it first
/// (`cargo build -p skein-cli`, or `cargo build --workspace`). Note that
/// `cargo test -p skein-e2e` alone does not (re)build it.
pub fn skein_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("cannot determine the test executable's path");
    match resolve_skein_bin(std::env::var_os("SKEIN_BIN"), &exe) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// The path logic behind [`skein_bin`], without touching the environment:
/// `skein_bin_env` is the value of `$SKEIN_BIN` (if any) and `current_exe` the
/// running executable. Returns an explanatory error when the binary is missing.
pub fn resolve_skein_bin(
    skein_bin_env: Option<OsString>,
    current_exe: &Path,
) -> Result<PathBuf, String> {
    if let Some(v) = skein_bin_env.filter(|v| !v.is_empty()) {
        let p = PathBuf::from(v);
        let p = if p.is_relative() {
            std::env::current_dir().map(|d| d.join(&p)).unwrap_or(p)
        } else {
            p
        };
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "SKEIN_BIN is set to {} but no such file exists",
                p.display()
            ))
        };
    }
    let mut dir = current_exe
        .parent()
        .ok_or_else(|| format!("test executable {} has no parent", current_exe.display()))?;
    if dir.file_name() == Some(OsStr::new("deps")) {
        dir = dir.parent().unwrap_or(dir);
    }
    let p = dir.join(format!("skein{}", std::env::consts::EXE_SUFFIX));
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "the skein binary was not found at {} — build it first with \
             `cargo build --workspace` (or run scripts/test.sh), or point SKEIN_BIN at it",
            p.display()
        ))
    }
}

// ---------------------------------------------------------------------------
// Polling
// ---------------------------------------------------------------------------

/// Interval between two polls: quick at first, a little slower after 2 s.
fn poll_interval(elapsed: Duration) -> Duration {
    if elapsed < Duration::from_secs(2) {
        Duration::from_millis(100)
    } else {
        Duration::from_millis(200)
    }
}

/// Calls `f` until it returns `Some`, every 100–200 ms, for at most `timeout`;
/// `None` when the deadline passed. `f` is called at least once, and a last
/// time at the deadline.
pub fn try_poll_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    let deadline = start + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::sleep(poll_interval(now - start).min(deadline - now));
    }
}

/// Calls `f` until it returns `Some(value)` and returns the value, polling
/// every 100–200 ms.
///
/// # Panics
///
/// When `timeout` elapses first: `timed out after <elapsed> waiting for <what>`.
pub fn poll_until<T>(what: &str, timeout: Duration, f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    match try_poll_until(timeout, f) {
        Some(v) => v,
        None => panic!(
            "timed out after {:.1?} (limit {timeout:?}) waiting for {what}",
            start.elapsed()
        ),
    }
}

/// Like [`poll_until`] for a fallible check: polls until `f` returns `Ok`, and
/// on timeout panics with the last error, which usually tells why.
pub fn poll_until_ok<T, E: fmt::Debug>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<T, E>,
) -> T {
    let start = Instant::now();
    let mut last_err = None;
    let r = try_poll_until(timeout, || match f() {
        Ok(v) => Some(v),
        Err(e) => {
            last_err = Some(e);
            None
        }
    });
    match r {
        Some(v) => v,
        None => panic!(
            "timed out after {:.1?} (limit {timeout:?}) waiting for {what}; last error: {:?}",
            start.elapsed(),
            last_err.expect("f was called at least once")
        ),
    }
}

// ---------------------------------------------------------------------------
// Names and files
// ---------------------------------------------------------------------------

/// A random u64 (std's randomly keyed hasher over pid, time and a counter).
fn random_u64() -> u64 {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u32(COUNTER.fetch_add(1, Ordering::Relaxed));
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(nanos);
    h.finish()
}

/// A fresh name `<prefix>-<6 random lowercase alphanumerics>`, unique across
/// parallel tests and test processes, usable as a job name.
///
/// The result is an RFC 1123 DNS label (at most 63 of `[a-z0-9-]`, starting
/// with a letter, not ending with `-`). The prefix is lowercased, characters
/// outside `[a-z0-9-]` become `-`, a prefix not starting with a letter gets a
/// `t` in front, and it is cut to 50 characters.
pub fn unique_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut p: String = prefix
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                c
            } else {
                '-'
            }
        })
        .collect();
    if !p.starts_with(|c: char| c.is_ascii_lowercase()) {
        p.insert(0, 't');
    }
    p.truncate(50);
    let p = p.trim_end_matches('-');
    let mut r = random_u64();
    let mut suffix = String::with_capacity(6);
    for _ in 0..6 {
        suffix.push(ALPHABET[(r % 36) as usize] as char);
        r /= 36;
    }
    format!("{p}-{suffix}")
}

/// Writes `yaml` verbatim to `dir/name` and returns the path. A `name` without
/// an extension gets `.yaml`. Creates `dir` if needed.
pub fn write_manifest(dir: &Path, name: &str, yaml: &str) -> PathBuf {
    fs::create_dir_all(dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let file = if Path::new(name).extension().is_some() {
        name.to_string()
    } else {
        format!("{name}.yaml")
    };
    let path = dir.join(file);
    fs::write(&path, yaml).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    path
}

/// Removes the indentation common to all non-blank lines and a leading
/// newline, so manifests can be written as indented raw string literals:
///
/// ```
/// let m = skein_e2e::dedent("
///     name: web
///     replicas: 2
/// ");
/// assert_eq!(m, "name: web\nreplicas: 2\n");
/// ```
pub fn dedent(s: &str) -> String {
    let s = s.strip_prefix('\n').unwrap_or(s);
    let indent = s
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start_matches([' ', '\t']).len())
        .min()
        .unwrap_or(0);
    let mut out = String::with_capacity(s.len());
    for line in s.lines() {
        out.push_str(
            line.get(indent..)
                .unwrap_or("")
                .trim_end_matches([' ', '\t']),
        );
        out.push('\n');
    }
    out
}

// ---------------------------------------------------------------------------
// Running commands
// ---------------------------------------------------------------------------

/// The result of a finished command (the CLI, `docker`, …).
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// The command line, for messages.
    pub command: String,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    /// Whether the exit status was 0.
    pub fn success(&self) -> bool {
        self.status.success()
    }

    /// The exit code (`None` when killed by a signal).
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// Panics (showing the command, status, stdout and stderr) unless it succeeded.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        assert!(self.success(), "command failed: {self}");
        self
    }

    /// Panics (showing everything) if it succeeded.
    #[track_caller]
    pub fn assert_failure(&self) -> &Self {
        assert!(!self.success(), "command unexpectedly succeeded: {self}");
        self
    }

    /// Stdout parsed as JSON; panics with the output if it is not JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not valid JSON ({e}): {self}"))
    }
}

impl fmt::Display for CliOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` exited with {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command,
            self.status,
            self.stdout.trim_end(),
            self.stderr.trim_end()
        )
    }
}

/// Makes the process `cmd` starts get SIGKILL when the thread that
/// started it exits (see the crate docs): nothing outlives a test.
pub fn die_with_parent(cmd: &mut Command) {
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` to completion with stdin closed and stdout/stderr captured.
/// If it is still running after `timeout` it is SIGKILLed and this panics
/// with whatever it printed.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> CliOutput {
    match try_run_with_timeout(cmd, timeout) {
        Ok(o) => o,
        Err(o) => panic!("command timed out after {timeout:?} and was killed: {o}"),
    }
}

/// Like [`run_with_timeout`], but a command still running after `timeout` is
/// SIGKILLed and returned as `Err` (with whatever it printed) instead of
/// panicking: for calls that may legitimately hang for a while, e.g. a write
/// during a leader election.
pub fn try_run_with_timeout(cmd: &mut Command, timeout: Duration) -> Result<CliOutput, CliOutput> {
    match run_captured(cmd, None, timeout) {
        Ok((o, false)) => Ok(o),
        Ok((o, true)) => Err(o),
        Err(e) => panic!("{e}"),
    }
}

/// Runs `cmd` with `input` on its stdin (or stdin closed), output captured,
/// for at most `timeout`, then SIGKILLs it: what it printed and whether it
/// timed out, or why it could not run. Never panics, so clean-up code
/// during unwinding can use it too; `input` is written from its own
/// thread, so a child that does not read cannot block the caller.
pub(crate) fn run_captured(
    cmd: &mut Command,
    input: Option<&[u8]>,
    timeout: Duration,
) -> Result<(CliOutput, bool), String> {
    let command = describe(cmd);
    let mut child = cmd
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `{command}`: {e}"))?;
    if let (Some(mut stdin), Some(input)) = (child.stdin.take(), input) {
        let input = input.to_vec();
        std::thread::spawn(move || {
            let _ = stdin.write_all(&input);
        });
    }
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let (out, timed_out) = match rx.recv_timeout(timeout) {
        Ok(r) => (r, false),
        Err(_) => {
            // The waiting thread has not reaped the child yet, so the pid is
            // still ours (at worst a zombie).
            unsafe {
                libc::kill(pid as libc::pid_t, libc::SIGKILL);
            }
            match rx.recv() {
                Ok(r) => (r, true),
                Err(_) => return Err(format!("waiting for `{command}`: the waiter vanished")),
            }
        }
    };
    let out = out.map_err(|e| format!("waiting for `{command}`: {e}"))?;
    let o = CliOutput {
        command,
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    Ok((o, timed_out))
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

fn http_client() -> &'static ureq::Agent {
    static CLIENT: OnceLock<ureq::Agent> = OnceLock::new();
    CLIENT.get_or_init(|| {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(HTTP_TIMEOUT))
            .max_redirects(0)
            .proxy(None)
            .build()
            .into()
    })
}

fn read_response(
    r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> Result<(u16, String), String> {
    let mut resp = r.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    // As large as a state at its quota (`GET /v1/jobs` lists it all).
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_string()
        .map_err(|e| format!("reading the body of a {status} response: {e}"))?;
    Ok((status, body))
}

/// `GET url`: `Ok((status, body))` for any HTTP status (4xx/5xx included),
/// `Err` only when no response came (connection refused, timeout, …). Never
/// uses a proxy. Handy inside [`poll_until_ok`].
pub fn http_get_url(url: &str) -> Result<(u16, String), String> {
    read_response(http_client().get(url).call()).map_err(|e| format!("GET {url}: {e}"))
}

/// `POST url` with a JSON content type; see [`http_get_url`].
pub fn http_post_url(url: &str, body: &[u8]) -> Result<(u16, String), String> {
    read_response(
        http_client()
            .post(url)
            .header("content-type", "application/json")
            .send(body),
    )
    .map_err(|e| format!("POST {url}: {e}"))
}

/// `DELETE url`; see [`http_get_url`].
pub fn http_delete_url(url: &str) -> Result<(u16, String), String> {
    read_response(http_client().delete(url).call()).map_err(|e| format!("DELETE {url}: {e}"))
}

/// `METHOD url` with exactly these headers (none added, no content type)
/// and `body` (none when empty): for tests of what the API accepts, such as
/// content types, origins and authorization schemes. See [`http_get_url`].
pub fn http_raw(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<(u16, String), String> {
    let mut b = ureq::http::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let resp = if body.is_empty() {
        b.body(())
            .map_err(|e| e.to_string())
            .and_then(|r| read_response(http_client().run(r)))
    } else {
        b.body(body.to_vec())
            .map_err(|e| e.to_string())
            .and_then(|r| read_response(http_client().run(r)))
    };
    resp.map_err(|e| format!("{method} {url}: {e}"))
}

// ---------------------------------------------------------------------------
// Docker
// ---------------------------------------------------------------------------

/// A `docker args…` command; with `host`, against that engine
/// (`DOCKER_HOST=host`, `DOCKER_CONTEXT` removed so it cannot override it),
/// else against whatever the test process's environment selects.
fn docker_command(host: Option<&str>, args: &[&str]) -> Command {
    let mut c = Command::new("docker");
    if let Some(h) = host {
        c.env("DOCKER_HOST", h).env_remove("DOCKER_CONTEXT");
    }
    c.args(args);
    c
}

/// Runs `docker args…` and returns its stdout, trimmed; `Err` with the
/// command and its stderr when it fails.
pub fn try_docker(args: &[&str]) -> Result<String, String> {
    try_docker_on(None, args)
}

/// [`try_docker`] against the engine at `host` (a `DOCKER_HOST` value such
/// as `unix:///tmp/…/docker.sock`, e.g. [`engine::Engine::host`]); `None` is
/// the default engine, exactly like [`try_docker`].
pub fn try_docker_on(host: Option<&str>, args: &[&str]) -> Result<String, String> {
    let o = run_with_timeout(&mut docker_command(host, args), COMMAND_TIMEOUT);
    if o.success() {
        Ok(o.stdout.trim().to_string())
    } else {
        Err(format!(
            "`{}` failed ({}): {}",
            o.command,
            o.status,
            o.stderr.trim()
        ))
    }
}

/// Runs `docker args…` and returns its stdout, trimmed.
///
/// # Panics
///
/// If it fails, with its stderr.
#[track_caller]
pub fn docker(args: &[&str]) -> String {
    try_docker(args).unwrap_or_else(|e| panic!("{e}"))
}

/// Full ids of all containers, running or not, matching the label filter
/// `filter` (`key` or `key=value`, as in `docker ps --filter label=…`).
#[track_caller]
pub fn containers_with_label(filter: &str) -> Vec<String> {
    docker(&[
        "ps",
        "-aq",
        "--no-trunc",
        "--filter",
        &format!("label={filter}"),
    ])
    .lines()
    .map(str::to_string)
    .collect()
}

/// Full ids of all containers matching *all* the label filters (each `key`
/// or `key=value`), e.g. `&["skein.job=web", "skein.node=0123456789abcdef"]`.
/// Filtering in `docker ps` avoids listing then inspecting containers that
/// may vanish in between.
#[track_caller]
pub fn containers_with_labels(filters: &[&str]) -> Vec<String> {
    containers_with_labels_on(None, filters)
}

/// [`containers_with_labels`] on the engine at `host` (see [`try_docker_on`]).
#[track_caller]
pub fn containers_with_labels_on(host: Option<&str>, filters: &[&str]) -> Vec<String> {
    let mut args = vec!["ps".to_string(), "-aq".into(), "--no-trunc".into()];
    for f in filters {
        args.push("--filter".into());
        args.push(format!("label={f}"));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    match try_docker_on(host, &args) {
        Ok(out) => out.lines().map(str::to_string).collect(),
        Err(e) => panic!("{e}"),
    }
}

/// Force-removes (with volumes) every container matching the label filter;
/// returns how many there were. Never panics: failures are printed.
pub fn remove_containers_with_label(filter: &str) -> usize {
    remove_containers_with_label_on(None, filter)
}

/// [`remove_containers_with_label`] on the engine at `host` (see
/// [`try_docker_on`]).
pub fn remove_containers_with_label_on(host: Option<&str>, filter: &str) -> usize {
    let mut removed = 0;
    // A killed agent may have a create request still in flight inside the
    // daemon: keep sweeping until the label has stayed empty for a second
    // (bounded, so a broken daemon cannot hang the suite).
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut empty_since: Option<Instant> = None;
    while Instant::now() < deadline {
        let ids = match try_docker_on(
            host,
            &[
                "ps",
                "-aq",
                "--no-trunc",
                "--filter",
                &format!("label={filter}"),
            ],
        ) {
            Ok(s) => s.lines().map(str::to_string).collect::<Vec<_>>(),
            Err(e) => {
                eprintln!("skein-e2e: cannot list containers labelled {filter}: {e}");
                return removed;
            }
        };
        if ids.is_empty() {
            let since = *empty_since.get_or_insert_with(Instant::now);
            if since.elapsed() >= Duration::from_secs(1) {
                break;
            }
            std::thread::sleep(Duration::from_millis(200));
            continue;
        }
        empty_since = None;
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(ids.iter().map(String::as_str));
        match try_docker_on(host, &args) {
            Ok(_) => removed += ids.len(),
            Err(e) => eprintln!("skein-e2e: removing containers labelled {filter}: {e}"),
        }
    }
    removed
}

/// `docker inspect --type container <id>`: the container's inspect object.
///
/// # Panics
///
/// If it does not exist (any more): a container listed a moment ago may have
/// been removed by the agent since; use [`try_container_inspect`] where that
/// can happen.
#[track_caller]
pub fn container_inspect(id: &str) -> Value {
    let out = docker(&["inspect", "--type", "container", id]);
    parse_inspect(id, &out)
}

/// Like [`container_inspect`], but `None` when there is no such container.
#[track_caller]
pub fn try_container_inspect(id: &str) -> Option<Value> {
    match try_docker(&["inspect", "--type", "container", id]) {
        Ok(out) => Some(parse_inspect(id, &out)),
        Err(e) if e.to_lowercase().contains("no such") => None,
        Err(e) => panic!("{e}"),
    }
}

#[track_caller]
fn parse_inspect(id: &str, out: &str) -> Value {
    let v: Value = serde_json::from_str(out)
        .unwrap_or_else(|e| panic!("docker inspect {id}: bad JSON ({e}): {out}"));
    match v {
        Value::Array(mut a) if !a.is_empty() => a.swap_remove(0),
        other => panic!("docker inspect {id}: unexpected output {other}"),
    }
}

/// The labels of a container (`.Config.Labels`), image labels included.
/// Panics if the container does not exist; see [`container_inspect`].
#[track_caller]
pub fn container_labels(id: &str) -> BTreeMap<String, String> {
    labels_of(&container_inspect(id))
}

/// The labels in an inspect object (`.Config.Labels`).
pub fn labels_of(inspect: &Value) -> BTreeMap<String, String> {
    inspect["Config"]["Labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether the image exists locally.
pub fn image_exists(image: &str) -> bool {
    try_docker(&["image", "inspect", "--format", "{{.Id}}", image]).is_ok()
}

/// Panics with instructions unless [`DEMO_IMAGE`] exists locally.
#[track_caller]
pub fn require_demo_image() {
    assert!(
        image_exists(DEMO_IMAGE),
        "the demo image {DEMO_IMAGE} is missing: build it with scripts/build-demo-image.sh \
         (no registry is reachable, so it cannot be pulled)"
    );
}

/// Removes a container (`docker rm -f -v`) when dropped, also during a panic.
/// For containers a test starts itself; label them `skein.test=…` so that
/// `scripts/test.sh` finds any that escape.
#[derive(Debug)]
pub struct ContainerGuard {
    id: String,
}

impl ContainerGuard {
    /// Guards the container with this id (or name).
    pub fn new(id: impl Into<String>) -> Self {
        Self { id: id.into() }
    }

    /// `docker <args…>` (e.g. `["run", "-d", …]` or `["create", …]`), whose
    /// stdout is the new container's id, and a guard for it.
    #[track_caller]
    pub fn create(args: &[&str]) -> Self {
        Self::new(docker(args))
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

impl Drop for ContainerGuard {
    fn drop(&mut self) {
        if let Err(e) = try_docker(&["rm", "-f", "-v", &self.id]) {
            eprintln!("skein-e2e: cannot remove container {}: {e}", self.id);
        }
    }
}

// ---------------------------------------------------------------------------
// Port ranges
// ---------------------------------------------------------------------------

/// A range of host ports reserved for one agent's `--port-range`.
///
/// Reservations are exclusive across threads *and* processes while the value
/// lives: each holds an `flock` on `$TMPDIR/skein-e2e-ports/<first>.lock`.
#[derive(Debug)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
    _lock: File,
}

impl PortRange {
    /// `first-last`, as the agent's `--port-range` takes it.
    pub fn arg(&self) -> String {
        format!("{}-{}", self.first, self.last)
    }

    pub fn contains(&self, port: u16) -> bool {
        (self.first..=self.last).contains(&port)
    }
}

/// The kernel's ephemeral port range (`ip_local_port_range`).
fn ephemeral_ports() -> (u16, u16) {
    fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|x| x.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// Reserves a free range of [`PORT_RANGE_LEN`] ports inside
/// [`PORT_SPAN_START`]..=[`PORT_SPAN_END`] that does not overlap the kernel's
/// ephemeral range (where `127.0.0.1:0` listeners and outgoing connections get
/// their ports, which would collide with published container ports).
///
/// The search starts at a slot derived from the pid and a per-process counter
/// (so parallel test processes start apart), skips slots locked by another
/// reservation, and skips slots where any port cannot be bound right now.
///
/// # Panics
///
/// When no slot is free.
pub fn reserve_port_range() -> PortRange {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let (eph_lo, eph_hi) = ephemeral_ports();
    let slots: Vec<u16> = (PORT_SPAN_START..=PORT_SPAN_END - PORT_RANGE_LEN + 1)
        .step_by(PORT_RANGE_LEN as usize)
        .filter(|&b| {
            let last = b + PORT_RANGE_LEN - 1;
            last < eph_lo || b > eph_hi
        })
        .collect();
    assert!(
        !slots.is_empty(),
        "no port slots in {PORT_SPAN_START}-{PORT_SPAN_END} outside the ephemeral range {eph_lo}-{eph_hi}"
    );
    let lock_dir = std::env::temp_dir().join("skein-e2e-ports");
    let _ = fs::create_dir_all(&lock_dir);
    // World-writable (sticky) so that test runs by different users can share it.
    let _ = fs::set_permissions(
        &lock_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    );
    let n = slots.len();
    let start = (std::process::id() as usize)
        .wrapping_mul(37)
        .wrapping_add(COUNTER.fetch_add(1, Ordering::Relaxed) as usize);
    for i in 0..n {
        let first = slots[(start + i) % n];
        let last = first + PORT_RANGE_LEN - 1;
        let Ok(lock) = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(lock_dir.join(format!("{first}.lock")))
        else {
            continue;
        };
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue;
        }
        let all_free = (first..=last).all(|p| TcpListener::bind(("0.0.0.0", p)).is_ok());
        if all_free {
            return PortRange {
                first,
                last,
                _lock: lock,
            };
        }
    }
    panic!("no free range of {PORT_RANGE_LEN} ports in {PORT_SPAN_START}-{PORT_SPAN_END}");
}

// ---------------------------------------------------------------------------
// Agent
// ---------------------------------------------------------------------------

/// Options for [`Agent::start`]. `AgentOpts::default()` is a plain agent.
#[derive(Debug, Clone, Default)]
pub struct AgentOpts {
    /// `--name NAME`.
    pub name: Option<String>,
    /// `--label k=v`, in order.
    pub labels: Vec<(String, String)>,
    /// Appended after the harness's own arguments.
    pub extra_args: Vec<String>,
    /// Extra environment variables for the agent process (e.g. `RUST_LOG`).
    pub env: Vec<(String, String)>,
    /// Binary to run instead of [`skein_bin`] (for both the agent and
    /// [`Agent::cli`]); used by the harness self-tests.
    pub bin: Option<PathBuf>,
    /// How long to wait for the API to answer; default [`AGENT_READY_TIMEOUT`].
    pub ready_timeout: Option<Duration>,
    /// `--api ADDR`; default `127.0.0.1:0` (a free port, read back from
    /// `<data dir>/api.addr`).
    pub api_listen: Option<String>,
    /// Run the agent inside this network namespace (`ip netns exec NETNS …`,
    /// which execs, so the process id and `PR_SET_PDEATHSIG` are the agent's).
    /// Only the agent runs there; [`Agent::cli`] runs in the caller's namespace.
    pub netns: Option<String>,
    /// Command prefix for the agent process (e.g. `["taskset", "-c", "0"]`),
    /// after `ip netns exec NETNS` if [`AgentOpts::netns`] is set. It must
    /// exec the agent, not fork it, or killing the agent kills the wrapper only.
    pub wrapper: Vec<String>,
    /// Mount a tmpfs of this many bytes as the data dir (needs root),
    /// to run out of disk space for real; unmounted when the agent drops.
    pub data_tmpfs: Option<u64>,
}

impl AgentOpts {
    /// Options with `--name name`.
    pub fn named(name: &str) -> Self {
        Self {
            name: Some(name.to_string()),
            ..Self::default()
        }
    }

    /// A node of a multi-node test on one loaded machine: no resolver for
    /// containers, and failure detection slow enough (`--suspect-after
    /// 5s --dead-after 20s`) that a busy host does not declare a node dead.
    pub fn steady(self) -> Self {
        self.arg("--container-dns")
            .arg("none")
            .arg("--suspect-after")
            .arg("5s")
            .arg("--dead-after")
            .arg("20s")
    }

    /// Runs this `skein` binary instead of the workspace's (an older
    /// release, say).
    pub fn bin(mut self, bin: PathBuf) -> Self {
        self.bin = Some(bin);
        self
    }

    /// Adds `--label key=value`.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.push((key.to_string(), value.to_string()));
        self
    }

    /// Adds an extra command-line argument.
    pub fn arg(mut self, arg: &str) -> Self {
        self.extra_args.push(arg.to_string());
        self
    }

    /// Sets an environment variable for the agent process.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Runs the agent on a tmpfs data dir of `bytes` (see [`AgentOpts::data_tmpfs`]).
    pub fn data_tmpfs(mut self, bytes: u64) -> Self {
        self.data_tmpfs = Some(bytes);
        self
    }

    /// Sets `--api ADDR` (instead of `127.0.0.1:0`).
    pub fn api_listen(mut self, addr: &str) -> Self {
        self.api_listen = Some(addr.to_string());
        self
    }

    /// Runs the agent in network namespace `name` (see [`AgentOpts::netns`]).
    pub fn netns(mut self, name: &str) -> Self {
        self.netns = Some(name.to_string());
        self
    }

    /// Points the agent at another Docker Engine: sets `DOCKER_HOST=host`
    /// for the agent process (through [`AgentOpts::env`]), and the harness's
    /// own container queries and clean-up for this agent
    /// ([`Agent::containers`], [`Agent::job_containers`], the sweep on drop)
    /// use the same engine. `host` is a `DOCKER_HOST` value, e.g.
    /// [`engine::Engine::host`].
    pub fn docker_host(self, host: &str) -> Self {
        self.env("DOCKER_HOST", host)
    }

    /// The engine this agent talks to when it is not the default one: the
    /// last `DOCKER_HOST` in [`AgentOpts::env`] (set by
    /// [`AgentOpts::docker_host`] or directly), `None` otherwise.
    pub fn docker_host_value(&self) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find(|(k, _)| k == "DOCKER_HOST")
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
}

/// One running `skein agent` process with its own temporary directory and
/// port range.
///
/// Layout of [`Agent::scratch_dir`]: `data/` (the `--data-dir`), `agent.log`
/// (the agent's stdout and stderr, appended across restarts, each start
/// preceded by a `=== skein-e2e: … ===` line) and `manifests/`
/// ([`Agent::write_manifest`]).
///
/// Dropping it SIGKILLs the agent and force-removes every container labelled
/// `skein.node=<node id>`; when the test is panicking it also prints the tail
/// of the agent's log.
pub struct Agent {
    opts: AgentOpts,
    bin: PathBuf,
    tmp: Option<tempfile::TempDir>,
    scratch: PathBuf,
    data_dir: PathBuf,
    log_path: PathBuf,
    ports: PortRange,
    child: Option<Child>,
    api: String,
    node_id: String,
    starts: u32,
    /// A tmpfs mounted on the data dir, unmounted on drop.
    mounted: Option<PathBuf>,
}

impl fmt::Debug for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agent")
            .field("api", &self.api)
            .field("node_id", &self.node_id)
            .field("scratch", &self.scratch)
            .field("ports", &self.ports.arg())
            .field("pid", &self.child.as_ref().map(Child::id))
            .finish()
    }
}

impl Agent {
    /// Starts an agent and waits until `GET /v1/status` answers 200 with a
    /// node id (at most `opts.ready_timeout`, default 30 s).
    ///
    /// The command is `skein agent --data-dir <scratch>/data --api
    /// 127.0.0.1:0 --port-range <reserved> [--name N] [--label k=v]…
    /// <extra_args…>`; the API address is read from `<data dir>/api.addr`.
    ///
    /// # Panics
    ///
    /// If the binary is missing, the agent exits early, or it is not ready in
    /// time; the message includes the tail of the agent's log. The process is
    /// killed in that case.
    pub fn start(opts: AgentOpts) -> Agent {
        let bin = opts.bin.clone().unwrap_or_else(skein_bin);
        let tmp = tempfile::Builder::new()
            .prefix("skein-e2e-")
            .tempdir()
            .expect("cannot create a temporary directory");
        let scratch = tmp.path().to_path_buf();
        let data_dir = scratch.join("data");
        fs::create_dir_all(&data_dir).expect("cannot create the data dir");
        let mounted = opts.data_tmpfs.map(|bytes| {
            let out = run_with_timeout(
                Command::new("mount")
                    .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
                    .arg(&data_dir),
                COMMAND_TIMEOUT,
            );
            assert!(
                out.success(),
                "cannot mount a tmpfs on {}: {}",
                data_dir.display(),
                out.stderr
            );
            data_dir.clone()
        });
        let mut agent = Agent {
            mounted,
            opts,
            bin,
            tmp: Some(tmp),
            log_path: scratch.join("agent.log"),
            scratch,
            data_dir,
            ports: reserve_port_range(),
            child: None,
            api: String::new(),
            node_id: String::new(),
            starts: 0,
        };
        // If this panics, `agent` is dropped: the process is killed.
        agent.launch();
        agent
    }

    /// Spawns the process and waits until it is ready.
    fn launch(&mut self) {
        assert!(self.child.is_none(), "agent already running");
        // A stale address from a previous run must not be mistaken for the new one.
        let addr_file = self.data_dir.join("api.addr");
        match fs::remove_file(&addr_file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("cannot remove {}: {e}", addr_file.display()),
        }
        self.starts += 1;

        let mut prefix: Vec<OsString> = Vec::new();
        if let Some(ns) = &self.opts.netns {
            prefix.extend(["ip", "netns", "exec", ns.as_str()].map(OsString::from));
        }
        prefix.extend(self.opts.wrapper.iter().map(OsString::from));
        let mut cmd = match prefix.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        let api_listen = self.opts.api_listen.as_deref().unwrap_or("127.0.0.1:0");
        cmd.arg("agent")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--api", api_listen, "--port-range"])
            .arg(self.ports.arg());
        if let Some(name) = &self.opts.name {
            cmd.args(["--name", name]);
        }
        for (k, v) in &self.opts.labels {
            cmd.arg("--label").arg(format!("{k}={v}"));
        }
        // Tests publish services on ports they reserved from the span.
        if !self.opts.extra_args.iter().any(|a| a == "--publish-range") {
            cmd.arg("--publish-range")
                .arg(format!("{PORT_SPAN_START}-{PORT_SPAN_END}"));
        }
        // Standalone agents share this host: each gets its own mesh port.
        if !self.opts.extra_args.iter().any(|a| a == "--mesh") {
            cmd.args(["--mesh", "127.0.0.1:0"]);
        }
        cmd.args(&self.opts.extra_args);

        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log_path.display()));
        let _ = writeln!(
            log,
            "=== skein-e2e: start #{}: {} ===",
            self.starts,
            describe(&cmd)
        );
        let log_err = log.try_clone().expect("dup log file");
        cmd.stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .current_dir(&self.scratch)
            .env("RUST_BACKTRACE", "1")
            // Plain logs in agent.log (tracing-subscriber honours NO_COLOR).
            .env("NO_COLOR", "1")
            .env("NO_PROXY", NO_PROXY)
            .env("no_proxy", NO_PROXY)
            .envs(self.opts.env.iter().map(|(k, v)| (k, v)));
        die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", describe(&cmd)));
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let timeout = self.opts.ready_timeout.unwrap_or(AGENT_READY_TIMEOUT);
        let addr_file = self.data_dir.join("api.addr");
        let start = Instant::now();
        let mut last = String::from("no api.addr yet");
        let mut exited = None;
        let child = self.child.as_mut().expect("agent not running");
        let ready = try_poll_until(timeout, || {
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some(status);
                // Stop polling: reported below.
                return Some(None);
            }
            let addr = match fs::read_to_string(&addr_file) {
                Ok(s) => s.trim().to_string(),
                Err(_) => return None,
            };
            if addr.parse::<SocketAddr>().is_err() {
                last = format!("api.addr holds {addr:?}, not an address");
                return None;
            }
            match http_get_url(&format!("http://{addr}/v1/status")) {
                Ok((200, body)) => match serde_json::from_str::<Value>(&body) {
                    Ok(v) => match v["node_id"].as_str() {
                        Some(id) if !id.is_empty() => Some(Some((addr, id.to_string()))),
                        _ => {
                            last = format!("/v1/status has no node_id: {body}");
                            None
                        }
                    },
                    Err(e) => {
                        last = format!("/v1/status is not JSON ({e}): {body}");
                        None
                    }
                },
                Ok((code, body)) => {
                    last = format!("/v1/status answered {code}: {body}");
                    None
                }
                Err(e) => {
                    last = e;
                    None
                }
            }
        });
        match ready {
            Some(Some((addr, id))) => {
                if self.starts > 1 && !self.node_id.is_empty() {
                    assert_eq!(
                        id, self.node_id,
                        "agent came back with another node id after a restart on the same data dir"
                    );
                }
                if self.node_id.is_empty() {
                    record_node_id(&id);
                }
                self.api = addr;
                self.node_id = id;
            }
            Some(None) => {
                self.child = None;
                panic!(
                    "agent exited with {} before becoming ready (after {:.1?})\n{}",
                    exited.expect("exit status recorded"),
                    start.elapsed(),
                    self.log_report(60)
                );
            }
            None => panic!(
                "agent not ready after {:.1?} (limit {timeout:?}); last: {last}\n{}",
                start.elapsed(),
                self.log_report(60)
            ),
        }
    }

    fn log_report(&self, n: usize) -> String {
        format!(
            "--- last {n} lines of {} ---\n{}\n--- end of agent log ---",
            self.log_path.display(),
            self.log_tail(n)
        )
    }

    /// The API address, `127.0.0.1:PORT` by default (changes on
    /// [`Agent::restart`] unless [`AgentOpts::api_listen`] fixed it).
    pub fn api(&self) -> &str {
        &self.api
    }

    /// `http://<api>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// The node id (16 hex digits) reported by `/v1/status`.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The agent's `--data-dir`.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The temporary directory holding `data/`, `agent.log` and `manifests/`;
    /// free for the test's own files too. Deleted on drop.
    pub fn scratch_dir(&self) -> &Path {
        &self.scratch
    }

    /// Path of the agent's log (stdout + stderr).
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The agent's `--port-range`.
    pub fn port_range(&self) -> &PortRange {
        &self.ports
    }

    /// The process id, if the agent is running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the process is still alive (reaps it if it exited).
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => true,
            Some(_) => {
                self.child = None;
                false
            }
            None => false,
        }
    }

    /// The last `n` lines of the agent's log (all starts).
    pub fn log_tail(&self, n: usize) -> String {
        let mut buf = Vec::new();
        if let Ok(mut f) = File::open(&self.log_path) {
            let _ = f.read_to_end(&mut buf);
        }
        let text = String::from_utf8_lossy(&buf);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Writes a manifest into `<scratch>/manifests/` (see [`write_manifest`]).
    pub fn write_manifest(&self, name: &str, yaml: &str) -> PathBuf {
        write_manifest(&self.scratch.join("manifests"), name, yaml)
    }

    /// A `skein --api <addr> args…` command with proxies disabled for
    /// loopback and `SKEIN_ADDR` removed, for tests that need to stream its
    /// output (e.g. `logs -f`); [`Agent::cli`] covers the usual case.
    pub fn cli_command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--api")
            .arg(&self.api)
            .args(args)
            .env_remove("SKEIN_ADDR")
            .env("NO_COLOR", "1")
            .env("NO_PROXY", NO_PROXY)
            .env("no_proxy", NO_PROXY);
        c
    }

    /// Starts `skein --api <addr> args…` and streams its stdout line by
    /// line (for `logs -f`, `events -f`); killed when dropped.
    pub fn cli_stream(&self, args: &[&str]) -> LineStream {
        LineStream::spawn(self.cli_command(args))
    }

    /// Runs `skein --api <addr> args…` (at most [`COMMAND_TIMEOUT`]) and
    /// returns its status and output, whatever the status.
    pub fn cli(&self, args: &[&str]) -> CliOutput {
        self.cli_timeout(COMMAND_TIMEOUT, args)
    }

    /// [`Agent::cli`] with another time limit.
    pub fn cli_timeout(&self, timeout: Duration, args: &[&str]) -> CliOutput {
        run_with_timeout(&mut self.cli_command(args), timeout)
    }

    /// [`Agent::cli`] with a time limit that is not an error: `None` when the
    /// command was still running after `timeout` (it is killed then).
    pub fn try_cli_timeout(&self, timeout: Duration, args: &[&str]) -> Option<CliOutput> {
        try_run_with_timeout(&mut self.cli_command(args), timeout).ok()
    }

    /// `skein apply -f FILE --detach` through this node, again (15 s per
    /// attempt) until it succeeds or `timeout` passes, as a client does
    /// across a leader change: the attempts it took, or `Err` with them
    /// and the last error.
    pub fn apply_until_accepted(
        &self,
        file: &str,
        timeout: Duration,
    ) -> Result<u32, (u32, String)> {
        let mut attempts = 0;
        let mut last = String::new();
        let done = try_poll_until(timeout, || {
            attempts += 1;
            match self.try_cli_timeout(Duration::from_secs(15), &["apply", "-f", file, "--detach"])
            {
                Some(o) if o.success() => Some(()),
                Some(o) => {
                    last = o.to_string();
                    None
                }
                None => {
                    last = "apply timed out after 15s".into();
                    None
                }
            }
        });
        match done {
            Some(()) => Ok(attempts),
            None => Err((attempts, last)),
        }
    }

    /// Polls `node ls` here until `count` nodes are voters (role leader or
    /// voter) and every node is ready.
    #[track_caller]
    pub fn wait_ready_voters(&self, count: usize, timeout: Duration) {
        poll_until(&format!("{count} ready voters"), timeout, || {
            let nodes = self.cli_json(&["node", "ls"]);
            let nodes = nodes.as_array()?;
            let voters = nodes
                .iter()
                .filter(|n| n["role"] == "leader" || n["role"] == "voter")
                .count();
            (voters == count && nodes.iter().all(|n| n["health"] == "ready")).then_some(())
        });
    }

    /// The options it was started with.
    pub fn opts(&self) -> &AgentOpts {
        &self.opts
    }

    /// Runs `skein --api <addr> -o json args…`, asserts it succeeded and
    /// returns stdout parsed as JSON.
    #[track_caller]
    pub fn cli_json(&self, args: &[&str]) -> Value {
        let mut a = vec!["-o", "json"];
        a.extend_from_slice(args);
        let o = self.cli(&a);
        o.assert_success();
        o.json()
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with('/') {
            format!("http://{}{path}", self.api)
        } else {
            format!("http://{}/{path}", self.api)
        }
    }

    /// `GET <api><path>` → `(status, body)`; non-2xx statuses are returned.
    ///
    /// # Panics
    ///
    /// When no HTTP response came (with the agent log's tail).
    #[track_caller]
    pub fn http_get(&self, path: &str) -> (u16, String) {
        http_get_url(&self.url(path)).unwrap_or_else(|e| panic!("{e}\n{}", self.log_report(30)))
    }

    /// `POST <api><path>` with a JSON body; see [`Agent::http_get`].
    #[track_caller]
    pub fn http_post(&self, path: &str, body: &[u8]) -> (u16, String) {
        http_post_url(&self.url(path), body)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.log_report(30)))
    }

    /// `DELETE <api><path>`; see [`Agent::http_get`].
    #[track_caller]
    pub fn http_delete(&self, path: &str) -> (u16, String) {
        http_delete_url(&self.url(path)).unwrap_or_else(|e| panic!("{e}\n{}", self.log_report(30)))
    }

    /// `GET /v1/status`, asserting 200, as JSON.
    #[track_caller]
    pub fn status(&self) -> Value {
        let (code, body) = self.http_get("/v1/status");
        assert_eq!(code, 200, "GET /v1/status: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("/v1/status not JSON ({e}): {body}"))
    }

    /// Polls `/v1/status` until `leader_id` is set; returns that status.
    #[track_caller]
    pub fn wait_for_leader(&self, timeout: Duration) -> Value {
        poll_until_ok("a leader in /v1/status", timeout, || {
            let (code, body) = http_get_url(&self.url("/v1/status"))?;
            let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
            if code == 200 && !v["leader_id"].is_null() {
                Ok(v)
            } else {
                Err(format!("{code}: {body}"))
            }
        })
    }

    /// Full ids of the containers labelled `skein.node=<this node id>`.
    #[track_caller]
    pub fn containers(&self) -> Vec<String> {
        containers_with_labels_on(
            self.opts.docker_host_value(),
            &[&format!("skein.node={}", self.node_id)],
        )
    }

    /// The `DOCKER_HOST` this agent was given ([`AgentOpts::docker_host`]),
    /// `None` for the default engine; pass it to [`try_docker_on`].
    pub fn docker_host(&self) -> Option<&str> {
        self.opts.docker_host_value()
    }

    /// Full ids of this node's containers of `job` (labels `skein.node=<node
    /// id>` and `skein.job=<job>`), filtered by Docker itself.
    #[track_caller]
    pub fn job_containers(&self, job: &str) -> Vec<String> {
        containers_with_labels_on(
            self.opts.docker_host_value(),
            &[
                &format!("skein.node={}", self.node_id),
                &format!("skein.job={job}"),
            ],
        )
    }

    /// Kills the agent with SIGKILL (no clean shutdown) and reaps it. Its
    /// containers keep running. No-op if it is not running.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Waits up to `timeout` for the agent to exit by itself and returns
    /// its exit status (`None` if it still runs; it is left running).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        let status = try_poll_until(timeout, || child.try_wait().ok().flatten());
        if status.is_some() {
            self.child = None;
        }
        status
    }

    /// Sends SIGTERM and waits up to `grace` for the agent to exit, then
    /// SIGKILLs it. Returns the exit status (`None` if it had to be killed or
    /// was not running).
    pub fn terminate(&mut self, grace: Duration) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let status = try_poll_until(grace, || child.try_wait().ok().flatten());
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        status
    }

    /// Runs `bin` from the next (re)start on: upgrades and downgrades.
    pub fn set_bin(&mut self, bin: PathBuf) {
        self.bin = bin;
    }

    /// Starts the agent again after [`Agent::terminate`] or
    /// [`Agent::kill9`] (same data dir, port range and flags) and waits
    /// until it is ready.
    pub fn start_again(&mut self) {
        self.launch();
    }

    /// [`Agent::start_again`] for a start that may fail (a downgrade that
    /// refuses): `Err` holds the tail of the log when the agent exited or
    /// was not ready within `timeout`.
    pub fn try_start_again(&mut self, timeout: Duration) -> Result<(), String> {
        let saved = self.opts.ready_timeout.replace(timeout);
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.launch()));
        self.opts.ready_timeout = saved;
        r.map_err(|_| self.log_tail(60))
    }

    /// Restarts the agent on the same data dir and port range (SIGKILLing it
    /// first if it is still running) and waits until it is ready again. The
    /// API address changes; the node id must not (asserted).
    pub fn restart(&mut self) {
        self.kill9();
        self.launch();
    }
}

/// Appends a node id to `$SKEIN_E2E_NODE_LIST`, if set (best effort).
fn record_node_id(id: &str) {
    if let Some(path) = std::env::var_os("SKEIN_E2E_NODE_LIST").filter(|p| !p.is_empty()) {
        let r = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(format!("{id}\n").as_bytes()));
        if let Err(e) = r {
            eprintln!("skein-e2e: cannot append to SKEIN_E2E_NODE_LIST: {e}");
        }
    }
}

/// Two agents on loopback as one cluster: `a` bootstraps on a reserved
/// mesh port, `b` joins it with `a`'s cluster key. Holds a cluster permit
/// (see [`acquire_cluster_permit`]): several agents are as heavy as a
/// [`Cluster`]. The agents are dropped first, while what they use lives.
pub struct LoopbackPair {
    /// The bootstrapping node.
    pub a: Agent,
    /// The node that joined `a`.
    pub b: Agent,
    seed: String,
    _mesh: PortRange,
    _permit: File,
}

impl LoopbackPair {
    /// `a`'s mesh address, which other agents `--join`.
    pub fn seed(&self) -> &str {
        &self.seed
    }

    /// The cluster key file other agents need (`--cluster-key`).
    pub fn cluster_key(&self) -> PathBuf {
        self.a.data_dir().join("cluster.key")
    }

    /// Starts `a` with `--mesh 127.0.0.1:PORT` and waits until it leads,
    /// then `b` with `--join` and `--cluster-key`; `b` may not have joined
    /// yet when this returns ([`LoopbackPair::wait_joined`]).
    #[track_caller]
    pub fn start(a: AgentOpts, b: AgentOpts) -> LoopbackPair {
        let permit = acquire_cluster_permit();
        let mesh = reserve_port_range();
        let seed = format!("127.0.0.1:{}", mesh.first);
        let a = Agent::start(a.arg("--mesh").arg(&seed));
        a.wait_for_leader(Duration::from_secs(60));
        let key = a.data_dir().join("cluster.key");
        let b = Agent::start(
            b.arg("--join")
                .arg(&seed)
                .arg("--cluster-key")
                .arg(&key.display().to_string()),
        );
        LoopbackPair {
            a,
            b,
            seed,
            _mesh: mesh,
            _permit: permit,
        }
    }

    /// Starts one more agent that joins the pair's cluster (a third node,
    /// say); the caller keeps it, and drops it before the pair.
    #[track_caller]
    pub fn join(&self, opts: AgentOpts) -> Agent {
        Agent::start(
            opts.arg("--join")
                .arg(&self.seed)
                .arg("--cluster-key")
                .arg(&self.cluster_key().display().to_string()),
        )
    }

    /// Waits until `a` lists both nodes as ready.
    #[track_caller]
    pub fn wait_joined(&self, timeout: Duration) {
        poll_until("both nodes ready on a", timeout, || {
            let nodes = self.a.cli_json(&["node", "ls"]);
            let ready = nodes
                .as_array()?
                .iter()
                .filter(|n| n["health"] == "ready")
                .count();
            (ready == 2).then_some(())
        });
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
        if let Some(dir) = self.mounted.take() {
            // Lazy: a file still open elsewhere must not keep the mount.
            let out = run_with_timeout(Command::new("umount").arg("-l").arg(&dir), COMMAND_TIMEOUT);
            if !out.success() {
                eprintln!(
                    "skein-e2e: cannot unmount {}: {}",
                    dir.display(),
                    out.stderr
                );
            }
        }
        let mut id = self.node_id.clone();
        if id.is_empty() {
            // Never became ready: it may still have created its identity.
            id = fs::read_to_string(self.data_dir.join("node-id"))
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
        }
        if !id.is_empty() {
            let n = remove_containers_with_label_on(
                self.opts.docker_host_value(),
                &format!("skein.node={id}"),
            );
            if n > 0 && std::thread::panicking() {
                eprintln!("skein-e2e: removed {n} container(s) of node {id}");
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "skein-e2e: agent {} (node {id}) of the failed test:\n{}",
                self.api,
                self.log_report(80)
            );
            if std::env::var_os("SKEIN_E2E_KEEP_TMP").is_some_and(|v| v == "1") {
                if let Some(t) = self.tmp.as_mut() {
                    t.disable_cleanup(true);
                    eprintln!("skein-e2e: kept {}", self.scratch.display());
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Streaming commands
// ---------------------------------------------------------------------------

/// A running command whose stdout lines arrive on a channel (read by a
/// thread, so a test can wait for a line with a deadline). The process is
/// killed when this is dropped, pass or fail.
pub struct LineStream {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl LineStream {
    /// Spawns `cmd` with stdout piped and stderr discarded.
    pub fn spawn(mut cmd: Command) -> LineStream {
        use std::io::BufRead;
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn streaming command");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        LineStream { child, lines }
    }

    /// The next line, or `None` when `deadline` passed or the command
    /// ended first.
    pub fn next_line(&self, deadline: Instant) -> Option<String> {
        let left = deadline.saturating_duration_since(Instant::now());
        self.lines.recv_timeout(left).ok()
    }

    /// Reads lines until `f` returns `Some` for one; panics with the lines
    /// seen when `timeout` passes first.
    #[track_caller]
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&str) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let Some(line) = self.next_line(deadline) else {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; lines seen:\n{}",
                    seen.join("\n")
                );
            };
            if let Some(v) = f(&line) {
                return v;
            }
            seen.push(line);
        }
    }
}

impl Drop for LineStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
