//! How a job's container runs: user and privileges, working directory,
//! lifecycle hooks, resolver, `/etc/hosts` entries, stop grace period and
//! process limit ([`ContainerSpec`], the `container` of a [`JobSpec`]).
//!
//! Skein is stricter than Docker's defaults: a container may not gain
//! privileges (`no-new-privileges`) unless the spec allows it, and runs at
//! most [`DEFAULT_PIDS_LIMIT`] processes unless the spec says otherwise.
//! Privileged mode, host namespaces and host paths run only on nodes whose
//! operator allows them ([`HostAccess`]).
//!
//! [`JobSpec`]: super::JobSpec

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::is_dns_subdomain;

/// Processes (threads included) a container may run when its spec sets no
/// limit: enough for any server, few enough that a fork bomb cannot take
/// the node down.
pub const DEFAULT_PIDS_LIMIT: u32 = 4096;
/// Highest process limit accepted (Linux's own `pid_max` ceiling).
pub const MAX_PIDS_LIMIT: u32 = 4_194_304;
/// Longest grace period accepted (one hour): a longer one is a typo, and
/// would hold a node's drain that long.
pub const MAX_GRACE_PERIOD_SECS: u32 = 3600;
/// Highest user or group id accepted, as in Kubernetes (2^31 - 1).
pub const MAX_ID: u32 = 2_147_483_647;
/// Most nameservers a resolver may have (glibc reads only three).
pub const MAX_NAMESERVERS: usize = 3;
/// Most search domains, as in Kubernetes.
pub const MAX_SEARCHES: usize = 32;

/// The Linux capabilities Docker knows, without the `CAP_` prefix; `ALL`
/// stands for every one of them.
pub const CAPABILITIES: &[&str] = &[
    "ALL",
    "AUDIT_CONTROL",
    "AUDIT_READ",
    "AUDIT_WRITE",
    "BLOCK_SUSPEND",
    "BPF",
    "CHECKPOINT_RESTORE",
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "IPC_LOCK",
    "IPC_OWNER",
    "KILL",
    "LEASE",
    "LINUX_IMMUTABLE",
    "MAC_ADMIN",
    "MAC_OVERRIDE",
    "MKNOD",
    "NET_ADMIN",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_RAW",
    "PERFMON",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYSLOG",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_CHROOT",
    "SYS_MODULE",
    "SYS_NICE",
    "SYS_PACCT",
    "SYS_PTRACE",
    "SYS_RAWIO",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "WAKE_ALARM",
];

/// How the container runs, beyond image, command and resources.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerSpec {
    /// User, groups and privileges (`securityContext`).
    #[serde(default)]
    pub security: SecuritySpec,
    /// Working directory inside the container (`workingDir`); `None`: the image's.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// Commands run after start and before stop (`lifecycle`).
    #[serde(default)]
    pub lifecycle: Lifecycle,
    /// Extra `/etc/hosts` entries (`hostAliases`).
    #[serde(default)]
    pub host_aliases: Vec<HostAlias>,
    /// The container's resolver (`dnsPolicy`, `dnsConfig`).
    #[serde(default)]
    pub dns: DnsSpec,
    /// Seconds from the stop request (preStop hook, then SIGTERM) to SIGKILL
    /// (`terminationGracePeriodSeconds`); `None`: the executor's default.
    #[serde(default)]
    pub grace_period_secs: Option<u32>,
    /// Most processes (threads included) the container may run.
    #[serde(default = "default_pids_limit")]
    pub pids_limit: u32,
    /// Full access to the node's devices and kernel (`privileged`); only on
    /// nodes started with `--allow-privileged`.
    #[serde(default)]
    pub privileged: bool,
    /// The node's network namespace (`hostNetwork`); `--allow-privileged`.
    #[serde(default)]
    pub host_network: bool,
    /// The node's process namespace (`hostPID`); `--allow-privileged`.
    #[serde(default)]
    pub host_pid: bool,
    /// The node's IPC namespace (`hostIPC`); `--allow-privileged`.
    #[serde(default)]
    pub host_ipc: bool,
    /// Node directories mounted into the container (`hostPath` volumes);
    /// only on nodes whose `--allow-host-path` covers each of them.
    #[serde(default)]
    pub host_paths: Vec<HostPathMount>,
}

