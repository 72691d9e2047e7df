//! End-to-end tests of `parse_manifests`: conversions, and the exact file
//! position of every class of error.

use std::collections::BTreeMap;

use base64::Engine as _;
use proptest::prelude::*;
use skein_protocol::api::{PullSecret, RegistryLogin};
use skein_protocol::manifest::{
    parse_manifest, parse_manifests, ManifestError, MAX_MANIFEST_BYTES,
};
use skein_protocol::spec::{
    Balance, Capabilities, CheckKind, CheckSpec, ContainerSpec, DnsOption, DnsPolicy, DnsSpec,
    Hook, HostAlias, HostPathMount, JobSpec, Lifecycle, PlacementStrategy, PortProtocol, PortSpec,
    Probe, PullPolicy, ResourceVec, Resources, RestartPolicy, SecuritySpec, ServiceSpec,
    UpdateStrategy, DEFAULT_CPU_MILLIS, DEFAULT_MEMORY_BYTES, DEFAULT_PIDS_LIMIT,
};

/// The Deployment from the article (section 4.2), byte for byte.
const SEED: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: my-nginx
spec:
  replicas: 3
  selector:
    matchLabels:
      app: my-nginx
  template:
    metadata:
      labels:
        app: my-nginx
    spec:
      containers:
      - name: my-nginx
        image: my-nginx:latest
        ports:
        - containerPort: 80
";

