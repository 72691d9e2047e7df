//! Images reach every node: registry pulls with credentials, and copies
//! from peers when no registry has the image or none can be reached.
//!
//! The executor asks [`Images::ensure`] before it creates a container; the
//! answer is immediate (ready, fetching with progress, or failed), and a
//! fetch runs in the background, one per image per node however many
//! replicas wait for it. When a fetch ends the executor is woken
//! ([`Images::subscribe`]) and the node's inventory is re-read, so peers
//! learn at once that this node can now serve the image to others.
//!
//! Order of a fetch: the registry (bounded in concurrency and time; a
//! permanent error such as *manifest unknown* or *unauthorized* is final
//! for a while, a transient one is retried with backoff); if that fails
//! and a peer holds the image, a copy over the mesh ([`transfer`]),
//! verified against the image id before `docker load` ([`verify`]). With
//! `Always` and a local copy, a registry that cannot be reached falls back
//! to that copy, as Swarm does, so an offline edge box keeps deploying.

pub mod failure;
pub mod progress;
mod pull;
pub mod transfer;
pub mod verify;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bollard::auth::DockerCredentials;
use futures::StreamExt;
use rand::seq::SliceRandom;
use skein_protocol::api::{EventKind, PullProgress};
use skein_protocol::image::{canonical, ImageRef, PullPolicy};
use tokio::sync::{watch, Semaphore};
use tracing::{info, warn};

use crate::events::{EventLog, NewEvent};
use crate::membership::Membership;
use crate::metrics::{ImagePullLabels, ImageSourceLabels, Metrics};
use crate::runtime::Runtime;
use crate::secrets::SecretBox;
use crate::state::{NodeId, StoredCredential};
use failure::PullFailure;
use progress::PullTracker;

/// Limits and timing of image fetches.
#[derive(Debug, Clone)]
pub struct ImagesConfig {
    /// Where copies from peers are written before they are verified and
    /// loaded (deleted right after).
    pub dir: PathBuf,
    /// Registry pulls and peer copies running at once on this node.
    pub max_fetches: usize,
    /// Copies this node serves to peers at once; more are told to ask
    /// another holder, which spreads the load over every node that has it.
    pub max_uploads: usize,
    /// A pull with no progress for this long is abandoned (and retried).
    pub stall: Duration,
    /// Bound on one whole registry pull.
    pub pull_timeout: Duration,
    /// With `Always`, a pull this recent counts as fresh: replicas started
    /// together share one pull.
    pub fresh_for: Duration,
    /// A permanent failure (unknown tag, unauthorized) is retried after
    /// this long, or at once when the credentials change.
    pub permanent_retry: Duration,
    /// Longest wait between retries of a transient failure.
    pub max_backoff: Duration,
    /// Test hook: the next N copies this node serves are corrupted.
    pub corrupt_uploads: u32,
}

impl ImagesConfig {
    /// Defaults, with copies written under `dir`.
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            max_fetches: 3,
            max_uploads: 2,
            stall: Duration::from_secs(120),
            pull_timeout: Duration::from_secs(30 * 60),
            fresh_for: Duration::from_secs(10),
            permanent_retry: Duration::from_secs(5 * 60),
            max_backoff: Duration::from_secs(60),
            corrupt_uploads: 0,
        }
    }
}

/// Transient failures shown as `pulling` (retrying) before the allocation
/// is shown as failed (retries go on).
const QUIET_ATTEMPTS: u32 = 3;
/// Holders tried in one attempt of a copy.
const MAX_HOLDERS_PER_ATTEMPT: usize = 4;

/// Whether an image can be used now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Availability {
    /// In the local Docker: create the container.
    Ready,
    /// Being fetched; `note` says why an earlier attempt failed.
    Fetching {
        /// How far.
        progress: PullProgress,
        /// The last transient error, while retrying.
        note: Option<String>,
    },
    /// Cannot be had (for now); the message says why and what to do.
    Failed(String),
}

#[derive(Debug, Clone)]
enum FetchState {
    Running(PullProgress),
    Done {
        at: Instant,
    },
    Failed {
        message: String,
        permanent: bool,
        retry_at: Instant,
    },
}

