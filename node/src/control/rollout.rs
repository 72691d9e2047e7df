//! Rolling updates, as pure functions the planner calls on every pass.
//!
//! A job's allocations are *current* (its version, on a node that is not
//! drained) or *outdated* (an older version, or on a drained node). Each
//! pass [`step`] removes outdated replicas and places current ones within
//! two bounds, Kubernetes' `RollingUpdate`: at most `replicas + max_surge`
//! allocations, and at least `replicas - max_unavailable` *available* ones
//! (running and ready, per the status board). A replica whose status is
//! not known yet counts as not available and is never removed for being
//! down, so a leader that just took over (empty board) does nothing rash.
//!
//! [`advance`] judges the rollout itself: complete once every replica is
//! current and ready; failed when a new replica crashes or no new replica
//! became ready for `progress_deadline_secs`. The planner then rolls back.

use std::collections::{BTreeSet, HashMap};

use skein_protocol::api::{AllocState, AllocStatus, RevisionView, RolloutState, RolloutView};
use skein_protocol::spec::UpdateStrategy;

use crate::state::{Allocation, ClusterState, Job, NodeId, Rollout};

/// Observed statuses, per node then allocation (the status board).
pub type Statuses = HashMap<NodeId, HashMap<String, AllocStatus>>;

/// What the planner knows about one replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// No status reported yet.
    Unknown,
    /// Running and ready: it serves.
    Available,
    /// Known not to serve: pending, not ready, or finished.
    Unavailable,
    /// Crashing or unable to start.
    Failing,
}

/// The health of `a` per the status board.
pub fn health_of(a: &Allocation, statuses: &Statuses) -> Health {
    health(statuses.get(&a.node).and_then(|m| m.get(&a.id)))
}

/// The health a status shows. A replica that finished (exit 0 under a
/// policy that does not restart it) did its job: it counts as available,
/// so updating a batch job neither stalls nor rolls back.
pub fn health(status: Option<&AllocStatus>) -> Health {
    match status {
        None => Health::Unknown,
        Some(s) => match s.state {
            AllocState::Running if s.ready => Health::Available,
            AllocState::Complete => Health::Available,
            AllocState::Failed | AllocState::Restarting => Health::Failing,
            _ => Health::Unavailable,
        },
    }
}

/// One replica as [`step`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Replica {
    /// Replica index.
    pub index: u32,
    /// Observed health.
    pub health: Health,
}

/// What one pass does: indexes of current replicas to place, and positions
/// (in the `outdated` slice given to [`step`]) of outdated ones to remove.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Step {
    /// Replica indexes to place, ascending.
    pub place: Vec<u32>,
    /// Positions in `outdated` to remove.
    pub remove: Vec<usize>,
}

/// Effective bounds of an update of `replicas`: (most allocations, fewest
/// available). With no surge at least one replica may be down, or nothing
/// could ever be replaced.
pub fn bounds(replicas: u32, strategy: &UpdateStrategy) -> (u64, u64) {
    let r = u64::from(replicas);
    let surge = u64::from(strategy.max_surge);
    let mut unavailable = u64::from(strategy.max_unavailable).min(r);
    if surge == 0 && unavailable == 0 {
        unavailable = 1;
    }
    (r + surge, r.saturating_sub(unavailable))
}

/// One pass of a rolling update of a job with `replicas` replicas.
///
/// `current` holds distinct indexes below `replicas`. Outdated replicas
/// known to be down go at once (they serve nothing); available ones go
/// while enough others stay available; new ones are placed while the total
/// stays within the surge. Removals come first, so one pass can swap a
/// replica.
pub fn step(
    replicas: u32,
    strategy: &UpdateStrategy,
    current: &[Replica],
    outdated: &[Replica],
) -> Step {
    let (max_total, min_available) = bounds(replicas, strategy);
    let mut remove: Vec<usize> = outdated
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o.health, Health::Unavailable | Health::Failing))
        .map(|(i, _)| i)
        .collect();
    let available = |rs: &[Replica]| rs.iter().filter(|r| r.health == Health::Available).count();
    let avail = (available(current) + available(outdated)) as u64;
    let mut budget = avail.saturating_sub(min_available);
    let mut up: Vec<usize> = outdated
        .iter()
        .enumerate()
        .filter(|(_, o)| o.health == Health::Available)
        .map(|(i, _)| i)
        .collect();
    // Highest indexes first, as a scale-down would.
    up.sort_by_key(|&i| std::cmp::Reverse(outdated[i].index));
    for i in up {
        if budget == 0 {
            break;
        }
        remove.push(i);
        budget -= 1;
    }
    remove.sort_unstable();
    let remaining = (current.len() + outdated.len() - remove.len()) as u64;
    let room = max_total.saturating_sub(remaining);
    let taken: BTreeSet<u32> = current.iter().map(|r| r.index).collect();
    let place = (0..replicas)
        .filter(|i| !taken.contains(i))
        .take(usize::try_from(room).unwrap_or(usize::MAX))
        .collect();
    Step { place, remove }
}