const NATIVE: &str = "\
name: web
replicas: 3
image: skein-demo/web:latest
command: [\"/bin/httpd\"]
args: [\"-f\", \"-p\", \"80\"]
env: { GREETING: hello }
ports:
  - name: http
    container_port: 80
    host_port: 8080      # optional
    protocol: tcp        # optional
resources:
  requests: { cpu: 250m, memory: 64Mi }
  limits: { cpu: \"1\", memory: 128Mi }
restart: on-failure      # always | on-failure | never
labels: { tier: frontend }
constraints: { region: eu-west }
placement: spread        # spread | binpack
";

/// What every "not supported" message lists.
const SUPPORTED: &str =
    "supported: apps/v1 Deployment, v1 Service, v1 Secret (kubernetes.io/dockerconfigjson)";

fn err(text: &str) -> ManifestError {
    parse_manifests("deployment.yaml", text).unwrap_err()
}

/// Asserts line, column and path, and returns the message.
fn located(text: &str, line: usize, column: usize, path: Option<&str>) -> String {
    let e = err(text);
    assert_eq!(
        (e.line, e.column, e.path.as_deref()),
        (Some(line), Some(column), path),
        "{e}"
    );
    e.message
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn seed_deployment_converts() {
    let specs = parse_manifests("deployment.yaml", SEED).unwrap();
    assert_eq!(
        specs,
        [JobSpec {
            name: "my-nginx".into(),
            replicas: 3,
            image: "my-nginx:latest".into(),
            command: vec![],
            args: vec![],
            env: BTreeMap::new(),
            ports: vec![PortSpec {
                name: None,
                container_port: 80,
                host_port: None,
                protocol: PortProtocol::Tcp,
            }],
            resources: Resources {
                requests: ResourceVec::new(DEFAULT_CPU_MILLIS, DEFAULT_MEMORY_BYTES),
                limit_cpu_millis: None,
                limit_memory_bytes: None,
            },
            restart: RestartPolicy::Always,
            labels: map(&[("app", "my-nginx")]),
            constraints: BTreeMap::new(),
            placement: PlacementStrategy::Spread,
            service: None,
            checks: vec![],
            // Kubernetes' defaults: 25% surge (up) and unavailable (down) of 3, 600 s.
            update: UpdateStrategy {
                max_surge: 1,
                max_unavailable: 0,
                progress_deadline_secs: 600,
            },
            pull: None,
            pull_secrets: vec![],
            container: Default::default(),
        }]
    );
}

#[test]
fn native_job_converts_every_field() {
    let specs = parse_manifests("web.yaml", NATIVE).unwrap();
    assert_eq!(
        specs,
        [JobSpec {
            name: "web".into(),
            replicas: 3,
            image: "skein-demo/web:latest".into(),
            command: vec!["/bin/httpd".into()],
            args: vec!["-f".into(), "-p".into(), "80".into()],
            env: map(&[("GREETING", "hello")]),
            ports: vec![PortSpec {
                name: Some("http".into()),
                container_port: 80,
                host_port: Some(8080),
                protocol: PortProtocol::Tcp,
            }],
            resources: Resources {
                requests: ResourceVec::new(250, 64 << 20),
                limit_cpu_millis: Some(1000),
                limit_memory_bytes: Some(128 << 20),
            },
            restart: RestartPolicy::OnFailure,
            labels: map(&[("tier", "frontend")]),
            constraints: map(&[("region", "eu-west")]),
            placement: PlacementStrategy::Spread,
            service: None,
            checks: vec![],
            update: UpdateStrategy::default(),
            pull: None,
            pull_secrets: vec![],
            container: Default::default(),
        }]
    );
}

#[test]
fn multi_document_file_gives_every_spec_and_skips_empty_documents() {
    let text = format!("---\n{SEED}---\n# a comment only\n---\n{NATIVE}---\n");
    let specs = parse_manifests("all.yaml", &text).unwrap();
    let names: Vec<_> = specs.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["my-nginx", "web"]);
}

#[test]
fn deployment_quantities_and_options_convert_exactly() {
    let text = SEED
        .replace(
            "        ports:",
            "        command: [nginx]\n        args: [-g, daemon off;]\n        \
             env:\n        - name: MODE\n          value: prod\n        \
             resources:\n          requests: {cpu: 500m, memory: 128Mi}\n          \
             limits: {cpu: 1, memory: 1.5Gi, ephemeral-storage: 1Gi}\n        \
             imagePullPolicy: Always\n        livenessProbe: {httpGet: {path: /, port: 80}}\n        ports:",
        )
        .replace(
            "  name: my-nginx\n",
            "  name: my-nginx\n  namespace: web\n  annotations:\n    skein.io/placement: binpack\n",
        )
        .replace(
            "      containers:",
            "      restartPolicy: OnFailure\n      nodeSelector: {zone: a}\n      \
             terminationGracePeriodSeconds: 5\n      containers:",
        )
        .replace(
            "        - containerPort: 80\n",
            "        - containerPort: 80\n          hostPort: 8080\n          name: http\n          \
             protocol: UDP\n",
        );
    let spec = &parse_manifests("d.yaml", &text).unwrap()[0];
    assert_eq!(
        spec.resources,
        Resources {
            requests: ResourceVec::new(500, 134_217_728),
            limit_cpu_millis: Some(1000),
            limit_memory_bytes: Some(1_610_612_736),
        }
    );
    assert_eq!(spec.command, ["nginx"]);
    assert_eq!(spec.args, ["-g", "daemon off;"]);
    assert_eq!(spec.env, map(&[("MODE", "prod")]));
    assert_eq!(spec.restart, RestartPolicy::OnFailure);
    assert_eq!(spec.constraints, map(&[("zone", "a")]));
    assert_eq!(spec.placement, PlacementStrategy::Binpack);
    assert_eq!(spec.pull, Some(PullPolicy::Always));
    assert_eq!(
        spec.checks,
        [CheckSpec::new(
            CheckKind::Liveness,
            Probe::Http {
                port: 80,
                path: "/".into(),
            },
        )]
    );
    assert_eq!(
        spec.ports,
        [PortSpec {
            name: Some("http".into()),
            container_port: 80,
            host_port: Some(8080),
            protocol: PortProtocol::Udp,
        }]
    );
}

#[test]
fn missing_requests_fall_back_to_limits() {
    let text = "name: web\nimage: x\nresources: {limits: {cpu: 0.5, memory: 32Mi}}\n";
    let spec = &parse_manifests("w.yaml", text).unwrap()[0];
    assert_eq!(spec.resources.requests, ResourceVec::new(500, 32 << 20));
    let numbers = "name: web\nimage: x\nresources: {requests: {cpu: 2, memory: 134217728}}\n";
    let spec = &parse_manifests("w.yaml", numbers).unwrap()[0];
    assert_eq!(spec.resources.requests, ResourceVec::new(2000, 134_217_728));
}

#[test]
fn display_has_file_line_column_path_and_message() {
    let e = err(&SEED.replace("replicas: 3", "replicas: -1"));
    assert_eq!(
        e.to_string(),
        "deployment.yaml:6:13: spec.replicas: must be 0 or more, got -1"
    );
    let e = err("");
    assert_eq!(
        e.to_string(),
        "deployment.yaml: no jobs found in deployment.yaml"
    );
}

#[test]
fn malformed_yaml_is_located() {
    let msg = located("name: web\nimage: x\nports: [1, 2\n", 3, 8, None);
    assert!(msg.starts_with("invalid YAML"), "{msg}");
}

#[test]
fn unknown_field_in_deployment_is_located_at_the_key() {
    let msg = located(
        &SEED.replace("replicas: 3", "replica: 3"),
        6,
        3,
        Some("spec.replica"),
    );
    assert!(msg.starts_with("unknown field"), "{msg}");
    located(
        &SEED.replace("containerPort", "containerPortt"),
        19,
        11,
        Some("spec.template.spec.containers[0].ports[0].containerPortt"),
    );
}

#[test]
fn unknown_field_in_native_job_lists_the_allowed_ones() {
    let msg = located("name: web\nimage: x\nreplica: 2\n", 3, 1, Some("replica"));
    assert!(msg.contains("unknown field `replica`"), "{msg}");
    assert!(msg.contains("replicas"), "{msg}");
    located(
        "name: web\nimage: x\nports:\n  - containerPort: 80\n",
        4,
        5,
        Some("ports[0].containerPort"),
    );
}

#[test]
fn wrong_types_are_located_at_the_value() {
    let msg = located(
        &SEED.replace("replicas: 3", "replicas: three"),
        6,
        13,
        Some("spec.replicas"),
    );
    assert_eq!(msg, "expected a whole number");
    let msg = located(
        "name: web\nimage: x\nports:\n- container_port: 70000\n",
        4,
        19,
        Some("ports[0].container_port"),
    );
    assert_eq!(msg, "expected a whole number from 0 to 65535");
    let msg = located(
        "name: web\nimage: x\nrestart: sometimes\n",
        3,
        10,
        Some("restart"),
    );
    assert!(msg.contains("always, on-failure, never"), "{msg}");
    located("name: web\nimage: x\nports: {a: 1}\n", 3, 8, Some("ports"));
}

#[test]
fn negative_replicas_are_located() {
    let msg = located(
        "name: web\nimage: x\nreplicas: -2\n",
        3,
        11,
        Some("replicas"),
    );
    assert_eq!(msg, "must be 0 or more, got -2");
}

#[test]
fn bad_quantities_are_located_at_the_value() {
    let text = SEED.replace(
        "        ports:",
        "        resources:\n          requests:\n            cpu: 250m\n            \
         memory: 128MB\n        ports:",
    );
    let msg = located(
        &text,
        21,
        21,
        Some("spec.template.spec.containers[0].resources.requests.memory"),
    );
    assert!(msg.contains("Ki, Mi, Gi"), "{msg}");
    let msg = located(
        "name: web\nimage: x\nresources: {limits: {cpu: 0.0001}}\n",
        3,
        27,
        Some("resources.limits.cpu"),
    );
    assert!(msg.contains("millicore"), "{msg}");
}

#[test]
fn missing_image_is_located_at_the_container() {
    let msg = located(
        &SEED.replace("        image: my-nginx:latest\n", ""),
        16,
        9,
        Some("spec.template.spec.containers[0].image"),
    );
    assert!(msg.contains("an image is required"), "{msg}");
    located("name: web\nreplicas: 1\n", 1, 1, Some("image"));
}

#[test]
fn unsupported_kinds_name_what_is_supported() {
    let ingress = "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {name: web}\n";
    let msg = located(ingress, 2, 7, Some("kind"));
    assert_eq!(
        msg,
        format!("kind Ingress is not supported yet; {SUPPORTED}")
    );
    let msg = located(
        &SEED.replace("apps/v1", "extensions/v1beta1"),
        1,
        13,
        Some("apiVersion"),
    );
    assert!(msg.contains(SUPPORTED), "{msg}");
    let msg = located(
        &SEED.replace("kind: Deployment", "kind: Service"),
        1,
        13,
        Some("apiVersion"),
    );
    assert_eq!(
        msg,
        format!("apiVersion apps/v1 is not supported for a Service; {SUPPORTED}")
    );
    let msg = located(
        &SEED.replace("apiVersion: apps/v1\n", ""),
        1,
        1,
        Some("apiVersion"),
    );
    assert_eq!(msg, format!("apiVersion is required; {SUPPORTED}"));
    // User text is quoted back, but never as raw control characters.
    let msg = located(
        "apiVersion: apps/v1\nkind: \"\\e[2J\"\n",
        2,
        7,
        Some("kind"),
    );
    assert!(msg.starts_with("kind \\u{1b}[2J is not supported"), "{msg}");
}

#[test]
fn validation_errors_map_back_to_the_source() {
    // Deployment: JobSpec `ports[1].host_port` is `containerPort`'s sibling `hostPort`.
    let text = SEED.replace(
        "        - containerPort: 80\n",
        "        - containerPort: 80\n          hostPort: 8080\n        \
         - containerPort: 81\n          hostPort: 8080\n",
    );
    let msg = located(
        &text,
        22,
        21,
        Some("spec.template.spec.containers[0].ports[1].hostPort"),
    );
    assert_eq!(msg, "host port 8080/tcp is used twice");
    located(
        &SEED.replace("name: my-nginx\nspec", "name: My_Nginx\nspec"),
        4,
        9,
        Some("metadata.name"),
    );
    located(
        &SEED.replace(
            "ports:\n",
            "resources: {limits: {memory: 1Mi}}\n        ports:\n",
        ),
        18,
        38,
        Some("spec.template.spec.containers[0].resources.limits.memory"),
    );
    // Native: the paths are JobSpec's own.
    located(
        "name: web\nimage: x\nports: [{container_port: 80, host_port: 0}]\n",
        3,
        41,
        Some("ports[0].host_port"),
    );
}

#[test]
fn container_count_and_unsupported_fields_are_errors() {
    let msg = located(
        &SEED.replace(
            "      - name: my-nginx",
            "      - name: side\n        image: x\n      - name: my-nginx",
        ),
        18,
        9,
        Some("spec.template.spec.containers"),
    );
    assert!(msg.contains("exactly one container"), "{msg}");
    let msg = located(
        &SEED.replace(
            "        ports:",
            "        env:\n        - name: A\n          valueFrom: {fieldRef: {fieldPath: x}}\n        ports:",
        ),
        20,
        11,
        Some("spec.template.spec.containers[0].env[0].valueFrom"),
    );
    assert!(msg.contains("not supported"), "{msg}");
    let msg = located(
        &SEED.replace(
            "- containerPort: 80",
            "- containerPort: 80\n          protocol: SCTP",
        ),
        20,
        21,
        Some("spec.template.spec.containers[0].ports[0].protocol"),
    );
    assert!(msg.contains("use TCP or UDP"), "{msg}");
}

#[test]
fn errors_in_later_documents_use_whole_file_lines() {
    let text = format!("{SEED}---\nname: web\nimage: x\nreplicas: -1\n");
    located(&text, 23, 11, Some("replicas"));
    let crlf = text.replace('\n', "\r\n");
    located(&crlf, 23, 11, Some("replicas"));
    // The directive between documents belongs to neither slice.
    let directives = format!("{SEED}...\n%YAML 1.2\n---\nname: web\nimage: x\nreplicas: -1\n");
    located(&directives, 25, 11, Some("replicas"));
}

#[test]
fn duplicate_names_are_reported_at_the_second() {
    let text = format!("{SEED}---\nimage: x\nname: my-nginx\n");
    let msg = located(&text, 22, 7, Some("name"));
    assert!(msg.contains("already used on line 4"), "{msg}");
}

#[test]
fn files_without_jobs_are_errors() {
    for text in ["", "# nothing\n", "---\n---\n", "~\n"] {
        let e = err(text);
        assert_eq!(e.message, "no jobs found in deployment.yaml", "{text:?}");
        assert_eq!(e.line, None);
    }
    located("- a\n- b\n", 1, 1, None);
}

#[test]
fn oversized_input_and_alias_bombs_are_refused() {
    let big = format!("name: web\nimage: x\n#{}\n", "x".repeat(MAX_MANIFEST_BYTES));
    assert!(err(&big).message.contains("1 MiB"));

    let mut bomb = String::from("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: x\n");
    bomb.push_str("  l0: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..9 {
        let p = format!("*l{}", i - 1);
        bomb.push_str(&format!(
            "  l{i}: &l{i} [{}]\n",
            [p.as_str(); 10].join(", ")
        ));
    }
    let started = std::time::Instant::now();
    let e = err(&bomb);
    assert!(e.message.contains("too large or too complex"), "{e}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

/// A native job with a service and one check of each probe type.
const NATIVE_SERVICE: &str = "\
name: web
image: skein-demo/web:latest
ports: [{ name: http, container_port: 80 }, { container_port: 9090 }]
service:
  port: http
  publish: 8080
  balance: least-connections
checks:
  - kind: readiness
    http: { port: http, path: /healthz }
    period: 2
    timeout: 1
    initial_delay: 0
    failure_threshold: 3
  - kind: liveness
    tcp: { port: 80 }
  - kind: liveness
    exec: [cat, /tmp/healthy]
";

/// A Deployment with a named port and readiness + liveness probes.
const PROBED: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web, tier: fe}
    spec:
      containers:
      - name: web
        image: skein-demo/web:latest
        ports:
        - {name: http, containerPort: 80}
        readinessProbe:
          httpGet: {path: /ready, port: http}
          periodSeconds: 2
        livenessProbe:
          tcpSocket: {port: 80}
          initialDelaySeconds: 5
          failureThreshold: 4
          timeoutSeconds: 2
        workingDir: /srv
        terminationMessagePolicy: File
";

/// A Service selecting [`PROBED`]'s pods, published on a node port.
const SERVICE: &str = "\
apiVersion: v1
kind: Service
metadata:
  name: web-svc
  annotations: {skein.io/balance: least-connections}
spec:
  type: NodePort
  selector: {app: web}
  ports:
  - port: 8000
    targetPort: http
    nodePort: 30080
";

#[test]
fn native_service_and_checks_convert() {
    let spec = &parse_manifests("web.yaml", NATIVE_SERVICE).unwrap()[0];
    assert_eq!(
        spec.service,
        Some(ServiceSpec {
            name: "web".into(),
            port: Some("http".into()),
            publish: Some(8080),
            balance: Balance::LeastConnections,
        })
    );
    assert_eq!(spec.service_port().map(|p| p.container_port), Some(80));
    assert_eq!(
        spec.checks,
        [
            CheckSpec {
                kind: CheckKind::Readiness,
                probe: Probe::Http {
                    port: 80,
                    path: "/healthz".into(),
                },
                period_secs: 2,
                timeout_secs: 1,
                initial_delay_secs: 0,
                failure_threshold: 3,
            },
            CheckSpec::new(CheckKind::Liveness, Probe::Tcp { port: 80 }),
            CheckSpec::new(
                CheckKind::Liveness,
                Probe::Exec {
                    command: vec!["cat".into(), "/tmp/healthy".into()],
                },
            ),
        ]
    );
    // The string shorthand names the service; everything else defaults.
    let short = "name: web\nimage: x\nports: [{container_port: 80}]\nservice: www\n";
    let spec = &parse_manifests("web.yaml", short).unwrap()[0];
    assert_eq!(
        spec.service,
        Some(ServiceSpec {
            name: "www".into(),
            port: None,
            publish: None,
            balance: Balance::RoundRobin,
        })
    );
    let defaulted = "name: web\nimage: x\nports: [{container_port: 80}]\nservice: {}\n";
    let spec = &parse_manifests("web.yaml", defaulted).unwrap()[0];
    assert_eq!(spec.service.as_ref().map(|s| s.name.as_str()), Some("web"));
}

#[test]
fn bad_native_services_and_checks_are_located() {
    let two = NATIVE_SERVICE.replace(
        "    tcp: { port: 80 }\n",
        "    tcp: { port: 80 }\n    http: { port: 80 }\n",
    );
    let e = err(&two);
    assert_eq!(
        e.to_string(),
        "deployment.yaml:15:5: checks[1]: exactly one of http, tcp, exec is required"
    );
    let none = "name: web\nimage: x\nchecks:\n- kind: liveness\n";
    let msg = located(none, 4, 3, Some("checks[0]"));
    assert_eq!(msg, "exactly one of http, tcp, exec is required");
    let msg = located(
        "name: web\nimage: x\nchecks:\n- {http: {port: 80}}\n",
        4,
        3,
        Some("checks[0]"),
    );
    assert_eq!(msg, "kind is required: liveness or readiness");
    let msg = located(
        &NATIVE_SERVICE.replace("port: http, path", "port: web, path"),
        10,
        19,
        Some("checks[0].http.port"),
    );
    assert_eq!(msg, "no port is named \"web\" (named ports: http)");
    let msg = located(
        &NATIVE_SERVICE.replace("period: 2", "period: 0"),
        11,
        13,
        Some("checks[0].period"),
    );
    assert_eq!(msg, "must be 1 or more");
    let msg = located(
        &NATIVE_SERVICE.replace("exec: [cat, /tmp/healthy]", "exec: []"),
        18,
        11,
        Some("checks[2].exec"),
    );
    assert!(msg.contains("a command is required"), "{msg}");
    let msg = located(
        &NATIVE_SERVICE.replace("kind: readiness", "kind: ready"),
        9,
        11,
        Some("checks[0].kind"),
    );
    assert!(msg.contains("liveness"), "{msg}");
    located(
        &NATIVE_SERVICE.replace("    period: 2", "    perod: 2"),
        11,
        5,
        Some("checks[0].perod"),
    );
    let msg = located(
        &NATIVE_SERVICE.replace("port: http\n", "port: grpc\n"),
        5,
        9,
        Some("service.port"),
    );
    assert!(msg.contains("(http/80, 9090)"), "{msg}");
    let msg = located(
        "name: web\nimage: x\nservice: www\n",
        3,
        10,
        Some("service"),
    );
    assert!(msg.contains("declares no ports"), "{msg}");
    let msg = located(
        "name: web\nimage: x\nports: [{container_port: 80}]\nservice: Web\n",
        4,
        10,
        Some("service"),
    );
    assert!(msg.contains("not a valid service name"), "{msg}");
    located(
        &NATIVE_SERVICE.replace("publish: 8080", "publish: 0"),
        6,
        12,
        Some("service.publish"),
    );
    located(
        &NATIVE_SERVICE.replace("  balance: least-connections\n", "  balanse: x\n"),
        7,
        3,
        Some("service.balanse"),
    );
}

#[test]
fn deployment_probes_become_checks() {
    let spec = &parse_manifests("d.yaml", PROBED).unwrap()[0];
    assert_eq!(
        spec.checks,
        [
            CheckSpec {
                kind: CheckKind::Liveness,
                probe: Probe::Tcp { port: 80 },
                period_secs: 10,
                timeout_secs: 2,
                initial_delay_secs: 5,
                failure_threshold: 4,
            },
            CheckSpec {
                period_secs: 2,
                ..CheckSpec::new(
                    CheckKind::Readiness,
                    Probe::Http {
                        port: 80,
                        path: "/ready".into(),
                    },
                )
            },
        ]
    );
    assert_eq!(spec.service, None);
    let exec = PROBED.replace(
        "          tcpSocket: {port: 80}\n",
        "          exec: {command: [cat, /tmp/healthy]}\n",
    );
    let spec = &parse_manifests("d.yaml", &exec).unwrap()[0];
    assert_eq!(
        spec.checks[0].probe,
        Probe::Exec {
            command: vec!["cat".into(), "/tmp/healthy".into()],
        }
    );
}

#[test]
fn bad_deployment_probes_are_located() {
    let base = "spec.template.spec.containers[0]";
    let msg = located(
        &PROBED.replace("port: http}", "port: metrics}"),
        18,
        41,
        Some(&format!("{base}.readinessProbe.httpGet.port")),
    );
    assert_eq!(
        msg,
        "no container port is named \"metrics\" (named ports: http)"
    );
    let msg = located(
        &PROBED.replace(
            "          tcpSocket: {port: 80}\n",
            "          tcpSocket: {port: 80}\n          exec: {command: [x]}\n",
        ),
        21,
        11,
        Some(&format!("{base}.livenessProbe")),
    );
    assert_eq!(msg, "exactly one of httpGet, tcpSocket, exec is required");
    let msg = located(
        &PROBED.replace("tcpSocket: {port: 80}", "grpc: {port: 80}"),
        21,
        11,
        Some(&format!("{base}.livenessProbe.grpc")),
    );
    assert!(msg.contains("grpc probes are not supported"), "{msg}");
    let msg = located(
        &PROBED.replace("periodSeconds: 2", "periodSeconds: 0"),
        19,
        26,
        Some(&format!("{base}.readinessProbe.periodSeconds")),
    );
    assert_eq!(msg, "must be 1 or more");
    let msg = located(
        &PROBED.replace("failureThreshold: 4", "failureThreshold: -1"),
        23,
        29,
        Some(&format!("{base}.livenessProbe.failureThreshold")),
    );
    assert_eq!(msg, "must be 0 or more, got -1");
    let msg = located(
        &PROBED.replace("path: /ready, port", "path: /ready, scheme: HTTPS, port"),
        18,
        43,
        Some(&format!("{base}.readinessProbe.httpGet.scheme")),
    );
    assert!(msg.contains("plain HTTP"), "{msg}");
}

#[test]
fn service_attaches_to_the_deployment_it_selects() {
    // The Service may come before or after its Deployment.
    for text in [
        format!("{PROBED}---\n{SERVICE}"),
        format!("{SERVICE}---\n{PROBED}"),
    ] {
        let specs = parse_manifests("app.yaml", &text).unwrap();
        assert_eq!(specs.len(), 1, "a Service is no job of its own");
        let spec = &specs[0];
        assert_eq!(
            spec.service,
            Some(ServiceSpec {
                name: "web-svc".into(),
                port: Some("http".into()),
                publish: Some(30080),
                balance: Balance::LeastConnections,
            })
        );
        assert_eq!(spec.service_port().map(|p| p.container_port), Some(80));
    }
    // ClusterIP, numeric targetPort, no annotation.
    let plain = SERVICE
        .replace("  type: NodePort\n", "")
        .replace("    nodePort: 30080\n", "")
        .replace("targetPort: http", "targetPort: 80")
        .replace("  annotations: {skein.io/balance: least-connections}\n", "");
    let specs = parse_manifests("app.yaml", &format!("{PROBED}---\n{plain}")).unwrap();
    assert_eq!(
        specs[0].service,
        Some(ServiceSpec {
            name: "web-svc".into(),
            port: Some("80".into()),
            publish: None,
            balance: Balance::RoundRobin,
        })
    );
    // Without targetPort, the service port is the target.
    let no_target = SERVICE.replace("    targetPort: http\n", "");
    let e = err(&format!("{PROBED}---\n{no_target}"));
    assert_eq!(e.path.as_deref(), Some("spec.ports[0].port"), "{e}");
    assert_eq!(e.line, Some(37), "{e}");
    assert!(e.message.contains("\"8000\" is neither"), "{e}");
}

#[test]
fn service_errors_are_located_in_the_service() {
    let text = format!(
        "{PROBED}---\n{}",
        SERVICE.replace("{app: web}", "{app: api}")
    );
    let e = err(&text);
    assert_eq!(
        e.to_string(),
        "deployment.yaml:35:13: spec.selector: Service web-svc selects app=api but no \
         Deployment in this file has those pod labels (spec.template.metadata.labels)"
    );
    let second = PROBED.replace("name: web\n", "name: web2\n");
    let msg = located(
        &format!("{PROBED}---\n{second}---\n{SERVICE}"),
        62,
        13,
        Some("spec.selector"),
    );
    assert!(
        msg.contains("matches several Deployments (web, web2)"),
        "{msg}"
    );
    let twice = SERVICE.replace("name: web-svc", "name: web-2");
    let msg = located(
        &format!("{PROBED}---\n{SERVICE}---\n{twice}"),
        48,
        13,
        Some("spec.selector"),
    );
    assert!(msg.contains("already selected by Service web-svc"), "{msg}");
    let msg = located(
        &format!(
            "{PROBED}---\n{}",
            SERVICE.replace("targetPort: http", "targetPort: grpc")
        ),
        38,
        17,
        Some("spec.ports[0].targetPort"),
    );
    assert!(msg.contains("\"grpc\" is neither"), "{msg}");
    let msg = located(
        &format!("{PROBED}---\n{}", SERVICE.replace("NodePort", "ClusterIP")),
        39,
        15,
        Some("spec.ports[0].nodePort"),
    );
    assert!(msg.contains("needs spec.type NodePort"), "{msg}");
    let msg = located(
        &format!(
            "{PROBED}---\n{}",
            SERVICE.replace("least-connections", "random")
        ),
        32,
        35,
        Some("metadata.annotations.skein.io/balance"),
    );
    assert!(msg.contains("round-robin or least-connections"), "{msg}");
    let msg = located(
        &format!(
            "{PROBED}---\n{}",
            SERVICE.replace("name: web-svc", "name: Web")
        ),
        31,
        9,
        Some("metadata.name"),
    );
    assert!(msg.contains("not a valid service name"), "{msg}");
    located(
        &format!(
            "{PROBED}---\n{}",
            SERVICE.replace("  selector: {app: web}\n", "")
        ),
        34,
        3,
        Some("spec.selector"),
    );
    located(
        &format!(
            "{PROBED}---\n{}",
            SERVICE.replace("  type: NodePort", "  typo: NodePort")
        ),
        34,
        3,
        Some("spec.typo"),
    );
}

#[test]
fn service_names_and_published_ports_are_unique_in_a_file() {
    let other = NATIVE_SERVICE
        .replace("name: web\n", "name: api\n")
        .replace("  port: http\n", "  port: http\n  name: web\n");
    let msg = located(
        &format!("{NATIVE_SERVICE}---\n{other}"),
        25,
        9,
        Some("service.name"),
    );
    assert!(msg.contains("already used on line 4"), "{msg}");
    let other = NATIVE_SERVICE.replace("name: web\n", "name: api\n");
    let msg = located(
        &format!("{NATIVE_SERVICE}---\n{other}"),
        25,
        12,
        Some("service.publish"),
    );
    assert_eq!(msg, "port 8080 is already published on line 6");
}

/// Inserts `line` (with its newline) before the container's `ports:` of [`SEED`] (line 18).
fn seed_with_container_line(line: &str) -> String {
    SEED.replace("        ports:", &format!("{line}\n        ports:"))
}

#[test]
fn image_pull_policy_converts_each_value() {
    for (written, policy) in [
        ("Always", PullPolicy::Always),
        ("IfNotPresent", PullPolicy::IfNotPresent),
        ("Never", PullPolicy::Never),
    ] {
        let text = seed_with_container_line(&format!("        imagePullPolicy: {written}"));
        let spec = &parse_manifests("d.yaml", &text).unwrap()[0];
        assert_eq!(spec.pull, Some(policy), "{written}");
        assert_eq!(spec.pull_policy(), policy, "{written}");
    }
    // Absent: Kubernetes' default for the image is applied later.
    let spec = &parse_manifests("d.yaml", SEED).unwrap()[0];
    assert_eq!(spec.pull, None);
    assert_eq!(spec.pull_policy(), PullPolicy::Always);
    let pinned = SEED.replace("my-nginx:latest", "my-nginx:1.25");
    let spec = &parse_manifests("d.yaml", &pinned).unwrap()[0];
    assert_eq!(spec.pull_policy(), PullPolicy::IfNotPresent);
}

#[test]
fn bad_image_pull_policy_names_the_allowed_values() {
    let msg = located(
        &seed_with_container_line("        imagePullPolicy: always"),
        18,
        26,
        Some("spec.template.spec.containers[0].imagePullPolicy"),
    );
    assert_eq!(
        msg,
        "imagePullPolicy always is not supported; use Always, IfNotPresent or Never"
    );
    located(
        &seed_with_container_line("        imagePullPolicy: [Always]"),
        18,
        26,
        Some("spec.template.spec.containers[0].imagePullPolicy"),
    );
}

/// [`SEED`] with `imagePullSecrets` (lines 15..) written as `entries`.
fn seed_with_pull_secrets(entries: &str) -> String {
    SEED.replace(
        "      containers:",
        &format!("      imagePullSecrets:\n{entries}      containers:"),
    )
}

#[test]
fn image_pull_secrets_convert_in_order() {
    let text = seed_with_pull_secrets("      - name: regcred\n      - name: mirror.creds\n");
    let spec = &parse_manifests("d.yaml", &text).unwrap()[0];
    assert_eq!(spec.pull_secrets, ["regcred", "mirror.creds"]);
    // Secrets not in the file are the server's to check.
    let m = parse_manifest("d.yaml", &text).unwrap();
    assert_eq!(m.jobs.len(), 1);
    assert!(m.pull_secrets.is_empty());
}

#[test]
fn bad_image_pull_secrets_are_located() {
    let msg = located(
        &seed_with_pull_secrets("      - name: regcred\n      - {}\n"),
        17,
        9,
        Some("spec.template.spec.imagePullSecrets[1]"),
    );
    assert!(msg.starts_with("a name is required"), "{msg}");
    // Validation errors on pull_secrets[i] point at that entry's name.
    let msg = located(
        &seed_with_pull_secrets("      - name: regcred\n      - name: Reg_Cred\n"),
        17,
        15,
        Some("spec.template.spec.imagePullSecrets[1].name"),
    );
    assert!(msg.contains("not a valid secret name"), "{msg}");
    located(
        &seed_with_pull_secrets("      - regcred\n"),
        16,
        9,
        Some("spec.template.spec.imagePullSecrets"),
    );
}

#[test]
fn native_pull_policy_and_secrets_convert() {
    for (written, policy) in [
        ("always", PullPolicy::Always),
        ("if-not-present", PullPolicy::IfNotPresent),
        ("never", PullPolicy::Never),
        ("Always", PullPolicy::Always),
        ("IfNotPresent", PullPolicy::IfNotPresent),
        ("Never", PullPolicy::Never),
    ] {
        let text = format!("name: web\nimage: x:1\npull: {written}\npull_secrets: [a, b.c]\n");
        let spec = &parse_manifests("w.yaml", &text).unwrap()[0];
        assert_eq!(spec.pull, Some(policy), "{written}");
        assert_eq!(spec.pull_secrets, ["a", "b.c"]);
    }
    let msg = located("name: web\nimage: x\npull: sometimes\n", 3, 7, Some("pull"));
    assert_eq!(
        msg,
        "pull \"sometimes\" is not supported; use always, if-not-present or never \
         (or Kubernetes' Always, IfNotPresent, Never)"
    );
    let msg = located(
        "name: web\nimage: x\npull_secrets: [ok, Not_Ok]\n",
        3,
        20,
        Some("pull_secrets[1]"),
    );
    assert!(msg.contains("not a valid secret name"), "{msg}");
    located(
        "name: web\nimage: x\npull_secrets: regcred\n",
        3,
        15,
        Some("pull_secrets"),
    );
}

/// Never in any error message, whatever is wrong with the Secret.
const PASSWORD: &str = "hunter2-Xq9z";

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// A dockerconfigjson Secret whose line 9 is `  .dockerconfigjson: …` under
/// `section` (`data` or `stringData`), `value` written as is.
fn secret(section: &str, value: &str) -> String {
    format!(
        "apiVersion: v1
kind: Secret
metadata:
  name: regcred
  namespace: web
  labels: {{team: web}}
type: kubernetes.io/dockerconfigjson
{section}:
  .dockerconfigjson: {value}
"
    )
}

/// [`secret`] with `json` under `stringData`, single-quoted.
fn secret_json(json: &str) -> String {
    secret("stringData", &format!("'{json}'"))
}

fn login(server: &str, username: &str, password: &str) -> RegistryLogin {
    RegistryLogin {
        server: server.into(),
        username: username.into(),
        password: password.into(),
    }
}

#[test]
fn secret_and_deployment_in_one_file() {
    let json = format!(
        r#"{{"auths": {{"https://registry.example.com/v1/": {{"username": "ci", "password": "{PASSWORD}", "email": "ci@example.com"}}}}}}"#
    );
    let deployment = seed_with_pull_secrets("      - name: regcred\n");
    for secret in [
        secret("data", &b64(&json)),
        secret_json(&json),
        secret("stringData", &format!("|\n    {json}")),
    ] {
        for text in [
            format!("{secret}---\n{deployment}"),
            format!("{deployment}---\n{secret}"),
        ] {
            let m = parse_manifest("app.yaml", &text).unwrap();
            assert_eq!(m.jobs.len(), 1);
            assert_eq!(m.jobs[0].pull_secrets, ["regcred"]);
            assert_eq!(
                m.pull_secrets,
                [PullSecret {
                    name: "regcred".into(),
                    registries: vec![login("registry.example.com", "ci", PASSWORD)],
                }]
            );
            // parse_manifests gives the jobs only.
            assert_eq!(parse_manifests("app.yaml", &text).unwrap(), m.jobs);
        }
    }
}

#[test]
fn secret_auth_form_and_several_registries() {
    let auth = b64(&format!("ci:{PASSWORD}"));
    let json = format!(
        r#"{{"auths": {{"https://index.docker.io/v1/": {{"auth": "{auth}"}}, "127.0.0.1:5000": {{"username": "bot", "password": "p:w", "auth": "{}"}}}}}}"#,
        b64("bot:p:w")
    );
    let m = parse_manifest("s.yaml", &secret("data", &b64(&json))).unwrap();
    assert!(m.jobs.is_empty(), "a file of Secrets only is valid");
    assert_eq!(m.pull_secrets.len(), 1);
    let mut registries = m.pull_secrets[0].registries.clone();
    registries.sort_by(|a, b| a.server.cmp(&b.server));
    assert_eq!(
        registries,
        [
            login("127.0.0.1:5000", "bot", "p:w"),
            login("docker.io", "ci", PASSWORD),
        ]
    );
    // Debug output (tracing) never shows the password.
    assert!(!format!("{m:?}").contains(PASSWORD));
    // Neither jobs nor Secrets: still an error.
    assert_eq!(
        err("# nothing\n").message,
        "no jobs found in deployment.yaml"
    );
}

#[test]
fn secret_errors_are_located() {
    let good =
        format!(r#"{{"auths": {{"r.example": {{"username": "u", "password": "{PASSWORD}"}}}}}}"#);
    let base = secret_json(&good);
    let msg = located(
        &base.replace("  name: regcred\n", ""),
        4,
        3,
        Some("metadata.name"),
    );
    assert_eq!(msg, "a name is required (metadata.name)");
    let msg = located(
        &base.replace("name: regcred", "name: Reg_Cred"),
        4,
        9,
        Some("metadata.name"),
    );
    assert!(msg.contains("not a valid secret name"), "{msg}");
    let msg = located(
        &base.replace("kubernetes.io/dockerconfigjson", "Opaque"),
        7,
        7,
        Some("type"),
    );
    assert_eq!(
        msg,
        "Secret type Opaque is not supported yet; only kubernetes.io/dockerconfigjson (image \
         pull secrets) is supported"
    );
    let msg = located(
        &base.replace("type: kubernetes.io/dockerconfigjson\n", ""),
        1,
        1,
        Some("type"),
    );
    assert!(msg.contains("not supported yet"), "{msg}");
    let msg = located(
        &base.replace("apiVersion: v1", "apiVersion: apps/v1"),
        1,
        13,
        Some("apiVersion"),
    );
    assert_eq!(
        msg,
        format!("apiVersion apps/v1 is not supported for a Secret; {SUPPORTED}")
    );
    // Keys outside the Kubernetes schema.
    let msg = located(
        &base.replace("stringData:", "stringdata:"),
        8,
        1,
        Some("stringdata"),
    );
    assert!(msg.starts_with("unknown field"), "{msg}");
    // Keys of data other than .dockerconfigjson, and both sections at once.
    let msg = located(
        &format!("{base}  token: abc\n"),
        10,
        3,
        Some("stringData.token"),
    );
    assert_eq!(
        msg,
        "key token is not supported in a kubernetes.io/dockerconfigjson Secret; only \
         .dockerconfigjson is"
    );
    let both = format!("{base}data:\n  .dockerconfigjson: {}\n", b64(&good));
    let msg = located(&both, 9, 3, Some("stringData..dockerconfigjson"));
    assert_eq!(
        msg,
        "give .dockerconfigjson in data or in stringData, not in both"
    );
    let msg = located(
        &base.replace("stringData:\n  .dockerconfigjson:", "stringData: {}\n#"),
        8,
        13,
        Some("stringData"),
    );
    assert!(msg.starts_with(".dockerconfigjson is required"), "{msg}");
    let msg = located(
        &base.replace("stringData:\n  .dockerconfigjson:", "#"),
        1,
        1,
        Some("data"),
    );
    assert!(msg.starts_with(".dockerconfigjson is required"), "{msg}");
    // A second Secret of the same name (line 14 of the file).
    let msg = located(&format!("{base}---\n{base}"), 14, 9, Some("metadata.name"));
    assert_eq!(
        msg,
        "Secret name \"regcred\" is already used on line 4; names must be unique"
    );
}

#[test]
fn secret_data_errors_are_located_at_the_key() {
    let data = "data..dockerconfigjson";
    let msg = located(&secret("data", "not*base64"), 9, 3, Some(data));
    assert!(msg.starts_with("the value is not valid base64"), "{msg}");
    let msg = located(&secret("data", &b64("{\"auths\": ")), 9, 3, Some(data));
    assert!(
        msg.starts_with("the value is not valid JSON (it ends early"),
        "{msg}"
    );
    let json = |j: &str| located(&secret_json(j), 9, 3, Some("stringData..dockerconfigjson"));
    assert_eq!(
        json("[1]"),
        format!("the value must be a JSON object; {SHAPE}")
    );
    assert_eq!(json("{}"), format!("auths is required; {SHAPE}"));
    assert_eq!(
        json(r#"{"auths": {}, "credsStore": "x"}"#),
        "key \"credsStore\" is not supported; only auths (registry credentials) is"
    );
    assert!(json(r#"{"auths": {}}"#).starts_with("auths is empty"));
    assert!(json(r#"{"auths": []}"#).starts_with("auths must be an object"));
    assert_eq!(
        json(r#"{"auths": {"r.example": {"email": "a@b.c"}}}"#),
        "auths.\"r.example\" has no credentials; give username and password, or auth \
         (base64 of USERNAME:PASSWORD)"
    );
    assert_eq!(
        json(r#"{"auths": {"r.example": {"username": "u"}}}"#),
        "auths.\"r.example\" has a username but no password"
    );
    assert_eq!(
        json(r#"{"auths": {"r.example": {"username": "u", "password": 7}}}"#),
        "auths.\"r.example\".password must be a string"
    );
    assert_eq!(
        json(r#"{"auths": {"r.example": {"identitytoken": "t"}}}"#),
        "auths.\"r.example\".identitytoken is not supported; use username and password (or auth)"
    );
    assert_eq!(
        json(r#"{"auths": {"r.example": {"auth": "%%%"}}}"#),
        "auths.\"r.example\".auth is not valid base64; it must be base64 of USERNAME:PASSWORD"
    );
    let no_colon = format!(
        r#"{{"auths": {{"r.example": {{"auth": "{}"}}}}}}"#,
        b64("nocolon")
    );
    assert!(json(&no_colon).contains("the decoded text has no ':'"));
    let disagree = format!(
        r#"{{"auths": {{"r.example": {{"auth": "{}", "username": "u", "password": "{PASSWORD}"}}}}}}"#,
        b64("u:other")
    );
    assert_eq!(
        json(&disagree),
        "auths.\"r.example\": auth and username/password disagree; give one of them, or \
         make them match"
    );
    assert_eq!(
        json(r#"{"auths": {"bad host": {"username": "u", "password": "p"}}}"#),
        "auths: \"bad host\" is not a valid registry server; use host or host:port (e.g. \
         registry.example.com, 127.0.0.1:5000, or a URL such as https://index.docker.io/v1/)"
    );
    assert!(json(
        r#"{"auths": {"docker.io": {"username": "u", "password": "p"}, "https://index.docker.io/v1/": {"username": "u", "password": "p"}}}"#
    )
    .contains("are the same registry (docker.io)"));
    // Wrong YAML types under data / stringData do not echo the value either.
    let msg = located(&secret("data", "[x]"), 9, 3, Some(data));
    assert!(msg.starts_with("the value is not valid base64"), "{msg}");
    let msg = located(
        &secret("stringData", "{a: b}"),
        9,
        3,
        Some("stringData..dockerconfigjson"),
    );
    assert_eq!(msg, "the value must be a string");
}

/// What `.dockerconfigjson` messages show as the expected shape.
const SHAPE: &str = r#"expected {"auths": {"SERVER": {"username": "…", "password": "…"}}}"#;

#[test]
fn no_secret_error_shows_the_password_or_the_data() {
    let auth = b64(&format!("u:{PASSWORD}"));
    let entry = format!(r#""username": "u", "password": "{PASSWORD}""#);
    let jsons = [
        format!(r#"{{"auths": {{"r.example": {{{entry}}}"#),
        format!(r#"{{"auths": {{"r.example": {{{entry}}}}}, "x": "{PASSWORD}"}}"#),
        format!(r#"{{"auths": {{"bad host": {{{entry}}}}}}}"#),
        format!(r#"{{"auths": {{"r.example": {{"password": "{PASSWORD}"}}}}}}"#),
        format!(r#"{{"auths": {{"r.example": {{"username": "", "password": "{PASSWORD}"}}}}}}"#),
        format!(
            r#"{{"auths": {{"r.example": {{"username": "u", "password": "{PASSWORD}", "auth": "{}"}}}}}}"#,
            b64("u:other")
        ),
        format!(
            r#"{{"auths": {{"r.example": {{"username": "u", "password": "other", "auth": "{auth}"}}}}}}"#
        ),
        format!(
            r#"{{"auths": {{"r.example": {{"auth": "{auth}", "registrytoken": "{PASSWORD}"}}}}}}"#
        ),
        format!(
            r#"{{"auths": {{"r.example": {{"auth": "{}"}}}}}}"#,
            b64(PASSWORD)
        ),
        format!(r#"{{"auths": {{"r.example": {{"auth": "{PASSWORD}"}}}}}}"#),
        format!(r#"{{"auths": {{"r.example": {{"username": "u", "password": ["{PASSWORD}"]}}}}}}"#),
        format!(r#"{{"auths": "{PASSWORD}"}}"#),
        format!(r#""{PASSWORD}""#),
        format!(r#"{{"auths": {{"r.example": {{{entry}}}}}}}, {PASSWORD}"#),
    ];
    let mut cases = Vec::new();
    for json in &jsons {
        cases.push(secret_json(json));
        cases.push(secret("data", &b64(json)));
    }
    let good = format!(r#"{{"auths": {{"r.example": {{{entry}}}}}}}"#);
    cases.extend([
        // Not base64, a list, a mapping, in data and in stringData.
        secret("data", PASSWORD),
        secret("data", &format!("{}*", b64(&good))),
        secret("data", &format!("[{PASSWORD}]")),
        secret("data", &format!("{{a: {PASSWORD}}}")),
        secret("stringData", &format!("[{PASSWORD}]")),
        secret("stringData", &format!("{{a: {PASSWORD}}}")),
        format!("{}  other: {PASSWORD}\n", secret_json(&good)),
        // Right data, wrong Secret.
        secret_json(&good).replace("kubernetes.io/dockerconfigjson", "Opaque"),
        secret_json(&good).replace("  name: regcred\n", ""),
        format!("{}---\n{}", secret_json(&good), secret_json(&good)),
        format!(
            "{}data:\n  .dockerconfigjson: {}\n",
            secret_json(&good),
            b64(&good)
        ),
        // Broken YAML around the secret.
        secret("stringData", &format!("'{good}")),
        secret("stringData", &format!("\"{PASSWORD}\\q\"")),
    ]);
    let encoded = [b64(PASSWORD), auth.clone(), b64(&good)];
    for text in &cases {
        let e = parse_manifest("s.yaml", text).expect_err(text);
        let shown = format!("{e} {e:?}");
        assert!(!shown.contains(PASSWORD), "{shown}\nfrom\n{text}");
        for secret in &encoded {
            assert!(!shown.contains(secret.as_str()), "{shown}\nfrom\n{text}");
        }
        assert!(e.line.is_some(), "{e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn arbitrary_input_never_panics(text in "[-a-z:{}\\[\\]&*!|>'\"#?, \n]{0,120}") {
        let _ = parse_manifests("f.yaml", &text);
    }

    #[test]
    fn every_error_line_is_inside_the_file(extra in "[a-z_]{1,8}", value in "[-0-9a-zA-Z.]{0,6}") {
        let text = format!("{SEED}---\nname: web\nimage: x\n{extra}: {value}\n");
        if let Err(e) = parse_manifests("f.yaml", &text) {
            let lines = text.lines().count();
            prop_assert!(e.line.is_some_and(|l| (21..=lines).contains(&l)), "{}", e);
        }
    }
}

/// [`SEED`] with `lines` (each with its newline) in the pod spec before
/// `containers:`, so that the first one is line 15.
fn seed_with_pod_lines(lines: &str) -> String {
    SEED.replace("      containers:", &format!("{lines}      containers:"))
}

const POD: &str = "spec.template.spec";
const CONTAINER0: &str = "spec.template.spec.containers[0]";

/// A Deployment using every runtime option Skein honours.
const HARDENED: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      terminationGracePeriodSeconds: 20
      securityContext:
        runAsUser: 1000
        runAsGroup: 3000
        runAsNonRoot: true
        supplementalGroups: [4000]
        fsGroup: 5000
        seccompProfile: {type: RuntimeDefault}
      hostAliases:
      - ip: 10.0.0.5
        hostnames: [db.internal, cache.internal]
      dnsPolicy: None
      dnsConfig:
        nameservers: [1.1.1.1]
        searches: [corp.example]
        options:
        - {name: ndots, value: \"2\"}
        - name: edns0
      nodeSelector: {region: eu}
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
            - matchExpressions:
              - {key: zone, operator: In, values: [a]}
      containers:
      - name: web
        image: skein-demo/web:latest
        workingDir: /srv
        securityContext:
          runAsUser: 2000
          readOnlyRootFilesystem: true
          allowPrivilegeEscalation: false
          privileged: false
          capabilities: {add: [NET_BIND_SERVICE], drop: [ALL]}
        lifecycle:
          postStart:
            exec: {command: [touch, /tmp/started]}
          preStop:
            sleep: {seconds: 5}
";

fn hardened_container() -> ContainerSpec {
    ContainerSpec {
        security: SecuritySpec {
            run_as_user: Some(2000),
            run_as_group: Some(3000),
            run_as_non_root: true,
            supplemental_groups: vec![4000, 5000],
            read_only_root_filesystem: true,
            allow_privilege_escalation: false,
            capabilities: Capabilities {
                add: vec!["NET_BIND_SERVICE".into()],
                drop: vec!["ALL".into()],
            },
        },
        working_dir: Some("/srv".into()),
        lifecycle: Lifecycle {
            post_start: Some(Hook::Exec {
                command: vec!["touch".into(), "/tmp/started".into()],
            }),
            pre_stop: Some(Hook::Sleep { seconds: 5 }),
        },
        host_aliases: vec![HostAlias {
            ip: "10.0.0.5".into(),
            hostnames: vec!["db.internal".into(), "cache.internal".into()],
        }],
        dns: DnsSpec {
            policy: DnsPolicy::None,
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
        },
        grace_period_secs: Some(20),
        pids_limit: DEFAULT_PIDS_LIMIT,
        ..ContainerSpec::default()
    }
}

#[test]
fn security_context_and_runtime_options_convert() {
    let spec = &parse_manifests("d.yaml", HARDENED).unwrap()[0];
    // The container's runAsUser (2000) wins over the pod's (1000); the
    // pod's group, non-root rule and groups (fsGroup included) apply.
    assert_eq!(spec.container, hardened_container());
    assert_eq!(spec.constraints, map(&[("region", "eu"), ("zone", "a")]));
}

#[test]
fn skein_defaults_are_stricter_than_dockers() {
    let spec = &parse_manifests("d.yaml", SEED).unwrap()[0];
    assert_eq!(spec.container, ContainerSpec::default());
    assert!(!spec.container.security.allow_privilege_escalation);
    assert_eq!(spec.container.pids_limit, 4096);
    let open =
        seed_with_container_line("        securityContext: {allowPrivilegeEscalation: true}");
    let spec = &parse_manifests("d.yaml", &open).unwrap()[0];
    assert!(spec.container.security.allow_privilege_escalation);
}

#[test]
fn native_runtime_options_convert() {
    let text = "\
name: web
image: skein-demo/web:latest
security:
  run_as_user: 2000
  run_as_group: 3000
  run_as_non_root: true
  supplemental_groups: [4000, 5000]
  read_only_root_filesystem: true
  capabilities: { add: [NET_BIND_SERVICE], drop: [ALL] }
working_dir: /srv
lifecycle:
  post_start: { exec: [touch, /tmp/started] }
  pre_stop: { sleep: 5 }
grace_period: 20
host_aliases: [{ ip: 10.0.0.5, hostnames: [db.internal, cache.internal] }]
dns:
  policy: none
  nameservers: [1.1.1.1]
  searches: [corp.example]
  options: [{ name: ndots, value: \"2\" }, { name: edns0 }]
pids_limit: 4096
";
    let spec = &parse_manifests("w.yaml", text).unwrap()[0];
    assert_eq!(spec.container, hardened_container());
    let msg = located(
        "name: web\nimage: x\nlifecycle: {pre_stop: {sleep: 1, exec: [x]}}\n",
        3,
        23,
        Some("lifecycle.pre_stop"),
    );
    assert_eq!(
        msg,
        "exactly one of exec (a command) or sleep (seconds) is required"
    );
    let msg = located(
        "name: web\nimage: x\nsecurity: {run_as_root: true}\n",
        3,
        12,
        Some("security.run_as_root"),
    );
    assert!(msg.contains("unknown field"), "{msg}");
    let msg = located(
        "name: web\nimage: x\npids_limit: 0\n",
        3,
        13,
        Some("pids_limit"),
    );
    assert!(msg.starts_with("must be between 1 and 4194304"), "{msg}");
    let msg = located(
        "name: web\nimage: x\ngrace_period: 7200\n",
        3,
        15,
        Some("grace_period"),
    );
    assert!(msg.contains("maximum of 3600"), "{msg}");
}

#[test]
fn refused_pod_fields_name_the_field_and_the_reason() {
    for (line, key, why) in [
        (
            "tolerations: [{key: gpu, operator: Exists}]",
            "tolerations",
            "Skein nodes have no taints",
        ),
        (
            "nodeName: edge-1",
            "nodeName",
            "select it with nodeSelector",
        ),
        ("hostUsers: false", "hostUsers", "user namespace"),
        ("priorityClassName: high", "priorityClassName", "preempt"),
        (
            "initContainers: [{name: i, image: x}]",
            "initContainers",
            "separate job",
        ),
        ("schedulerName: mine", "schedulerName", "one scheduler"),
    ] {
        let text = seed_with_pod_lines(&format!("      {line}\n"));
        let msg = located(&text, 15, 7, Some(&format!("{POD}.{key}")));
        assert!(msg.starts_with(key), "{msg}");
        assert!(msg.contains(why), "{line}: {msg}");
    }
    let msg = located(
        &seed_with_pod_lines(
            "      securityContext:\n        sysctls: [{name: net.core.somaxconn, value: \"1024\"}]\n",
        ),
        16,
        9,
        Some(&format!("{POD}.securityContext.sysctls")),
    );
    assert_eq!(
        msg,
        "sysctls are not supported: kernel parameters stay the node's"
    );
    // Unset values and Kubernetes' own defaults are what Skein does.
    let defaults = seed_with_pod_lines(
        "      hostNetwork: false\n      hostPID: false\n      tolerations: []\n      \
         volumes: []\n      schedulerName: default-scheduler\n      os: {name: linux}\n      \
         serviceAccountName: default\n      enableServiceLinks: false\n      \
         dnsPolicy: ClusterFirst\n      securityContext: {seccompProfile: {type: RuntimeDefault}}\n",
    );
    let spec = &parse_manifests("d.yaml", &defaults).unwrap()[0];
    assert_eq!(spec.container, ContainerSpec::default());
}

#[test]
fn refused_container_fields_name_the_field_and_the_reason() {
    for (line, path, column, why) in [
        (
            "        startupProbe: {exec: {command: [true]}}",
            "startupProbe",
            9,
            "initialDelaySeconds",
        ),
        (
            "        envFrom: [{configMapRef: {name: cfg}}]",
            "envFrom",
            9,
            "list the variables under env",
        ),
        (
            "        securityContext: {seLinuxOptions: {level: s0}}",
            "securityContext.seLinuxOptions",
            27,
            "SELinux",
        ),
        (
            "        lifecycle: {preStop: {httpGet: {port: 80, path: /quit}}}",
            "lifecycle.preStop.httpGet",
            31,
            "httpGet hooks are not supported; use exec",
        ),
        (
            "        lifecycle: {stopSignal: SIGUSR1}",
            "lifecycle.stopSignal",
            21,
            "stopSignal is not supported yet",
        ),
        ("        tty: true", "tty", 9, "detached"),
    ] {
        let msg = located(
            &seed_with_container_line(line),
            18,
            column,
            Some(&format!("{CONTAINER0}.{path}")),
        );
        assert!(msg.contains(why), "{line}: {msg}");
    }
    let msg = located(
        &SEED.replace(
            "- containerPort: 80",
            "- containerPort: 80\n          hostIP: 127.0.0.1",
        ),
        20,
        11,
        Some(&format!("{CONTAINER0}.ports[0].hostIP")),
    );
    assert!(msg.starts_with("hostIP is not supported"), "{msg}");
    // Defaults a cluster writes into exported manifests are accepted.
    let exported = seed_with_container_line(
        "        terminationMessagePath: /dev/termination-log\n        \
         terminationMessagePolicy: File\n        securityContext: {procMount: Default}",
    );
    assert!(parse_manifests("d.yaml", &exported).is_ok());
}

#[test]
fn refused_deployment_fields_are_located() {
    let msg = located(
        &SEED.replace("  replicas: 3\n", "  replicas: 3\n  paused: true\n"),
        7,
        3,
        Some("spec.paused"),
    );
    assert!(msg.starts_with("paused: true is not supported"), "{msg}");
    let msg = located(
        &SEED.replace("  replicas: 3\n", "  replicas: 3\n  minReadySeconds: 10\n"),
        7,
        3,
        Some("spec.minReadySeconds"),
    );
    assert!(msg.contains("readinessProbe"), "{msg}");
    let ok = SEED.replace(
        "  replicas: 3\n",
        "  replicas: 3\n  paused: false\n  revisionHistoryLimit: 10\n",
    );
    assert!(parse_manifests("d.yaml", &ok).is_ok());
    let msg = located(
        &SEED.replace(
            "      app: my-nginx\n  template",
            "      app: other\n  template",
        ),
        9,
        12,
        Some("spec.selector.matchLabels.app"),
    );
    assert!(
        msg.contains("does not select the Deployment's own pods"),
        "{msg}"
    );
}

#[test]
fn replicas_must_be_a_number_not_a_string() {
    let msg = located(
        &SEED.replace("replicas: 3", "replicas: \"3\""),
        6,
        13,
        Some("spec.replicas"),
    );
    assert!(
        msg.starts_with("expected a whole number, found a string"),
        "{msg}"
    );
    located(
        "name: web\nimage: x\nreplicas: '3'\n",
        3,
        11,
        Some("replicas"),
    );
}

#[test]
fn environment_variable_names_must_be_portable() {
    for name in ["MY VAR", "A;B", "1ABC", "A=B", "ÄB", "-X"] {
        let text = seed_with_container_line(&format!(
            "        env:\n        - name: ok_1.x-y\n          value: a\n        - name: {name:?}\n          value: b"
        ));
        let msg = located(&text, 21, 17, Some(&format!("{CONTAINER0}.env[1].name")));
        assert!(msg.contains("[A-Za-z_][A-Za-z0-9_.-]*"), "{name}: {msg}");
    }
    let msg = located(
        "name: web\nimage: x\nenv: {\"A B\": x}\n",
        3,
        14,
        Some("env.A B"),
    );
    assert!(
        msg.starts_with("\"A B\" is not a valid environment variable name"),
        "{msg}"
    );
}

#[test]
fn cpu_and_memory_beyond_what_docker_takes_are_refused() {
    let msg = located(
        "name: web\nimage: x\nresources: {limits: {cpu: 18446744073709551}}\n",
        3,
        27,
        Some("resources.limits.cpu"),
    );
    assert!(
        msg.contains("more than the allowed maximum of 1000000 cores"),
        "{msg}"
    );
    let msg = located(
        "name: web\nimage: x\nresources: {requests: {memory: 8Ei}}\n",
        3,
        32,
        Some("resources.requests.memory"),
    );
    assert!(
        msg.contains("more than the allowed maximum of 1Pi"),
        "{msg}"
    );
    let huge = seed_with_container_line("        resources: {limits: {cpu: \"9223372036854775\"}}");
    let msg = located(
        &huge,
        18,
        35,
        Some(&format!("{CONTAINER0}.resources.limits.cpu")),
    );
    assert!(msg.contains("maximum"), "{msg}");
}

#[test]
fn bad_security_and_runtime_values_are_located() {
    let sc = |body: &str| seed_with_container_line(&format!("        securityContext: {body}"));
    let msg = located(
        &sc("{runAsNonRoot: true, runAsUser: 0}"),
        18,
        58,
        Some(&format!("{CONTAINER0}.securityContext.runAsUser")),
    );
    assert!(
        msg.starts_with("runAsNonRoot is set, but the user is 0"),
        "{msg}"
    );
    let msg = located(
        &sc("{runAsUser: -1}"),
        18,
        38,
        Some(&format!("{CONTAINER0}.securityContext.runAsUser")),
    );
    assert_eq!(msg, "must be between 0 and 2147483647, got -1");
    let msg = located(
        &sc("{capabilities: {add: [NET_BIND_SERVICE, net_raw]}}"),
        18,
        66,
        Some(&format!("{CONTAINER0}.securityContext.capabilities.add[1]")),
    );
    assert!(msg.contains("is not a Linux capability"), "{msg}");
    let msg = located(
        &sc("{runAsGroup: 1000}"),
        18,
        39,
        Some(&format!("{CONTAINER0}.securityContext.runAsGroup")),
    );
    assert!(msg.starts_with("a group needs a user"), "{msg}");
    let msg = located(
        &seed_with_container_line("        workingDir: srv"),
        18,
        21,
        Some(&format!("{CONTAINER0}.workingDir")),
    );
    assert!(msg.contains("absolute path"), "{msg}");
    let msg = located(
        &seed_with_pod_lines("      dnsPolicy: None\n"),
        15,
        18,
        Some(&format!("{POD}.dnsPolicy")),
    );
    assert_eq!(msg, "dns policy None needs at least one nameserver");
    let msg = located(
        &seed_with_pod_lines("      dnsPolicy: ClusterFirstWithHostNet\n"),
        15,
        18,
        Some(&format!("{POD}.dnsPolicy")),
    );
    assert!(msg.contains("use ClusterFirst"), "{msg}");
    let msg = located(
        &seed_with_pod_lines("      dnsConfig: {nameservers: [1.1.1.1, dns.example]}\n"),
        15,
        42,
        Some(&format!("{POD}.dnsConfig.nameservers[1]")),
    );
    assert!(msg.contains("is not an IP address"), "{msg}");
    let msg = located(
        &seed_with_pod_lines("      hostAliases: [{ip: 10.0.0.5, hostnames: [Bad_Name]}]\n"),
        15,
        48,
        Some(&format!("{POD}.hostAliases[0].hostnames[0]")),
    );
    assert!(msg.contains("not a valid host name"), "{msg}");
    let msg = located(
        &seed_with_pod_lines("      terminationGracePeriodSeconds: -1\n"),
        15,
        38,
        Some(&format!("{POD}.terminationGracePeriodSeconds")),
    );
    assert_eq!(msg, "must be between 0 and 3600 seconds, got -1");
    let msg = located(
        &seed_with_container_line("        lifecycle: {postStart: {exec: {command: []}}}"),
        18,
        49,
        Some(&format!("{CONTAINER0}.lifecycle.postStart.exec.command")),
    );
    assert!(msg.starts_with("a command is required"), "{msg}");
}

/// [`SEED`] with required node affinity whose `nodeSelectorTerms` are `terms` (line 19 on).
fn seed_with_affinity(terms: &str) -> String {
    seed_with_pod_lines(&format!(
        "      affinity:\n        nodeAffinity:\n          \
         requiredDuringSchedulingIgnoredDuringExecution:\n            nodeSelectorTerms:\n{terms}"
    ))
}

#[test]
fn required_node_affinity_maps_onto_constraints_or_is_refused() {
    let one = seed_with_affinity(
        "            - matchExpressions:\n              - {key: zone, operator: In, values: [a]}\n              \
         - {key: disk, operator: In, values: [ssd]}\n",
    );
    let spec = &parse_manifests("d.yaml", &one).unwrap()[0];
    assert_eq!(spec.constraints, map(&[("disk", "ssd"), ("zone", "a")]));
    let base = format!(
        "{POD}.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
    );
    let msg = located(
        &seed_with_affinity(
            "            - matchExpressions:\n              - {key: zone, operator: NotIn, values: [a]}\n",
        ),
        20,
        39,
        Some(&format!("{base}[0].matchExpressions[0].operator")),
    );
    assert!(
        msg.starts_with("operator NotIn is not supported; use In"),
        "{msg}"
    );
    let msg = located(
        &seed_with_affinity(
            "            - matchExpressions:\n              - {key: zone, operator: In, values: [a, b]}\n",
        ),
        20,
        51,
        Some(&format!("{base}[0].matchExpressions[0].values")),
    );
    assert!(msg.contains("give exactly one"), "{msg}");
    let msg = located(
        &seed_with_affinity(
            "            - matchExpressions: [{key: zone, operator: In, values: [a]}]\n            \
             - matchExpressions: [{key: zone, operator: In, values: [b]}]\n",
        ),
        20,
        15,
        Some(&format!("{base}[1]")),
    );
    assert!(msg.contains("Skein constraints must all hold"), "{msg}");
    let msg = located(
        &seed_with_pod_lines(
            "      affinity:\n        podAntiAffinity:\n          \
             requiredDuringSchedulingIgnoredDuringExecution: [{topologyKey: zone}]\n",
        ),
        16,
        9,
        Some(&format!("{POD}.affinity.podAntiAffinity")),
    );
    assert!(msg.contains("already spreads"), "{msg}");
    let msg = located(
        &seed_with_pod_lines(
            "      affinity:\n        nodeAffinity:\n          \
             preferredDuringSchedulingIgnoredDuringExecution:\n          \
             - {weight: 1, preference: {matchExpressions: [{key: zone, operator: In, values: [a]}]}}\n",
        ),
        17,
        11,
        Some(&format!(
            "{POD}.affinity.nodeAffinity.preferredDuringSchedulingIgnoredDuringExecution"
        )),
    );
    assert!(
        msg.starts_with("preferred node affinity is not supported"),
        "{msg}"
    );
}

#[test]
fn services_with_several_ports_or_external_ips_are_refused() {
    let two = SERVICE.replace(
        "    nodePort: 30080\n",
        "    nodePort: 30080\n  - port: 9090\n    name: metrics\n",
    );
    let msg = located(&format!("{PROBED}---\n{two}"), 40, 5, Some("spec.ports[1]"));
    assert!(
        msg.starts_with("a Service with 2 ports is not supported: a Skein service serves one port"),
        "{msg}"
    );
    let external = SERVICE.replace(
        "  type: NodePort\n",
        "  type: NodePort\n  externalIPs: [203.0.113.7]\n",
    );
    let msg = located(
        &format!("{PROBED}---\n{external}"),
        35,
        3,
        Some("spec.externalIPs"),
    );
    assert!(msg.starts_with("externalIPs are not supported"), "{msg}");
    let sticky = SERVICE.replace(
        "  type: NodePort\n",
        "  type: NodePort\n  sessionAffinity: ClientIP\n",
    );
    let msg = located(
        &format!("{PROBED}---\n{sticky}"),
        35,
        3,
        Some("spec.sessionAffinity"),
    );
    assert!(
        msg.starts_with("sessionAffinity ClientIP is not supported"),
        "{msg}"
    );
    let udp = SERVICE.replace(
        "    nodePort: 30080\n",
        "    nodePort: 30080\n    protocol: UDP\n",
    );
    let msg = located(
        &format!("{PROBED}---\n{udp}"),
        40,
        15,
        Some("spec.ports[0].protocol"),
    );
    assert!(msg.contains("forwards TCP connections"), "{msg}");
    let defaults = SERVICE.replace(
        "  type: NodePort\n",
        "  type: NodePort\n  sessionAffinity: None\n  externalTrafficPolicy: Cluster\n  \
         ipFamilies: [IPv4]\n  ipFamilyPolicy: SingleStack\n",
    );
    assert!(parse_manifests("d.yaml", &format!("{PROBED}---\n{defaults}")).is_ok());
}

#[test]
fn shipped_examples_parse() {
    for name in ["deployment.yaml", "web.yaml"] {
        let path = format!("{}/../examples/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        let specs = parse_manifests(name, &text).unwrap_or_else(|e| panic!("{e}"));
        assert!(!specs.is_empty(), "{name}");
    }
}

/// A Deployment asking for everything a node must allow.
const HOST_ACCESS: &str = "\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: agent
spec:
  selector:
    matchLabels:
      app: agent
  template:
    metadata:
      labels:
        app: agent
    spec:
      hostNetwork: true
      hostPID: true
      hostIPC: true
      volumes:
      - name: data
        hostPath:
          path: /srv/data
          type: DirectoryOrCreate
      - name: logs
        hostPath: {path: /var/log}
      containers:
      - name: agent
        image: agent:1
        securityContext: {privileged: true}
        volumeMounts:
        - {name: data, mountPath: /data}
        - name: logs
          mountPath: /host/logs
          readOnly: true
";

#[test]
fn privileges_host_namespaces_and_host_paths_convert() {
    let spec = &parse_manifests("d.yaml", HOST_ACCESS).unwrap()[0];
    let c = &spec.container;
    assert!(c.privileged && c.host_network && c.host_pid && c.host_ipc);
    assert_eq!(
        c.host_paths,
        [
            HostPathMount {
                host: "/srv/data".into(),
                container: "/data".into(),
                read_only: false,
            },
            HostPathMount {
                host: "/var/log".into(),
                container: "/host/logs".into(),
                read_only: true,
            },
        ]
    );
    assert!(c.needs_host_access());
    // Kubernetes' defaults of the refused fields are accepted.
    let defaults = HOST_ACCESS
        .replace("type: DirectoryOrCreate", "type: \"\"")
        .replace(
            "readOnly: true",
            "readOnly: true\n          mountPropagation: None\n          recursiveReadOnly: Disabled",
        );
    let again = &parse_manifests("d.yaml", &defaults).unwrap()[0];
    assert_eq!(again.container, spec.container);
    // A volume nobody mounts mounts nothing.
    let unmounted = HOST_ACCESS.replace(
        "        - name: logs\n          mountPath: /host/logs\n          readOnly: true\n",
        "",
    );
    let spec = &parse_manifests("d.yaml", &unmounted).unwrap()[0];
    assert_eq!(spec.container.host_paths.len(), 1);
}

#[test]
fn refused_volume_forms_are_located() {
    let vol0 = format!("{POD}.volumes[0]");
    let vol1 = format!("{POD}.volumes[1]");
    let mount0 = format!("{CONTAINER0}.volumeMounts[0]");
    let mount1 = format!("{CONTAINER0}.volumeMounts[1]");
    for (from, to, line, column, path, why) in [
        (
            "readOnly: true",
            "readOnly: true\n          subPath: x",
            33,
            11,
            format!("{mount1}.subPath"),
            "subPath is not supported",
        ),
        (
            "mountPath: /host/logs",
            "mountPath: /host/logs\n          mountPropagation: Bidirectional",
            32,
            11,
            format!("{mount1}.mountPropagation"),
            "mountPropagation is not supported",
        ),
        (
            "hostPath: {path: /var/log}",
            "secret: {secretName: s}",
            23,
            9,
            format!("{vol1}.secret"),
            "only hostPath volumes are supported",
        ),
        (
            "type: DirectoryOrCreate",
            "type: Socket",
            21,
            11,
            format!("{vol0}.hostPath.type"),
            "hostPath type is not supported",
        ),
        (
            "path: /srv/data",
            "path: srv/data",
            20,
            17,
            format!("{vol0}.hostPath.path"),
            "is not an absolute path",
        ),
        (
            "{name: data, mountPath: /data}",
            "{name: dat, mountPath: /data}",
            29,
            18,
            format!("{mount0}.name"),
            "no volume named \"dat\"",
        ),
        (
            "mountPath: /host/logs",
            "mountPath: /host/../logs",
            31,
            22,
            format!("{mount1}.mountPath"),
            "contains '..'",
        ),
        (
            "- name: logs\n        hostPath",
            "- name: data\n        hostPath",
            22,
            15,
            format!("{vol1}.name"),
            "volume name \"data\" is used twice",
        ),
        (
            "mountPath: /host/logs",
            "mountPath: /data",
            31,
            22,
            format!("{mount1}.mountPath"),
            "\"/data\" is mounted twice",
        ),
    ] {
        assert!(HOST_ACCESS.contains(from), "{from}");
        let text = HOST_ACCESS.replacen(from, to, 1);
        let msg = located(&text, line, column, Some(&path));
        assert!(msg.contains(why), "{to}: {msg}");
    }
}

#[test]
fn native_jobs_ask_for_host_access_in_snake_case() {
    let text = "name: web\nimage: x\nprivileged: true\nhost_network: true\nhost_pid: true\n\
                host_ipc: true\nhost_paths: [{host: /srv, container: /srv, read_only: true}]\n";
    let spec = &parse_manifests("job.yaml", text).unwrap()[0];
    let c = &spec.container;
    assert!(c.privileged && c.host_network && c.host_pid && c.host_ipc);
    assert_eq!(
        c.host_paths,
        [HostPathMount {
            host: "/srv".into(),
            container: "/srv".into(),
            read_only: true,
        }]
    );
    let msg = located(
        "name: web\nimage: x\nhost_paths: [{host: srv, container: /srv}]\n",
        3,
        21,
        Some("host_paths[0].host"),
    );
    assert!(msg.contains("is not an absolute path"), "{msg}");
}
