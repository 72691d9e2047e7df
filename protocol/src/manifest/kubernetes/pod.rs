//! The parts of a pod template that shape how its container runs (security
//! contexts, lifecycle hooks, resolver, `/etc/hosts`, grace period,
//! privileged mode, host namespaces, `hostPath` volumes) and where it runs
//! (required node affinity), as a [`ContainerSpec`] and constraints.
//!
//! A container's `securityContext` overrides the pod's for the fields both
//! have (`runAsUser`, `runAsGroup`, `runAsNonRoot`), as in Kubernetes.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1 as core;

use super::fields;
use super::{index_path, Ctx, ManifestError, CONTAINER, POD};
use crate::spec::{
    mount_path_problem, Capabilities, ContainerSpec, DnsOption, DnsPolicy, DnsSpec, Hook,
    HostAlias, HostPathMount, Lifecycle, SecuritySpec, MAX_GRACE_PERIOD_SECS, MAX_ID,
};

/// YAML path of the required node affinity.
const REQUIRED_AFFINITY: &str =
    "spec.template.spec.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution";

/// How the pod's one container runs.
pub(super) fn container_spec(
    ctx: &Ctx<'_>,
    pod: &core::PodSpec,
    c: &core::Container,
) -> Result<ContainerSpec, ManifestError> {
    Ok(ContainerSpec {
        security: security(ctx, pod, c)?,
        working_dir: c.working_dir.clone().filter(|d| !d.is_empty()),
        lifecycle: lifecycle(ctx, c)?,
        host_aliases: host_aliases(ctx, pod)?,
        dns: dns(ctx, pod)?,
        grace_period_secs: pod
            .termination_grace_period_seconds
            .map(|n| {
                u32::try_from(n)
                    .ok()
                    .filter(|n| *n <= MAX_GRACE_PERIOD_SECS)
                    .ok_or_else(|| {
                        ctx.at_value(
                            &format!("{POD}.terminationGracePeriodSeconds"),
                            format!(
                                "must be between 0 and {MAX_GRACE_PERIOD_SECS} seconds, got {n}"
                            ),
                        )
                    })
            })
            .transpose()?,
        privileged: c
            .security_context
            .as_ref()
            .and_then(|s| s.privileged)
            .unwrap_or(false),
        host_network: pod.host_network.unwrap_or(false),
        host_pid: pod.host_pid.unwrap_or(false),
        host_ipc: pod.host_ipc.unwrap_or(false),
        host_paths: host_paths(ctx, pod, c)?,
        ..ContainerSpec::default()
    })
}

/// The container's `volumeMounts` of the pod's `hostPath` volumes, in
/// mount order; other volume types are refused at their key.
fn host_paths(
    ctx: &Ctx<'_>,
    pod: &core::PodSpec,
    c: &core::Container,
) -> Result<Vec<HostPathMount>, ManifestError> {
    let mut volumes: BTreeMap<&str, &str> = BTreeMap::new();
    for (i, v) in pod.volumes.iter().flatten().enumerate() {
        let at = index_path(&format!("{POD}.volumes"), i);
        fields::VOLUME.check(ctx, &at, v)?;
        let Some(h) = &v.host_path else {
            return Err(ctx.at_value(
                &at,
                "a hostPath is required: it is the only volume type Skein supports",
            ));
        };
        fields::HOST_PATH.check(ctx, &format!("{at}.hostPath"), h)?;
        if let Some(why) = mount_path_problem(&h.path) {
            return Err(ctx.at_value(&format!("{at}.hostPath.path"), why));
        }
        if v.name.is_empty() {
            return Err(ctx.at_value(&at, "a name is required (volumeMounts refer to it)"));
        }
        if volumes.insert(&v.name, &h.path).is_some() {
            return Err(ctx.at_value(
                &format!("{at}.name"),
                format!("volume name {:?} is used twice", v.name),
            ));
        }
    }
    let mut out = Vec::new();
    for (i, m) in c.volume_mounts.iter().flatten().enumerate() {
        let at = index_path(&format!("{CONTAINER}.volumeMounts"), i);
        fields::VOLUME_MOUNT.check(ctx, &at, m)?;
        let Some(host) = volumes.get(m.name.as_str()) else {
            return Err(ctx.at_value(
                &format!("{at}.name"),
                format!(
                    "no volume named {:?} in {POD}.volumes (declare it with a hostPath)",
                    m.name
                ),
            ));
        };
        if let Some(why) = mount_path_problem(&m.mount_path) {
            return Err(ctx.at_value(&format!("{at}.mountPath"), why));
        }
        out.push(HostPathMount {
            host: (*host).to_string(),
            container: m.mount_path.clone(),
            read_only: m.read_only.unwrap_or(false),
        });
    }
    Ok(out)
}

