//! The job spec: what a user wants running, in Skein's own terms.
//!
//! Every input format (native YAML jobs, Kubernetes `Deployment` manifests)
//! is converted into a [`JobSpec`] at the edge, so the control plane, the
//! scheduler and the executor only ever see this one shape. The API also
//! receives specs as JSON from any client, so [`JobSpec::validate`] is the
//! single gate every spec passes before it can reach Raft.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use crate::image::PullPolicy;
pub use container::{
    is_capability, mount_path_problem, Capabilities, ContainerSpec, DnsOption, DnsPolicy, DnsSpec,
    Hook, HostAccess, HostAlias, HostPathMount, Lifecycle, SecuritySpec, CAPABILITIES,
    DEFAULT_PIDS_LIMIT, DOCKER_SOCKETS, MAX_GRACE_PERIOD_SECS, MAX_HOST_PATHS, MAX_ID,
    MAX_NAMESERVERS, MAX_PIDS_LIMIT, MAX_SEARCHES,
};

mod container;

/// Default CPU request when a spec gives none: enough to schedule, small
/// enough that a 1-core edge box still fits several replicas.
pub const DEFAULT_CPU_MILLIS: u64 = 100;
/// Default memory request when a spec gives none (64 MiB).
pub const DEFAULT_MEMORY_BYTES: u64 = 64 * 1024 * 1024;
/// Upper bound on replicas of one job; guards the scheduler against typos
/// such as `replicas: 30000000`.
pub const MAX_REPLICAS: u32 = 10_000;
/// Largest CPU amount accepted, in millicores (a million cores): far above
/// any machine, far below what overflows Docker's `NanoCpus` (an i64).
pub const MAX_CPU_MILLIS: u64 = 1_000_000_000;
/// Largest memory amount accepted (1 PiB), far below Docker's i64 limit.
pub const MAX_MEMORY_BYTES: u64 = 1 << 50;

/// A job: `replicas` identical containers of one image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Unique job name; a DNS label (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, ≤ 63).
    pub name: String,
    /// How many containers should run.
    pub replicas: u32,
    /// Docker image reference, e.g. `skein-demo/web:latest`.
    pub image: String,
    /// Overrides the image's entrypoint (Kubernetes `command`).
    #[serde(default)]
    pub command: Vec<String>,
    /// Overrides the image's cmd (Kubernetes `args`).
    #[serde(default)]
    pub args: Vec<String>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Ports the container listens on and how they are published.
    #[serde(default)]
    pub ports: Vec<PortSpec>,
    /// What the scheduler reserves and what Docker enforces.
    #[serde(default)]
    pub resources: Resources,
    /// What happens when a container exits.
    #[serde(default)]
    pub restart: RestartPolicy,
    /// Free-form labels, copied onto containers as `skein.label.<key>`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Node labels a node must carry to receive this job (`nodeSelector`).
    #[serde(default)]
    pub constraints: BTreeMap<String, String>,
    /// How replicas are spread over nodes.
    #[serde(default)]
    pub placement: PlacementStrategy,
    /// Exposes the replicas as a service (DNS name, routing-mesh port).
    #[serde(default)]
    pub service: Option<ServiceSpec>,
    /// Health checks run against each container.
    #[serde(default)]
    pub checks: Vec<CheckSpec>,
    /// How a new version replaces the running one.
    #[serde(default)]
    pub update: UpdateStrategy,
    /// When nodes fetch the image (`imagePullPolicy`); `None` means
    /// Kubernetes' default for the image ([`JobSpec::pull_policy`]).
    #[serde(default)]
    pub pull: Option<PullPolicy>,
    /// Named registry credentials for the image (`imagePullSecrets`): pull
    /// secrets applied in the same request or earlier.
    #[serde(default)]
    pub pull_secrets: Vec<String>,
    /// How the container runs: user, privileges, hooks, resolver, limits.
    #[serde(default)]
    pub container: ContainerSpec,
}

