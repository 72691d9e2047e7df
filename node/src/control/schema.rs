//! The cluster's schema: the newest encoding every node reads.
//!
//! Each node gossips the schema of its build
//! ([`skein_protocol::codec::Schema::CURRENT`]). The leader raises the
//! cluster's schema (in Raft, [`crate::state::ClusterState::schema`]) to
//! the lowest one among the nodes that are not dead, never lowers it, and
//! never past its own. What a schema adds (a new variant of a command or a
//! request) is written only once the cluster's schema has it, so a
//! rolling upgrade never sends an old node something it cannot read. A
//! node whose build is older than the cluster's schema stops with a
//! message saying so (`crate::guard::watch_schema`): it could not read
//! what the others now write.

use skein_protocol::api::NodeHealth;
use skein_protocol::codec::Schema;
use tracing::warn;

use super::Control;
use crate::membership::Membership;
use crate::raft::StateHandle;

/// The cluster's schema as this node knows it: from its Raft state, or for
/// a worker from its assignments (the leader sends it), whichever is newer.
pub async fn of_cluster(state: &StateHandle, desired: &StateHandle) -> Schema {
    state
        .read(|s| s.schema)
        .await
        .max(desired.read(|s| s.schema).await)
}

/// The schema to raise the cluster's to, if any: the lowest schema of the
/// nodes not dead, when above `current` and not above this build's.
pub fn next(
    current: Schema,
    nodes: impl IntoIterator<Item = (NodeHealth, Schema)>,
) -> Option<Schema> {
    let lowest = nodes
        .into_iter()
        .filter(|(h, _)| *h != NodeHealth::Dead)
        .map(|(_, s)| s)
        .min()?;
    let target = lowest.min(Schema::CURRENT);
    (target > current && target.major == current.major).then_some(target)
}

/// On the leader: raises the cluster's schema when every node is there.
pub async fn raise(state: &StateHandle, membership: &Membership, control: &Control) {
    let current = state.read(|s| s.schema).await;
    // Never past this build's: once there, the node table (copied on every
    // call, once a second) need not be read.
    if current >= Schema::CURRENT {
        return;
    }
    let nodes = membership.all().await;
    let Some(to) = next(current, nodes.iter().map(|n| (n.health, n.schema))) else {
        return;
    };
    if let Err(e) = control.raise_schema(to).await {
        warn!(error = %e, %to, "cannot raise the cluster schema; will retry");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_0: Schema = Schema { major: 1, minor: 0 };
    const V1_1: Schema = Schema { major: 1, minor: 1 };

    #[test]
    fn raised_to_the_lowest_live_node_never_lowered_never_past_this_build() {
        use NodeHealth::*;
        let cur = Schema::CURRENT;
        assert_eq!(
            next(V1_0, [(Ready, cur), (Suspect, cur)]),
            (cur > V1_0).then_some(cur)
        );
        // One node still on 1.0: stays.
        assert_eq!(next(V1_0, [(Ready, cur), (Ready, V1_0)]), None);
        // A dead node does not hold the cluster back.
        assert_eq!(
            next(V1_0, [(Ready, cur), (Dead, V1_0)]),
            (cur > V1_0).then_some(cur)
        );
        // Never lowered by a newcomer of an older build.
        assert_eq!(next(V1_1, [(Ready, V1_0)]), None);
        // Never past this build.
        let far = Schema {
            major: cur.major,
            minor: cur.minor + 5,
        };
        assert_eq!(next(V1_0, [(Ready, far)]), (cur > V1_0).then_some(cur));
        // Never across a major.
        assert_eq!(
            next(V1_0, [(Ready, Schema { major: 2, minor: 0 })]),
            (cur > V1_0).then_some(cur)
        );
        assert_eq!(next(V1_0, []), None);
    }
}
