//! The `skein.` zone, synthesised from the service table.
//!
//! There is no zone file: a [`Zone`] is an index built from one
//! [`ServiceTable`] snapshot (lower-cased service names and allocation ids),
//! and [`Zone::answer`] turns one question into the records of one response.
//! It is pure (no I/O), so every naming rule is testable without sockets.
//!
//! Names, all case-insensitive:
//!
//! | name | answers |
//! | --- | --- |
//! | `NAME.service.skein.` | A/AAAA: distinct endpoint IPs; SRV: one per endpoint |
//! | `_NAME._tcp.service.skein.` | SRV, the same as above (RFC 2782 form) |
//! | `ALLOC.alloc.skein.` | A/AAAA: the allocation's IP |
//! | `skein.` | SOA |
//!
//! A name that exists without records of the asked type (a known service
//! with no healthy endpoint, `service.skein.`, an IPv4-only service asked for
//! AAAA) is NODATA: NOERROR with no answer. Any other name inside `skein.` is
//! NXDOMAIN. Both negative answers carry the zone's SOA in the authority
//! section, whose minimum (the negative-caching TTL) is 1 s, like every TTL
//! here: endpoints change quickly.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use hickory_server::proto::op::ResponseCode;
use hickory_server::proto::rr::rdata::{A, AAAA, SOA, SRV};
use hickory_server::proto::rr::{LowerName, Name, RData, Record, RecordType};
use rand::seq::SliceRandom;

use super::{Endpoint, ServiceTable};

/// TTL of every record we serve, and the SOA minimum (negative TTL).
pub(super) const TTL: u32 = 1;

/// The origin label; `skein.` is the whole zone.
const ORIGIN: &[u8] = b"skein";
const SERVICE: &[u8] = b"service";
const ALLOC: &[u8] = b"alloc";

/// Whether `name` lies inside `skein.` (the apex included).
pub(super) fn in_zone(name: &LowerName) -> bool {
    name.iter().next_back() == Some(ORIGIN)
}

/// The records of one response.
#[derive(Debug)]
pub(super) struct Answer {
    pub code: ResponseCode,
    pub answers: Vec<Record>,
    /// The SOA on negative answers.
    pub authority: Vec<Record>,
    pub additionals: Vec<Record>,
}

/// One table snapshot, indexed for lookups.
#[derive(Debug)]
pub(super) struct Zone {
    /// Lower-cased service name → distinct endpoints (sorted).
    services: HashMap<String, Vec<Endpoint>>,
    /// Lower-cased allocation id → its distinct IPs.
    allocs: HashMap<String, BTreeSet<IpAddr>>,
    serial: u32,
}

/// What a name inside the zone designates.
#[derive(Debug, PartialEq, Eq)]
enum Node {
    /// `skein.`
    Apex,
    /// `service.skein.`, `alloc.skein.`: exist, hold no records.
    EmptyNonTerminal,
    /// A service, by lower-cased name; `rfc2782` for `_NAME._tcp`.
    Service { name: String, rfc2782: bool },
    /// An allocation, by lower-cased id.
    Alloc(String),
    /// Anything else.
    Missing,
}

impl Zone {
    /// Indexes `table`; `serial` goes into the SOA (bump it on every change).
    pub(super) fn new(table: &ServiceTable, serial: u32) -> Self {
        let mut services: HashMap<String, BTreeSet<Endpoint>> = HashMap::new();
        let mut allocs: HashMap<String, BTreeSet<IpAddr>> = HashMap::new();
        for (name, endpoints) in table {
            let set = services.entry(name.to_ascii_lowercase()).or_default();
            for endpoint in endpoints {
                let mut endpoint = endpoint.clone();
                endpoint.alloc.make_ascii_lowercase();
                allocs
                    .entry(endpoint.alloc.clone())
                    .or_default()
                    .insert(endpoint.ip);
                set.insert(endpoint);
            }
        }
        let services = services
            .into_iter()
            .map(|(name, set)| (name, set.into_iter().collect()))
            .collect();
        Self {
            services,
            allocs,
            serial,
        }
    }

