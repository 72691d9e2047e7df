//! Self-tests of the image helpers: [`Registry`], [`Engine`] and
//! [`unique_image`]. None of them starts a skein agent.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use skein_e2e::engine::Engine;
use skein_e2e::images::{unique_image, TestImage};
use skein_e2e::registry::{get_v2, Registry};
use skein_e2e::{
    containers_with_labels_on, docker, http_get_url, image_exists, poll_until_ok,
    remove_containers_with_label_on, require_demo_image, run_with_timeout, try_docker, unique_name,
    AgentOpts, COMMAND_TIMEOUT, DEMO_IMAGE,
};

/// A push to a registry without auth, the local copy removed, and a pull
/// back from the registry on the host engine gives the same image.
#[test]
fn registry_push_then_pull_back() {
    let t = Instant::now();
    let reg = Registry::start();
    eprintln!("registry up on {} in {:.2?}", reg.addr(), t.elapsed());
    assert!(reg.addr().starts_with("127.0.0.1:"), "{}", reg.addr());
    assert_eq!(get_v2(&reg.addr(), None), Ok(200));

    let img = unique_image("reg-plain", 8);
    assert!(image_exists(&img.reference));
    let t = Instant::now();
    let reference = reg.push(&img.reference, "e2e/app:1");
    eprintln!("pushed 8 MiB in {:.2?}", t.elapsed());
    assert_eq!(reference, format!("{}/e2e/app:1", reg.addr()));
    assert!(
        !image_exists(&reference),
        "push must remove its tag {reference} again"
    );
    assert!(
        image_exists(&img.reference),
        "push must not remove the image's own name"
    );

    let (code, catalog) = http_get_url(&format!("{}/v2/_catalog", reg.base_url())).unwrap();
    assert_eq!(code, 200, "{catalog}");
    assert!(catalog.contains("e2e/app"), "catalog: {catalog}");

    let id = img.id.clone();
    drop(img);
    assert!(
        try_docker(&["image", "inspect", &id]).is_err(),
        "the test image is still there after TestImage's drop"
    );

    let t = Instant::now();
    docker(&["pull", "--quiet", &reference]);
    // Removed at the end, pass or fail.
    let pulled = TestImage {
        reference: reference.clone(),
        id: docker(&["image", "inspect", "--format", "{{.Id}}", &reference]),
    };
    eprintln!("pulled back in {:.2?}", t.elapsed());
    assert_eq!(pulled.id, id, "the pulled image is another image");
}

/// With htpasswd auth: `/v2/` refuses anonymous and wrong credentials, takes
/// the right ones; a push (which logs in) works, the password does not appear
/// in the registry's log, and `~/.docker` is not touched.
#[test]
fn registry_with_auth() {
    let user = "e2e-user";
    let pass = format!("pw-{}", unique_name("secret"));
    let reg = Registry::start_with_auth(user, &pass);
    assert_eq!(reg.credentials(), Some((user, pass.as_str())));

    assert_eq!(get_v2(&reg.addr(), None), Ok(401), "anonymous");
    assert_eq!(
        get_v2(&reg.addr(), Some((user, "wrong"))),
        Ok(401),
        "wrong password"
    );
    assert_eq!(
        get_v2(&reg.addr(), Some((user, &pass))),
        Ok(200),
        "right password"
    );

    let home_config = std::env::var_os("HOME")
        .map(|h| Path::new(&h).join(".docker/config.json"))
        .map(|p| std::fs::read(&p).ok());

    let img = unique_image("reg-auth", 1);
    let reference = reg.push(&img.reference, "private/app:1");
    assert!(!image_exists(&reference), "push must remove its tag");

    // Without credentials the registry refuses the pull.
    let empty_config = tempfile::tempdir().unwrap();
    let o = run_with_timeout(
        Command::new("docker")
            .env("DOCKER_CONFIG", empty_config.path())
            .args(["pull", &reference]),
        COMMAND_TIMEOUT,
    );
    o.assert_failure();
    assert!(
        !image_exists(&reference),
        "an anonymous pull must not have worked"
    );

    let log = reg.log_text();
    assert!(
        log.contains("/v2/"),
        "the registry log has no requests:\n{log}"
    );
    assert!(!log.contains(&pass), "the password is in the registry log");
    let home_after = std::env::var_os("HOME")
        .map(|h| Path::new(&h).join(".docker/config.json"))
        .map(|p| std::fs::read(&p).ok());
    assert_eq!(home_config, home_after, "~/.docker/config.json changed");
}