/// How a spec change rolls out: new replicas replace old ones a few at a
/// time, so the job keeps serving while it is updated (Kubernetes'
/// `RollingUpdate`). Not part of the job's template: changing only this
/// (or `replicas`) starts no new version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpdateStrategy {
    /// Replicas that may exist above `replicas` during an update (`maxSurge`).
    #[serde(default = "default_surge")]
    pub max_surge: u32,
    /// Replicas that may be unavailable (not running and ready) during an
    /// update (`maxUnavailable`).
    #[serde(default)]
    pub max_unavailable: u32,
    /// An update that makes no progress (no new replica became ready) for
    /// this long is rolled back (`progressDeadlineSeconds`).
    #[serde(default = "default_progress_deadline")]
    pub progress_deadline_secs: u32,
}

impl Default for UpdateStrategy {
    fn default() -> Self {
        Self {
            max_surge: default_surge(),
            max_unavailable: 0,
            progress_deadline_secs: default_progress_deadline(),
        }
    }
}

fn default_surge() -> u32 {
    1
}
fn default_progress_deadline() -> u32 {
    120
}

/// Longest progress deadline accepted (one day): a longer one is a typo.
pub const MAX_PROGRESS_DEADLINE_SECS: u32 = 86_400;

/// A job's replicas as one service: `NAME.service.skein` in DNS, and
/// optionally a port published on every node (the routing mesh).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Service name (a DNS label); defaults to the job name.
    pub name: String,
    /// The container port that serves: a port name or number from
    /// `ports`; `None` = the first port.
    #[serde(default)]
    pub port: Option<String>,
    /// Port opened on every node that forwards to a healthy replica.
    #[serde(default)]
    pub publish: Option<u16>,
    /// How the routing mesh picks a replica.
    #[serde(default)]
    pub balance: Balance,
}

/// Load-balancing policy of the routing mesh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Balance {
    /// Each new connection goes to the next healthy replica.
    #[default]
    RoundRobin,
    /// Each new connection goes to the replica with the fewest open ones.
    LeastConnections,
}

/// What a failing check means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// Failing: the container is restarted (`livenessProbe`).
    Liveness,
    /// Failing: the replica gets no traffic (`readinessProbe`).
    Readiness,
}

/// How a check probes the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Probe {
    /// `GET path` on a container port answers 200-399.
    Http {
        /// Container port.
        port: u16,
        /// Request path.
        #[serde(default = "default_path")]
        path: String,
    },
    /// A TCP connection to a container port succeeds.
    Tcp {
        /// Container port.
        port: u16,
    },
    /// A command run inside the container exits 0.
    Exec {
        /// Command and arguments.
        command: Vec<String>,
    },
}

fn default_path() -> String {
    "/".into()
}

/// One health check (Kubernetes probe semantics).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSpec {
    /// Liveness or readiness.
    pub kind: CheckKind,
    /// The probe.
    pub probe: Probe,
    /// Seconds between probes (`periodSeconds`, default 10).
    #[serde(default = "default_period")]
    pub period_secs: u32,
    /// Seconds before a probe counts as failed (`timeoutSeconds`, default 1).
    #[serde(default = "default_timeout")]
    pub timeout_secs: u32,
    /// Seconds after start before the first probe (`initialDelaySeconds`).
    #[serde(default)]
    pub initial_delay_secs: u32,
    /// Consecutive failures that make the check fail (`failureThreshold`, default 3).
    #[serde(default = "default_threshold")]
    pub failure_threshold: u32,
}

impl CheckSpec {
    /// A check of `kind` with Kubernetes' default timing: every 10 s,
    /// 1 s timeout, no initial delay, failing after 3 misses in a row.
    pub fn new(kind: CheckKind, probe: Probe) -> Self {
        Self {
            kind,
            probe,
            period_secs: default_period(),
            timeout_secs: default_timeout(),
            initial_delay_secs: 0,
            failure_threshold: default_threshold(),
        }
    }
}

