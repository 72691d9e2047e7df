//! One registry pull through the Engine API (`POST /images/create`), with
//! progress, a stall bound and an overall bound.

use std::time::Duration;

use bollard::auth::DockerCredentials;
use futures::StreamExt;
use skein_protocol::api::PullProgress;
use skein_protocol::image::ImageRef;

use super::failure::{classify, PullFailure};
use super::progress::PullTracker;
use crate::runtime::ContainerRuntime;

/// Limits of one pull.
#[derive(Debug, Clone, Copy)]
pub struct PullLimits {
    /// No progress message for this long: the pull is abandoned (transient).
    pub stall: Duration,
    /// The whole pull may take at most this long.
    pub total: Duration,
}

/// Pulls `image`, reporting progress through `report`; returns the bytes
/// downloaded (the sum of the layer sizes Docker announced).
pub async fn pull(
    docker: &dyn ContainerRuntime,
    image: &ImageRef,
    credentials: Option<DockerCredentials>,
    mut tracker: PullTracker,
    limits: PullLimits,
    mut report: impl FnMut(PullProgress),
) -> Result<u64, PullFailure> {
    let mut stream = docker.pull_image(&image.repository(), &image.tag_or_digest(), credentials);
    let deadline = tokio::time::Instant::now() + limits.total;
    loop {
        let next = tokio::time::timeout(limits.stall, stream.next());
        let item = match tokio::time::timeout_at(deadline, next).await {
            Err(_) => {
                return Err(PullFailure::Transient(format!(
                    "the pull took longer than {} s",
                    limits.total.as_secs()
                )))
            }
            Ok(Err(_)) => {
                return Err(PullFailure::Transient(format!(
                    "no progress from the registry for {} s",
                    limits.stall.as_secs()
                )))
            }
            Ok(Ok(item)) => item,
        };
        match item {
            None => break,
            Some(Ok(info)) => {
                tracker.observe(&info);
                report(tracker.progress());
            }
            Some(Err(e)) => return Err(classify(&e)),
        }
    }
    Ok(tracker.progress().bytes_total.max(tracker.size_hint()))
}
