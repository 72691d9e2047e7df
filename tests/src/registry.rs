//! A real image registry for tests: Debian's `docker-registry` (the CNCF
//! distribution registry, v2 API) on `127.0.0.1:<free port>`, storing blobs
//! in a temporary directory, optionally behind htpasswd basic auth.
//!
//! ```no_run
//! use skein_e2e::{images::unique_image, registry::Registry};
//!
//! let reg = Registry::start_with_auth("alice", "s3cret");
//! let img = unique_image("pull", 4);
//! let reference = reg.push(&img.reference, "team/app:1"); // "127.0.0.1:PORT/team/app:1"
//! assert!(!reg.log_text().contains("s3cret"));
//! # drop(reference);
//! ```
//!
//! The host's Docker Engine trusts `127.0.0.0/8` as an insecure registry, so
//! plain HTTP works for `docker push`/`pull` (and for any engine started by
//! [`crate::engine::Engine`], which runs with the same default).
//!
//! Dropping a [`Registry`] kills the process (it also dies with the test
//! process: `PR_SET_PDEATHSIG`) and deletes its directory — config, htpasswd
//! file, storage and log — also when the test panicked (the log's tail is
//! printed then).

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{run_with_timeout, try_poll_until, CliOutput, COMMAND_TIMEOUT, HTTP_TIMEOUT};

/// How long [`Registry::start`] waits for `GET /v2/` to answer.
pub const REGISTRY_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// How many times [`Registry::start`] picks another port when the registry
/// exits at once (another process took the port between the probe and the
/// registry's bind).
const START_ATTEMPTS: u32 = 5;

/// One running `docker-registry serve CONFIG` process. See the module docs.
pub struct Registry {
    child: Option<Child>,
    tmp: Option<tempfile::TempDir>,
    dir: PathBuf,
    addr: String,
    auth: Option<(String, String)>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("addr", &self.addr)
            .field("dir", &self.dir)
            .field("auth_user", &self.auth.as_ref().map(|(u, _)| u))
            .field("pid", &self.child.as_ref().map(Child::id))
            .finish()
    }
}

impl Registry {
    /// Starts a registry without authentication and waits until `GET
    /// /v2/` answers 200.
    ///
    /// # Panics
    ///
    /// If `docker-registry` is missing (`apt-get install docker-registry`),
    /// exits, or does not answer within [`REGISTRY_READY_TIMEOUT`]; with the
    /// tail of its log.
    pub fn start() -> Registry {
        Self::launch(None)
    }

    /// Starts a registry that requires HTTP basic auth as `user` / `pass`
    /// (an htpasswd file made by `htpasswd -Bbc`), and waits until `GET
    /// /v2/` answers 401.
    ///
    /// # Panics
    ///
    /// Like [`Registry::start`]; also if `htpasswd` (apache2-utils) is missing.
    pub fn start_with_auth(user: &str, pass: &str) -> Registry {
        Self::launch(Some((user.to_string(), pass.to_string())))
    }

    fn launch(auth: Option<(String, String)>) -> Registry {
        let tmp = tempfile::Builder::new()
            .prefix("skein-registry-")
            .tempdir()
            .expect("cannot create a temporary directory for the registry");
        let dir = tmp.path().to_path_buf();
        fs::create_dir_all(dir.join("data")).expect("create the registry's storage dir");
        let mut reg = Registry {
            child: None,
            tmp: Some(tmp),
            dir,
            addr: String::new(),
            auth,
        };
        if let Some((user, pass)) = &reg.auth {
            let file = reg.dir.join("htpasswd");
            let o = run_with_timeout(
                Command::new("htpasswd")
                    .arg("-Bbc")
                    .arg(&file)
                    .arg(user)
                    .arg(pass),
                COMMAND_TIMEOUT,
            );
            // The output names the file and user only; never print the command
            // (it holds the password).
            assert!(
                o.success(),
                "htpasswd -Bbc failed ({}): {}",
                o.status,
                o.stderr.trim()
            );
        }
        let mut last_failure = String::new();
        for attempt in 1..=START_ATTEMPTS {
            match reg.try_spawn(attempt) {
                Ok(()) => return reg,
                Err(e) => last_failure = e,
            }
        }
        panic!("the registry did not start after {START_ATTEMPTS} attempts: {last_failure}");
        // `reg` is dropped by the unwinding: directory removed.
    }

