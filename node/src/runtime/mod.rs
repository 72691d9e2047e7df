//! The container runtime: everything the node asks of its container
//! engine, behind one trait, so that the executor, health checks, usage
//! sampling, inventory and image fetches run against Docker in production
//! ([`DockerRuntime`]) and against an in-memory engine in tests
//! ([`FakeRuntime`]), where a whole cluster runs in one process.
//!
//! The vocabulary is Docker's Engine API model (bollard's `models`): both
//! implementations speak it, the executor's container mapping already
//! produces it, and the fake fills only the fields the node reads. Errors
//! are this module's [`RuntimeError`], so that callers never match on one
//! engine client's error type.

pub mod docker;
pub mod fake;

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use bollard::auth::DockerCredentials;
use bollard::models::{
    ContainerCreateBody, ContainerInspectResponse, ContainerStatsResponse, ContainerSummary,
    CreateImageInfo, ImageInspect, ImageSummary,
};
use bytes::Bytes;
use futures::stream::BoxStream;

pub use docker::DockerRuntime;
pub use fake::FakeRuntime;

/// A failed runtime call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The engine answered with an error status (404: no such object, 409:
    /// conflict, 304: nothing to do); `message` is the engine's own.
    #[error("{message}")]
    Status {
        /// HTTP status of the answer.
        code: u16,
        /// The engine's message.
        message: String,
    },
    /// An error line within a stream the engine was sending (a pull, a load).
    #[error("{0}")]
    Stream(String),
    /// The engine could not be reached or answered nonsense.
    #[error("{0}")]
    Other(String),
}

impl RuntimeError {
    /// The object (container, image, exec) does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Status { code: 404, .. })
    }

    /// The name is taken (a leftover container with our name).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Status { code: 409, .. })
    }

    /// A "not found" error about `what`.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::Status {
            code: 404,
            message: format!("No such object: {what}"),
        }
    }
}

impl From<bollard::errors::Error> for RuntimeError {
    fn from(e: bollard::errors::Error) -> Self {
        match e {
            bollard::errors::Error::DockerResponseServerError {
                status_code,
                message,
            } => Self::Status {
                code: status_code,
                message,
            },
            bollard::errors::Error::DockerStreamError { error } => Self::Stream(error),
            other => Self::Other(other.to_string()),
        }
    }
}

/// Which containers a listing returns.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// `key=value` labels every returned container carries.
    pub labels: Vec<String>,
    /// Only running containers (else every state).
    pub running_only: bool,
}

/// What the engine says about the host (for the node's capacity).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EngineInfo {
    /// CPUs the engine may use.
    pub cpus: u64,
    /// Memory of the host, bytes.
    pub memory_bytes: u64,
}

/// The end of a command run in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecOutcome {
    /// Its exit code; `None` when the engine did not report one in time.
    pub exit_code: Option<i64>,
    /// Its stdout and stderr, interleaved, cut at the caller's bound.
    pub output: Vec<u8>,
}

/// Which part of a container's log to read.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    /// Keep the stream open for new lines.
    pub follow: bool,
    /// Only the last N lines.
    pub tail: Option<u32>,
    /// Only lines since this Unix time (seconds).
    pub since: Option<i32>,
    /// Prefix lines with the engine's timestamps.
    pub timestamps: bool,
}

/// The address plan of the engine's default bridge network, where this
/// node's containers live and ask its DNS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bridge {
    /// Gateway addresses (the host as its containers see it).
    pub gateways: Vec<IpAddr>,
    /// Subnets as `address/prefix` strings, as the engine reports them.
    pub subnets: Vec<String>,
}

