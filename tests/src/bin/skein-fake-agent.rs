//! A stand-in for the `skein` binary, used only by the harness self-tests
//! (`tests/harness_smoke.rs`) to exercise `skein_e2e::Agent` without the real
//! agent. It mimics the contract the harness relies on:
//!
//! * `skein-fake-agent agent --data-dir DIR --api ADDR --port-range A-B
//!   [--name N] [--label k=v]… [--fake-container IMAGE] [--fake-exit-early]
//!   [--fake-no-api]` keeps a node id in `DIR/node-id`, listens on ADDR,
//!   writes the real address to `DIR/api.addr` (tmp file + rename), logs to
//!   stderr and serves `GET /v1/status`, `POST /v1/echo` (echoes the body) and
//!   404 JSON errors for anything else. `--fake-container IMAGE` creates a
//!   container labelled `skein.node=<node id>` at start-up.
//! * Cluster flags (`--mesh ADDR --advertise IP --join ADDR… --cluster-key
//!   FILE --suspect-after D --dead-after D --voter-grace D`) are accepted for
//!   `skein_e2e::Cluster`'s self-tests: with `--mesh ADDR` it also listens
//!   there and answers every connection with `fake-mesh <node id>\n`; the
//!   key file must exist; the rest is only logged.
//! * `skein-fake-agent --api ADDR [-o json] node ls` prints the status
//!   (as a JSON array with `-o json`); `fail` exits 3; `hang` never returns.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{exit, Command};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("agent") {
        agent(&args[1..]);
    } else {
        client(&args);
    }
}

fn value(args: &[String], i: &mut usize) -> String {
    *i += 1;
    args.get(*i).cloned().unwrap_or_else(|| {
        eprintln!("missing value for {}", args[*i - 1]);
        exit(2)
    })
}

struct Opts {
    data_dir: PathBuf,
    api: String,
    port_range: String,
    name: String,
    labels: Vec<String>,
    container_image: Option<String>,
    exit_early: bool,
    no_api: bool,
    mesh: Option<String>,
    cluster_key: Option<PathBuf>,
    joins: Vec<String>,
}

fn agent(args: &[String]) {
    let mut o = Opts {
        data_dir: PathBuf::new(),
        api: String::new(),
        port_range: String::new(),
        name: "fake".into(),
        labels: vec![],
        container_image: None,
        exit_early: false,
        no_api: false,
        mesh: None,
        cluster_key: None,
        joins: vec![],
    };
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--data-dir" => o.data_dir = value(args, &mut i).into(),
            "--api" => o.api = value(args, &mut i),
            "--port-range" => o.port_range = value(args, &mut i),
            "--name" => o.name = value(args, &mut i),
            "--label" => o.labels.push(value(args, &mut i)),
            "--fake-container" => o.container_image = Some(value(args, &mut i)),
            "--fake-exit-early" => o.exit_early = true,
            "--fake-no-api" => o.no_api = true,
            "--mesh" => o.mesh = Some(value(args, &mut i)),
            "--cluster-key" => o.cluster_key = Some(value(args, &mut i).into()),
            "--join" => o.joins.push(value(args, &mut i)),
            "--publish-range" => {
                value(args, &mut i);
            }
            "--advertise" | "--suspect-after" | "--dead-after" | "--voter-grace" | "--dns"
            | "--container-dns" | "--endpoint-ip" | "--routing-ip" => {
                let flag = args[i].clone();
                eprintln!("fake agent: ignoring {flag} {}", value(args, &mut i));
            }
            other => {
                eprintln!("fake agent: unknown argument {other}");
                exit(2)
            }
        }
        i += 1;
    }
    eprintln!(
        "fake agent starting: name={} port-range={} labels={:?}",
        o.name, o.port_range, o.labels
    );
    if o.exit_early {
        eprintln!("fake agent: exiting early as asked");
        exit(7);
    }
    std::fs::create_dir_all(&o.data_dir).expect("data dir");
    let id_file = o.data_dir.join("node-id");
    let node_id = match std::fs::read_to_string(&id_file) {
        Ok(s) => s.trim().to_string(),
        Err(_) => {
            let mut h = RandomState::new().build_hasher();
            h.write_u32(std::process::id());
            let id = format!("{:016x}", h.finish());
            std::fs::write(&id_file, &id).expect("write node-id");
            id
        }
    };
    eprintln!("fake agent: node id {node_id}");
    if let Some(image) = &o.container_image {
        let out = Command::new("docker")
            .args(["create", "--label"])
            .arg(format!("skein.node={node_id}"))
            .args(["--label", "skein.job=fake", "--label", "skein.alloc=fake-0"])
            .arg(image)
            .output()
            .expect("run docker");
        eprintln!(
            "fake agent: docker create -> {} {}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    if let Some(key) = &o.cluster_key {
        if let Err(e) = std::fs::metadata(key) {
            eprintln!("fake agent: cluster key {}: {e}", key.display());
            exit(2);
        }
    }
    if !o.joins.is_empty() {
        eprintln!("fake agent: would join {:?}", o.joins);
    }
    if let Some(mesh) = &o.mesh {
        let listener = TcpListener::bind(mesh).expect("bind mesh");
        eprintln!("fake agent: mesh listening on {mesh}");
        let id = node_id.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().flatten() {
                let _ = writeln!(stream, "fake-mesh {id}");
            }
        });
    }
    if o.no_api {
        eprintln!("fake agent: not serving the API, as asked");
        loop {
            std::thread::park();
        }
    }
    let listener = TcpListener::bind(&o.api).expect("bind api");
    let addr = listener.local_addr().expect("local addr");
    write_atomic(&o.data_dir.join("api.addr"), &addr.to_string());
    eprintln!("fake agent: listening on {addr}");
    for stream in listener.incoming().flatten() {
        let status = serde_json::json!({
            "node_id": node_id,
            "node_name": o.name,
            "leader_id": node_id,
            "term": 1,
            "last_applied": 0,
            "version": "fake",
        });
        std::thread::spawn(move || serve(stream, status));
    }
}