    /// One attempt on a fresh port: `Ok` once ready, `Err` when the process
    /// exited early (e.g. the port was taken). Panics when it is running but
    /// not answering in time.
    fn try_spawn(&mut self, attempt: u32) -> Result<(), String> {
        let port = free_port();
        self.addr = format!("127.0.0.1:{port}");
        let config = self.dir.join("config.yml");
        fs::write(&config, self.config_yaml()).expect("write the registry config");
        let log_path = self.log_path();
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("open {}: {e}", log_path.display()));
        let _ = writeln!(
            log,
            "=== skein-e2e: registry attempt {attempt} on {} ===",
            self.addr
        );
        let log_err = log.try_clone().expect("dup log file");
        let mut cmd = Command::new("docker-registry");
        cmd.arg("serve")
            .arg(&config)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        crate::die_with_parent(&mut cmd);
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot run docker-registry ({e}); install it with `apt-get install docker-registry`")
        });
        self.child = Some(child);

        let want = if self.auth.is_some() { 401 } else { 200 };
        let url = format!("{}/v2/", self.base_url());
        let start = Instant::now();
        let mut last = String::from("no answer yet");
        let mut exited = None;
        let child = self.child.as_mut().expect("just spawned");
        let ready = try_poll_until(REGISTRY_READY_TIMEOUT, || {
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some(status);
                return Some(false);
            }
            match crate::http_get_url(&url) {
                Ok((code, _)) if code == want => Some(true),
                Ok((code, body)) => {
                    last = format!("{code}: {body}");
                    None
                }
                Err(e) => {
                    last = e;
                    None
                }
            }
        });
        match ready {
            Some(true) => Ok(()),
            Some(false) => {
                self.child = None;
                Err(format!(
                    "docker-registry exited with {} on {} after {:.1?}\n{}",
                    exited.expect("exit status recorded"),
                    self.addr,
                    start.elapsed(),
                    self.log_report(30)
                ))
            }
            None => panic!(
                "the registry on {} did not answer GET /v2/ with {want} within {:?}; last: {last}\n{}",
                self.addr,
                REGISTRY_READY_TIMEOUT,
                self.log_report(30)
            ),
        }
    }

    fn config_yaml(&self) -> String {
        let mut y = [
            "version: 0.1".to_string(),
            "log:".into(),
            "  level: info".into(),
            "  formatter: text".into(),
            "storage:".into(),
            "  filesystem:".into(),
            format!("    rootdirectory: {}", self.dir.join("data").display()),
            "  delete:".into(),
            "    enabled: true".into(),
            "  maintenance:".into(),
            "    uploadpurging:".into(),
            "      enabled: false".into(),
            "http:".into(),
            format!("  addr: {}", self.addr),
        ]
        .join("\n");
        y.push('\n');
        if self.auth.is_some() {
            y.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: skein-test\n    path: {}\n",
                self.dir.join("htpasswd").display()
            ));
        }
        y
    }

    /// `127.0.0.1:PORT`, the registry part of an image reference.
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `(user, password)` when started with [`Registry::start_with_auth`].
    pub fn credentials(&self) -> Option<(&str, &str)> {
        self.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()))
    }

    /// The registry's directory (config, `htpasswd`, `data/`, `registry.log`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the registry's log (its stdout and stderr, access log included).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("registry.log")
    }

    /// The registry's whole log so far, e.g. to check that no request carried
    /// a password in its URL.
    pub fn log_text(&self) -> String {
        let mut buf = Vec::new();
        if let Ok(mut f) = File::open(self.log_path()) {
            let _ = f.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    }

    fn log_report(&self, n: usize) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- last {n} lines of {} ---\n{}\n--- end of registry log ---",
            self.log_path().display(),
            lines[lines.len().saturating_sub(n)..].join("\n")
        )
    }

    /// Pushes the host engine's image `local_image` to this registry as
    /// `repo_tag` (`name[:tag]`, e.g. `team/app:1`) and returns the full
    /// reference `127.0.0.1:PORT/team/app:1`.
    ///
    /// It tags the image with that reference, pushes it — with auth after a
    /// `docker login --password-stdin` into a temporary `DOCKER_CONFIG`
    /// directory, so `~/.docker` is never read or written — logs out, and
    /// removes the tag again (`docker rmi` of that reference only; the image
    /// keeps its other names). The tag is removed also when the push fails.
    ///
    /// # Panics
    ///
    /// When a step fails, with the command's output.
    #[track_caller]
    pub fn push(&self, local_image: &str, repo_tag: &str) -> String {
        let reference = format!("{}/{repo_tag}", self.addr);
        let config = tempfile::Builder::new()
            .prefix("skein-docker-config-")
            .tempdir()
            .expect("cannot create a temporary DOCKER_CONFIG");
        let docker = |args: &[&str]| -> Command {
            let mut c = Command::new("docker");
            c.env("DOCKER_CONFIG", config.path())
                .env_remove("DOCKER_CONTEXT")
                .args(args);
            c
        };
        let o = run_with_timeout(
            &mut docker(&["tag", local_image, &reference]),
            COMMAND_TIMEOUT,
        );
        o.assert_success();
        // From here on the tag exists: remove it whatever happens.
        let _untag = Untag {
            reference: reference.clone(),
        };
        if let Some((user, pass)) = &self.auth {
            let o = run_with_stdin(
                docker(&["login", "--username", user, "--password-stdin", &self.addr]),
                pass.as_bytes(),
                COMMAND_TIMEOUT,
            );
            o.assert_success();
        }
        let pushed = run_with_timeout(&mut docker(&["push", &reference]), COMMAND_TIMEOUT);
        if self.auth.is_some() {
            let o = run_with_timeout(&mut docker(&["logout", &self.addr]), COMMAND_TIMEOUT);
            if !o.success() {
                eprintln!("skein-e2e: {o}");
            }
        }
        drop(config);
        assert!(
            pushed.success(),
            "docker push failed: {pushed}\n{}",
            self.log_report(20)
        );
        reference
    }
}

