//! A second Docker Engine on this host, with its own image store, for tests
//! where nodes must not share images (pulls, image copies between nodes).
//!
//! [`Engine::start`] follows the recipe that works on the test machines:
//!
//! * a fresh directory `$TMPDIR/skeng-XXXXXX/` with `daemon.json` = `{}` (the
//!   host's `/etc/docker/daemon.json` would clash), `root/` (`--data-root`),
//!   `exec/` (`--exec-root`; a dockerd without `--containerd` starts its own
//!   containerd under it), `pid` (`--pidfile`), `docker.sock` (`--host`) and
//!   `dockerd.log`;
//! * its own bridge `skengXXXXXX` with `172.31.N.1/24`, `N` chosen so the
//!   subnet overlaps no address or route on the host and is held by an
//!   `flock` on `$TMPDIR/skein-e2e-engines/172.31.N.lock` while the engine
//!   lives (parallel tests and test processes never pick the same one). Never
//!   `docker0` and never `--bridge none`: a daemon with the bridge disabled
//!   deletes the host's `docker0`;
//! * `--iptables=false --ip-masq=false --storage-driver vfs`, and a private
//!   containerd namespace, so nothing it does touches the host engine.
//!   Published ports go through `docker-proxy` on the host, so
//!   `-p 127.0.0.1::80` works as usual.
//!
//! Point an agent at it with [`crate::AgentOpts::docker_host`]`(&engine.host())`
//! and give it images with [`Engine::load_from_host`] or a
//! [`crate::registry::Registry`]. Declare the engine before the agents that
//! use it, so that they are dropped (and sweep their containers) first:
//!
//! ```no_run
//! use skein_e2e::{engine::Engine, Agent, AgentOpts, DEMO_IMAGE};
//!
//! let engine = Engine::start();
//! engine.load_from_host(DEMO_IMAGE);
//! let agent = Agent::start(AgentOpts::default().docker_host(&engine.host()));
//! assert!(agent.containers().is_empty()); // asks `engine`, not the host's
//! ```
//!
//! Dropping an [`Engine`] — also when the test panicked — removes every
//! container on it, stops dockerd by its pid (SIGTERM, then SIGKILL after
//! [`ENGINE_STOP_TIMEOUT`]), kills any process still running from its
//! directory (its containerd and shims), unmounts whatever is still mounted
//! under the directory, deletes the bridge and then the directory. dockerd is
//! started with `PR_SET_PDEATHSIG = SIGKILL` (tied to the starting thread, as
//! for [`crate::Agent`]), so it dies with a test process that is killed
//! without unwinding. What such an engine leaves (container processes and
//! shims, mounts, bridge, directory) is named in its subnet's lock file and
//! removed by the next [`Engine::start`] of any test process, which first
//! sweeps every lock file that nobody holds.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::net::Ipv4Addr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{
    describe, random_u64, run_with_timeout, try_docker_on, try_poll_until, CliOutput,
    COMMAND_TIMEOUT,
};

/// How long [`Engine::start`] waits for `docker info` to answer.
pub const ENGINE_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// How long dropping an [`Engine`] waits for dockerd to exit after SIGTERM
/// before it SIGKILLs it.
pub const ENGINE_STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// The `/16` in which every engine gets its own `/24` (`172.31.N.0/24`).
const SUBNET_PREFIX: [u8; 2] = [172, 31];

/// One running second `dockerd`. See the module docs.
pub struct Engine {
    child: Option<Child>,
    tmp: Option<tempfile::TempDir>,
    dir: PathBuf,
    host: String,
    bridge: String,
    bridge_created: bool,
    third_octet: u8,
    subnet_lock: File,
    start_time: Duration,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("host", &self.host)
            .field("bridge", &self.bridge)
            .field("subnet", &self.subnet())
            .field("pid", &self.child.as_ref().map(Child::id))
            .finish()
    }
}

