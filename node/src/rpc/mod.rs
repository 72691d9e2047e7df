//! Typed peer RPC: the one request enum nodes send each other over the
//! mesh, its answers and its errors.
//!
//! The mesh carries bytes ([`crate::mesh`]); this module gives them
//! meaning. A caller builds a [`PeerRequest`] and calls [`call`], which
//! encodes it in the caller's task, and gets back a [`PeerResponse`] or a
//! [`CallError`]: either the transport failed ([`MeshError`]) or the peer
//! answered with a typed [`PeerError`]. The receiver (`crate::inbound`)
//! decodes with [`decode_request`] in its per-request task and answers
//! with [`encode_reply`]: bytes that do not decode (garbage, or a variant
//! from a newer node) get [`PeerError::BadRequest`] or
//! [`PeerError::Unsupported`], never a dropped stream or a panic.
//!
//! Retry is decided by the error's type ([`PeerError::is_retryable`],
//! [`CallError::is_retryable`]), never by an HTTP status. Forwarded writes
//! carry a request id ([`ApiCall::request_id`]) that the state machine
//! deduplicates by, so resending one after a transport error is safe.
//!
//! Everything goes through [`skein_protocol::codec`]; the wire answer is
//! [`PeerReply`] = `Result<PeerResponse, PeerError>`.

#[cfg(test)]
mod tests;

use libp2p::PeerId;
use openraft::error::{InstallSnapshotError, RaftError};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::{Deserialize, Serialize};
use skein_protocol::api::Event;
use skein_protocol::codec::{decode, encode, MAX_MESSAGE_BYTES};

use crate::mesh::{Mesh, MeshError};
use crate::raft::TypeConfig;
use crate::state::{node_id_str, NodeId, RequestId, TokenHash};
use crate::wire::Assignments;

/// A request to one peer. New variants go last, so that older ones keep
/// their encoding (an older node answers a newer variant with
/// [`PeerError::Unsupported`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum PeerRequest {
    /// A Raft RPC between members.
    Raft {
        /// Sender's node id; members refuse RPCs from non-members.
        from: NodeId,
        /// The RPC.
        rpc: RaftRequest,
    },
    /// An HTTP API call entered at another node: a write forwarded to the
    /// leader (with its request id), a read forwarded to the leader, or a
    /// logs read of a container on this node.
    Api(ApiCall),
    /// Long-poll for the allocations placed on `node`: answered once the
    /// state version exceeds `known_version` (or after a timeout). Leader
    /// only.
    Assignments {
        /// The asking node.
        node: NodeId,
        /// State version the asker already has.
        known_version: u64,
    },
    /// `skein image push`: copy image `id` from `from` (or any other peer
    /// holding it) and tag it with `tags`.
    FetchImage {
        /// Image id.
        id: String,
        /// Tags to give it.
        tags: Vec<String>,
        /// The node that has it (the pusher).
        from: NodeId,
    },
    /// To the leader: store the hash of the sender's `--api-token-file`
    /// token as an admin token, so that every node honours it. Trusted
    /// because only holders of the cluster key reach the mesh.
    RegisterBootstrapToken {
        /// SHA-256 of the token.
        hash: TokenHash,
        /// Name of the sending node (shown as the token's source).
        node: String,
    },
    /// The newest `limit` events of the peer's journal with an index above
    /// `after` (a starting node copies history). Trusted like the above.
    Events {
        /// Journal cursor (0: from the start).
        after: u64,
        /// Most events wanted (the peer caps it at its page size).
        limit: u32,
    },
    /// From a leader that is stopping, to the voter it picked (one with
    /// its whole log): start an election now. The stopping leader votes
    /// for it, so the cluster has a leader again within a round trip or
    /// two instead of a leader lease plus an election timeout. Schema 1.1;
    /// only sent to a node gossiping it.
    TakeLeadership {
        /// The stopping leader; honoured only while it is our leader.
        from: NodeId,
    },
}

impl PeerRequest {
    /// What the request is, for logs and errors (no payload).
    pub fn kind(&self) -> &'static str {
        match self {
            PeerRequest::Raft { .. } => "raft",
            PeerRequest::Api(_) => "api",
            PeerRequest::Assignments { .. } => "assignments",
            PeerRequest::FetchImage { .. } => "fetch-image",
            PeerRequest::RegisterBootstrapToken { .. } => "register-bootstrap-token",
            PeerRequest::Events { .. } => "events",
            PeerRequest::TakeLeadership { .. } => "take-leadership",
        }
    }
}

