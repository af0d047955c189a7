//! Byte-exact codec tests, from the drafts' field definitions.

use bytes::Bytes;

use super::coding::tests::hex;
use super::data::{SubgroupEvent, SubgroupHeader, SubgroupReader, encode_object, is_subgroup};
use super::message::{FetchKind, Message, Subscribe};
use super::params::{Filter, Kvp, Location, Params, token_of, token_value};
use super::{DecodeError, Version, Version::*};

fn enc(m: &Message, v: Version) -> Vec<u8> {
    let mut b = Vec::new();
    m.encode(v, &mut b).unwrap();
    b
}

fn dec(b: &[u8], v: Version) -> Result<Option<(Message, usize)>, DecodeError> {
    Message::decode(b, v, 4096)
}

/// `m` encodes to `bytes` in `v` and decodes back; every proper prefix is incomplete.
fn exact(m: &Message, v: Version, bytes: &str) {
    let b = hex(bytes);
    assert_eq!(enc(m, v), b, "{v:?} {m:?}");
    assert_eq!(dec(&b, v), Ok(Some((m.clone(), b.len()))));
    for cut in 0..b.len() {
        assert_eq!(dec(&b[..cut], v), Ok(None), "{v:?} cut at {cut}");
    }
}

fn ns(parts: &[&str]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| p.as_bytes().to_vec()).collect()
}

fn subscribe(id: u64) -> Subscribe {
    Subscribe {
        request_id: id,
        namespace: ns(&["demo"]),
        name: b"video".to_vec(),
        params: Params {
            forward: Some(true),
            subscriber_priority: Some(5),
            ..Params::default()
        },
    }
}

#[test]
fn setup_on_its_own_stream_with_options_by_delta() {
    let m = Message::Setup(vec![
        (0x01, Kvp::Bytes(b"/demo".to_vec())),
        (0x07, Kvp::Bytes(b"x".to_vec())),
    ]);
    // 0x2F00 in the leading-ones form is `af00`; PATH (delta 1), MOQT_IMPLEMENTATION (delta 6).
    for v in [Draft17, Draft18, Draft19] {
        exact(&m, v, "af00 000a 01 05 2f64656d6f 06 01 78");
    }
    let m = Message::ClientSetup(vec![
        (0x02, Kvp::Int(100)),
        (0x07, Kvp::Bytes(b"x".to_vec())),
    ]);
    exact(&m, Draft15, "20 0007 02 02 4064 07 01 78");
    exact(&m, Draft16, "20 0007 02 02 4064 05 01 78");
    let mut b = Vec::new();
    assert!(m.encode(Draft17, &mut b).is_err());
    // Written in type order whatever the order given (16+ write type deltas).
    let shuffled = Message::ClientSetup(vec![
        (0x07, Kvp::Bytes(b"x".to_vec())),
        (0x02, Kvp::Int(100)),
    ]);
    assert_eq!(enc(&shuffled, Draft16), hex("20 0007 02 02 4064 05 01 78"));
}

#[test]
fn subscribe_in_every_draft() {
    let m = Message::Subscribe(subscribe(2));
    // Params: FORWARD=1 and SUBSCRIBER_PRIORITY=5: absolute KVPs on 15, deltas on 16, deltas
    // with one raw byte each on 17+; 17 carries a Required Request ID Delta of 0.
    exact(
        &m,
        Draft15,
        "03 0012 02 01 04 64656d6f 05 766964656f 02 10 01 20 05",
    );
    exact(
        &m,
        Draft16,
        "03 0012 02 01 04 64656d6f 05 766964656f 02 10 01 10 05",
    );
    exact(
        &m,
        Draft17,
        "03 0013 02 00 01 04 64656d6f 05 766964656f 02 10 01 10 05",
    );
    exact(
        &m,
        Draft18,
        "03 0012 02 01 04 64656d6f 05 766964656f 02 10 01 10 05",
    );
    // A filter is length-prefixed in every draft; AbsoluteRange's end is a delta from 17.
    let mut s = subscribe(0);
    s.params = Params {
        filter: Some(Filter::AbsoluteRange(
            Location {
                group: 10,
                object: 0,
            },
            12,
        )),
        ..Params::default()
    };
    let m = Message::Subscribe(s);
    exact(
        &m,
        Draft16,
        "03 0014 00 01 04 64656d6f 05 766964656f 01 21 04 04 0a 00 0c",
    );
    exact(
        &m,
        Draft18,
        "03 0014 00 01 04 64656d6f 05 766964656f 01 21 04 04 0a 00 02",
    );
}