impl Engine {
    /// Starts a second Docker Engine and waits until `docker info` answers
    /// through its socket (at most [`ENGINE_READY_TIMEOUT`]).
    ///
    /// Start it on the thread that keeps using it (see the module docs).
    ///
    /// # Panics
    ///
    /// If no subnet is free, the bridge cannot be made (not root?), or
    /// dockerd exits or is not ready in time (with its log's tail). Whatever
    /// was set up by then is torn down.
    pub fn start() -> Engine {
        let started = Instant::now();
        let tmp = tempfile::Builder::new()
            .prefix("skeng-")
            .tempdir()
            .expect("cannot create a temporary directory for the engine");
        // /proc/mounts and the processes' command lines show the real path.
        let dir = fs::canonicalize(tmp.path()).unwrap_or_else(|_| tmp.path().to_path_buf());
        for sub in ["root", "exec"] {
            fs::create_dir_all(dir.join(sub)).expect("create the engine's directories");
        }
        fs::write(dir.join("daemon.json"), "{}\n").expect("write daemon.json");
        let (third_octet, lock) = reserve_subnet(&dir);
        let mut engine = Engine {
            child: None,
            tmp: Some(tmp),
            host: format!("unix://{}", dir.join("docker.sock").display()),
            dir,
            bridge: String::new(),
            bridge_created: false,
            third_octet,
            subnet_lock: lock,
            start_time: Duration::ZERO,
        };
        // From here on, a panic drops `engine`, which undoes what was done.
        engine.create_bridge();
        engine.spawn_dockerd();
        engine.wait_ready();
        engine.start_time = started.elapsed();
        engine
    }

    fn create_bridge(&mut self) {
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        let mut last = String::new();
        for _ in 0..5 {
            let mut r = random_u64();
            let mut name = String::from("skeng");
            for _ in 0..6 {
                name.push(ALPHABET[(r % 36) as usize] as char);
                r /= 36;
            }
            let o = run_with_timeout(
                Command::new("ip").args(["link", "add", &name, "type", "bridge"]),
                COMMAND_TIMEOUT,
            );
            if o.success() {
                self.bridge = name;
                self.bridge_created = true;
                let cidr = format!("{}/24", self.gateway());
                self.write_record();
                ip(&["addr", "add", &cidr, "dev", &self.bridge]);
                ip(&["link", "set", &self.bridge, "up"]);
                return;
            }
            last = o.to_string();
            if !o.stderr.contains("File exists") {
                break;
            }
        }
        panic!("cannot create a bridge for the engine (root needed): {last}");
    }