fn default_period() -> u32 {
    10
}
fn default_timeout() -> u32 {
    1
}
fn default_threshold() -> u32 {
    3
}

/// One container port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    /// Optional name (`http`), used by services and SRV records.
    #[serde(default)]
    pub name: Option<String>,
    /// Port inside the container.
    pub container_port: u16,
    /// Fixed host port. `None` means the scheduler picks a free one from the
    /// node's dynamic range, so every replica is reachable from other hosts.
    #[serde(default)]
    pub host_port: Option<u16>,
    /// Transport protocol.
    #[serde(default)]
    pub protocol: PortProtocol,
}

/// Transport protocol of a port.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum PortProtocol {
    /// TCP (the default, as in Kubernetes).
    #[default]
    Tcp,
    /// UDP.
    Udp,
}

impl fmt::Display for PortProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PortProtocol::Tcp => "tcp",
            PortProtocol::Udp => "udp",
        })
    }
}

/// A point in resource space: what a replica needs or a node offers.
///
/// Ports are not part of the vector because they are discrete; the
/// scheduler checks them separately.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ResourceVec {
    /// CPU in millicores (1000 = one core).
    pub cpu_millis: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
}

impl ResourceVec {
    /// A vector of `cpu_millis` and `memory_bytes`.
    pub const fn new(cpu_millis: u64, memory_bytes: u64) -> Self {
        Self {
            cpu_millis,
            memory_bytes,
        }
    }

    /// Component-wise sum, saturating so that hostile input cannot wrap.
    pub fn saturating_add(self, other: Self) -> Self {
        Self::new(
            self.cpu_millis.saturating_add(other.cpu_millis),
            self.memory_bytes.saturating_add(other.memory_bytes),
        )
    }

    /// Component-wise difference, floored at zero.
    pub fn saturating_sub(self, other: Self) -> Self {
        Self::new(
            self.cpu_millis.saturating_sub(other.cpu_millis),
            self.memory_bytes.saturating_sub(other.memory_bytes),
        )
    }

    /// True when `self` fits inside `available` in every dimension.
    pub fn fits_in(self, available: Self) -> bool {
        self.cpu_millis <= available.cpu_millis && self.memory_bytes <= available.memory_bytes
    }
}

/// Requests (scheduled) and limits (enforced by Docker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Reserved on the node by the scheduler.
    pub requests: ResourceVec,
    /// CPU cap in millicores; `None` = no cap.
    #[serde(default)]
    pub limit_cpu_millis: Option<u64>,
    /// Memory cap in bytes; `None` = no cap.
    #[serde(default)]
    pub limit_memory_bytes: Option<u64>,
}

impl Default for Resources {
    fn default() -> Self {
        Self {
            requests: ResourceVec::new(DEFAULT_CPU_MILLIS, DEFAULT_MEMORY_BYTES),
            limit_cpu_millis: None,
            limit_memory_bytes: None,
        }
    }
}

/// What the executor does when a container exits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Restart whatever the exit code (Kubernetes `Always`, the default).
    #[default]
    Always,
    /// Restart only on a non-zero exit code.
    OnFailure,
    /// Never restart; the allocation ends as complete or failed.
    Never,
}

impl RestartPolicy {
    /// Whether a container that exited with `exit_code` should be started again.
    pub fn should_restart(self, exit_code: i64) -> bool {
        match self {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => exit_code != 0,
            RestartPolicy::Never => false,
        }
    }
}

impl fmt::Display for RestartPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Never => "never",
        })
    }
}

/// How the scheduler chooses among feasible nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PlacementStrategy {
    /// Spread replicas across nodes (and zones): the default, because losing
    /// one edge box should not take a whole service down.
    #[default]
    Spread,
    /// Pack replicas onto the fullest node that fits, leaving whole nodes free.
    Binpack,
}

