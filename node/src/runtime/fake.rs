//! An in-memory [`ContainerRuntime`] for tests: containers with states,
//! exits a test injects, local images, deterministic ids. Nothing runs:
//! a "running" container is a record, so a whole cluster of nodes fits in
//! one test process without Docker or root.
//!
//! One `std::sync::Mutex` guards the engine: no call awaits while holding
//! it, so a Tokio mutex would buy nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::models::{
    ContainerConfig, ContainerCreateBody, ContainerInspectResponse, ContainerMemoryStats,
    ContainerState, ContainerStateStatusEnum, ContainerStatsResponse, ContainerSummary,
    ContainerSummaryStateEnum, CreateImageInfo, ImageInspect, ImageSummary,
};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use tokio::sync::broadcast;

use super::{
    has_labels, Bridge, ContainerRuntime, EngineInfo, ExecOutcome, ListFilter, LogOptions,
    RuntimeError,
};

/// Distinguishes the ids of fakes in one process (several nodes).
static INSTANCES: AtomicU64 = AtomicU64::new(1);

/// The state of a fake container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FakeState {
    /// Created, never started.
    Created,
    /// Running.
    Running,
    /// Ended with this exit code.
    Exited(i64),
}

/// One fake container, as a test sees it.
#[derive(Debug, Clone)]
pub struct FakeContainer {
    /// Its id (64 hex digits, like Docker's).
    pub id: String,
    /// Its unique name.
    pub name: String,
    /// Its image reference, as given at create.
    pub image: String,
    /// Its labels.
    pub labels: HashMap<String, String>,
    /// Its state.
    pub state: FakeState,
    /// How often it was started (the first start included).
    pub starts: u32,
    /// What it was created with.
    pub body: ContainerCreateBody,
}

#[derive(Default)]
struct Engine {
    next: u64,
    /// By id; a BTreeMap so listings come in a stable order.
    containers: BTreeMap<String, FakeContainer>,
    /// Local images: id → tags.
    images: BTreeMap<String, Vec<String>>,
    /// Exit code a command run by `exec` ends with (default 0).
    exec_exit: i64,
    /// Calls that fail with this message, by call name (`create`, `start`).
    failing: HashMap<&'static str, String>,
}

/// An in-memory container engine. Clones share the engine.
#[derive(Clone)]
pub struct FakeRuntime {
    instance: u64,
    engine: Arc<Mutex<Engine>>,
    deaths: broadcast::Sender<HashMap<String, String>>,
    info: EngineInfo,
}

impl Default for FakeRuntime {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeRuntime {
    /// An empty engine with 4 CPUs and 8 GiB.
    pub fn new() -> Self {
        Self {
            instance: INSTANCES.fetch_add(1, Ordering::Relaxed),
            engine: Arc::default(),
            deaths: broadcast::channel(64).0,
            info: EngineInfo {
                cpus: 4,
                memory_bytes: 8 << 30,
            },
        }
    }

    /// Reports `info` as the host's capacity.
    pub fn with_info(mut self, info: EngineInfo) -> Self {
        self.info = info;
        self
    }

    /// Makes image `reference` present locally (pulls add images too).
    pub fn add_image(&self, reference: &str) {
        let tag = skein_protocol::image::canonical(reference);
        let id = format!("sha256:{:064x}", fnv(&tag));
        let mut e = self.lock();
        let tags = e.images.entry(id).or_default();
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }

    /// Every container, in id order.
    pub fn containers(&self) -> Vec<FakeContainer> {
        self.lock().containers.values().cloned().collect()
    }

    /// Containers in state running.
    pub fn running(&self) -> Vec<FakeContainer> {
        let mut all = self.containers();
        all.retain(|c| c.state == FakeState::Running);
        all
    }

    /// Ends running container `id` with exit `code`, as if its process
    /// exited; subscribers of deaths hear of it.
    pub fn exit(&self, id: &str, code: i64) -> Result<(), RuntimeError> {
        let labels = {
            let mut e = self.lock();
            let c = e
                .containers
                .get_mut(id)
                .ok_or_else(|| RuntimeError::not_found(id))?;
            c.state = FakeState::Exited(code);
            c.labels.clone()
        };
        let _ = self.deaths.send(labels);
        Ok(())
    }

    /// Makes every later `call` (`create`, `start`) fail with `message`;
    /// `None` lets it succeed again.
    pub fn fail(&self, call: &'static str, message: Option<&str>) {
        let mut e = self.lock();
        match message {
            Some(m) => e.failing.insert(call, m.to_string()),
            None => e.failing.remove(call),
        };
    }

    /// Commands run by `exec` end with `code` from now on.
    pub fn set_exec_exit(&self, code: i64) {
        self.lock().exec_exit = code;
    }

