//! Group commit: the leader's writes, committed many to one Raft entry.
//!
//! A write costs its log entry's fsync (on the leader and on a quorum of
//! voters), so committing writes one at a time caps the cluster at one
//! write per fsync round trip. Here every write is queued in the order it
//! was planned; one batch is in flight at a time, and while it commits the
//! next writes queue up. The next batch takes all of them as one
//! [`Command::Batch`] entry (one fsync), which the state machine applies
//! in order exactly as if they were consecutive entries.
//!
//! Callers plan against the state their write will meet: the applied
//! state plus what is queued or in flight ([`super::Control`] keeps that
//! projection). Should the projection ever be wrong (lost leadership, a
//! refused batch), the state machine refuses the stale plans it produced
//! and [`GroupCommit::take_invalid`] tells the planner to start again from
//! the applied state.
//!
//! No caller owns a batch: the one that finds the lane free proposes it in
//! a task of its own, so a caller that goes away (a client hung up) never
//! takes other callers' writes with it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use openraft::error::ClientWriteError;
use skein_protocol::codec::Schema;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};
use tracing::warn;

use super::ControlError;
use crate::raft::{SkeinRaft, StateHandle};
use crate::state::{Command, CommandResult};

/// The cluster schema from which writes are batched into one entry
/// (older voters cannot apply [`Command::Batch`]).
const BATCHES: Schema = Schema { major: 1, minor: 2 };

/// Most writes in one entry: bounds an entry's size and a batch's apply.
const MAX_BATCH: usize = 256;

/// What a queued write is answered with.
pub(crate) type Answer = Result<CommandResult, ControlError>;

struct Queued {
    cmd: Command,
    reply: oneshot::Sender<Answer>,
}

/// The leader's write queue and its one lane to Raft.
pub(crate) struct GroupCommit {
    raft: SkeinRaft,
    state: Arc<StateHandle>,
    queue: Mutex<Vec<Queued>>,
    /// One permit: held from taking a batch until its answers are sent.
    lane: Arc<Semaphore>,
    /// Writes queued or in flight (the projection is the applied state
    /// when there are none).
    outstanding: Arc<AtomicUsize>,
    /// Set when a batch failed or came back stale: the projection is off.
    invalid: Arc<AtomicBool>,
}

