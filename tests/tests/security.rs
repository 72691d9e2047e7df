//! One node, real Docker: a Deployment's securityContext and runtime
//! options reach the container, `runAsNonRoot` keeps a root image from
//! starting (issue #13), and a hostPath volume runs only on a node that
//! allows it (`--allow-host-path`).

use std::time::Duration;

use skein_e2e::*;

const WAIT: Duration = Duration::from_secs(60);

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn deployment_security_context_and_runtime_options_reach_the_container() {
    require_demo_image();
    let agent = Agent::start(AgentOpts::default());
    let name = unique_name("hard");
    // httpd on a high port (a non-root user cannot bind 80), serving a
    // directory that exists in the read-only image.
    let yaml = format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 7
      securityContext:
        runAsNonRoot: true
        runAsUser: 1000
        runAsGroup: 3000
      hostAliases:
      - ip: 10.1.2.3
        hostnames: [db.internal]
      containers:
      - name: web
        image: skein-demo/web:latest
        command: [/bin/httpd, -f, -p, '8080', -h, /etc]
        workingDir: /etc
        securityContext:
          readOnlyRootFilesystem: true
          allowPrivilegeEscalation: false
          capabilities: {{drop: [ALL]}}
        lifecycle:
          postStart:
            exec: {{command: [/bin/sh, -c, 'test \"$(id -u):$(id -g)\" = 1000:3000']}}
          preStop:
            exec: {{command: [/bin/sh, -c, 'true']}}
"
    );
    let file = agent.write_manifest("hardened.yaml", &yaml);
    let out = agent.cli(&["apply", "-f", file.to_str().unwrap()]);
    out.assert_success();
    let ids = agent.job_containers(&name);
    assert_eq!(ids.len(), 1, "{}", out.stdout);
    let i = container_inspect(&ids[0]);
    assert_eq!(i["Config"]["User"], "1000:3000");
    assert_eq!(i["Config"]["WorkingDir"], "/etc");
    assert_eq!(i["Config"]["StopTimeout"], 7);
    let hc = &i["HostConfig"];
    assert_eq!(hc["ReadonlyRootfs"], true);
    assert_eq!(strings(&hc["SecurityOpt"]), ["no-new-privileges"]);
    assert_eq!(hc["PidsLimit"], 4096);
    assert_eq!(strings(&hc["CapDrop"]), ["ALL"]);
    assert!(
        strings(&hc["ExtraHosts"]).contains(&"db.internal:10.1.2.3"),
        "{}",
        hc["ExtraHosts"]
    );
    let labels = labels_of(&i);
    assert_eq!(labels["skein.grace"], "7");
    assert!(labels["skein.pre-stop"].contains("true"), "{labels:?}");
    // The filesystem really is read-only, and the hosts entry is there.
    let write = try_docker(&["exec", &ids[0], "/bin/sh", "-c", "echo x > /etc/x"]);
    assert!(write.is_err(), "writing to / succeeded: {write:?}");
    let hosts = docker(&["exec", &ids[0], "cat", "/etc/hosts"]);
    assert!(hosts.contains("10.1.2.3\tdb.internal"), "{hosts}");

    // Stopping runs the preStop hook and removes the container.
    agent.cli(&["job", "stop", &name]).assert_success();
    poll_until("containers of the stopped job are removed", WAIT, || {
        agent.job_containers(&name).is_empty().then_some(())
    });
}

#[test]
fn run_as_non_root_refuses_a_root_image_with_a_clear_message() {
    require_demo_image();
    let agent = Agent::start(AgentOpts::default());
    let name = unique_name("root");
    let yaml = format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      securityContext:
        runAsNonRoot: true
      containers:
      - name: web
        image: skein-demo/web:latest
"
    );
    let file = agent.write_manifest("root.yaml", &yaml);
    let out = agent.cli(&["apply", "-f", file.to_str().unwrap()]);
    out.assert_failure();
    let expected = "runAsNonRoot is set but image skein-demo/web:latest runs as root";
    assert!(out.stderr.contains(expected), "{}", out.stderr);
    let a = poll_until("the allocation reports why", WAIT, || {
        let list = agent.cli_json(&["alloc", "ls", "--job", &name]);
        list.as_array()?.first().cloned()
    });
    assert_eq!(a["status"]["state"], "failed");
    let message = a["status"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(expected), "{message}");
    let table = agent.cli(&["alloc", "ls", "--job", &name]);
    assert!(table.stdout.contains("runAsNonRoot"), "{}", table.stdout);
    assert!(
        agent.job_containers(&name).is_empty(),
        "no container was created"
    );
}

