//! Kubernetes manifests → [`JobSpec`]: `apps/v1 Deployment`, `v1 Service` and
//! `v1 Secret` (image pull secrets).
//!
//! People already have Deployments, so Skein runs them unchanged when it can:
//! one container per pod, its image, command, env, ports and resources, its
//! liveness and readiness probes, the pod's restart policy, labels, node
//! selector and required node affinity (one term of `In` expressions with
//! one value each, as constraints), security contexts (the container's over
//! the pod's), lifecycle hooks (`exec`, `sleep`), working directory, host
//! aliases, DNS policy and config, grace period, and what needs a node's
//! permission (`securityContext.privileged`, `hostNetwork`, `hostPID`,
//! `hostIPC`, `hostPath` volumes with the container's `volumeMounts`; see
//! `kubernetes/pod.rs`).
//! A `Service` in the same file becomes the `service` of the
//! Deployment it selects (name, its one TCP port's target, `nodePort` as the
//! routing-mesh port). The Deployment's `strategy` drives rolling updates:
//! `RollingUpdate` with `maxSurge`/`maxUnavailable` (counts or percentages of
//! the replicas, surge rounded up and unavailability down; 25% each when not
//! given, as in Kubernetes), or `Recreate` (all old replicas go before new
//! ones start); `progressDeadlineSeconds` (default 600, as in Kubernetes)
//! bounds how long an update may stall before it is rolled back. The
//! container's `imagePullPolicy` and the pod's `imagePullSecrets` say when
//! and with which credentials nodes pull the image; a
//! `kubernetes.io/dockerconfigjson` Secret in the same file supplies such
//! credentials (`data` base64 or `stringData` JSON, `auths` with
//! `username`/`password` or `auth`).
//!
//! No field is silently ignored: every value passes through its type's
//! table in `kubernetes/fields.rs` before it is read, and a field Skein
//! does not implement (volumes other than `hostPath`, `subPath`, tolerations,
//! `nodeName`, `paused`, a second Service port, `externalIPs`, …) is an
//! error at its key saying why, unless it holds its unset value or
//! Kubernetes' default. Object metadata (namespace, labels, annotations)
//! names things and changes nothing; a registry's `email` is ignored by
//! Docker too. Keys outside the Kubernetes schema are errors.

mod fields;
mod pod;

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::locate::{index_path, key_path};
use super::{check_field, Amount, Amounts, Ctx, ManifestError, Object, SourcePaths};
use crate::api::{PullSecret, RegistryLogin};
use crate::image::{self, PullPolicy};
use crate::spec::{
    Balance, CheckKind, CheckSpec, JobSpec, PlacementStrategy, PortProtocol, PortSpec, Probe,
    RestartPolicy, ServiceSpec, UpdateStrategy,
};

/// Named in every "not supported" message so users know what to write instead.
const SUPPORTED: &str =
    "supported: apps/v1 Deployment, v1 Service, v1 Secret (kubernetes.io/dockerconfigjson)";
/// The one Secret type Skein reads: registry credentials.
pub const DOCKER_CONFIG_JSON: &str = "kubernetes.io/dockerconfigjson";
/// The key of a [`DOCKER_CONFIG_JSON`] Secret that holds the credentials.
const DOCKER_CONFIG_KEY: &str = ".dockerconfigjson";
const PULL_SECRETS: &str = "spec.template.spec.imagePullSecrets";
/// The pod spec of a Deployment's template.
const POD: &str = "spec.template.spec";
const CONTAINERS: &str = "spec.template.spec.containers";
/// The one container Skein runs.
const CONTAINER: &str = "spec.template.spec.containers[0]";
/// Deployment annotation choosing [`PlacementStrategy`] (Kubernetes has no equivalent).
pub const PLACEMENT_ANNOTATION: &str = "skein.io/placement";
/// Service annotation choosing the routing mesh's [`Balance`].
pub const BALANCE_ANNOTATION: &str = "skein.io/balance";
/// Kubernetes' default `maxSurge` and `maxUnavailable`.
const DEFAULT_ROLLING: &str = "25%";
/// Kubernetes' default `progressDeadlineSeconds`.
const DEFAULT_PROGRESS_DEADLINE_SECS: u32 = 600;
const ROLLING_UPDATE: &str = "spec.strategy.rollingUpdate";

/// Converts a document that has an `apiVersion` or `kind` key.
pub(super) fn convert(ctx: &Ctx<'_>) -> Result<Object, ManifestError> {
    match (ctx.doc.api_version.as_deref(), ctx.doc.kind.as_deref()) {
        (Some("apps/v1"), Some("Deployment")) => {
            deployment(ctx).map(|(spec, paths)| Object::Job(Box::new(spec), paths))
        }
        (Some("v1"), Some("Service")) => service(ctx).map(Object::Service),
        (Some("v1"), Some("Secret")) => secret(ctx).map(Object::Secret),
        (_, None) => Err(ctx.at_value("kind", format!("kind is required; {SUPPORTED}"))),
        (None, _) => {
            Err(ctx.at_value("apiVersion", format!("apiVersion is required; {SUPPORTED}")))
        }
        (Some(api), Some(kind @ ("Deployment" | "Service" | "Secret"))) => Err(ctx.at_value(
            "apiVersion",
            format!("apiVersion {api} is not supported for a {kind}; {SUPPORTED}"),
        )),
        (_, Some(kind)) => Err(ctx.at_value(
            "kind",
            format!("kind {kind} is not supported yet; {SUPPORTED}"),
        )),
    }
}

