//! The executor: makes this node's Docker match the allocations Raft
//! placed on it.
//!
//! A level-triggered loop: on every state change (and every tick) it lists
//! the containers labelled with this node's id, then creates what is
//! missing, replaces what is outdated, restarts what exited (per restart
//! policy, with exponential backoff) and removes what is no longer wanted.
//! Because containers are found by label, an agent restart simply adopts
//! the containers that are still running: no duplicates, no orphans.

pub mod container;
pub mod decide;
pub mod health;
pub mod hooks;
pub mod stats;
pub mod status;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bollard::models::{ContainerSummary, ContainerSummaryStateEnum};
use futures::{Stream, StreamExt};
use skein_protocol::api::{AllocState, AllocStatus, EventKind};
use skein_protocol::spec::JobSpec;
use tracing::{debug, info, warn};

use crate::events::{EventLog, NewEvent};
use crate::images::{Availability, Images};
use crate::raft::StateHandle;
use crate::runtime::{ContainerRuntime, ListFilter, LogOptions, Runtime, RuntimeError};
use crate::state::{node_id_str, Allocation, NodeId, StoredCredential};
use container::{
    container_name, create_body, host_access_refusal, non_root_violation, StopPlan, LABEL_NODE,
};
use decide::{decide, Action, Backoff, Seen, Track};
pub use status::StatusBoard;

/// Allocations driven at once in one pass (Docker serialises little of a
/// create; more than this only queues inside the daemon).
const MAX_PARALLEL: usize = 8;

/// How often statuses are refreshed while an image is being fetched.
const PULL_PROGRESS_TICK: Duration = Duration::from_millis(200);

/// Timing knobs of the executor.
#[derive(Debug, Clone)]
pub struct ExecutorConfig {
    /// First restart delay; doubles per consecutive quick exit.
    pub backoff_base: Duration,
    /// Longest restart delay.
    pub backoff_max: Duration,
    /// A container that ran this long before exiting restarts without delay
    /// growth (its backoff is reset).
    pub backoff_reset_after: Duration,
    /// Grace period between the stop request and SIGKILL for jobs that set
    /// none of their own (`terminationGracePeriodSeconds`).
    pub stop_timeout: Duration,
    /// Reconcile at least this often, even without state changes.
    pub tick: Duration,
    /// Resolver given to containers (this node's DNS server), so that
    /// `NAME.service.skein` resolves inside them.
    pub container_dns: Option<std::net::IpAddr>,
    /// Address health probes reach published ports at (default 127.0.0.1).
    pub probe_ip: Option<std::net::IpAddr>,
    /// Privileges and host paths this node lets containers use
    /// (`--allow-privileged`, `--allow-host-path`); others are refused.
    pub host_access: skein_protocol::spec::HostAccess,
}

impl Default for ExecutorConfig {
    fn default() -> Self {
        Self {
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(30),
            backoff_reset_after: Duration::from_secs(30),
            stop_timeout: Duration::from_secs(5),
            tick: Duration::from_secs(1),
            container_dns: None,
            probe_ip: None,
            host_access: Default::default(),
        }
    }
}

impl ExecutorConfig {
    /// The restart timing part.
    fn backoff(&self) -> Backoff {
        Backoff {
            base: self.backoff_base,
            max: self.backoff_max,
            reset_after: self.backoff_reset_after,
        }
    }
}

/// The executor of one node.
pub struct Executor {
    docker: Runtime,
    node: NodeId,
    state: Arc<StateHandle>,
    board: StatusBoard,
    cfg: ExecutorConfig,
    tracks: HashMap<String, Track>,
    health: health::HealthMonitor,
    last_error: Option<String>,
    events: Arc<EventLog>,
    /// This node's name, for events.
    name: String,
    /// Fetches images that are missing (or stale, with `Always`).
    images: Images,
    /// Some allocation waited for its image in the last pass: pass again
    /// soon, so that its progress is shown as it goes.
    pulling: bool,
}

