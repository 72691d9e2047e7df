//! The cluster's event journal: placements, container starts and exits,
//! node health, leader changes, rollouts.
//!
//! An event is reported once, by the node that saw it happen (a container's
//! node; the leader for placements and node health), and spread by gossip:
//! each node repeats its own recent events in its status messages for
//! [`GOSSIP_WINDOW`], so a lost message does not lose the event, and every
//! node folds the events it hears into its own bounded journal. Any node can
//! therefore answer `skein events` without asking the leader, and events
//! are deduplicated by `(origin, seq)`.
//!
//! The journal lives in memory: it is a monitoring aid, not a record. A
//! node that starts (or restarts) copies the recent history of a peer's
//! journal once ([`backfill`]), so it can show what happened before.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use skein_protocol::api::{Event, EventEntry, EventKind, EventsResponse, NodeHealth};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::membership::Membership;
use crate::mesh::Mesh;
use crate::peers::Peers;
use crate::state::{node_id_str, NodeId};

/// Events a node keeps (older ones are dropped first).
pub const CAPACITY: usize = 2000;
/// How long a node repeats an event of its own in its gossip.
pub const GOSSIP_WINDOW: Duration = Duration::from_secs(3);
/// At most this many events per status message (the newest).
pub const MAX_GOSSIP_EVENTS: usize = 32;
/// Longest accepted message, so that a peer cannot fill memory.
const MAX_MESSAGE_CHARS: usize = 1024;
/// Longest accepted name (node, job, allocation, origin).
const MAX_NAME_CHARS: usize = 256;
/// Most events one answer carries.
pub const MAX_PAGE: usize = 1000;
/// Events copied from a peer at start; indexes below the first local one
/// are kept free for them, so cursors handed out earlier stay valid.
const BACKFILL: usize = MAX_PAGE;

/// An event about to be reported; [`EventLog::emit`] stamps origin,
/// sequence number and time.
#[derive(Debug, Clone)]
pub struct NewEvent {
    kind: EventKind,
    node: Option<String>,
    job: Option<String>,
    alloc: Option<String>,
    exit_code: Option<i64>,
    message: String,
}

impl NewEvent {
    /// An event of `kind` described by `message`.
    pub fn new(kind: EventKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            node: None,
            job: None,
            alloc: None,
            exit_code: None,
            message: message.into(),
        }
    }

    /// The node concerned.
    pub fn node(mut self, node: impl Into<String>) -> Self {
        self.node = Some(node.into());
        self
    }

    /// The job concerned.
    pub fn job(mut self, job: impl Into<String>) -> Self {
        self.job = Some(job.into());
        self
    }

    /// The allocation concerned.
    pub fn alloc(mut self, alloc: impl Into<String>) -> Self {
        self.alloc = Some(alloc.into());
        self
    }

    /// The exit code of an exit.
    pub fn exit_code(mut self, code: i64) -> Self {
        self.exit_code = Some(code);
        self
    }
}

/// Which events a reader wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only events of this job.
    pub job: Option<String>,
    /// Only events about this node (by name).
    pub node: Option<String>,
    /// Only these kinds (empty: all).
    pub kinds: Vec<EventKind>,
    /// Only events at or after this time (Unix ms).
    pub since_ms: Option<u64>,
}

impl Filter {
    fn matches(&self, e: &Event) -> bool {
        self.job.as_ref().is_none_or(|j| e.job.as_ref() == Some(j))
            && self
                .node
                .as_ref()
                .is_none_or(|n| e.node.as_ref() == Some(n))
            && (self.kinds.is_empty() || self.kinds.contains(&e.kind))
            && self.since_ms.is_none_or(|t| e.time_ms >= t)
    }
}

#[derive(Debug)]
struct Inner {
    next_seq: u64,
    next_index: u64,
    entries: VecDeque<EventEntry>,
    seen: HashSet<(String, u64)>,
    /// This node's own events still to be repeated in gossip.
    recent: VecDeque<(Instant, Event)>,
    backfilled: bool,
}

/// One node's journal.
#[derive(Debug)]
pub struct EventLog {
    origin: String,
    inner: Mutex<Inner>,
    changes: watch::Sender<u64>,
}

