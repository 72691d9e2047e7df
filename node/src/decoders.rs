//! Every decoder of bytes that come from outside the process (peers over
//! the mesh, or the disk), in one table, with seed inputs and a mutation
//! engine: the fuzzing harness. The unit test below runs a few thousand
//! mutated cases per decoder; `cargo run --release -p skein-bench -- fuzz`
//! runs a million each and checks, with a counting allocator, that no
//! decode allocates beyond its decoder's limit (docs/performance.md).
//!
//! A decoder here is exactly the code the node runs on those bytes
//! ([`rpc::decode_request`], the mesh's frame reader, the image-transfer
//! frame reader, [`codec::decode_stored`] of the Raft storage types, the
//! 0.1.0 migration's conversion, [`migrate::read_cluster_state`]), wrapped
//! as `fn(&[u8]) -> bool`: whether the input decoded. A decoder never
//! panics; a panic is a bug in it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{
    CommittedLeaderId, Entry, EntryPayload, LogId, Membership, SnapshotMeta, StoredMembership, Vote,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use redb::{ReadableDatabase, ReadableTable};
use serde::Serialize;
use skein_protocol::api::{
    AllocState, AllocStatus, ContainerUsage, Event, EventKind, PullProgress, StorageView,
};
use skein_protocol::codec::{self, Schema, MAX_MESSAGE_BYTES, MAX_STORED_BYTES};

use crate::images::transfer::{self, ImageOffer, ImageRequest};
use crate::migrate::{self, v0_1};
use crate::raft::log_store::{RAFT_LOG, RAFT_META};
use crate::raft::state_machine::{AppliedState, STATE_MACHINE};
use crate::raft::{RaftPeer, TypeConfig};
use crate::rpc::{self, ApiCall, ApiReply, Credential, PeerError, PeerReply, PeerRequest};
use crate::state::{ClusterState, Command, NodeId, RequestId, RequestKey};
use crate::wire::{Assignments, EndpointReport, ImageInfo, NodeStatus, RaftRole};

/// Where a decoder's bytes come from, which bounds what decoding them may
/// allocate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// From a peer: [`MAX_MESSAGE_BYTES`].
    Wire,
    /// From the node's own disk: [`MAX_STORED_BYTES`].
    Stored,
}

impl Limit {
    /// The limit in bytes.
    pub fn bytes(self) -> usize {
        match self {
            Limit::Wire => MAX_MESSAGE_BYTES,
            Limit::Stored => MAX_STORED_BYTES,
        }
    }

    /// `wire` or `stored`.
    pub fn name(self) -> &'static str {
        match self {
            Limit::Wire => "wire",
            Limit::Stored => "stored",
        }
    }
}

/// One decoder of outside bytes.
#[derive(Debug, Clone, Copy)]
pub struct Decoder {
    /// What it decodes (unique in [`DECODERS`]; the key of [`seeds`]).
    pub name: &'static str,
    /// Decodes `bytes`: whether they decoded (never panics).
    pub decode: fn(&[u8]) -> bool,
    /// What decoding may allocate at most.
    pub limit: Limit,
}

fn wire<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> bool {
    codec::decode::<T>(bytes).is_ok()
}

fn stored<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> bool {
    codec::decode_stored::<T>(bytes).is_ok()
}

/// The 0.1.0 migration of one value: bincode of the frozen type, then the
/// live type reads the re-encoding.
fn legacy<Old, New>(bytes: &[u8]) -> bool
where
    Old: serde::de::DeserializeOwned + Serialize,
    New: serde::de::DeserializeOwned,
{
    migrate::convert::<Old, New>("fuzz", bytes).is_ok()
}

/// A mesh request as `inbound` gets it: the frame reader, then the request.
fn mesh_frame(bytes: &[u8]) -> bool {
    let mut io = futures::io::Cursor::new(bytes);
    match futures::executor::block_on(crate::mesh::codec::read_frame(&mut io)) {
        Ok(body) => rpc::decode_request(&body).is_ok(),
        Err(_) => false,
    }
}

/// One image-transfer control frame (length, then the value), read the way
/// the fetcher and the holder read them.
fn image_frame<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> bool {
    let mut io = futures::io::Cursor::new(bytes);
    futures::executor::block_on(async {
        let len = transfer::read_len(&mut io).await?;
        transfer::read_frame::<T>(&mut io, len).await
    })
    .is_ok()
}

