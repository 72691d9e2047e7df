//! The Skein agent: everything one node runs.
//!
//! Data flows one way: API request → validated spec → plan (leader,
//! [`control`]) → Raft log ([`raft`]) → [`state`] → [`executor`] on the
//! owning node → Docker. Status flows back through the executor's status
//! board. See docs/ARCHITECTURE.md for the code map.

pub mod agent;
pub mod api;
pub mod control;
pub mod executor;
pub mod membership;
pub mod mesh;
pub mod raft;
pub mod scheduler;
pub mod state;