impl EventLog {
    /// The journal of node `origin`.
    pub fn new(origin: NodeId) -> Arc<Self> {
        // Sequence numbers start at the clock in microseconds, so that an
        // agent restart never reuses (origin, seq) pairs its peers still
        // hold (they would drop the new events as duplicates).
        let start = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| u64::try_from(d.as_micros()).unwrap_or(1));
        Arc::new(Self {
            origin: node_id_str(origin),
            inner: Mutex::new(Inner {
                next_seq: start,
                next_index: BACKFILL as u64 + 1,
                entries: VecDeque::new(),
                seen: HashSet::new(),
                recent: VecDeque::new(),
                backfilled: false,
            }),
            changes: watch::channel(0).0,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves valid data behind.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reports an event this node saw.
    pub fn emit(&self, e: NewEvent) {
        let last = {
            let mut inner = self.lock();
            let seq = inner.next_seq;
            inner.next_seq += 1;
            let event = Event {
                origin: self.origin.clone(),
                seq,
                time_ms: crate::clock::now_ms(),
                kind: e.kind,
                node: e.node,
                job: e.job,
                alloc: e.alloc,
                exit_code: e.exit_code,
                message: e.message,
            };
            inner.recent.push_back((Instant::now(), event.clone()));
            while inner.recent.len() > MAX_GOSSIP_EVENTS {
                inner.recent.pop_front();
            }
            insert(&mut inner, event)
        };
        self.changes.send_replace(last);
    }

    /// This node's events to repeat in its next status message.
    pub fn for_gossip(&self) -> Vec<Event> {
        let mut inner = self.lock();
        let now = Instant::now();
        while inner
            .recent
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > GOSSIP_WINDOW)
        {
            inner.recent.pop_front();
        }
        inner.recent.iter().map(|(_, e)| e.clone()).collect()
    }

    /// Folds events heard from `origin` (hex id); others' events and
    /// malformed ones are dropped: a node only speaks for itself.
    pub fn merge(&self, origin: &str, events: Vec<Event>) {
        let mut changed = None;
        {
            let mut inner = self.lock();
            for e in events {
                if e.origin != origin || e.origin == self.origin || !well_formed(&e) {
                    continue;
                }
                if inner.seen.contains(&(e.origin.clone(), e.seq)) {
                    continue;
                }
                changed = Some(insert(&mut inner, e));
            }
        }
        if let Some(last) = changed {
            self.changes.send_replace(last);
        }
    }

    /// Puts a peer's recent history (any origin) before everything this
    /// journal holds, oldest first; only once. Returns how many were new.
    pub fn backfill(&self, mut events: Vec<Event>) -> usize {
        let mut inner = self.lock();
        if inner.backfilled {
            return 0;
        }
        inner.backfilled = true;
        events.retain(|e| well_formed(e) && !inner.seen.contains(&(e.origin.clone(), e.seq)));
        events.sort_by_key(|e| (e.time_ms, e.seq));
        let keep = events.len().saturating_sub(BACKFILL);
        events.drain(..keep);
        // Indexes start above BACKFILL and only grow, so there is room.
        let first = inner.entries.front().map_or(inner.next_index, |e| e.index);
        let n = events.len();
        let base = first.saturating_sub(n as u64).max(1);
        for (i, event) in events.into_iter().enumerate().rev() {
            inner.seen.insert((event.origin.clone(), event.seq));
            inner.entries.push_front(EventEntry {
                index: base + i as u64,
                event,
            });
        }
        while inner.entries.len() > CAPACITY {
            if let Some(old) = inner.entries.pop_front() {
                inner.seen.remove(&(old.event.origin, old.event.seq));
            }
        }
        n
    }

    /// Events with an index above `after` that match `filter`, oldest
    /// first, at most `limit`; `tail` keeps only the newest `tail` of them.
    pub fn since(
        &self,
        after: u64,
        filter: &Filter,
        limit: usize,
        tail: Option<usize>,
    ) -> EventsResponse {
        let inner = self.lock();
        let mut events: Vec<EventEntry> = inner
            .entries
            .iter()
            .filter(|e| e.index > after && filter.matches(&e.event))
            .cloned()
            .collect();
        if let Some(n) = tail {
            let skip = events.len().saturating_sub(n);
            events.drain(..skip);
        }
        events.truncate(limit.min(MAX_PAGE));
        // The cursor moves past what was scanned, not only past what
        // matched, so a filtered follow does not rescan forever.
        let next = match events.last() {
            Some(e) if events.len() == limit.min(MAX_PAGE) => e.index,
            _ => inner.next_index - 1,
        };
        EventsResponse {
            events,
            next: next.max(after),
        }
    }

    /// Waits until an event with an index above `after` exists, or
    /// `timeout` passes.
    pub async fn wait(&self, after: u64, timeout: Duration) {
        let mut rx = self.changes.subscribe();
        let _ = tokio::time::timeout(timeout, rx.wait_for(|last| *last > after)).await;
    }
}

fn insert(inner: &mut Inner, event: Event) -> u64 {
    let index = inner.next_index;
    inner.next_index += 1;
    inner.seen.insert((event.origin.clone(), event.seq));
    inner.entries.push_back(EventEntry { index, event });
    while inner.entries.len() > CAPACITY {
        if let Some(old) = inner.entries.pop_front() {
            inner.seen.remove(&(old.event.origin, old.event.seq));
        }
    }
    index
}

fn well_formed(e: &Event) -> bool {
    let short = |s: &Option<String>| s.as_ref().is_none_or(|s| s.len() <= MAX_NAME_CHARS);
    e.message.len() <= MAX_MESSAGE_CHARS
        && e.origin.len() <= MAX_NAME_CHARS
        && short(&e.node)
        && short(&e.job)
        && short(&e.alloc)
}

/// Health changes between two views of the node table, as events: `None`
/// in `before` means the node was not known.
pub fn health_events(
    before: &std::collections::BTreeMap<NodeId, (String, NodeHealth)>,
    after: &std::collections::BTreeMap<NodeId, (String, NodeHealth)>,
) -> Vec<NewEvent> {
    let mut out = Vec::new();
    for (id, (name, health)) in after {
        let old = before.get(id).map(|(_, h)| *h);
        if old == Some(*health) {
            continue;
        }
        let ev = match (old, health) {
            (None, NodeHealth::Ready) => NewEvent::new(EventKind::NodeUp, "node joined"),
            (Some(_), NodeHealth::Ready) => NewEvent::new(EventKind::NodeUp, "node is back"),
            (_, NodeHealth::Suspect) => NewEvent::new(
                EventKind::NodeSuspect,
                "node went silent; it keeps its work",
            ),
            (_, NodeHealth::Dead) => {
                NewEvent::new(EventKind::NodeDown, "node is dead; its work is rescheduled")
            }
        };
        out.push(ev.node(name.clone()));
    }
    out
}

/// Every known node's name and health.
async fn health_table(
    membership: &Membership,
) -> std::collections::BTreeMap<NodeId, (String, NodeHealth)> {
    membership
        .all()
        .await
        .into_iter()
        .map(|r| (r.id, (r.name, r.health)))
        .collect()
}

/// Nodes a follower saw go suspect or dead this recently are reported when
/// it becomes leader: the change that cost the old leader its office (its
/// own death) happens before anyone leads.
const CARRY_OVER: Duration = Duration::from_secs(15);

/// Watches membership and Raft and reports node health changes and
/// leader elections. Every node tracks them, only the leader reports
/// health (one report per change, not one per node), and a new leader
/// reports its own election and the changes of the last [`CARRY_OVER`].
pub async fn watch_cluster(peers: Peers, name: String, events: Arc<EventLog>) {
    let mut members = peers.membership.subscribe();
    let mut metrics = peers.raft.metrics();
    // What the node knows when it starts is not news.
    let mut known = health_table(&peers.membership).await;
    let mut reported_term = None;
    let mut pending: VecDeque<(Instant, NewEvent)> = VecDeque::new();
    // The first pass runs at once: a single node may have been elected
    // before this task started, and its metrics may not change again.
    loop {
        let now = health_table(&peers.membership).await;
        let (leader, term) = {
            let m = metrics.borrow_and_update();
            (m.current_leader, m.current_term)
        };
        let leading = leader == Some(peers.id);
        if leading && reported_term != Some(term) {
            reported_term = Some(term);
            events.emit(
                NewEvent::new(
                    EventKind::LeaderElected,
                    format!("{} leads the cluster (term {term})", name),
                )
                .node(name.clone()),
            );
        }
        let changes = health_events(&known, &now);
        if leading {
            for (_, e) in pending.drain(..) {
                events.emit(e);
            }
            for e in changes {
                events.emit(e);
            }
        } else {
            // Only losses: a node a follower sees appear is news to it,
            // not to the cluster.
            let t = Instant::now();
            pending.extend(
                changes
                    .into_iter()
                    .filter(|e| e.kind != EventKind::NodeUp)
                    .map(|e| (t, e)),
            );
            while pending
                .front()
                .is_some_and(|(at, _)| t.duration_since(*at) > CARRY_OVER)
            {
                pending.pop_front();
            }
        }
        known = now;
        // Wait for news: a membership change, or a new leader or term
        // (metrics also change on every heartbeat, which is no news).
        loop {
            tokio::select! {
                r = members.changed() => {
                    if r.is_err() {
                        return;
                    }
                    break;
                }
                r = metrics.changed() => {
                    if r.is_err() {
                        return;
                    }
                    let m = metrics.borrow_and_update();
                    if (m.current_leader, m.current_term) != (leader, term) {
                        break;
                    }
                }
            }
        }
    }
}

/// How long a starting node looks for a peer to copy history from.
const BACKFILL_PATIENCE: Duration = Duration::from_secs(60);

/// Copies a peer's recent events into this node's fresh journal: the
/// leader's if one is known, else any ready node's. Gives up quietly after
/// [`BACKFILL_PATIENCE`] (a lone first node has nobody to ask).
pub async fn backfill(peers: Peers, mesh: Mesh, events: Arc<EventLog>) {
    let deadline = Instant::now() + BACKFILL_PATIENCE;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let leader = peers.leader().await.filter(|l| *l != peers.id);
        let ready = peers
            .membership
            .all()
            .await
            .into_iter()
            .find(|n| n.id != peers.id && n.health == NodeHealth::Ready)
            .map(|n| n.id);
        let Some(peer) = leader.or(ready) else {
            continue;
        };
        let Some(mesh_peer) = peers.peer_of(peer).await else {
            continue;
        };
        let req = crate::rpc::PeerRequest::Events {
            after: 0,
            limit: u32::try_from(BACKFILL).unwrap_or(u32::MAX),
        };
        match crate::rpc::call(&mesh, mesh_peer, &req).await {
            Ok(crate::rpc::PeerResponse::Events(history)) => {
                let n = events.backfill(history);
                tracing::info!(events = n, from = %node_id_str(peer), "event history copied");
                return;
            }
            Ok(other) => {
                let e = crate::rpc::unexpected("events", &other);
                tracing::warn!(error = %e, "peer sent no event history");
                return;
            }
            Err(e) => tracing::debug!(error = %e, "event history not copied"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn remote(origin: &str, seq: u64, kind: EventKind) -> Event {
        Event {
            origin: origin.into(),
            seq,
            time_ms: seq,
            kind,
            node: Some("n1".into()),
            job: Some("web".into()),
            alloc: None,
            exit_code: None,
            message: "m".into(),
        }
    }

    #[test]
    fn emitted_events_are_listed_and_gossiped() {
        let log = EventLog::new(1);
        log.emit(NewEvent::new(EventKind::Started, "started").job("web"));
        log.emit(NewEvent::new(EventKind::Exited, "exited").exit_code(3));
        let r = log.since(0, &Filter::default(), 100, None);
        assert_eq!(r.events.len(), 2);
        assert_eq!(r.events[1].event.exit_code, Some(3));
        assert!(r.events[0].event.seq < r.events[1].event.seq);
        assert_eq!(r.next, r.events[1].index);
        assert_eq!(log.for_gossip().len(), 2);
        assert!(log
            .since(r.next, &Filter::default(), 100, None)
            .events
            .is_empty());
    }

    #[test]
    fn merge_drops_duplicates_spoofs_and_own_events() {
        let log = EventLog::new(1);
        let own = node_id_str(1);
        log.merge("b", vec![remote("b", 1, EventKind::Placed)]);
        log.merge("b", vec![remote("b", 1, EventKind::Placed)]);
        // "b" may not speak for "c", nor echo our own events back.
        log.merge("b", vec![remote("c", 1, EventKind::Placed)]);
        log.merge(&own, vec![remote(&own, 1, EventKind::Placed)]);
        let mut long = remote("b", 2, EventKind::Placed);
        long.message = "x".repeat(5000);
        log.merge("b", vec![long]);
        let r = log.since(0, &Filter::default(), 100, None);
        assert_eq!(r.events.len(), 1);
        // Remote events are never re-gossiped by us.
        assert!(log.for_gossip().is_empty());
    }

    #[test]
    fn backfill_goes_before_everything_once_and_keeps_cursors() {
        let log = EventLog::new(1);
        log.merge("b", vec![remote("b", 10, EventKind::Started)]);
        let before = log.since(0, &Filter::default(), 100, None);
        let cursor = before.next;
        let history = vec![
            remote("c", 2, EventKind::Exited),
            remote("c", 1, EventKind::Placed),
            // Already held: not twice.
            remote("b", 10, EventKind::Started),
        ];
        assert_eq!(log.backfill(history.clone()), 2);
        assert_eq!(log.backfill(history), 0, "only once");
        let all = log.since(0, &Filter::default(), 100, None);
        let kinds: Vec<EventKind> = all.events.iter().map(|e| e.event.kind).collect();
        assert_eq!(
            kinds,
            [EventKind::Placed, EventKind::Exited, EventKind::Started]
        );
        assert!(all.events.windows(2).all(|w| w[0].index < w[1].index));
        // A follower's cursor from before does not see history as new.
        assert!(log
            .since(cursor, &Filter::default(), 100, None)
            .events
            .is_empty());
        assert!(all.events[0].index >= 1);
    }

    #[test]
    fn capacity_bounds_memory() {
        let log = EventLog::new(1);
        for i in 0..(CAPACITY as u64 + 10) {
            log.merge("b", vec![remote("b", i, EventKind::Placed)]);
        }
        let r = log.since(0, &Filter::default(), usize::MAX, None);
        assert_eq!(r.events.len(), MAX_PAGE);
        assert_eq!(r.events[0].index, BACKFILL as u64 + 11);
        let inner = log.lock();
        assert_eq!(inner.entries.len(), CAPACITY);
        assert_eq!(inner.seen.len(), CAPACITY);
    }

    #[test]
    fn filters_and_tail() {
        let log = EventLog::new(1);
        log.merge(
            "b",
            vec![
                remote("b", 1, EventKind::Placed),
                remote("b", 2, EventKind::Started),
                remote("b", 3, EventKind::Exited),
            ],
        );
        log.emit(NewEvent::new(EventKind::Started, "s").job("db"));
        let only = |f: Filter| log.since(0, &f, 100, None).events.len();
        assert_eq!(
            only(Filter {
                job: Some("web".into()),
                ..Filter::default()
            }),
            3
        );
        assert_eq!(
            only(Filter {
                kinds: vec![EventKind::Started],
                ..Filter::default()
            }),
            2
        );
        assert_eq!(
            only(Filter {
                since_ms: Some(2),
                ..Filter::default()
            }),
            3
        );
        let tail = log.since(0, &Filter::default(), 100, Some(2));
        assert_eq!(tail.events.len(), 2);
        assert_eq!(tail.events[1].event.job.as_deref(), Some("db"));
        // A filter that matches nothing still moves the cursor.
        let none = log.since(
            0,
            &Filter {
                job: Some("nope".into()),
                ..Filter::default()
            },
            100,
            None,
        );
        assert_eq!(none.next, BACKFILL as u64 + 4);
    }

    #[test]
    fn gossip_window_expires_and_is_bounded() {
        let log = EventLog::new(1);
        for _ in 0..(MAX_GOSSIP_EVENTS + 5) {
            log.emit(NewEvent::new(EventKind::Started, "s"));
        }
        assert_eq!(log.for_gossip().len(), MAX_GOSSIP_EVENTS);
        log.lock().recent.iter_mut().for_each(|(t, _)| {
            *t = Instant::now()
                .checked_sub(GOSSIP_WINDOW + Duration::from_secs(1))
                .unwrap_or(*t)
        });
        assert!(log.for_gossip().is_empty());
    }

    #[tokio::test]
    async fn wait_returns_on_new_event_or_timeout() {
        let log = EventLog::new(1);
        let t = std::time::Instant::now();
        log.wait(0, Duration::from_millis(50)).await;
        assert!(t.elapsed() >= Duration::from_millis(50));
        let l2 = log.clone();
        let waiter = tokio::spawn(async move { l2.wait(0, Duration::from_secs(30)).await });
        log.emit(NewEvent::new(EventKind::Started, "s"));
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken by the event")
            .expect("task");
    }

    #[test]
    fn health_changes_become_events() {
        let a = |h| BTreeMap::from([(7u64, ("n7".to_string(), h))]);
        let none = BTreeMap::new();
        let kinds = |b: &BTreeMap<_, _>, c: &BTreeMap<_, _>| -> Vec<EventKind> {
            health_events(b, c).into_iter().map(|e| e.kind).collect()
        };
        assert_eq!(kinds(&none, &a(NodeHealth::Ready)), [EventKind::NodeUp]);
        assert_eq!(
            kinds(&a(NodeHealth::Ready), &a(NodeHealth::Suspect)),
            [EventKind::NodeSuspect]
        );
        assert_eq!(
            kinds(&a(NodeHealth::Suspect), &a(NodeHealth::Dead)),
            [EventKind::NodeDown]
        );
        assert_eq!(
            kinds(&a(NodeHealth::Dead), &a(NodeHealth::Ready)),
            [EventKind::NodeUp]
        );
        assert!(kinds(&a(NodeHealth::Ready), &a(NodeHealth::Ready)).is_empty());
    }
}