/// Every decoder of bytes from outside the process.
pub const DECODERS: &[Decoder] = &[
    Decoder {
        name: "rpc request (PeerRequest)",
        decode: |b| rpc::decode_request(b).is_ok(),
        limit: Limit::Wire,
    },
    Decoder {
        name: "rpc reply (PeerReply)",
        decode: wire::<PeerReply>,
        limit: Limit::Wire,
    },
    Decoder {
        name: "gossip status (NodeStatus)",
        decode: wire::<NodeStatus>,
        limit: Limit::Wire,
    },
    Decoder {
        name: "mesh frame (read_frame + request)",
        decode: mesh_frame,
        limit: Limit::Wire,
    },
    Decoder {
        name: "image request frame",
        decode: image_frame::<ImageRequest>,
        limit: Limit::Wire,
    },
    Decoder {
        name: "image offer frame",
        decode: image_frame::<ImageOffer>,
        limit: Limit::Wire,
    },
    Decoder {
        name: "image error frame",
        decode: image_frame::<String>,
        limit: Limit::Wire,
    },
    Decoder {
        name: "raft log entry (Entry)",
        decode: stored::<Entry<TypeConfig>>,
        limit: Limit::Stored,
    },
    Decoder {
        name: "raft vote (Vote)",
        decode: stored::<Vote<NodeId>>,
        limit: Limit::Stored,
    },
    Decoder {
        name: "raft committed (Option<LogId>)",
        decode: stored::<Option<LogId<NodeId>>>,
        limit: Limit::Stored,
    },
    Decoder {
        name: "raft last purged (LogId)",
        decode: stored::<LogId<NodeId>>,
        limit: Limit::Stored,
    },
    Decoder {
        name: "applied state / snapshot data (AppliedState)",
        decode: stored::<AppliedState>,
        limit: Limit::Stored,
    },
    Decoder {
        name: "snapshot meta ((u64, SnapshotMeta))",
        decode: stored::<(u64, SnapshotMeta<NodeId, RaftPeer>)>,
        limit: Limit::Stored,
    },
    Decoder {
        name: "saved assignments (read_cluster_state)",
        decode: |b| migrate::read_cluster_state(b).is_ok(),
        limit: Limit::Stored,
    },
    Decoder {
        name: "0.1.0 log entry",
        decode: legacy::<v0_1::Entry, Entry<TypeConfig>>,
        limit: Limit::Stored,
    },
    Decoder {
        name: "0.1.0 vote",
        decode: legacy::<v0_1::Vote, Vote<NodeId>>,
        limit: Limit::Stored,
    },
    Decoder {
        name: "0.1.0 committed",
        decode: legacy::<Option<v0_1::LogId>, Option<LogId<NodeId>>>,
        limit: Limit::Stored,
    },
    Decoder {
        name: "0.1.0 last purged",
        decode: legacy::<v0_1::LogId, LogId<NodeId>>,
        limit: Limit::Stored,
    },
    Decoder {
        name: "0.1.0 applied state",
        decode: legacy::<v0_1::AppliedState, AppliedState>,
        limit: Limit::Stored,
    },
    Decoder {
        name: "0.1.0 snapshot meta",
        decode: legacy::<(u64, v0_1::SnapshotMeta), (u64, SnapshotMeta<NodeId, RaftPeer>)>,
        limit: Limit::Stored,
    },
    Decoder {
        name: "0.1.0 cluster state",
        decode: legacy::<v0_1::ClusterState, ClusterState>,
        limit: Limit::Stored,
    },
];

/// The committed 0.1.0 data dir the seeds are read from.
pub const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/data-0.1.0");

