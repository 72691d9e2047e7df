//! Kubernetes `apps/v1 Deployment` manifests → [`JobSpec`].
//!
//! People already have Deployments, so Skein runs them unchanged when it can:
//! one container per pod, its image, command, env, ports and resources, the
//! pod's restart policy, labels and node selector. Fields Skein cannot honour
//! but that do no harm (selector, strategy, probes, namespace, …) are
//! accepted and ignored; fields whose absence would change behaviour
//! (`valueFrom`, `envFrom`, init containers, SCTP) are errors rather than
//! silently dropped. Keys outside the Kubernetes schema are errors too.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use super::locate::index_path;
use super::{Amounts, Ctx, ManifestError};
use crate::spec::{JobSpec, PlacementStrategy, PortProtocol, PortSpec, RestartPolicy};

/// Named in every "not supported" message so users know what to write instead.
const SUPPORTED: &str = "supported: apps/v1 Deployment";
const CONTAINERS: &str = "spec.template.spec.containers";
/// The one container Skein runs.
const CONTAINER: &str = "spec.template.spec.containers[0]";
/// Deployment annotation choosing [`PlacementStrategy`] (Kubernetes has no equivalent).
pub const PLACEMENT_ANNOTATION: &str = "skein.io/placement";

/// Converts a document that has an `apiVersion` or `kind` key.
pub(super) fn convert(ctx: &Ctx<'_>) -> Result<JobSpec, ManifestError> {
    match (ctx.doc.api_version.as_deref(), ctx.doc.kind.as_deref()) {
        (Some("apps/v1"), Some("Deployment")) => {}
        (_, None) => return Err(ctx.at_value("kind", format!("kind is required; {SUPPORTED}"))),
        (None, _) => {
            return Err(ctx.at_value("apiVersion", format!("apiVersion is required; {SUPPORTED}")))
        }
        (Some(api), Some("Deployment")) => {
            return Err(ctx.at_value(
                "apiVersion",
                format!("apiVersion {api} is not supported; {SUPPORTED}"),
            ))
        }
        (_, Some(kind)) => {
            return Err(ctx.at_value(
                "kind",
                format!("kind {kind} is not supported yet; {SUPPORTED}"),
            ))
        }
    }
    let d: Deployment = ctx.deserialize("Kubernetes apps/v1 Deployment")?;

    let name = d.metadata.name.clone().unwrap_or_default();
    if name.is_empty() {
        return Err(ctx.at_value("metadata.name", "a name is required (metadata.name)"));
    }
    let replicas = super::replicas(ctx, "spec.replicas", d.spec.replicas.map(i64::from))?;
    let template = &d.spec.template;
    let Some(pod) = &template.spec else {
        return Err(ctx.at_value(
            "spec.template.spec",
            "a pod spec with one container is required (spec.template.spec.containers)",
        ));
    };
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
    if pod.init_containers.as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(ctx.at_key(
            "spec.template.spec.initContainers",
            "initContainers are not supported; run them as a separate job",
        ));
    }
    if c.env_from.as_ref().is_some_and(|v| !v.is_empty()) {
        return Err(ctx.at_key(
            &format!("{CONTAINER}.envFrom"),
            "envFrom is not supported; list the variables under env with a value",
        ));
    }

    let mut env = BTreeMap::new();
    for (i, e) in c.env.iter().flatten().enumerate() {
        if e.value_from.is_some() {
            return Err(ctx.at_key(
                &format!("{CONTAINER}.env[{i}].valueFrom"),
                "valueFrom is not supported; set value instead",
            ));
        }
        env.insert(e.name.clone(), e.value.clone().unwrap_or_default());
    }

    let mut ports = Vec::new();
    for (i, p) in c.ports.iter().flatten().enumerate() {
        let base = format!("{CONTAINER}.ports[{i}]");
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

    Ok(JobSpec {
        name,
        replicas,
        image: c.image.clone().unwrap_or_default(),
        command: c.command.clone().unwrap_or_default(),
        args: c.args.clone().unwrap_or_default(),
        env,
        ports,
        resources,
        restart,
        labels: template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default(),
        constraints: pod.node_selector.clone().unwrap_or_default(),
        placement,
    })
}

fn get<'a>(map: Option<&'a BTreeMap<String, Quantity>>, key: &str) -> Option<&'a str> {
    map.and_then(|m| m.get(key)).map(|q| q.0.as_str())
}

/// Where a [`JobSpec`] field comes from in a Deployment, most specific first.
pub(super) fn source_paths(field: &str) -> Vec<String> {
    let in_container = |p: &str| format!("{CONTAINER}.{p}");
    match field {
        "name" => vec!["metadata.name".into()],
        "replicas" => vec!["spec.replicas".into()],
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
