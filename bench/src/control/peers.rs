//! The peers Skein is measured against, each behind a guard that removes
//! what it made: containers started by hand ([`Sweep`], [`docker_run`]), a
//! one-node Docker Swarm on loopback ([`Swarm`]) and etcd members on
//! loopback ([`Etcd`]).

use std::fs::File;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::Value;
use skein_e2e::{
    die_with_parent, http_get_url, http_post_url, remove_containers_with_label, reserve_port_range,
    try_docker, try_poll_until, unique_name, PortRange,
};

/// Force-removes every container labelled `label` when dropped.
pub struct Sweep {
    /// `skein.bench=RUN`.
    pub label: String,
}

impl Sweep {
    /// A fresh label `skein.bench=PREFIX-xxxxxx` to sweep.
    pub fn new(prefix: &str) -> Sweep {
        Sweep {
            label: format!("skein.bench={}", unique_name(prefix)),
        }
    }
}

impl Drop for Sweep {
    fn drop(&mut self) {
        remove_containers_with_label(&self.label);
    }
}

/// `docker run -d --label LABEL IMAGE` `n` times, `parallel` at once (an
/// operator's loop with `xargs -P`): `Err` with the first failure.
pub fn docker_run(n: usize, parallel: usize, label: &str, image: &str) -> Result<(), String> {
    let next = AtomicUsize::new(0);
    let failed: Mutex<Option<String>> = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..parallel {
            s.spawn(|| {
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    if let Err(e) = try_docker(&["run", "-d", "--label", label, image]) {
                        failed
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

// ---------------------------------------------------------------------------
// Docker Swarm
// ---------------------------------------------------------------------------

/// The host's engine as a one-node swarm (`docker swarm init
/// --advertise-addr 127.0.0.1 --listen-addr 127.0.0.1:2377`). Dropping it
/// removes its services, leaves with `--force`, sweeps their containers
/// and removes `docker_gwbridge` if the swarm created it.
pub struct Swarm {
    label: String,
    made_gwbridge: bool,
}

impl Swarm {
    /// Makes the swarm; `Err` when the engine is in a swarm already (not
    /// ours to leave) or `init` fails.
    pub fn init() -> Result<Swarm, String> {
        let state = try_docker(&["info", "--format", "{{.Swarm.LocalNodeState}}"])?;
        if state != "inactive" {
            return Err(format!(
                "the engine's swarm state is {state:?}, not \"inactive\": it is someone \
                 else's swarm, left alone"
            ));
        }
        let made_gwbridge = try_docker(&["network", "inspect", "docker_gwbridge"]).is_err();
        let swarm = Swarm {
            label: format!("skein.bench={}", unique_name("swarm")),
            made_gwbridge,
        };
        try_docker(&[
            "swarm",
            "init",
            "--advertise-addr",
            "127.0.0.1",
            "--listen-addr",
            "127.0.0.1:2377",
        ])?;
        Ok(swarm)
    }

    /// The label on every service and container of this swarm.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// `docker service create --detach --replicas n` of `image`: returns
    /// once the command did (the tasks start after).
    pub fn create(&self, name: &str, n: usize, image: &str) -> Result<(), String> {
        try_docker(&[
            "service",
            "create",
            "--detach",
            "--quiet",
            "--no-resolve-image",
            "--name",
            name,
            "--label",
            &self.label,
            "--container-label",
            &self.label,
            "--replicas",
            &n.to_string(),
            image,
        ])
        .map(drop)
    }

    /// Removes every service of this swarm and their containers.
    pub fn clear(&self) {
        let filter = format!("label={}", self.label);
        if let Ok(ids) = try_docker(&["service", "ls", "-q", "--filter", &filter]) {
            let mut args = vec!["service", "rm"];
            args.extend(ids.lines());
            if args.len() > 2 {
                if let Err(e) = try_docker(&args) {
                    eprintln!("control: {e}");
                }
            }
        }
        // The swarm removes the tasks' containers itself; sweeping at the
        // same time only races it. Whatever is left after a minute goes.
        let _ = try_poll_until(Duration::from_secs(60), || {
            // Never panics: this runs in `drop` too.
            try_docker(&["ps", "-aq", "--filter", &filter])
                .map_or(true, |ids| ids.is_empty())
                .then_some(())
        });
        remove_containers_with_label(&self.label);
    }
}

impl Drop for Swarm {
    fn drop(&mut self) {
        self.clear();
        if let Err(e) = try_docker(&["swarm", "leave", "--force"]) {
            eprintln!("control: {e}");
        }
        remove_containers_with_label(&self.label);
        if self.made_gwbridge {
            // Best effort: it may take a moment to lose its last endpoint.
            let _ = try_poll_until(Duration::from_secs(10), || {
                try_docker(&["network", "rm", "docker_gwbridge"])
                    .ok()
                    .or_else(|| try_docker(&["network", "inspect", "docker_gwbridge"]).err())
            });
        }
    }
}

// ---------------------------------------------------------------------------
// etcd
// ---------------------------------------------------------------------------

/// `n` etcd members on loopback (Debian's `etcd`, its v3 HTTP gateway on
/// each client URL), data and logs in a temporary directory; killed and
/// removed when dropped.
pub struct Etcd {
    members: Vec<Child>,
    /// Client URL of each member, `http://127.0.0.1:PORT`.
    pub clients: Vec<String>,
    dir: tempfile::TempDir,
    _ports: PortRange,
}

impl Etcd {
    /// Starts the members and waits until each is healthy and they agree
    /// on a leader.
    pub fn start(n: usize) -> Result<Etcd, String> {
        let ports = reserve_port_range();
        let dir = tempfile::Builder::new()
            .prefix("skein-bench-etcd-")
            .tempdir()
            .map_err(|e| format!("temporary directory: {e}"))?;
        let first = ports.first;
        let peer = move |i: usize| format!("http://127.0.0.1:{}", first + 2 * i as u16 + 1);
        let clients: Vec<String> = (0..n)
            .map(|i| format!("http://127.0.0.1:{}", first + 2 * i as u16))
            .collect();
        let initial: Vec<String> = (0..n).map(|i| format!("e{i}={}", peer(i))).collect();
        let token = unique_name("etcd");
        let mut etcd = Etcd {
            members: Vec::new(),
            clients,
            dir,
            _ports: ports,
        };
        for i in 0..n {
            let log = File::create(etcd.dir.path().join(format!("e{i}.log")))
                .map_err(|e| format!("etcd log: {e}"))?;
            let log2 = log.try_clone().map_err(|e| format!("etcd log: {e}"))?;
            let mut cmd = Command::new("etcd");
            cmd.arg("--name")
                .arg(format!("e{i}"))
                .arg("--data-dir")
                .arg(etcd.dir.path().join(format!("e{i}.data")))
                .args(["--listen-client-urls", &etcd.clients[i]])
                .args(["--advertise-client-urls", &etcd.clients[i]])
                .args(["--listen-peer-urls", &peer(i)])
                .args(["--initial-advertise-peer-urls", &peer(i)])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new"])
                .args(["--initial-cluster-token", &token])
                .args(["--logger", "zap", "--log-level", "warn"])
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2);
            die_with_parent(&mut cmd);
            let child = cmd.spawn().map_err(|e| {
                format!("cannot start etcd ({e}): install it with `apt-get install etcd-server`")
            })?;
            etcd.members.push(child);
        }
        let ready = try_poll_until(Duration::from_secs(60), || {
            let healthy = etcd.clients.iter().all(|c| {
                matches!(http_get_url(&format!("{c}/health")),
                         Ok((200, b)) if b.contains("true"))
            });
            (healthy && etcd.leader().is_some()).then_some(())
        });
        if ready.is_none() {
            return Err(format!("etcd not healthy after 60 s:\n{}", etcd.logs()));
        }
        Ok(etcd)
    }

    /// `POST /v3/maintenance/status` on member `i`: (its id, the leader's).
    fn status(&self, i: usize) -> Option<(String, String)> {
        let (code, body) =
            http_post_url(&format!("{}/v3/maintenance/status", self.clients[i]), b"{}").ok()?;
        let v: Value = serde_json::from_str(&body).ok()?;
        let id = v["header"]["member_id"].as_str()?.to_string();
        let leader = v["leader"].as_str()?.to_string();
        (code == 200).then_some((id, leader))
    }

    /// The index of the member all members name as leader.
    pub fn leader(&self) -> Option<usize> {
        let st: Vec<(String, String)> = (0..self.clients.len())
            .map(|i| self.status(i))
            .collect::<Option<_>>()?;
        let leader = &st.first()?.1;
        if st.iter().any(|(_, l)| l != leader) {
            return None;
        }
        st.iter().position(|(id, _)| id == leader)
    }

    fn logs(&self) -> String {
        (0..self.members.len())
            .map(|i| {
                let p = self.dir.path().join(format!("e{i}.log"));
                let text = std::fs::read_to_string(p).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(10).collect();
                format!(
                    "--- e{i} ---\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for c in &mut self.members {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