#[derive(Debug, Clone)]
struct Fetch {
    state: FetchState,
    attempts: u32,
    /// Fingerprint of the credential used: a new login retries at once.
    key: u64,
}

/// What one fetch is for.
#[derive(Debug, Clone)]
struct Want {
    /// Reference as the job names it (or the id, for pushes).
    image: String,
    /// Key of the fetch table.
    key: String,
    policy: PullPolicy,
    /// Known image id and extra holders (pushes).
    id: Option<String>,
    holders: Vec<NodeId>,
    /// Tags to give the image once loaded.
    tags: Vec<String>,
    present: bool,
}

/// The node's image fetcher; a cheap handle.
#[derive(Clone)]
pub struct Images {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) docker: Runtime,
    pub(crate) streams: libp2p_stream::Control,
    pub(crate) uploads: Arc<Semaphore>,
    pub(crate) corrupt_uploads: AtomicU32,
    node: NodeId,
    name: String,
    cfg: ImagesConfig,
    membership: Arc<Membership>,
    events: Arc<EventLog>,
    metrics: Arc<Metrics>,
    secrets: Arc<SecretBox>,
    fetches: Mutex<HashMap<String, Fetch>>,
    slots: Arc<Semaphore>,
    changed: watch::Sender<u64>,
}

/// The parts [`Images::new`] needs.
pub struct ImagesParts {
    /// The local container runtime.
    pub docker: Runtime,
    /// Mesh streams (copies to and from peers).
    pub streams: libp2p_stream::Control,
    /// This node (id, name).
    pub node: (NodeId, String),
    /// Who holds which image.
    pub membership: Arc<Membership>,
    /// Where fetch events go.
    pub events: Arc<EventLog>,
    /// Pull counters.
    pub metrics: Arc<Metrics>,
    /// Opens sealed registry passwords.
    pub secrets: Arc<SecretBox>,
}

impl Images {
    /// A fetcher; call [`Images::serve`] to also serve copies to peers.
    /// Copies left half-written by an earlier run are deleted.
    pub fn new(parts: ImagesParts, cfg: ImagesConfig) -> Self {
        if let Ok(entries) = std::fs::read_dir(&cfg.dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with("incoming-") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        Self {
            inner: Arc::new(Inner {
                docker: parts.docker,
                streams: parts.streams,
                uploads: Arc::new(Semaphore::new(cfg.max_uploads.max(1))),
                corrupt_uploads: AtomicU32::new(cfg.corrupt_uploads),
                node: parts.node.0,
                name: parts.node.1,
                slots: Arc::new(Semaphore::new(cfg.max_fetches.max(1))),
                cfg,
                membership: parts.membership,
                events: parts.events,
                metrics: parts.metrics,
                secrets: parts.secrets,
                fetches: Mutex::new(HashMap::new()),
                changed: watch::channel(0).0,
            }),
        }
    }

    /// Serves copies of local images to peers (runs until the mesh ends).
    pub async fn serve(&self) {
        transfer::serve(self.inner.clone()).await;
    }

    /// Ticks whenever a fetch ends (successfully or not).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.changed.subscribe()
    }