/// One problem found in a spec: where (a path such as `ports[0].host_port`)
/// and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecError {
    /// Dotted path of the offending field in [`JobSpec`] terms.
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// True for a DNS label as Kubernetes defines it (RFC 1123).
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// True for a portable environment variable name: `[A-Za-z_][A-Za-z0-9_.-]*`
/// (Kubernetes' rule, minus the characters shells and `env` files mangle).
pub fn is_env_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// True for a DNS subdomain as Kubernetes names objects (RFC 1123):
/// dot-separated DNS labels, at most 253 characters.
pub fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

impl JobSpec {
    /// The pull policy in force: the one given, else Kubernetes' default
    /// (`Always` for `:latest` or no tag, `IfNotPresent` otherwise).
    pub fn pull_policy(&self) -> PullPolicy {
        self.pull
            .unwrap_or_else(|| PullPolicy::default_for(&self.image))
    }

    /// The port the job's service serves on: the port named by
    /// `service.port`, else the one with that container port number, else
    /// (no `service.port`) the first port. `None` without a service or when
    /// nothing matches ([`JobSpec::validate`] refuses the latter).
    pub fn service_port(&self) -> Option<&PortSpec> {
        let svc = self.service.as_ref()?;
        match &svc.port {
            None => self.ports.first(),
            Some(want) => self
                .ports
                .iter()
                .find(|p| p.name.as_deref() == Some(want.as_str()))
                .or_else(|| {
                    let n: u16 = want.parse().ok()?;
                    self.ports.iter().find(|p| p.container_port == n)
                }),
        }
    }

    /// The ports as `name/number` for messages, e.g. `http/80, 443`.
    fn port_list(&self) -> String {
        let list: Vec<String> = self
            .ports
            .iter()
            .map(|p| match &p.name {
                Some(n) => format!("{n}/{}", p.container_port),
                None => p.container_port.to_string(),
            })
            .collect();
        list.join(", ")
    }

