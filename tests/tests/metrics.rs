//! Monitoring: a real Prometheus (Debian's `prometheus`, installed by
//! .ci/run) scrapes a node's `/metrics` and its query API returns the live
//! replica count of a job.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use skein_e2e::*;

const WAIT: Duration = Duration::from_secs(60);

/// Kills Prometheus when the test ends, pass or fail.
struct Prometheus(Child);

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `skein_job_running_replicas{skein_job=...}` as Prometheus answers it.
fn query(port: u16, job: &str) -> Option<i64> {
    let url = format!(
        "http://127.0.0.1:{port}/api/v1/query?query=skein_job_running_replicas%7Bskein_job%3D%22{job}%22%7D"
    );
    let (code, body) = http_get_url(&url).ok()?;
    if code != 200 {
        return None;
    }
    let v: Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

#[test]
fn prometheus_scrapes_the_running_replica_count() {
    require_demo_image();
    let agent = Agent::start(AgentOpts::default().arg("--container-dns").arg("none"));
    let job = unique_name("metrics");
    let file = agent.write_manifest(
        "job.yaml",
        &format!("name: {job}\nreplicas: 2\nimage: skein-demo/web:latest\n"),
    );
    agent
        .cli(&["apply", "-f", file.to_str().unwrap()])
        .assert_success();

    let dir = agent.scratch_dir().join("prometheus");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: skein\n    \
             static_configs:\n      - targets: ['{}']\n",
            agent.api()
        ),
    )
    .unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("prometheus (Debian package) is installed by .ci/run");
    let _prometheus = Prometheus(child);

    poll_until("Prometheus reports 2 running replicas", WAIT, || {
        (query(port, &job)? == 2).then_some(())
    });
    agent.cli(&["scale", &job, "3"]).assert_success();
    poll_until("Prometheus follows the scale to 3", WAIT, || {
        (query(port, &job)? == 3).then_some(())
    });
}