/// A user or group id at `path`.
fn id(ctx: &Ctx<'_>, path: &str, value: Option<i64>) -> Result<Option<u32>, ManifestError> {
    value
        .map(|n| {
            u32::try_from(n)
                .ok()
                .filter(|n| *n <= MAX_ID)
                .ok_or_else(|| {
                    ctx.at_value(path, format!("must be between 0 and {MAX_ID}, got {n}"))
                })
        })
        .transpose()
}

fn security(
    ctx: &Ctx<'_>,
    pod: &core::PodSpec,
    c: &core::Container,
) -> Result<SecuritySpec, ManifestError> {
    let pod_base = format!("{POD}.securityContext");
    let base = format!("{CONTAINER}.securityContext");
    let p = pod.security_context.clone().unwrap_or_default();
    let s = c.security_context.clone().unwrap_or_default();
    fields::POD_SECURITY.check(ctx, &pod_base, &p)?;
    fields::SECURITY.check(ctx, &base, &s)?;
    let caps = s.capabilities.clone().unwrap_or_default();
    fields::CAPABILITIES.check(ctx, &format!("{base}.capabilities"), &caps)?;
    // The container's setting wins over the pod's.
    let either = |key: &str, mine: Option<i64>, pods: Option<i64>| match mine {
        Some(_) => id(ctx, &format!("{base}.{key}"), mine),
        None => id(ctx, &format!("{pod_base}.{key}"), pods),
    };
    let mut groups = Vec::new();
    for (i, g) in p.supplemental_groups.iter().flatten().enumerate() {
        let path = index_path(&format!("{pod_base}.supplementalGroups"), i);
        groups.extend(id(ctx, &path, Some(*g))?);
    }
    // Skein changes no volume ownership (nor does Kubernetes for hostPath):
    // fsGroup's one effect is a supplementary group.
    if let Some(g) = id(ctx, &format!("{pod_base}.fsGroup"), p.fs_group)? {
        if !groups.contains(&g) {
            groups.push(g);
        }
    }
    Ok(SecuritySpec {
        run_as_user: either("runAsUser", s.run_as_user, p.run_as_user)?,
        run_as_group: either("runAsGroup", s.run_as_group, p.run_as_group)?,
        run_as_non_root: s.run_as_non_root.or(p.run_as_non_root).unwrap_or(false),
        supplemental_groups: groups,
        read_only_root_filesystem: s.read_only_root_filesystem.unwrap_or(false),
        allow_privilege_escalation: s.allow_privilege_escalation.unwrap_or(false),
        capabilities: Capabilities {
            add: caps.add.unwrap_or_default(),
            drop: caps.drop.unwrap_or_default(),
        },
    })
}

fn lifecycle(ctx: &Ctx<'_>, c: &core::Container) -> Result<Lifecycle, ManifestError> {
    let Some(l) = &c.lifecycle else {
        return Ok(Lifecycle::default());
    };
    let base = format!("{CONTAINER}.lifecycle");
    fields::LIFECYCLE.check(ctx, &base, l)?;
    let hook = |key: &str, h: &Option<core::LifecycleHandler>| {
        h.as_ref()
            .map(|h| handler(ctx, &format!("{base}.{key}"), h))
            .transpose()
    };
    Ok(Lifecycle {
        post_start: hook("postStart", &l.post_start)?,
        pre_stop: hook("preStop", &l.pre_stop)?,
    })
}

fn handler(ctx: &Ctx<'_>, base: &str, h: &core::LifecycleHandler) -> Result<Hook, ManifestError> {
    fields::LIFECYCLE_HANDLER.check(ctx, base, h)?;
    match (&h.exec, &h.sleep) {
        (Some(e), None) => {
            fields::EXEC_ACTION.check(ctx, &format!("{base}.exec"), e)?;
            Ok(Hook::Exec {
                command: e.command.clone().unwrap_or_default(),
            })
        }
        (None, Some(s)) => {
            fields::SLEEP_ACTION.check(ctx, &format!("{base}.sleep"), s)?;
            let seconds = u32::try_from(s.seconds).map_err(|_| {
                ctx.at_value(
                    &format!("{base}.sleep.seconds"),
                    format!(
                        "must be between 1 and {MAX_GRACE_PERIOD_SECS} seconds, got {}",
                        s.seconds
                    ),
                )
            })?;
            Ok(Hook::Sleep { seconds })
        }
        (None, None) => Err(ctx.at_value(base, "exactly one of exec or sleep is required")),
        (Some(_), Some(_)) => Err(ctx.at_key(
            &format!("{base}.sleep"),
            "give one of exec or sleep, not both",
        )),
    }
}