/// Valid encodings of realistic values for every decoder of [`DECODERS`],
/// by name: the 0.1.0 fixture at `fixture` (its raw bincode, and the
/// same values re-encoded by the migration) and values built here (a
/// status with allocations, an AppendEntries with the fixture's entries,
/// assignments with its jobs, …). Each seed decodes.
///
/// # Errors
///
/// When the fixture cannot be copied, opened or migrated.
pub fn seeds(fixture: &Path) -> anyhow::Result<BTreeMap<&'static str, Vec<Vec<u8>>>> {
    let raw = read_fixture(fixture)?;
    let mut s: BTreeMap<&'static str, Vec<Vec<u8>>> = BTreeMap::new();
    let mut add = |name: &'static str, bytes: Vec<u8>| {
        debug_assert!(DECODERS.iter().any(|d| d.name == name), "{name}");
        s.entry(name).or_default().push(bytes);
    };
    let enc = |v: &dyn erased::Encode| v.encode();

    // 0.1.0 values as stored, and as the migration re-encodes them.
    let mut entries: Vec<Entry<TypeConfig>> = Vec::new();
    for bytes in &raw.log {
        let new = migrate::convert::<v0_1::Entry, Entry<TypeConfig>>("seed", bytes)?;
        entries.push(codec::decode_stored(&new)?);
        add("0.1.0 log entry", bytes.clone());
        add("raft log entry (Entry)", new);
    }
    let mut state = ClusterState::default();
    for (key, bytes) in &raw.meta {
        match key.as_str() {
            "vote" => {
                add("0.1.0 vote", bytes.clone());
                add(
                    "raft vote (Vote)",
                    migrate::convert::<v0_1::Vote, Vote<NodeId>>("seed", bytes)?,
                );
            }
            "committed" => {
                add("0.1.0 committed", bytes.clone());
                add(
                    "raft committed (Option<LogId>)",
                    migrate::convert::<Option<v0_1::LogId>, Option<LogId<NodeId>>>("seed", bytes)?,
                );
            }
            "last_purged" => {
                add("0.1.0 last purged", bytes.clone());
                add(
                    "raft last purged (LogId)",
                    migrate::convert::<v0_1::LogId, LogId<NodeId>>("seed", bytes)?,
                );
            }
            _ => {}
        }
    }
    for (key, bytes) in &raw.state_machine {
        match key.as_str() {
            "applied" | "snapshot_data" => {
                let new = migrate::convert::<v0_1::AppliedState, AppliedState>("seed", bytes)?;
                state = codec::decode_stored::<AppliedMirror>(&new)?.state;
                add("0.1.0 applied state", bytes.clone());
                add("applied state / snapshot data (AppliedState)", new);
            }
            "snapshot_meta" => {
                add("0.1.0 snapshot meta", bytes.clone());
                add(
                    "snapshot meta ((u64, SnapshotMeta))",
                    migrate::convert::<
                        (u64, v0_1::SnapshotMeta),
                        (u64, SnapshotMeta<NodeId, RaftPeer>),
                    >("seed", bytes)?,
                );
            }
            _ => {}
        }
    }
    add("0.1.0 cluster state", raw.assignments.clone());
    add("saved assignments (read_cluster_state)", raw.assignments);
    add("saved assignments (read_cluster_state)", enc(&state));
    if state.jobs.is_empty() || entries.is_empty() {
        anyhow::bail!(
            "the fixture at {} holds no jobs or no log",
            fixture.display()
        );
    }

    // Raft values by hand (what the fixture has none of).
    let log_id = |term, node, index| LogId::new(CommittedLeaderId::new(term, node), index);
    let peer = RaftPeer {
        name: "edge-2".into(),
        addr: "10.0.0.2:7420".into(),
        peer_id: "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN".into(),
        mesh_addrs: vec!["/ip4/10.0.0.2/tcp/7421".into()],
    };
    let three: BTreeMap<NodeId, RaftPeer> = (1..=3).map(|i| (i, peer.clone())).collect();
    let voters: BTreeSet<NodeId> = three.keys().copied().collect();
    let joint = Membership::new(vec![voters.clone(), BTreeSet::from([1, 2])], three.clone());
    let member_entry = Entry::<TypeConfig> {
        log_id: log_id(4, 1, 90),
        payload: EntryPayload::Membership(joint.clone()),
    };
    let command = |c: Command, index| Entry::<TypeConfig> {
        log_id: log_id(4, 1, index),
        payload: EntryPayload::Normal(c),
    };
    let request_id = RequestId([7; 16]);
    let hand_entries = vec![
        Entry::<TypeConfig> {
            log_id: log_id(4, 1, 89),
            payload: EntryPayload::Blank,
        },
        member_entry.clone(),
        command(
            Command::Request {
                key: RequestKey {
                    id: request_id,
                    seq: 1,
                },
                command: Box::new(Command::Restart {
                    allocs: state.allocs.keys().cloned().collect(),
                }),
            },
            91,
        ),
        command(
            Command::Drain {
                node: 2,
                drained: true,
            },
            92,
        ),
        command(Command::SetSchema(Schema::CURRENT), 93),
        command(
            Command::DeleteJob {
                job: "fixture-web".into(),
            },
            94,
        ),
        command(
            Command::Batch(vec![
                Command::Drain {
                    node: 3,
                    drained: false,
                },
                Command::Request {
                    key: RequestKey {
                        id: request_id,
                        seq: 2,
                    },
                    command: Box::new(Command::RegistryLogout {
                        server: "registry.test:5000".into(),
                    }),
                },
            ]),
            95,
        ),
    ];
    for e in &hand_entries {
        add("raft log entry (Entry)", enc(e));
    }
    add(
        "raft vote (Vote)",
        enc(&Vote::<NodeId>::new_committed(4, 1)),
    );
    add(
        "raft committed (Option<LogId>)",
        enc(&Some(log_id(4, 1, 94))),
    );
    add(
        "raft committed (Option<LogId>)",
        enc(&None::<LogId<NodeId>>),
    );
    add("raft last purged (LogId)", enc(&log_id(3, 2, 40)));
    let members = StoredMembership::new(Some(log_id(4, 1, 90)), joint);
    let applied = AppliedMirror {
        last_applied: Some(log_id(4, 1, 94)),
        membership: members.clone(),
        state: state.clone(),
    };
    let applied_bytes = enc(&applied);
    add(
        "applied state / snapshot data (AppliedState)",
        applied_bytes.clone(),
    );
    let meta = SnapshotMeta::<NodeId, RaftPeer> {
        last_log_id: Some(log_id(4, 1, 94)),
        last_membership: members,
        snapshot_id: "4-1-94-3".into(),
    };
    add(
        "snapshot meta ((u64, SnapshotMeta))",
        enc(&(3u64, meta.clone())),
    );

    // 0.1.0 values by hand.
    let old_log_id = v0_1::LogId {
        leader_id: v0_1::LeaderId {
            term: 2,
            node_id: 1,
        },
        index: 17,
    };
    let legacy_enc = |v: &dyn erased::Encode| v.encode_v0_1();
    add(
        "0.1.0 vote",
        legacy_enc(&v0_1::Vote {
            leader_id: old_log_id.leader_id.clone(),
            committed: true,
        }),
    );
    add("0.1.0 committed", legacy_enc(&Some(old_log_id.clone())));
    add("0.1.0 committed", legacy_enc(&None::<v0_1::LogId>));
    add("0.1.0 last purged", legacy_enc(&old_log_id));
    add(
        "0.1.0 snapshot meta",
        legacy_enc(&(
            2u64,
            v0_1::SnapshotMeta {
                last_log_id: Some(old_log_id.clone()),
                last_membership: v0_1::StoredMembership::default(),
                snapshot_id: "2-1-17-1".into(),
            },
        )),
    );

    // Peer requests.
    let vote = Vote::<NodeId>::new_committed(4, 1);
    let mut all_entries = entries.clone();
    all_entries.extend(hand_entries);
    let raft = |rpc| PeerRequest::Raft { from: 1, rpc };
    let requests = vec![
        raft(rpc::RaftRequest::Append(AppendEntriesRequest {
            vote,
            prev_log_id: Some(log_id(4, 1, 88)),
            entries: all_entries,
            leader_commit: Some(log_id(4, 1, 88)),
        })),
        raft(rpc::RaftRequest::Append(AppendEntriesRequest {
            vote,
            prev_log_id: None,
            entries: vec![],
            leader_commit: None,
        })),
        raft(rpc::RaftRequest::Vote(VoteRequest::new(
            Vote::new(5, 2),
            Some(log_id(4, 1, 94)),
        ))),
        raft(rpc::RaftRequest::Snapshot(InstallSnapshotRequest {
            vote,
            meta,
            offset: 0,
            data: applied_bytes,
            done: true,
        })),
        PeerRequest::Api(ApiCall {
            method: "POST".into(),
            path: "/v1/jobs/fixture-web/scale?dry_run=false".into(),
            body: br#"{"replicas":4}"#.to_vec(),
            credential: Credential::Bearer("skein_0123456789abcdef".into()),
            request_id: Some(request_id),
        }),
        PeerRequest::Api(ApiCall {
            method: "GET".into(),
            path: "/v1/allocs".into(),
            body: vec![],
            credential: Credential::OpenRead,
            request_id: None,
        }),
        PeerRequest::Assignments {
            node: 2,
            known_version: 41,
        },
        PeerRequest::FetchImage {
            id: format!("sha256:{}", "ab".repeat(32)),
            tags: vec!["skein-demo/web:latest".into()],
            from: 3,
        },
        PeerRequest::RegisterBootstrapToken {
            hash: [9; 32],
            node: "edge-1".into(),
        },
        PeerRequest::Events {
            after: 12,
            limit: 500,
        },
        PeerRequest::TakeLeadership { from: 7 },
    ];
    for r in &requests {
        let bytes = enc(r);
        let mut frame = u32::try_from(bytes.len())?.to_be_bytes().to_vec();
        frame.extend_from_slice(&bytes);
        add("mesh frame (read_frame + request)", frame);
        add("rpc request (PeerRequest)", bytes);
    }

    // Replies.
    let events: Vec<Event> = (0..8)
        .map(|seq| Event {
            origin: "edge-1".into(),
            seq,
            time_ms: 1_700_000_000_000 + seq,
            kind: if seq % 2 == 0 {
                EventKind::Started
            } else {
                EventKind::Exited
            },
            node: Some("edge-1".into()),
            job: Some("fixture-web".into()),
            alloc: Some(format!("fixture-web-{seq}-abcdef")),
            exit_code: (seq % 2 == 1).then_some(137),
            message: "container exited with code 137 (killed)".into(),
        })
        .collect();
    let assignments = Assignments {
        version: state.version,
        jobs: state.jobs.values().cloned().collect(),
        allocs: state.allocs.values().cloned().collect(),
        drained: BTreeSet::from([3]),
        registries: state.registries.to_map(),
        pull_secrets: state.pull_secrets.to_map(),
        tokens: state.tokens.to_map(),
        revoked_tokens: BTreeSet::from([[5; 32]]),
        schema: Schema::CURRENT,
    };
    let replies: Vec<PeerReply> = vec![
        Ok(rpc::PeerResponse::Raft(rpc::RaftResponse::Append(Ok(
            AppendEntriesResponse::Success,
        )))),
        Ok(rpc::PeerResponse::Raft(rpc::RaftResponse::Append(Ok(
            AppendEntriesResponse::PartialSuccess(Some(log_id(4, 1, 60))),
        )))),
        Ok(rpc::PeerResponse::Raft(rpc::RaftResponse::Vote(Ok(
            VoteResponse::new(Vote::new(5, 2), Some(log_id(4, 1, 94)), true),
        )))),
        Ok(rpc::PeerResponse::Raft(rpc::RaftResponse::Snapshot(Ok(
            InstallSnapshotResponse { vote },
        )))),
        Ok(rpc::PeerResponse::Api(ApiReply {
            status: 200,
            body: br#"{"name":"fixture-web","replicas":4,"version":2}"#.to_vec(),
        })),
        Ok(rpc::PeerResponse::Assignments(assignments)),
        Ok(rpc::PeerResponse::FetchImage(true)),
        Ok(rpc::PeerResponse::TokenRegistered(
            "bootstrap-edge-1".into(),
        )),
        Ok(rpc::PeerResponse::Events(events.clone())),
        Ok(rpc::PeerResponse::Electing),
        Err(PeerError::NotLeader { leader: Some(3) }),
        Err(PeerError::Unavailable {
            reason: "no quorum".into(),
        }),
        Err(PeerError::BadRequest {
            reason: "undecodable request of 3 bytes".into(),
        }),
    ];
    for r in &replies {
        add("rpc reply (PeerReply)", enc(r));
    }

    // Gossip.
    add(
        "gossip status (NodeStatus)",
        enc(&node_status(&state, events)),
    );
    let mut quiet = node_status(&state, vec![]);
    quiet.allocs.clear();
    *quiet.storage = StorageView {
        degraded: true,
        error: Some("No space left on device (os error 28)".into()),
        since_ms: Some(1_700_000_000_000),
    };
    add("gossip status (NodeStatus)", enc(&quiet));

    // Image-transfer frames.
    let frame = |v: &dyn erased::Encode| {
        let bytes = v.encode();
        let mut out = u32::try_from(bytes.len())
            .unwrap_or(0)
            .to_be_bytes()
            .to_vec();
        out.extend_from_slice(&bytes);
        out
    };
    add(
        "image request frame",
        frame(&ImageRequest {
            id: format!("sha256:{}", "0f".repeat(32)),
        }),
    );
    for offer in [
        ImageOffer::Sending { size: 52_315_986 },
        ImageOffer::Busy,
        ImageOffer::Missing,
    ] {
        add("image offer frame", frame(&offer));
    }
    add(
        "image error frame",
        frame(&"Error response from daemon: reference does not exist".to_string()),
    );

    for d in DECODERS {
        let Some(list) = s.get(d.name) else {
            anyhow::bail!("no seeds for decoder {:?}", d.name);
        };
        for (i, seed) in list.iter().enumerate() {
            if !(d.decode)(seed) {
                anyhow::bail!(
                    "seed {i} of {:?} does not decode: {}",
                    d.name,
                    hex::encode(seed)
                );
            }
        }
    }
    Ok(s)
}

