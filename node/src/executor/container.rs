//! How an allocation becomes a Docker container: name, labels, limits,
//! ports. Pure functions, so the mapping is unit-tested without Docker.

use std::collections::HashMap;

use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, PortBinding};

use crate::state::{node_id_str, Allocation, NodeId};
use skein_protocol::spec::JobSpec;

/// Label holding the job name.
pub const LABEL_JOB: &str = "skein.job";
/// Label holding the allocation id; the executor finds its containers by it.
pub const LABEL_ALLOC: &str = "skein.alloc";
/// Label holding the owning node's id.
pub const LABEL_NODE: &str = "skein.node";
/// Label holding the job version the container runs.
pub const LABEL_VERSION: &str = "skein.version";
/// Label holding the allocation's restart epoch.
pub const LABEL_EPOCH: &str = "skein.epoch";
/// Prefix of user labels copied from the spec.
pub const LABEL_USER_PREFIX: &str = "skein.label.";

/// Docker name of an allocation's container. Docker enforces unique
/// names, which is a second guard against duplicates after a crash.
pub fn container_name(alloc_id: &str) -> String {
    format!("skein-{alloc_id}")
}

/// Whether a container with these labels runs what `alloc` asks for;
/// otherwise it must be replaced (job updated or restart requested).
pub fn is_current(labels: &HashMap<String, String>, alloc: &Allocation) -> bool {
    labels.get(LABEL_VERSION) == Some(&alloc.job_version.to_string())
        && labels.get(LABEL_EPOCH) == Some(&alloc.restart_epoch.to_string())
}

/// The create request for `alloc` running `spec` on `node`.
pub fn create_body(node: NodeId, alloc: &Allocation, spec: &JobSpec) -> ContainerCreateBody {
    let mut labels: HashMap<String, String> = spec
        .labels
        .iter()
        .map(|(k, v)| (format!("{LABEL_USER_PREFIX}{k}"), v.clone()))
        .collect();
    labels.insert(LABEL_JOB.into(), alloc.job.clone());
    labels.insert(LABEL_ALLOC.into(), alloc.id.clone());
    labels.insert(LABEL_NODE.into(), node_id_str(node));
    labels.insert(LABEL_VERSION.into(), alloc.job_version.to_string());
    labels.insert(LABEL_EPOCH.into(), alloc.restart_epoch.to_string());

    let mut exposed = Vec::new();
    let mut bindings = HashMap::new();
    for p in &alloc.ports {
        let key = format!("{}/{}", p.container_port, p.protocol);
        exposed.push(key.clone());
        bindings.insert(
            key,
            Some(vec![PortBinding {
                host_ip: Some("0.0.0.0".into()),
                host_port: Some(p.host_port.to_string()),
            }]),
        );
    }

    let res = &spec.resources;
    let host_config = HostConfig {
        // Relative weight from the request, so busy nodes share CPU in
        // proportion to what each replica reserved.
        cpu_shares: Some(
            i64::try_from((res.requests.cpu_millis * 1024 / 1000).max(2)).unwrap_or(i64::MAX),
        ),
        nano_cpus: res
            .limit_cpu_millis
            .map(|m| i64::try_from(m.saturating_mul(1_000_000)).unwrap_or(i64::MAX)),
        memory: res
            .limit_memory_bytes
            .map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
        port_bindings: Some(bindings),
        // tini as PID 1: forwards SIGTERM (so stops are quick even for
        // programs that ignore it as PID 1) and reaps zombies.
        init: Some(true),
        // Edge boxes have small disks: cap what a chatty container can log.
        log_config: Some(HostConfigLogConfig {
            typ: Some("json-file".into()),
            config: Some(HashMap::from([
                ("max-size".to_string(), "10m".to_string()),
                ("max-file".to_string(), "3".to_string()),
            ])),
        }),
        ..Default::default()
    };

    let hostname = (alloc.id.len() <= 63).then(|| alloc.id.clone());
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        hostname,
        entrypoint: (!spec.command.is_empty()).then(|| spec.command.clone()),
        cmd: (!spec.args.is_empty()).then(|| spec.args.clone()),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(labels),
        exposed_ports: Some(exposed),
        host_config: Some(host_config),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skein_protocol::api::PortMapping;
    use skein_protocol::spec::{PortProtocol, ResourceVec, Resources};

    fn spec() -> JobSpec {
        JobSpec {
            name: "web".into(),
            replicas: 1,
            image: "img:1".into(),
            command: vec![],
            args: vec!["-f".into()],
            env: [("A".to_string(), "1".to_string())].into(),
            ports: vec![],
            resources: Resources {
                requests: ResourceVec::new(500, 64 << 20),
                limit_cpu_millis: Some(1500),
                limit_memory_bytes: Some(128 << 20),
            },
            restart: Default::default(),
            labels: [("tier".to_string(), "fe".to_string())].into(),
            constraints: Default::default(),
            placement: Default::default(),
            service: None,
            checks: vec![],
            update: Default::default(),
            pull: None,
            pull_secrets: vec![],
        }
    }

    fn alloc() -> Allocation {
        Allocation {
            id: "web-0-abc123".into(),
            job: "web".into(),
            index: 0,
            job_version: 2,
            node: 0xab,
            resources: ResourceVec::new(500, 64 << 20),
            ports: vec![PortMapping {
                name: None,
                container_port: 80,
                host_port: 20001,
                protocol: PortProtocol::Tcp,
            }],
            restart_epoch: 1,
        }
    }

    #[test]
    fn maps_limits_labels_and_ports() {
        let b = create_body(0xab, &alloc(), &spec());
        let hc = b.host_config.as_ref().unwrap();
        assert_eq!(hc.nano_cpus, Some(1_500_000_000));
        assert_eq!(hc.memory, Some(128 << 20));
        assert_eq!(hc.cpu_shares, Some(512));
        let labels = b.labels.as_ref().unwrap();
        assert_eq!(labels[LABEL_NODE], "00000000000000ab");
        assert_eq!(labels[LABEL_ALLOC], "web-0-abc123");
        assert_eq!(labels["skein.label.tier"], "fe");
        let binding = &hc.port_bindings.as_ref().unwrap()["80/tcp"];
        assert_eq!(
            binding.as_ref().unwrap()[0].host_port.as_deref(),
            Some("20001")
        );
        assert_eq!(b.env, Some(vec!["A=1".to_string()]));
        assert_eq!(b.entrypoint, None);
        assert!(is_current(labels, &alloc()));
        let mut bumped = alloc();
        bumped.restart_epoch += 1;
        assert!(!is_current(labels, &bumped));
    }
}