impl GroupCommit {
    /// A queue committing through `raft`; `state` tells the cluster schema.
    pub(crate) fn new(raft: SkeinRaft, state: Arc<StateHandle>) -> Self {
        Self {
            raft,
            state,
            queue: Mutex::new(Vec::new()),
            lane: Arc::new(Semaphore::new(1)),
            outstanding: Arc::new(AtomicUsize::new(0)),
            invalid: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Queues `cmd` behind every write queued before it. Call it in
    /// planning order (under the planner's lock); await the answer with
    /// [`GroupCommit::wait`] after releasing that lock.
    pub(crate) fn enqueue(&self, cmd: Command) -> oneshot::Receiver<Answer> {
        let (reply, rx) = oneshot::channel();
        self.outstanding.fetch_add(1, Ordering::AcqRel);
        lock(&self.queue).push(Queued { cmd, reply });
        rx
    }

    /// Writes queued or in flight.
    pub(crate) fn outstanding(&self) -> usize {
        self.outstanding.load(Ordering::Acquire)
    }

    /// Whether a write failed or was stale since the last call: the
    /// planner's projection must then be rebuilt from the applied state.
    pub(crate) fn take_invalid(&self) -> bool {
        self.invalid.swap(false, Ordering::AcqRel)
    }

    /// Waits for the answer to a queued write, proposing batches while
    /// the lane is free.
    pub(crate) async fn wait(&self, mut rx: oneshot::Receiver<Answer>) -> Answer {
        loop {
            tokio::select! {
                biased;
                answer = &mut rx => {
                    return answer.unwrap_or_else(|_| {
                        Err(ControlError::OutcomeUnknown("raft stopped during the write".into()))
                    });
                }
                permit = self.lane.clone().acquire_owned() => {
                    let Ok(permit) = permit else {
                        continue;
                    };
                    let batch: Vec<Queued> = {
                        let mut queue = lock(&self.queue);
                        let n = queue.len().min(MAX_BATCH);
                        queue.drain(..n).collect()
                    };
                    if batch.is_empty() {
                        // Ours is in flight or answered: wait for it.
                        drop(permit);
                        if let Ok(answer) = (&mut rx).await {
                            return answer;
                        }
                        return Err(ControlError::OutcomeUnknown(
                            "raft stopped during the write".into(),
                        ));
                    }
                    self.spawn_batch(batch, permit).await;
                }
            }
        }
    }

    /// Proposes `batch` and answers it from a task of its own.
    async fn spawn_batch(&self, batch: Vec<Queued>, permit: OwnedSemaphorePermit) {
        let raft = self.raft.clone();
        let one_entry = batch.len() > 1 && self.state.read(|s| s.schema).await >= BATCHES;
        let outstanding = self.outstanding.clone();
        let invalid = self.invalid.clone();
        tokio::spawn(async move {
            let (cmds, replies): (Vec<Command>, Vec<_>) =
                batch.into_iter().map(|q| (q.cmd, q.reply)).unzip();
            let count = cmds.len();
            let answers = if one_entry {
                match propose(&raft, Command::Batch(cmds)).await {
                    Ok(CommandResult::Batch(results)) if results.len() == count => {
                        results.into_iter().map(Ok).collect()
                    }
                    Ok(other) => {
                        warn!(result = ?other, count, "a batch of writes got an answer of another shape");
                        let why = "the batch's answer did not match it".to_string();
                        (0..count)
                            .map(|_| Err(ControlError::OutcomeUnknown(why.clone())))
                            .collect()
                    }
                    Err(e) => {
                        let shared = e.to_string();
                        std::iter::once(Err(e))
                            .chain((1..count).map(|_| Err(again(&shared))))
                            .collect()
                    }
                }
            } else {
                // One entry each, all proposed before any is awaited, so
                // they still share appends and replication rounds.
                let mut pending = Vec::with_capacity(count);
                for cmd in cmds {
                    pending.push(raft.client_write_ff(cmd).await);
                }
                let mut answers = Vec::with_capacity(count);
                for p in pending {
                    answers.push(match p {
                        Ok(rx) => receive(rx.await),
                        Err(fatal) => Err(ControlError::OutcomeUnknown(format!(
                            "raft stopped during the write: {fatal}"
                        ))),
                    });
                }
                answers
            };
            for (reply, answer) in replies.into_iter().zip(answers) {
                if !matches!(answer, Ok(CommandResult::Applied { .. })) {
                    invalid.store(true, Ordering::Release);
                }
                outstanding.fetch_sub(1, Ordering::AcqRel);
                // A caller that went away needs no answer.
                let _ = reply.send(answer);
            }
            drop(permit);
        });
    }
}

/// The same failure for the other writes of a batch that failed whole.
fn again(why: &str) -> ControlError {
    ControlError::OutcomeUnknown(format!("the batch holding this write failed: {why}"))
}

/// Proposes one entry and waits for its result.
async fn propose(raft: &SkeinRaft, cmd: Command) -> Answer {
    match raft.client_write_ff(cmd).await {
        Ok(rx) => receive(rx.await),
        Err(fatal) => Err(ControlError::OutcomeUnknown(format!(
            "raft stopped during the write: {fatal}"
        ))),
    }
}

type Received = Result<
    Result<
        openraft::raft::ClientWriteResponse<crate::raft::TypeConfig>,
        ClientWriteError<crate::state::NodeId, crate::raft::RaftPeer>,
    >,
    oneshot::error::RecvError,
>;

/// The typed answer to one proposed entry.
fn receive(received: Received) -> Answer {
    match received {
        Ok(Ok(resp)) => Ok(resp.data),
        Ok(Err(ClientWriteError::ForwardToLeader(f))) => Err(ControlError::NotLeader {
            leader: f.leader_id.zip(f.leader_node),
        }),
        Ok(Err(e)) => Err(ControlError::Unavailable(e.to_string())),
        Err(_) => Err(ControlError::OutcomeUnknown(
            "raft stopped during the write".into(),
        )),
    }
}

/// Locks a queue mutex; a panic while it was held left only whole
/// entries behind, so a poisoned lock is used as is.
fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