    fn spawn_dockerd(&mut self) {
        let d = &self.dir;
        let log_path = self.log_path();
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .unwrap_or_else(|e| panic!("open {}: {e}", log_path.display()));
        let log_err = log.try_clone().expect("dup log file");
        let ns = format!("skein-{}", self.bridge);
        let mut cmd = Command::new("dockerd");
        cmd.arg("--config-file")
            .arg(d.join("daemon.json"))
            .arg("--data-root")
            .arg(d.join("root"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("pid"))
            .args(["--host", &self.host, "--bridge", &self.bridge])
            .args([
                "--iptables=false",
                "--ip-masq=false",
                "--storage-driver",
                "vfs",
            ])
            // Should it share a system containerd after all, keep its
            // containers apart from the host engine's.
            .args(["--containerd-namespace", &ns])
            .args(["--containerd-plugins-namespace", &format!("{ns}-plugins")])
            .current_dir(d)
            .env_remove("DOCKER_HOST")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        crate::die_with_parent(&mut cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", describe(&cmd)));
        self.child = Some(child);
    }

    fn wait_ready(&mut self) {
        let start = Instant::now();
        let mut last = String::from("no answer yet");
        let mut exited = None;
        let host = self.host.clone();
        let child = self.child.as_mut().expect("dockerd spawned");
        let ready = try_poll_until(ENGINE_READY_TIMEOUT, || {
            if let Ok(Some(status)) = child.try_wait() {
                exited = Some(status);
                return Some(false);
            }
            let mut cmd = docker_cmd(&host, &["info", "--format", "{{.ServerVersion}}"]);
            match run_quietly(&mut cmd, Duration::from_secs(10)) {
                Ok(o) if !o.stdout.trim().is_empty() => Some(true),
                Ok(o) => {
                    last = o.to_string();
                    None
                }
                Err(e) => {
                    last = e;
                    None
                }
            }
        });
        match ready {
            Some(true) => {}
            Some(false) => {
                self.child = None;
                panic!(
                    "dockerd exited with {} before answering (after {:.1?})\n{}",
                    exited.expect("exit status recorded"),
                    start.elapsed(),
                    self.log_report(40)
                );
            }
            None => panic!(
                "dockerd at {} not ready after {:.1?}; last: {last}\n{}",
                self.host,
                start.elapsed(),
                self.log_report(40)
            ),
        }
    }

    /// `unix://<dir>/docker.sock`, a `DOCKER_HOST` value for this engine.
    pub fn host(&self) -> String {
        self.host.clone()
    }

    /// Runs `docker args…` against this engine (`DOCKER_HOST` set; at most
    /// [`COMMAND_TIMEOUT`]) and returns its stdout, trimmed; `Err` with the
    /// command and its stderr when it fails.
    pub fn docker(&self, args: &[&str]) -> Result<String, String> {
        try_docker_on(Some(&self.host), args)
    }

    /// Whether the image exists in this engine's store.
    pub fn has_image(&self, reference: &str) -> bool {
        self.image_id(reference).is_some()
    }

    /// The image's id (`sha256:…`) in this engine's store, `None` if absent.
    pub fn image_id(&self, reference: &str) -> Option<String> {
        self.docker(&["image", "inspect", "--format", "{{.Id}}", reference])
            .ok()
            .filter(|s| !s.is_empty())
    }

    /// Copies the host engine's image `reference` into this engine
    /// (`docker save` on the host to a file in this engine's directory, then
    /// `docker load` here) and returns its id here, which is the host's.
    ///
    /// # Panics
    ///
    /// If either side fails.
    #[track_caller]
    pub fn load_from_host(&self, reference: &str) -> String {
        let file = self.dir.join(format!("save-{:016x}.tar", random_u64()));
        let file_s = file.to_string_lossy().into_owned();
        let r = crate::try_docker(&["save", "-o", &file_s, reference])
            .and_then(|_| self.docker(&["load", "-i", &file_s]));
        let _ = fs::remove_file(&file);
        if let Err(e) = r {
            panic!(
                "copying {reference} from the host engine to {}: {e}",
                self.host
            );
        }
        self.image_id(reference)
            .unwrap_or_else(|| panic!("{reference} missing on {} after docker load", self.host))
    }

    /// The dockerd process id (`None` once it stopped).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The engine's directory (see the module docs); deleted on drop.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The bridge's name (`skeng` + 6 characters).
    pub fn bridge(&self) -> &str {
        &self.bridge
    }

    /// The bridge's subnet, `172.31.N.0/24`.
    pub fn subnet(&self) -> String {
        let [a, b] = SUBNET_PREFIX;
        format!("{a}.{b}.{}.0/24", self.third_octet)
    }

    /// The bridge's address, `172.31.N.1` (containers get the others).
    pub fn gateway(&self) -> Ipv4Addr {
        let [a, b] = SUBNET_PREFIX;
        Ipv4Addr::new(a, b, self.third_octet, 1)
    }

    /// How long [`Engine::start`] took until `docker info` answered.
    pub fn start_time(&self) -> Duration {
        self.start_time
    }

    /// Path of dockerd's log (stdout and stderr, containerd's output included).
    pub fn log_path(&self) -> PathBuf {
        self.dir.join("dockerd.log")
    }

    /// The last `n` lines of dockerd's log.
    pub fn log_tail(&self, n: usize) -> String {
        let mut buf = Vec::new();
        if let Ok(mut f) = File::open(self.log_path()) {
            let _ = f.read_to_end(&mut buf);
        }
        let text = String::from_utf8_lossy(&buf);
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    fn log_report(&self, n: usize) -> String {
        format!(
            "--- last {n} lines of {} ---\n{}\n--- end of dockerd log ---",
            self.log_path().display(),
            self.log_tail(n)
        )
    }

    /// Removes every container on this engine (best effort, never panics).
    fn remove_all_containers(&self) {
        let mut cmd = docker_cmd(&self.host, &["ps", "-aq", "--no-trunc"]);
        let ids = match run_quietly(&mut cmd, Duration::from_secs(30)) {
            Ok(o) => o.stdout.lines().map(str::to_string).collect::<Vec<_>>(),
            Err(e) => {
                eprintln!(
                    "skein-e2e: cannot list the containers of {}: {e}",
                    self.host
                );
                return;
            }
        };
        if ids.is_empty() {
            return;
        }
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(ids.iter().map(String::as_str));
        if let Err(e) = run_quietly(&mut docker_cmd(&self.host, &args), COMMAND_TIMEOUT) {
            eprintln!("skein-e2e: removing the containers of {}: {e}", self.host);
        }
    }

    /// SIGTERM, wait up to [`ENGINE_STOP_TIMEOUT`], SIGKILL.
    fn stop_dockerd(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        unsafe {
            libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
        }
        let exited = try_poll_until(ENGINE_STOP_TIMEOUT, || child.try_wait().ok().flatten());
        if exited.is_none() {
            eprintln!(
                "skein-e2e: dockerd {} ignored SIGTERM for {ENGINE_STOP_TIMEOUT:?}; SIGKILL",
                child.id()
            );
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn delete_bridge(&mut self) {
        if self.bridge_created && delete_link(&self.bridge) {
            self.bridge_created = false;
        }
    }

    /// Records in the subnet's lock file what this engine owns, so that an
    /// engine whose test process died without unwinding is cleaned up by the
    /// next [`Engine::start`] that can lock the file (see [`sweep_stale`]).
    fn write_record(&mut self) {
        write_record(&mut self.subnet_lock, &self.dir, Some(&self.bridge));
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        if panicking && self.child.is_some() {
            eprintln!(
                "skein-e2e: engine {} of the failed test:\n{}",
                self.host,
                self.log_report(40)
            );
        }
        if self.child.is_some() {
            self.remove_all_containers();
        }
        self.stop_dockerd();
        // Normally nothing is left; these catch a daemon that did not stop
        // its containers (e.g. it had to be SIGKILLed).
        kill_container_processes(&self.dir);
        kill_processes_under(&self.dir);
        unmount_all(&self.dir);
        self.delete_bridge();
        let mut dir_removed = true;
        if let Some(tmp) = self.tmp.take() {
            if let Err(e) = tmp.close() {
                dir_removed = false;
                eprintln!("skein-e2e: cannot remove {}: {e}", self.dir.display());
            }
        }
        if dir_removed && !self.bridge_created {
            // Nothing left for a later sweep.
            let _ = self.subnet_lock.set_len(0);
        }
        // The subnet lock is released when the struct's fields drop, after this.
    }
}

/// Removes what an engine of a dead test process left behind: its container
/// processes, containerd(-shim) processes, mounts, bridge and directory.
/// Never panics.
fn purge(dir: &Path, bridge: Option<&str>) {
    if dir.is_dir() {
        kill_container_processes(dir);
        kill_processes_under(dir);
        unmount_all(dir);
    }
    if let Some(b) = bridge {
        if Path::new("/sys/class/net").join(b).exists() {
            delete_link(b);
        }
    }
    if dir.is_dir() {
        if let Err(e) = fs::remove_dir_all(dir) {
            eprintln!("skein-e2e: cannot remove {}: {e}", dir.display());
        }
    }
}

/// Cleans up after engines whose test process died without unwinding
/// (SIGKILLed by a test runner's timeout, abort): every subnet lock file that
/// nobody holds goes through [`purge_recorded`]. The lock guarantees that
/// its owner is gone.
fn sweep_stale(lock_dir: &Path) {
    let Ok(rd) = fs::read_dir(lock_dir) else {
        return;
    };
    for entry in rd.filter_map(Result::ok) {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "lock") {
            continue;
        }
        let Ok(mut f) = OpenOptions::new().read(true).write(true).open(&path) else {
            continue;
        };
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue; // A live engine.
        }
        purge_recorded(&mut f, &path);
    }
}

/// Given a locked subnet lock file: if it still names a directory or bridge
/// (written by [`Engine`], whose drop clears it after cleaning up), [`purge`]s
/// them and clears the record.
fn purge_recorded(f: &mut File, path: &Path) {
    let mut text = String::new();
    let _ = f.seek(SeekFrom::Start(0));
    let _ = f.read_to_string(&mut text);
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
            .map(str::trim)
            .filter(|v| !v.is_empty())
    };
    // Only what an Engine makes: `$TMPDIR/skeng-XXXXXX` and `skeng…` bridges.
    let dir = field("dir").map(PathBuf::from).filter(|d| {
        d.is_absolute()
            && d.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("skeng-"))
    });
    let bridge = field("bridge").filter(|b| b.starts_with("skeng") && b.len() <= 15);
    let dir_left = dir.as_deref().is_some_and(Path::is_dir);
    let bridge_left = bridge.is_some_and(|b| Path::new("/sys/class/net").join(b).exists());
    if dir_left || bridge_left {
        eprintln!(
            "skein-e2e: cleaning up a stale engine ({}): dir {dir:?}, bridge {bridge:?}",
            path.display()
        );
        purge(dir.as_deref().unwrap_or(Path::new("/nonexistent")), bridge);
    }
    let _ = f.set_len(0);
}

/// Replaces the lock file's record: the owner's pid (for humans), `dir` and
/// the bridge, if made yet.
fn write_record(f: &mut File, dir: &Path, bridge: Option<&str>) {
    let mut record = format!("pid {}\ndir {}\n", std::process::id(), dir.display());
    if let Some(b) = bridge {
        record.push_str(&format!("bridge {b}\n"));
    }
    let _ = f.set_len(0);
    let _ = f.seek(SeekFrom::Start(0));
    let _ = f.write_all(record.as_bytes());
}

/// `ip link del NAME`; whether it worked (failures are printed).
fn delete_link(name: &str) -> bool {
    let mut cmd = Command::new("ip");
    cmd.args(["link", "del", name]);
    match run_quietly(&mut cmd, Duration::from_secs(30)) {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skein-e2e: cannot delete bridge {name}: {e}");
            false
        }
    }
}

