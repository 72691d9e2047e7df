//! The Skein agent: everything one node runs.
//!
//! Data flows one way: API request → validated spec → plan (leader,
//! [`control`]) → Raft log ([`raft`]) → [`state`] → assignments of each
//! node ([`assignments`]) → [`executor`] on the owning node → [`runtime`] (Docker).
//! Status flows back by gossip ([`membership::gossip`]). See
//! docs/ARCHITECTURE.md for the code map.

pub mod agent;
pub mod api;
pub mod assignments;
pub mod clock;
pub mod context;
pub mod control;
pub mod decoders;
pub mod dns;
pub mod events;
pub mod executor;
pub mod files;
pub mod guard;
pub mod images;
pub mod inbound;
pub mod membership;
pub mod mesh;
pub mod metrics;
pub mod migrate;
pub mod peers;
pub mod raft;
pub mod routing;
pub mod rpc;
pub mod runtime;
pub mod scheduler;
pub mod secrets;
pub mod services;
pub mod state;
pub mod supervise;
pub mod wire;