/// A node directory or file mounted into the container (a bind mount).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostPathMount {
    /// Absolute path on the node.
    pub host: String,
    /// Absolute path inside the container.
    pub container: String,
    /// Mounted read-only.
    #[serde(default)]
    pub read_only: bool,
}

/// Most host paths one container may mount (and one node may allow).
pub const MAX_HOST_PATHS: usize = 64;

/// The Docker socket: whoever reaches it controls the node, so an allowed
/// directory above it never covers it; only an exact `--allow-host-path`.
pub const DOCKER_SOCKETS: &[&str] = &["/var/run/docker.sock", "/run/docker.sock"];

/// What a node lets containers reach of itself (`skein agent
/// --allow-privileged`, `--allow-host-path DIR`); by default nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostAccess {
    /// Privileged containers and host network, PID and IPC namespaces.
    #[serde(default)]
    pub privileged: bool,
    /// Directories (absolute) whose subtrees `hostPath` mounts may use.
    #[serde(default)]
    pub host_paths: Vec<String>,
}

/// The components of an absolute path, without empty and `.` ones.
fn components(path: &str) -> Vec<&str> {
    path.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect()
}

impl HostAccess {
    /// Whether a mount of node path `path` is allowed: it is one of the
    /// allowed directories or below one; a Docker socket only when allowed
    /// exactly.
    pub fn allows_path(&self, path: &str) -> bool {
        let want = components(path);
        if want.contains(&"..") {
            return false;
        }
        let socket = DOCKER_SOCKETS.iter().any(|s| components(s) == want);
        self.host_paths.iter().any(|dir| {
            let dir = components(dir);
            !dir.contains(&"..")
                && if socket {
                    dir == want
                } else {
                    want.starts_with(&dir)
                }
        })
    }

    /// What `c` needs that this node does not allow, for messages
    /// (`privileged`, `hostPath /srv/data`); empty when it may run here.
    pub fn missing(&self, c: &ContainerSpec) -> Vec<String> {
        let mut out = Vec::new();
        if !self.privileged {
            out.extend(c.privileges().into_iter().map(String::from));
        }
        for m in &c.host_paths {
            if !self.allows_path(&m.host) {
                out.push(format!("hostPath {}", m.host));
            }
        }
        out
    }

    /// This node's allowances in words, for messages.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if self.privileged {
            parts.push("privileged".to_string());
        }
        for d in &self.host_paths {
            parts.push(format!("hostPath {d}"));
        }
        if parts.is_empty() {
            "nothing".into()
        } else {
            parts.join(", ")
        }
    }
}

fn default_pids_limit() -> u32 {
    DEFAULT_PIDS_LIMIT
}

impl Default for ContainerSpec {
    fn default() -> Self {
        Self {
            security: SecuritySpec::default(),
            working_dir: None,
            lifecycle: Lifecycle::default(),
            host_aliases: Vec::new(),
            dns: DnsSpec::default(),
            grace_period_secs: None,
            pids_limit: DEFAULT_PIDS_LIMIT,
            privileged: false,
            host_network: false,
            host_pid: false,
            host_ipc: false,
            host_paths: Vec::new(),
        }
    }
}

/// Who the container runs as and what it may do.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySpec {
    /// User id of the container's processes (`runAsUser`); `None`: the image's.
    #[serde(default)]
    pub run_as_user: Option<u32>,
    /// Primary group id (`runAsGroup`); `None`: the image's (or the user's).
    #[serde(default)]
    pub run_as_group: Option<u32>,
    /// Refuse to start the container when it would run as root
    /// (`runAsNonRoot`): checked against `run_as_user`, else the image's user.
    #[serde(default)]
    pub run_as_non_root: bool,
    /// Extra group ids (`supplementalGroups`, `fsGroup`).
    #[serde(default)]
    pub supplemental_groups: Vec<u32>,
    /// Mount the image's filesystem read-only (`readOnlyRootFilesystem`).
    #[serde(default)]
    pub read_only_root_filesystem: bool,
    /// Let processes gain privileges (setuid binaries, file capabilities)
    /// (`allowPrivilegeEscalation`). Off by default in Skein, unlike in
    /// Kubernetes: containers run with `no-new-privileges` unless this is set.
    #[serde(default)]
    pub allow_privilege_escalation: bool,
    /// Capabilities added to and dropped from Docker's default set.
    #[serde(default)]
    pub capabilities: Capabilities,
}

