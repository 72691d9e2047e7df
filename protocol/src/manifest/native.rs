//! Native Skein jobs: a flat snake_case mapping that mirrors [`JobSpec`].
//!
//! ```yaml
//! name: web
//! replicas: 3
//! image: registry.example.com/team/web:1.4
//! pull: if-not-present  # always | if-not-present | never (Kubernetes' Always,
//!                       # IfNotPresent, Never too); default: always for :latest
//!                       # or no tag, if-not-present otherwise
//! pull_secrets: [regcred]  # registry credentials: a kubernetes.io/dockerconfigjson
//!                          # Secret in this file or applied earlier
//! ports: [{ name: http, container_port: 80 }]
//! resources: { requests: { cpu: 250m, memory: 64Mi }, limits: { memory: 128Mi } }
//! restart: on-failure   # always | on-failure | never
//! placement: spread     # spread | binpack
//! service:               # or just `service: web`
//!   name: web            # default: the job name
//!   port: http           # a port name or number from `ports`; default: the first
//!   publish: 8080        # routing-mesh port on every node (optional)
//!   balance: round-robin # round-robin | least-connections
//! checks:
//!   - kind: readiness    # liveness | readiness
//!     http: { port: http, path: /healthz }   # exactly one of http, tcp, exec
//!     period: 2          # seconds between probes (default 10)
//!     timeout: 1         # seconds (default 1)
//!     initial_delay: 0   # seconds (default 0)
//!     failure_threshold: 3
//!   - { kind: liveness, tcp: { port: 80 } }
//!   - { kind: liveness, exec: [cat, /tmp/healthy] }
//! update:                # how a new version replaces the running one
//!   max_surge: 1         # extra replicas during an update: a count or "25%" (default 1)
//!   max_unavailable: 0   # replicas that may be down: a count or "25%" (default 0)
//!   progress_deadline: 120  # seconds without progress before rolling back
//! security:              # Kubernetes' securityContext, in snake_case
//!   run_as_user: 1000    # default: the image's user
//!   run_as_group: 1000
//!   run_as_non_root: true        # refuse to start as root (checked against the image)
//!   supplemental_groups: [2000]
//!   read_only_root_filesystem: true
//!   allow_privilege_escalation: false  # the default: containers get no-new-privileges
//!   capabilities: { drop: [ALL], add: [NET_BIND_SERVICE] }
//! working_dir: /app
//! lifecycle:             # hooks: exec (a command) or sleep (seconds)
//!   post_start: { exec: [/bin/sh, -c, "echo up > /tmp/up"] }  # fails: container restarted
//!   pre_stop: { sleep: 5 }         # runs before SIGTERM, within grace_period
//! grace_period: 30       # seconds from the stop request to SIGKILL (default: the agent's)
//! host_aliases: [{ ip: 10.0.0.5, hostnames: [db.internal] }]
//! dns:                   # policy: cluster-first (default) | default (the host's) | none
//!   policy: cluster-first
//!   nameservers: [1.1.1.1]
//!   searches: [corp.example]
//!   options: [{ name: ndots, value: "2" }]
//! pids_limit: 4096       # most processes in the container (default 4096)
//! # Only on nodes that allow them (skein agent --allow-privileged,
//! # --allow-host-path DIR); the scheduler places the job only there:
//! privileged: false      # full access to the node's devices and kernel
//! host_network: false    # the node's network, PID and IPC namespaces
//! host_pid: false
//! host_ipc: false
//! host_paths: [{ host: /srv/data, container: /data, read_only: true }]
//! ```
//!
//! Unknown keys are errors (`deny_unknown_fields`): a typo must not silently
//! fall back to a default. Quantities use the Kubernetes notation and may be
//! written as strings or plain numbers. Ports of services and checks may be
//! named (`http`) or numbered (`80`).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