/// The successful answer to a [`PeerRequest`], one variant per request.
#[derive(Debug, Serialize, Deserialize)]
pub enum PeerResponse {
    /// Answer to [`PeerRequest::Raft`].
    Raft(RaftResponse),
    /// Answer to [`PeerRequest::Api`]: the HTTP answer (any status that is
    /// not a retryable refusal, which comes as a [`PeerError`] instead).
    Api(ApiReply),
    /// Answer to [`PeerRequest::Assignments`].
    Assignments(Assignments),
    /// Answer to [`PeerRequest::FetchImage`]: `true` = the copy started,
    /// `false` = the node has the image already.
    FetchImage(bool),
    /// Answer to [`PeerRequest::RegisterBootstrapToken`]: the name the
    /// token is stored under.
    TokenRegistered(String),
    /// Answer to [`PeerRequest::Events`], oldest first.
    Events(Vec<Event>),
    /// Answer to [`PeerRequest::TakeLeadership`]: the election started.
    Electing,
}

/// What goes back on the wire.
pub type PeerReply = Result<PeerResponse, PeerError>;

/// Why a peer did not serve a request. `NotLeader` and `Unavailable` are
/// retryable (with the next leader, after a pause); the others are final.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum PeerError {
    /// The request needs the leader and this node is not (any more).
    #[error("not the raft leader{}", .leader.map(|l| format!(" (the leader is {})", node_id_str(l))).unwrap_or_default())]
    NotLeader {
        /// The leader it knows, if any.
        leader: Option<NodeId>,
    },
    /// A Raft RPC from a node outside this node's Raft group.
    #[error("{} is not a member of this raft group", node_id_str(*.node))]
    NotMember {
        /// The sender.
        node: NodeId,
    },
    /// The peer cannot serve it now (no quorum, storage failing, shutting
    /// down, tokens not known yet); nothing was applied, retry shortly.
    #[error("unavailable: {reason}")]
    Unavailable {
        /// Why.
        reason: String,
    },
    /// The request is of a kind this node does not know (a newer node's).
    #[error("unsupported request: {what}")]
    Unsupported {
        /// What was not understood.
        what: String,
    },
    /// The request's bytes or contents are malformed.
    #[error("bad request: {reason}")]
    BadRequest {
        /// What is wrong.
        reason: String,
    },
    /// The peer understood and declined it (a final answer).
    #[error("refused: {reason}")]
    Refused {
        /// Why.
        reason: String,
    },
}

impl PeerError {
    /// Whether asking again (the next leader, after a pause) may succeed,
    /// with nothing applied by this attempt.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            PeerError::NotLeader { .. } | PeerError::Unavailable { .. }
        )
    }
}

/// Raft RPCs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RaftRequest {
    /// Log replication and heartbeats.
    Append(AppendEntriesRequest<TypeConfig>),
    /// Elections.
    Vote(VoteRequest<NodeId>),
    /// Snapshot transfer (chunked).
    Snapshot(InstallSnapshotRequest<TypeConfig>),
}

/// Raft RPC results with openraft's own typed errors, which the caller's
/// network hands back to openraft as remote errors.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftResponse {
    /// Result of [`RaftRequest::Append`].
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    /// Result of [`RaftRequest::Vote`].
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    /// Result of [`RaftRequest::Snapshot`].
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
}

/// An HTTP request entered at another node, with the caller's credential:
/// the node that serves it checks that credential exactly as it checks a
/// direct call (`crate::api::auth`), whatever the forwarding node thought.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiCall {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Body bytes.
    pub body: Vec<u8>,
    /// Who the call acts for.
    pub credential: Credential,
    /// The id the entry node gave the call, the same on every retry: the
    /// writes it causes are applied once (`crate::state::requests`).
    pub request_id: Option<RequestId>,
}

/// Who a forwarded API call acts for.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Credential {
    /// The caller sent no token.
    #[default]
    Anonymous,
    /// The caller's bearer token, as it sent it (the mesh is encrypted).
    Bearer(String),
    /// An anonymous read that the node it entered lets through
    /// (`--open-reads` is that node's choice); never grants a write.
    OpenRead,
}

/// Never prints a token.
impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Anonymous => f.write_str("Anonymous"),
            Credential::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            Credential::OpenRead => f.write_str("OpenRead"),
        }
    }
}