    /// Checks every rule a spec must satisfy before it may be committed;
    /// returns all problems, not only the first.
    pub fn validate(&self) -> Result<(), Vec<SpecError>> {
        let mut errs = Vec::new();
        let mut err = |field: &str, message: String| {
            errs.push(SpecError {
                field: field.to_string(),
                message,
            })
        };
        if !is_dns_label(&self.name) {
            err(
                "name",
                format!(
                    "{:?} is not a valid name: use 1-63 lowercase letters, digits or '-', \
                     starting and ending with a letter or digit",
                    self.name
                ),
            );
        }
        if self.replicas > MAX_REPLICAS {
            err(
                "replicas",
                format!(
                    "{} replicas is more than the allowed maximum of {MAX_REPLICAS}",
                    self.replicas
                ),
            );
        }
        if self.image.trim().is_empty() {
            err(
                "image",
                "an image is required (e.g. skein-demo/web:latest)".into(),
            );
        } else if let Err(why) = crate::image::ImageRef::parse(&self.image) {
            err(
                "image",
                format!("{:?} is not a valid image reference: {why}", self.image),
            );
        }
        for (i, name) in self.pull_secrets.iter().enumerate() {
            if !is_dns_subdomain(name) {
                err(
                    &format!("pull_secrets[{i}]"),
                    format!(
                        "{name:?} is not a valid secret name: use lowercase letters, digits, \
                         '-' and '.', at most 253 characters"
                    ),
                );
            }
        }
        for key in self.env.keys() {
            if !is_env_name(key) {
                err(
                    &format!("env.{key}"),
                    format!(
                        "{key:?} is not a valid environment variable name: use letters, \
                         digits, '_', '.' and '-', starting with a letter or '_' \
                         ([A-Za-z_][A-Za-z0-9_.-]*)"
                    ),
                );
            }
        }
        let mut seen_host = std::collections::BTreeSet::new();
        let mut seen_names = std::collections::BTreeSet::new();
        for (i, p) in self.ports.iter().enumerate() {
            if p.container_port == 0 {
                err(
                    &format!("ports[{i}].container_port"),
                    "must be between 1 and 65535".into(),
                );
            }
            if let Some(h) = p.host_port {
                if h == 0 {
                    err(
                        &format!("ports[{i}].host_port"),
                        "must be between 1 and 65535".into(),
                    );
                } else if !seen_host.insert((h, p.protocol)) {
                    err(
                        &format!("ports[{i}].host_port"),
                        format!("host port {h}/{} is used twice", p.protocol),
                    );
                }
            }
            if let Some(n) = &p.name {
                if !is_dns_label(n) || n.len() > 15 {
                    err(
                        &format!("ports[{i}].name"),
                        format!(
                            "{n:?} is not a valid port name (1-15 lowercase letters, digits, '-')"
                        ),
                    );
                } else if !seen_names.insert(n.clone()) {
                    err(
                        &format!("ports[{i}].name"),
                        format!("port name {n:?} is used twice"),
                    );
                }
            }
        }
        let r = &self.resources;
        if r.requests.cpu_millis == 0 {
            err(
                "resources.requests.cpu",
                "must be greater than zero (e.g. 100m)".into(),
            );
        }
        if r.requests.memory_bytes < 1024 * 1024 {
            err(
                "resources.requests.memory",
                "must be at least 1Mi (e.g. 64Mi)".into(),
            );
        }
        for (field, value) in [
            ("resources.requests.cpu", Some(r.requests.cpu_millis)),
            ("resources.limits.cpu", r.limit_cpu_millis),
        ] {
            if let Some(v) = value.filter(|v| *v > MAX_CPU_MILLIS) {
                err(
                    field,
                    format!(
                        "{v}m is more than the allowed maximum of {} cores",
                        MAX_CPU_MILLIS / 1000
                    ),
                );
            }
        }
        for (field, value) in [
            ("resources.requests.memory", Some(r.requests.memory_bytes)),
            ("resources.limits.memory", r.limit_memory_bytes),
        ] {
            if let Some(v) = value.filter(|v| *v > MAX_MEMORY_BYTES) {
                err(
                    field,
                    format!("{v} bytes is more than the allowed maximum of 1Pi"),
                );
            }
        }
        if let Some(l) = r.limit_cpu_millis {
            if l < r.requests.cpu_millis {
                err(
                    "resources.limits.cpu",
                    format!("limit {l}m is below the request {}m", r.requests.cpu_millis),
                );
            }
        }
        if let Some(l) = r.limit_memory_bytes {
            // Docker refuses memory limits under 6 MiB.
            if l < 6 * 1024 * 1024 {
                err(
                    "resources.limits.memory",
                    "must be at least 6Mi (Docker's minimum)".into(),
                );
            } else if l < r.requests.memory_bytes {
                err(
                    "resources.limits.memory",
                    format!(
                        "limit {l} bytes is below the request {} bytes",
                        r.requests.memory_bytes
                    ),
                );
            }
        }
        for (k, v) in self.labels.iter().chain(self.constraints.iter()) {
            if k.is_empty() || k.len() > 253 || v.len() > 253 {
                err(
                    "labels",
                    format!("label {k:?}={v:?}: keys must be 1-253 chars, values ≤ 253"),
                );
            }
        }
        if let Some(svc) = &self.service {
            if !is_dns_label(&svc.name) {
                err(
                    "service.name",
                    format!(
                        "{:?} is not a valid service name: use 1-63 lowercase letters, digits \
                         or '-', starting and ending with a letter or digit",
                        svc.name
                    ),
                );
            }
            if self.ports.is_empty() {
                err(
                    "service.port",
                    "a service needs a port to serve on, but the job declares no ports".into(),
                );
            } else if let (Some(want), None) = (&svc.port, self.service_port()) {
                err(
                    "service.port",
                    format!(
                        "{want:?} is neither the name nor the container port of one of the \
                         job's ports ({})",
                        self.port_list()
                    ),
                );
            }
            if svc.publish == Some(0) {
                err("service.publish", "must be between 1 and 65535".into());
            }
        }
        for (i, c) in self.checks.iter().enumerate() {
            let base = format!("checks[{i}]");
            match &c.probe {
                Probe::Http { port, path } => {
                    if *port == 0 {
                        err(
                            &format!("{base}.probe.http.port"),
                            "must be between 1 and 65535".into(),
                        );
                    }
                    if !path.starts_with('/')
                        || path.chars().any(|ch| ch.is_whitespace() || ch.is_control())
                    {
                        err(
                            &format!("{base}.probe.http.path"),
                            format!(
                                "{path:?} is not a valid request path: it must start with '/' \
                                 and contain no spaces or control characters"
                            ),
                        );
                    }
                }
                Probe::Tcp { port } => {
                    if *port == 0 {
                        err(
                            &format!("{base}.probe.tcp.port"),
                            "must be between 1 and 65535".into(),
                        );
                    }
                }
                Probe::Exec { command } => {
                    if command.first().is_none_or(|c| c.is_empty()) {
                        err(
                            &format!("{base}.probe.exec.command"),
                            "a command is required (e.g. [cat, /tmp/healthy])".into(),
                        );
                    }
                }
            }
            for (field, value) in [
                ("period_secs", c.period_secs),
                ("timeout_secs", c.timeout_secs),
                ("failure_threshold", c.failure_threshold),
            ] {
                if value == 0 {
                    err(&format!("{base}.{field}"), "must be 1 or more".into());
                }
            }
        }
        self.container.validate(&mut err);
        let u = &self.update;
        if u.max_surge == 0 && u.max_unavailable == 0 {
            err(
                "update.max_surge",
                "max_surge and max_unavailable cannot both be 0: the update could never \
                 replace a replica"
                    .into(),
            );
        }
        for (field, value) in [
            ("update.max_surge", u.max_surge),
            ("update.max_unavailable", u.max_unavailable),
        ] {
            if value > MAX_REPLICAS {
                err(
                    field,
                    format!("{value} is more than the allowed maximum of {MAX_REPLICAS}"),
                );
            }
        }
        if u.progress_deadline_secs == 0 || u.progress_deadline_secs > MAX_PROGRESS_DEADLINE_SECS {
            err(
                "update.progress_deadline_secs",
                format!(
                    "must be between 1 and {MAX_PROGRESS_DEADLINE_SECS} seconds, got {}",
                    u.progress_deadline_secs
                ),
            );
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(errs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> JobSpec {
        JobSpec {
            name: "web".into(),
            replicas: 3,
            image: "skein-demo/web:latest".into(),
            command: vec![],
            args: vec![],
            env: BTreeMap::new(),
            ports: vec![PortSpec {
                name: Some("http".into()),
                container_port: 80,
                host_port: None,
                protocol: PortProtocol::Tcp,
            }],
            resources: Resources::default(),
            restart: RestartPolicy::Always,
            labels: BTreeMap::new(),
            constraints: BTreeMap::new(),
            placement: PlacementStrategy::Spread,
            service: None,
            checks: vec![],
            update: UpdateStrategy::default(),
            pull: None,
            pull_secrets: vec![],
            container: ContainerSpec::default(),
        }
    }

    #[test]
    fn sample_is_valid() {
        assert_eq!(sample().validate(), Ok(()));
    }

    #[test]
    fn collects_every_problem() {
        let mut s = sample();
        s.name = "Web_1".into();
        s.image = " ".into();
        s.ports[0].container_port = 0;
        let errs = s.validate().unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["name", "image", "ports[0].container_port"]);
    }

    #[test]
    fn service_and_check_rules() {
        let mut s = sample();
        s.service = Some(ServiceSpec {
            name: "web".into(),
            port: None,
            publish: Some(8080),
            balance: Balance::RoundRobin,
        });
        s.checks = vec![CheckSpec {
            kind: CheckKind::Readiness,
            probe: Probe::Http {
                port: 80,
                path: "/healthz".into(),
            },
            period_secs: 10,
            timeout_secs: 1,
            initial_delay_secs: 0,
            failure_threshold: 3,
        }];
        assert_eq!(s.validate(), Ok(()));
        assert_eq!(s.service_port().map(|p| p.container_port), Some(80));
        for port in ["http", "80"] {
            s.service.as_mut().unwrap().port = Some(port.into());
            assert_eq!(s.service_port().map(|p| p.container_port), Some(80));
        }

        let mut bad = s.clone();
        let svc = bad.service.as_mut().unwrap();
        svc.name = "Web".into();
        svc.port = Some("grpc".into());
        svc.publish = Some(0);
        bad.checks[0].probe = Probe::Http {
            port: 0,
            path: "/x\r\nHost: evil".into(),
        };
        bad.checks[0].period_secs = 0;
        bad.checks[0].failure_threshold = 0;
        bad.checks.push(CheckSpec {
            kind: CheckKind::Liveness,
            probe: Probe::Exec { command: vec![] },
            ..s.checks[0].clone()
        });
        let errs = bad.validate().unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "service.name",
                "service.port",
                "service.publish",
                "checks[0].probe.http.port",
                "checks[0].probe.http.path",
                "checks[0].period_secs",
                "checks[0].failure_threshold",
                "checks[1].probe.exec.command",
            ]
        );
        assert!(errs[1].message.contains("(http/80)"), "{}", errs[1].message);

        let mut portless = s.clone();
        portless.ports.clear();
        portless.checks.clear();
        let errs = portless.validate().unwrap_err();
        assert_eq!(errs[0].field, "service.port");
    }