    fn lock(&self) -> MutexGuard<'_, Engine> {
        // A test that panicked while holding the lock has failed already;
        // the data is still usable for the others.
        self.engine.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check(&self, call: &'static str) -> Result<(), RuntimeError> {
        match self.lock().failing.get(call) {
            Some(m) => Err(RuntimeError::Status {
                code: 500,
                message: m.clone(),
            }),
            None => Ok(()),
        }
    }

    fn image_id(e: &Engine, image: &str) -> Option<String> {
        if e.images.contains_key(image) {
            return Some(image.to_string());
        }
        let want = skein_protocol::image::canonical(image);
        e.images
            .iter()
            .find(|(_, tags)| tags.contains(&want))
            .map(|(id, _)| id.clone())
    }

    /// Applies `f` to the container named or identified by `key`.
    fn with_container<T>(
        &self,
        key: &str,
        f: impl FnOnce(&mut FakeContainer) -> T,
    ) -> Result<T, RuntimeError> {
        let mut e = self.lock();
        let c = e
            .containers
            .values_mut()
            .find(|c| c.id == key || c.name == key)
            .ok_or_else(|| RuntimeError::not_found(key))?;
        Ok(f(c))
    }

    fn died(&self, labels: HashMap<String, String>) {
        let _ = self.deaths.send(labels);
    }
}

/// A stable 64-bit hash (FNV-1a), for image ids derived from their name.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn summary(c: &FakeContainer) -> ContainerSummary {
    ContainerSummary {
        id: Some(c.id.clone()),
        names: Some(vec![format!("/{}", c.name)]),
        image: Some(c.image.clone()),
        labels: Some(c.labels.clone()),
        state: Some(match c.state {
            FakeState::Created => ContainerSummaryStateEnum::CREATED,
            FakeState::Running => ContainerSummaryStateEnum::RUNNING,
            FakeState::Exited(_) => ContainerSummaryStateEnum::EXITED,
        }),
        ..Default::default()
    }
}

#[async_trait::async_trait]
impl ContainerRuntime for FakeRuntime {
    async fn ping(&self) -> Result<(), RuntimeError> {
        Ok(())
    }

    async fn info(&self) -> Result<EngineInfo, RuntimeError> {
        Ok(self.info)
    }

    async fn bridge(&self) -> Option<Bridge> {
        None
    }

    async fn list_containers(
        &self,
        filter: &ListFilter,
    ) -> Result<Vec<ContainerSummary>, RuntimeError> {
        let e = self.lock();
        Ok(e.containers
            .values()
            .filter(|c| !filter.running_only || c.state == FakeState::Running)
            .filter(|c| has_labels(Some(&c.labels), &filter.labels))
            .map(summary)
            .collect())
    }