/// SIGKILLs the processes of the engine's containers that are still alive
/// (found through their cgroups, `/sys/fs/cgroup/…/docker/<id>`, for each
/// container directory under `<dir>/root/containers/`) and removes the
/// then-empty cgroups. Normally there are none: `docker rm -f` removed them.
fn kill_container_processes(dir: &Path) {
    let Ok(rd) = fs::read_dir(dir.join("root/containers")) else {
        return;
    };
    let ids: Vec<String> = rd
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|id| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect();
    if ids.is_empty() {
        return;
    }
    let mut cgroups = Vec::new();
    for id in &ids {
        // cgroup v2 (unified at the root) and every v1 hierarchy.
        cgroups.push(PathBuf::from(format!("/sys/fs/cgroup/docker/{id}")));
        if let Ok(hier) = fs::read_dir("/sys/fs/cgroup") {
            for h in hier.filter_map(Result::ok) {
                cgroups.push(h.path().join("docker").join(id));
            }
        }
    }
    cgroups.retain(|c| c.is_dir());
    let pids_of = |cgroups: &[PathBuf]| -> Vec<libc::pid_t> {
        let mut v: Vec<libc::pid_t> = cgroups
            .iter()
            .filter_map(|c| fs::read_to_string(c.join("cgroup.procs")).ok())
            .flat_map(|s| {
                s.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .collect::<Vec<_>>()
            })
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let pids = pids_of(&cgroups);
    if !pids.is_empty() {
        eprintln!(
            "skein-e2e: killing {} leftover container process(es) of {}: {pids:?}",
            pids.len(),
            dir.display()
        );
        if !kill_until_gone(|| pids_of(&cgroups)) {
            eprintln!(
                "skein-e2e: container processes of {} survive",
                dir.display()
            );
        }
    }
    for c in &cgroups {
        let _ = fs::remove_dir(c);
    }
}

/// SIGKILLs the processes `find` lists until it lists none (bounded: 10 s);
/// false when some survive.
fn kill_until_gone(mut find: impl FnMut() -> Vec<libc::pid_t>) -> bool {
    try_poll_until(Duration::from_secs(10), || {
        let left = find();
        for &p in &left {
            // SAFETY: kill(2) with a pid we found; a stale pid is harmless.
            unsafe {
                libc::kill(p, libc::SIGKILL);
            }
        }
        left.is_empty().then_some(())
    })
    .is_some()
}

/// SIGKILLs every process whose command line mentions `dir/` (the engine's
/// dockerd, containerd and containerd-shims, should any be left) and waits
/// (bounded) until they are gone.
fn kill_processes_under(dir: &Path) {
    // `DIR/`: their arguments name files inside it.
    let mut needle = dir.as_os_str().as_bytes().to_vec();
    needle.push(b'/');
    let me = std::process::id() as libc::pid_t;
    let find = || -> Vec<libc::pid_t> {
        let Ok(rd) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        rd.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok())
            .filter(|&pid| pid != me && !is_zombie(pid))
            .filter(|pid| {
                fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle.as_slice()))
            })
            .collect()
    };
    let pids = find();
    if pids.is_empty() {
        return;
    }
    eprintln!(
        "skein-e2e: killing {} leftover process(es) of {}: {pids:?}",
        pids.len(),
        dir.display()
    );
    // They are not our children: wait until they are gone or zombies (their
    // new parent reaps them).
    if !kill_until_gone(find) {
        eprintln!(
            "skein-e2e: processes of {} survive: {:?}",
            dir.display(),
            find()
        );
    }
}