/// Everything the node asks of a container engine.
///
/// Implementations must be cheap to share (`Arc<dyn ContainerRuntime>`)
/// and safe to call concurrently: the executor drives several allocations
/// at once.
#[async_trait::async_trait]
pub trait ContainerRuntime: Send + Sync + 'static {
    /// Whether the engine answers at all.
    async fn ping(&self) -> Result<(), RuntimeError>;
    /// The host's CPUs and memory as the engine sees them.
    async fn info(&self) -> Result<EngineInfo, RuntimeError>;
    /// The default bridge network's gateway and subnets; `None` when the
    /// runtime has no such network (its containers then get no resolver
    /// address of this node, and no DNS listener is opened there).
    async fn bridge(&self) -> Option<Bridge>;

    /// Containers matching `filter`.
    async fn list_containers(
        &self,
        filter: &ListFilter,
    ) -> Result<Vec<ContainerSummary>, RuntimeError>;
    /// One container in detail (state with exit code, network addresses,
    /// host config).
    async fn inspect_container(&self, id: &str) -> Result<ContainerInspectResponse, RuntimeError>;
    /// Creates container `name` (not started); returns its id. A taken
    /// name is a conflict ([`RuntimeError::is_conflict`]).
    async fn create_container(
        &self,
        name: &str,
        body: ContainerCreateBody,
    ) -> Result<String, RuntimeError>;
    /// Starts a created or exited container.
    async fn start_container(&self, id: &str) -> Result<(), RuntimeError>;
    /// SIGTERM, then SIGKILL after `grace`.
    async fn stop_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError>;
    /// Stops (with `grace`) and starts again, keeping the container.
    async fn restart_container(&self, id: &str, grace: Duration) -> Result<(), RuntimeError>;
    /// Removes a container whatever its state.
    async fn remove_container(&self, id: &str) -> Result<(), RuntimeError>;
    /// One item per death of a container carrying all of `labels`; ends
    /// (or yields an error) when the engine's event stream breaks.
    fn container_deaths(&self, labels: Vec<String>)
        -> BoxStream<'static, Result<(), RuntimeError>>;

    /// Runs `command` in container `id`, keeping at most `max_output` bytes
    /// of its output.
    async fn exec(
        &self,
        id: &str,
        command: &[String],
        max_output: usize,
    ) -> Result<ExecOutcome, RuntimeError>;
    /// One usage sample of container `id`.
    async fn stats_once(&self, id: &str) -> Result<ContainerStatsResponse, RuntimeError>;
    /// The log of container `name` (stdout and stderr interleaved).
    fn logs(&self, name: &str, opts: LogOptions)
        -> BoxStream<'static, Result<Bytes, RuntimeError>>;

    /// One local image by reference or id.
    async fn inspect_image(&self, image: &str) -> Result<ImageInspect, RuntimeError>;
    /// Every local image.
    async fn list_images(&self) -> Result<Vec<ImageSummary>, RuntimeError>;
    /// Pulls `repository:tag` (or `@digest`) from its registry: the
    /// engine's progress messages.
    fn pull_image(
        &self,
        repository: &str,
        tag: &str,
        credentials: Option<DockerCredentials>,
    ) -> BoxStream<'static, Result<CreateImageInfo, RuntimeError>>;
    /// Image `id` as a `docker save` archive.
    fn export_image(&self, id: &str) -> BoxStream<'static, Result<Bytes, RuntimeError>>;
    /// Loads a `docker save` archive.
    async fn load_image(
        &self,
        archive: BoxStream<'static, std::io::Result<Bytes>>,
    ) -> Result<(), RuntimeError>;
    /// Gives image `id` the name `repository:tag`.
    async fn tag_image(&self, id: &str, repository: &str, tag: &str) -> Result<(), RuntimeError>;
}

/// The value of label `key` on a listed container.
pub fn label<'a>(c: &'a ContainerSummary, key: &str) -> Option<&'a String> {
    c.labels.as_ref().and_then(|l| l.get(key))
}

/// `key=value` label filters from pairs.
pub fn label_filters(pairs: &[(&str, String)]) -> Vec<String> {
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Whether `labels` carry every `key=value` of `wanted`.
pub(crate) fn has_labels(labels: Option<&HashMap<String, String>>, wanted: &[String]) -> bool {
    wanted.iter().all(|w| {
        let (k, v) = w.split_once('=').unwrap_or((w.as_str(), ""));
        labels.and_then(|l| l.get(k)).is_some_and(|have| have == v)
    })
}

/// The runtime as the node's parts share it.
pub type Runtime = std::sync::Arc<dyn ContainerRuntime>;