/// Linux capabilities, by name without `CAP_` (`NET_BIND_SERVICE`, `ALL`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// Added to Docker's default set.
    #[serde(default)]
    pub add: Vec<String>,
    /// Removed from it (`ALL`: all of them, before `add` is applied).
    #[serde(default)]
    pub drop: Vec<String>,
}

/// Hooks run inside the container around its life.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lifecycle {
    /// Run right after the container starts; if it fails, the container is
    /// killed and started again per the restart policy (`postStart`).
    #[serde(default)]
    pub post_start: Option<Hook>,
    /// Run before the container is stopped, within the grace period (`preStop`).
    #[serde(default)]
    pub pre_stop: Option<Hook>,
}

/// One lifecycle hook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", deny_unknown_fields)]
pub enum Hook {
    /// A command run in the container (`docker exec`); it must exit 0.
    Exec {
        /// Command and arguments.
        command: Vec<String>,
    },
    /// A pause (`sleep`), e.g. to let load balancers drain a replica.
    Sleep {
        /// How long.
        seconds: u32,
    },
}

/// One `/etc/hosts` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostAlias {
    /// The address.
    pub ip: String,
    /// Names that resolve to it.
    pub hostnames: Vec<String>,
}

/// Which resolver the container uses (Kubernetes' `dnsPolicy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DnsPolicy {
    /// The node's Skein resolver (`NAME.service.skein`, other names forwarded
    /// to the host's resolvers), plus `nameservers` (`ClusterFirst`).
    #[default]
    ClusterFirst,
    /// The host's resolvers, as Docker gives them (`Default`); may not add
    /// nameservers (Skein cannot merge them with the host's).
    Default,
    /// Only what the spec lists; `nameservers` is required (`None`).
    None,
}

/// The container's resolver configuration (`dnsPolicy` + `dnsConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsSpec {
    /// Where the resolvers come from.
    #[serde(default)]
    pub policy: DnsPolicy,
    /// Resolver addresses, after the policy's own.
    #[serde(default)]
    pub nameservers: Vec<String>,
    /// Search domains.
    #[serde(default)]
    pub searches: Vec<String>,
    /// `resolv.conf` options (`ndots` = `5`, `edns0`).
    #[serde(default)]
    pub options: Vec<DnsOption>,
}

/// One `resolv.conf` option.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsOption {
    /// Option name (`ndots`).
    pub name: String,
    /// Its value, if it takes one (`2`).
    #[serde(default)]
    pub value: Option<String>,
}

impl DnsOption {
    /// As Docker and `resolv.conf` write it: `ndots:2`, `edns0`.
    pub fn to_resolv(&self) -> String {
        match &self.value {
            Some(v) => format!("{}:{v}", self.name),
            None => self.name.clone(),
        }
    }
}

/// True for a capability name Docker accepts (`NET_ADMIN`, `CAP_NET_ADMIN`, `ALL`).
pub fn is_capability(name: &str) -> bool {
    CAPABILITIES.contains(&name.strip_prefix("CAP_").unwrap_or(name))
}

/// Why `path` is no usable absolute mount path (on the node or in the
/// container); `None` when it is.
pub fn mount_path_problem(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        Some(format!(
            "{path:?} is not an absolute path: it must start with '/'"
        ))
    } else if path.split('/').any(|c| c == "..") {
        Some(format!("{path:?} contains '..': give the path without it"))
    } else if path.contains(['\0', ':', ',']) {
        Some(format!(
            "{path:?} contains ':', ',' or a NUL byte, which Docker's mount syntax cannot carry"
        ))
    } else {
        None
    }
}