    async fn inspect_container(&self, id: &str) -> Result<ContainerInspectResponse, RuntimeError> {
        self.with_container(id, |c| {
            let (status, code) = match c.state {
                FakeState::Created => (ContainerStateStatusEnum::CREATED, 0),
                FakeState::Running => (ContainerStateStatusEnum::RUNNING, 0),
                FakeState::Exited(code) => (ContainerStateStatusEnum::EXITED, code),
            };
            ContainerInspectResponse {
                id: Some(c.id.clone()),
                name: Some(format!("/{}", c.name)),
                state: Some(ContainerState {
                    status: Some(status),
                    running: Some(c.state == FakeState::Running),
                    exit_code: Some(code),
                    ..Default::default()
                }),
                host_config: c.body.host_config.clone(),
                config: Some(ContainerConfig {
                    labels: Some(c.labels.clone()),
                    image: Some(c.image.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            }
        })
    }

    async fn create_container(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<String, RuntimeError> {
        self.check("create")?;
        let mut e = self.lock();
        if e.containers.values().any(|c| c.name == name) {
            return Err(RuntimeError::Status {
                code: 409,
                message: format!("Conflict. The container name \"/{name}\" is already in use"),
            });
        }
        let image = body.image.clone().unwrap_or_default();
        if Self::image_id(&e, &image).is_none() {
            return Err(RuntimeError::Status {
                code: 404,
                message: format!("No such image: {image}"),
            });
        }
        e.next += 1;
        let id = format!("{:08x}{:056x}", self.instance, e.next);
        let c = FakeContainer {
            id: id.clone(),
            name: name.to_string(),
            image,
            labels: body.labels.clone().unwrap_or_default(),
            state: FakeState::Created,
            starts: 0,
            body,
        };
        e.containers.insert(id.clone(), c);
        Ok(id)
    }

    async fn start_container(&self, id: &str) -> Result<(), RuntimeError> {
        self.check("start")?;
        self.with_container(id, |c| {
            if c.state != FakeState::Running {
                c.state = FakeState::Running;
                c.starts += 1;
            }
        })
    }

    async fn stop_container(&self, id: &str, _grace: Duration) -> Result<(), RuntimeError> {
        let was = self.with_container(id, |c| {
            let was = c.state;
            if was == FakeState::Running {
                // As if the process obeyed SIGTERM: 143 = 128 + 15.
                c.state = FakeState::Exited(143);
            }
            (was, c.labels.clone())
        })?;
        match was {
            (FakeState::Running, labels) => {
                self.died(labels);
                Ok(())
            }
            _ => Err(RuntimeError::Status {
                code: 304,
                message: "container already stopped".into(),
            }),
        }
    }

    async fn restart_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError> {
        let _ = self.stop_container(id, grace).await;
        self.start_container(id).await
    }

    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError> {
        let mut e = self.lock();
        let key = e
            .containers
            .values()
            .find(|c| c.id == id || c.name == id)
            .map(|c| c.id.clone())
            .ok_or_else(|| RuntimeError::not_found(id))?;
        e.containers.remove(&key);
        Ok(())
    }

    fn container_deaths(
        &self,
        labels: Vec<String>,
    ) -> BoxStream<'static, Result<(), RuntimeError>> {
        let rx = self.deaths.subscribe();
        futures::stream::unfold(rx, move |mut rx| {
            let labels = labels.clone();
            async move {
                loop {
                    match rx.recv().await {
                        Ok(l) if has_labels(Some(&l), &labels) => return Some((Ok(()), rx)),
                        Ok(_) => {}
                        // Missed some: one wake-up covers them all.
                        Err(broadcast::error::RecvError::Lagged(_)) => return Some((Ok(()), rx)),
                        Err(broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        })
        .boxed()
    }

    async fn exec(
        &self,
        id: &str,
        _command: &[String],
        _max_output: usize,
    ) -> Result<ExecOutcome, RuntimeError> {
        let running = self.with_container(id, |c| c.state == FakeState::Running)?;
        if !running {
            return Err(RuntimeError::Status {
                code: 409,
                message: format!("container {id} is not running"),
            });
        }
        Ok(ExecOutcome {
            exit_code: Some(self.lock().exec_exit),
            output: Vec::new(),
        })
    }

    async fn stats_once(&self, id: &str) -> Result<ContainerStatsResponse, RuntimeError> {
        self.with_container(id, |_| ContainerStatsResponse {
            memory_stats: Some(ContainerMemoryStats {
                usage: Some(0),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    fn logs(&self, name: &str, _: LogOptions) -> BoxStream<'static, Result<Bytes, RuntimeError>> {
        let found = self.with_container(name, |_| ());
        futures::stream::iter(found.err().map(Err)).boxed()
    }

    async fn inspect_image(&self, image: &str) -> Result<ImageInspect, RuntimeError> {
        let e = self.lock();
        let id = Self::image_id(&e, image).ok_or_else(|| RuntimeError::Status {
            code: 404,
            message: format!("No such image: {image}"),
        })?;
        Ok(ImageInspect {
            repo_tags: e.images.get(&id).cloned(),
            id: Some(id),
            size: Some(1 << 20),
            ..Default::default()
        })
    }

    async fn list_images(&self) -> Result<Vec<ImageSummary>, RuntimeError> {
        let e = self.lock();
        Ok(e.images
            .iter()
            .map(|(id, tags)| ImageSummary {
                id: id.clone(),
                repo_tags: tags.clone(),
                size: 1 << 20,
                ..Default::default()
            })
            .collect())
    }

    /// Every pull succeeds at once: the fake's registry has every image.
    fn pull_image(
        &self,
        repository: &str,
        tag: &str,
        _credentials: Option<DockerCredentials>,
    ) -> BoxStream<'static, Result<CreateImageInfo, RuntimeError>> {
        let sep = if tag.starts_with("sha256:") { "@" } else { ":" };
        self.add_image(&format!("{repository}{sep}{tag}"));
        futures::stream::iter([Ok(CreateImageInfo {
            status: Some(format!(
                "Status: Downloaded newer image for {repository}:{tag}"
            )),
            ..Default::default()
        })])
        .boxed()
    }

    /// Images cannot be copied between fakes: their archives are not real.
    fn export_image(&self, id: &str) -> BoxStream<'static, Result<Bytes, RuntimeError>> {
        let err = RuntimeError::Other(format!("the fake runtime cannot export {id}"));
        futures::stream::iter([Err(err)]).boxed()
    }

    async fn load_image(
        &self,
        _archive: BoxStream<'static, std::io::Result<Bytes>>,
    ) -> Result<(), RuntimeError> {
        Err(RuntimeError::Other(
            "the fake runtime cannot load archives".into(),
        ))
    }

    async fn tag_image(&self, id: &str, repository: &str, tag: &str) -> Result<(), RuntimeError> {
        let mut e = self.lock();
        let tags = e
            .images
            .get_mut(id)
            .ok_or_else(|| RuntimeError::not_found(id))?;
        let name = skein_protocol::image::canonical(&format!("{repository}:{tag}"));
        if !tags.contains(&name) {
            tags.push(name);
        }
        Ok(())
    }
}
