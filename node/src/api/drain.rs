//! Refusing writes while the node shuts down: once [`Drain::begin`] is
//! called, every call that may change something (any method but `GET`,
//! `HEAD` and `OPTIONS`) is answered 503 with a message saying why, while
//! reads keep working until the API closes. Writes already running are
//! counted, so that the node can wait for the last one to commit before
//! it gives up leadership ([`Drain::writes_done`]).
//!
//! Forwarded calls pass the same layer on the node that serves them, so a
//! leader that shuts down refuses the writes other nodes forward to it;
//! being a 503 (`not_applied`), the forwarding node retries them with the
//! next leader.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::watch;

use super::ApiErr;

/// What clients of a draining node are told.
pub const DRAINING: &str = "this node is shutting down and takes no more writes: retry in a \
                            moment (through another node, or once a new leader is elected)";

#[derive(Debug, Default, Clone, Copy)]
struct Gate {
    draining: bool,
    in_flight: usize,
}

/// Whether writes are still taken, and how many run; cheap to clone.
#[derive(Debug, Clone)]
pub struct Drain {
    gate: Arc<watch::Sender<Gate>>,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    /// Writes are taken.
    pub fn new() -> Self {
        Self {
            gate: Arc::new(watch::channel(Gate::default()).0),
        }
    }

    /// From now on new writes are refused.
    pub fn begin(&self) {
        self.gate.send_modify(|g| g.draining = true);
    }

    /// Whether new writes are refused.
    pub fn draining(&self) -> bool {
        self.gate.borrow().draining
    }

    /// Resolves once no write admitted before [`Drain::begin`] still runs.
    pub async fn writes_done(&self) {
        let mut rx = self.gate.subscribe();
        let _ = rx.wait_for(|g| g.in_flight == 0).await;
    }

    /// Admits a write unless draining; the returned ticket counts it until
    /// dropped (also when the request is cancelled).
    fn admit(&self) -> Option<Ticket> {
        let mut admitted = false;
        self.gate.send_if_modified(|g| {
            if g.draining {
                return false;
            }
            g.in_flight += 1;
            admitted = true;
            true
        });
        admitted.then(|| Ticket(self.clone()))
    }
}

struct Ticket(Drain);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0
            .gate
            .send_modify(|g| g.in_flight = g.in_flight.saturating_sub(1));
    }
}

/// The middleware.
pub async fn check(State(drain): State<Drain>, req: Request, next: Next) -> Response {
    if matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS) {
        return next.run(req).await;
    }
    let Some(_ticket) = drain.admit() else {
        let err = ApiErr::unavailable(
            DRAINING,
            crate::rpc::PeerError::Unavailable {
                reason: DRAINING.into(),
            },
        );
        let mut res = err.into_response();
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return res;
    };
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn writes_are_counted_until_done_and_refused_once_draining() {
        let d = Drain::new();
        let t = d.admit().expect("taken before draining");
        d.begin();
        assert!(d.admit().is_none(), "refused while draining");
        let waiting = tokio::spawn({
            let d = d.clone();
            async move { d.writes_done().await }
        });
        drop(t);
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the last write is done")
            .expect("no panic");
    }
}