/// Converts a Deployment into a job and where its fields come from.
fn deployment(ctx: &Ctx<'_>) -> Result<(JobSpec, SourcePaths), ManifestError> {
    let d: Deployment = ctx.deserialize("Kubernetes apps/v1 Deployment")?;
    fields::DEPLOYMENT.check(ctx, "", &d)?;
    fields::DEPLOYMENT_SPEC.check(ctx, "spec", &d.spec)?;

    let name = d.metadata.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(ctx.at_value("metadata.name", "a name is required (metadata.name)"));
    }
    let replicas = super::replicas(ctx, "spec.replicas", d.spec.replicas.map(i64::from))?;
    let template = &d.spec.template;
    fields::POD_TEMPLATE.check(ctx, "spec.template", template)?;
    let Some(pod) = &template.spec else {
        return Err(ctx.at_value(
            POD,
            "a pod spec with one container is required (spec.template.spec.containers)",
        ));
    };
    fields::POD_SPEC.check(ctx, POD, pod)?;
    let c = match pod.containers.as_slice() {
        [c] => c,
        [] => return Err(ctx.at_value(CONTAINERS, "exactly one container is required, found none")),
        more => {
            let pos = ctx.doc.nearest_pos(&index_path(CONTAINERS, 1));
            return Err(ctx.error(
                pos,
                Some(CONTAINERS),
                format!(
                    "Skein runs exactly one container per job, found {}; \
                     split them into separate Deployments",
                    more.len()
                ),
            ));
        }
    };
    fields::CONTAINER.check(ctx, CONTAINER, c)?;

    let mut env = BTreeMap::new();
    let mut env_names = Vec::new();
    for (i, e) in c.env.iter().flatten().enumerate() {
        fields::ENV_VAR.check(ctx, &format!("{CONTAINER}.env[{i}]"), e)?;
        env.insert(e.name.clone(), e.value.clone().unwrap_or_default());
        env_names.push(e.name.clone());
    }

    let mut ports = Vec::new();
    for (i, p) in c.ports.iter().flatten().enumerate() {
        let base = format!("{CONTAINER}.ports[{i}]");
        fields::CONTAINER_PORT.check(ctx, &base, p)?;
        let number = |key: &str, n: i32| {
            u16::try_from(n).map_err(|_| {
                ctx.at_value(
                    &format!("{base}.{key}"),
                    format!("must be between 1 and 65535, got {n}"),
                )
            })
        };
        let protocol = match p.protocol.as_deref() {
            None | Some("TCP") => PortProtocol::Tcp,
            Some("UDP") => PortProtocol::Udp,
            Some(other) => {
                return Err(ctx.at_value(
                    &format!("{base}.protocol"),
                    format!("protocol {other} is not supported; use TCP or UDP"),
                ))
            }
        };
        ports.push(PortSpec {
            name: p.name.clone(),
            container_port: number("containerPort", p.container_port)?,
            // Kubernetes treats hostPort 0 as "not published on the host".
            host_port: match p.host_port {
                None | Some(0) => None,
                Some(h) => Some(number("hostPort", h)?),
            },
            protocol,
        });
    }

    let res = c.resources.as_ref();
    if let Some(r) = res {
        fields::RESOURCES.check(ctx, &format!("{CONTAINER}.resources"), r)?;
    }
    let (requests, limits) = (
        res.and_then(|r| r.requests.as_ref()),
        res.and_then(|r| r.limits.as_ref()),
    );
    for (section, map) in [("requests", requests), ("limits", limits)] {
        for key in map.into_iter().flat_map(BTreeMap::keys) {
            if !matches!(key.as_str(), "cpu" | "memory" | "ephemeral-storage") {
                return Err(ctx.at_key(
                    &format!("{CONTAINER}.resources.{section}.{key}"),
                    format!("resource {key} is not supported; supported: cpu, memory"),
                ));
            }
        }
    }
    let resources = super::resources(
        ctx,
        &format!("{CONTAINER}.resources"),
        &Amounts {
            requests_cpu: get(requests, "cpu"),
            requests_memory: get(requests, "memory"),
            limits_cpu: get(limits, "cpu"),
            limits_memory: get(limits, "memory"),
        },
    )?;

    let restart = match pod.restart_policy.as_deref() {
        None | Some("Always") => RestartPolicy::Always,
        Some("OnFailure") => RestartPolicy::OnFailure,
        Some("Never") => RestartPolicy::Never,
        Some(other) => {
            return Err(ctx.at_value(
                "spec.template.spec.restartPolicy",
                format!("restartPolicy {other} is not supported; use Always, OnFailure or Never"),
            ))
        }
    };
    let placement = match d
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PLACEMENT_ANNOTATION))
        .map(String::as_str)
    {
        None | Some("spread") => PlacementStrategy::Spread,
        Some("binpack") => PlacementStrategy::Binpack,
        Some(other) => {
            return Err(ctx.at_value(
                &format!("metadata.annotations.{PLACEMENT_ANNOTATION}"),
                format!("placement {other:?} is not supported; use spread or binpack"),
            ))
        }
    };

    let mut checks = Vec::new();
    let mut check_paths = Vec::new();
    for (key, kind, probe) in [
        ("livenessProbe", CheckKind::Liveness, &c.liveness_probe),
        ("readinessProbe", CheckKind::Readiness, &c.readiness_probe),
    ] {
        if let Some(p) = probe {
            let base = format!("{CONTAINER}.{key}");
            checks.push(check(ctx, &base, kind, p, &ports)?);
            check_paths.push(base);
        }
    }

    let update = update_strategy(ctx, &d, replicas)?;

    let pull = match c.image_pull_policy.as_deref() {
        None => None,
        Some("Always") => Some(PullPolicy::Always),
        Some("IfNotPresent") => Some(PullPolicy::IfNotPresent),
        Some("Never") => Some(PullPolicy::Never),
        Some(other) => {
            return Err(ctx.at_value(
                &format!("{CONTAINER}.imagePullPolicy"),
                format!(
                    "imagePullPolicy {other} is not supported; use Always, IfNotPresent or Never"
                ),
            ))
        }
    };
    let mut pull_secrets = Vec::new();
    for (i, r) in pod.image_pull_secrets.iter().flatten().enumerate() {
        if r.name.is_empty() {
            return Err(ctx.at_value(
                &index_path(PULL_SECRETS, i),
                "a name is required: imagePullSecrets entries are {name: SECRET}",
            ));
        }
        pull_secrets.push(r.name.clone());
    }

    let selector = d.spec.selector.match_labels.clone().unwrap_or_default();
    fields::LABEL_SELECTOR.check(ctx, "spec.selector", &d.spec.selector)?;
    let pod_labels = template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    for (k, v) in &selector {
        if pod_labels.get(k) != Some(v) {
            return Err(ctx.at_value(
                &key_path("spec.selector.matchLabels", k),
                format!(
                    "the selector {k}={v} does not select the Deployment's own pods: \
                     spec.template.metadata.labels must carry it"
                ),
            ));
        }
    }

    let container = pod::container_spec(ctx, pod, c)?;
    let constraints = pod::constraints(ctx, pod)?;

    let spec = JobSpec {
        name,
        replicas,
        image: c.image.clone().unwrap_or_default(),
        command: c.command.clone().unwrap_or_default(),
        args: c.args.clone().unwrap_or_default(),
        env,
        ports,
        resources,
        restart,
        labels: pod_labels,
        constraints,
        placement,
        service: None,
        checks,
        update,
        pull,
        pull_secrets,
        container,
    };
    let paths: SourcePaths = Box::new(move |field| source_paths(field, &check_paths, &env_names));
    Ok((spec, paths))
}