#[test]
fn failing_post_start_hook_kills_the_container_and_says_why() {
    require_demo_image();
    let agent = Agent::start(AgentOpts::default().arg("--max-restart-backoff").arg("1"));
    let name = unique_name("hook");
    let file = agent.write_manifest(
        "hook.yaml",
        &format!(
            "name: {name}\nimage: skein-demo/web:latest\n\
             lifecycle: {{ post_start: {{ exec: [/bin/sh, -c, 'echo not ready; exit 4'] }} }}\n"
        ),
    );
    let out = agent.cli(&["apply", "-f", file.to_str().unwrap()]);
    out.assert_failure();
    assert!(
        out.stderr.contains(
            "postStart hook failed: exec /bin/sh -c echo not ready; exit 4: exit code 4: not ready"
        ),
        "{}",
        out.stderr
    );
    // The allocation says so too, while the executor keeps retrying.
    poll_until("the allocation reports the hook", WAIT, || {
        let list = agent.cli_json(&["alloc", "ls", "--job", &name]);
        let a = list.as_array()?.first()?.clone();
        let message = a["status"]["message"].as_str()?.to_string();
        (a["status"]["state"] == "failed" && message.contains("postStart hook failed"))
            .then_some(())
    });
}

/// A scratch directory under /tmp, removed on drop.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn host_path_volume_runs_only_on_a_node_that_allows_it() {
    require_demo_image();
    let dir = TempDir(std::path::PathBuf::from(format!(
        "/tmp/{}",
        unique_name("skein-hostpath")
    )));
    let data = dir.0.join("data");
    std::fs::create_dir_all(&data).expect("create the host directory");
    let secret = unique_name("written-on-the-host");
    std::fs::write(data.join("hello.txt"), &secret).expect("write the host file");
    let name = unique_name("hostpath");
    let yaml = format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      volumes:
      - name: data
        hostPath: {{path: {host}}}
      containers:
      - name: web
        image: skein-demo/web:latest
        volumeMounts:
        - {{name: data, mountPath: /data, readOnly: true}}
",
        host = data.display()
    );

    // Without the flag: refused by the scheduler, saying what is needed.
    let strict = Agent::start(AgentOpts::default());
    let file = strict.write_manifest("hostpath.yaml", &yaml);
    let out = strict.cli(&["apply", "-f", file.to_str().unwrap()]);
    out.assert_failure();
    let needed = format!("needs hostPath {}", data.display());
    assert!(out.stderr.contains(&needed), "{}", out.stderr);
    assert!(out.stderr.contains("--allow-host-path"), "{}", out.stderr);
    assert!(strict.job_containers(&name).is_empty());
    drop(strict);

    // Allowed (a parent directory): it runs and sees the host's file.
    let allow = dir.0.display().to_string();
    let open = Agent::start(AgentOpts::default().arg("--allow-host-path").arg(&allow));
    let file = open.write_manifest("hostpath.yaml", &yaml);
    let out = open.cli(&["apply", "-f", file.to_str().unwrap()]);
    out.assert_success();
    let id = poll_until("the container runs", WAIT, || {
        open.job_containers(&name).into_iter().next()
    });
    let seen = poll_until("the container reads the host's file", WAIT, || {
        try_docker(&["exec", &id, "cat", "/data/hello.txt"]).ok()
    });
    assert_eq!(seen.trim(), secret);
    let i = container_inspect(&id);
    let mount = i["Mounts"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["Destination"] == "/data"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        mount["Source"],
        data.display().to_string(),
        "{}",
        i["Mounts"]
    );
    assert_eq!(mount["RW"], false, "{mount}");
}
