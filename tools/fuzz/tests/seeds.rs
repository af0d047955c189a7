//! Writes the seed corpora under `corpus/<target>/` from real encodings made with the crate's
//! own encoders: `cargo test --release --test seeds -- --ignored`. Each file is laid out as its
//! target reads its input (see the doc comment at the top of each fuzz target).

use std::path::PathBuf;
use std::time::Duration;

use bytes::BytesMut;
use moq_relay::lite::{
    Announce, AnnounceInit, AnnounceOk, AnnounceRequest, AnnounceStatus, ClientSetup, ControlType,
    DataType, Datagram, Fetch, FrameHeader, Goaway, GroupHeader, GroupWriter, Message, Probe,
    ProbeLevel, Role, ServerSetup, SessionInfo, Setup, SetupValue, Subscribe, SubscribeOptions,
    SubscribeResponse, SubscribeUpdate, Track, TrackInfo, Version,
};
use moq_relay::web::{
    bidi_prefix, close_capsule, connect_request, control_stream, datagram_prefix, drain_capsule,
    goaway_frame, headers_frame, response, uni_prefix,
};
use moq_relay_fuzz::version_byte;

fn dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target)
}

fn write(target: &str, name: &str, bytes: &[u8]) {
    assert!(
        bytes.len() < 4096,
        "{target}/{name} is {} bytes",
        bytes.len()
    );
    let dir = dir(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// A 16-bit length and the bytes, as `Input::long_chunk` reads them.
fn long(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u16::try_from(bytes.len()).unwrap().to_be_bytes());
    out.extend_from_slice(bytes);
}

/// A length byte and the bytes, as `Input::chunk` reads them.
fn short(out: &mut Vec<u8>, bytes: &[u8]) {
    out.push(u8::try_from(bytes.len()).unwrap());
    out.extend_from_slice(bytes);
}

fn enc(m: &impl Message, v: Version) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    m.encode(v, &mut out).ok().map(|()| out)
}

const B_OPTIONS: SubscribeOptions = SubscribeOptions {
    priority: 2,
    ordered: true,
    max_latency: Duration::from_millis(500),
    start_group: Some(3),
    end_group: None,
};

fn subscribe() -> Subscribe {
    Subscribe {
        id: 0,
        broadcast: "demo".into(),
        track: "video".into(),
        options: B_OPTIONS,
    }
}

fn setup(path: Option<&str>) -> Setup {
    Setup {
        probe: ProbeLevel::Report,
        path: path.map(str::to_owned),
        role: Role::Both,
        cost: None,
        origin: 5,
    }
}

fn active(suffix: &str, hops: Vec<u64>) -> Announce {
    Announce {
        status: AnnounceStatus::Active,
        suffix: suffix.into(),
        hops,
    }
}