/// Unmounts everything mounted at or under `dir`, deepest first (dockerd
/// bind-mounts its data root onto itself and keeps network namespaces as
/// mounts under its exec root; a killed daemon leaves them).
fn unmount_all(dir: &Path) {
    for _ in 0..3 {
        let mounts = mounts_under(dir);
        if mounts.is_empty() {
            return;
        }
        for m in &mounts {
            let Ok(c) = CString::new(m.as_os_str().as_bytes()) else {
                continue;
            };
            // SAFETY: a valid NUL-terminated path.
            if unsafe { libc::umount2(c.as_ptr(), 0) } != 0 {
                // Busy: detach it; the kernel frees it when unused.
                unsafe {
                    libc::umount2(c.as_ptr(), libc::MNT_DETACH);
                }
            }
        }
    }
    let left = mounts_under(dir);
    if !left.is_empty() {
        eprintln!("skein-e2e: still mounted under {}: {left:?}", dir.display());
    }
}

/// `ip args…`, panicking with the output on failure.
#[track_caller]
fn ip(args: &[&str]) {
    run_with_timeout(Command::new("ip").args(args), COMMAND_TIMEOUT).assert_success();
}

/// A `docker` command against `host`.
fn docker_cmd(host: &str, args: &[&str]) -> Command {
    let mut c = Command::new("docker");
    c.env("DOCKER_HOST", host)
        .env_remove("DOCKER_CONTEXT")
        .args(args);
    c
}