impl Executor {
    /// An executor for `node` (called `name`), reporting statuses into
    /// `board` and starts, exits and removals into `events`, fetching
    /// missing images through `images`.
    pub fn new(
        docker: Runtime,
        (node, name): (NodeId, String),
        state: Arc<StateHandle>,
        (board, events): (StatusBoard, Arc<EventLog>),
        images: Images,
        cfg: ExecutorConfig,
    ) -> Self {
        let health = health::HealthMonitor::new(docker.clone())
            .with_probe_ip(cfg.probe_ip.unwrap_or(std::net::Ipv4Addr::LOCALHOST.into()));
        Self {
            docker,
            node,
            state,
            board,
            cfg,
            tracks: HashMap::new(),
            health,
            last_error: None,
            events,
            name,
            images,
            pulling: false,
        }
    }

    /// Reports an event about allocation `alloc` of `job` on this node.
    fn report(&self, e: NewEvent, alloc: &str, job: &str) {
        report_event(&self.events, &self.name, e, alloc, job);
    }

    /// Runs until the task is dropped.
    pub async fn run(mut self) {
        let mut changes = self.state.subscribe();
        let mut exits = self.container_exits();
        let mut fetched = self.images.subscribe();
        loop {
            match self.reconcile().await {
                Ok(()) => {
                    if self.last_error.take().is_some() {
                        info!("executor: docker reachable again");
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    // One line per distinct failure, not one per tick.
                    if self.last_error.as_deref() != Some(&msg) {
                        warn!(error = %msg, "executor: reconcile failed");
                        self.last_error = Some(msg);
                    }
                }
            }
            tokio::select! {
                r = changes.changed() => if r.is_err() { return },
                // A container of ours died: act now, not at the next tick.
                Some(_) = exits.recv() => {}
                // An image fetch ended: start what waited for it.
                r = fetched.changed() => if r.is_err() { return },
                _ = tokio::time::sleep(if self.pulling { PULL_PROGRESS_TICK.min(self.cfg.tick) } else { self.cfg.tick }) => {}
            }
        }
    }

    /// A channel that receives a message whenever one of this node's
    /// containers dies (Docker's event stream, re-subscribed on errors).
    fn container_exits(&self) -> tokio::sync::mpsc::Receiver<()> {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let docker = self.docker.clone();
        let labels = vec![format!("{LABEL_NODE}={}", node_id_str(self.node))];
        tokio::spawn(async move {
            loop {
                let mut events = docker.container_deaths(labels.clone());
                while let Some(ev) = events.next().await {
                    if ev.is_err() {
                        break;
                    }
                    // Full channel: a reconcile is already pending.
                    if tx.try_send(()).is_err() && tx.is_closed() {
                        return;
                    }
                }
                if tx.is_closed() {
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        rx
    }

    /// One pass: compare desired allocations with containers and act.
    pub async fn reconcile(&mut self) -> Result<(), RuntimeError> {
        let node = self.node;
        let desired: Vec<(Allocation, JobSpec, Option<StoredCredential>)> = self
            .state
            .read(|s| {
                // Each allocation runs the spec of its own version: during a
                // rolling update old replicas keep the old spec.
                s.allocs_on(node)
                    .filter_map(|a| {
                        let spec = s.jobs.get(&a.job)?.spec_for(a.job_version)?;
                        let cred = s.credential_for(&spec.image, &spec.pull_secrets).cloned();
                        Some((a.clone(), spec.clone(), cred))
                    })
                    .collect()
            })
            .await;

        let filter = ListFilter {
            labels: vec![format!("{LABEL_NODE}={}", node_id_str(node))],
            running_only: false,
        };
        let found = self.docker.list_containers(&filter).await?;
        let wanted: Vec<&Allocation> = desired.iter().map(|(a, _, _)| a).collect();
        let decide::Sorted {
            unwanted,
            mut kept,
            duplicates,
        } = decide::sort(&wanted, found);
        self.remove_all(unwanted, "no longer placed on this node")
            .await;

        let mut statuses = HashMap::new();
        let mut work = Vec::with_capacity(desired.len());
        for (alloc, spec, cred) in &desired {
            let keep = kept.remove(&alloc.id);
            let track = self.tracks.remove(&alloc.id).unwrap_or_default();
            work.push((alloc, spec, cred, keep, track));
        }
        // Allocations move independently: creates, starts, replacements and
        // their hooks run side by side (bounded), so one slow container or
        // hook does not hold up the others.
        let this = &*self;
        let slots = tokio::sync::Semaphore::new(MAX_PARALLEL);
        let mut passes = Vec::with_capacity(work.len());
        for (alloc, spec, cred, keep, mut track) in work {
            let slots = &slots;
            passes.push(async move {
                let _slot = slots.acquire().await;
                let status = this
                    .drive(&mut track, alloc, spec, cred.as_ref(), keep)
                    .await;
                (alloc.id.clone(), status, track)
            });
        }
        let driven = futures::future::join_all(passes).await;
        for (id, status, track) in driven {
            self.tracks.insert(id.clone(), track);
            statuses.insert(id, status);
        }
        for (alloc, spec, _) in &desired {
            if let Some(mut status) = statuses.remove(&alloc.id) {
                self.check_health(alloc, spec, &mut status).await;
                statuses.insert(alloc.id.clone(), status);
            }
        }
        self.remove_all(duplicates, "duplicate container of one allocation")
            .await;
        self.tracks.retain(|id, _| statuses.contains_key(id));
        let probed: std::collections::HashSet<String> = statuses
            .iter()
            .filter(|(_, s)| s.state == AllocState::Running)
            .map(|(id, _)| id.clone())
            .collect();
        self.health.retain(&probed);
        self.pulling = statuses.values().any(|s| s.state == AllocState::Pulling);
        self.board.set_node(node, statuses).await;
        Ok(())
    }

    /// Stops and removes `containers` concurrently, logging failures.
    async fn remove_all(&self, containers: Vec<(String, ContainerSummary)>, why: &str) {
        let removals = containers.into_iter().map(|(alloc, c)| {
            let docker = self.docker.clone();
            let plan = stop_plan(&c, self.cfg.stop_timeout);
            async move {
                let id = c.id.unwrap_or_default();
                let job = c
                    .labels
                    .as_ref()
                    .and_then(|l| l.get(container::LABEL_JOB))
                    .cloned()
                    .unwrap_or_default();
                info!(alloc = %alloc, container = %short(&id), "stopping container: {why}");
                (alloc, job, remove(&*docker, &id, &plan).await)
            }
        });
        for (alloc, job, r) in futures::future::join_all(removals).await {
            match r {
                Ok(()) => self.report(
                    NewEvent::new(EventKind::Removed, format!("container removed: {why}")),
                    &alloc,
                    &job,
                ),
                Err(e) => warn!(alloc = %alloc, error = %e, "executor: could not remove container"),
            }
        }
    }

    /// Runs the allocation's health checks: readiness decides whether it
    /// gets traffic; a failed liveness check restarts the container.
    async fn check_health(&mut self, alloc: &Allocation, spec: &JobSpec, status: &mut AllocStatus) {
        let Some(cid) = status.container_id.clone() else {
            return;
        };
        if status.state != AllocState::Running {
            return;
        }
        self.health
            .watch(&alloc.id, &cid, &spec.checks, &alloc.ports);
        let verdict = self.health.verdict(&alloc.id);
        status.ready = verdict.ready;
        if !verdict.ready {
            status.message = self.health.reason(&alloc.id);
        }
        if verdict.live {
            return;
        }
        let reason = self.health.reason(&alloc.id).unwrap_or_default();
        info!(alloc = %alloc.id, container = %short(&cid), reason = %reason, "liveness check failed: restarting container");
        self.report(
            NewEvent::new(
                EventKind::Restarted,
                format!("liveness check failed: {reason}"),
            ),
            &alloc.id,
            &alloc.job,
        );
        // Fresh probes for the restarted container.
        self.health.forget(&alloc.id);
        let plan = StopPlan::for_spec(spec, self.cfg.stop_timeout);
        let left = pre_stop(&*self.docker, &cid, &plan).await;
        match self.docker.restart_container(&cid, left).await {
            Ok(()) => {
                let track = self.tracks.entry(alloc.id.clone()).or_default();
                track.restarts += 1;
                track.running_since = Some(Instant::now());
                status.restarts = track.restarts;
                status.ready = false;
                status.message = Some(format!("restarted: {reason}"));
            }
            Err(e) => {
                warn!(alloc = %alloc.id, error = %docker_message(&e), "cannot restart container")
            }
        }
    }

    /// Moves one allocation one step towards running and reports its
    /// status: observes its container, asks [`decide`], applies the action.
    async fn drive(
        &self,
        track: &mut Track,
        alloc: &Allocation,
        spec: &JobSpec,
        credential: Option<&StoredCredential>,
        container: Option<ContainerSummary>,
    ) -> AllocStatus {
        let now = Instant::now();
        let docker = &*self.docker;
        let cfg = &self.cfg;
        let backoff = cfg.backoff();
        let report = |e: NewEvent| self.report(e, &alloc.id, &alloc.job);
        let mut status = AllocStatus {
            state: AllocState::Pending,
            exit_code: track.last_exit,
            restarts: track.restarts,
            container_id: None,
            message: None,
            ready: false,
            pull: None,
        };

        let id = container
            .as_ref()
            .and_then(|c| c.id.clone())
            .unwrap_or_default();
        let mut seen = Seen::of(container.as_ref(), alloc, None);
        // An exit's code is in the container's details only.
        if let Seen::Exited(_) = seen {
            match docker.inspect_container(&id).await {
                Ok(i) => seen = Seen::Exited(i.state.and_then(|s| s.exit_code).unwrap_or(-1)),
                Err(e) => {
                    status.container_id = Some(id);
                    status.message = Some(docker_message(&e));
                    return status;
                }
            }
        }
        let mut action = decide(track, seen, spec.restart, now, &backoff);
        if action == Action::Replace {
            if let Some(c) = &container {
                let plan = stop_plan(c, cfg.stop_timeout);
                info!(alloc = %alloc.id, container = %short(&id), "replacing container: job updated or restart requested");
                if let Err(e) = remove(docker, &id, &plan).await {
                    warn!(alloc = %alloc.id, error = %e, "could not remove outdated container");
                    status.message = Some(e.to_string());
                    return status;
                }
            }
            report(NewEvent::new(
                EventKind::Restarted,
                "container replaced: restart requested or job updated",
            ));
            track.replaced();
            action = decide(track, Seen::None, spec.restart, now, &backoff);
        }
        if !matches!(action, Action::Create | Action::WaitCreate) {
            status.container_id = Some(id.clone());
        }
        match action {
            Action::Replace | Action::Nothing => {}
            Action::WaitCreate => {
                status.state = AllocState::Failed;
                status.message = track.message.clone();
            }
            Action::Create => {
                return self
                    .create(track, alloc, spec, credential, status, now)
                    .await
            }
            Action::Keep => status.state = AllocState::Running,
            Action::Start => match docker.start_container(&id).await {
                Ok(()) => {
                    track.running_since = Some(now);
                    status.state = AllocState::Running;
                }
                Err(e) => status.message = Some(docker_message(&e)),
            },
            Action::Finished { code, first } => {
                status.exit_code = Some(code);
                let why = format!(
                    "exited with code {code}; restart policy {} does not restart it",
                    spec.restart
                );
                if first {
                    info!(alloc = %alloc.id, exit_code = code, "container exited; restart policy {} does not restart it", spec.restart);
                    report(NewEvent::new(EventKind::Exited, why.clone()).exit_code(code));
                }
                status.state = if code == 0 {
                    AllocState::Complete
                } else {
                    AllocState::Failed
                };
                status.message = Some(why);
            }
            Action::ScheduleRestart { code, delay } => {
                status.exit_code = Some(code);
                info!(alloc = %alloc.id, exit_code = code, restart_in = ?delay, "container exited; restarting per policy {}", spec.restart);
                report(
                    NewEvent::new(
                        EventKind::Exited,
                        format!(
                            "exited with code {code}; restarting in {:.1} s (policy {})",
                            delay.as_secs_f64(),
                            spec.restart
                        ),
                    )
                    .exit_code(code),
                );
                status.state = AllocState::Restarting;
            }
            Action::WaitRestart { code } => {
                status.exit_code = Some(code);
                status.state = AllocState::Restarting;
            }
            Action::Restart { code } => {
                status.exit_code = Some(code);
                match docker.start_container(&id).await {
                    Ok(()) => {
                        track.restarted(now);
                        status.restarts = track.restarts;
                        status.state = AllocState::Running;
                        debug!(alloc = %alloc.id, restarts = track.restarts, "container restarted");
                        report(NewEvent::new(
                            EventKind::Restarted,
                            format!("restarted after its exit (restart {})", track.restarts),
                        ));
                    }
                    Err(e) => {
                        track.retry_at = Some(now + backoff.delay(track.backoff_exp));
                        status.state = AllocState::Restarting;
                        status.message = Some(docker_message(&e));
                    }
                }
            }
        }
        status
    }

    /// Creates and starts the allocation's container, once its node allows
    /// what it needs and its image is here (a fetch is started otherwise).
    async fn create(
        &self,
        track: &mut Track,
        alloc: &Allocation,
        spec: &JobSpec,
        credential: Option<&StoredCredential>,
        mut status: AllocStatus,
        now: Instant,
    ) -> AllocStatus {
        let cfg = &self.cfg;
        let report = |e: NewEvent| self.report(e, &alloc.id, &alloc.job);
        // Defence in depth: the scheduler places such jobs only on nodes
        // that allow them, but a placement may be stale.
        if let Some(msg) = host_access_refusal(spec, &cfg.host_access) {
            if track.message.as_deref() != Some(&msg) {
                warn!(alloc = %alloc.id, error = %msg, "container refused");
                report(NewEvent::new(EventKind::StartFailed, msg.clone()));
            }
            track.message = Some(msg.clone());
            status.state = AllocState::Failed;
            status.message = Some(msg);
            return status;
        }
        match self
            .images
            .ensure(&spec.image, spec.pull_policy(), credential)
            .await
        {
            Availability::Ready => {}
            Availability::Fetching { progress, note } => {
                status.state = AllocState::Pulling;
                status.message = Some(match note {
                    Some(n) => format!("{n}; retrying"),
                    None => format!("pulling {}: {progress}", spec.image),
                });
                status.pull = Some(progress);
                return status;
            }
            Availability::Failed(msg) => {
                status.state = AllocState::Failed;
                status.message = Some(msg);
                return status;
            }
        }
        match create_and_start(&*self.docker, self.node, alloc, spec, cfg.container_dns).await {
            Ok(id) => {
                info!(alloc = %alloc.id, job = %alloc.job, container = %short(&id), image = %spec.image, "container started");
                report(NewEvent::new(
                    EventKind::Started,
                    format!("container {} started from {}", short(&id), spec.image),
                ));
                track.started(now);
                status.state = AllocState::Running;
                status.container_id = Some(id);
            }
            Err(e) => {
                let delay = track.failed(now, &cfg.backoff());
                let msg = format!("cannot start container: {e}");
                if track.message.as_deref() != Some(&msg) {
                    warn!(alloc = %alloc.id, error = %msg, retry_in = ?delay, "container failed to start");
                    report(NewEvent::new(EventKind::StartFailed, msg.clone()));
                }
                track.message = Some(msg.clone());
                status.state = AllocState::Failed;
                status.message = Some(msg);
            }
        }
        status
    }
}

fn report_event(events: &EventLog, node: &str, e: NewEvent, alloc: &str, job: &str) {
    events.emit(e.node(node).alloc(alloc).job(job));
}

async fn create_and_start(
    docker: &dyn ContainerRuntime,
    node: NodeId,
    alloc: &Allocation,
    spec: &JobSpec,
    dns: Option<std::net::IpAddr>,
) -> Result<String, String> {
    // runAsNonRoot without a user of the spec's own: the image's user
    // decides (Kubernetes' CreateContainerConfigError).
    let sec = &spec.container.security;
    let image_user = if sec.run_as_non_root && sec.run_as_user.is_none() {
        docker
            .inspect_image(&spec.image)
            .await
            .map_err(|e| {
                format!(
                    "cannot inspect image {}: {}",
                    spec.image,
                    docker_message(&e)
                )
            })?
            .config
            .and_then(|c| c.user)
            .unwrap_or_default()
    } else {
        String::new()
    };
    if let Some(why) = non_root_violation(spec, &image_user) {
        return Err(why);
    }
    let name = container_name(&alloc.id);
    let body = || create_body(node, alloc, spec, dns);
    let quick = StopPlan::plain(Duration::from_secs(1));
    let created = match docker.create_container(&name, body()).await {
        Ok(id) => id,
        // A leftover with our name (e.g. from an older agent run whose
        // labels do not match): replace it.
        Err(e) if e.is_conflict() => {
            let again = async {
                remove(docker, &name, &quick).await?;
                docker.create_container(&name, body()).await
            };
            again.await.map_err(|e| docker_message(&e))?
        }
        Err(e) => return Err(docker_message(&e)),
    };
    if let Err(e) = docker.start_container(&created).await {
        // Do not leave a created-but-broken container (e.g. port in use).
        let _ = remove(docker, &created, &quick).await;
        return Err(docker_message(&e));
    }
    if let Some(hook) = &spec.container.lifecycle.post_start {
        if let Err(why) = hooks::run(docker, &created, hook, hooks::POST_START_TIMEOUT).await {
            // As in Kubernetes: a failed postStart hook kills the container.
            let _ = remove(docker, &created, &quick).await;
            return Err(format!("postStart hook failed: {why}"));
        }
    }
    Ok(created)
}

/// How to stop container `c`: its labels say (see [`StopPlan::from_labels`]);
/// only a running container can run its preStop hook.
fn stop_plan(c: &ContainerSummary, default: Duration) -> StopPlan {
    let mut plan = StopPlan::from_labels(c.labels.as_ref(), default);
    if c.state != Some(ContainerSummaryStateEnum::RUNNING) {
        plan.pre_stop = None;
    }
    plan
}

/// Runs the plan's preStop hook in container `id`, if any, within the grace
/// period; returns what is left of the grace period for the stop signal.
async fn pre_stop(docker: &dyn ContainerRuntime, id: &str, plan: &StopPlan) -> Duration {
    let Some(hook) = &plan.pre_stop else {
        return plan.grace;
    };
    let started = Instant::now();
    if let Err(why) = hooks::run(docker, id, hook, plan.grace).await {
        warn!(container = %short(id), "preStop hook failed: {why}");
    }
    plan.grace.saturating_sub(started.elapsed())
}

/// Stops a container (its preStop hook, then SIGTERM, then SIGKILL when the
/// plan's grace period is over) and removes it; a container that is
/// already gone is not an error.
pub async fn remove(
    docker: &dyn ContainerRuntime,
    id: &str,
    plan: &StopPlan,
) -> Result<(), RuntimeError> {
    let left = pre_stop(docker, id, plan).await;
    match docker.stop_container(id, left).await {
        Ok(()) => {}
        Err(e) if is_not_found(&e) => return Ok(()),
        // 304 = already stopped; other errors: force removal below anyway.
        Err(_) => {}
    }
    match docker.remove_container(id).await {
        Ok(()) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

fn is_not_found(e: &RuntimeError) -> bool {
    e.is_not_found()
}

/// The engine's message (a [`RuntimeError`] shows no client wrapping).
pub fn docker_message(e: &RuntimeError) -> String {
    e.to_string()
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// Streams the logs of an allocation's container (stdout and stderr
/// interleaved as Docker stores them).
pub fn logs(
    docker: &dyn ContainerRuntime,
    alloc_id: &str,
    follow: bool,
    tail: Option<u32>,
    since: Option<i32>,
    timestamps: bool,
) -> impl Stream<Item = Result<bytes::Bytes, RuntimeError>> + Send + 'static {
    let opts = LogOptions {
        follow,
        tail,
        since,
        timestamps,
    };
    docker.logs(&container_name(alloc_id), opts)
}