/// The Deployment's `strategy` and `progressDeadlineSeconds`.
fn update_strategy(
    ctx: &Ctx<'_>,
    d: &Deployment,
    replicas: u32,
) -> Result<UpdateStrategy, ManifestError> {
    let strategy = d.spec.strategy.as_ref();
    let rolling = strategy.and_then(|s| s.rolling_update.as_ref());
    if let Some(s) = strategy {
        fields::DEPLOYMENT_STRATEGY.check(ctx, "spec.strategy", s)?;
    }
    if let Some(r) = rolling {
        fields::ROLLING_UPDATE.check(ctx, ROLLING_UPDATE, r)?;
    }
    let deadline = d
        .spec
        .progress_deadline_seconds
        .map(|n| ("spec.progressDeadlineSeconds", i64::from(n)));
    let defaults = UpdateStrategy {
        progress_deadline_secs: DEFAULT_PROGRESS_DEADLINE_SECS,
        ..UpdateStrategy::default()
    };
    match strategy.and_then(|s| s.type_.as_deref()) {
        None | Some("RollingUpdate") => {
            fn amount(v: Option<&IntOrString>) -> Amount<'_> {
                match v {
                    None => Amount::Text(DEFAULT_ROLLING),
                    Some(IntOrString::Int(n)) => Amount::Count(i64::from(*n)),
                    Some(IntOrString::String(s)) => Amount::Text(s),
                }
            }
            let surge_path = format!("{ROLLING_UPDATE}.maxSurge");
            let unavailable_path = format!("{ROLLING_UPDATE}.maxUnavailable");
            super::update_strategy(
                ctx,
                replicas,
                Some((
                    &surge_path,
                    amount(rolling.and_then(|r| r.max_surge.as_ref())),
                )),
                Some((
                    &unavailable_path,
                    amount(rolling.and_then(|r| r.max_unavailable.as_ref())),
                )),
                deadline,
                defaults,
            )
        }
        Some("Recreate") => {
            if rolling.is_some() {
                return Err(ctx.at_key(
                    ROLLING_UPDATE,
                    "rollingUpdate may not be given when the strategy type is Recreate",
                ));
            }
            super::update_strategy(
                ctx,
                replicas,
                Some(("spec.strategy.type", Amount::Count(0))),
                Some((
                    "spec.strategy.type",
                    Amount::Count(i64::from(replicas.max(1))),
                )),
                deadline,
                defaults,
            )
        }
        Some(other) => Err(ctx.at_value(
            "spec.strategy.type",
            format!("strategy type {other} is not supported; use RollingUpdate or Recreate"),
        )),
    }
}