    /// Fetches in progress, for gossip and `image ls`.
    pub fn fetching(&self) -> Vec<PullProgress> {
        let map = self.inner.lock();
        let mut v: Vec<PullProgress> = map
            .values()
            .filter_map(|f| match &f.state {
                FetchState::Running(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        v.sort_by(|a, b| a.image.cmp(&b.image));
        v
    }

    /// Whether `image` can be used now under `policy`, starting a fetch in
    /// the background when it is missing (or stale, with `Always`).
    /// `credential` is the sealed login for the image's registry, if any.
    pub async fn ensure(
        &self,
        image: &str,
        policy: PullPolicy,
        credential: Option<&StoredCredential>,
    ) -> Availability {
        let present = self.present(image).await;
        match policy {
            PullPolicy::Never if present => return Availability::Ready,
            PullPolicy::Never => {
                return Availability::Failed(format!(
                    "image {image} is not on this node and its pull policy is never \
                     (load it here with docker load, or use pull: if-not-present)"
                ))
            }
            PullPolicy::IfNotPresent if present => {
                self.inner.lock().remove(&canonical(image));
                return Availability::Ready;
            }
            _ => {}
        }
        let want = Want {
            image: image.to_string(),
            key: canonical(image),
            policy,
            id: None,
            holders: Vec::new(),
            tags: vec![canonical(image)],
            present,
        };
        self.inner.clone().ensure(want, credential)
    }

    /// Starts copying image `id` (with `tags`) from `holders` or any other
    /// peer that has it; `false` when it is here already (then only the
    /// tags are added) or `id` is not an image id.
    pub async fn fetch_pushed(&self, id: &str, tags: Vec<String>, holders: Vec<NodeId>) -> bool {
        if !transfer::is_image_id(id) {
            warn!(id = %id, "ignoring a push of a malformed image id");
            return false;
        }
        if self.present(id).await {
            if let Err(e) = self.inner.tag(id, &tags).await {
                warn!(id = %transfer::short(id), error = %e, "cannot tag a pushed image");
            }
            return false;
        }
        let want = Want {
            image: id.to_string(),
            key: id.to_string(),
            policy: PullPolicy::IfNotPresent,
            id: Some(id.to_string()),
            holders,
            tags,
            present: false,
        };
        let _ = self.inner.clone().ensure(want, None);
        true
    }

    async fn present(&self, image: &str) -> bool {
        self.inner.docker.inspect_image(image).await.is_ok()
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Fetch>> {
        // The map holds plain data: a panic elsewhere cannot leave it torn.
        self.fetches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The decision of [`Images::ensure`], under the table's lock (a std
    /// lock: nothing is awaited while it is held).
    fn ensure(self: Arc<Self>, want: Want, credential: Option<&StoredCredential>) -> Availability {
        let key = credential_key(credential);
        let now = Instant::now();
        let mut map = self.lock();
        let attempts = match map.get(&want.key) {
            Some(f) => match &f.state {
                FetchState::Running(p) => {
                    return Availability::Fetching {
                        progress: p.clone(),
                        note: None,
                    }
                }
                FetchState::Done { at } => {
                    let fresh =
                        want.policy != PullPolicy::Always || at.elapsed() < self.cfg.fresh_for;
                    if want.present && fresh {
                        return Availability::Ready;
                    }
                    0
                }
                FetchState::Failed {
                    message,
                    permanent,
                    retry_at,
                } if f.key == key && now < *retry_at => {
                    if want.policy == PullPolicy::Always && want.present {
                        return Availability::Ready;
                    }
                    if *permanent || f.attempts >= QUIET_ATTEMPTS {
                        return Availability::Failed(message.clone());
                    }
                    return Availability::Fetching {
                        progress: PullProgress {
                            image: want.image.clone(),
                            source: "retry".into(),
                            attempt: f.attempts.saturating_add(1),
                            ..PullProgress::default()
                        },
                        note: Some(message.clone()),
                    };
                }
                FetchState::Failed { .. } if f.key == key => f.attempts,
                FetchState::Failed { .. } => 0,
            },
            None => 0,
        };
        let attempt = attempts.saturating_add(1);
        let progress = PullProgress {
            image: want.image.clone(),
            source: "queued".into(),
            attempt,
            ..PullProgress::default()
        };
        map.insert(
            want.key.clone(),
            Fetch {
                state: FetchState::Running(progress.clone()),
                attempts: attempt,
                key,
            },
        );
        drop(map);
        let creds = credential.and_then(|c| self.docker_credentials(c));
        tokio::spawn(self.clone().run(want, creds, key, attempt));
        Availability::Fetching {
            progress,
            note: None,
        }
    }

    fn docker_credentials(&self, c: &StoredCredential) -> Option<DockerCredentials> {
        match self.secrets.open(&c.sealed_password) {
            Ok(password) => Some(DockerCredentials {
                username: Some(c.username.clone()),
                password: Some(password),
                serveraddress: Some(c.server.clone()),
                ..DockerCredentials::default()
            }),
            Err(e) => {
                warn!(registry = %c.server, error = %e, "cannot use the stored registry credential");
                None
            }
        }
    }

    fn set_progress(&self, key: &str, p: PullProgress) {
        if let Some(f) = self.lock().get_mut(key) {
            if matches!(f.state, FetchState::Running(_)) {
                f.state = FetchState::Running(p);
            }
        }
    }

    fn report(&self, kind: EventKind, message: String) {
        self.events
            .emit(NewEvent::new(kind, message).node(self.name.clone()));
    }

    /// One attempt, in the background; records its outcome.
    async fn run(
        self: Arc<Self>,
        want: Want,
        creds: Option<DockerCredentials>,
        key: u64,
        attempt: u32,
    ) {
        let outcome = {
            let _slot = self.slots.clone().acquire_owned().await;
            self.acquire(&want, creds, attempt).await
        };
        let now = Instant::now();
        let state = match outcome {
            Ok(()) => FetchState::Done { at: now },
            Err(f) => {
                let permanent = matches!(f, PullFailure::Permanent(_));
                let wait = if permanent {
                    self.cfg.permanent_retry
                } else if want.policy == PullPolicy::Always && want.present {
                    self.cfg.fresh_for
                } else {
                    backoff(attempt, self.cfg.max_backoff)
                };
                let mut message = format!("cannot fetch image {}: {}", want.image, f.message());
                if permanent {
                    message.push_str(&format!(
                        " (next attempt in {} s, or at once after `skein registry login`)",
                        wait.as_secs()
                    ));
                } else if attempt >= QUIET_ATTEMPTS {
                    message.push_str(&format!(
                        " (attempt {attempt}; retrying in {} s)",
                        wait.as_secs()
                    ));
                }
                FetchState::Failed {
                    message,
                    permanent,
                    retry_at: now + wait,
                }
            }
        };
        if let Some(f) = self.lock().get_mut(&want.key) {
            if f.key == key {
                f.state = state;
            }
        }
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Registry first (unless it is a push), then peers.
    async fn acquire(
        &self,
        want: &Want,
        creds: Option<DockerCredentials>,
        attempt: u32,
    ) -> Result<(), PullFailure> {
        let mut failure = None;
        // A push names the image by id, which no registry serves: peers only.
        if want.id.is_none() {
            match self.pull_from_registry(want, creds, attempt).await {
                Ok(()) => return Ok(()),
                Err(f) => {
                    if want.policy == PullPolicy::Always && want.present {
                        info!(image = %want.image, error = %f.message(), "pull failed; running the local copy");
                        self.report(
                            EventKind::ImagePullFailed,
                            format!(
                                "pull of {} failed: {}; running the local copy",
                                want.image,
                                f.message()
                            ),
                        );
                        return Ok(());
                    }
                    failure = Some(f);
                }
            }
        }
        match self.copy_from_peers(want, attempt).await {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(why) => {
                let f = match failure {
                    Some(f) => PullFailure::Transient(format!(
                        "{}; copy from peers failed: {why}",
                        f.message()
                    )),
                    None => PullFailure::Transient(format!("copy from peers failed: {why}")),
                };
                self.report_failure(want, &f, "peer");
                return Err(f);
            }
        }
        let f = failure.unwrap_or_else(|| {
            PullFailure::Transient(format!(
                "no registry was tried and no peer holds {}",
                want.image
            ))
        });
        self.report_failure(want, &f, "registry");
        Err(f)
    }

    fn report_failure(&self, want: &Want, f: &PullFailure, source: &str) {
        warn!(image = %want.image, error = %f.message(), "image fetch failed");
        self.metrics
            .image_pulls
            .get_or_create(&ImagePullLabels {
                source: source.into(),
                result: "failed".into(),
            })
            .inc();
        self.report(
            EventKind::ImagePullFailed,
            format!("cannot fetch image {}: {}", want.image, f.message()),
        );
    }

    async fn pull_from_registry(
        &self,
        want: &Want,
        creds: Option<DockerCredentials>,
        attempt: u32,
    ) -> Result<(), PullFailure> {
        let image = ImageRef::parse(&want.image).map_err(PullFailure::Permanent)?;
        let source = format!("registry {}", image.registry);
        let tracker = PullTracker::new(&want.image, &source, attempt);
        self.set_progress(&want.key, tracker.progress());
        let started = Instant::now();
        info!(image = %want.image, registry = %image.registry, attempt, authenticated = creds.is_some(), "pulling image");
        let limits = pull::PullLimits {
            stall: self.cfg.stall,
            total: self.cfg.pull_timeout,
        };
        let bytes = pull::pull(&*self.docker, &image, creds, tracker, limits, |p| {
            self.set_progress(&want.key, p)
        })
        .await?;
        let secs = started.elapsed().as_secs_f64();
        self.count_success("registry", bytes, secs);
        info!(image = %want.image, bytes, secs, "image pulled");
        self.report(
            EventKind::ImagePulled,
            format!(
                "pulled {} from {}: {} in {secs:.1} s",
                want.image,
                image.registry,
                megabytes(bytes)
            ),
        );
        Ok(())
    }

    fn count_success(&self, source: &str, bytes: u64, secs: f64) {
        let m = &self.metrics;
        m.image_pulls
            .get_or_create(&ImagePullLabels {
                source: source.into(),
                result: "ok".into(),
            })
            .inc();
        let s = ImageSourceLabels {
            source: source.into(),
        };
        m.image_pull_bytes.get_or_create(&s).inc_by(bytes);
        m.image_pull_seconds.get_or_create(&s).observe(secs);
    }

    /// Copies the image from a peer that holds it. `Ok(false)`: no peer does.
    async fn copy_from_peers(&self, want: &Want, attempt: u32) -> Result<bool, String> {
        let nodes = self.membership.all().await;
        let holds = |n: &crate::membership::NodeRecord| -> Option<String> {
            match &want.id {
                Some(id) => n.has_image_id(id).then(|| id.clone()),
                None => n.image_id(&want.key).map(str::to_string),
            }
        };
        let mut by_id: HashMap<String, Vec<&crate::membership::NodeRecord>> = HashMap::new();
        for n in nodes.iter().filter(|n| {
            n.id != self.node
                && n.health != skein_protocol::api::NodeHealth::Dead
                && (holds(n).is_some() || want.holders.contains(&n.id))
        }) {
            let id = holds(n).or_else(|| want.id.clone()).unwrap_or_default();
            by_id.entry(id).or_default().push(n);
        }
        // The id most peers hold: a rebuilt tag on one box loses to the rest.
        let Some((id, mut holders)) = by_id
            .into_iter()
            .filter(|(id, _)| !id.is_empty())
            .max_by_key(|(id, v)| (v.len(), id.clone()))
        else {
            return Ok(false);
        };
        holders.shuffle(&mut rand::rng());
        let mut errors = Vec::new();
        let mut busy = 0;
        for holder in holders.iter().take(MAX_HOLDERS_PER_ATTEMPT) {
            let Ok(peer) = holder.peer_id.parse::<libp2p::PeerId>() else {
                continue;
            };
            let source = format!("node {}", holder.name);
            let base = PullProgress {
                image: want.image.clone(),
                source: source.clone(),
                attempt,
                ..PullProgress::default()
            };
            self.set_progress(&want.key, base.clone());
            let started = Instant::now();
            info!(image = %want.image, id = %transfer::short(&id), from = %holder.name, "copying image from a peer");
            let fetched = transfer::fetch(self, peer, &id, &self.cfg.dir, |done, total| {
                self.set_progress(
                    &want.key,
                    PullProgress {
                        bytes_done: done,
                        bytes_total: total,
                        ..base.clone()
                    },
                )
            })
            .await;
            let path = match fetched {
                Ok(p) => p,
                Err(transfer::CopyError::Busy) => {
                    busy += 1;
                    continue;
                }
                Err(e) => {
                    errors.push(format!("node {}: {e}", holder.name));
                    continue;
                }
            };
            let result = self.load_verified(&path, &id, want).await;
            let _ = tokio::fs::remove_file(&path).await;
            match result {
                Ok(bytes) => {
                    let secs = started.elapsed().as_secs_f64();
                    self.count_success("peer", bytes, secs);
                    info!(image = %want.image, from = %holder.name, bytes, secs, "image copied from a peer");
                    self.report(
                        EventKind::ImagePulled,
                        format!(
                            "copied {} ({}) from node {} over the mesh: {} in {secs:.1} s",
                            want.image,
                            transfer::short(&id),
                            holder.name,
                            megabytes(bytes)
                        ),
                    );
                    return Ok(true);
                }
                Err(e) => {
                    warn!(image = %want.image, from = %holder.name, error = %e, "image copy rejected");
                    self.report(
                        EventKind::ImagePullFailed,
                        format!(
                            "copy of {} from node {} rejected: {e}",
                            want.image, holder.name
                        ),
                    );
                    errors.push(format!("node {}: {e}", holder.name));
                }
            }
        }
        if errors.is_empty() && busy > 0 {
            return Err(format!("all {busy} peers holding it are busy; retrying"));
        }
        Err(errors.join("; "))
    }

    /// Verifies the archive against `id`, loads it and tags it; returns
    /// the archive's size.
    async fn load_verified(
        &self,
        path: &std::path::Path,
        id: &str,
        want: &Want,
    ) -> Result<u64, String> {
        let (p, wanted) = (path.to_path_buf(), id.to_string());
        let verified = tokio::task::spawn_blocking(move || verify::verify_archive(&p, &wanted))
            .await
            .map_err(|e| format!("verification did not finish: {e}"))?
            .map_err(|e| format!("verification failed: {e}"))?;
        let file = tokio::fs::File::open(path)
            .await
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let body = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
        self.docker
            .load_image(body.boxed())
            .await
            .map_err(|e| format!("docker load: {}", crate::executor::docker_message(&e)))?;
        match self.docker.inspect_image(id).await {
            Ok(i) if i.id.as_deref() == Some(id) => {}
            _ => return Err(format!("docker load did not produce image {id}")),
        }
        self.tag(id, &want.tags).await?;
        Ok(verified.bytes)
    }

    /// Gives image `id` each of `tags` (references with a tag; a digest
    /// cannot be given by tagging).
    async fn tag(&self, id: &str, tags: &[String]) -> Result<(), String> {
        for tag in tags {
            let Ok(r) = ImageRef::parse(tag) else {
                continue;
            };
            let Some(t) = &r.tag else { continue };
            if let Err(e) = self.docker.tag_image(id, &r.repository(), t).await {
                return Err(format!(
                    "cannot tag {id} as {tag}: {}",
                    crate::executor::docker_message(&e)
                ));
            }
        }
        Ok(())
    }
}

/// A stable fingerprint of a credential (or none), so that a new login
/// retries a failed pull at once.
fn credential_key(c: Option<&StoredCredential>) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    if let Some(c) = c {
        c.server.hash(&mut h);
        c.username.hash(&mut h);
        c.sealed_password.hash(&mut h);
    }
    h.finish()
}

/// Wait before retry `attempt` of a transient failure: 1, 2, 4 … s.
fn backoff(attempt: u32, max: Duration) -> Duration {
    Duration::from_secs(1u64 << attempt.saturating_sub(1).min(16)).min(max)
}

fn megabytes(bytes: u64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let mb = bytes as f64 / 1_000_000.0;
    format!("{mb:.1} MB")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let max = Duration::from_secs(60);
        assert_eq!(backoff(1, max), Duration::from_secs(1));
        assert_eq!(backoff(3, max), Duration::from_secs(4));
        assert_eq!(backoff(40, max), max);
    }

    #[test]
    fn a_new_credential_changes_the_key() {
        let c = StoredCredential {
            server: "r:5000".into(),
            username: "u".into(),
            sealed_password: vec![1, 2],
            updated_ms: 1,
        };
        let mut d = c.clone();
        d.sealed_password = vec![3];
        assert_ne!(credential_key(Some(&c)), credential_key(Some(&d)));
        assert_ne!(credential_key(Some(&c)), credential_key(None));
    }
}
