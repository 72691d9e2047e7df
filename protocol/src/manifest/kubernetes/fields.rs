//! Every field of the Kubernetes types Skein reads, and what Skein does
//! with it: honoured (converted by `kubernetes.rs`) or refused.
//!
//! No field of a Kubernetes manifest is silently ignored. Each type Skein
//! converts has a [`Fields`] table here, and the conversion passes every
//! value through [`Fields::check`] before reading it: a refused field that
//! is set is an error at its key, saying why; a field in neither list (one
//! that a newer k8s-openapi added) is an error too, so Skein fails closed.
//! A test reads the field names from k8s-openapi's own deserializers and
//! fails when a table misses one or names one that does not exist.
//!
//! A refused field is accepted when it holds its unset value (null, false,
//! 0, "", [], {}) or one of its `defaults`: Kubernetes' default, which is
//! what Skein does anyway (`terminationMessagePolicy: File`), so manifests
//! exported from a cluster still apply.

use serde::Serialize;
use serde_json::Value;

use super::{Ctx, ManifestError};

/// How Skein treats the fields of one Kubernetes type.
pub(crate) struct Fields {
    /// The type, for messages (`PodSpec`).
    pub kind: &'static str,
    /// Fields converted into the job (some only for certain values, which
    /// the conversion checks with its own message).
    pub honoured: &'static [&'static str],
    /// Fields Skein does not implement, each with the message saying why.
    pub refused: &'static [(&'static str, &'static str)],
    /// Values (compact JSON) of refused fields that are accepted: for a
    /// field listed here, only these and null are.
    pub defaults: &'static [(&'static str, &'static str)],
}

impl Fields {
    /// Refuses what `value` (a value of this table's type, at YAML path
    /// `base`) sets that Skein does not implement.
    pub(crate) fn check<T: Serialize>(
        &self,
        ctx: &Ctx<'_>,
        base: &str,
        value: &T,
    ) -> Result<(), ManifestError> {
        let Ok(Value::Object(map)) = serde_json::to_value(value) else {
            return Ok(());
        };
        for (key, v) in &map {
            if self.honoured.contains(&key.as_str()) {
                continue;
            }
            let path = super::key_path(base, key);
            let Some((_, why)) = self.refused.iter().find(|(k, _)| k == key) else {
                return Err(ctx.at_key(
                    &path,
                    format!(
                        "{key} ({} field) is not supported by this version of Skein",
                        self.kind
                    ),
                ));
            };
            let mut defaults = self.defaults.iter().filter(|(k, _)| k == key).peekable();
            let accepted = if defaults.peek().is_some() {
                v.is_null() || defaults.any(|(_, d)| json_text(v) == *d)
            } else {
                is_unset(v)
            };
            if !accepted {
                return Err(ctx.at_key(&path, *why));
            }
        }
        Ok(())
    }
}

fn json_text(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// Null, false, 0, "", [] or {}: what Kubernetes treats as not set.
fn is_unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
    }
}

const VOLUMES: &str = "only hostPath volumes are supported (on nodes started with skein agent \
                       --allow-host-path DIR); Secrets, ConfigMaps and other volumes are not: \
                       bake the files into the image or pass settings with env";
const NO_TAINTS: &str = "tolerations are not supported: Skein nodes have no taints, so a \
                         toleration would change nothing; remove them (use nodeSelector to pick \
                         nodes)";

/// `apps/v1 Deployment`.
pub(crate) const DEPLOYMENT: Fields = Fields {
    kind: "Deployment",
    honoured: &["apiVersion", "kind", "metadata", "spec"],
    refused: &[(
        "status",
        "status is written by a cluster, not by you; remove it from the manifest",
    )],
    defaults: &[],
};

/// `apps/v1 DeploymentSpec`.
pub(crate) const DEPLOYMENT_SPEC: Fields = Fields {
    kind: "DeploymentSpec",
    honoured: &[
        "progressDeadlineSeconds",
        "replicas",
        "selector",
        "strategy",
        "template",
    ],
    refused: &[
        (
            "minReadySeconds",
            "minReadySeconds is not supported: a replica counts as available as soon as it is \
             running and its readiness probe passes; use readinessProbe.initialDelaySeconds",
        ),
        (
            "paused",
            "paused: true is not supported: Skein rolls a changed Deployment out at once; apply \
             the change when you want it rolled out",
        ),
        (
            "revisionHistoryLimit",
            "revisionHistoryLimit is not supported: Skein keeps its own short history of \
             versions for rollbacks; remove it (10, Kubernetes' default, is accepted)",
        ),
    ],
    defaults: &[("revisionHistoryLimit", "10")],
};