/// Encodes with the live codec or 0.1.0's, behind one object-safe trait so
/// seeds of many types can share a closure.
mod erased {
    pub trait Encode {
        fn encode(&self) -> Vec<u8>;
        fn encode_v0_1(&self) -> Vec<u8>;
    }
    impl<T: serde::Serialize> Encode for T {
        fn encode(&self) -> Vec<u8> {
            skein_protocol::codec::encode(self).unwrap_or_default()
        }
        fn encode_v0_1(&self) -> Vec<u8> {
            skein_protocol::codec::encode_v0_1(self).unwrap_or_default()
        }
    }
}

/// The fields of [`AppliedState`] by name (encodings carry field names, so
/// this encodes and decodes exactly like it).
#[derive(Serialize, serde::Deserialize)]
struct AppliedMirror {
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, RaftPeer>,
    state: ClusterState,
}

/// A busy node's status: its share of `state`'s allocations, images,
/// endpoints, usage and `events`.
fn node_status(state: &ClusterState, events: Vec<Event>) -> NodeStatus {
    let allocs: Vec<(String, AllocStatus)> = state
        .allocs
        .keys()
        .enumerate()
        .map(|(i, id)| {
            (
                id.clone(),
                AllocStatus {
                    state: if i % 3 == 2 {
                        AllocState::Restarting
                    } else {
                        AllocState::Running
                    },
                    exit_code: (i % 3 == 2).then_some(1),
                    restarts: u32::try_from(i).unwrap_or(0),
                    container_id: Some(format!("{i:x}").repeat(64).chars().take(64).collect()),
                    message: Some("started".into()),
                    ready: i % 2 == 0,
                    pull: None,
                },
            )
        })
        .collect();
    NodeStatus {
        node_id: 0x2b3c_4d5e_6f70_8192,
        peer_id: "12D3KooWDpJ7As7BWAwRMfu1VU2WCqNjvq387JEYKDBj4kx6nXTN".into(),
        name: "edge-2".into(),
        api_addr: "10.0.0.2:7420".into(),
        mesh_addrs: vec![
            "/ip4/10.0.0.2/tcp/7421".into(),
            "/ip6/fd00::2/tcp/7421".into(),
        ],
        labels: BTreeMap::from([
            ("site".into(), "north".into()),
            ("gpu".into(), "none".into()),
        ]),
        capacity: Default::default(),
        port_range: (20000, 30000),
        publish_range: (30000, 32767),
        listeners: vec![
            (7420, "api".into()),
            (7421, "mesh".into()),
            (53, "dns".into()),
        ],
        images: vec![ImageInfo {
            id: format!("sha256:{}", "0f".repeat(32)),
            tags: vec!["skein-demo/web:latest".into(), "nginx:1.27".into()],
            size: 52_315_986,
        }],
        fetching: vec![PullProgress {
            image: "docker.io/library/redis:7".into(),
            source: "peer edge-1".into(),
            bytes_done: 10_000_000,
            bytes_total: 40_000_000,
            layers_done: 2,
            layers_total: 6,
            attempt: 1,
        }],
        allocated: Default::default(),
        allocation_count: u32::try_from(allocs.len()).unwrap_or(0),
        endpoints: allocs
            .iter()
            .map(|(id, _)| EndpointReport {
                service: "web".into(),
                job: "fixture-web".into(),
                alloc: id.clone(),
                ip: std::net::IpAddr::from([172, 17, 0, 3]),
                port: 28500,
                publish: Some(30080),
                balance: skein_protocol::spec::Balance::RoundRobin,
                ready: true,
            })
            .collect(),
        usage: allocs
            .iter()
            .map(|(id, _)| ContainerUsage {
                alloc: id.clone(),
                job: "fixture-web".into(),
                cpu_millis: 12,
                cpu_total_ns: 9_000_000_000,
                memory_bytes: 20 << 20,
                memory_limit_bytes: 128 << 20,
                net_rx_bytes: 1234,
                net_tx_bytes: 5678,
                sampled_at_ms: 1_700_000_000_000,
            })
            .collect(),
        allocs,
        events,
        raft: RaftRole {
            term: 4,
            leader: Some(1),
            voters: vec![1, 2, 3],
        },
        version: env!("CARGO_PKG_VERSION").into(),
        seq: 9001,
        storage: Box::default(),
        host_access: skein_protocol::spec::HostAccess {
            privileged: false,
            host_paths: vec!["/srv/data".into()],
        },
        schema: Schema::CURRENT,
    }
}