#[test]
fn responses_lose_their_request_id_on_17() {
    // On 17+ the stream names the request: the id is not written, and reads back as 0.
    let ok = |request_id| Message::SubscribeOk {
        request_id,
        alias: 7,
        params: Params::default(),
        props: Vec::new(),
    };
    exact(&ok(2), Draft16, "04 0003 02 07 00");
    exact(&ok(0), Draft18, "04 0002 07 00");
    assert_eq!(enc(&ok(2), Draft18), enc(&ok(0), Draft18));
    // Track properties end the message (16+): kept as they came.
    let with_props = Message::SubscribeOk {
        request_id: 0,
        alias: 1,
        params: Params::default(),
        props: hex("22 02"),
    };
    exact(&with_props, Draft19, "04 0004 01 00 22 02");
    let err = |request_id| Message::RequestError {
        request_id,
        code: 0x10,
        retry: 0,
        reason: "no".into(),
    };
    exact(&err(2), Draft15, "05 0005 02 10 02 6e6f");
    exact(&err(2), Draft16, "05 0006 02 10 00 02 6e6f");
    exact(&err(0), Draft17, "05 0005 10 00 02 6e6f");
    // 18+: REDIRECT (0x34) is followed by where to; ours is empty (this session, this track).
    let redirect = Message::RequestError {
        request_id: 0,
        code: 0x34,
        retry: 0,
        reason: String::new(),
    };
    exact(&redirect, Draft18, "05 0006 34 00 00 00 00 00");
    let ok = |request_id| Message::RequestOk {
        request_id,
        params: Params::default(),
        props: Vec::new(),
    };
    exact(&ok(4), Draft16, "07 0002 04 00");
    exact(&ok(0), Draft17, "07 0001 00");
    exact(&ok(0), Draft19, "07 0001 00");
    let done = |request_id| Message::PublishDone {
        request_id,
        status: 2,
        streams: 3,
        reason: String::new(),
    };
    exact(&done(2), Draft16, "0b 0004 02 02 03 00");
    exact(&done(0), Draft18, "0b 0003 02 03 00");
}

#[test]
fn namespaces_and_their_requests() {
    let sn = Message::SubscribeNamespace {
        request_id: 4,
        prefix: ns(&["demo"]),
        options: 1,
        params: Params::default(),
    };
    exact(&sn, Draft16, "11 0009 04 01 04 64656d6f 01 00");
    exact(&sn, Draft17, "11 000a 04 00 01 04 64656d6f 01 00");
    exact(&sn, Draft18, "50 0008 04 01 04 64656d6f 00");
    exact(
        &Message::Namespace(ns(&["bbb"])),
        Draft18,
        "08 0005 01 03 626262",
    );
    exact(
        &Message::NamespaceDone(ns(&["bbb"])),
        Draft16,
        "0e 0005 01 03 626262",
    );
    let pn = Message::PublishNamespace {
        request_id: 2,
        namespace: ns(&["demo", "a"]),
        params: Params::default(),
    };
    exact(&pn, Draft19, "06 000a 02 02 04 64656d6f 01 61 00");
    let done15 = Message::PublishNamespaceDone {
        request_id: 0,
        namespace: ns(&["demo"]),
    };
    exact(&done15, Draft15, "09 0006 01 04 64656d6f");
    let done16 = Message::PublishNamespaceDone {
        request_id: 2,
        namespace: Vec::new(),
    };
    exact(&done16, Draft16, "09 0001 02");
    // An empty prefix is allowed from 17 (SUBSCRIBE_NAMESPACE: from 16).
    let all = Message::SubscribeNamespace {
        request_id: 0,
        prefix: Vec::new(),
        options: 1,
        params: Params::default(),
    };
    exact(&all, Draft19, "50 0003 00 00 00");
    assert_eq!(
        dec(&hex("11 0003 00 00 00"), Draft15),
        Err(DecodeError::InvalidNamespace)
    );
}