/// `apps/v1 DeploymentStrategy`.
pub(crate) const DEPLOYMENT_STRATEGY: Fields = Fields {
    kind: "DeploymentStrategy",
    honoured: &["rollingUpdate", "type"],
    refused: &[],
    defaults: &[],
};

/// `apps/v1 RollingUpdateDeployment`.
pub(crate) const ROLLING_UPDATE: Fields = Fields {
    kind: "RollingUpdateDeployment",
    honoured: &["maxSurge", "maxUnavailable"],
    refused: &[],
    defaults: &[],
};

/// `meta/v1 LabelSelector` (a Deployment's `selector`).
pub(crate) const LABEL_SELECTOR: Fields = Fields {
    kind: "LabelSelector",
    honoured: &["matchLabels"],
    refused: &[(
        "matchExpressions",
        "matchExpressions in a Deployment's selector are not supported; use matchLabels",
    )],
    defaults: &[],
};

/// `v1 PodTemplateSpec`.
pub(crate) const POD_TEMPLATE: Fields = Fields {
    kind: "PodTemplateSpec",
    honoured: &["metadata", "spec"],
    refused: &[],
    defaults: &[],
};

/// `v1 PodSpec`.
pub(crate) const POD_SPEC: Fields = Fields {
    kind: "PodSpec",
    honoured: &[
        "affinity",
        "containers",
        "dnsConfig",
        "dnsPolicy",
        "hostAliases",
        "hostIPC",
        "hostNetwork",
        "hostPID",
        "imagePullSecrets",
        "nodeSelector",
        "restartPolicy",
        "securityContext",
        "terminationGracePeriodSeconds",
        "volumes",
    ],
    refused: &[
        (
            "activeDeadlineSeconds",
            "activeDeadlineSeconds is not supported: Skein does not end replicas after a \
             deadline",
        ),
        (
            "automountServiceAccountToken",
            "automountServiceAccountToken: true is not supported: Skein has no service account \
             tokens (false is what it does)",
        ),
        (
            "enableServiceLinks",
            "enableServiceLinks: true is not supported: Skein injects no service environment \
             variables; find services by DNS (NAME.service.skein) or set it to false",
        ),
        (
            "ephemeralContainers",
            "ephemeralContainers are not supported: Skein runs one container per job",
        ),
        (
            "evictionResponders",
            "evictionResponders are not supported: Skein does not evict replicas",
        ),
        (
            "hostUsers",
            "hostUsers: false (a user namespace) is not supported yet; remove it",
        ),
        (
            "hostname",
            "hostname is not supported: each replica's host name is its allocation id",
        ),
        (
            "hostnameOverride",
            "hostnameOverride is not supported: each replica's host name is its allocation id",
        ),
        (
            "initContainers",
            "initContainers are not supported; run them as a separate job",
        ),
        (
            "nodeName",
            "nodeName is not supported: Skein places replicas itself; give the node a label \
             (skein agent --label host=NAME) and select it with nodeSelector",
        ),
        (
            "os",
            "os is not supported: Skein runs Linux containers only (os.name: linux is accepted)",
        ),
        (
            "overhead",
            "overhead is not supported: Skein reserves what resources.requests say",
        ),
        (
            "preemptionPolicy",
            "preemptionPolicy is not supported: Skein does not preempt replicas",
        ),
        (
            "priority",
            "priority is not supported: Skein does not preempt replicas",
        ),
        (
            "priorityClassName",
            "priorityClassName is not supported: Skein does not preempt replicas",
        ),
        (
            "readinessGates",
            "readinessGates are not supported; use a readinessProbe",
        ),
        (
            "resourceClaims",
            "resourceClaims are not supported: Skein has no dynamic resource allocation",
        ),
        (
            "resources",
            "pod-level resources are not supported; set resources on the container",
        ),
        (
            "runtimeClassName",
            "runtimeClassName is not supported: containers run with the node's Docker runtime",
        ),
        (
            "schedulerName",
            "schedulerName is not supported: Skein has one scheduler (default-scheduler is \
             accepted)",
        ),
        (
            "schedulingGates",
            "schedulingGates are not supported: Skein places replicas at once",
        ),
        (
            "schedulingGroup",
            "schedulingGroup is not supported: Skein places replicas one job at a time",
        ),
        (
            "serviceAccount",
            "serviceAccount is not supported: Skein has no service accounts (default is \
             accepted)",
        ),
        (
            "serviceAccountName",
            "serviceAccountName is not supported: Skein has no service accounts (default is \
             accepted)",
        ),
        (
            "setHostnameAsFQDN",
            "setHostnameAsFQDN is not supported: each replica's host name is its allocation id",
        ),
        (
            "shareProcessNamespace",
            "shareProcessNamespace is not supported: Skein runs one container per job",
        ),
        (
            "subdomain",
            "subdomain is not supported: replicas are found through their service's DNS name",
        ),
        ("tolerations", NO_TAINTS),
        (
            "topologySpreadConstraints",
            "topologySpreadConstraints are not supported: Skein spreads replicas over nodes by \
             default (annotation skein.io/placement: spread or binpack)",
        ),
    ],
    defaults: &[
        ("hostUsers", "true"),
        ("os", r#"{"name":"linux"}"#),
        ("schedulerName", r#""default-scheduler""#),
        ("serviceAccount", r#""default""#),
        ("serviceAccountName", r#""default""#),
    ],
};

/// `v1 PodSecurityContext`.
pub(crate) const POD_SECURITY: Fields = Fields {
    kind: "PodSecurityContext",
    honoured: &[
        "fsGroup",
        "runAsGroup",
        "runAsNonRoot",
        "runAsUser",
        "supplementalGroups",
    ],
    refused: &[
        (
            "appArmorProfile",
            "appArmorProfile is not supported: containers get Docker's default profile \
             ({type: RuntimeDefault} is accepted)",
        ),
        (
            "fsGroupChangePolicy",
            "fsGroupChangePolicy is not supported: Skein changes no volume ownership (hostPath \
             directories keep theirs, as in Kubernetes)",
        ),
        (
            "seLinuxChangePolicy",
            "seLinuxChangePolicy is not supported: Skein relabels no volumes",
        ),
        (
            "seLinuxOptions",
            "seLinuxOptions are not supported: containers get Docker's default SELinux labels",
        ),
        (
            "seccompProfile",
            "seccompProfile is not supported: containers get Docker's default seccomp profile \
             ({type: RuntimeDefault} is accepted)",
        ),
        (
            "supplementalGroupsPolicy",
            "supplementalGroupsPolicy Strict is not supported: the image's groups are merged \
             (Merge, the default, is accepted)",
        ),
        (
            "sysctls",
            "sysctls are not supported: kernel parameters stay the node's",
        ),
        (
            "windowsOptions",
            "windowsOptions are not supported: Skein runs Linux containers only",
        ),
    ],
    defaults: &[
        ("appArmorProfile", r#"{"type":"RuntimeDefault"}"#),
        ("seccompProfile", r#"{"type":"RuntimeDefault"}"#),
        ("supplementalGroupsPolicy", r#""Merge""#),
    ],
};

/// `v1 Container`.
pub(crate) const CONTAINER: Fields = Fields {
    kind: "Container",
    honoured: &[
        "args",
        "command",
        "env",
        "image",
        "imagePullPolicy",
        "lifecycle",
        "livenessProbe",
        "name",
        "ports",
        "readinessProbe",
        "resources",
        "securityContext",
        "volumeMounts",
        "workingDir",
    ],
    refused: &[
        (
            "envFrom",
            "envFrom is not supported; list the variables under env with a value",
        ),
        (
            "resizePolicy",
            "resizePolicy is not supported: a resource change rolls out new replicas",
        ),
        (
            "restartPolicy",
            "a container's restartPolicy (sidecars) is not supported; set restartPolicy on the \
             pod",
        ),
        (
            "restartPolicyRules",
            "restartPolicyRules are not supported; set restartPolicy on the pod",
        ),
        (
            "startupProbe",
            "startupProbe is not supported yet; give the livenessProbe an initialDelaySeconds \
             long enough for the start",
        ),
        ("stdin", "stdin is not supported: containers run detached"),
        (
            "stdinOnce",
            "stdinOnce is not supported: containers run detached",
        ),
        (
            "terminationMessagePath",
            "terminationMessagePath is not supported: Skein reports exit codes and logs \
             (/dev/termination-log, the default, is accepted)",
        ),
        (
            "terminationMessagePolicy",
            "terminationMessagePolicy is not supported: Skein reports exit codes and logs \
             (File, the default, is accepted)",
        ),
        ("tty", "tty is not supported: containers run detached"),
        (
            "volumeDevices",
            "volumeDevices (raw block devices) are not supported; mount a hostPath directory \
             with volumeMounts instead",
        ),
    ],
    defaults: &[
        ("terminationMessagePath", r#""/dev/termination-log""#),
        ("terminationMessagePolicy", r#""File""#),
    ],
};

/// `v1 Volume`: only `hostPath` volumes.
pub(crate) const VOLUME: Fields = Fields {
    kind: "Volume",
    honoured: &["hostPath", "name"],
    refused: &[
        ("awsElasticBlockStore", VOLUMES),
        ("azureDisk", VOLUMES),
        ("azureFile", VOLUMES),
        ("cephfs", VOLUMES),
        ("cinder", VOLUMES),
        ("configMap", VOLUMES),
        ("csi", VOLUMES),
        ("downwardAPI", VOLUMES),
        ("emptyDir", VOLUMES),
        ("ephemeral", VOLUMES),
        ("fc", VOLUMES),
        ("flexVolume", VOLUMES),
        ("flocker", VOLUMES),
        ("gcePersistentDisk", VOLUMES),
        ("gitRepo", VOLUMES),
        ("glusterfs", VOLUMES),
        ("image", VOLUMES),
        ("iscsi", VOLUMES),
        ("nfs", VOLUMES),
        ("persistentVolumeClaim", VOLUMES),
        ("photonPersistentDisk", VOLUMES),
        ("portworxVolume", VOLUMES),
        ("projected", VOLUMES),
        ("quobyte", VOLUMES),
        ("rbd", VOLUMES),
        ("scaleIO", VOLUMES),
        ("secret", VOLUMES),
        ("storageos", VOLUMES),
        ("vsphereVolume", VOLUMES),
    ],
    defaults: &[],
};

/// `v1 HostPathVolumeSource`.
pub(crate) const HOST_PATH: Fields = Fields {
    kind: "HostPathVolumeSource",
    honoured: &["path"],
    refused: &[(
        "type",
        "hostPath type is not supported: Docker creates a missing directory \
         (DirectoryOrCreate, and \"\" are accepted); other types are not checked",
    )],
    defaults: &[("type", r#""""#), ("type", r#""DirectoryOrCreate""#)],
};

/// `v1 VolumeMount`: a `hostPath` volume mounted into the container.
pub(crate) const VOLUME_MOUNT: Fields = Fields {
    kind: "VolumeMount",
    honoured: &["mountPath", "name", "readOnly"],
    refused: &[
        (
            "bindMountOptions",
            "bindMountOptions are not supported: the directory is bind-mounted as Docker does",
        ),
        (
            "mountPropagation",
            "mountPropagation is not supported: mounts are private (None is accepted)",
        ),
        (
            "recursiveReadOnly",
            "recursiveReadOnly is not supported: readOnly applies to the mount itself \
             (Disabled is accepted)",
        ),
        (
            "subPath",
            "subPath is not supported; point the hostPath volume at the subdirectory itself",
        ),
        (
            "subPathExpr",
            "subPathExpr is not supported; point the hostPath volume at the subdirectory itself",
        ),
    ],
    defaults: &[
        ("mountPropagation", r#""None""#),
        ("recursiveReadOnly", r#""Disabled""#),
    ],
};

/// `v1 SecurityContext` (a container's).
pub(crate) const SECURITY: Fields = Fields {
    kind: "SecurityContext",
    honoured: &[
        "allowPrivilegeEscalation",
        "capabilities",
        "privileged",
        "readOnlyRootFilesystem",
        "runAsGroup",
        "runAsNonRoot",
        "runAsUser",
    ],
    refused: &[
        (
            "appArmorProfile",
            "appArmorProfile is not supported: containers get Docker's default profile \
             ({type: RuntimeDefault} is accepted)",
        ),
        (
            "procMount",
            "procMount is not supported: /proc is masked as Docker does (Default is accepted)",
        ),
        (
            "seLinuxOptions",
            "seLinuxOptions are not supported: containers get Docker's default SELinux labels",
        ),
        (
            "seccompProfile",
            "seccompProfile is not supported: containers get Docker's default seccomp profile \
             ({type: RuntimeDefault} is accepted)",
        ),
        (
            "windowsOptions",
            "windowsOptions are not supported: Skein runs Linux containers only",
        ),
    ],
    defaults: &[
        ("appArmorProfile", r#"{"type":"RuntimeDefault"}"#),
        ("procMount", r#""Default""#),
        ("seccompProfile", r#"{"type":"RuntimeDefault"}"#),
    ],
};

/// `v1 Capabilities`.
pub(crate) const CAPABILITIES: Fields = Fields {
    kind: "Capabilities",
    honoured: &["add", "drop"],
    refused: &[],
    defaults: &[],
};

/// `v1 Lifecycle`.
pub(crate) const LIFECYCLE: Fields = Fields {
    kind: "Lifecycle",
    honoured: &["postStart", "preStop"],
    refused: &[(
        "stopSignal",
        "stopSignal is not supported yet: containers are stopped with the image's STOPSIGNAL \
         (SIGTERM unless the image says otherwise)",
    )],
    defaults: &[],
};

/// `v1 LifecycleHandler` (a postStart or preStop hook).
pub(crate) const LIFECYCLE_HANDLER: Fields = Fields {
    kind: "LifecycleHandler",
    honoured: &["exec", "sleep"],
    refused: &[
        (
            "httpGet",
            "httpGet hooks are not supported; use exec (e.g. command: [wget, -qO-, \
             http://127.0.0.1/quit]) or sleep",
        ),
        (
            "tcpSocket",
            "tcpSocket hooks are not supported (Kubernetes deprecates them); use exec or sleep",
        ),
    ],
    defaults: &[],
};

/// `v1 ExecAction` (probes and hooks).
pub(crate) const EXEC_ACTION: Fields = Fields {
    kind: "ExecAction",
    honoured: &["command"],
    refused: &[],
    defaults: &[],
};

/// `v1 SleepAction`.
pub(crate) const SLEEP_ACTION: Fields = Fields {
    kind: "SleepAction",
    honoured: &["seconds"],
    refused: &[],
    defaults: &[],
};

/// `v1 Probe`.
pub(crate) const PROBE: Fields = Fields {
    kind: "Probe",
    honoured: &[
        "exec",
        "failureThreshold",
        "httpGet",
        "initialDelaySeconds",
        "periodSeconds",
        "successThreshold",
        "tcpSocket",
        "timeoutSeconds",
    ],
    refused: &[
        (
            "grpc",
            "grpc probes are not supported; use httpGet, tcpSocket or exec",
        ),
        (
            "terminationGracePeriodSeconds",
            "a probe's terminationGracePeriodSeconds is not supported; set it on the pod",
        ),
    ],
    defaults: &[],
};

/// `v1 HTTPGetAction` (probes).
pub(crate) const HTTP_GET: Fields = Fields {
    kind: "HTTPGetAction",
    honoured: &["path", "port", "scheme"],
    refused: &[
        (
            "host",
            "host is not supported; the probe always targets the container",
        ),
        ("httpHeaders", "httpHeaders are not supported"),
        (
            "protocol",
            "protocol is not supported: probes speak HTTP/1.1 (the default)",
        ),
    ],
    defaults: &[],
};

/// `v1 TCPSocketAction` (probes).
pub(crate) const TCP_SOCKET: Fields = Fields {
    kind: "TCPSocketAction",
    honoured: &["port"],
    refused: &[(
        "host",
        "host is not supported; the probe always targets the container",
    )],
    defaults: &[],
};

/// `v1 ContainerPort`.
pub(crate) const CONTAINER_PORT: Fields = Fields {
    kind: "ContainerPort",
    honoured: &["containerPort", "hostPort", "name", "protocol"],
    refused: &[(
        "hostIP",
        "hostIP is not supported: published ports listen on every address of the node \
         (0.0.0.0 is accepted)",
    )],
    defaults: &[("hostIP", r#""0.0.0.0""#), ("hostIP", r#""""#)],
};

/// `v1 EnvVar`.
pub(crate) const ENV_VAR: Fields = Fields {
    kind: "EnvVar",
    honoured: &["name", "value"],
    refused: &[(
        "valueFrom",
        "valueFrom is not supported (Secrets and ConfigMaps are not supported yet); set value \
         instead",
    )],
    defaults: &[],
};

/// `v1 ResourceRequirements`.
pub(crate) const RESOURCES: Fields = Fields {
    kind: "ResourceRequirements",
    honoured: &["limits", "requests"],
    refused: &[(
        "claims",
        "claims are not supported: Skein has no dynamic resource allocation",
    )],
    defaults: &[],
};

/// `v1 PodDNSConfig`.
pub(crate) const DNS_CONFIG: Fields = Fields {
    kind: "PodDNSConfig",
    honoured: &["nameservers", "options", "searches"],
    refused: &[],
    defaults: &[],
};

/// `v1 PodDNSConfigOption`.
pub(crate) const DNS_OPTION: Fields = Fields {
    kind: "PodDNSConfigOption",
    honoured: &["name", "value"],
    refused: &[],
    defaults: &[],
};

/// `v1 HostAlias`.
pub(crate) const HOST_ALIAS: Fields = Fields {
    kind: "HostAlias",
    honoured: &["hostnames", "ip"],
    refused: &[],
    defaults: &[],
};

/// `v1 Affinity`.
pub(crate) const AFFINITY: Fields = Fields {
    kind: "Affinity",
    honoured: &["nodeAffinity"],
    refused: &[
        (
            "podAffinity",
            "podAffinity is not supported: Skein places replicas by resources, constraints \
             and spread",
        ),
        (
            "podAntiAffinity",
            "podAntiAffinity is not supported: Skein already spreads a job's replicas over \
             nodes (annotation skein.io/placement: spread)",
        ),
    ],
    defaults: &[],
};

/// `v1 NodeAffinity`.
pub(crate) const NODE_AFFINITY: Fields = Fields {
    kind: "NodeAffinity",
    honoured: &["requiredDuringSchedulingIgnoredDuringExecution"],
    refused: &[(
        "preferredDuringSchedulingIgnoredDuringExecution",
        "preferred node affinity is not supported: Skein constraints are required; use \
         requiredDuringSchedulingIgnoredDuringExecution or nodeSelector",
    )],
    defaults: &[],
};

/// `v1 NodeSelector` (required node affinity).
pub(crate) const NODE_SELECTOR: Fields = Fields {
    kind: "NodeSelector",
    honoured: &["nodeSelectorTerms"],
    refused: &[],
    defaults: &[],
};

/// `v1 NodeSelectorTerm`.
pub(crate) const NODE_SELECTOR_TERM: Fields = Fields {
    kind: "NodeSelectorTerm",
    honoured: &["matchExpressions"],
    refused: &[(
        "matchFields",
        "matchFields is not supported: select nodes by label with matchExpressions or \
         nodeSelector",
    )],
    defaults: &[],
};

/// `v1 NodeSelectorRequirement`.
pub(crate) const NODE_SELECTOR_REQUIREMENT: Fields = Fields {
    kind: "NodeSelectorRequirement",
    honoured: &["key", "operator", "values"],
    refused: &[],
    defaults: &[],
};

/// `v1 Service`.
pub(crate) const SERVICE: Fields = Fields {
    kind: "Service",
    honoured: &["apiVersion", "kind", "metadata", "spec"],
    refused: &[(
        "status",
        "status is written by a cluster, not by you; remove it from the manifest",
    )],
    defaults: &[],
};

/// `v1 ServiceSpec`.
pub(crate) const SERVICE_SPEC: Fields = Fields {
    kind: "ServiceSpec",
    honoured: &["ports", "selector", "type"],
    refused: &[
        (
            "allocateLoadBalancerNodePorts",
            "allocateLoadBalancerNodePorts: false is not supported: the routing mesh uses the \
             nodePort",
        ),
        (
            "clusterIP",
            "clusterIP is not supported: Skein services have no virtual IP; NAME.service.skein \
             resolves to the ready replicas (clusterIP: None, headless, is accepted)",
        ),
        (
            "clusterIPs",
            "clusterIPs are not supported: Skein services have no virtual IP",
        ),
        (
            "externalIPs",
            "externalIPs are not supported: the routing mesh listens on the nodePort of every \
             node; point your addresses at the nodes",
        ),
        (
            "externalName",
            "externalName is not supported: Skein services front a Deployment's replicas",
        ),
        (
            "externalTrafficPolicy",
            "externalTrafficPolicy Local is not supported: every node forwards to any ready \
             replica (Cluster is accepted)",
        ),
        (
            "healthCheckNodePort",
            "healthCheckNodePort is not supported: Skein has no cloud load balancer; every node forwards \
             the nodePort to a ready replica",
        ),
        (
            "internalTrafficPolicy",
            "internalTrafficPolicy Local is not supported: every node forwards to any ready \
             replica (Cluster is accepted)",
        ),
        (
            "ipFamilies",
            "ipFamilies other than [IPv4] are not supported: the routing mesh listens on IPv4",
        ),
        (
            "ipFamilyPolicy",
            "ipFamilyPolicy other than SingleStack is not supported: the routing mesh listens \
             on IPv4",
        ),
        (
            "loadBalancerClass",
            "loadBalancerClass is not supported: Skein has no cloud load balancer; every node forwards \
             the nodePort to a ready replica",
        ),
        (
            "loadBalancerIP",
            "loadBalancerIP is not supported: Skein has no cloud load balancer; every node forwards \
             the nodePort to a ready replica",
        ),
        (
            "loadBalancerSourceRanges",
            "loadBalancerSourceRanges are not supported: the routing mesh accepts connections \
             from anywhere the node is reachable; filter with the node's firewall",
        ),
        (
            "publishNotReadyAddresses",
            "publishNotReadyAddresses is not supported: only ready replicas get traffic and DNS \
             records",
        ),
        (
            "sessionAffinity",
            "sessionAffinity ClientIP is not supported: the routing mesh balances each \
             connection (annotation skein.io/balance; None is accepted)",
        ),
        (
            "sessionAffinityConfig",
            "sessionAffinityConfig is not supported: the routing mesh has no session affinity",
        ),
        (
            "trafficDistribution",
            "trafficDistribution is not supported: the routing mesh balances over every ready \
             replica",
        ),
    ],
    defaults: &[
        ("allocateLoadBalancerNodePorts", "true"),
        ("clusterIP", r#""None""#),
        ("clusterIP", r#""""#),
        ("externalTrafficPolicy", r#""Cluster""#),
        ("internalTrafficPolicy", r#""Cluster""#),
        ("ipFamilies", r#"["IPv4"]"#),
        ("ipFamilyPolicy", r#""SingleStack""#),
        ("sessionAffinity", r#""None""#),
    ],
};

/// `v1 ServicePort`.
pub(crate) const SERVICE_PORT: Fields = Fields {
    kind: "ServicePort",
    honoured: &["name", "nodePort", "port", "protocol", "targetPort"],
    refused: &[(
        "appProtocol",
        "appProtocol is not supported: the routing mesh forwards TCP connections whatever \
         they carry",
    )],
    defaults: &[],
};

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use k8s_openapi::api::apps::v1 as apps;
    use k8s_openapi::api::core::v1 as core;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
    use serde::de::{self, DeserializeOwned, Deserializer, Visitor};

    use super::*;

    /// A deserializer that records the field names a struct's
    /// `Deserialize` asks for, then stops: k8s-openapi lists every field.
    struct FieldNames<'a>(&'a mut Vec<&'static str>);

    impl<'de> Deserializer<'de> for FieldNames<'_> {
        type Error = de::value::Error;

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.extend_from_slice(fields);
            Err(de::Error::custom("fields recorded"))
        }

        fn deserialize_any<V: Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    fn fields_of<T: DeserializeOwned>() -> Vec<&'static str> {
        let mut names = Vec::new();
        let _ = T::deserialize(FieldNames(&mut names));
        assert!(
            !names.is_empty(),
            "{} lists no fields",
            std::any::type_name::<T>()
        );
        names
    }

    /// Every table, with the fields k8s-openapi's type really has.
    fn tables() -> Vec<(&'static Fields, Vec<&'static str>)> {
        vec![
            (&DEPLOYMENT, fields_of::<apps::Deployment>()),
            (&DEPLOYMENT_SPEC, fields_of::<apps::DeploymentSpec>()),
            (
                &DEPLOYMENT_STRATEGY,
                fields_of::<apps::DeploymentStrategy>(),
            ),
            (
                &ROLLING_UPDATE,
                fields_of::<apps::RollingUpdateDeployment>(),
            ),
            (&LABEL_SELECTOR, fields_of::<LabelSelector>()),
            (&POD_TEMPLATE, fields_of::<core::PodTemplateSpec>()),
            (&POD_SPEC, fields_of::<core::PodSpec>()),
            (&POD_SECURITY, fields_of::<core::PodSecurityContext>()),
            (&CONTAINER, fields_of::<core::Container>()),
            (&VOLUME, fields_of::<core::Volume>()),
            (&HOST_PATH, fields_of::<core::HostPathVolumeSource>()),
            (&VOLUME_MOUNT, fields_of::<core::VolumeMount>()),
            (&SECURITY, fields_of::<core::SecurityContext>()),
            (&CAPABILITIES, fields_of::<core::Capabilities>()),
            (&LIFECYCLE, fields_of::<core::Lifecycle>()),
            (&LIFECYCLE_HANDLER, fields_of::<core::LifecycleHandler>()),
            (&EXEC_ACTION, fields_of::<core::ExecAction>()),
            (&SLEEP_ACTION, fields_of::<core::SleepAction>()),
            (&PROBE, fields_of::<core::Probe>()),
            (&HTTP_GET, fields_of::<core::HTTPGetAction>()),
            (&TCP_SOCKET, fields_of::<core::TCPSocketAction>()),
            (&CONTAINER_PORT, fields_of::<core::ContainerPort>()),
            (&ENV_VAR, fields_of::<core::EnvVar>()),
            (&RESOURCES, fields_of::<core::ResourceRequirements>()),
            (&DNS_CONFIG, fields_of::<core::PodDNSConfig>()),
            (&DNS_OPTION, fields_of::<core::PodDNSConfigOption>()),
            (&HOST_ALIAS, fields_of::<core::HostAlias>()),
            (&AFFINITY, fields_of::<core::Affinity>()),
            (&NODE_AFFINITY, fields_of::<core::NodeAffinity>()),
            (&NODE_SELECTOR, fields_of::<core::NodeSelector>()),
            (&NODE_SELECTOR_TERM, fields_of::<core::NodeSelectorTerm>()),
            (
                &NODE_SELECTOR_REQUIREMENT,
                fields_of::<core::NodeSelectorRequirement>(),
            ),
            (&SERVICE, fields_of::<core::Service>()),
            (&SERVICE_SPEC, fields_of::<core::ServiceSpec>()),
            (&SERVICE_PORT, fields_of::<core::ServicePort>()),
        ]
    }

    #[test]
    fn every_kubernetes_field_is_honoured_or_refused() {
        let mut problems = Vec::new();
        for (table, real) in tables() {
            let real: BTreeSet<&str> = real.into_iter().collect();
            let honoured: BTreeSet<&str> = table.honoured.iter().copied().collect();
            let refused: BTreeSet<&str> = table.refused.iter().map(|(k, _)| *k).collect();
            for f in &real {
                if !honoured.contains(f) && !refused.contains(f) {
                    problems.push(format!(
                        "{}.{f} is neither honoured nor refused",
                        table.kind
                    ));
                }
            }
            for f in honoured.union(&refused) {
                if !real.contains(f) {
                    problems.push(format!("{}.{f} is listed but is no field", table.kind));
                }
            }
            for f in honoured.intersection(&refused) {
                problems.push(format!("{}.{f} is both honoured and refused", table.kind));
            }
            for (f, _) in table.defaults {
                if !refused.contains(f) {
                    problems.push(format!(
                        "{}.{f} has defaults but is not refused",
                        table.kind
                    ));
                }
            }
            if table.refused.len() != refused.len() {
                problems.push(format!("{} refuses a field twice", table.kind));
            }
        }
        assert!(problems.is_empty(), "{problems:#?}");
    }

    #[test]
    fn the_named_security_fields_are_refused() {
        let refused = |t: &Fields, f: &str| t.refused.iter().any(|(k, _)| *k == f);
        for f in ["tolerations", "nodeName", "shareProcessNamespace"] {
            assert!(refused(&POD_SPEC, f), "{f}");
        }
        // Honoured, but only on nodes that allow them (scheduler, executor).
        for f in ["hostNetwork", "hostPID", "hostIPC", "volumes"] {
            assert!(POD_SPEC.honoured.contains(&f), "{f}");
        }
        assert!(SECURITY.honoured.contains(&"privileged"));
        for f in ["secret", "configMap", "emptyDir", "persistentVolumeClaim"] {
            assert!(refused(&VOLUME, f), "{f}");
        }
        assert!(refused(&VOLUME_MOUNT, "subPath"));
        assert!(refused(&POD_SECURITY, "sysctls"));
        assert!(refused(&DEPLOYMENT_SPEC, "paused"));
        assert!(refused(&SERVICE_SPEC, "externalIPs"));
    }
}
