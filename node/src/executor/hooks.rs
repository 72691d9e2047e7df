//! Lifecycle hooks (Kubernetes `postStart` and `preStop`): a command run in
//! the container, or a pause, bounded in time.

use std::time::Duration;

use crate::runtime::ContainerRuntime;
use skein_protocol::spec::Hook;

/// Longest a postStart hook may run before the start counts as failed: the
/// executor waits for it before it moves on.
pub const POST_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `hook` in container `id`, giving up after `limit`; `Err` says why
/// it failed (exit code and output, or the time it took).
pub async fn run(
    docker: &dyn ContainerRuntime,
    id: &str,
    hook: &Hook,
    limit: Duration,
) -> Result<(), String> {
    match hook {
        Hook::Sleep { seconds } => {
            tokio::time::sleep(Duration::from_secs(u64::from(*seconds)).min(limit)).await;
            Ok(())
        }
        Hook::Exec { command } => {
            match tokio::time::timeout(limit, super::health::exec(docker, id, command)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(why)) => Err(format!("exec {}: {why}", command.join(" "))),
                Err(_) => Err(format!(
                    "exec {}: did not finish within {} s",
                    command.join(" "),
                    limit.as_secs()
                )),
            }
        }
    }
}