#[test]
fn goaway_fetch_publish() {
    exact(
        &Message::Goaway {
            uri: String::new(),
            timeout: 0,
        },
        Draft16,
        "10 0001 00",
    );
    exact(
        &Message::Goaway {
            uri: "x".into(),
            timeout: 5000,
        },
        Draft17,
        "10 0004 01 78 9388",
    );
    let f = Message::Fetch {
        request_id: 6,
        kind: FetchKind::Standalone {
            namespace: ns(&["demo"]),
            name: b"v".to_vec(),
            start: Location {
                group: 3,
                object: 0,
            },
            end: Location {
                group: 4,
                object: 0,
            },
        },
        params: Params::default(),
    };
    exact(
        &f,
        Draft18,
        "16 000f 06 01 01 04 64656d6f 01 76 03 00 04 00 00",
    );
    let j = Message::Fetch {
        request_id: 8,
        kind: FetchKind::Joining {
            absolute: false,
            request: 6,
            start: 1,
        },
        params: Params::default(),
    };
    exact(&j, Draft17, "16 0006 08 00 02 06 01 00");
    let p = Message::Publish {
        request_id: 1,
        namespace: ns(&["demo"]),
        name: b"v".to_vec(),
        alias: 9,
        params: Params {
            forward: Some(true),
            ..Params::default()
        },
        props: Vec::new(),
    };
    exact(&p, Draft18, "1d 000d 01 01 04 64656d6f 01 76 09 01 10 01");
    let ok = Message::PublishOk {
        request_id: 0,
        params: Params::default(),
    };
    exact(&ok, Draft17, "1e 0001 00");
    let mut b = Vec::new();
    assert!(
        ok.encode(Draft18, &mut b).is_err(),
        "18 answers with REQUEST_OK"
    );
}

#[test]
fn malformed_and_oversize_messages() {
    // A body with a byte left over, and one that ends early.
    assert_eq!(
        dec(&hex("0b 0004 02 03 00 ff"), Draft18),
        Err(DecodeError::BadLength)
    );
    assert_eq!(
        dec(&hex("0b 0002 02 03"), Draft18),
        Err(DecodeError::BadLength)
    );
    // Past the limit at once, before the body is there.
    assert_eq!(
        Message::decode(&hex("03 1000"), Draft18, 4095),
        Err(DecodeError::TooLarge)
    );
    // Types that the draft does not have.
    assert_eq!(
        dec(&hex("15 0001 05"), Draft17),
        Err(DecodeError::UnexpectedMessage(0x15))
    );
    assert_eq!(
        dec(&hex("50 0003 00 00 00"), Draft17),
        Err(DecodeError::UnexpectedMessage(0x50))
    );
    assert_eq!(
        dec(&hex("1e 0001 00"), Draft18),
        Err(DecodeError::UnexpectedMessage(0x1e))
    );
    // 17+: a parameter with no defined encoding cannot be skipped.
    assert_eq!(
        dec(&hex("07 0003 01 4f 00"), Draft18),
        Err(DecodeError::UnknownParameter(0x4f))
    );
    // 16: an unknown odd KVP is skipped by its length.
    assert_eq!(
        dec(&hex("07 0005 04 01 3f 01 00"), Draft16)
            .unwrap()
            .unwrap()
            .0,
        Message::RequestOk {
            request_id: 4,
            params: Params::default(),
            props: Vec::new()
        }
    );
    // FORWARD other than 0 or 1.
    assert_eq!(
        dec(&hex("07 0003 01 10 02"), Draft18),
        Err(DecodeError::InvalidValue)
    );
}

#[test]
fn tokens_carried_in_full() {
    let v = token_value("a.b.c", Draft18);
    assert_eq!(v, hex("03 00 612e622e63"));
    assert_eq!(token_of(&v, Draft18), Ok(Some("a.b.c".into())));
    assert_eq!(token_of(&hex("02 05"), Draft18), Ok(None));
    assert_eq!(
        token_of(&hex("07"), Draft18),
        Err(DecodeError::KeyValueFormatting)
    );
}

#[test]
fn subgroup_types() {
    for v in Version::ALL {
        assert!(is_subgroup(0x18, v));
        assert!(is_subgroup(0x10, v));
        assert!(!is_subgroup(0x16, v), "mode 0b11");
        assert!(!is_subgroup(0x05, v));
        assert!(!is_subgroup(0x110, v));
        assert_eq!(is_subgroup(0x38, v), v >= Draft15);
        assert_eq!(is_subgroup(0x58, v), v >= Draft18);
    }
}

/// Every event of a stream read as `chunks`.
fn read_all(v: Version, chunks: &[&[u8]]) -> Result<Vec<SubgroupEvent>, DecodeError> {
    let mut r = SubgroupReader::new(v, 1 << 20);
    let mut out = Vec::new();
    for c in chunks {
        r.push(Bytes::copy_from_slice(c));
        while let Some(e) = r.poll()? {
            out.push(e);
        }
    }
    r.finish()?;
    Ok(out)
}