/// The wire bytes of message kind `kind` of the `lite_messages` target on `v`.
fn message(kind: u8, v: Version) -> Option<Vec<u8>> {
    let params = vec![
        (2, SetupValue::Varint(100)),
        (5, SetupValue::Bytes(b"moq-lite-rs".to_vec())),
    ];
    match kind {
        0 => enc(
            &ClientSetup {
                versions: vec![Version::Lite02.code(), Version::Lite01.code(), 0xff00_000e],
                parameters: params,
            },
            v,
        ),
        1 => enc(
            &ServerSetup {
                version: Version::Lite02.code(),
                parameters: params,
            },
            v,
        ),
        2 => enc(&SessionInfo { bitrate: 1_000_000 }, v),
        3 => enc(&setup(Some("/demo?jwt=abc")), v),
        4 => enc(
            &AnnounceRequest {
                prefix: "room".into(),
                exclude_hop: 9,
            },
            v,
        ),
        5 => enc(
            &AnnounceInit {
                suffixes: vec!["demo".into(), "a/b".into()],
            },
            v,
        ),
        6 => enc(
            &AnnounceOk {
                hop: 5,
                active_count: 2,
            },
            v,
        ),
        7 => enc(&active("demo", vec![5, 9]), v),
        8 => enc(&subscribe(), v),
        9 => enc(&SubscribeUpdate { options: B_OPTIONS }, v),
        10 => enc(
            &match v {
                Version::Lite05 => SubscribeResponse::Start(7),
                _ => SubscribeResponse::Ok(B_OPTIONS),
            },
            v,
        ),
        11 => enc(
            &Fetch {
                broadcast: "demo".into(),
                track: "video".into(),
                priority: 2,
                group: 7,
            },
            v,
        ),
        12 => enc(
            &Probe {
                bitrate: 1_000_000,
                rtt: Duration::from_millis(40),
            },
            v,
        ),
        13 => enc(
            &Goaway {
                uri: "https://other.test/".into(),
            },
            v,
        ),
        14 => enc(
            &Track {
                broadcast: "demo".into(),
                track: "video".into(),
            },
            v,
        ),
        15 => enc(&TrackInfo::default(), v),
        16 => enc(
            &GroupHeader {
                subscribe_id: 1,
                sequence: 300,
            },
            v,
        ),
        17 => {
            let mut out = Vec::new();
            ControlType::Subscribe.encode(v, &mut out).ok()?;
            Some(out)
        }
        18 => {
            let mut out = Vec::new();
            DataType::Group.encode(v, &mut out).ok()?;
            Some(out)
        }
        19 => {
            let mut out = Vec::new();
            for (delta, size) in [(0, 5), (-40, 300), (1 << 40, 0)] {
                FrameHeader {
                    timestamp_delta: delta,
                    size,
                }
                .encode(v, &mut out)
                .ok()?;
            }
            Some(out)
        }
        20 => {
            let mut out = Vec::new();
            Datagram {
                subscribe_id: 0,
                group_sequence: 7,
                timestamp: 1000,
                payload: bytes::Bytes::from_static(b"hi"),
            }
            .encode(v, &mut out)
            .ok()?;
            Some(out)
        }
        _ => {
            let mut out = Vec::new();
            ControlType::Subscribe.encode(v, &mut out).ok()?;
            subscribe().encode(v, &mut out).ok()?;
            ControlType::Probe.encode(v, &mut out).ok()?;
            Probe {
                bitrate: 500,
                rtt: Duration::ZERO,
            }
            .encode(v, &mut out)
            .ok()?;
            Some(out)
        }
    }
}

fn lite_messages() {
    for kind in 0..22u8 {
        // The oldest and the newest version that has the message.
        let have: Vec<(Version, Vec<u8>)> = Version::ALL
            .iter()
            .filter_map(|&v| message(kind, v).map(|w| (v, w)))
            .collect();
        let mut picked = vec![have.first(), have.last()];
        picked.dedup();
        for (v, wire) in picked.into_iter().flatten() {
            let mut seed = vec![version_byte(*v), kind, 0];
            seed.extend_from_slice(wire);
            write("lite_messages", &format!("k{kind:02}-{v:?}"), &seed);
        }
    }
}

/// A group stream (or, without the header, a fetch answer) of three frames on `v`.
fn group_wire(v: Version, header: bool) -> Vec<u8> {
    let writer_v = v;
    let mut writer = GroupWriter::new(writer_v);
    let mut out = BytesMut::new();
    if header {
        writer
            .header(
                &GroupHeader {
                    subscribe_id: 0,
                    sequence: 7,
                },
                &mut out,
            )
            .unwrap();
    }
    for (payload, ts) in [
        (&b"hello"[..], 1000),
        (&b""[..], 1040),
        (&[0xaa; 40][..], 990),
    ] {
        writer.frame(payload.len() as u64, ts, &mut out).unwrap();
        out.extend_from_slice(payload);
    }
    out.to_vec()
}

fn lite_group() {
    for v in Version::ALL {
        for mode in [0u8, 1, 2] {
            let mut seed = vec![version_byte(v), mode];
            short(&mut seed, &[3, 1, 7, 2, 30]);
            seed.extend_from_slice(&group_wire(v, mode & 1 == 0));
            write("lite_group", &format!("{v:?}-m{mode}"), &seed);
        }
    }
}

/// Operations of the `lite_session` target.
mod op {
    use super::long;

    pub fn open(out: &mut Vec<u8>, bidi: bool, bytes: &[u8]) {
        out.extend_from_slice(&[0, u8::from(bidi)]);
        long(out, bytes);
    }

