//! The executor's decisions, without I/O: which containers go, which one
//! an allocation keeps, and what to do with it given its restart history
//! and the time. The executor observes the runtime, asks these functions,
//! and applies their answer through the runtime; everything here is
//! deterministic, so restart policy, backoff, adoption and removal order
//! are unit-tested without a container engine.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use bollard::models::{ContainerSummary, ContainerSummaryStateEnum};
use skein_protocol::spec::RestartPolicy;

use super::container::{is_current, LABEL_ALLOC};
use crate::runtime::label;
use crate::state::Allocation;

/// Restart timing (a part of [`super::ExecutorConfig`]).
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// First restart delay; doubles per consecutive quick exit.
    pub base: Duration,
    /// Longest restart delay.
    pub max: Duration,
    /// A container that ran this long before exiting restarts without
    /// delay growth (its backoff is reset).
    pub reset_after: Duration,
}

impl Backoff {
    /// Restart delay after `exp` consecutive quick failures.
    pub fn delay(&self, exp: u32) -> Duration {
        self.base
            .saturating_mul(1u32.checked_shl(exp.min(16)).unwrap_or(u32::MAX))
            .min(self.max)
    }
}

/// What the executor remembers per allocation between passes: its restart
/// history.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Track {
    /// Restarts so far (after exits, liveness failures, replacements keep it).
    pub restarts: u32,
    /// Consecutive quick failures; drives the backoff.
    pub backoff_exp: u32,
    /// When an exited (or uncreatable) allocation may be retried.
    pub retry_at: Option<Instant>,
    /// Since when its container runs, as far as this executor saw.
    pub running_since: Option<Instant>,
    /// Its container's last exit code.
    pub last_exit: Option<i64>,
    /// Why the last create failed (shown while waiting to retry).
    pub message: Option<String>,
}

impl Track {
    /// A container was created and started (or an exited one started again).
    pub fn started(&mut self, now: Instant) {
        self.retry_at = None;
        self.message = None;
        self.running_since = Some(now);
    }

    /// An exited container was started again per its policy.
    pub fn restarted(&mut self, now: Instant) {
        self.restarts += 1;
        self.retry_at = None;
        self.running_since = Some(now);
    }

    /// A create (or restart) failed: try again after the backoff, which
    /// grows. Returns the delay.
    pub fn failed(&mut self, now: Instant, backoff: &Backoff) -> Duration {
        let delay = backoff.delay(self.backoff_exp);
        self.backoff_exp += 1;
        self.retry_at = Some(now + delay);
        delay
    }

    /// The container was replaced (job updated, restart requested): a fresh
    /// history but for the restart count.
    pub fn replaced(&mut self) {
        *self = Track {
            restarts: self.restarts,
            ..Track::default()
        };
    }
}

/// How one pass treats the containers it found.
#[derive(Debug, Default)]
pub struct Sorted {
    /// Containers of allocations no longer placed here. They go first: a
    /// replacement placed in the same plan may take over their host ports,
    /// and the runtime refuses a port that is still bound.
    pub unwanted: Vec<(String, ContainerSummary)>,
    /// Per wanted allocation id, the container it keeps (current and
    /// running first): the one adopted.
    pub kept: HashMap<String, ContainerSummary>,
    /// Further containers of one allocation (an interrupted create): they
    /// go last, after the kept ones were driven.
    pub duplicates: Vec<(String, ContainerSummary)>,
}

/// Sorts `found` containers by the allocation label against the wanted
/// allocations.
pub fn sort(wanted: &[&Allocation], found: Vec<ContainerSummary>) -> Sorted {
    let ids: HashSet<&str> = wanted.iter().map(|a| a.id.as_str()).collect();
    let mut by_alloc: HashMap<String, Vec<ContainerSummary>> = HashMap::new();
    for c in found {
        let alloc = label(&c, LABEL_ALLOC).cloned().unwrap_or_default();
        by_alloc.entry(alloc).or_default().push(c);
    }
    let mut out = Sorted::default();
    let mut unwanted: Vec<_> = by_alloc
        .keys()
        .filter(|id| !ids.contains(id.as_str()))
        .cloned()
        .collect();
    unwanted.sort();
    for alloc in unwanted {
        let cs = by_alloc.remove(&alloc).unwrap_or_default();
        out.unwanted
            .extend(cs.into_iter().map(|c| (alloc.clone(), c)));
    }
    for alloc in wanted {
        let mut cs = by_alloc.remove(&alloc.id).unwrap_or_default();
        cs.sort_by_key(|c| {
            let current = c.labels.as_ref().is_some_and(|l| is_current(l, alloc));
            (!current, !is_running(c))
        });
        let mut cs = cs.into_iter();
        if let Some(keep) = cs.next() {
            out.kept.insert(alloc.id.clone(), keep);
        }
        out.duplicates.extend(cs.map(|c| (alloc.id.clone(), c)));
    }
    out
}

