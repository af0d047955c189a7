//! The wire machine of a connection, whichever protocol it speaks: moq-lite, or IETF
//! moq-transport. The one place that tells them apart; everything above sees one surface.

use std::sync::Arc;

use bytes::Bytes;

use crate::ietf;
use crate::lite;
use crate::lite::session::Config;
use crate::model::{Delivery, ErrorCode, Frame, Group, InfoAsk, PeerEvent, TrackInfo};
use crate::stream::{Dir, End, StreamId, Streams};

/// What an ALPN, or a WebTransport subprotocol, says the session speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// A moq-lite version, or `None` for the SETUP exchange (`moql`, or none on WebTransport).
    Lite(Option<lite::Version>),
    Ietf(ietf::Version),
}

/// The drafts this relay runs sessions for.
pub const IETF_VERSIONS: [ietf::Version; 4] = [
    ietf::Version::Draft19,
    ietf::Version::Draft18,
    ietf::Version::Draft17,
    ietf::Version::Draft16,
];

impl Protocol {
    /// `None` for an ALPN we do not speak.
    pub fn from_alpn(alpn: &str) -> Option<Self> {
        if alpn == lite::Version::LEGACY_ALPN {
            return Some(Self::Lite(None));
        }
        if let Some(v) = lite::Version::from_alpn(alpn) {
            return Some(Self::Lite(Some(v)));
        }
        ietf::Version::from_alpn(alpn)
            .filter(|v| IETF_VERSIONS.contains(v))
            .map(Self::Ietf)
    }

    /// Every ALPN (and WebTransport protocol) we take, moq-lite first.
    pub fn alpns() -> Vec<&'static str> {
        let mut all: Vec<&'static str> = lite::Version::ALPNS.to_vec();
        all.extend(IETF_VERSIONS.map(ietf::Version::alpn));
        all
    }
}

/// One connection's wire machine. The IETF machine is boxed: it is the larger, and a moq-lite
/// session, the common case, should not pay for it; the moq-lite one stays inline.
#[allow(clippy::large_enum_variant)]
pub enum Wire {
    Lite(lite::session::Session),
    Ietf(Box<ietf::session::Session>),
}

macro_rules! each {
    ($self:expr, $w:ident => $e:expr) => {
        match $self {
            Wire::Lite($w) => $e,
            Wire::Ietf($w) => $e,
        }
    };
}

impl Wire {
    pub fn new(cfg: Config) -> Self {
        Self::Lite(lite::session::Session::new(cfg))
    }

    /// Start the session in `protocol`; `webtransport`: it rides a WebTransport session.
    pub fn start(
        &mut self,
        io: &mut dyn Streams,
        protocol: Protocol,
        root: Option<String>,
        webtransport: bool,
        events: &mut Vec<PeerEvent>,
    ) {
        match protocol {
            Protocol::Lite(v) => {
                if let Self::Lite(w) = self {
                    w.start(io, v, root, events);
                }
            }
            Protocol::Ietf(v) => {
                let Self::Lite(lite) = self else { return };
                let cfg = lite.config();
                let mut w = ietf::session::Session::new(ietf::session::Config {
                    server: cfg.server,
                    setup_path: cfg.setup_path.clone(),
                    webtransport,
                    limits: cfg.limits,
                });
                w.start(io, v, root, events);
                *self = Self::Ietf(Box::new(w));
            }
        }
    }

    pub fn is_server(&self) -> bool {
        each!(self, w => w.is_server())
    }

    pub fn is_ready(&self) -> bool {
        each!(self, w => w.is_ready())
    }

    /// The version's code (moq-lite's SETUP codes, `0xff0000NN` for the drafts).
    pub fn version_code(&self) -> u64 {
        each!(self, w => w.version().code())
    }

    pub fn root(&self) -> &str {
        each!(self, w => w.root())
    }

    pub fn token(&self) -> Option<&str> {
        each!(self, w => w.token())
    }

    /// What the peer declared it does (lite-05 SETUP); moq-transport declares nothing.
    pub fn peer_role(&self) -> lite::Role {
        match self {
            Self::Lite(w) => w.peer_role(),
            Self::Ietf(_) => lite::Role::Both,
        }
    }

    pub fn accepts(&self, dir: Dir) -> bool {
        each!(self, w => w.accepts(dir))
    }

    pub fn open_peer(&mut self, id: StreamId) {
        each!(self, w => w.open_peer(id))
    }