    /// Answers `qtype` for `name` (lower-cased), with `owner` (the name as
    /// asked) as the owner of the answer records. `name` must be in the zone.
    pub(super) fn answer(&self, owner: &Name, name: &LowerName, qtype: RecordType) -> Answer {
        let mut answer = Answer {
            code: ResponseCode::NoError,
            answers: Vec::new(),
            authority: Vec::new(),
            additionals: Vec::new(),
        };
        match classify(name) {
            Node::Apex => {
                if matches!(qtype, RecordType::SOA | RecordType::ANY) {
                    answer.answers.push(self.soa());
                }
            }
            Node::EmptyNonTerminal => {}
            Node::Service { name, rfc2782 } => {
                let Some(endpoints) = self.services.get(&name) else {
                    return self.nxdomain(answer);
                };
                let addresses = !rfc2782 && matches!(qtype, RecordType::ANY);
                if !rfc2782 && matches!(qtype, RecordType::A | RecordType::AAAA) || addresses {
                    let ips: BTreeSet<IpAddr> = endpoints.iter().map(|e| e.ip).collect();
                    answer.answers = address_records(owner, ips.into_iter(), qtype);
                }
                if matches!(qtype, RecordType::SRV | RecordType::ANY) {
                    let (srv, additional) = srv_records(owner, endpoints);
                    answer.answers.extend(srv);
                    answer.additionals = additional;
                }
                answer.answers.shuffle(&mut rand::rng());
            }
            Node::Alloc(alloc) => {
                let Some(ips) = self.allocs.get(&alloc) else {
                    return self.nxdomain(answer);
                };
                answer.answers = address_records(owner, ips.iter().copied(), qtype);
            }
            Node::Missing => return self.nxdomain(answer),
        }
        if answer.answers.is_empty() {
            answer.authority.push(self.soa());
        }
        answer
    }

    fn nxdomain(&self, mut answer: Answer) -> Answer {
        answer.code = ResponseCode::NXDomain;
        answer.answers.clear();
        answer.additionals.clear();
        answer.authority = vec![self.soa()];
        answer
    }

    /// The synthetic SOA of `skein.`.
    fn soa(&self) -> Record {
        let origin = name_of(&[ORIGIN]);
        let soa = SOA::new(
            name_of(&[b"ns", ORIGIN]),
            name_of(&[b"hostmaster", ORIGIN]),
            self.serial,
            60,
            10,
            3600,
            TTL,
        );
        Record::from_rdata(origin, TTL, RData::SOA(soa))
    }
}

/// Where `name` points inside the zone.
fn classify(name: &LowerName) -> Node {
    let labels: Vec<&[u8]> = name.iter().collect();
    let Some((&last, rest)) = labels.split_last() else {
        return Node::Missing;
    };
    if last != ORIGIN {
        return Node::Missing;
    }
    match rest {
        [] => Node::Apex,
        [kind] if *kind == SERVICE || *kind == ALLOC => Node::EmptyNonTerminal,
        [alloc, kind] if *kind == ALLOC => match std::str::from_utf8(alloc) {
            Ok(alloc) => Node::Alloc(alloc.to_owned()),
            Err(_) => Node::Missing,
        },
        [prefix @ .., kind] if *kind == SERVICE => {
            if let [service, proto] = prefix {
                if *proto == b"_tcp" && service.len() > 1 && service[0] == b'_' {
                    return match std::str::from_utf8(&service[1..]) {
                        Ok(name) => Node::Service {
                            name: name.to_owned(),
                            rfc2782: true,
                        },
                        Err(_) => Node::Missing,
                    };
                }
            }
            let mut name = String::new();
            for (i, label) in prefix.iter().enumerate() {
                let Ok(label) = std::str::from_utf8(label) else {
                    return Node::Missing;
                };
                if i > 0 {
                    name.push('.');
                }
                name.push_str(label);
            }
            Node::Service {
                name,
                rfc2782: false,
            }
        }
        _ => Node::Missing,
    }
}

