//! Supervision of the node's long-running loops, so that a node is never
//! half-alive: a loop that ends or panics while the node runs is either
//! restarted with backoff ([`Supervisor::restart`]: loops that hold nothing
//! but cheap-clone handles and rebuild their state on start) or stops the
//! node through [`Fatal`] ([`Supervisor::essential`]: loops that own
//! something that cannot be re-created in place, such as the mesh event
//! receiver), with one log line naming the loop and the cause.
//!
//! Every loop runs behind a shutdown tripwire: [`Supervisor::shutdown`]
//! trips it, which cancels each loop at its next await point, and waits
//! for all of them (bounded), so that the caller knows nothing runs any
//! more. A loop that stops because of the tripwire is not reported.

use std::any::Any;
use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;
use tracing::warn;

use crate::guard::Fatal;

/// Delays between restarts of a loop that keeps failing.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Delay before the first restart.
    pub first: Duration,
    /// Longest delay; each failure doubles it up to this.
    pub max: Duration,
    /// A loop that ran this long before failing starts again at `first`:
    /// one crash a day must not wait as long as a crash loop.
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            first: Duration::from_millis(200),
            max: Duration::from_secs(10),
            reset_after: Duration::from_secs(60),
        }
    }
}

/// What to do when a loop ends or panics while the node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Policy {
    Restart,
    Essential,
    Once,
}

/// Owns the node's loops: spawns them, watches them, stops them.
#[derive(Debug)]
pub struct Supervisor {
    stop: watch::Sender<bool>,
    tasks: JoinSet<()>,
    fatal: Fatal,
    backoff: Backoff,
}

impl Supervisor {
    /// A supervisor that reports loops that cannot be restarted to `fatal`.
    pub fn new(fatal: Fatal) -> Self {
        Self::with_backoff(fatal, Backoff::default())
    }

    /// Same, with these restart delays.
    pub fn with_backoff(fatal: Fatal, backoff: Backoff) -> Self {
        Self {
            stop: watch::channel(false).0,
            tasks: JoinSet::new(),
            fatal,
            backoff,
        }
    }

    /// Runs the loop `make` builds, and builds and runs a fresh one (after
    /// a backoff) whenever it ends or panics. Only for loops whose inputs
    /// can be cloned again: everything `make` captures is shared with the
    /// next run.
    pub fn restart<F, Fut>(&mut self, name: impl Into<String>, make: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.spawn(name.into(), Policy::Restart, make);
    }

    /// Runs `fut` once; if it ends or panics while the node runs, the node
    /// stops with an error naming it (its service manager restarts it).
    pub fn essential<Fut>(&mut self, name: impl Into<String>, fut: Fut)
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut once = Some(fut);
        self.spawn(name.into(), Policy::Essential, move || {
            // Essential loops are never built twice (see `supervise`).
            let fut = once.take();
            async move {
                if let Some(f) = fut {
                    f.await;
                }
            }
        });
    }

    /// Runs `fut`, a best-effort task that ends by itself; a panic is
    /// logged and not retried (nothing depends on it).
    pub fn once<Fut>(&mut self, name: impl Into<String>, fut: Fut)
    where
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut once = Some(fut);
        self.spawn(name.into(), Policy::Once, move || {
            let fut = once.take();
            async move {
                if let Some(f) = fut {
                    f.await;
                }
            }
        });
    }

    fn spawn<F, Fut>(&mut self, name: String, policy: Policy, make: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let run = Run {
            name,
            policy,
            stop: self.stop.subscribe(),
            fatal: self.fatal.clone(),
            backoff: self.backoff,
        };
        self.tasks.spawn(run.supervise(make));
    }

    /// Trips the wire and waits up to `bound` for every loop to stop;
    /// whatever is left after that is aborted. Returns whether all loops
    /// stopped within the bound.
    pub async fn shutdown(mut self, bound: Duration) -> bool {
        self.stop.send_replace(true);
        let all = async { while self.tasks.join_next().await.is_some() {} };
        let in_time = tokio::time::timeout(bound, all).await.is_ok();
        if !in_time {
            warn!(left = self.tasks.len(), bound = ?bound, "loops still running at the shutdown bound: aborted");
        }
        self.tasks.shutdown().await;
        in_time
    }

    /// Waits up to `bound` for every task to end by itself (tests).
    #[cfg(test)]
    async fn shutdown_when_done(mut self, bound: Duration) -> bool {
        let all = async { while self.tasks.join_next().await.is_some() {} };
        tokio::time::timeout(bound, all).await.is_ok()
    }
}