    pub fn reads(&self, id: StreamId) -> bool {
        each!(self, w => w.reads(id))
    }

    pub fn on_stream(
        &mut self,
        io: &mut dyn Streams,
        id: StreamId,
        chunks: Vec<Bytes>,
        end: End,
        now_ms: u64,
        events: &mut Vec<PeerEvent>,
    ) {
        each!(self, w => w.on_stream(io, id, chunks, end, now_ms, events))
    }

    pub fn lost(&mut self) -> Vec<PeerEvent> {
        each!(self, w => w.lost())
    }

    pub fn streams_read(&self) -> usize {
        each!(self, w => w.streams_read())
    }

    pub fn subscriptions(&self) -> usize {
        each!(self, w => w.subscriptions())
    }

    pub fn upstream_subscriptions(&self) -> usize {
        each!(self, w => w.upstream_subscriptions())
    }

    pub fn decode_errors(&self) -> u64 {
        each!(self, w => w.decode_errors())
    }

    pub fn announce_requests(&self) -> usize {
        each!(self, w => w.announce_requests())
    }

    pub fn announce_interest(&mut self, io: &mut dyn Streams, prefix: &str) -> Option<StreamId> {
        each!(self, w => w.announce_interest(io, prefix))
    }

    pub fn subscribe(&mut self, io: &mut dyn Streams, path: &str, track: &str) -> Option<u64> {
        each!(self, w => w.subscribe(io, path, track))
    }

    pub fn unsubscribe(&mut self, io: &mut dyn Streams, up: u64) {
        each!(self, w => w.unsubscribe(io, up))
    }

    pub fn ask_info(&mut self, io: &mut dyn Streams, path: &Arc<str>, track: &Arc<str>) -> InfoAsk {
        each!(self, w => w.ask_info(io, path, track))
    }

    pub fn announce_start<'a>(
        &mut self,
        io: &mut dyn Streams,
        request: StreamId,
        prefix: &str,
        exclude_hop: u64,
        active: impl IntoIterator<Item = (&'a Arc<str>, &'a [u64])>,
    ) {
        each!(self, w => w.announce_start(io, request, prefix, exclude_hop, active))
    }

    pub fn announce(&mut self, io: &mut dyn Streams, path: &Arc<str>, hops: &[u64], active: bool) {
        each!(self, w => w.announce(io, path, hops, active))
    }

    pub fn accept_subscribe(&mut self, io: &mut dyn Streams, id: u64) -> bool {
        each!(self, w => w.accept_subscribe(io, id))
    }

    pub fn refuse_subscribe(&mut self, io: &mut dyn Streams, id: u64, code: ErrorCode) {
        each!(self, w => w.refuse_subscribe(io, id, code))
    }

    pub fn answer_info(
        &mut self,
        io: &mut dyn Streams,
        request: StreamId,
        info: Result<TrackInfo, ErrorCode>,
    ) {
        each!(self, w => w.answer_info(io, request, info))
    }

    pub fn answer_fetch(
        &mut self,
        io: &mut dyn Streams,
        request: StreamId,
        frames: Option<&[Arc<Frame>]>,
    ) {
        each!(self, w => w.answer_fetch(io, request, frames))
    }

    pub fn refuse(&mut self, io: &mut dyn Streams, request: StreamId, code: ErrorCode) {
        each!(self, w => w.refuse(io, request, code))
    }

    pub fn deliver(&mut self, io: &mut dyn Streams, sub: u64, group: &Group) -> Delivery {
        each!(self, w => w.deliver(io, sub, group))
    }

    pub fn abort_group(&mut self, io: &mut dyn Streams, sub: u64, seq: u64, code: ErrorCode) {
        each!(self, w => w.abort_group(io, sub, seq, code))
    }

    pub fn end_subscription(
        &mut self,
        io: &mut dyn Streams,
        sub: u64,
        code: ErrorCode,
        latest: Option<u64>,
    ) {
        each!(self, w => w.end_subscription(io, sub, code, latest))
    }

    pub fn restart(&mut self, sub: u64) {
        each!(self, w => w.restart(sub))
    }

    /// The peer sent STOP_SENDING on `id`.
    pub fn stopped(&mut self, io: &mut dyn Streams, id: StreamId, events: &mut Vec<PeerEvent>) {
        match self {
            Self::Lite(w) => w.stopped(io, id),
            Self::Ietf(w) => w.stopped(io, id, events),
        }
    }
}