/// A (for `qtype` A), AAAA (for AAAA) or both (ANY) records for `ips`.
fn address_records(
    owner: &Name,
    ips: impl Iterator<Item = IpAddr>,
    qtype: RecordType,
) -> Vec<Record> {
    ips.filter_map(|ip| {
        let rdata = match ip {
            IpAddr::V4(v4) if matches!(qtype, RecordType::A | RecordType::ANY) => RData::A(A(v4)),
            IpAddr::V6(v6) if matches!(qtype, RecordType::AAAA | RecordType::ANY) => {
                RData::AAAA(AAAA(v6))
            }
            _ => return None,
        };
        Some(Record::from_rdata(owner.clone(), TTL, rdata))
    })
    .collect()
}

/// One SRV per endpoint, and the targets' addresses for the additional
/// section. Endpoints whose allocation id is no valid label are skipped.
fn srv_records(owner: &Name, endpoints: &[Endpoint]) -> (Vec<Record>, Vec<Record>) {
    let mut srv = Vec::with_capacity(endpoints.len());
    let mut targets: BTreeSet<(&str, IpAddr)> = BTreeSet::new();
    for endpoint in endpoints {
        let Some(target) = alloc_name(&endpoint.alloc) else {
            tracing::debug!(alloc = %endpoint.alloc, "allocation id is not a DNS label; no SRV");
            continue;
        };
        let rdata = RData::SRV(SRV::new(1, 1, endpoint.port, target));
        srv.push(Record::from_rdata(owner.clone(), TTL, rdata));
        targets.insert((&endpoint.alloc, endpoint.ip));
    }
    let additional = targets
        .into_iter()
        .filter_map(|(alloc, ip)| {
            let rdata = match ip {
                IpAddr::V4(v4) => RData::A(A(v4)),
                IpAddr::V6(v6) => RData::AAAA(AAAA(v6)),
            };
            Some(Record::from_rdata(alloc_name(alloc)?, TTL, rdata))
        })
        .collect();
    (srv, additional)
}

/// `<alloc>.alloc.skein.`, if `alloc` can be one label.
fn alloc_name(alloc: &str) -> Option<Name> {
    if alloc.is_empty() || alloc.len() > 63 || alloc.contains('.') {
        return None;
    }
    Name::from_labels([alloc.as_bytes(), ALLOC, ORIGIN]).ok()
}