fn is_running(c: &ContainerSummary) -> bool {
    c.state == Some(ContainerSummaryStateEnum::RUNNING)
}

/// What the container of an allocation is, as far as decisions go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// No container.
    None,
    /// A container of an older version or restart epoch.
    Outdated,
    /// Running (or paused, or restarting by the engine itself).
    Running,
    /// Created but never started (a crash between the two calls).
    Created,
    /// Exited with this code.
    Exited(i64),
    /// A state that needs nothing from us (removing, unknown).
    Other,
}

impl Seen {
    /// The kept container's kind; `exit_code` is its inspected exit code
    /// (asked only of exited containers).
    pub fn of(c: Option<&ContainerSummary>, alloc: &Allocation, exit_code: Option<i64>) -> Self {
        use ContainerSummaryStateEnum as S;
        let Some(c) = c else { return Seen::None };
        if !c.labels.as_ref().is_some_and(|l| is_current(l, alloc)) {
            return Seen::Outdated;
        }
        match c.state {
            Some(S::RUNNING | S::PAUSED | S::RESTARTING) => Seen::Running,
            Some(S::CREATED) => Seen::Created,
            Some(S::EXITED | S::DEAD) => Seen::Exited(exit_code.unwrap_or(-1)),
            _ => Seen::Other,
        }
    }
}

/// One step towards what the allocation should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Remove the outdated container, then decide again with none.
    Replace,
    /// Create and start a container (after the executor's own checks:
    /// host access, image present).
    Create,
    /// A create failed recently: wait until the backoff is over.
    WaitCreate,
    /// Running: keep (adopt) it.
    Keep,
    /// Start the created container.
    Start,
    /// Exited for good (the policy does not restart it); `first` when this
    /// pass saw the exit first (report it once).
    Finished {
        /// Its exit code.
        code: i64,
        /// Seen for the first time.
        first: bool,
    },
    /// Exited, seen for the first time: restart after `delay`.
    ScheduleRestart {
        /// Its exit code.
        code: i64,
        /// The backoff.
        delay: Duration,
    },
    /// Exited, waiting for its backoff.
    WaitRestart {
        /// Its exit code.
        code: i64,
    },
    /// Exited and its backoff is over: start it again.
    Restart {
        /// Its exit code.
        code: i64,
    },
    /// Nothing to do.
    Nothing,
}