/// A current replica as [`advance`] sees it.
#[derive(Debug, Clone)]
pub struct Report<'a> {
    /// Allocation id.
    pub id: &'a str,
    /// Observed health.
    pub health: Health,
    /// Why it is failing, from its status.
    pub detail: Option<String>,
}

/// What [`advance`] concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing new.
    Unchanged,
    /// Progress was recorded.
    Progressed,
    /// Every replica is current and ready.
    Completed,
    /// The new version fails: roll back (or mark failed).
    Failing(String),
}

/// Judges `rollout` of a job with `replicas` replicas from its current
/// replicas and how many outdated allocations remain, at `now_ms`.
pub fn advance(
    rollout: &mut Rollout,
    replicas: u32,
    deadline_secs: u32,
    current: &[Report<'_>],
    outdated: usize,
    now_ms: u64,
) -> Outcome {
    if !matches!(
        rollout.state,
        RolloutState::Progressing | RolloutState::Failed
    ) {
        return Outcome::Unchanged;
    }
    let avail = current
        .iter()
        .filter(|r| r.health == Health::Available)
        .count();
    let avail = u32::try_from(avail).unwrap_or(u32::MAX);
    if outdated == 0 && current.len() == replicas as usize && avail == replicas {
        rollout.state = RolloutState::Complete;
        rollout.message = None;
        rollout.best_available = avail;
        rollout.progress_ms = now_ms;
        return Outcome::Completed;
    }
    if rollout.state == RolloutState::Progressing {
        if let Some(bad) = current.iter().find(|r| r.health == Health::Failing) {
            return Outcome::Failing(format!(
                "replica {} of version {} is failing: {}",
                bad.id,
                rollout.to_version,
                bad.detail.as_deref().unwrap_or("crashed")
            ));
        }
    }
    if avail > rollout.best_available {
        rollout.best_available = avail;
        rollout.progress_ms = now_ms;
        return Outcome::Progressed;
    }
    let deadline_ms = u64::from(deadline_secs) * 1000;
    if rollout.state == RolloutState::Progressing
        && now_ms.saturating_sub(rollout.progress_ms) > deadline_ms
    {
        return Outcome::Failing(format!(
            "no progress for {deadline_secs}s: {avail} of {replicas} replicas of version {} ready",
            rollout.to_version
        ));
    }
    Outcome::Unchanged
}

/// Why a failing status fails, for messages.
pub fn failure_detail(status: Option<&AllocStatus>) -> Option<String> {
    let s = status?;
    match (&s.message, s.exit_code) {
        (Some(m), _) => Some(format!("{}: {m}", s.state)),
        (None, Some(c)) => Some(format!("{}, exit code {c}", s.state)),
        (None, None) => Some(s.state.to_string()),
    }
}

/// The job's rollout as the API shows it, with progress counted from the
/// allocations and the status board.
pub fn view(job: &Job, state: &ClusterState, statuses: &Statuses) -> Option<RolloutView> {
    let r = job.rollout.as_ref()?;
    let mut updated = 0u32;
    let mut available = 0u32;
    let mut outdated = 0u32;
    for a in state.allocs_of(&job.spec.name) {
        if a.job_version == r.to_version && !state.drained.contains(&a.node) {
            updated += 1;
            if health_of(a, statuses) == Health::Available {
                available += 1;
            }
        } else {
            outdated += 1;
        }
    }
    Some(RolloutView {
        from_version: r.from_version,
        to_version: r.to_version,
        state: r.state,
        message: r.message.clone(),
        started_at_ms: r.started_ms,
        desired: if job.stopped { 0 } else { job.spec.replicas },
        updated,
        available,
        outdated,
    })
}

/// Every kept version of the job, oldest first, the current one last.
pub fn history(job: &Job) -> Vec<RevisionView> {
    let mut v: Vec<RevisionView> = job
        .history
        .iter()
        .map(|r| RevisionView {
            version: r.version,
            image: r.spec.image.clone(),
            created_at_ms: r.created_ms,
            current: false,
            rolled_back: r.rolled_back,
            spec: r.spec.clone(),
        })
        .collect();
    v.push(RevisionView {
        version: job.version,
        image: job.spec.image.clone(),
        created_at_ms: job.created_ms,
        current: true,
        rolled_back: false,
        spec: job.spec.clone(),
    });
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn strategy(max_surge: u32, max_unavailable: u32) -> UpdateStrategy {
        UpdateStrategy {
            max_surge,
            max_unavailable,
            progress_deadline_secs: 60,
        }
    }

    fn rep(index: u32, health: Health) -> Replica {
        Replica { index, health }
    }

    #[test]
    fn surge_one_unavailable_zero_swaps_one_at_a_time() {
        let s = strategy(1, 0);
        let old: Vec<Replica> = (0..3).map(|i| rep(i, Health::Available)).collect();
        // Nothing new yet: one surge replica, nobody leaves.
        let st = step(3, &s, &[], &old);
        assert_eq!(
            st,
            Step {
                place: vec![0],
                remove: vec![]
            }
        );
        // It is not ready: wait.
        let st = step(3, &s, &[rep(0, Health::Unavailable)], &old);
        assert_eq!(st, Step::default());
        // Ready: one old goes (the highest index) and the next new comes.
        let st = step(3, &s, &[rep(0, Health::Available)], &old);
        assert_eq!(
            st,
            Step {
                place: vec![1],
                remove: vec![2]
            }
        );
    }

    #[test]
    fn down_outdated_replicas_go_at_once_unknown_ones_stay() {
        let s = strategy(1, 0);
        let old = [
            rep(0, Health::Failing),
            rep(1, Health::Unknown),
            rep(2, Health::Unavailable),
        ];
        let st = step(3, &s, &[], &old);
        assert_eq!(st.remove, [0, 2]);
        // 1 left + 3 placed = 4 = 3 + 1.
        assert_eq!(st.place, [0, 1, 2]);
    }

    #[test]
    fn recreate_removes_everything_first() {
        let s = strategy(0, 3);
        let old: Vec<Replica> = (0..3).map(|i| rep(i, Health::Available)).collect();
        let st = step(3, &s, &[], &old);
        assert_eq!(st.remove, [0, 1, 2]);
        assert_eq!(st.place, [0, 1, 2]);
    }

    #[test]
    fn health_follows_the_status() {
        let st = |state, ready| AllocStatus {
            state,
            ready,
            ..AllocStatus::default()
        };
        assert_eq!(health(None), Health::Unknown);
        assert_eq!(
            health(Some(&st(AllocState::Running, true))),
            Health::Available
        );
        assert_eq!(
            health(Some(&st(AllocState::Running, false))),
            Health::Unavailable
        );
        assert_eq!(
            health(Some(&st(AllocState::Pending, false))),
            Health::Unavailable
        );
        assert_eq!(
            health(Some(&st(AllocState::Restarting, false))),
            Health::Failing
        );
        assert_eq!(
            health(Some(&st(AllocState::Failed, false))),
            Health::Failing
        );
        assert_eq!(
            health(Some(&st(AllocState::Complete, false))),
            Health::Available
        );
    }

    #[test]
    fn zero_surge_and_zero_unavailable_still_moves() {
        assert_eq!(bounds(3, &strategy(0, 0)), (3, 2));
        assert_eq!(bounds(2, &strategy(1, 9)), (3, 0));
    }

    #[test]
    fn a_new_job_is_placed_whole() {
        let st = step(4, &strategy(1, 0), &[], &[]);
        assert_eq!(st.place, [0, 1, 2, 3]);
    }

    fn rollout() -> Rollout {
        Rollout::start(Some(1), 2, Some(1), 1_000)
    }

    fn report(id: &str, health: Health) -> Report<'_> {
        Report {
            id,
            health,
            detail: Some("restarting, exit code 1".into()),
        }
    }

    #[test]
    fn crash_or_stall_fails_progress_and_completion_are_recorded() {
        let mut r = rollout();
        let ok = [report("a", Health::Available)];
        assert_eq!(advance(&mut r, 2, 60, &ok, 2, 2_000), Outcome::Progressed);
        assert_eq!((r.best_available, r.progress_ms), (1, 2_000));
        assert_eq!(advance(&mut r, 2, 60, &ok, 2, 3_000), Outcome::Unchanged);
        // Stalled past the deadline.
        match advance(&mut r, 2, 60, &ok, 2, 62_001) {
            Outcome::Failing(m) => assert!(m.contains("no progress for 60s"), "{m}"),
            other => panic!("{other:?}"),
        }
        // A crashing new replica fails at once.
        let mut r = rollout();
        let bad = [report("a", Health::Available), report("b", Health::Failing)];
        match advance(&mut r, 2, 60, &bad, 1, 1_500) {
            Outcome::Failing(m) => assert!(m.contains("replica b of version 2"), "{m}"),
            other => panic!("{other:?}"),
        }
        // All current and ready, nothing outdated: complete.
        let mut r = rollout();
        let done = [
            report("a", Health::Available),
            report("b", Health::Available),
        ];
        assert_eq!(advance(&mut r, 2, 60, &done, 1, 5_000), Outcome::Progressed);
        assert_eq!(advance(&mut r, 2, 60, &done, 0, 5_000), Outcome::Completed);
        assert_eq!(r.state, RolloutState::Complete);
        // Finished rollouts are left alone, even if a replica crashes later.
        assert_eq!(advance(&mut r, 2, 60, &bad, 0, 9_000), Outcome::Unchanged);
    }

    #[test]
    fn a_failed_rollout_can_still_complete_but_does_not_fail_twice() {
        let mut r = rollout();
        r.state = RolloutState::Failed;
        let bad = [report("b", Health::Failing)];
        assert_eq!(advance(&mut r, 1, 1, &bad, 0, 999_999), Outcome::Unchanged);
        let ok = [report("b", Health::Available)];
        assert_eq!(advance(&mut r, 1, 1, &ok, 0, 999_999), Outcome::Completed);
    }

    fn health_strategy() -> impl Strategy<Value = Health> {
        prop_oneof![
            Just(Health::Unknown),
            Just(Health::Available),
            Just(Health::Unavailable),
            Just(Health::Failing),
        ]
    }

    proptest! {
        /// Whatever the replicas show, one pass never exceeds the surge
        /// (unless it was already over) and never takes availability
        /// below the minimum (unless it was already below).
        #[test]
        fn a_step_keeps_both_bounds(
            replicas in 0u32..8,
            surge in 0u32..4,
            unavailable in 0u32..4,
            cur in proptest::collection::vec(health_strategy(), 0..8),
            old in proptest::collection::vec((0u32..8, health_strategy()), 0..10),
        ) {
            let s = strategy(surge, unavailable);
            let current: Vec<Replica> = cur
                .iter()
                .take(replicas as usize)
                .enumerate()
                .map(|(i, h)| rep(i as u32, *h))
                .collect();
            let outdated: Vec<Replica> = old.iter().map(|(i, h)| rep(*i, *h)).collect();
            let (max_total, min_avail) = bounds(replicas, &s);
            let st = step(replicas, &s, &current, &outdated);
            let before_total = (current.len() + outdated.len()) as u64;
            let after_total = before_total - st.remove.len() as u64 + st.place.len() as u64;
            prop_assert!(after_total <= max_total.max(before_total));
            let avail = |rs: &mut dyn Iterator<Item = &Replica>| {
                rs.filter(|r| r.health == Health::Available).count() as u64
            };
            let before_avail = avail(&mut current.iter().chain(&outdated));
            let removed: BTreeSet<usize> = st.remove.iter().copied().collect();
            prop_assert_eq!(removed.len(), st.remove.len());
            let kept = outdated.iter().enumerate().filter(|(i, _)| !removed.contains(i)).map(|(_, r)| r);
            let after_avail = avail(&mut current.iter().chain(kept));
            prop_assert!(after_avail >= min_avail.min(before_avail));
            // Unknown replicas are never removed.
            prop_assert!(st.remove.iter().all(|&i| outdated[i].health != Health::Unknown));
            // New replicas take free indexes below the replica count.
            let taken: BTreeSet<u32> = current.iter().map(|r| r.index).collect();
            prop_assert!(st.place.iter().all(|i| *i < replicas && !taken.contains(i)));
        }
    }
}