/// A name from labels we know are valid.
fn name_of(labels: &[&[u8]]) -> Name {
    Name::from_labels(labels.iter().copied()).unwrap_or_else(|_| Name::root())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn lower(name: &str) -> (Name, LowerName) {
        let name = Name::from_ascii(name).unwrap();
        let lower = LowerName::new(&name);
        (name, lower)
    }

    fn ask(zone: &Zone, name: &str, qtype: RecordType) -> Answer {
        let (owner, lower) = lower(name);
        assert!(in_zone(&lower), "{name} in zone");
        zone.answer(&owner, &lower, qtype)
    }

    fn endpoint(ip: IpAddr, port: u16, alloc: &str) -> Endpoint {
        Endpoint {
            ip,
            port,
            alloc: alloc.into(),
        }
    }

    fn zone() -> Zone {
        let mut table = ServiceTable::new();
        table.insert(
            "Web".into(),
            vec![
                endpoint(Ipv4Addr::new(10, 0, 0, 1).into(), 80, "web-0-aa"),
                endpoint(Ipv4Addr::new(10, 0, 0, 1).into(), 81, "web-1-bb"),
                endpoint(Ipv6Addr::LOCALHOST.into(), 82, "web-2-cc"),
            ],
        );
        table.insert("empty".into(), vec![]);
        table.insert(
            "a.b".into(),
            vec![endpoint(Ipv4Addr::new(10, 0, 0, 9).into(), 1, "ab-0-x")],
        );
        Zone::new(&table, 7)
    }

    #[test]
    fn classify_names() {
        let node = |n: &str| classify(&lower(n).1);
        assert_eq!(node("skein."), Node::Apex);
        assert_eq!(node("Service.skein."), Node::EmptyNonTerminal);
        assert_eq!(node("alloc.skein."), Node::EmptyNonTerminal);
        assert_eq!(
            node("WEB.service.skein."),
            Node::Service {
                name: "web".into(),
                rfc2782: false
            }
        );
        assert_eq!(
            node("_web._TCP.service.skein."),
            Node::Service {
                name: "web".into(),
                rfc2782: true
            }
        );
        assert_eq!(
            node("a.b.service.skein."),
            Node::Service {
                name: "a.b".into(),
                rfc2782: false
            }
        );
        assert_eq!(
            node("Web-0-AA.alloc.skein."),
            Node::Alloc("web-0-aa".into())
        );
        assert_eq!(node("x.y.alloc.skein."), Node::Missing);
        assert_eq!(node("other.skein."), Node::Missing);
        assert!(!in_zone(&lower("skein.example.").1));
        assert!(!in_zone(&LowerName::new(&Name::root())));
    }

    #[test]
    fn addresses_are_distinct_per_family() {
        let zone = zone();
        let a = ask(&zone, "web.service.skein.", RecordType::A);
        assert_eq!(a.code, ResponseCode::NoError);
        assert_eq!(a.answers.len(), 1, "two endpoints share 10.0.0.1");
        assert!(a.answers.iter().all(|r| r.ttl == TTL));
        let aaaa = ask(&zone, "web.service.skein.", RecordType::AAAA);
        assert_eq!(aaaa.answers.len(), 1);
        assert!(matches!(aaaa.answers[0].data, RData::AAAA(_)));
        let dotted = ask(&zone, "a.b.service.skein.", RecordType::A);
        assert_eq!(dotted.answers.len(), 1);
    }

    #[test]
    fn srv_has_targets_and_glue() {
        let zone = zone();
        for name in ["web.service.skein.", "_web._tcp.service.skein."] {
            let srv = ask(&zone, name, RecordType::SRV);
            assert_eq!(srv.answers.len(), 3, "{name}");
            assert_eq!(srv.additionals.len(), 3, "{name}");
            let mut ports: Vec<u16> = srv
                .answers
                .iter()
                .map(|r| match &r.data {
                    RData::SRV(s) => s.port,
                    other => panic!("not SRV: {other:?}"),
                })
                .collect();
            ports.sort_unstable();
            assert_eq!(ports, [80, 81, 82]);
        }
        // The RFC 2782 name has only SRV records.
        let a = ask(&zone, "_web._tcp.service.skein.", RecordType::A);
        assert_eq!(a.code, ResponseCode::NoError);
        assert!(a.answers.is_empty());
        assert_eq!(a.authority.len(), 1);
    }

    #[test]
    fn negative_answers_carry_the_soa() {
        let zone = zone();
        let nx = ask(&zone, "nope.service.skein.", RecordType::A);
        assert_eq!(nx.code, ResponseCode::NXDomain);
        let nx = ask(&zone, "nope.alloc.skein.", RecordType::A);
        assert_eq!(nx.code, ResponseCode::NXDomain);
        let nodata = ask(&zone, "empty.service.skein.", RecordType::A);
        assert_eq!(nodata.code, ResponseCode::NoError);
        assert!(nodata.answers.is_empty());
        match &nodata.authority[0].data {
            RData::SOA(soa) => {
                assert_eq!(soa.minimum, TTL);
                assert_eq!(soa.serial, 7);
            }
            other => panic!("not SOA: {other:?}"),
        }
        let apex = ask(&zone, "skein.", RecordType::SOA);
        assert_eq!(apex.answers.len(), 1);
        let ent = ask(&zone, "service.skein.", RecordType::A);
        assert_eq!(ent.code, ResponseCode::NoError);
        assert_eq!(ent.authority.len(), 1);
    }

    #[test]
    fn alloc_names_resolve() {
        let zone = zone();
        let a = ask(&zone, "WEB-1-BB.alloc.skein.", RecordType::A);
        assert_eq!(a.answers.len(), 1);
        assert_eq!(a.answers[0].data, RData::A(A(Ipv4Addr::new(10, 0, 0, 1))));
        let aaaa = ask(&zone, "web-1-bb.alloc.skein.", RecordType::AAAA);
        assert!(aaaa.answers.is_empty());
        assert_eq!(aaaa.code, ResponseCode::NoError);
    }
}