    #[test]
    fn update_strategy_rules() {
        let mut s = sample();
        s.update = UpdateStrategy {
            max_surge: 0,
            max_unavailable: 0,
            progress_deadline_secs: 0,
        };
        let errs = s.validate().unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["update.max_surge", "update.progress_deadline_secs"]
        );
        s.update.max_unavailable = 3;
        s.update.progress_deadline_secs = 30;
        assert_eq!(s.validate(), Ok(()));
        // Older clients send no `update`: the defaults apply.
        let mut json = serde_json::to_value(sample()).unwrap();
        json.as_object_mut().unwrap().remove("update");
        let back: JobSpec = serde_json::from_value(json).unwrap();
        assert_eq!(back.update, UpdateStrategy::default());
        assert_eq!(back.update.max_surge, 1);
        assert_eq!(back.update.progress_deadline_secs, 120);
    }

    #[test]
    fn env_names_and_resource_bounds() {
        for ok in ["A", "_a", "my.var-1", "PATH"] {
            assert!(is_env_name(ok), "{ok}");
        }
        for bad in ["", "1A", "A B", "A;B", "A=B", "-A", ".A", "É", "A\0"] {
            assert!(!is_env_name(bad), "{bad:?}");
        }
        // A JSON client bypasses the manifest parser: validation is the gate.
        let mut s = sample();
        s.env.insert("A B".into(), "x".into());
        s.resources.limit_cpu_millis = Some(u64::MAX);
        s.resources.limit_memory_bytes = Some(u64::MAX);
        s.resources.requests.cpu_millis = u64::MAX;
        let errs = s.validate().unwrap_err();
        let fields: Vec<_> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "env.A B",
                "resources.requests.cpu",
                "resources.limits.cpu",
                "resources.limits.memory",
            ]
        );
    }

    #[test]
    fn dns_labels() {
        assert!(is_dns_label("my-nginx"));
        assert!(!is_dns_label("-x"));
        assert!(!is_dns_label("x-"));
        assert!(!is_dns_label("X"));
        assert!(!is_dns_label(&"a".repeat(64)));
    }

    #[test]
    fn restart_policy_decisions() {
        assert!(RestartPolicy::Always.should_restart(0));
        assert!(!RestartPolicy::OnFailure.should_restart(0));
        assert!(RestartPolicy::OnFailure.should_restart(3));
        assert!(!RestartPolicy::Never.should_restart(3));
    }
}