impl ContainerSpec {
    /// The host namespaces and privileges the container asks for, which
    /// need `--allow-privileged` on its node.
    pub fn privileges(&self) -> Vec<&'static str> {
        [
            (self.privileged, "privileged"),
            (self.host_network, "hostNetwork"),
            (self.host_pid, "hostPID"),
            (self.host_ipc, "hostIPC"),
        ]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect()
    }

    /// Whether the container needs anything a node must allow.
    pub fn needs_host_access(&self) -> bool {
        !self.privileges().is_empty() || !self.host_paths.is_empty()
    }

    /// The rules of [`ContainerSpec`]; fields are named under `container.`.
    pub(super) fn validate(&self, err: &mut dyn FnMut(&str, String)) {
        let s = &self.security;
        for (field, id) in [
            ("container.security.run_as_user", s.run_as_user),
            ("container.security.run_as_group", s.run_as_group),
        ] {
            if let Some(id) = id.filter(|id| *id > MAX_ID) {
                err(
                    field,
                    format!("{id} is too large: ids go from 0 to {MAX_ID}"),
                );
            }
        }
        if s.run_as_group.is_some() && s.run_as_user.is_none() {
            err(
                "container.security.run_as_group",
                "a group needs a user: Docker sets both together, and Skein does not read the \
                 image's user to pair it with; set runAsUser as well"
                    .into(),
            );
        }
        if s.run_as_non_root && s.run_as_user == Some(0) {
            err(
                "container.security.run_as_user",
                "runAsNonRoot is set, but the user is 0 (root): use a non-zero user id or drop \
                 runAsNonRoot"
                    .into(),
            );
        }
        for (i, g) in s.supplemental_groups.iter().enumerate() {
            if *g > MAX_ID {
                err(
                    &format!("container.security.supplemental_groups[{i}]"),
                    format!("{g} is too large: ids go from 0 to {MAX_ID}"),
                );
            }
        }
        for (list, names) in [("add", &s.capabilities.add), ("drop", &s.capabilities.drop)] {
            for (i, name) in names.iter().enumerate() {
                if !is_capability(name) {
                    err(
                        &format!("container.security.capabilities.{list}[{i}]"),
                        format!(
                            "{name:?} is not a Linux capability: use a name such as \
                             NET_BIND_SERVICE or CHOWN (upper case, CAP_ prefix optional), or ALL"
                        ),
                    );
                }
            }
        }
        if let Some(dir) = &self.working_dir {
            if !dir.starts_with('/') || dir.contains('\0') {
                err(
                    "container.working_dir",
                    format!("{dir:?} is not an absolute path: it must start with '/'"),
                );
            }
        }
        let grace = self.grace_period_secs;
        if let Some(g) = grace.filter(|g| *g > MAX_GRACE_PERIOD_SECS) {
            err(
                "container.grace_period_secs",
                format!("{g} seconds is more than the allowed maximum of {MAX_GRACE_PERIOD_SECS}"),
            );
        }
        for (name, hook) in [
            ("post_start", &self.lifecycle.post_start),
            ("pre_stop", &self.lifecycle.pre_stop),
        ] {
            let field = format!("container.lifecycle.{name}");
            match hook {
                Some(Hook::Exec { command }) if command.first().is_none_or(|c| c.is_empty()) => {
                    err(
                        &format!("{field}.exec.command"),
                        "a command is required (e.g. [nginx, -s, quit])".into(),
                    );
                }
                Some(Hook::Sleep { seconds })
                    if *seconds == 0 || *seconds > MAX_GRACE_PERIOD_SECS =>
                {
                    err(
                        &format!("{field}.sleep.seconds"),
                        format!(
                            "must be between 1 and {MAX_GRACE_PERIOD_SECS} seconds, got {seconds}"
                        ),
                    );
                }
                _ => {}
            }
        }
        for (i, a) in self.host_aliases.iter().enumerate() {
            let base = format!("container.host_aliases[{i}]");
            if a.ip.parse::<IpAddr>().is_err() {
                err(
                    &format!("{base}.ip"),
                    format!("{:?} is not an IP address (e.g. 10.0.0.5 or fd00::5)", a.ip),
                );
            }
            if a.hostnames.is_empty() {
                err(
                    &format!("{base}.hostnames"),
                    "at least one host name is required".into(),
                );
            }
            for (j, h) in a.hostnames.iter().enumerate() {
                if !is_host_name(h) {
                    err(
                        &format!("{base}.hostnames[{j}]"),
                        format!(
                            "{h:?} is not a valid host name: use lowercase letters, digits, \
                             '-' and '.', at most 253 characters"
                        ),
                    );
                }
            }
        }
        let d = &self.dns;
        if d.policy == DnsPolicy::None && d.nameservers.is_empty() {
            err(
                "container.dns.nameservers",
                "dns policy None needs at least one nameserver".into(),
            );
        }
        if d.policy == DnsPolicy::Default && !d.nameservers.is_empty() {
            err(
                "container.dns.nameservers",
                "dns policy Default uses the host's resolvers, which Skein cannot merge with \
                 more nameservers; use policy None and list them all"
                    .into(),
            );
        }
        if d.nameservers.len() > MAX_NAMESERVERS {
            err(
                "container.dns.nameservers",
                format!(
                    "{} nameservers is more than the {MAX_NAMESERVERS} a resolver reads",
                    d.nameservers.len()
                ),
            );
        }
        for (i, ns) in d.nameservers.iter().enumerate() {
            if ns.parse::<IpAddr>().is_err() {
                err(
                    &format!("container.dns.nameservers[{i}]"),
                    format!("{ns:?} is not an IP address (e.g. 1.1.1.1)"),
                );
            }
        }
        if d.searches.len() > MAX_SEARCHES {
            err(
                "container.dns.searches",
                format!(
                    "{} search domains is more than the allowed maximum of {MAX_SEARCHES}",
                    d.searches.len()
                ),
            );
        }
        for (i, s) in d.searches.iter().enumerate() {
            if !is_host_name(s.strip_suffix('.').unwrap_or(s)) {
                err(
                    &format!("container.dns.searches[{i}]"),
                    format!(
                        "{s:?} is not a valid search domain: use lowercase letters, digits, \
                         '-' and '.'"
                    ),
                );
            }
        }
        for (i, o) in d.options.iter().enumerate() {
            let plain = |t: &str| {
                !t.is_empty()
                    && t.chars()
                        .all(|c| c.is_ascii_graphic() && c != ':' && c != '#' && c != ';')
            };
            if !plain(&o.name) {
                err(
                    &format!("container.dns.options[{i}].name"),
                    format!(
                        "{:?} is not a valid resolver option name (e.g. ndots, edns0): no \
                         spaces, ':', '#' or ';'",
                        o.name
                    ),
                );
            }
            if let Some(v) = o.value.as_deref().filter(|v| !plain(v)) {
                err(
                    &format!("container.dns.options[{i}].value"),
                    format!(
                        "{v:?} is not a valid resolver option value: no spaces, ':', '#' or ';'"
                    ),
                );
            }
        }
        if self.host_paths.len() > MAX_HOST_PATHS {
            err(
                "container.host_paths",
                format!(
                    "{} host paths is more than the allowed maximum of {MAX_HOST_PATHS}",
                    self.host_paths.len()
                ),
            );
        }
        let mut targets = std::collections::BTreeSet::new();
        for (i, m) in self.host_paths.iter().enumerate() {
            let base = format!("container.host_paths[{i}]");
            if let Some(why) = mount_path_problem(&m.host) {
                err(&format!("{base}.host"), why);
            }
            if let Some(why) = mount_path_problem(&m.container) {
                err(&format!("{base}.container"), why);
            } else if components(&m.container).is_empty() {
                err(
                    &format!("{base}.container"),
                    "cannot mount over the container's root '/'".into(),
                );
            } else if !targets.insert(components(&m.container).join("/")) {
                err(
                    &format!("{base}.container"),
                    format!("{:?} is mounted twice", m.container),
                );
            }
        }
        if self.pids_limit == 0 || self.pids_limit > MAX_PIDS_LIMIT {
            err(
                "container.pids_limit",
                format!(
                    "must be between 1 and {MAX_PIDS_LIMIT} processes, got {}",
                    self.pids_limit
                ),
            );
        }
    }
}