/// The raw rows of the 0.1.0 fixture.
struct RawFixture {
    log: Vec<Vec<u8>>,
    meta: Vec<(String, Vec<u8>)>,
    state_machine: Vec<(String, Vec<u8>)>,
    assignments: Vec<u8>,
}

/// Reads the fixture's raft database (a copy: opening may write) as it is,
/// without migrating it.
fn read_fixture(fixture: &Path) -> anyhow::Result<RawFixture> {
    let dir = std::env::temp_dir().join(format!(
        "skein-fuzz-seeds-{}-{:016x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir)?;
    let result = (|| -> anyhow::Result<RawFixture> {
        let copy = dir.join("raft.redb");
        std::fs::copy(fixture.join("raft.redb"), &copy)?;
        let db = redb::Database::open(&copy)?;
        let txn = db.begin_read()?;
        let log = txn
            .open_table(RAFT_LOG)?
            .iter()?
            .map(|row| row.map(|(_, v)| v.value().to_vec()))
            .collect::<Result<_, _>>()?;
        let rows = |t: redb::ReadOnlyTable<&str, &[u8]>| -> anyhow::Result<Vec<(String, Vec<u8>)>> {
            Ok(t.iter()?
                .map(|row| row.map(|(k, v)| (k.value().to_string(), v.value().to_vec())))
                .collect::<Result<_, _>>()?)
        };
        let meta = rows(txn.open_table(RAFT_META)?)?;
        let state_machine = rows(txn.open_table(STATE_MACHINE)?)?;
        let assignments = std::fs::read(fixture.join("assignments.bin"))?;
        Ok(RawFixture {
            log,
            meta,
            state_machine,
            assignments,
        })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// Interesting single bytes: boundaries, and MessagePack's and bincode's
/// markers (nil, bool, bin/str/array/map lengths, varint prefixes).
const INTERESTING: &[u8] = &[
    0x00, 0x01, 0x7f, 0x80, 0xff, 0xfe, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc2, 0xc3, 0xc4, 0xc5,
    0xc6, 0xcc, 0xcd, 0xce, 0xcf, 0xd0, 0xd3, 0xd9, 0xda, 0xdb, 0xdc, 0xdd, 0xde, 0xdf, 0xfb, 0xfc,
    0xfd,
];

/// MessagePack length markers with the width of their length.
const LENGTH_MARKERS: &[(u8, usize)] = &[
    (0xc4, 1), // bin8
    (0xc5, 2), // bin16
    (0xc6, 4), // bin32
    (0xd9, 1), // str8
    (0xda, 2), // str16
    (0xdb, 4), // str32
    (0xdc, 2), // array16
    (0xdd, 4), // array32
    (0xde, 2), // map16
    (0xdf, 4), // map32
];

/// The valid envelope header of the current schema.
const HEADER: [u8; 4] = [b'S', b'K', codec::MAJOR, codec::MINOR];

/// Largest input the engine builds (beyond its largest seed).
const MAX_EXTRA: usize = 64 * 1024;

/// Makes fuzz inputs for one decoder from its seeds: random bytes with and
/// without a valid `SK\x01\x00` header, and seeds with bit flips,
/// interesting bytes, huge MessagePack and bincode lengths, truncation,
/// insertion, deletion, chunk duplication, nesting bombs and splices of
/// two seeds (one to four of these stacked). Deterministic for a seed.
pub struct Mutator {
    rng: StdRng,
    seeds: Vec<Vec<u8>>,
    max_len: usize,
}

impl Mutator {
    /// An engine over `seeds` (may be empty: then random inputs only),
    /// reproducible from `seed`.
    pub fn new(seed: u64, seeds: Vec<Vec<u8>>) -> Self {
        let largest = seeds.iter().map(Vec::len).max().unwrap_or(0);
        Mutator {
            rng: StdRng::seed_from_u64(seed),
            seeds,
            max_len: largest + MAX_EXTRA,
        }
    }

    /// Writes the next input into `out` (cleared first).
    pub fn next_case(&mut self, out: &mut Vec<u8>) {
        out.clear();
        let pick = self.rng.random_range(0..16u8);
        if self.seeds.is_empty() || pick < 2 {
            self.random_bytes(out, pick == 1);
            return;
        }
        if pick == 2 {
            self.random_tokens(out);
            return;
        }
        let i = self.rng.random_range(0..self.seeds.len());
        out.extend_from_slice(&self.seeds[i]);
        let rounds = self.rng.random_range(1..=4);
        for _ in 0..rounds {
            self.mutate(out);
        }
        out.truncate(self.max_len);
    }

    fn random_len(&mut self) -> usize {
        match self.rng.random_range(0..8u8) {
            0 => self.rng.random_range(0..=4096),
            1..=3 => self.rng.random_range(0..=256),
            _ => self.rng.random_range(0..=32),
        }
    }

    /// Random bytes, with the header or without.
    fn random_bytes(&mut self, out: &mut Vec<u8>, header: bool) {
        if header {
            out.extend_from_slice(&HEADER);
        }
        let len = self.random_len();
        out.extend((0..len).map(|_| self.rng.random::<u8>()));
    }

    /// A header, then random MessagePack-like tokens: markers, lengths
    /// (often huge) and small payloads.
    fn random_tokens(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&HEADER);
        let n = self.rng.random_range(1..=32);
        for _ in 0..n {
            match self.rng.random_range(0..4u8) {
                0 => self.push_huge_length(out),
                1 => out.push(INTERESTING[self.rng.random_range(0..INTERESTING.len())]),
                2 => out.push(self.rng.random_range(0x80..=0xbf)), // fixmap/fixarray/fixstr
                _ => {
                    let k = self.rng.random_range(0..8);
                    out.extend((0..k).map(|_| self.rng.random::<u8>()));
                }
            }
        }
    }

    /// A MessagePack length marker with a huge (or boundary) length, or a
    /// bincode varint prefix with one.
    fn push_huge_length(&mut self, out: &mut Vec<u8>) {
        let big: u32 = match self.rng.random_range(0..6u8) {
            0 => u32::MAX,
            1 => 0x7fff_ffff,
            2 => u32::try_from(MAX_MESSAGE_BYTES).unwrap_or(u32::MAX),
            3 => u32::try_from(MAX_STORED_BYTES).unwrap_or(u32::MAX) - 1,
            4 => 0x0001_0000,
            _ => self.rng.random(),
        };
        if self.rng.random_range(0..5u8) == 0 {
            // bincode varint: 0xfb u16, 0xfc u32, 0xfd u64 (little endian).
            match self.rng.random_range(0..3u8) {
                0 => {
                    out.push(0xfb);
                    out.extend_from_slice(&(big as u16).to_le_bytes());
                }
                1 => {
                    out.push(0xfc);
                    out.extend_from_slice(&big.to_le_bytes());
                }
                _ => {
                    out.push(0xfd);
                    out.extend_from_slice(
                        &u64::from(big).wrapping_mul(0x1_0000_0001).to_le_bytes(),
                    );
                }
            }
            return;
        }
        let (marker, width) = LENGTH_MARKERS[self.rng.random_range(0..LENGTH_MARKERS.len())];
        out.push(marker);
        out.extend_from_slice(&big.to_be_bytes()[4 - width..]);
    }

    fn mutate(&mut self, out: &mut Vec<u8>) {
        let len = out.len();
        let at = |rng: &mut StdRng| rng.random_range(0..=len);
        match self.rng.random_range(0..10u8) {
            // Bit flips.
            0 if len > 0 => {
                for _ in 0..self.rng.random_range(1..=8) {
                    let i = self.rng.random_range(0..len);
                    out[i] ^= 1 << self.rng.random_range(0..8);
                }
            }
            // Interesting bytes in place.
            1 if len > 0 => {
                for _ in 0..self.rng.random_range(1..=4) {
                    let i = self.rng.random_range(0..len);
                    out[i] = INTERESTING[self.rng.random_range(0..INTERESTING.len())];
                }
            }
            // A huge length, inserted or written over.
            2 => {
                let mut token = Vec::new();
                self.push_huge_length(&mut token);
                let i = at(&mut self.rng);
                if self.rng.random() && i + token.len() <= len {
                    out[i..i + token.len()].copy_from_slice(&token);
                } else {
                    out.splice(i..i, token);
                }
            }
            // Truncation.
            3 => out.truncate(at(&mut self.rng)),
            // Random bytes inserted.
            4 => {
                let i = at(&mut self.rng);
                let k = self.rng.random_range(1..=16);
                let bytes: Vec<u8> = (0..k).map(|_| self.rng.random()).collect();
                out.splice(i..i, bytes);
            }
            // A chunk deleted.
            5 if len > 0 => {
                let i = self.rng.random_range(0..len);
                let k = self.rng.random_range(1..=(len - i).min(64));
                out.drain(i..i + k);
            }
            // A chunk duplicated (repeated a few times).
            6 if len > 0 => {
                let i = self.rng.random_range(0..len);
                let k = self.rng.random_range(1..=(len - i).min(256));
                let chunk = out[i..i + k].to_vec();
                let times = self.rng.random_range(1..=4);
                let to = at(&mut self.rng);
                out.splice(to..to, chunk.iter().copied().cycle().take(k * times));
            }
            // Splice with another seed: a prefix of this, a suffix of that.
            7 => {
                let other = &self.seeds[self.rng.random_range(0..self.seeds.len())];
                let from = self.rng.random_range(0..=other.len());
                out.truncate(at(&mut self.rng));
                out.extend_from_slice(&other[from..]);
            }
            // A nesting bomb: many one-element arrays or maps.
            8 => {
                let i = at(&mut self.rng);
                let k = self.rng.random_range(1..=200);
                let b = if self.rng.random() { 0x91 } else { 0x81 };
                out.splice(i..i, std::iter::repeat_n(b, k));
            }
            // The header made valid, or broken.
            _ => {
                if len >= HEADER.len() && self.rng.random() {
                    out[..HEADER.len()].copy_from_slice(&HEADER);
                } else if len >= HEADER.len() {
                    let i = self.rng.random_range(0..HEADER.len());
                    out[i] = self.rng.random();
                } else {
                    out.splice(0..0, HEADER);
                }
            }
        }
    }
}

/// `bytes` as hex, 32 bytes a line (at most the first 4 KiB, then the
/// length), for reports of a failing input.
pub fn hex_dump(bytes: &[u8]) -> String {
    let mut s = String::new();
    for line in bytes.chunks(32).take(128) {
        s.push_str(&hex::encode(line));
        s.push('\n');
    }
    if bytes.len() > 4096 {
        s.push_str(&format!("… ({} bytes in all)\n", bytes.len()));
    }
    s
}

/// Runs `decoder` on `bytes` under `catch_unwind`: whether it decoded, or
/// the panic's message.
pub fn run_one(decoder: &Decoder, bytes: &[u8]) -> Result<bool, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (decoder.decode)(bytes))).map_err(
        |p| {
            p.downcast_ref::<&str>()
                .map(|s| (*s).to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "(no message)".into())
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cases per decoder in the unit test (the bench runs a million).
    const CASES: usize = 2500;

    #[test]
    fn every_decoder_survives_mutated_inputs() {
        let seeds = seeds(Path::new(FIXTURE)).unwrap();
        let started = std::time::Instant::now();
        let mut buf = Vec::new();
        for (n, d) in DECODERS.iter().enumerate() {
            let mut m = Mutator::new(0x5eed ^ n as u64, seeds[d.name].clone());
            let mut ok = 0;
            for _ in 0..CASES {
                m.next_case(&mut buf);
                match run_one(d, &buf) {
                    Ok(decoded) => ok += usize::from(decoded),
                    Err(msg) => panic!(
                        "decoder {:?} panicked ({msg}) on {} bytes:\n{}",
                        d.name,
                        buf.len(),
                        hex_dump(&buf)
                    ),
                }
            }
            assert!(ok < CASES, "{}: every mutated input decoded", d.name);
        }
        eprintln!(
            "{} decoders × {CASES} cases in {:.2?}",
            DECODERS.len(),
            started.elapsed()
        );
    }

    #[test]
    fn names_are_unique_and_every_decoder_has_seeds() {
        let names: BTreeSet<_> = DECODERS.iter().map(|d| d.name).collect();
        assert_eq!(names.len(), DECODERS.len());
        let seeds = seeds(Path::new(FIXTURE)).unwrap();
        assert_eq!(seeds.len(), DECODERS.len());
    }

    #[test]
    fn the_engine_is_deterministic_and_varied() {
        let seeds = vec![codec::encode(&(1u64, "seed".to_string())).unwrap()];
        let cases = |s| {
            let mut m = Mutator::new(s, seeds.clone());
            let mut buf = Vec::new();
            (0..200)
                .map(|_| {
                    m.next_case(&mut buf);
                    buf.clone()
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(cases(1), cases(1));
        let distinct: BTreeSet<_> = cases(1).into_iter().collect();
        assert!(distinct.len() > 150, "{}", distinct.len());
        assert!(distinct.iter().any(|c| c.starts_with(&HEADER)));
        assert!(distinct.iter().any(|c| !c.starts_with(b"SK")));
    }
}