/// Converts one probe of the container, whose YAML path is `base`.
fn check(
    ctx: &Ctx<'_>,
    base: &str,
    kind: CheckKind,
    p: &core::Probe,
    ports: &[PortSpec],
) -> Result<CheckSpec, ManifestError> {
    fields::PROBE.check(ctx, base, p)?;
    let probe = match (&p.http_get, &p.tcp_socket, &p.exec) {
        (Some(h), None, None) => {
            let at = |key: &str| format!("{base}.httpGet.{key}");
            fields::HTTP_GET.check(ctx, &format!("{base}.httpGet"), h)?;
            match h.scheme.as_deref() {
                None | Some("HTTP") => {}
                Some(other) => {
                    return Err(ctx.at_value(
                        &at("scheme"),
                        format!("scheme {other} is not supported; Skein probes plain HTTP"),
                    ))
                }
            }
            Probe::Http {
                port: probe_port(ctx, &at("port"), &h.port, ports)?,
                path: h.path.clone().unwrap_or_else(|| "/".into()),
            }
        }
        (None, Some(t), None) => {
            let at = |key: &str| format!("{base}.tcpSocket.{key}");
            fields::TCP_SOCKET.check(ctx, &format!("{base}.tcpSocket"), t)?;
            Probe::Tcp {
                port: probe_port(ctx, &at("port"), &t.port, ports)?,
            }
        }
        (None, None, Some(e)) => {
            fields::EXEC_ACTION.check(ctx, &format!("{base}.exec"), e)?;
            Probe::Exec {
                command: e.command.clone().unwrap_or_default(),
            }
        }
        _ => return Err(ctx.at_value(base, "exactly one of httpGet, tcpSocket, exec is required")),
    };
    if let Some(n) = p.success_threshold.filter(|n| *n != 1) {
        return Err(ctx.at_value(
            &format!("{base}.successThreshold"),
            format!("successThreshold {n} is not supported; Skein uses 1"),
        ));
    }
    let secs = |key: &str, value: Option<i32>, default: u32| match value {
        None => Ok(default),
        Some(n) => u32::try_from(n).map_err(|_| {
            ctx.at_value(
                &format!("{base}.{key}"),
                format!("must be 0 or more, got {n}"),
            )
        }),
    };
    let defaults = CheckSpec::new(kind, probe);
    Ok(CheckSpec {
        period_secs: secs("periodSeconds", p.period_seconds, defaults.period_secs)?,
        timeout_secs: secs("timeoutSeconds", p.timeout_seconds, defaults.timeout_secs)?,
        initial_delay_secs: secs(
            "initialDelaySeconds",
            p.initial_delay_seconds,
            defaults.initial_delay_secs,
        )?,
        failure_threshold: secs(
            "failureThreshold",
            p.failure_threshold,
            defaults.failure_threshold,
        )?,
        ..defaults
    })
}

/// A probe's port: a number, or the name of one of the container's ports.
fn probe_port(
    ctx: &Ctx<'_>,
    path: &str,
    port: &IntOrString,
    ports: &[PortSpec],
) -> Result<u16, ManifestError> {
    match port {
        IntOrString::Int(n) => u16::try_from(*n)
            .map_err(|_| ctx.at_value(path, format!("must be between 1 and 65535, got {n}"))),
        IntOrString::String(name) => ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .ok_or_else(|| {
                ctx.at_value(
                    path,
                    format!(
                        "no container port is named {name:?} (named ports: {})",
                        port_names(ports)
                    ),
                )
            }),
    }
}