/// Decides what to do with an allocation whose container is `seen`, under
/// `policy`, at `now`; updates its restart history `track` with what the
/// decision itself implies (exit codes, backoff resets and schedules).
/// The effects of applying the action are recorded by the caller
/// ([`Track::started`], [`Track::restarted`], [`Track::failed`]).
pub fn decide(
    track: &mut Track,
    seen: Seen,
    policy: RestartPolicy,
    now: Instant,
    backoff: &Backoff,
) -> Action {
    match seen {
        Seen::Outdated => Action::Replace,
        Seen::None if track.retry_at.is_some_and(|t| now < t) => Action::WaitCreate,
        Seen::None => Action::Create,
        Seen::Running => {
            // Adopted after an agent restart, or still running: a long run
            // forgives earlier quick exits.
            let since = *track.running_since.get_or_insert(now);
            if now.duration_since(since) >= backoff.reset_after {
                track.backoff_exp = 0;
            }
            track.retry_at = None;
            Action::Keep
        }
        Seen::Created => Action::Start,
        Seen::Exited(code) => {
            track.last_exit = Some(code);
            if !policy.should_restart(code) {
                let first = track.running_since.take().is_some();
                return Action::Finished { code, first };
            }
            match track.retry_at {
                None => {
                    if let Some(since) = track.running_since.take() {
                        if now.duration_since(since) >= backoff.reset_after {
                            track.backoff_exp = 0;
                        }
                    }
                    let delay = track.failed(now, backoff);
                    Action::ScheduleRestart { code, delay }
                }
                Some(at) if now < at => Action::WaitRestart { code },
                Some(_) => Action::Restart { code },
            }
        }
        Seen::Other => Action::Nothing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::executor::container::{LABEL_EPOCH, LABEL_VERSION};

    const B: Backoff = Backoff {
        base: Duration::from_secs(1),
        max: Duration::from_secs(8),
        reset_after: Duration::from_secs(30),
    };

    fn alloc(id: &str, version: u64, epoch: u64) -> Allocation {
        Allocation {
            id: id.into(),
            job: "web".into(),
            index: 0,
            job_version: version,
            node: 1,
            resources: Default::default(),
            ports: Vec::new(),
            restart_epoch: epoch,
        }
    }

    fn container(
        id: &str,
        alloc: &str,
        version: u64,
        state: ContainerSummaryStateEnum,
    ) -> ContainerSummary {
        ContainerSummary {
            id: Some(id.into()),
            labels: Some(HashMap::from([
                (LABEL_ALLOC.to_string(), alloc.to_string()),
                (LABEL_VERSION.to_string(), version.to_string()),
                (LABEL_EPOCH.to_string(), "0".to_string()),
            ])),
            state: Some(state),
            ..Default::default()
        }
    }

    fn ids(v: &[(String, ContainerSummary)]) -> Vec<&str> {
        v.iter().filter_map(|(_, c)| c.id.as_deref()).collect()
    }

    #[test]
    fn backoff_doubles_up_to_its_bound() {
        let d: Vec<u64> = (0..6).map(|e| B.delay(e).as_secs()).collect();
        assert_eq!(d, [1, 2, 4, 8, 8, 8]);
        assert_eq!(B.delay(u32::MAX), B.max);
    }

    #[test]
    fn always_restarts_after_a_growing_backoff() {
        let t0 = Instant::now();
        let mut t = Track::default();
        assert_eq!(
            decide(&mut t, Seen::Running, RestartPolicy::Always, t0, &B),
            Action::Keep
        );
        let now = t0 + Duration::from_secs(1);
        let a = decide(&mut t, Seen::Exited(1), RestartPolicy::Always, now, &B);
        assert_eq!(
            a,
            Action::ScheduleRestart {
                code: 1,
                delay: Duration::from_secs(1)
            }
        );
        assert_eq!(t.last_exit, Some(1));
        // Still inside the backoff: wait.
        let a = decide(&mut t, Seen::Exited(1), RestartPolicy::Always, now, &B);
        assert_eq!(a, Action::WaitRestart { code: 1 });
        let now = now + Duration::from_secs(1);
        let a = decide(&mut t, Seen::Exited(1), RestartPolicy::Always, now, &B);
        assert_eq!(a, Action::Restart { code: 1 });
        t.restarted(now);
        assert_eq!(t.restarts, 1);
        // A second quick exit waits twice as long.
        let now = now + Duration::from_secs(1);
        let a = decide(&mut t, Seen::Exited(0), RestartPolicy::Always, now, &B);
        assert_eq!(
            a,
            Action::ScheduleRestart {
                code: 0,
                delay: Duration::from_secs(2)
            }
        );
    }

    #[test]
    fn a_long_run_resets_the_backoff() {
        let t0 = Instant::now();
        let mut t = Track {
            backoff_exp: 3,
            running_since: Some(t0),
            ..Track::default()
        };
        let now = t0 + B.reset_after;
        let a = decide(&mut t, Seen::Exited(1), RestartPolicy::Always, now, &B);
        assert_eq!(
            a,
            Action::ScheduleRestart {
                code: 1,
                delay: B.base
            }
        );
        // The same reset happens while it runs, before any exit.
        let mut t = Track {
            backoff_exp: 3,
            running_since: Some(t0),
            ..Track::default()
        };
        assert_eq!(
            decide(&mut t, Seen::Running, RestartPolicy::Always, now, &B),
            Action::Keep
        );
        assert_eq!(t.backoff_exp, 0);
    }

    #[test]
    fn on_failure_restarts_only_failures_and_never_never() {
        let now = Instant::now();
        let running = || Track {
            running_since: Some(now),
            ..Track::default()
        };
        let mut t = running();
        let a = decide(&mut t, Seen::Exited(0), RestartPolicy::OnFailure, now, &B);
        assert_eq!(
            a,
            Action::Finished {
                code: 0,
                first: true
            }
        );
        // Reported once: the next pass finds it finished already.
        let a = decide(&mut t, Seen::Exited(0), RestartPolicy::OnFailure, now, &B);
        assert_eq!(
            a,
            Action::Finished {
                code: 0,
                first: false
            }
        );
        let mut t = running();
        let a = decide(&mut t, Seen::Exited(2), RestartPolicy::OnFailure, now, &B);
        assert!(
            matches!(a, Action::ScheduleRestart { code: 2, .. }),
            "{a:?}"
        );
        let mut t = running();
        let a = decide(&mut t, Seen::Exited(2), RestartPolicy::Never, now, &B);
        assert_eq!(
            a,
            Action::Finished {
                code: 2,
                first: true
            }
        );
    }

    #[test]
    fn a_failed_create_waits_for_its_backoff() {
        let now = Instant::now();
        let mut t = Track::default();
        assert_eq!(
            decide(&mut t, Seen::None, RestartPolicy::Always, now, &B),
            Action::Create
        );
        assert_eq!(t.failed(now, &B), Duration::from_secs(1));
        assert_eq!(
            decide(&mut t, Seen::None, RestartPolicy::Always, now, &B),
            Action::WaitCreate
        );
        let later = now + Duration::from_secs(1);
        assert_eq!(
            decide(&mut t, Seen::None, RestartPolicy::Always, later, &B),
            Action::Create
        );
        assert_eq!(t.failed(later, &B), Duration::from_secs(2));
        t.started(later);
        assert_eq!((t.retry_at, t.message.as_deref()), (None, None));
    }

    #[test]
    fn outdated_containers_are_replaced_keeping_the_restart_count() {
        let a = alloc("web-0", 2, 0);
        let old = container("c1", "web-0", 1, ContainerSummaryStateEnum::RUNNING);
        let seen = Seen::of(Some(&old), &a, None);
        assert_eq!(seen, Seen::Outdated);
        let mut t = Track {
            restarts: 3,
            backoff_exp: 2,
            ..Track::default()
        };
        assert_eq!(
            decide(&mut t, seen, RestartPolicy::Always, Instant::now(), &B),
            Action::Replace
        );
        t.replaced();
        assert_eq!(
            t,
            Track {
                restarts: 3,
                ..Track::default()
            }
        );
        // A bumped restart epoch is outdated too.
        let bumped = alloc("web-0", 1, 1);
        assert_eq!(Seen::of(Some(&old), &bumped, None), Seen::Outdated);
    }

    #[test]
    fn running_containers_are_adopted_without_duplicates() {
        // After an agent restart: an empty history, the container running.
        let a = alloc("web-0", 1, 0);
        let found = vec![
            container("stale", "web-0", 1, ContainerSummaryStateEnum::EXITED),
            container("live", "web-0", 1, ContainerSummaryStateEnum::RUNNING),
            container("old", "web-0", 0, ContainerSummaryStateEnum::RUNNING),
        ];
        let s = sort(&[&a], found);
        let kept = s.kept.get("web-0").and_then(|c| c.id.as_deref());
        assert_eq!(kept, Some("live"));
        assert_eq!(ids(&s.duplicates), ["stale", "old"]);
        assert!(s.unwanted.is_empty());
        let seen = Seen::of(s.kept.get("web-0"), &a, None);
        let mut t = Track::default();
        assert_eq!(
            decide(&mut t, seen, RestartPolicy::Always, Instant::now(), &B),
            Action::Keep
        );
        assert!(t.running_since.is_some());
    }

    #[test]
    fn containers_of_allocations_gone_from_here_are_removed() {
        let a = alloc("web-1", 1, 0);
        let found = vec![
            container("b", "web-9", 1, ContainerSummaryStateEnum::RUNNING),
            container("k", "web-1", 1, ContainerSummaryStateEnum::RUNNING),
            container("a", "web-0", 1, ContainerSummaryStateEnum::EXITED),
        ];
        let s = sort(&[&a], found);
        assert_eq!(ids(&s.unwanted), ["a", "b"]);
        assert_eq!(s.kept.len(), 1);
        assert!(s.duplicates.is_empty());
    }

    #[test]
    fn created_containers_are_started_and_exits_read_their_code() {
        let a = alloc("web-0", 1, 0);
        let c = container("c", "web-0", 1, ContainerSummaryStateEnum::CREATED);
        assert_eq!(Seen::of(Some(&c), &a, None), Seen::Created);
        let c = container("c", "web-0", 1, ContainerSummaryStateEnum::DEAD);
        assert_eq!(Seen::of(Some(&c), &a, Some(137)), Seen::Exited(137));
        assert_eq!(Seen::of(None, &a, None), Seen::None);
    }
}