/// An HTTP response, returned verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiReply {
    /// HTTP status code.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// Why [`call`] failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The request could not be sent or its answer not received; the peer
    /// may or may not have acted on it.
    #[error("{0}")]
    Transport(#[from] MeshError),
    /// The peer answered with a refusal.
    #[error("{0}")]
    Peer(#[from] PeerError),
    /// The request could not be encoded (a local bug or an oversized
    /// value); nothing was sent.
    #[error("cannot encode the request: {0}")]
    Encode(String),
    /// The peer's answer did not decode (a peer of another version).
    #[error("unreadable answer: {0}")]
    BadAnswer(String),
}

impl CallError {
    /// Whether the call may be repeated (with the next leader): retryable
    /// refusals, and transport failures (safe for writes because they
    /// carry a request id).
    pub fn is_retryable(&self) -> bool {
        match self {
            CallError::Transport(MeshError::TooLarge { .. }) => false,
            CallError::Transport(_) => true,
            CallError::Peer(e) => e.is_retryable(),
            CallError::Encode(_) | CallError::BadAnswer(_) => false,
        }
    }
}

/// One round trip to `peer`: encodes `req` here (in the caller's task),
/// sends it and decodes the answer.
pub async fn call(mesh: &Mesh, peer: PeerId, req: &PeerRequest) -> Result<PeerResponse, CallError> {
    let bytes = encode(req).map_err(|e| CallError::Encode(e.to_string()))?;
    let answer = mesh.request(peer, bytes).await?;
    match decode::<PeerReply>(&answer) {
        Ok(reply) => Ok(reply?),
        Err(e) => Err(CallError::BadAnswer(format!(
            "{} bytes answering a {} request: {e}",
            answer.len(),
            req.kind()
        ))),
    }
}

/// An answer of the wrong variant for the request (a peer bug).
pub fn unexpected(req: &'static str, got: &PeerResponse) -> CallError {
    let got = match got {
        PeerResponse::Raft(_) => "raft",
        PeerResponse::Api(_) => "api",
        PeerResponse::Assignments(_) => "assignments",
        PeerResponse::FetchImage(_) => "fetch-image",
        PeerResponse::TokenRegistered(_) => "token-registered",
        PeerResponse::Events(_) => "events",
        PeerResponse::Electing => "electing",
    };
    CallError::BadAnswer(format!("a {got} answer to a {req} request"))
}

/// Decodes a request's bytes. What a newer build sent and this one
/// cannot read (its envelope names a newer schema: a new variant, say) is
/// [`PeerError::Unsupported`], which the sender takes as "fall back";
/// anything else that does not decode is [`PeerError::BadRequest`].
pub fn decode_request(bytes: &[u8]) -> Result<PeerRequest, PeerError> {
    decode::<PeerRequest>(bytes).map_err(|e| {
        let newer = matches!(
            skein_protocol::codec::schema_of(bytes),
            Ok(s) if s > skein_protocol::codec::Schema::CURRENT
        );
        if newer {
            PeerError::Unsupported {
                what: e.to_string(),
            }
        } else {
            PeerError::BadRequest {
                reason: format!("undecodable request of {} bytes: {e}", bytes.len()),
            }
        }
    })
}

/// Encodes an answer; an answer that cannot be encoded or exceeds the
/// mesh limit becomes an encoded [`PeerError::Refused`] saying so, so the
/// asker always gets a typed answer.
pub fn encode_reply(reply: &PeerReply) -> Vec<u8> {
    let problem = match encode(reply) {
        Ok(bytes) if bytes.len() <= MAX_MESSAGE_BYTES => return bytes,
        Ok(bytes) => format!(
            "the answer of {} bytes exceeds the limit of {MAX_MESSAGE_BYTES} bytes",
            bytes.len()
        ),
        Err(e) => format!("the answer cannot be encoded: {e}"),
    };
    let refusal: PeerReply = Err(PeerError::Refused { reason: problem });
    // A short error always encodes; an empty answer makes the asker see
    // an unreadable answer rather than nothing at all.
    encode(&refusal).unwrap_or_default()
}

/// A control-plane refusal as a peer sees it: "ask the leader" and "not
/// now" stay retryable, the rest is final.
impl From<&crate::control::ControlError> for PeerError {
    fn from(e: &crate::control::ControlError) -> Self {
        use crate::control::ControlError;
        match e {
            ControlError::NotLeader { leader } => PeerError::NotLeader {
                leader: leader.as_ref().map(|(id, _)| *id),
            },
            ControlError::Unavailable(_) | ControlError::StorageDegraded(_) => {
                PeerError::Unavailable {
                    reason: e.to_string(),
                }
            }
            _ => PeerError::Refused {
                reason: e.to_string(),
            },
        }
    }
}
