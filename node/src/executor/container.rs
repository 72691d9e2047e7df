//! How an allocation becomes a Docker container: name, labels, limits,
//! ports, user and privileges, resolver, hooks. Pure functions, so the
//! mapping is unit-tested without Docker.
//!
//! Every container runs with `no-new-privileges` (unless its spec allows
//! privilege escalation) and a process limit. What stopping it takes (its
//! grace period and preStop hook) is written into its labels, so that a
//! container can be stopped properly after its job is gone.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, PortBinding};

use crate::state::{node_id_str, Allocation, NodeId};
use skein_protocol::spec::{DnsPolicy, Hook, HostAccess, JobSpec};

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
/// Label holding the grace period in seconds, when the spec sets one.
pub const LABEL_GRACE: &str = "skein.grace";
/// Label holding the preStop hook (JSON), when the spec has one.
pub const LABEL_PRE_STOP: &str = "skein.pre-stop";
/// Docker's security option that keeps processes from gaining privileges.
pub const NO_NEW_PRIVILEGES: &str = "no-new-privileges";

/// What stopping one container takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopPlan {
    /// From the stop request to SIGKILL, the preStop hook included.
    pub grace: Duration,
    /// Run in the container before it is signalled.
    pub pre_stop: Option<Hook>,
}

impl StopPlan {
    /// The plan for `spec`'s containers; `default` when it sets no grace period.
    pub fn for_spec(spec: &JobSpec, default: Duration) -> Self {
        Self {
            grace: spec
                .container
                .grace_period_secs
                .map_or(default, |s| Duration::from_secs(u64::from(s))),
            pre_stop: spec.container.lifecycle.pre_stop.clone(),
        }
    }

    /// The plan written into a container's labels by [`create_body`];
    /// `default` when they hold no (readable) grace period.
    pub fn from_labels(labels: Option<&HashMap<String, String>>, default: Duration) -> Self {
        let get = |k: &str| labels.and_then(|l| l.get(k));
        Self {
            grace: get(LABEL_GRACE)
                .and_then(|s| s.parse::<u64>().ok())
                .map_or(default, Duration::from_secs),
            pre_stop: get(LABEL_PRE_STOP).and_then(|j| serde_json::from_str(j).ok()),
        }
    }

    /// A plan without hook: just signal, then kill after `grace`.
    pub fn plain(grace: Duration) -> Self {
        Self {
            grace,
            pre_stop: None,
        }
    }
}

/// Why a container must not start under `runAsNonRoot`, given the user the
/// image is configured with (`Config.User`, `""` for none); `None` when it
/// may start. Consulted only when the spec gives no user of its own.
/// As in Kubernetes, a user name other than root cannot be checked and
/// refuses too.
pub fn non_root_violation(spec: &JobSpec, image_user: &str) -> Option<String> {
    let sec = &spec.container.security;
    if !sec.run_as_non_root {
        return None;
    }
    if let Some(uid) = sec.run_as_user {
        return (uid == 0).then(|| "runAsNonRoot is set but runAsUser is 0 (root)".to_string());
    }
    let user = image_user.split(':').next().unwrap_or_default().trim();
    let fix = "set runAsUser to a non-zero user id, or use an image whose USER is a non-zero \
               numeric id";
    match user {
        "" => Some(format!(
            "runAsNonRoot is set but image {} runs as root (it sets no USER); {fix}",
            spec.image
        )),
        "root" | "0" => Some(format!(
            "runAsNonRoot is set but image {} runs as root (USER {user}); {fix}",
            spec.image
        )),
        u if u.parse::<u32>().is_ok() => None,
        u => Some(format!(
            "runAsNonRoot is set but image {} has the non-numeric user {u:?}, which cannot be \
             verified to be non-root; {fix}",
            spec.image
        )),
    }
}

/// Why `spec` must not run on a node that allows only `allowed` (a stale
/// placement, or a node restarted without its `--allow-*` flags); `None`
/// when it may.
pub fn host_access_refusal(spec: &JobSpec, allowed: &HostAccess) -> Option<String> {
    let mut missing = allowed.missing(&spec.container);
    if missing.is_empty() {
        missing = symlink_escapes(spec, allowed);
    }
    if missing.is_empty() {
        return None;
    }
    Some(format!(
        "allocation failed: job {} needs {}, which this node does not allow (it allows {}); \
         start its agent with --allow-privileged or --allow-host-path DIR to allow it",
        spec.name,
        missing.join(", "),
        allowed.describe()
    ))
}