/// `docker rmi <reference>` on drop (the tag only, never `-f`).
struct Untag {
    reference: String,
}

impl Drop for Untag {
    fn drop(&mut self) {
        if let Err(e) = crate::try_docker(&["rmi", &self.reference]) {
            eprintln!("skein-e2e: cannot remove the tag {}: {e}", self.reference);
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() && !self.addr.is_empty() {
            eprintln!(
                "skein-e2e: registry {} of the failed test:\n{}",
                self.addr,
                self.log_report(20)
            );
        }
        if let Some(tmp) = self.tmp.take() {
            let path = tmp.path().to_path_buf();
            if let Err(e) = tmp.close() {
                eprintln!("skein-e2e: cannot remove {}: {e}", path.display());
            }
        }
    }
}

/// A port that was free on 127.0.0.1 a moment ago (bound to port 0, then
/// released). Whoever uses it must cope with losing a race for it.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("cannot bind 127.0.0.1:0")
}

/// Runs `cmd` with `input` on its stdin (then closed) and stdout/stderr
/// captured; SIGKILLed after `timeout` (then this panics). The command line is
/// reported, `input` never is.
pub fn run_with_stdin(mut cmd: Command, input: &[u8], timeout: Duration) -> CliOutput {
    match crate::run_captured(&mut cmd, Some(input), timeout) {
        Ok((o, false)) => o,
        Ok((o, true)) => panic!("`{}` timed out after {timeout:?} and was killed", o.command),
        Err(e) => panic!("{e}"),
    }
}

/// `GET http://<addr>/v2/` with optional basic auth → status code; `Err`
/// when no response came. For self-tests and auth checks.
pub fn get_v2(addr: &str, basic_auth: Option<(&str, &str)>) -> Result<u16, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(HTTP_TIMEOUT))
        .proxy(None)
        .build()
        .into();
    let url = format!("http://{addr}/v2/");
    let mut req = agent.get(&url);
    if let Some((u, p)) = basic_auth {
        req = req.header(
            "authorization",
            format!("Basic {}", base64(format!("{u}:{p}").as_bytes())),
        );
    }
    req.call()
        .map(|r| r.status().as_u16())
        .map_err(|e| format!("GET {url}: {e}"))
}

/// Standard base64 with padding (enough for a basic-auth header, or to
/// look for an encoded secret).
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        out.push(T[(n >> 18) as usize & 63] as char);
        out.push(T[(n >> 12) as usize & 63] as char);
        out.push(if chunk.len() > 1 {
            T[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        out.push(if chunk.len() > 2 {
            T[n as usize & 63] as char
        } else {
            '='
        });
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_rfc4648() {
        assert_eq!(super::base64(b""), "");
        assert_eq!(super::base64(b"f"), "Zg==");
        assert_eq!(super::base64(b"fo"), "Zm8=");
        assert_eq!(super::base64(b"foo"), "Zm9v");
        assert_eq!(super::base64(b"alice:s3cret"), "YWxpY2U6czNjcmV0");
    }
}
