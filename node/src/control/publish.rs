//! Which ports a service may publish on every node (the routing mesh).
//!
//! A published port is opened on every node, so it must be allowed on
//! every node (`--publish-range`, default 30000–32767 as Kubernetes
//! NodePorts: no job can take port 22 or 443 unless the operator widens the
//! range), must not be one of a node's own listeners (its API, mesh or DNS
//! port: the node would fight itself for it), and can belong to one job
//! only. Pure: the leader checks every apply and dry run with it before
//! anything is committed.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;

use skein_protocol::spec::JobSpec;

use crate::state::ClusterState;

/// What the check needs to know of one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRules {
    /// Node name, for messages.
    pub name: String,
    /// Ports services may publish on it.
    pub range: RangeInclusive<u16>,
    /// Its own listening ports, with what each is.
    pub listeners: Vec<(u16, String)>,
}

/// Refuses, with a message naming the port, the job and the rule, the
/// first published port of `specs` that breaks a rule on some node.
pub fn check(
    specs: &[JobSpec],
    state: &ClusterState,
    nodes: &[PublishRules],
) -> Result<(), String> {
    let updated: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
    // Ports taken by jobs this request does not replace.
    let mut taken: BTreeMap<u16, String> = state
        .published_ports()
        .iter()
        .filter_map(|(port, jobs)| {
            let other = jobs.iter().find(|j| !updated.contains(&j.as_str()))?;
            Some((*port, other.clone()))
        })
        .collect();
    for spec in specs {
        let Some(port) = spec.service.as_ref().and_then(|s| s.publish) else {
            continue;
        };
        let job = &spec.name;
        if let Some(other) = taken.get(&port) {
            return Err(format!(
                "job {job} cannot publish port {port}: job {other} publishes it already \
                 (a published port is opened on every node, for one service)"
            ));
        }
        for n in nodes {
            if let Some((_, what)) = n.listeners.iter().find(|(p, _)| *p == port) {
                return Err(format!(
                    "job {job} cannot publish port {port}: it is the {what} of node {}",
                    n.name
                ));
            }
            if !n.range.contains(&port) {
                return Err(format!(
                    "job {job} cannot publish port {port}: it is outside the publish range \
                     {}-{} of node {} (published ports are opened on every node; start the \
                     nodes with --publish-range to allow other ports)",
                    n.range.start(),
                    n.range.end(),
                    n.name
                ));
            }
        }
        taken.insert(port, job.clone());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Job;
    use skein_protocol::spec::{JobSpec, ServiceSpec};

    fn spec(name: &str, publish: Option<u16>) -> JobSpec {
        let mut s: JobSpec = serde_json::from_value(serde_json::json!({
            "name": name, "replicas": 1, "image": "img"
        }))
        .unwrap();
        s.service = Some(ServiceSpec {
            name: name.into(),
            port: None,
            publish,
            balance: Default::default(),
        });
        s
    }

    fn node(name: &str) -> PublishRules {
        PublishRules {
            name: name.into(),
            range: 30000..=32767,
            listeners: vec![(7420, "API port".into()), (30999, "mesh port".into())],
        }
    }

    #[test]
    fn only_from_the_range_never_a_listener_never_twice() {
        let nodes = [node("a"), node("b")];
        let state = ClusterState::default();
        assert_eq!(check(&[spec("web", Some(30080))], &state, &nodes), Ok(()));
        assert_eq!(check(&[spec("web", None)], &state, &nodes), Ok(()));
        let e = check(&[spec("ssh", Some(22))], &state, &nodes).unwrap_err();
        assert!(
            e.contains("port 22") && e.contains("outside the publish range 30000-32767"),
            "{e}"
        );
        let e = check(&[spec("x", Some(30999))], &state, &nodes).unwrap_err();
        assert!(e.contains("mesh port of node a"), "{e}");
        let e = check(
            &[spec("one", Some(30080)), spec("two", Some(30080))],
            &state,
            &nodes,
        )
        .unwrap_err();
        assert!(e.contains("job one publishes it already"), "{e}");

        // Against committed jobs: another job's port is taken, the job's own
        // port is not (an update keeps it), a stopped job's port is free.
        let mut state = ClusterState::default();
        state
            .jobs
            .insert("web".into(), Job::new(spec("web", Some(30080)), 1, 0));
        assert_eq!(check(&[spec("web", Some(30080))], &state, &nodes), Ok(()));
        let e = check(&[spec("api", Some(30080))], &state, &nodes).unwrap_err();
        assert!(e.contains("job web publishes it already"), "{e}");
        state.jobs.update("web", |j| j.stopped = true);
        assert_eq!(check(&[spec("api", Some(30080))], &state, &nodes), Ok(()));
    }

    #[test]
    fn a_wider_range_on_every_node_allows_a_low_port() {
        let mut a = node("a");
        a.range = 80..=32767;
        let b = node("b");
        let state = ClusterState::default();
        let e = check(&[spec("web", Some(80))], &state, &[a.clone(), b]).unwrap_err();
        assert!(e.contains("node b"), "{e}");
        let mut b = node("b");
        b.range = 1..=65535;
        assert_eq!(check(&[spec("web", Some(80))], &state, &[a, b]), Ok(()));
    }
}