/// Payload chunks joined, so that events compare whatever the cut.
fn joined(events: Vec<SubgroupEvent>) -> Vec<SubgroupEvent> {
    let mut out: Vec<SubgroupEvent> = Vec::new();
    for e in events {
        if let (SubgroupEvent::Payload(b), Some(SubgroupEvent::Payload(prev))) =
            (&e, out.last_mut())
        {
            let mut both = prev.to_vec();
            both.extend_from_slice(b);
            *prev = Bytes::from(both);
            continue;
        }
        out.push(e);
    }
    out
}

#[test]
fn a_subgroup_stream_round_trips_at_every_cut() {
    for v in [Draft16, Draft17, Draft18] {
        let h = SubgroupHeader::ours(v, 7, 300, 128);
        let mut b = Vec::new();
        h.encode(v, &mut b).unwrap();
        for payload in [&b"hello"[..], b"", b"world"] {
            encode_object(v, payload.len() as u64, &mut b).unwrap();
            b.extend_from_slice(payload);
        }
        let want = vec![
            SubgroupEvent::Header(h),
            SubgroupEvent::Object {
                id: 0,
                size: 5,
                status: 0,
            },
            SubgroupEvent::Payload(Bytes::from_static(b"hello")),
            SubgroupEvent::ObjectEnd,
            SubgroupEvent::Object {
                id: 1,
                size: 0,
                status: 0,
            },
            SubgroupEvent::ObjectEnd,
            SubgroupEvent::Object {
                id: 2,
                size: 5,
                status: 0,
            },
            SubgroupEvent::Payload(Bytes::from_static(b"world")),
            SubgroupEvent::ObjectEnd,
        ];
        assert_eq!(read_all(v, &[&b]), Ok(want.clone()));
        for cut in 1..b.len() {
            let got = read_all(v, &[&b[..cut], &b[cut..]]).unwrap();
            assert_eq!(joined(got), want, "{v:?} cut {cut}");
            // A FIN at the cut is a stream cut short, unless it falls between objects.
            if let Ok(early) = read_all(v, &[&b[..cut]]) {
                assert!(matches!(
                    early.last(),
                    Some(SubgroupEvent::ObjectEnd | SubgroupEvent::Header(_))
                ));
            }
        }
    }
    // 18: FIRST_OBJECT set in the type we write.
    let mut b = Vec::new();
    SubgroupHeader::ours(Draft18, 1, 2, 3)
        .encode(Draft18, &mut b)
        .unwrap();
    assert_eq!(b, hex("58 01 02 03"));
}

#[test]
fn objects_with_properties_gaps_and_status() {
    // Type 0x39 (15+): properties on every object, default priority (no priority byte),
    // END_OF_GROUP; object 0 with 2 bytes of properties, then object 3 (delta 2), then an
    // End of Group status.
    let b = hex("39 05 09 00 02 aabb 01 41  02 00 01 42  00 00 00 03");
    let got = read_all(Draft16, &[&b]).unwrap();
    assert_eq!(
        got,
        vec![
            SubgroupEvent::Header(SubgroupHeader {
                kind: 0x39,
                alias: 5,
                group: 9,
                subgroup: None,
                priority: None
            }),
            SubgroupEvent::Object {
                id: 0,
                size: 1,
                status: 0
            },
            SubgroupEvent::Payload(Bytes::from_static(b"A")),
            SubgroupEvent::ObjectEnd,
            SubgroupEvent::Object {
                id: 3,
                size: 1,
                status: 0
            },
            SubgroupEvent::Payload(Bytes::from_static(b"B")),
            SubgroupEvent::ObjectEnd,
            SubgroupEvent::Object {
                id: 4,
                size: 0,
                status: 3
            },
        ]
    );
    // Explicit subgroup id (mode 0b10).
    let b = hex("14 05 09 02 80");
    assert!(matches!(
        read_all(Draft16, &[&b]).unwrap()[0],
        SubgroupEvent::Header(SubgroupHeader {
            subgroup: Some(2),
            priority: Some(0x80),
            ..
        })
    ));
    // An object past the limit.
    let mut r = SubgroupReader::new(Draft18, 4);
    r.push(Bytes::from(hex("18 01 02 03 00 05")));
    assert!(matches!(r.poll(), Ok(Some(SubgroupEvent::Header(_)))));
    assert_eq!(r.poll(), Err(DecodeError::FrameTooLarge));
}