    /// Bytes on the `back`-th newest stream; `end`: 0 open, 2 FIN.
    pub fn bytes(out: &mut Vec<u8>, back: u8, bytes: &[u8], end: u8) {
        out.extend_from_slice(&[3, back, 0]);
        long(out, bytes);
        out.push(end);
    }

    pub fn fin(out: &mut Vec<u8>, back: u8) {
        out.extend_from_slice(&[9, back]);
    }
}

/// The session's operations in the `lite_session` target's encoding: names index its NAMES
/// ("demo" is 1, "video" 4).
fn lite_session() {
    // (version byte of the target, version of the encodings)
    let versions = [
        (0u8, Version::Lite02),
        (1, Version::Lite05),
        (2, Version::Lite04),
        (3, Version::Lite03),
        (4, Version::Lite02),
        (5, Version::Lite01),
    ];
    for (vb, v) in versions {
        let legacy = vb == 0;
        // The server: the client sets up, asks for announcements and subscribes.
        for small in [false, true] {
            let mut s = vec![1 | (vb << 1) | if small { 0x10 } else { 0 }, 9, 0];
            if legacy {
                let cs = ClientSetup {
                    versions: vec![Version::Lite02.code(), Version::Lite01.code()],
                    parameters: vec![],
                };
                op::open(&mut s, true, &enc(&cs, v).unwrap());
            }
            if v == Version::Lite05 {
                let mut b = Vec::new();
                DataType::Setup.encode(v, &mut b).unwrap();
                setup(Some("/room")).encode(v, &mut b).unwrap();
                op::open(&mut s, false, &b);
            }
            let mut b = Vec::new();
            ControlType::Announce.encode(v, &mut b).unwrap();
            let req = AnnounceRequest {
                prefix: String::new(),
                exclude_hop: 0,
            };
            req.encode(v, &mut b).unwrap();
            op::open(&mut s, true, &b);
            // announce "demo" active with hop 3, then answer the announce request.
            s.extend_from_slice(&[17, 1, 1, 3, 1, 18, 0]);
            let mut b = Vec::new();
            ControlType::Subscribe.encode(v, &mut b).unwrap();
            subscribe().encode(v, &mut b).unwrap();
            op::open(&mut s, true, &b);
            // accept it, deliver a group of two frames, done; then end the subscription.
            s.extend_from_slice(&[16, 0, 0]);
            s.extend_from_slice(&[15, 0, 7, 2, 10, 3, b'a', b'b', b'c', 20, 1, b'd', 1, 0]);
            s.extend_from_slice(&[16, 0, 3, 0, 1, 7]);
            if v == Version::Lite05 {
                let mut b = Vec::new();
                ControlType::Fetch.encode(v, &mut b).unwrap();
                let f = Fetch {
                    broadcast: "demo".into(),
                    track: "video".into(),
                    priority: 1,
                    group: 7,
                };
                f.encode(v, &mut b).unwrap();
                op::open(&mut s, true, &b);
                s.extend_from_slice(&[20, 0, 7, 1, 10, 2, b'h', b'i', 1, 1]);
                let mut b = Vec::new();
                ControlType::Track.encode(v, &mut b).unwrap();
                let t = Track {
                    broadcast: "demo".into(),
                    track: "video".into(),
                };
                t.encode(v, &mut b).unwrap();
                op::open(&mut s, true, &b);
                s.extend_from_slice(&[19, 0, 2, 1, 0, 100, 0, 90]);
            }
            let name = format!("server-{vb}{}", if small { "-small" } else { "" });
            write("lite_session", &name, &s);
        }

        // The client: it subscribes and asks for announcements; the server answers and
        // sends a group.
        let mut s = vec![vb << 1, 9, 0];
        if legacy {
            let ss = ServerSetup {
                version: Version::Lite02.code(),
                parameters: vec![],
            };
            op::bytes(&mut s, 0, &enc(&ss, v).unwrap(), 0);
        }
        if v == Version::Lite05 {
            let mut b = Vec::new();
            DataType::Setup.encode(v, &mut b).unwrap();
            setup(None).encode(v, &mut b).unwrap();
            op::open(&mut s, false, &b);
        }
        // subscribe to demo/video and hear it accepted.
        s.extend_from_slice(&[12, 1, 4]);
        let ok = match v {
            Version::Lite05 => SubscribeResponse::Start(0),
            _ => SubscribeResponse::Ok(SubscribeOptions::default()),
        };
        op::bytes(&mut s, 0, &enc(&ok, v).unwrap(), 0);
        let mut b = Vec::new();
        DataType::Group.encode(v, &mut b).unwrap();
        b.extend_from_slice(&group_wire(v, true));
        op::open(&mut s, false, &b);
        op::fin(&mut s, 0);
        // announce interest in everything, and hear of demo.
        s.extend_from_slice(&[13, 0]);
        let mut b = Vec::new();
        match v {
            Version::Lite01 | Version::Lite02 => AnnounceInit {
                suffixes: vec!["demo".into()],
            }
            .encode(v, &mut b)
            .unwrap(),
            Version::Lite05 => {
                let ok = AnnounceOk {
                    hop: 5,
                    active_count: 1,
                };
                ok.encode(v, &mut b).unwrap();
                active("demo", vec![]).encode(v, &mut b).unwrap();
            }
            _ => active("demo", vec![5]).encode(v, &mut b).unwrap(),
        }
        op::bytes(&mut s, 0, &b, 0);
        // ask for track info, then unsubscribe.
        s.extend_from_slice(&[21, 1, 4, 14, 0]);
        write("lite_session", &format!("client-{vb}"), &s);
    }
}