fn host_aliases(ctx: &Ctx<'_>, pod: &core::PodSpec) -> Result<Vec<HostAlias>, ManifestError> {
    let mut out = Vec::new();
    for (i, a) in pod.host_aliases.iter().flatten().enumerate() {
        fields::HOST_ALIAS.check(ctx, &index_path(&format!("{POD}.hostAliases"), i), a)?;
        out.push(HostAlias {
            ip: a.ip.clone(),
            hostnames: a.hostnames.clone().unwrap_or_default(),
        });
    }
    Ok(out)
}

fn dns(ctx: &Ctx<'_>, pod: &core::PodSpec) -> Result<DnsSpec, ManifestError> {
    let policy = match pod.dns_policy.as_deref() {
        None | Some("ClusterFirst") => DnsPolicy::ClusterFirst,
        Some("Default") => DnsPolicy::Default,
        Some("None") => DnsPolicy::None,
        Some(other) => {
            return Err(ctx.at_value(
                &format!("{POD}.dnsPolicy"),
                format!(
                    "dnsPolicy {other} is not supported; use ClusterFirst (Skein's resolver), \
                     Default (the host's) or None (dnsConfig only)"
                ),
            ))
        }
    };
    let base = format!("{POD}.dnsConfig");
    let config = pod.dns_config.clone().unwrap_or_default();
    fields::DNS_CONFIG.check(ctx, &base, &config)?;
    let mut options = Vec::new();
    for (i, o) in config.options.iter().flatten().enumerate() {
        let at = index_path(&format!("{base}.options"), i);
        fields::DNS_OPTION.check(ctx, &at, o)?;
        let Some(name) = o.name.clone().filter(|n| !n.is_empty()) else {
            return Err(ctx.at_value(&at, "a name is required (e.g. {name: ndots, value: \"2\"})"));
        };
        options.push(DnsOption {
            name,
            value: o.value.clone(),
        });
    }
    Ok(DnsSpec {
        policy,
        nameservers: config.nameservers.unwrap_or_default(),
        searches: config.searches.unwrap_or_default(),
        options,
    })
}

/// The node labels replicas need: `nodeSelector` plus required node
/// affinity that says the same (one term of `In` expressions with one
/// value each).
pub(super) fn constraints(
    ctx: &Ctx<'_>,
    pod: &core::PodSpec,
) -> Result<BTreeMap<String, String>, ManifestError> {
    let mut constraints = pod.node_selector.clone().unwrap_or_default();
    let Some(affinity) = &pod.affinity else {
        return Ok(constraints);
    };
    fields::AFFINITY.check(ctx, &format!("{POD}.affinity"), affinity)?;
    let Some(node) = &affinity.node_affinity else {
        return Ok(constraints);
    };
    fields::NODE_AFFINITY.check(ctx, &format!("{POD}.affinity.nodeAffinity"), node)?;
    let Some(required) = &node.required_during_scheduling_ignored_during_execution else {
        return Ok(constraints);
    };
    fields::NODE_SELECTOR.check(ctx, REQUIRED_AFFINITY, required)?;
    let terms_path = format!("{REQUIRED_AFFINITY}.nodeSelectorTerms");
    let term = match required.node_selector_terms.as_slice() {
        [term] => term,
        [] => return Err(ctx.at_value(&terms_path, "at least one node selector term is required")),
        _ => {
            return Err(ctx.at_value(
                &index_path(&terms_path, 1),
                "several nodeSelectorTerms are not supported: they are alternatives (any one \
                 may match), but Skein constraints must all hold; use one term",
            ))
        }
    };
    let term_path = index_path(&terms_path, 0);
    fields::NODE_SELECTOR_TERM.check(ctx, &term_path, term)?;
    for (i, e) in term.match_expressions.iter().flatten().enumerate() {
        let at = index_path(&format!("{term_path}.matchExpressions"), i);
        fields::NODE_SELECTOR_REQUIREMENT.check(ctx, &at, e)?;
        let value = match (e.operator.as_str(), e.values.as_deref().unwrap_or_default()) {
            ("In", [value]) => value,
            ("In", values) => {
                return Err(ctx.at_value(
                    &format!("{at}.values"),
                    format!(
                        "operator In with {} values is not supported: a Skein constraint \
                         matches one value; give exactly one",
                        values.len()
                    ),
                ))
            }
            (op, _) => {
                return Err(ctx.at_value(
                    &format!("{at}.operator"),
                    format!(
                        "operator {op} is not supported; use In with one value (a node label \
                         the node must carry)"
                    ),
                ))
            }
        };
        match constraints.get(&e.key) {
            Some(have) if have != value => {
                return Err(ctx.at_value(
                    &format!("{at}.values"),
                    format!(
                        "{}={value} contradicts nodeSelector {}={have}: no node can carry both",
                        e.key, e.key
                    ),
                ))
            }
            _ => {
                constraints.insert(e.key.clone(), value.clone());
            }
        }
    }
    Ok(constraints)
}