/// A second engine starts, has an image store of its own (the demo image
/// copied in with save/load), runs a container answering HTTP on a published
/// port, keeps its containers apart from the host engine's, and leaves
/// nothing behind when dropped.
#[test]
fn second_engine_runs_containers_and_cleans_up() {
    require_demo_image();
    let t = Instant::now();
    let engine = Engine::start();
    let start_time = t.elapsed();
    eprintln!("engine {} started in {start_time:.2?}", engine.host());
    let host = engine.host();
    let bridge = engine.bridge().to_string();
    let pid = engine.pid().expect("dockerd running");
    let dir = engine.dir().to_path_buf();

    assert!(
        bridge.starts_with("skeng") && bridge.len() <= 15,
        "{bridge}"
    );
    assert!(
        host.starts_with("unix://") && host.ends_with("/docker.sock"),
        "{host}"
    );
    let link = run_with_timeout(
        Command::new("ip").args(["-o", "-4", "addr", "show", "dev", &bridge]),
        COMMAND_TIMEOUT,
    );
    link.assert_success();
    assert!(
        link.stdout.contains(&format!("{}/24", engine.gateway())),
        "{}",
        link.stdout
    );
    let info = engine
        .docker(&["info", "--format", "{{.Driver}} {{.DockerRootDir}}"])
        .unwrap();
    assert_eq!(info, format!("vfs {}", dir.join("root").display()));

    // Its own image store: the demo image is not there until copied in.
    assert!(!engine.has_image(DEMO_IMAGE));
    assert_eq!(engine.image_id(DEMO_IMAGE), None);
    let saved = tempfile::tempdir().unwrap();
    let tar = saved.path().join("demo.tar");
    let tar = tar.to_str().unwrap();
    let t = Instant::now();
    docker(&["save", "-o", tar, DEMO_IMAGE]);
    engine.docker(&["load", "-i", tar]).unwrap();
    eprintln!("save + load of the demo image: {:.2?}", t.elapsed());
    let host_id = docker(&["image", "inspect", "--format", "{{.Id}}", DEMO_IMAGE]);
    assert_eq!(engine.image_id(DEMO_IMAGE), Some(host_id));

    let node = unique_name("node");
    let node_label = format!("skein.node={node}");
    let id = engine
        .docker(&[
            "run",
            "-d",
            "--rm",
            "--label",
            "skein.test=1",
            "--label",
            &node_label,
            "-p",
            "127.0.0.1::80",
            DEMO_IMAGE,
        ])
        .unwrap();
    let port = engine.docker(&["port", &id, "80/tcp"]).unwrap();
    let addr = port.lines().next().unwrap().to_string();
    assert!(addr.starts_with("127.0.0.1:"), "{port}");
    let body = poll_until_ok(
        "the container on the second engine to answer HTTP",
        Duration::from_secs(30),
        || match http_get_url(&format!("http://{addr}/")) {
            Ok((200, body)) => Ok(body),
            other => Err(other),
        },
    );
    assert!(body.starts_with("hello from"), "{body}");
    let ip = engine
        .docker(&["inspect", "--format", "{{.NetworkSettings.IPAddress}}", &id])
        .unwrap();
    let ip: std::net::Ipv4Addr = ip.parse().unwrap_or_else(|e| panic!("{ip:?}: {e}"));
    assert_eq!(
        ip.octets()[..3],
        engine.gateway().octets()[..3],
        "container address {ip} not in {}",
        engine.subnet()
    );

    // The label-based helpers the agent clean-up uses see the engine's
    // container only when pointed at the engine.
    assert_eq!(
        containers_with_labels_on(Some(&host), &[&node_label]),
        vec![id.clone()]
    );
    assert!(containers_with_labels_on(None, &[&node_label]).is_empty());
    assert!(
        try_docker(&["inspect", &id]).is_err(),
        "visible on the host engine"
    );
    let opts = AgentOpts::default().docker_host(&host);
    assert_eq!(opts.docker_host_value(), Some(host.as_str()));
    assert!(opts
        .env
        .iter()
        .any(|(k, v)| k == "DOCKER_HOST" && *v == host));
    assert_eq!(AgentOpts::default().docker_host_value(), None);
    assert_eq!(
        remove_containers_with_label_on(opts.docker_host_value(), &node_label),
        1
    );
    assert!(containers_with_labels_on(Some(&host), &[&node_label]).is_empty());

    // A container left running: the drop must remove it.
    engine
        .docker(&["run", "-d", "--label", "skein.test=1", DEMO_IMAGE])
        .unwrap();

    let t = Instant::now();
    drop(engine);
    let stop_time = t.elapsed();
    eprintln!("engine stopped and cleaned up in {stop_time:.2?}");

    let o = run_with_timeout(
        Command::new("ip").args(["link", "show", &bridge]),
        COMMAND_TIMEOUT,
    );
    assert!(!o.success(), "bridge {bridge} still exists: {o}");
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "dockerd {pid} still exists"
    );
    assert!(!dir.exists(), "{} still exists", dir.display());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    let d = dir.to_string_lossy();
    assert!(
        !mounts.lines().any(|l| l.contains(d.as_ref())),
        "mounts left under {d}:\n{mounts}"
    );
    let leftovers: Vec<String> = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            std::fs::read(e.path().join("cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(d.as_ref()))
                .unwrap_or(false)
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        leftovers.is_empty(),
        "processes left from {d}: {leftovers:?}"
    );
}