/// Runs `cmd` (stdin closed, output captured) for at most `timeout`, never
/// panicking: `Err` with a description when it cannot start, fails or times
/// out (then it is SIGKILLed). For clean-up code that runs during unwinding,
/// where a second panic would abort the test process.
pub(crate) fn run_quietly(cmd: &mut Command, timeout: Duration) -> Result<CliOutput, String> {
    match crate::run_captured(cmd, None, timeout)? {
        (o, false) if o.success() => Ok(o),
        (o, false) => Err(o.to_string()),
        (o, true) => Err(format!(
            "`{}` timed out after {timeout:?} and was killed",
            o.command
        )),
    }
}

fn is_zombie(pid: libc::pid_t) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1;
            after.split_whitespace().next().map(|st| st == "Z")
        })
        .unwrap_or(false)
}

/// Mount points at or under `dir` (from `/proc/self/mounts`), deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let mut v: Vec<PathBuf> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|m| PathBuf::from(unescape_mount(m)))
        .filter(|m| m.starts_with(dir))
        .collect();
    v.sort_by_key(|m| std::cmp::Reverse(m.as_os_str().len()));
    v.dedup();
    v
}

/// Undoes the octal escapes of `/proc/mounts` (`\040` for a space, …).
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An IPv4 network `(address, prefix length)`.
type Net = (u32, u8);

fn parse_net(s: &str) -> Option<Net> {
    let (a, p) = match s.split_once('/') {
        Some((a, p)) => (a, p.parse::<u8>().ok()?),
        None => (s, 32),
    };
    let a: Ipv4Addr = a.parse().ok()?;
    (p <= 32).then_some((u32::from(a), p))
}

