use super::*;

#[test]
fn garbage_and_unknown_variants_get_typed_errors() {
    for garbage in [&[][..], &[0xff; 3][..], &[0, 1, 2][..]] {
        assert!(
            matches!(decode_request(garbage), Err(PeerError::BadRequest { .. })),
            "{garbage:?}"
        );
    }
    // What a newer node sends: a variant this build does not know, in an
    // envelope of a newer schema.
    #[derive(serde::Serialize)]
    enum Newer {
        ElectSomethingNew { x: u8 },
    }
    let mut newer = encode(&Newer::ElectSomethingNew { x: 1 }).unwrap();
    newer[3] = skein_protocol::codec::MINOR + 1;
    match decode_request(&newer) {
        Err(PeerError::Unsupported { what }) => {
            assert!(what.contains("ElectSomethingNew"), "{what}")
        }
        other => panic!("unexpected {other:?}"),
    }
    // The same from a build of our own schema is a bad request (a bug).
    newer[3] = skein_protocol::codec::MINOR;
    assert!(matches!(
        decode_request(&newer),
        Err(PeerError::BadRequest { .. })
    ));
    // A known request round-trips.
    let req = PeerRequest::Events {
        after: 3,
        limit: 10,
    };
    let back = decode_request(&encode(&req).unwrap()).unwrap();
    assert!(matches!(
        back,
        PeerRequest::Events {
            after: 3,
            limit: 10
        }
    ));
}

#[test]
fn replies_always_encode_to_a_typed_answer() {
    let ok: PeerReply = Ok(PeerResponse::FetchImage(true));
    let back: PeerReply = decode(&encode_reply(&ok)).unwrap();
    assert!(matches!(back, Ok(PeerResponse::FetchImage(true))));
    let big: PeerReply = Ok(PeerResponse::Api(ApiReply {
        status: 200,
        body: vec![0; MAX_MESSAGE_BYTES + 1],
    }));
    let back: PeerReply = decode(&encode_reply(&big)).unwrap();
    assert!(matches!(back, Err(PeerError::Refused { .. })));
}

#[test]
fn retry_is_decided_by_the_error_type() {
    let retry = [
        CallError::Peer(PeerError::NotLeader { leader: Some(2) }),
        CallError::Peer(PeerError::NotLeader { leader: None }),
        CallError::Peer(PeerError::Unavailable {
            reason: "no quorum".into(),
        }),
        CallError::Transport(MeshError::Timeout),
        CallError::Transport(MeshError::Unreachable("gone".into())),
        CallError::Transport(MeshError::Remote("reset".into())),
    ];
    for e in retry {
        assert!(e.is_retryable(), "{e:?}");
    }
    let fin = [
        CallError::Peer(PeerError::Refused {
            reason: "no".into(),
        }),
        CallError::Peer(PeerError::BadRequest { reason: "x".into() }),
        CallError::Peer(PeerError::Unsupported { what: "x".into() }),
        CallError::Peer(PeerError::NotMember { node: 1 }),
        CallError::Transport(MeshError::TooLarge { size: 2, max: 1 }),
        CallError::BadAnswer("x".into()),
        CallError::Encode("x".into()),
    ];
    for e in fin {
        assert!(!e.is_retryable(), "{e:?}");
    }
}

#[test]
fn raft_errors_travel_typed() {
    use openraft::error::{Fatal, RaftError};
    let r: PeerReply = Ok(PeerResponse::Raft(RaftResponse::Vote(Err(
        RaftError::Fatal(Fatal::Stopped),
    ))));
    let back: PeerReply = decode(&encode_reply(&r)).unwrap();
    match back {
        Ok(PeerResponse::Raft(RaftResponse::Vote(Err(RaftError::Fatal(Fatal::Stopped))))) => {}
        other => panic!("unexpected {other:?}"),
    }
}