/// A host name in `/etc/hosts` or a search domain: a DNS subdomain.
fn is_host_name(s: &str) -> bool {
    is_dns_subdomain(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(c: &ContainerSpec) -> Vec<String> {
        let mut out = Vec::new();
        c.validate(&mut |field, _| out.push(field.to_string()));
        out
    }

    #[test]
    fn default_is_valid_and_strict() {
        let c = ContainerSpec::default();
        assert!(problems(&c).is_empty());
        assert_eq!(c.pids_limit, 4096);
        assert!(!c.security.allow_privilege_escalation);
    }

    #[test]
    fn every_rule_names_its_field() {
        let c = ContainerSpec {
            security: SecuritySpec {
                run_as_user: Some(0),
                run_as_group: Some(u32::MAX),
                run_as_non_root: true,
                supplemental_groups: vec![1, u32::MAX],
                capabilities: Capabilities {
                    add: vec!["NET_BIND_SERVICE".into(), "net_admin".into()],
                    drop: vec!["ALL".into(), "CAP_CHOWN".into(), "EVERYTHING".into()],
                },
                ..SecuritySpec::default()
            },
            working_dir: Some("app".into()),
            lifecycle: Lifecycle {
                post_start: Some(Hook::Exec { command: vec![] }),
                pre_stop: Some(Hook::Sleep { seconds: 0 }),
            },
            host_aliases: vec![HostAlias {
                ip: "10.0.0.300".into(),
                hostnames: vec!["ok.example".into(), "Not OK".into()],
            }],
            dns: DnsSpec {
                policy: DnsPolicy::None,
                nameservers: vec![],
                searches: vec!["svc.example.".into(), "bad domain".into()],
                options: vec![DnsOption {
                    name: "ndots".into(),
                    value: Some("2 3".into()),
                }],
            },
            grace_period_secs: Some(MAX_GRACE_PERIOD_SECS + 1),
            pids_limit: 0,
            privileged: true,
            host_network: true,
            host_pid: false,
            host_ipc: false,
            host_paths: vec![
                mount("/srv/data", "/data"),
                mount("srv", "/data/../x"),
                mount("/a/../etc", "/"),
                mount("/srv/b", "/data/"),
                mount("/srv/c:rw", "/c"),
            ],
        };
        assert_eq!(
            problems(&c),
            [
                "container.security.run_as_group",
                "container.security.run_as_user",
                "container.security.supplemental_groups[1]",
                "container.security.capabilities.add[1]",
                "container.security.capabilities.drop[2]",
                "container.working_dir",
                "container.grace_period_secs",
                "container.lifecycle.post_start.exec.command",
                "container.lifecycle.pre_stop.sleep.seconds",
                "container.host_aliases[0].ip",
                "container.host_aliases[0].hostnames[1]",
                "container.dns.nameservers",
                "container.dns.searches[1]",
                "container.dns.options[0].value",
                "container.host_paths[1].host",
                "container.host_paths[1].container",
                "container.host_paths[2].host",
                "container.host_paths[2].container",
                "container.host_paths[3].container",
                "container.host_paths[4].host",
                "container.pids_limit",
            ]
        );
    }

    fn mount(host: &str, container: &str) -> HostPathMount {
        HostPathMount {
            host: host.into(),
            container: container.into(),
            read_only: false,
        }
    }

    #[test]
    fn host_access_covers_subtrees_and_the_docker_socket_only_exactly() {
        let none = HostAccess::default();
        assert!(!none.allows_path("/tmp"));
        let tmp = HostAccess {
            privileged: false,
            host_paths: vec!["/tmp/skein/".into(), "/".into()],
        };
        for ok in ["/tmp/skein", "/tmp/skein/a/b", "/etc", "/var/run/x"] {
            assert!(tmp.allows_path(ok), "{ok}");
        }
        // "/" covers everything but the Docker socket.
        for bad in [
            "/var/run/docker.sock",
            "/run/docker.sock",
            "/tmp/skein/../../etc",
        ] {
            assert!(!tmp.allows_path(bad), "{bad}");
        }
        let narrow = HostAccess {
            privileged: false,
            host_paths: vec!["/tmp/skein".into(), "/var/run/docker.sock".into()],
        };
        assert!(
            !narrow.allows_path("/tmp/skein-other"),
            "a prefix is not a parent"
        );
        assert!(!narrow.allows_path("/tmp"));
        assert!(narrow.allows_path("/var/run/docker.sock"));
        assert!(!narrow.allows_path("/run/docker.sock"));
    }

    #[test]
    fn missing_names_what_the_node_does_not_allow() {
        let c = ContainerSpec {
            privileged: true,
            host_pid: true,
            host_paths: vec![mount("/srv/data", "/data"), mount("/tmp/x", "/x")],
            ..ContainerSpec::default()
        };
        assert!(c.needs_host_access());
        assert!(!ContainerSpec::default().needs_host_access());
        let node = HostAccess {
            privileged: false,
            host_paths: vec!["/tmp".into()],
        };
        assert_eq!(
            node.missing(&c),
            ["privileged", "hostPID", "hostPath /srv/data"]
        );
        assert_eq!(node.describe(), "hostPath /tmp");
        let all = HostAccess {
            privileged: true,
            host_paths: vec!["/srv".into(), "/tmp".into()],
        };
        assert!(all.missing(&c).is_empty());
        assert_eq!(HostAccess::default().describe(), "nothing");
    }
}