/// One supervised loop.
struct Run {
    name: String,
    policy: Policy,
    stop: watch::Receiver<bool>,
    fatal: Fatal,
    backoff: Backoff,
}

impl Run {
    async fn supervise<F, Fut>(mut self, mut make: F)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let mut delay = self.backoff.first;
        loop {
            let started = Instant::now();
            // A set of one, not a bare handle: if this task is aborted, the
            // set aborts the loop too instead of leaking it.
            let mut one = JoinSet::new();
            one.spawn(make());
            let ended = tokio::select! {
                r = one.join_next() => r,
                _ = self.stop.wait_for(|s| *s) => return,
            };
            // Stopping anyway: a loop that ends now is no news.
            if *self.stop.borrow() || self.fatal.reason().is_some() {
                return;
            }
            let cause = match ended {
                Some(Ok(())) if self.policy == Policy::Once => return,
                Some(Ok(())) | None => "ended".to_string(),
                Some(Err(e)) => cause_of(e),
            };
            match self.policy {
                Policy::Once => {
                    warn!(task = %self.name, cause = %cause, "task stopped early; not retried");
                    return;
                }
                Policy::Essential => {
                    self.fatal.raise(format!(
                        "loop {} {cause}; it cannot be restarted in place, so the node stops \
                         (its service manager restarts it)",
                        self.name
                    ));
                    return;
                }
                Policy::Restart => {
                    if started.elapsed() >= self.backoff.reset_after {
                        delay = self.backoff.first;
                    }
                    warn!(task = %self.name, cause = %cause, retry_in = ?delay, "loop stopped unexpectedly: restarting it");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {},
                        _ = self.stop.wait_for(|s| *s) => return,
                    }
                    delay = (delay * 2).min(self.backoff.max);
                }
            }
        }
    }
}

fn cause_of(e: JoinError) -> String {
    if e.is_panic() {
        format!("panicked: {}", panic_message(e.into_panic().as_ref()))
    } else {
        "was cancelled".to_string()
    }
}

