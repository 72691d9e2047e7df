//! A stopping leader hands leadership over instead of going silent.
//!
//! Silence costs a leader lease plus an election timeout (openraft 0.9:
//! about 2 s with our timings) before a follower even stands. Instead the
//! leader picks a voter that holds its whole log and gossips schema 1.1
//! (it knows [`PeerRequest::TakeLeadership`]), asks it to stand at once,
//! and keeps answering Raft until that voter leads: once its own lease
//! (an election timeout since it was elected) is over, the leader grants
//! the higher term, and with it the candidate has a majority of three. A
//! younger leader refuses the first round, but seeing the higher term it
//! steps down, and then grants the next one: so the request is repeated
//! until a leader appears. The stopping node never stands itself (its
//! elections are off). openraft 0.9 has no transfer of its own (0.10 will).

use std::time::Duration;

use skein_protocol::codec::Schema;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::membership::Membership;
use crate::mesh::Mesh;
use crate::raft::SkeinRaft;
use crate::rpc::{self, PeerRequest, PeerResponse};
use crate::state::{node_id_str, NodeId};

/// The first schema whose nodes take over on request.
pub const TAKE_LEADERSHIP: Schema = Schema { major: 1, minor: 1 };

/// How long the handover may take in all (the shutdown bound is 4 s).
const BOUND: Duration = Duration::from_millis(1500);
/// How long one round (a request, then the election it starts) may take
/// before the request is repeated.
const ROUND: Duration = Duration::from_millis(300);

/// The voter to hand over to: not `me`, replicated up to `last_index`,
/// speaking at least [`TAKE_LEADERSHIP`]; the first such by id.
pub fn successor(
    me: NodeId,
    last_index: u64,
    matched: impl IntoIterator<Item = (NodeId, Option<u64>)>,
    schema_of: impl Fn(NodeId) -> Option<Schema>,
) -> Option<NodeId> {
    matched
        .into_iter()
        .filter(|(id, m)| *id != me && *m == Some(last_index))
        .map(|(id, _)| id)
        .find(|id| schema_of(*id).is_some_and(|s| s >= TAKE_LEADERSHIP))
}

/// On the leader: hands leadership to a caught-up voter and waits until it
/// leads (bounded). Returns the new leader, or `None` when no voter could
/// take over (then the others elect one after their timeouts, as before).
pub async fn hand_over(raft: &SkeinRaft, membership: &Membership, mesh: &Mesh) -> Option<NodeId> {
    let start = Instant::now();
    let deadline = start + BOUND;
    let me = raft.metrics().borrow().id;
    raft.runtime_config().elect(false);
    let records = membership.all().await;
    let schema_of = |id: NodeId| records.iter().find(|r| r.id == id).map(|r| r.schema);
    // Admitted writes are done: wait for a voter to have everything.
    let target = loop {
        let m = raft.metrics().borrow().clone();
        if m.current_leader != Some(me) {
            return None;
        }
        let last = m.last_log_index.unwrap_or(0);
        let voters: Vec<NodeId> = m.membership_config.membership().voter_ids().collect();
        let matched = voters.iter().map(|v| {
            let index = m
                .replication
                .as_ref()
                .and_then(|r| r.get(v).cloned().flatten())
                .map(|l| l.index);
            (*v, index)
        });
        if let Some(t) = successor(me, last, matched, schema_of) {
            break t;
        }
        if voters.len() < 2 || Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let peer = records
        .iter()
        .find(|r| r.id == target)
        .and_then(|r| r.peer_id.parse().ok())?;
    let ask = PeerRequest::TakeLeadership { from: me };
    let mut metrics = raft.metrics();
    let mut rounds = 0u32;
    while Instant::now() < deadline {
        rounds += 1;
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, rpc::call(mesh, peer, &ask)).await {
            Ok(Ok(PeerResponse::Electing)) => {}
            Ok(Ok(other)) => {
                warn!(to = %node_id_str(target), error = %rpc::unexpected("take-leadership", &other), "handover refused");
                return None;
            }
            Ok(Err(e)) => {
                warn!(to = %node_id_str(target), error = %e, "handover refused");
                return None;
            }
            Err(_) => break,
        }
        let round_end = (Instant::now() + ROUND).min(deadline);
        loop {
            let leader = metrics.borrow_and_update().current_leader;
            if leader.is_some_and(|l| l != me) {
                info!(
                    to = %node_id_str(target),
                    took_ms = start.elapsed().as_millis() as u64,
                    rounds,
                    "handed leadership over"
                );
                return leader;
            }
            let left = round_end.saturating_duration_since(Instant::now());
            if left.is_zero() || tokio::time::timeout(left, metrics.changed()).await.is_err() {
                break;
            }
        }
    }
    warn!(to = %node_id_str(target), rounds, "handover: no new leader in time");
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_a_caught_up_voter_that_knows_the_request() {
        let new = |_: NodeId| Some(TAKE_LEADERSHIP);
        let old = |_: NodeId| Some(Schema::FIRST);
        let m = [(1, Some(10)), (2, Some(9)), (3, Some(10))];
        assert_eq!(successor(1, 10, m, new), Some(3));
        assert_eq!(successor(1, 10, m, old), None, "1.0 nodes do not know it");
        assert_eq!(successor(1, 10, [(1, Some(10)), (2, None)], new), None);
        assert_eq!(successor(1, 10, [(1, Some(10))], new), None);
        let mixed = |id: NodeId| {
            Some(if id == 2 {
                TAKE_LEADERSHIP
            } else {
                Schema::FIRST
            })
        };
        assert_eq!(
            successor(1, 9, [(2, Some(9)), (3, Some(9))], mixed),
            Some(2)
        );
    }
}