fn web_frames() {
    let fin = 0x80;
    let cuts: &[u8] = &[5, 1, 9, 2];
    let seed = |mode: u8, body: &[u8]| {
        let mut s = vec![mode];
        short(&mut s, cuts);
        s.extend_from_slice(body);
        s
    };
    let mut client_control = control_stream(false)[1..].to_vec();
    client_control.extend_from_slice(&goaway_frame(8));
    write("web_frames", "control-server", &seed(0, &client_control));
    let mut server_control = control_stream(true)[1..].to_vec();
    server_control.extend_from_slice(&goaway_frame(4));
    write("web_frames", "control-client", &seed(1, &server_control));

    let mut req = connect_request(
        "relay.test:4443",
        "/room/a?jwt=abc",
        &["moq-lite-05", "moq-lite-03"],
    )
    .to_vec();
    write("web_frames", "connect", &seed(2, &req));
    req.extend_from_slice(&drain_capsule());
    req.extend_from_slice(&close_capsule(7, "bye"));
    write("web_frames", "connect-capsules-fin", &seed(2 | fin, &req));

    let mut resp = response(200, Some("moq-lite-05")).to_vec();
    write("web_frames", "response", &seed(3, &resp));
    resp.extend_from_slice(&close_capsule(0, ""));
    write("web_frames", "response-capsule-fin", &seed(3 | fin, &resp));
    write(
        "web_frames",
        "response-404",
        &seed(3 | fin, &response(404, None)),
    );

    let mut heads = uni_prefix(0).to_vec();
    heads.extend_from_slice(&bidi_prefix(4));
    write("web_frames", "headers-uni", &seed(4, &heads));
    write("web_frames", "headers-bidi", &seed(4, &bidi_prefix(0)));
    let mut dgram = datagram_prefix(0).to_vec();
    dgram.extend_from_slice(b"payload");
    write("web_frames", "datagram", &seed(4, &dgram));

    // Fields of our own HEADERS frames: an even count is read as a request, odd a response.
    let fields = |list: &[(&str, &str)]| {
        let mut s = vec![5];
        short(&mut s, cuts);
        s.push(list.len() as u8);
        for (n, v) in list {
            short(&mut s, n.as_bytes());
            short(&mut s, v.as_bytes());
        }
        s
    };
    let request = [
        (":method", "CONNECT"),
        (":protocol", "webtransport"),
        (":scheme", "https"),
        (":authority", "relay.test"),
        (":path", "/room"),
        ("wt-available-protocols", "\"moq-lite-05\""),
    ];
    write("web_frames", "fields-request", &fields(&request));
    write(
        "web_frames",
        "fields-response",
        &fields(&[(":status", "200")]),
    );
    write(
        "web_frames",
        "fields-response-3",
        &fields(&[
            (":status", "200"),
            ("wt-protocol", "\"moq-lite-05\""),
            ("sec-webtransport-http3-draft", "draft02"),
        ]),
    );

    let mut s = vec![6];
    short(&mut s, cuts);
    short(&mut s, b"relay.test");
    short(&mut s, b"/a/../b?jwt=x+y");
    s.push(2);
    short(&mut s, b"moq-lite-05");
    short(&mut s, b"moq-lite-04");
    s.extend_from_slice(&200u16.to_be_bytes());
    s.push(1);
    short(&mut s, b"moq-lite-05");
    write("web_frames", "encoders", &s);
    // Check the fields seed really is a request: a HEADERS frame.
    assert!(!headers_frame(&request).is_empty());
}