fn overlaps(a: Net, b: Net) -> bool {
    let p = a.1.min(b.1);
    let mask = if p == 0 { 0 } else { u32::MAX << (32 - p) };
    a.0 & mask == b.0 & mask
}

/// Every IPv4 network in use on the host: interface addresses and routes of
/// all tables (the default route excluded).
fn networks_in_use() -> Vec<Net> {
    let mut nets = Vec::new();
    let addrs = run_with_timeout(
        Command::new("ip").args(["-o", "-4", "addr", "show"]),
        COMMAND_TIMEOUT,
    );
    addrs.assert_success();
    for line in addrs.stdout.lines() {
        let mut it = line.split_whitespace();
        while let Some(w) = it.next() {
            if w == "inet" {
                nets.extend(it.next().and_then(parse_net));
            }
        }
    }
    let routes = run_with_timeout(
        Command::new("ip").args(["-4", "route", "show", "table", "all"]),
        COMMAND_TIMEOUT,
    );
    routes.assert_success();
    for line in routes.stdout.lines() {
        let mut words = line.split_whitespace();
        let mut first = words.next().unwrap_or("");
        // Typed routes: `blackhole 10.0.0.0/8`, `local 127.0.0.1`, …
        if matches!(
            first,
            "unicast" | "local" | "broadcast" | "blackhole" | "unreachable" | "prohibit" | "throw"
        ) {
            first = words.next().unwrap_or("");
        }
        nets.extend(parse_net(first));
    }
    nets
}

/// Picks `N` for `172.31.N.0/24`: starting at a random `N`, the first one
/// whose lock file can be `flock`ed and that overlaps nothing on the host.
/// Stale engines are swept first ([`sweep_stale`]); the lock file gets a
/// record naming `dir`.
fn reserve_subnet(dir: &Path) -> (u8, File) {
    let lock_dir = std::env::temp_dir().join("skein-e2e-engines");
    let _ = fs::create_dir_all(&lock_dir);
    let _ = fs::set_permissions(
        &lock_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    );
    sweep_stale(&lock_dir);
    let in_use = networks_in_use();
    let [a, b] = SUBNET_PREFIX;
    let start = (random_u64() % 256) as usize;
    for i in 0..256 {
        let n = ((start + i) % 256) as u8;
        // .0 and .255 are legal third octets but look odd in logs; skip them.
        if n == 0 || n == 255 {
            continue;
        }
        let net = (u32::from(Ipv4Addr::new(a, b, n, 0)), 24);
        if in_use.iter().any(|&u| overlaps(u, net)) {
            continue;
        }
        let lock_path = lock_dir.join(format!("{a}.{b}.{n}.lock"));
        let Ok(mut lock) = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&lock_path)
        else {
            continue;
        };
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            continue;
        }
        // A holder that died since the sweep.
        purge_recorded(&mut lock, &lock_path);
        // Locked: now nobody else can take it, but check again in case it was
        // taken between the listing and the lock.
        if networks_in_use().iter().any(|&u| overlaps(u, net)) {
            continue;
        }
        write_record(&mut lock, dir, None);
        return (n, lock);
    }
    panic!("no free /24 in {a}.{b}.0.0/16 for a second Docker Engine");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nets_overlap() {
        let n = |s| parse_net(s).unwrap();
        assert!(overlaps(n("172.31.5.0/24"), n("172.31.5.1/24")));
        assert!(overlaps(n("172.16.0.0/12"), n("172.31.5.0/24")));
        assert!(overlaps(n("172.31.5.7"), n("172.31.5.0/24")));
        assert!(!overlaps(n("172.31.6.0/24"), n("172.31.5.0/24")));
        assert!(!overlaps(n("172.17.0.0/16"), n("172.31.5.0/24")));
        assert!(overlaps(n("0.0.0.0/0"), n("172.31.5.0/24")));
    }

    #[test]
    fn mount_paths_unescape() {
        assert_eq!(unescape_mount(r"/tmp/a\040b"), "/tmp/a b");
        assert_eq!(unescape_mount("/tmp/plain"), "/tmp/plain");
        assert_eq!(unescape_mount(r"/tmp/x\04"), r"/tmp/x\04");
    }
}