fn write_atomic(path: &Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).expect("write tmp");
    std::fs::rename(&tmp, path).expect("rename");
}

fn serve(stream: TcpStream, status: serde_json::Value) {
    let mut r = BufReader::new(stream.try_clone().expect("clone"));
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (method, path) = (
        parts.next().unwrap_or("").to_string(),
        parts.next().unwrap_or("").to_string(),
    );
    let mut len = 0usize;
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                len = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; len];
    let _ = r.read_exact(&mut body);
    eprintln!("fake agent: {method} {path}");
    let (code, reason, out) = match (method.as_str(), path.as_str()) {
        ("GET", "/v1/status") => (200, "OK", status.to_string()),
        ("POST", "/v1/echo") => (200, "OK", String::from_utf8_lossy(&body).into_owned()),
        _ => (
            404,
            "Not Found",
            serde_json::json!({"error": format!("no route {method} {path}"), "details": []})
                .to_string(),
        ),
    };
    let mut w = stream;
    let _ = write!(
        w,
        "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{out}",
        out.len()
    );
}

fn client(args: &[String]) {
    let mut api = std::env::var("SKEIN_ADDR").unwrap_or_default();
    let mut json = false;
    let mut rest = vec![];
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--api" => api = value(args, &mut i),
            "-o" => json = value(args, &mut i) == "json",
            other => rest.push(other.to_string()),
        }
        i += 1;
    }
    match rest
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["node", "ls"] => {
            let mut s = TcpStream::connect(&api).unwrap_or_else(|e| {
                eprintln!("cannot connect to {api}: {e}");
                exit(1)
            });
            write!(
                s,
                "GET /v1/status HTTP/1.1\r\nhost: {api}\r\nconnection: close\r\n\r\n"
            )
            .expect("write");
            let mut resp = String::new();
            s.read_to_string(&mut resp).expect("read");
            let body = resp.split("\r\n\r\n").nth(1).unwrap_or("");
            let v: serde_json::Value = serde_json::from_str(body).expect("status JSON");
            if json {
                println!("{}", serde_json::json!([v]));
            } else {
                println!("{}  {}", v["node_id"], v["node_name"]);
            }
        }
        ["fail"] => {
            eprintln!("error: failing as asked");
            exit(3)
        }
        ["hang"] => loop {
            std::thread::park();
        },
        other => {
            eprintln!("fake client: unsupported command {other:?}");
            exit(2)
        }
    }
}