fn web_session() {
    // Server: the client's control stream, its CONNECT, WebTransport streams, a close.
    let mut s = vec![1];
    op::open(&mut s, false, &control_stream(false));
    let req = connect_request("relay.test:4443", "/room?jwt=abc", &["moq-lite-05"]);
    op::open(&mut s, true, &req);
    let mut uni = uni_prefix(0).to_vec();
    uni.extend_from_slice(b"\x01lite bytes");
    op::open(&mut s, false, &uni);
    let mut bidi = bidi_prefix(0).to_vec();
    bidi.extend_from_slice(b"\x02more");
    op::open(&mut s, true, &bidi);
    // The moq layer opens a uni stream; then the CONNECT stream (3 back) gets a close capsule.
    s.extend_from_slice(&[6, 0, 0]);
    op::bytes(&mut s, 3, &close_capsule(5, "done"), 2);
    write("web_session", "server", &s);

    // Server: WebTransport streams that come before the CONNECT, held until it opens.
    let mut s = vec![1];
    op::open(&mut s, false, &uni);
    op::open(&mut s, true, &req);
    op::open(&mut s, false, &control_stream(false));
    write("web_session", "server-early", &s);

    // Client: the server's control stream, the 200 on our CONNECT, a stream of the session.
    for offered in [0u8, 1, 3] {
        let mut s = vec![offered << 2];
        op::open(&mut s, false, &control_stream(true));
        // Our streams were opened first: the CONNECT is 1 back from the server's control.
        op::bytes(&mut s, 1, &response(200, Some("moq-lite-05")), 0);
        op::open(&mut s, false, &uni);
        s.extend_from_slice(&[6, 1, 1]);
        op::bytes(&mut s, 3, &drain_capsule(), 0);
        write("web_session", &format!("client-{offered}"), &s);
    }
    let mut s = vec![0];
    op::bytes(&mut s, 0, &response(403, None), 2);
    write("web_session", "client-refused", &s);
}

fn cid_router() {
    let mut short_hdr = vec![0x40];
    short_hdr.extend_from_slice(&[7, 1, 2, 3, 4, 5, 6, 7]);
    short_hdr.extend_from_slice(&[0xee; 20]);
    let mut initial = vec![0xc0, 0, 0, 0, 1, 8, 5, 1, 2, 3, 4, 5, 6, 7, 8];
    initial.extend_from_slice(&[9, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0x40, 0x10]);
    for cores in [0u16, 1, 2, 3, 16] {
        for (name, d) in [("short", &short_hdr), ("initial", &initial)] {
            let mut s = cores.to_be_bytes().to_vec();
            s.extend_from_slice(d);
            write("cid_router", &format!("{name}-{cores}"), &s);
        }
    }
    write("cid_router", "truncated", &[0, 2, 0xc0, 0, 0, 0, 1, 8]);
}

fn cid_generator() {
    for (cores, core) in [(1u8, 0u8), (2, 1), (3, 2), (16, 5), (0, 0), (255, 254)] {
        let mut s = vec![cores, core, 4];
        s.extend_from_slice(&[0x11; 8]);
        write("cid_generator", &format!("{cores}-{core}"), &s);
    }
}

#[test]
#[ignore = "writes corpus/: run by hand when encodings change"]
fn write_seeds() {
    lite_messages();
    lite_group();
    lite_session();
    web_frames();
    web_session();
    cid_router();
    cid_generator();
}