fn panic_message(p: &(dyn Any + Send)) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_string()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    use super::*;

    fn fast() -> Backoff {
        Backoff {
            first: Duration::from_millis(1),
            max: Duration::from_millis(4),
            reset_after: Duration::from_secs(60),
        }
    }

    async fn until(what: &str, mut f: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !f() {
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    #[tokio::test]
    async fn a_restartable_loop_that_panics_is_restarted() {
        let fatal = Fatal::new();
        let mut s = Supervisor::with_backoff(fatal.clone(), fast());
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        s.restart("flaky", move || {
            let r = r.clone();
            async move {
                if r.fetch_add(1, Ordering::SeqCst) < 3 {
                    panic!("boom");
                }
                std::future::pending::<()>().await;
            }
        });
        until("a fourth run", || runs.load(Ordering::SeqCst) >= 4).await;
        assert!(fatal.reason().is_none());
        assert!(s.shutdown(Duration::from_secs(1)).await);
    }

    #[tokio::test]
    async fn a_restartable_loop_that_ends_is_restarted() {
        let fatal = Fatal::new();
        let mut s = Supervisor::with_backoff(fatal.clone(), fast());
        let runs = Arc::new(AtomicUsize::new(0));
        let r = runs.clone();
        s.restart("short", move || {
            let r = r.clone();
            async move {
                r.fetch_add(1, Ordering::SeqCst);
            }
        });
        until("three runs", || runs.load(Ordering::SeqCst) >= 3).await;
        assert!(fatal.reason().is_none());
        assert!(s.shutdown(Duration::from_secs(1)).await);
    }

    #[tokio::test]
    async fn an_essential_loop_that_panics_stops_the_node_naming_it() {
        let fatal = Fatal::new();
        let mut s = Supervisor::new(fatal.clone());
        s.essential("inbound", async { panic!("receiver gone") });
        tokio::time::timeout(Duration::from_secs(5), fatal.raised())
            .await
            .expect("fatal raised");
        let why = fatal.reason().unwrap_or_default();
        assert!(
            why.contains("loop inbound panicked: receiver gone"),
            "{why}"
        );
        s.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn an_essential_loop_that_ends_stops_the_node_naming_it() {
        let fatal = Fatal::new();
        let mut s = Supervisor::new(fatal.clone());
        s.essential("inbound", async {});
        tokio::time::timeout(Duration::from_secs(5), fatal.raised())
            .await
            .expect("fatal raised");
        let why = fatal.reason().unwrap_or_default();
        assert!(why.contains("loop inbound ended"), "{why}");
        s.shutdown(Duration::from_secs(1)).await;
    }

    #[tokio::test]
    async fn a_task_run_once_may_end_or_panic_without_stopping_the_node() {
        let fatal = Fatal::new();
        let mut s = Supervisor::new(fatal.clone());
        let runs = Arc::new(AtomicUsize::new(0));
        let (r1, r2) = (runs.clone(), runs.clone());
        s.once("backfill", async move {
            r1.fetch_add(1, Ordering::SeqCst);
        });
        s.once("backfill 2", async move {
            r2.fetch_add(1, Ordering::SeqCst);
            panic!("peer gone");
        });
        // Both wrappers end by themselves: the bound is not reached.
        assert!(s.shutdown_when_done(Duration::from_secs(5)).await);
        assert_eq!(runs.load(Ordering::SeqCst), 2, "each ran once");
        assert!(fatal.reason().is_none());
    }

    #[tokio::test]
    async fn shutdown_stops_every_loop_and_reports_none() {
        struct Dropped(Arc<AtomicUsize>);
        impl Drop for Dropped {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let fatal = Fatal::new();
        let mut s = Supervisor::new(fatal.clone());
        let dropped = Arc::new(AtomicUsize::new(0));
        // Made outside the futures: a loop aborted before its first poll
        // must be counted too.
        let guard = Dropped(dropped.clone());
        s.essential("forever", async move {
            let _guard = guard;
            std::future::pending::<()>().await;
        });
        let d = dropped.clone();
        s.restart("forever too", move || {
            let guard = Dropped(d.clone());
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
            }
        });
        assert!(s.shutdown(Duration::from_secs(1)).await);
        assert_eq!(dropped.load(Ordering::SeqCst), 2, "both loops were dropped");
        assert!(fatal.reason().is_none(), "a stop on shutdown is no failure");
    }

    #[tokio::test]
    async fn the_backoff_grows_and_is_capped() {
        // Paused time: the sleeps between restarts are measured, not waited.
        tokio::time::pause();
        let fatal = Fatal::new();
        let backoff = Backoff {
            first: Duration::from_millis(100),
            max: Duration::from_millis(400),
            reset_after: Duration::from_secs(60),
        };
        let mut s = Supervisor::with_backoff(fatal, backoff);
        let starts = Arc::new(std::sync::Mutex::new(Vec::new()));
        let st = starts.clone();
        s.restart("crashy", move || {
            if let Ok(mut v) = st.lock() {
                v.push(Instant::now());
            }
            async {}
        });
        let count = || starts.lock().map(|v| v.len()).unwrap_or(0);
        while count() < 6 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let v = starts.lock().map(|v| v.clone()).unwrap_or_default();
        let gaps: Vec<u128> = v.windows(2).map(|w| (w[1] - w[0]).as_millis()).collect();
        // The timer wheel rounds up to the next millisecond.
        let want = [100, 200, 400, 400, 400];
        assert_eq!(gaps.len(), want.len(), "{gaps:?}");
        for (got, want) in gaps.iter().zip(want) {
            assert!((want..want + 5).contains(got), "{gaps:?}");
        }
        s.shutdown(Duration::from_secs(1)).await;
    }
}