fn port_names(ports: &[PortSpec]) -> String {
    let names: Vec<&str> = ports.iter().filter_map(|p| p.name.as_deref()).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

/// A `v1 Service`, waiting to be attached to the Deployment it selects.
pub(crate) struct ServiceObject {
    /// What the selected job's `service` becomes.
    pub service: ServiceSpec,
    /// Pod labels a Deployment's template must all carry.
    pub selector: BTreeMap<String, String>,
}

impl ServiceObject {
    /// Whether pods with `labels` are selected.
    pub fn selects(&self, labels: &BTreeMap<String, String>) -> bool {
        self.selector.iter().all(|(k, v)| labels.get(k) == Some(v))
    }

    /// The selector as `k=v,k2=v2`, for messages.
    pub fn selector_text(&self) -> String {
        let pairs: Vec<String> = self
            .selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        pairs.join(",")
    }
}

/// Converts a Service (one port at most).
fn service(ctx: &Ctx<'_>) -> Result<ServiceObject, ManifestError> {
    let s: core::Service = ctx.deserialize("Kubernetes v1 Service")?;
    fields::SERVICE.check(ctx, "", &s)?;
    let name = s.metadata.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(ctx.at_value("metadata.name", "a name is required (metadata.name)"));
    }
    let spec = s.spec.unwrap_or_default();
    fields::SERVICE_SPEC.check(ctx, "spec", &spec)?;
    let selector = spec.selector.unwrap_or_default();
    if selector.is_empty() {
        return Err(ctx.at_value(
            "spec.selector",
            "a selector is required: the Service serves the Deployment in this file whose \
             pod labels it selects",
        ));
    }
    let node_ports = match spec.type_.as_deref() {
        None | Some("ClusterIP") => false,
        Some("NodePort" | "LoadBalancer") => true,
        Some(other) => {
            return Err(ctx.at_value(
                "spec.type",
                format!(
                    "type {other} is not supported; supported: ClusterIP, NodePort, LoadBalancer"
                ),
            ))
        }
    };
    let (mut port, mut publish) = (None, None);
    let ports = spec.ports.as_deref().unwrap_or_default();
    if ports.len() > 1 {
        return Err(ctx.at_value(
            "spec.ports[1]",
            format!(
                "a Service with {} ports is not supported: a Skein service serves one port (its \
                 DNS name and routing-mesh port); keep the one port clients use and reach the \
                 others through the Deployment's ports (hostPort)",
                ports.len()
            ),
        ));
    }
    if let Some(p) = ports.first() {
        let base = "spec.ports[0]";
        fields::SERVICE_PORT.check(ctx, base, p)?;
        match p.protocol.as_deref() {
            None | Some("TCP") => {}
            Some(other) => {
                return Err(ctx.at_value(
                    &format!("{base}.protocol"),
                    format!(
                        "protocol {other} is not supported for a Service: the routing mesh \
                         forwards TCP connections; use TCP"
                    ),
                ))
            }
        }
        port = Some(match &p.target_port {
            Some(IntOrString::String(name)) => name.clone(),
            Some(IntOrString::Int(n)) => n.to_string(),
            None => p.port.to_string(),
        });
        publish = match p.node_port {
            None | Some(0) => None,
            Some(_) if !node_ports => {
                return Err(ctx.at_value(
                    &format!("{base}.nodePort"),
                    "nodePort needs spec.type NodePort or LoadBalancer",
                ))
            }
            Some(n) => Some(u16::try_from(n).map_err(|_| {
                ctx.at_value(
                    &format!("{base}.nodePort"),
                    format!("must be between 1 and 65535, got {n}"),
                )
            })?),
        };
    }
    let balance = match s
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(BALANCE_ANNOTATION))
        .map(String::as_str)
    {
        None | Some("round-robin") => Balance::RoundRobin,
        Some("least-connections") => Balance::LeastConnections,
        Some(other) => {
            return Err(ctx.at_value(
                &format!("metadata.annotations.{BALANCE_ANNOTATION}"),
                format!("balance {other:?} is not supported; use round-robin or least-connections"),
            ))
        }
    };
    Ok(ServiceObject {
        service: ServiceSpec {
            name,
            port,
            publish,
            balance,
        },
        selector,
    })
}

/// Where a [`JobSpec`] `service.*` field comes from in the Service that
/// selected the job, most specific first.
pub(super) fn service_source_paths(field: &str) -> Vec<String> {
    let paths: &[&str] = match field {
        "service.name" => &["metadata.name"],
        "service.publish" => &["spec.ports[0].nodePort"],
        _ => &[
            "spec.ports[0].targetPort",
            "spec.ports[0].port",
            "spec.ports",
            "spec",
        ],
    };
    paths.iter().map(|p| p.to_string()).collect()
}

fn get<'a>(map: Option<&'a BTreeMap<String, Quantity>>, key: &str) -> Option<&'a str> {
    map.and_then(|m| m.get(key)).map(|q| q.0.as_str())
}