use super::{check_field, Amount, Amounts, Ctx, ManifestError};
use crate::spec::{
    Balance, CheckKind, CheckSpec, ContainerSpec, DnsSpec, Hook, HostAlias, HostPathMount, JobSpec,
    Lifecycle, PlacementStrategy, PortSpec, Probe, PullPolicy, RestartPolicy, SecuritySpec,
    ServiceSpec, UpdateStrategy, DEFAULT_PIDS_LIMIT,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Job {
    #[serde(default)]
    name: String,
    replicas: Option<i64>,
    #[serde(default)]
    image: String,
    #[serde(default)]
    command: Vec<String>,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    ports: Vec<PortSpec>,
    #[serde(default)]
    resources: ResourcesIn,
    #[serde(default)]
    restart: RestartPolicy,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    constraints: BTreeMap<String, String>,
    #[serde(default)]
    placement: PlacementStrategy,
    #[serde(default)]
    service: Option<ServiceIn>,
    #[serde(default)]
    checks: Vec<CheckIn>,
    #[serde(default)]
    update: Option<UpdateIn>,
    #[serde(default)]
    pull: Option<PullIn>,
    #[serde(default)]
    pull_secrets: Vec<String>,
    #[serde(default)]
    security: SecuritySpec,
    working_dir: Option<String>,
    #[serde(default)]
    lifecycle: LifecycleIn,
    grace_period: Option<u32>,
    #[serde(default)]
    host_aliases: Vec<HostAlias>,
    #[serde(default)]
    dns: DnsSpec,
    pids_limit: Option<u32>,
    #[serde(default)]
    privileged: bool,
    #[serde(default)]
    host_network: bool,
    #[serde(default)]
    host_pid: bool,
    #[serde(default)]
    host_ipc: bool,
    #[serde(default)]
    host_paths: Vec<HostPathMount>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LifecycleIn {
    post_start: Option<HookIn>,
    pre_stop: Option<HookIn>,
}

/// `{exec: [cmd, args…]}` or `{sleep: seconds}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HookIn {
    exec: Option<Vec<String>>,
    sleep: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateIn {
    max_surge: Option<AmountIn>,
    max_unavailable: Option<AmountIn>,
    progress_deadline: Option<i64>,
}

/// A count (`1`) or a percentage of the replicas (`"25%"`).
enum AmountIn {
    Count(i64),
    Text(String),
}

impl AmountIn {
    fn as_amount(&self) -> Amount<'_> {
        match self {
            AmountIn::Count(n) => Amount::Count(*n),
            AmountIn::Text(t) => Amount::Text(t),
        }
    }
}

impl<'de> Deserialize<'de> for AmountIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = AmountIn;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a count (1) or a percentage (\"25%\")")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<AmountIn, E> {
                Ok(AmountIn::Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<AmountIn, E> {
                Ok(AmountIn::Count(i64::try_from(v).unwrap_or(i64::MAX)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<AmountIn, E> {
                Ok(AmountIn::Count(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A pull policy in the native spelling or Kubernetes' (`if-not-present`,
/// `IfNotPresent`).
struct PullIn(PullPolicy);

impl<'de> Deserialize<'de> for PullIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PullIn;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("always, if-not-present or never")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PullIn, E> {
                match v {
                    "always" | "Always" => Ok(PullIn(PullPolicy::Always)),
                    "if-not-present" | "IfNotPresent" => Ok(PullIn(PullPolicy::IfNotPresent)),
                    "never" | "Never" => Ok(PullIn(PullPolicy::Never)),
                    other => Err(E::custom(format!(
                        "pull {other:?} is not supported; use always, if-not-present or never \
                         (or Kubernetes' Always, IfNotPresent, Never)"
                    ))),
                }
            }
        }
        d.deserialize_str(V)
    }
}

/// `service: web` or a mapping.
enum ServiceIn {
    Name(String),
    Full(ServiceMap),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServiceMap {
    name: Option<String>,
    port: Option<PortRef>,
    publish: Option<u16>,
    #[serde(default)]
    balance: Balance,
}

impl<'de> Deserialize<'de> for ServiceIn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = ServiceIn;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a service name or a mapping with name, port, publish, balance")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ServiceIn, E> {
                Ok(ServiceIn::Name(v.to_string()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ServiceIn, A::Error> {
                ServiceMap::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(ServiceIn::Full)
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CheckIn {
    kind: Option<CheckKind>,
    http: Option<HttpIn>,
    tcp: Option<TcpIn>,
    exec: Option<Vec<String>>,
    period: Option<u32>,
    timeout: Option<u32>,
    initial_delay: Option<u32>,
    failure_threshold: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpIn {
    port: PortRef,
    path: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TcpIn {
    port: PortRef,
}

/// A port by name (`http`) or number (`80`, `"80"`).
enum PortRef {
    Number(u64),
    Name(String),
}

impl PortRef {
    fn into_string(self) -> String {
        match self {
            PortRef::Number(n) => n.to_string(),
            PortRef::Name(s) => s,
        }
    }
}

impl<'de> Deserialize<'de> for PortRef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = PortRef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port name or number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortRef, E> {
                Ok(match v.parse() {
                    Ok(n) => PortRef::Number(n),
                    Err(_) => PortRef::Name(v.to_string()),
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortRef, E> {
                Ok(PortRef::Number(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortRef, E> {
                u64::try_from(v).map(PortRef::Number).map_err(|_| {
                    E::invalid_value(de::Unexpected::Signed(v), &"a port name or number")
                })
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ResourcesIn {
    #[serde(default)]
    requests: AmountsIn,
    #[serde(default)]
    limits: AmountsIn,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct AmountsIn {
    cpu: Option<Quantity>,
    memory: Option<Quantity>,
}

/// A quantity as written: `cpu: 1` and `cpu: "1"` mean the same.
struct Quantity(String);

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Quantity;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quantity such as 500m, 1.5 or 128Mi")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Quantity, E> {
                Ok(Quantity(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// Converts a native job document.
pub(super) fn convert(ctx: &Ctx<'_>) -> Result<JobSpec, ManifestError> {
    let job: Job = ctx.deserialize("Skein job")?;
    if job.name.is_empty() {
        return Err(ctx.at_value("name", "a name is required (e.g. name: web)"));
    }
    let (req, lim) = (&job.resources.requests, &job.resources.limits);
    let resources = super::resources(
        ctx,
        "resources",
        &Amounts {
            requests_cpu: amount(&req.cpu),
            requests_memory: amount(&req.memory),
            limits_cpu: amount(&lim.cpu),
            limits_memory: amount(&lim.memory),
        },
    )?;
    let service = job.service.map(|s| match s {
        ServiceIn::Name(name) => ServiceSpec {
            name,
            port: None,
            publish: None,
            balance: Balance::default(),
        },
        ServiceIn::Full(m) => ServiceSpec {
            name: m.name.unwrap_or_else(|| job.name.clone()),
            port: m.port.map(PortRef::into_string),
            publish: m.publish,
            balance: m.balance,
        },
    });
    let mut checks = Vec::with_capacity(job.checks.len());
    for (i, c) in job.checks.into_iter().enumerate() {
        let base = format!("checks[{i}]");
        let Some(kind) = c.kind else {
            return Err(ctx.at_value(&base, "kind is required: liveness or readiness"));
        };
        let probe = match (c.http, c.tcp, c.exec) {
            (Some(h), None, None) => Probe::Http {
                port: port_number(ctx, &format!("{base}.http.port"), h.port, &job.ports)?,
                path: h.path.unwrap_or_else(|| "/".into()),
            },
            (None, Some(t), None) => Probe::Tcp {
                port: port_number(ctx, &format!("{base}.tcp.port"), t.port, &job.ports)?,
            },
            (None, None, Some(command)) => Probe::Exec { command },
            _ => {
                return Err(ctx.at_value(&base, "exactly one of http, tcp, exec is required"));
            }
        };
        let d = CheckSpec::new(kind, probe);
        checks.push(CheckSpec {
            period_secs: c.period.unwrap_or(d.period_secs),
            timeout_secs: c.timeout.unwrap_or(d.timeout_secs),
            initial_delay_secs: c.initial_delay.unwrap_or(d.initial_delay_secs),
            failure_threshold: c.failure_threshold.unwrap_or(d.failure_threshold),
            ..d
        });
    }
    let replicas = super::replicas(ctx, "replicas", job.replicas)?;
    let hook = |key: &str, h: Option<HookIn>| match h {
        None => Ok(None),
        Some(HookIn {
            exec: Some(command),
            sleep: None,
        }) => Ok(Some(Hook::Exec { command })),
        Some(HookIn {
            exec: None,
            sleep: Some(seconds),
        }) => Ok(Some(Hook::Sleep { seconds })),
        Some(_) => Err(ctx.at_value(
            &format!("lifecycle.{key}"),
            "exactly one of exec (a command) or sleep (seconds) is required",
        )),
    };
    let container = ContainerSpec {
        security: job.security,
        working_dir: job.working_dir,
        lifecycle: Lifecycle {
            post_start: hook("post_start", job.lifecycle.post_start)?,
            pre_stop: hook("pre_stop", job.lifecycle.pre_stop)?,
        },
        host_aliases: job.host_aliases,
        dns: job.dns,
        grace_period_secs: job.grace_period,
        pids_limit: job.pids_limit.unwrap_or(DEFAULT_PIDS_LIMIT),
        privileged: job.privileged,
        host_network: job.host_network,
        host_pid: job.host_pid,
        host_ipc: job.host_ipc,
        host_paths: job.host_paths,
    };
    let update = match &job.update {
        None => UpdateStrategy::default(),
        Some(u) => super::update_strategy(
            ctx,
            replicas,
            u.max_surge
                .as_ref()
                .map(|a| ("update.max_surge", a.as_amount())),
            u.max_unavailable
                .as_ref()
                .map(|a| ("update.max_unavailable", a.as_amount())),
            u.progress_deadline.map(|n| ("update.progress_deadline", n)),
            UpdateStrategy::default(),
        )?,
    };
    Ok(JobSpec {
        replicas,
        name: job.name,
        image: job.image,
        command: job.command,
        args: job.args,
        env: job.env,
        ports: job.ports,
        resources,
        restart: job.restart,
        labels: job.labels,
        constraints: job.constraints,
        placement: job.placement,
        service,
        checks,
        update,
        pull: job.pull.map(|p| p.0),
        pull_secrets: job.pull_secrets,
        container,
    })
}

/// A check's container port: a number, or the name of one of `ports`.
fn port_number(
    ctx: &Ctx<'_>,
    path: &str,
    port: PortRef,
    ports: &[PortSpec],
) -> Result<u16, ManifestError> {
    match port {
        PortRef::Number(n) => u16::try_from(n)
            .map_err(|_| ctx.at_value(path, format!("must be between 1 and 65535, got {n}"))),
        PortRef::Name(name) => ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .ok_or_else(|| {
                let names: Vec<&str> = ports.iter().filter_map(|p| p.name.as_deref()).collect();
                ctx.at_value(
                    path,
                    format!(
                        "no port is named {name:?} (named ports: {})",
                        if names.is_empty() {
                            "none".to_string()
                        } else {
                            names.join(", ")
                        }
                    ),
                )
            }),
    }
}

fn amount(q: &Option<Quantity>) -> Option<&str> {
    q.as_ref().map(|q| q.0.as_str())
}

/// Where a [`JobSpec`] field comes from in a native document, most specific first.
pub(super) fn source_paths(field: &str) -> Vec<String> {
    if let Some((i, rest)) = check_field(field) {
        let key = match rest {
            "probe.http.port" => "http.port",
            "probe.http.path" => "http.path",
            "probe.tcp.port" => "tcp.port",
            "probe.exec.command" => "exec",
            "period_secs" => "period",
            "timeout_secs" => "timeout",
            "initial_delay_secs" => "initial_delay",
            other => other,
        };
        return vec![format!("checks[{i}].{key}"), format!("checks[{i}]")];
    }
    if let Some(rest) = field.strip_prefix("container.") {
        let path = match rest {
            "grace_period_secs" => "grace_period".to_string(),
            r => r
                .replace(".exec.command", ".exec")
                .replace(".sleep.seconds", ".sleep"),
        };
        let parent = path
            .rfind(['.', '['])
            .map(|i| path[..i].to_string())
            .unwrap_or_default();
        return vec![path, parent];
    }
    let paths: &[&str] = match field {
        "service.name" => &["service.name", "service"],
        "service.port" => &["service.port", "service"],
        "service.publish" => &["service.publish", "service"],
        "labels" => &["labels", "constraints"],
        "resources.requests.cpu" => &["resources.requests.cpu", "resources.limits.cpu"],
        "resources.requests.memory" => &["resources.requests.memory", "resources.limits.memory"],
        "update.max_surge" => &["update.max_surge", "update.max_unavailable", "update"],
        "update.max_unavailable" => &["update.max_unavailable", "update"],
        "update.progress_deadline_secs" => &["update.progress_deadline", "update"],
        _ => &[field],
    };
    paths.iter().map(|p| p.to_string()).collect()
}
