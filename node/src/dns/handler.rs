//! One parsed request in, one response out.
//!
//! hickory's [`Server`](hickory_server::Server) owns the sockets: it reads
//! UDP datagrams and TCP frames, drops what is not even a DNS header, answers
//! FORMERR to what does not parse, times idle TCP connections out, and hands
//! every well-formed request to [`Handler`]. The handler decides: questions
//! inside `skein.` are answered from the latest [`Zone`], the rest are
//! relayed by the [`Forwarder`] (or REFUSED when there is no upstream).
//!
//! The zone index is rebuilt lazily, on the first question after the table
//! behind the watch channel changed (compared by `Arc` identity), so a
//! table update is visible to the very next query.

use std::iter;
use std::sync::{Arc, Mutex};

use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::{DNSClass, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder};
use tokio::sync::watch;

use super::clients::RelayClients;
use super::forward::Forwarder;
use super::zone::{self, Zone};
use super::ServiceTable;

/// The largest UDP answer we offer to EDNS clients (the DNS flag day value).
const EDNS_MAX_PAYLOAD: u16 = 1232;

/// Answers `skein.` and relays the rest.
pub(super) struct Handler {
    table: watch::Receiver<Arc<ServiceTable>>,
    zone: Mutex<Option<Cached>>,
    forwarder: Forwarder,
    clients: RelayClients,
}

/// The zone built from one table snapshot.
struct Cached {
    table: Arc<ServiceTable>,
    zone: Arc<Zone>,
}

impl Handler {
    pub(super) fn new(
        table: watch::Receiver<Arc<ServiceTable>>,
        forwarder: Forwarder,
        clients: RelayClients,
    ) -> Self {
        Self {
            table,
            zone: Mutex::new(None),
            forwarder,
            clients,
        }
    }

    /// The zone for the latest table, rebuilt if the table changed.
    fn zone(&self) -> Arc<Zone> {
        let table = self.table.borrow().clone();
        let mut cached = self.zone.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = cached.as_ref().filter(|c| Arc::ptr_eq(&c.table, &table)) {
            return c.zone.clone();
        }
        // The SOA serial: seconds since the epoch, as many zones use.
        let serial = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() as u32);
        let zone = Arc::new(Zone::new(&table, serial));
        *cached = Some(Cached {
            table,
            zone: zone.clone(),
        });
        zone
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let edns = response_edns(request);
        let builder = MessageResponseBuilder::new(&request.queries, edns.as_ref());
        let mut metadata = Metadata::response_from_request(&request.metadata);
        metadata.recursion_available = self.forwarder.is_enabled();

        let reject = |code: ResponseCode| {
            let (id, src) = (request.metadata.id, request.src());
            tracing::debug!(id, %src, %code, "DNS request rejected");
            let mut metadata = metadata;
            metadata.response_code = code;
            metadata
        };
        let queries = request.queries.queries();
        let [query] = queries else {
            let metadata = reject(ResponseCode::FormErr);
            return send(&mut response_handle, builder.build_no_records(metadata)).await;
        };
        if request.metadata.op_code != OpCode::Query {
            let metadata = reject(ResponseCode::NotImp);
            return send(&mut response_handle, builder.build_no_records(metadata)).await;
        }

        if zone::in_zone(query.name()) {
            let class_ok = matches!(query.query_class(), DNSClass::IN | DNSClass::ANY);
            let transfer = matches!(query.query_type(), RecordType::AXFR | RecordType::IXFR);
            if !class_ok || transfer {
                let metadata = reject(ResponseCode::Refused);
                return send(&mut response_handle, builder.build_no_records(metadata)).await;
            }
            let zone = self.zone();
            let answer = zone.answer(query.original().name(), query.name(), query.query_type());
            metadata.authoritative = true;
            metadata.response_code = answer.code;
            let response = builder.build(
                metadata,
                answer.answers.iter(),
                answer.authority.iter(),
                iter::empty(),
                answer.additionals.iter(),
            );
            return send(&mut response_handle, response).await;
        }

        if !self.forwarder.is_enabled() || self.clients.admit(request.src().ip()).is_err() {
            let metadata = reject(ResponseCode::Refused);
            return send(&mut response_handle, builder.build_no_records(metadata)).await;
        }
        let tcp = !matches!(request.protocol(), Protocol::Udp);
        let Some(relayed) = self
            .forwarder
            .relay(request.as_slice(), request.metadata.id, tcp)
            .await
        else {
            let metadata = reject(ResponseCode::ServFail);
            return send(&mut response_handle, builder.build_no_records(metadata)).await;
        };
        let mut metadata = relayed.metadata;
        metadata.id = request.metadata.id;
        let response = builder.build(
            metadata,
            relayed.answers.iter(),
            relayed.authorities.iter(),
            iter::empty(),
            relayed.additionals.iter(),
        );
        send(&mut response_handle, response).await
    }
}

/// Our EDNS for the response, when the request had EDNS (RFC 6891).
fn response_edns(request: &Request) -> Option<Edns> {
    let theirs = request.edns.as_ref()?;
    let mut ours = Edns::new();
    ours.set_max_payload(theirs.max_payload().clamp(512, EDNS_MAX_PAYLOAD));
    ours.set_version(0);
    ours.set_dnssec_ok(theirs.flags().dnssec_ok);
    Some(ours)
}

/// Sends `response`; a failure to send (the client went away) is only
/// logged, reported as SERVFAIL to hickory's request log.
async fn send<'a, R: ResponseHandler>(
    handle: &mut R,
    response: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> ResponseInfo {
    let mut metadata = *response.metadata();
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(error) => {
            tracing::debug!(%error, "cannot send DNS response");
            metadata.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata,
                counts: HeaderCounts::default(),
            })
        }
    }
}