/// Where a [`JobSpec`] field comes from in a Deployment, most specific
/// first; `checks[i]` came from the probe at `check_paths[i]`.
fn source_paths(field: &str, check_paths: &[String], env_names: &[String]) -> Vec<String> {
    let in_container = |p: &str| format!("{CONTAINER}.{p}");
    let in_pod = |p: &str| format!("{POD}.{p}");
    if let Some(name) = field.strip_prefix("env.") {
        let list = in_container("env");
        return match env_names.iter().rposition(|n| n == name) {
            Some(i) => vec![format!("{}.name", index_path(&list, i)), list],
            None => vec![list],
        };
    }
    if let Some(rest) = field.strip_prefix("container.") {
        return container_source_paths(rest)
            .into_iter()
            .map(|(pod_level, p)| {
                if pod_level {
                    in_pod(&p)
                } else {
                    in_container(&p)
                }
            })
            .collect();
    }
    if let Some((base, rest)) = check_field(field).and_then(|(i, rest)| {
        let base = check_paths.get(i)?;
        Some((base, rest))
    }) {
        let key = match rest {
            "probe.http.port" => "httpGet.port",
            "probe.http.path" => "httpGet.path",
            "probe.tcp.port" => "tcpSocket.port",
            "probe.exec.command" => "exec.command",
            "period_secs" => "periodSeconds",
            "timeout_secs" => "timeoutSeconds",
            "initial_delay_secs" => "initialDelaySeconds",
            "failure_threshold" => "failureThreshold",
            _ => "",
        };
        return if key.is_empty() {
            vec![base.clone()]
        } else {
            vec![format!("{base}.{key}"), base.clone()]
        };
    }
    let strategy = |key: &str| {
        vec![
            format!("{ROLLING_UPDATE}.{key}"),
            "spec.strategy".to_string(),
        ]
    };
    if let Some(i) = field
        .strip_prefix("pull_secrets[")
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(i, _)| i.parse::<usize>().ok())
    {
        let entry = index_path(PULL_SECRETS, i);
        return vec![format!("{entry}.name"), entry, PULL_SECRETS.into()];
    }
    match field {
        "name" => vec!["metadata.name".into()],
        "pull" => vec![in_container("imagePullPolicy")],
        "pull_secrets" => vec![PULL_SECRETS.into()],
        "replicas" => vec!["spec.replicas".into()],
        "update.max_surge" => strategy("maxSurge"),
        "update.max_unavailable" => strategy("maxUnavailable"),
        "update.progress_deadline_secs" => vec!["spec.progressDeadlineSeconds".into()],
        "labels" => vec![
            "spec.template.metadata.labels".into(),
            "spec.template.spec.nodeSelector".into(),
        ],
        "resources.requests.cpu" | "resources.requests.memory" => vec![
            in_container(field),
            in_container(&field.replace("requests", "limits")),
        ],
        // image, env, ports[i].host_port, resources.limits.*: same names, camelCase.
        _ => vec![in_container(&camel_case(field))],
    }
}

/// Where a [`JobSpec`] `container.*` field (given without `container.`)
/// comes from: `(true, path)` in the pod spec, `(false, path)` in the
/// container, most specific first.
fn container_source_paths(rest: &str) -> Vec<(bool, String)> {
    let security = |key: &str| {
        vec![
            (false, format!("securityContext.{key}")),
            (true, format!("securityContext.{key}")),
        ]
    };
    if let Some(sec) = rest.strip_prefix("security.") {
        return match sec {
            "run_as_user" => security("runAsUser"),
            "run_as_group" => security("runAsGroup"),
            "run_as_non_root" => security("runAsNonRoot"),
            s if s.starts_with("supplemental_groups") => vec![
                (true, format!("securityContext.{}", camel_case(s))),
                (true, "securityContext.fsGroup".into()),
                (true, "securityContext.supplementalGroups".into()),
            ],
            s => vec![
                (false, format!("securityContext.{}", camel_case(s))),
                (false, "securityContext".into()),
            ],
        };
    }
    if let Some(hook) = rest.strip_prefix("lifecycle.") {
        let hook = hook
            .replacen("post_start", "postStart", 1)
            .replacen("pre_stop", "preStop", 1);
        let whole = hook.split('.').next().unwrap_or_default().to_string();
        return vec![
            (false, format!("lifecycle.{hook}")),
            (false, format!("lifecycle.{whole}")),
        ];
    }
    if let Some(dns) = rest.strip_prefix("dns.") {
        return vec![
            (true, format!("dnsConfig.{dns}")),
            (true, "dnsConfig".into()),
            (true, "dnsPolicy".into()),
        ];
    }
    if let Some((i, key)) = rest
        .strip_prefix("host_paths[")
        .and_then(|r| r.split_once(']'))
        .and_then(|(i, key)| Some((i.parse::<usize>().ok()?, key)))
    {
        let mount = index_path("volumeMounts", i);
        return match key {
            ".container" => vec![(false, format!("{mount}.mountPath")), (false, mount)],
            _ => vec![(false, mount), (false, "volumeMounts".into())],
        };
    }
    match rest {
        "privileged" => vec![
            (false, "securityContext.privileged".into()),
            (false, "securityContext".into()),
        ],
        "host_pid" => vec![(true, "hostPID".into())],
        "host_ipc" => vec![(true, "hostIPC".into())],
        "host_paths" => vec![(false, "volumeMounts".into())],
        "working_dir" => vec![(false, "workingDir".into())],
        "grace_period_secs" => vec![(true, "terminationGracePeriodSeconds".into())],
        other => vec![(true, camel_case(other))],
    }
}

fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for ch in snake.chars() {
        if ch == '_' {
            upper = true;
        } else if upper {
            out.extend(ch.to_uppercase());
            upper = false;
        } else {
            out.push(ch);
        }
    }
    out
}

/// What `.dockerconfigjson` looks like, for messages.
const DOCKER_CONFIG_SHAPE: &str =
    r#"expected {"auths": {"SERVER": {"username": "…", "password": "…"}}}"#;

/// Converts a `kubernetes.io/dockerconfigjson` Secret into registry
/// credentials. No message quotes the Secret's data: it holds passwords.
fn secret(ctx: &Ctx<'_>) -> Result<PullSecret, ManifestError> {
    let s: core::Secret = ctx.deserialize_redacted("Kubernetes v1 Secret", redact_secret)?;
    let name = s.metadata.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(ctx.at_value("metadata.name", "a name is required (metadata.name)"));
    }
    match s.type_.as_deref() {
        Some(DOCKER_CONFIG_JSON) => {}
        None => {
            return Err(ctx.at_value(
                "type",
                format!(
                    "type is required: only type: {DOCKER_CONFIG_JSON} Secrets (image pull \
                     secrets) are supported; other Secrets (a Secret without type is Opaque) \
                     are not supported yet"
                ),
            ))
        }
        Some(other) => {
            return Err(ctx.at_value(
                "type",
                format!(
                    "Secret type {other} is not supported yet; only {DOCKER_CONFIG_JSON} \
                     (image pull secrets) is supported"
                ),
            ))
        }
    }
    let data_keys = s.data.iter().flat_map(BTreeMap::keys).map(|k| ("data", k));
    let string_keys = s
        .string_data
        .iter()
        .flat_map(BTreeMap::keys)
        .map(|k| ("stringData", k));
    for (section, key) in data_keys.chain(string_keys) {
        if key != DOCKER_CONFIG_KEY {
            return Err(ctx.at_key(
                &key_path(section, key),
                format!(
                    "key {key} is not supported in a {DOCKER_CONFIG_JSON} Secret; only \
                     {DOCKER_CONFIG_KEY} is"
                ),
            ));
        }
    }
    let from_data = s.data.as_ref().and_then(|m| m.get(DOCKER_CONFIG_KEY));
    let from_text = s
        .string_data
        .as_ref()
        .and_then(|m| m.get(DOCKER_CONFIG_KEY));
    let (path, json): (String, &[u8]) = match (from_data, from_text) {
        (Some(bytes), None) => (key_path("data", DOCKER_CONFIG_KEY), &bytes.0),
        (None, Some(text)) => (key_path("stringData", DOCKER_CONFIG_KEY), text.as_bytes()),
        (Some(_), Some(_)) => {
            return Err(ctx.at_key(
                &key_path("stringData", DOCKER_CONFIG_KEY),
                format!("give {DOCKER_CONFIG_KEY} in data or in stringData, not in both"),
            ))
        }
        (None, None) => {
            let section = if ctx.doc.has("stringData") && !ctx.doc.has("data") {
                "stringData"
            } else {
                "data"
            };
            return Err(ctx.at_value(
                section,
                format!(
                    "{DOCKER_CONFIG_KEY} is required: data: {{{DOCKER_CONFIG_KEY}: BASE64}} or \
                     stringData: {{{DOCKER_CONFIG_KEY}: JSON}}"
                ),
            ));
        }
    };
    let registries = docker_config(json).map_err(|message| ctx.at_key(&path, message))?;
    Ok(PullSecret { name, registries })
}

/// The message for a Secret's deserialization error at `path`, when the
/// parser's own one could quote secret data.
fn redact_secret(path: Option<&str>) -> Option<String> {
    let inside = |section: &str| {
        path.and_then(|p| p.strip_prefix(section))
            .is_some_and(|rest| rest.starts_with('.'))
    };
    match path {
        Some("data") => Some("data must be a mapping of keys to base64 strings".into()),
        Some("stringData") => Some("stringData must be a mapping of keys to strings".into()),
        _ if inside("data") => Some(
            "the value is not valid base64 (data values are base64-encoded; put plain text \
             under stringData instead)"
                .into(),
        ),
        _ if inside("stringData") => Some("the value must be a string".into()),
        None => Some(
            "the Secret could not be read; data values must be base64 strings and stringData \
             values plain strings"
                .into(),
        ),
        Some(_) => None,
    }
}

