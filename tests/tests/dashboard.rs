//! The web dashboard in a real headless browser: Debian's `chromium`
//! driven over WebDriver (`chromedriver`, both installed by .ci/run) with
//! plain HTTP/JSON calls. The page must show a job, its allocation with
//! measured memory, and the allocation's events; its restart button must
//! replace the container in Docker, and the restart's events must appear
//! live; with an API token, the page asks for it and works once it is
//! entered.

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use skein_e2e::*;

const WAIT: Duration = Duration::from_secs(30);

/// Key of an element reference in WebDriver answers.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

/// `name` on `$PATH`, if installed.
fn find_in_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A headless chromium behind its own chromedriver. Dropping it ends the
/// session and kills the driver's whole process group (driver and browser),
/// also when the test panicked.
struct Browser {
    driver: Child,
    base: String,
    session: String,
    http: ureq::Agent,
    dir: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver on a free port and opens a headless session.
    fn start() -> Browser {
        let chromium = find_in_path("chromium")
            .expect("chromium is not installed (.ci/run installs Debian's chromium)");
        let chromedriver = find_in_path("chromedriver")
            .expect("chromedriver is not installed (.ci/run installs chromium-driver)");
        let dir = tempfile::Builder::new()
            .prefix("skein-dashboard-")
            .tempdir()
            .unwrap();
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port();
        let log = File::create(dir.path().join("chromedriver.log")).unwrap();
        let mut cmd = Command::new(chromedriver);
        cmd.arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .process_group(0);
        // SAFETY: prctl is async-signal-safe; the driver dies with this thread.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let driver = cmd.spawn().expect("start chromedriver");
        let http: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .proxy(None)
            .build()
            .into();
        let mut b = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            session: String::new(),
            http,
            dir,
        };
        poll_until_ok("chromedriver to answer /status", WAIT, || {
            if let Ok(Some(st)) = b.driver.try_wait() {
                return Err(format!("chromedriver exited with {st}: {}", b.driver_log()));
            }
            let (_, v) = b.call("GET", "/status", None)?;
            (v["value"]["ready"] == true)
                .then_some(())
                .ok_or_else(|| v.to_string())
        });
        let user_data = b.dir.path().join("profile");
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu",
                    "--disable-dev-shm-usage", "--no-first-run",
                    format!("--user-data-dir={}", user_data.display()),
                    "--window-size=1400,1000",
                ],
            },
        }}});
        let v = b.ok("POST", "/session", Some(caps));
        b.session = v["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {v}"))
            .to_string();
        b
    }

    fn driver_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("chromedriver.log")).unwrap_or_default()
    }

    /// One WebDriver call: `(status, body)`, `Err` when no answer came.
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<(u16, Value), String> {
        let url = format!("{}{path}", self.base);
        let r = match (method, body) {
            ("GET", _) => self.http.get(&url).call(),
            ("DELETE", _) => self.http.delete(&url).call(),
            (_, b) => self
                .http
                .post(&url)
                .header("content-type", "application/json")
                .send(b.unwrap_or_else(|| json!({})).to_string()),
        };
        let mut resp = r.map_err(|e| format!("{method} {url}: {e}"))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| format!("{method} {url}: {e}"))?;
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, v))
    }

    /// A call that must succeed; returns its `value`.
    #[track_caller]
    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        match self.call(method, path, body) {
            Ok((200, v)) => v["value"].clone(),
            other => panic!(
                "WebDriver {method} {path}: {other:?}\n--- chromedriver log ---\n{}",
                self.driver_log()
            ),
        }
    }

    fn goto(&self, url: &str) {
        self.ok(
            "POST",
            &format!("/session/{}/url", self.session),
            Some(json!({ "url": url })),
        );
    }

    /// Runs `script` (a function body) in the page and returns its result.
    fn eval(&self, script: &str) -> Value {
        self.ok(
            "POST",
            &format!("/session/{}/execute/sync", self.session),
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// The element matching a CSS selector, if there is one now.
    fn find(&self, css: &str) -> Option<String> {
        let (status, v) = self
            .call(
                "POST",
                &format!("/session/{}/element", self.session),
                Some(json!({ "using": "css selector", "value": css })),
            )
            .ok()?;
        if status != 200 {
            return None;
        }
        v["value"][ELEMENT_KEY].as_str().map(str::to_string)
    }

    /// Clicks the element matching `css` (it must exist).
    #[track_caller]
    fn click(&self, css: &str) {
        let el = self
            .find(css)
            .unwrap_or_else(|| panic!("no element {css} on the page:\n{}", self.text()));
        self.ok(
            "POST",
            &format!("/session/{}/element/{el}/click", self.session),
            None,
        );
    }

    /// Types `text` into the element matching `css`.
    #[track_caller]
    fn type_into(&self, css: &str, text: &str) {
        let el = self
            .find(css)
            .unwrap_or_else(|| panic!("no element {css} on the page"));
        self.ok(
            "POST",
            &format!("/session/{}/element/{el}/value", self.session),
            Some(json!({ "text": text })),
        );
    }

    /// The page's visible text, for failure messages.
    fn text(&self) -> String {
        self.eval("return document.body.innerText;")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// The banner's text ("" while hidden).
    fn banner(&self) -> String {
        self.eval(
            "const b = document.getElementById('banner'); return b.hidden ? '' : b.innerText;",
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
    }

    /// Polls until `script` returns true in the page.
    #[track_caller]
    fn wait_for(&self, what: &str, script: &str) {
        if try_poll_until(WAIT, || (self.eval(script) == true).then_some(())).is_none() {
            panic!(
                "timed out waiting for the page to show {what}; page text:\n{}",
                self.text()
            );
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.call("DELETE", &format!("/session/{}", self.session), None);
        }
        // SAFETY: the group was created for this driver (process_group(0)).
        unsafe {
            libc::kill(-(self.driver.id() as libc::pid_t), libc::SIGKILL);
        }
        let _ = self.driver.wait();
    }
}

/// Applies a one-replica demo job named `job` and returns its allocation
/// id (the CLI returns once it runs).
fn apply_job(agent: &Agent, job: &str, token: &[&str]) -> String {
    let file = agent.write_manifest(
        "job.yaml",
        &dedent(&format!(
            "
            name: {job}
            replicas: 1
            image: {DEMO_IMAGE}
            ports: [{{ name: http, container_port: 80 }}]
            "
        )),
    );
    let mut args = token.to_vec();
    args.extend(["apply", "-f", file.to_str().unwrap()]);
    agent.cli(&args).assert_success();
    args = token.to_vec();
    args.extend(["alloc", "ls", "--job", job]);
    let allocs = agent.cli_json(&args);
    allocs[0]["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no allocation in {allocs}"))
        .to_string()
}

/// A JS expression: the text of the allocation row of `alloc`, or "".
fn alloc_row_text(alloc: &str) -> String {
    format!(
        "(document.querySelector('#allocs tr[data-key=\"{alloc}\"]') || {{innerText: ''}}).innerText"
    )
}

/// A JS expression: the rows of the events table, newest first.
const EVENT_ROWS: &str = "Array.from(document.querySelectorAll('#events tbody tr[data-kind]'))";

/// A JS function body: true when the events table has a `kind` row of
/// allocation `alloc`.
fn has_event(kind: &str, alloc: &str) -> String {
    format!(
        "return {EVENT_ROWS}.some((r) => r.dataset.kind === '{kind}' && r.dataset.alloc === '{alloc}');"
    )
}

#[test]
fn dashboard_shows_the_job_and_restarts_its_allocation() {
    require_demo_image();
    let agent = Agent::start(AgentOpts::default());
    let job = unique_name("dash");
    let alloc = apply_job(&agent, &job, &[]);
    let before = agent.job_containers(&job);
    assert_eq!(before.len(), 1, "one container before the restart");

    let browser = Browser::start();
    browser.goto(&format!("{}/", agent.base_url()));
    browser.wait_for(
        "the job and its running allocation",
        &format!(
            "return document.querySelector('#jobs tbody').innerText.includes('{job}')
                && {row}.includes('running')
                && !!document.querySelector('button.restart[data-alloc=\"{alloc}\"]');",
            row = alloc_row_text(&alloc)
        ),
    );
    let row = browser.eval(&format!("return {};", alloc_row_text(&alloc)));
    assert!(row.as_str().unwrap().contains(&job), "{row}");
    let nodes = browser.eval("return document.querySelector('#nodes tbody').innerText;");
    assert!(nodes.as_str().unwrap().contains("leader"), "{nodes}");
    assert_eq!(browser.banner(), "", "no error banner");
    // The job's rollout state: its first version is complete once running.
    browser.wait_for(
        "the job's rollout shown as complete",
        &format!(
            r#"const r = document.querySelector('#jobs tr[data-key="{job}"] td[data-rollout]');
               return !!r && r.dataset.rollout === 'complete' && r.innerText.includes('v1');"#
        ),
    );

    // Recent events (the tail loaded with the page) hold the start.
    browser.wait_for(
        "a `started` event of the allocation",
        &has_event("started", &alloc),
    );
    // Measured usage (Docker stats, gossiped): the allocation's memory and
    // the node's use.
    browser.wait_for(
        "the measured memory of the allocation and the node",
        &format!(
            r#"const a = document.querySelector('#allocs tr[data-key="{alloc}"] td.mem-used');
               const n = document.querySelector('#nodes tbody td.mem-used');
               return !!a && /^[0-9.]+ ?(B|Ki|Mi|Gi)\b/.test(a.innerText.trim())
                   && !!n && n.innerText.includes('%');"#
        ),
    );

    // The log panel opens for the allocation.
    browser.click(&format!("button.logs-link[data-alloc=\"{alloc}\"]"));
    browser.wait_for(
        "the log panel of the allocation",
        &format!(
            "const s = document.getElementById('logs-state').innerText;
             return !document.getElementById('logs').hidden
                && document.getElementById('logs-title').innerText.includes('{alloc}')
                && s !== '' && !s.startsWith('loading') && !s.startsWith('unavailable');"
        ),
    );

    browser.click(&format!("button.restart[data-alloc=\"{alloc}\"]"));
    let new_id = poll_until(
        "Docker to run a new container for the allocation",
        WAIT,
        || {
            let ids = agent.job_containers(&job);
            match ids.as_slice() {
                [id] if *id != before[0] => {
                    let running = try_container_inspect(id)?["State"]["Running"] == true;
                    running.then(|| id.clone())
                }
                _ => None,
            }
        },
    );
    assert_eq!(
        container_labels(&new_id)["skein.alloc"],
        alloc,
        "same allocation, new container"
    );
    // The page follows: the row names the new container, no error shown.
    browser.wait_for(
        "the new container in the allocation row",
        &format!(
            "const r = document.querySelector('#allocs tr[data-key=\"{alloc}\"]');
             return !!r && r.dataset.container === '{}';",
            &new_id[..12]
        ),
    );
    // The restart's events arrive by the long poll, newest first: the
    // restart, then the start of the new container.
    browser.wait_for(
        "the `restarted` and new `started` events, newest first",
        &format!(
            "const rows = {EVENT_ROWS};
             const restarted = rows.findIndex((r) =>
                 r.dataset.kind === 'restarted' && r.dataset.alloc === '{alloc}');
             const started = rows.findIndex((r) => r.dataset.kind === 'started'
                 && r.dataset.alloc === '{alloc}' && r.innerText.includes('{short}'));
             return restarted >= 0 && started >= 0 && started < restarted;",
            short = &new_id[..12]
        ),
    );
    assert_eq!(browser.banner(), "", "no error banner after the restart");
}

#[test]
fn dashboard_asks_for_the_api_token_and_uses_it() {
    require_demo_image();
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "d4sh-t0ken\n").unwrap();
    let agent = Agent::start(
        AgentOpts::default()
            .arg("--api-token-file")
            .arg(token_file.to_str().unwrap()),
    );
    let job = unique_name("dashtok");
    let alloc = apply_job(&agent, &job, &["--token", "d4sh-t0ken"]);

    let browser = Browser::start();
    browser.goto(&format!("{}/", agent.base_url()));
    browser.wait_for(
        "the token-required banner",
        "return document.getElementById('banner').innerText.includes('token required');",
    );
    assert!(
        !browser.text().contains(&job),
        "nothing is shown without the token"
    );

    browser.type_into("#token-input", "d4sh-t0ken");
    browser.click("#token-save");
    browser.wait_for(
        "the job once the token is saved",
        &format!(
            "return document.getElementById('banner').hidden
                && {}.includes('{job}');",
            alloc_row_text(&alloc)
        ),
    );
    // The events follow restarted with the token.
    browser.wait_for(
        "a `started` event of the allocation once the token is saved",
        &has_event("started", &alloc),
    );
    // Stored for the next visit, not shown in the page.
    let stored = browser.eval("return localStorage.getItem('skein.apiToken');");
    assert_eq!(stored, "d4sh-t0ken");
    assert!(!browser.text().contains("d4sh-t0ken"));
}