/// The host-path mounts of `spec` that leave every allowed directory once
/// symlinks are resolved on this host: Docker follows links, so a link
/// inside an allowed directory must not open the rest of the host. (The
/// agent runs beside its Docker Engine; a remote engine's disk is not
/// seen here.)
pub fn symlink_escapes(spec: &JobSpec, allowed: &HostAccess) -> Vec<String> {
    if spec.container.host_paths.is_empty() {
        return Vec::new();
    }
    let resolved = HostAccess {
        host_paths: allowed
            .host_paths
            .iter()
            .map(|d| resolve(d).display().to_string())
            .collect(),
        ..allowed.clone()
    };
    spec.container
        .host_paths
        .iter()
        .filter_map(|m| {
            let real = resolve(&m.host);
            (!resolved.allows_path(&real.display().to_string())).then(|| {
                format!(
                    "hostPath {} (a symlink to {}, outside what is allowed)",
                    m.host,
                    real.display()
                )
            })
        })
        .collect()
}

/// `path` with symlinks resolved: its deepest existing ancestor
/// canonicalised, the missing rest (Docker creates it) appended.
fn resolve(path: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(path);
    let mut rest = Vec::new();
    let mut at = path;
    loop {
        if let Ok(real) = std::fs::canonicalize(at) {
            return rest.iter().rev().fold(real, |p, c| p.join(c));
        }
        match (at.parent(), at.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                at = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

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

/// The create request for `alloc` running `spec` on `node`; `resolver` is
/// this node's DNS server, the container's resolver under `ClusterFirst`.
pub fn create_body(
    node: NodeId,
    alloc: &Allocation,
    spec: &JobSpec,
    resolver: Option<IpAddr>,
) -> ContainerCreateBody {
    let c = &spec.container;
    let sec = &c.security;
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
    if let Some(g) = c.grace_period_secs {
        labels.insert(LABEL_GRACE.into(), g.to_string());
    }
    if let Some(hook) = &c.lifecycle.pre_stop {
        if let Ok(json) = serde_json::to_string(hook) {
            labels.insert(LABEL_PRE_STOP.into(), json);
        }
    }

    let mut exposed = Vec::new();
    let mut bindings = HashMap::new();
    // In the host's network namespace the container's ports are the host's:
    // nothing to publish (Docker would discard it).
    for p in alloc.ports.iter().filter(|_| !c.host_network) {
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

    let nameservers: Vec<String> = match c.dns.policy {
        DnsPolicy::ClusterFirst => resolver
            .map(|ip| ip.to_string())
            .into_iter()
            .chain(c.dns.nameservers.iter().cloned())
            .collect(),
        DnsPolicy::Default => Vec::new(),
        DnsPolicy::None => c.dns.nameservers.clone(),
    };
    let non_empty = |v: Vec<String>| (!v.is_empty()).then_some(v);
    let extra_hosts: Vec<String> = c
        .host_aliases
        .iter()
        .flat_map(|a| a.hostnames.iter().map(move |h| format!("{h}:{}", a.ip)))
        .collect();
    let user = sec.run_as_user.map(|u| match sec.run_as_group {
        Some(g) => format!("{u}:{g}"),
        None => u.to_string(),
    });

    let binds: Vec<String> = c
        .host_paths
        .iter()
        .map(|m| {
            let ro = if m.read_only { ":ro" } else { "" };
            format!("{}:{}{ro}", m.host, m.container)
        })
        .collect();
    let host_ns = |on: bool| on.then(|| "host".to_string());

    let res = &spec.resources;
    let host_config = HostConfig {
        // Relative weight from the request, so busy nodes share CPU in
        // proportion to what each replica reserved.
        cpu_shares: Some(
            i64::try_from((res.requests.cpu_millis.saturating_mul(1024) / 1000).max(2))
                .unwrap_or(i64::MAX),
        ),
        nano_cpus: res
            .limit_cpu_millis
            .map(|m| i64::try_from(m.saturating_mul(1_000_000)).unwrap_or(i64::MAX)),
        memory: res
            .limit_memory_bytes
            .map(|b| i64::try_from(b).unwrap_or(i64::MAX)),
        port_bindings: Some(bindings),
        pids_limit: Some(i64::from(c.pids_limit)),
        security_opt: (!sec.allow_privilege_escalation).then(|| vec![NO_NEW_PRIVILEGES.into()]),
        readonly_rootfs: sec.read_only_root_filesystem.then_some(true),
        cap_add: non_empty(sec.capabilities.add.clone()),
        cap_drop: non_empty(sec.capabilities.drop.clone()),
        group_add: non_empty(
            sec.supplemental_groups
                .iter()
                .map(|g| g.to_string())
                .collect(),
        ),
        extra_hosts: non_empty(extra_hosts),
        dns: non_empty(nameservers),
        dns_search: non_empty(c.dns.searches.clone()),
        dns_options: non_empty(c.dns.options.iter().map(|o| o.to_resolv()).collect()),
        privileged: c.privileged.then_some(true),
        network_mode: host_ns(c.host_network),
        pid_mode: host_ns(c.host_pid),
        ipc_mode: host_ns(c.host_ipc),
        binds: non_empty(binds),
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

    // With the host's network the host name is the host's too.
    let hostname = (alloc.id.len() <= 63 && !c.host_network).then(|| alloc.id.clone());
    ContainerCreateBody {
        image: Some(spec.image.clone()),
        hostname,
        entrypoint: (!spec.command.is_empty()).then(|| spec.command.clone()),
        cmd: (!spec.args.is_empty()).then(|| spec.args.clone()),
        env: Some(spec.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        user,
        working_dir: c.working_dir.clone(),
        stop_timeout: c.grace_period_secs.map(i64::from),
        labels: Some(labels),
        exposed_ports: Some(exposed),
        host_config: Some(host_config),
        ..Default::default()
    }
}

#[cfg(test)]
mod symlink_tests {
    use super::*;
    use skein_protocol::spec::HostPathMount;

    #[test]
    fn a_symlink_out_of_an_allowed_directory_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let ok = root.path().join("ok");
        let secret = root.path().join("secret");
        std::fs::create_dir_all(&ok).unwrap();
        std::fs::create_dir_all(&secret).unwrap();
        std::os::unix::fs::symlink(&secret, ok.join("link")).unwrap();
        let allowed = HostAccess {
            privileged: false,
            host_paths: vec![ok.display().to_string()],
        };
        let mut spec: JobSpec = serde_json::from_value(serde_json::json!({
            "name": "web", "replicas": 1, "image": "img"
        }))
        .unwrap();
        let mount = |host: std::path::PathBuf| HostPathMount {
            host: host.display().to_string(),
            container: "/data".into(),
            read_only: false,
        };
        spec.container.host_paths = vec![mount(ok.join("plain"))];
        assert_eq!(host_access_refusal(&spec, &allowed), None);
        spec.container.host_paths = vec![mount(ok.join("link").join("below"))];
        let msg = host_access_refusal(&spec, &allowed).unwrap();
        assert!(
            msg.contains("a symlink to") && msg.contains("secret"),
            "{msg}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skein_protocol::api::PortMapping;
    use skein_protocol::spec::{
        Capabilities, DnsOption, DnsSpec, HostAlias, HostPathMount, Lifecycle, PortProtocol,
        ResourceVec, Resources, SecuritySpec,
    };

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
            container: Default::default(),
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
        let b = create_body(0xab, &alloc(), &spec(), None);
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

    #[test]
    fn hardened_by_default() {
        let b = create_body(0xab, &alloc(), &spec(), Some("10.0.0.1".parse().unwrap()));
        let hc = b.host_config.as_ref().unwrap();
        assert_eq!(hc.pids_limit, Some(4096));
        assert_eq!(hc.security_opt, Some(vec!["no-new-privileges".to_string()]));
        assert_eq!(hc.readonly_rootfs, None);
        assert_eq!(hc.dns, Some(vec!["10.0.0.1".to_string()]));
        assert_eq!((hc.cap_add.as_ref(), hc.cap_drop.as_ref()), (None, None));
        assert_eq!((b.user.as_ref(), b.working_dir.as_ref()), (None, None));
        assert_eq!(b.stop_timeout, None);
        let labels = b.labels.as_ref().unwrap();
        assert!(!labels.contains_key(LABEL_GRACE) && !labels.contains_key(LABEL_PRE_STOP));
        let plan = StopPlan::from_labels(Some(labels), Duration::from_secs(5));
        assert_eq!(plan, StopPlan::plain(Duration::from_secs(5)));
    }

    fn hardened() -> JobSpec {
        let mut s = spec();
        s.container.security = SecuritySpec {
            run_as_user: Some(1000),
            run_as_group: Some(2000),
            run_as_non_root: true,
            supplemental_groups: vec![3000, 4000],
            read_only_root_filesystem: true,
            allow_privilege_escalation: false,
            capabilities: Capabilities {
                add: vec!["NET_BIND_SERVICE".into()],
                drop: vec!["ALL".into()],
            },
        };
        s.container.working_dir = Some("/srv".into());
        s.container.host_aliases = vec![HostAlias {
            ip: "10.1.2.3".into(),
            hostnames: vec!["db.internal".into(), "cache.internal".into()],
        }];
        s.container.dns = DnsSpec {
            policy: DnsPolicy::ClusterFirst,
            nameservers: vec!["1.1.1.1".into()],
            searches: vec!["corp.example".into()],
            options: vec![
                DnsOption {
                    name: "ndots".into(),
                    value: Some("2".into()),
                },
                DnsOption {
                    name: "edns0".into(),
                    value: None,
                },
            ],
        };
        s.container.grace_period_secs = Some(12);
        s.container.lifecycle = Lifecycle {
            post_start: None,
            pre_stop: Some(Hook::Exec {
                command: vec!["nginx".into(), "-s".into(), "quit".into()],
            }),
        };
        s.container.pids_limit = 100;
        s
    }

    #[test]
    fn maps_security_context_and_runtime_options() {
        let resolver = Some("10.0.0.1".parse().unwrap());
        let b = create_body(0xab, &alloc(), &hardened(), resolver);
        assert_eq!(b.user.as_deref(), Some("1000:2000"));
        assert_eq!(b.working_dir.as_deref(), Some("/srv"));
        assert_eq!(b.stop_timeout, Some(12));
        let hc = b.host_config.as_ref().unwrap();
        assert_eq!(hc.readonly_rootfs, Some(true));
        assert_eq!(hc.security_opt, Some(vec!["no-new-privileges".to_string()]));
        assert_eq!(hc.cap_add, Some(vec!["NET_BIND_SERVICE".to_string()]));
        assert_eq!(hc.cap_drop, Some(vec!["ALL".to_string()]));
        assert_eq!(
            hc.group_add,
            Some(vec!["3000".to_string(), "4000".to_string()])
        );
        assert_eq!(hc.pids_limit, Some(100));
        assert_eq!(
            hc.extra_hosts,
            Some(vec![
                "db.internal:10.1.2.3".to_string(),
                "cache.internal:10.1.2.3".to_string()
            ])
        );
        assert_eq!(
            hc.dns,
            Some(vec!["10.0.0.1".to_string(), "1.1.1.1".to_string()])
        );
        assert_eq!(hc.dns_search, Some(vec!["corp.example".to_string()]));
        assert_eq!(
            hc.dns_options,
            Some(vec!["ndots:2".to_string(), "edns0".to_string()])
        );
        // The labels carry what stopping the container takes.
        let plan = StopPlan::from_labels(b.labels.as_ref(), Duration::from_secs(5));
        assert_eq!(
            plan,
            StopPlan::for_spec(&hardened(), Duration::from_secs(5))
        );
        assert_eq!(plan.grace, Duration::from_secs(12));
        assert!(matches!(plan.pre_stop, Some(Hook::Exec { .. })));
        assert_eq!(
            StopPlan::for_spec(&spec(), Duration::from_secs(5)),
            StopPlan::plain(Duration::from_secs(5))
        );
    }

    #[test]
    fn dns_policies_and_privilege_escalation() {
        let resolver = Some("10.0.0.1".parse().unwrap());
        let mut s = hardened();
        s.container.dns.policy = DnsPolicy::None;
        let hc = create_body(0xab, &alloc(), &s, resolver)
            .host_config
            .unwrap();
        assert_eq!(hc.dns, Some(vec!["1.1.1.1".to_string()]));
        s.container.dns.policy = DnsPolicy::Default;
        s.container.dns.nameservers.clear();
        let hc = create_body(0xab, &alloc(), &s, resolver)
            .host_config
            .unwrap();
        assert_eq!(hc.dns, None);
        s.container.security.allow_privilege_escalation = true;
        s.container.security.run_as_group = None;
        let b = create_body(0xab, &alloc(), &s, resolver);
        assert_eq!(b.host_config.unwrap().security_opt, None);
        assert_eq!(b.user.as_deref(), Some("1000"));
    }

    #[test]
    fn run_as_non_root_checks_the_effective_user() {
        let mut s = spec();
        assert_eq!(non_root_violation(&s, ""), None, "not asked for");
        s.container.security.run_as_non_root = true;
        for root in ["", "root", "0", "0:0", "root:wheel"] {
            let why = non_root_violation(&s, root).expect(root);
            assert!(why.contains("runs as root"), "{why}");
            assert!(why.contains("img:1"), "{why}");
        }
        assert_eq!(non_root_violation(&s, "1000"), None);
        assert_eq!(non_root_violation(&s, "65534:65534"), None);
        let why = non_root_violation(&s, "nobody").unwrap();
        assert!(why.contains("non-numeric user \"nobody\""), "{why}");
        // The spec's own user wins over the image's.
        s.container.security.run_as_user = Some(1000);
        assert_eq!(non_root_violation(&s, ""), None);
        s.container.security.run_as_user = Some(0);
        assert!(non_root_violation(&s, "1000").is_some());
    }

    #[test]
    fn plain_containers_get_no_host_access() {
        let b = create_body(0xab, &alloc(), &spec(), None);
        let hc = b.host_config.unwrap();
        assert_eq!(
            (
                hc.privileged,
                hc.network_mode,
                hc.pid_mode,
                hc.ipc_mode,
                hc.binds
            ),
            (None, None, None, None, None)
        );
        assert_eq!(b.hostname.as_deref(), Some("web-0-abc123"));
    }

    #[test]
    fn maps_privileges_host_namespaces_and_host_paths() {
        let mut s = spec();
        s.container.privileged = true;
        s.container.host_network = true;
        s.container.host_pid = true;
        s.container.host_ipc = true;
        s.container.host_paths = vec![
            HostPathMount {
                host: "/srv/data".into(),
                container: "/data".into(),
                read_only: true,
            },
            HostPathMount {
                host: "/tmp/x".into(),
                container: "/x".into(),
                read_only: false,
            },
        ];
        let b = create_body(0xab, &alloc(), &s, None);
        let hc = b.host_config.as_ref().unwrap();
        assert_eq!(hc.privileged, Some(true));
        let host = Some("host".to_string());
        assert_eq!(
            (&hc.network_mode, &hc.pid_mode, &hc.ipc_mode),
            (&host, &host, &host)
        );
        assert_eq!(
            hc.binds,
            Some(vec![
                "/srv/data:/data:ro".to_string(),
                "/tmp/x:/x".to_string()
            ])
        );
        // The host's network: its ports and host name, nothing to publish.
        assert_eq!(hc.port_bindings, Some(HashMap::new()));
        assert_eq!(b.exposed_ports, Some(vec![]));
        assert_eq!(b.hostname, None);
    }

    #[test]
    fn the_node_refuses_what_it_does_not_allow() {
        let mut s = spec();
        s.container.host_pid = true;
        s.container.host_paths = vec![HostPathMount {
            host: "/srv/data".into(),
            container: "/data".into(),
            read_only: true,
        }];
        let why = host_access_refusal(&s, &HostAccess::default()).unwrap();
        assert_eq!(
            why,
            "allocation failed: job web needs hostPID, hostPath /srv/data, which this node does \
             not allow (it allows nothing); start its agent with --allow-privileged or \
             --allow-host-path DIR to allow it"
        );
        let some = HostAccess {
            privileged: true,
            host_paths: vec!["/srv/other".into()],
        };
        let why = host_access_refusal(&s, &some).unwrap();
        assert!(why.contains("needs hostPath /srv/data"), "{why}");
        assert!(
            why.contains("allows privileged, hostPath /srv/other"),
            "{why}"
        );
        let all = HostAccess {
            privileged: true,
            host_paths: vec!["/srv".into()],
        };
        assert_eq!(host_access_refusal(&s, &all), None);
        assert_eq!(host_access_refusal(&spec(), &HostAccess::default()), None);
    }
}