/// Reads `.dockerconfigjson` (`{"auths": {SERVER: CREDENTIALS, …}}`).
/// Messages name JSON keys and servers, never values.
fn docker_config(json: &[u8]) -> Result<Vec<RegistryLogin>, String> {
    use serde_json::Value;
    let value: Value = serde_json::from_slice(json).map_err(|e| {
        let what = match e.classify() {
            serde_json::error::Category::Eof => "it ends early",
            _ => "syntax error",
        };
        format!(
            "the value is not valid JSON ({what} at line {}, column {} of the JSON); \
             {DOCKER_CONFIG_SHAPE}",
            e.line(),
            e.column()
        )
    })?;
    let Value::Object(top) = value else {
        return Err(format!(
            "the value must be a JSON object; {DOCKER_CONFIG_SHAPE}"
        ));
    };
    if let Some(other) = top.keys().find(|k| *k != "auths") {
        return Err(format!(
            "key {other:?} is not supported; only auths (registry credentials) is"
        ));
    }
    let auths = match top.get("auths") {
        None => return Err(format!("auths is required; {DOCKER_CONFIG_SHAPE}")),
        Some(Value::Object(auths)) => auths,
        Some(_) => {
            return Err(format!(
                "auths must be an object mapping registry servers to credentials; \
                 {DOCKER_CONFIG_SHAPE}"
            ))
        }
    };
    if auths.is_empty() {
        return Err(format!(
            "auths is empty: list at least one registry; {DOCKER_CONFIG_SHAPE}"
        ));
    }
    let mut registries: Vec<RegistryLogin> = Vec::with_capacity(auths.len());
    let mut written_as: Vec<&str> = Vec::with_capacity(auths.len());
    for (server, entry) in auths {
        let at = format!("auths.{server:?}");
        let host = image::registry_host(server);
        if !image::valid_host(&host) {
            return Err(format!(
                "auths: {server:?} is not a valid registry server; use host or \
                 host:port (e.g. registry.example.com, 127.0.0.1:5000, or a URL such as \
                 https://index.docker.io/v1/)"
            ));
        }
        if let Some(i) = registries.iter().position(|r| r.server == host) {
            let first = written_as.get(i).copied().unwrap_or_default();
            return Err(format!(
                "auths: {first:?} and {server:?} are the same registry ({host}); give \
                 each registry once"
            ));
        }
        let (username, password) = credentials(&at, entry)?;
        registries.push(RegistryLogin {
            server: host,
            username,
            password,
        });
        written_as.push(server);
    }
    Ok(registries)
}

/// The user name and password of one `auths` entry (`at` names it).
fn credentials(at: &str, entry: &serde_json::Value) -> Result<(String, String), String> {
    use serde_json::Value;
    let Value::Object(fields) = entry else {
        return Err(format!(
            "{at} must be an object with username and password, or auth"
        ));
    };
    let text = |name: &str| match fields.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.as_str())),
        Some(_) => Err(format!("{at}.{name} must be a string")),
    };
    let (username, password, auth) = (text("username")?, text("password")?, text("auth")?);
    text("email")?; // Docker ignores it too.
    for name in fields.keys() {
        match name.as_str() {
            "username" | "password" | "auth" | "email" => {}
            "identitytoken" | "registrytoken" => {
                return Err(format!(
                    "{at}.{name} is not supported; use username and password (or auth)"
                ))
            }
            other => {
                return Err(format!(
                    "{at}: key {other:?} is not supported; allowed: username, password, auth, \
                     email"
                ))
            }
        }
    }
    let from_auth = match auth {
        None => None,
        Some(encoded) => {
            let engine = base64::engine::GeneralPurpose::new(
                &base64::alphabet::STANDARD,
                base64::engine::GeneralPurposeConfig::new()
                    .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
            );
            let decoded = base64::Engine::decode(&engine, encoded.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
                .ok_or_else(|| {
                    format!("{at}.auth is not valid base64; it must be base64 of USERNAME:PASSWORD")
                })?;
            let Some((user, pass)) = decoded.split_once(':') else {
                return Err(format!(
                    "{at}.auth must be base64 of USERNAME:PASSWORD; the decoded text has no ':'"
                ));
            };
            Some((user.to_string(), pass.to_string()))
        }
    };
    let (user, pass) = match (from_auth, username, password) {
        (Some((u, p)), given_user, given_pass) => {
            if given_user.is_some_and(|g| g != u) || given_pass.is_some_and(|g| g != p) {
                return Err(format!(
                    "{at}: auth and username/password disagree; give one of them, or make \
                     them match"
                ));
            }
            (u, p)
        }
        (None, Some(u), Some(p)) => (u.to_string(), p.to_string()),
        (None, Some(_), None) => return Err(format!("{at} has a username but no password")),
        (None, None, Some(_)) => return Err(format!("{at} has a password but no username")),
        (None, None, None) => {
            return Err(format!(
                "{at} has no credentials; give username and password, or auth (base64 of \
                 USERNAME:PASSWORD)"
            ))
        }
    };
    if user.is_empty() {
        return Err(format!("{at}: the username is empty"));
    }
    if pass.is_empty() {
        return Err(format!("{at}: the password is empty"));
    }
    Ok((user, pass))
}
