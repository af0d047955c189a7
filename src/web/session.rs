//! The HTTP/3 + WebTransport session of one connection, sans IO, in both roles.
//!
//! [`WebSession`] owns everything of HTTP/3 a moq session over WebTransport needs: our SETTINGS,
//! the client's CONNECT and its response, the peer's control and QPACK streams, the headers of
//! WebTransport streams, streams that arrive before the session opens (held, bounded), capsules
//! and the end of the CONNECT stream. It writes only through [`Streams`] and reports upward as
//! [`WebEvent`]s.
//!
//! The caller reads quinn and routes: a peer stream it accepts goes to [`WebSession::accept`],
//! and the bytes of every stream the session [`owns`](WebSession::owns) go to
//! [`WebSession::on_stream`]. Once a WebTransport stream's header is read the stream is handed
//! over in a [`WebEvent::Stream`] with the bytes after the header, and the session forgets it:
//! later bytes go straight from quinn to the moq layer.

use std::collections::{HashMap, VecDeque};

use bytes::{Buf, Bytes};

use super::capsule::Capsule;
use super::connect::{
    ConnectProgress, ConnectReader, Request, ResponseProgress, ResponseReader, choose_protocol,
    connect_request, response,
};
use super::error::{
    Error, H3_EXCESSIVE_LOAD, H3_NO_ERROR, H3_REQUEST_REJECTED, H3_STREAM_CREATION_ERROR,
    WT_BUFFERED_STREAM_REJECTED,
};
use super::settings::{ControlReader, control_stream};
use super::stream::{
    BidiStream, PeerStreams, UniStream, bidi_header, bidi_prefix, uni_header, uni_prefix,
};
use crate::stream::{Dir, End, StreamId, Streams};

/// WebTransport streams held while the session opens (a client buffers a few)...
pub const MAX_EARLY_STREAMS: usize = 16;
/// ... and the bytes each may hold meanwhile.
pub const MAX_EARLY_BYTES: usize = 256 * 1024;

/// The priority of the server's CONNECT stream: its answer and capsules go before any data.
pub const CONNECT_PRIORITY: i32 = i32::MAX;

/// Longest HTTP/3 stream header: a stream type and a session id, two varints.
const MAX_H3_HEADER: usize = 16;

/// What the session tells the layer above.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebEvent {
    /// Server: a CONNECT for `root` (normalised URL path) with `jwt` (the URL's `jwt` query
    /// parameter); `protocol` is the WT-Protocol we would choose. Nothing is answered until
    /// the layer above calls [`WebSession::accept_connect`] or [`WebSession::reject_connect`].
    Connect {
        root: String,
        protocol: Option<String>,
        jwt: Option<String>,
    },
    /// The session is open: a server answered the CONNECT with 200, or a client's CONNECT got
    /// a 2xx. `root` is the normalised URL path (on a client, the path it asked for);
    /// `protocol` the WT-Protocol chosen, if any; `jwt` the URL's `jwt` query parameter.
    Open {
        root: String,
        protocol: Option<String>,
        jwt: Option<String>,
    },
    /// A WebTransport stream of the session, handed over: `chunks` are its bytes after the
    /// header (as received, not copied beyond the header's own bytes) and `end` how the read
    /// left it. The session forgets the stream; read the rest from quinn.
    Stream {
        id: StreamId,
        bidi: bool,
        chunks: Vec<Bytes>,
        end: End,
    },
    /// The peer ended the session: a close capsule (its code and reason), a FIN (code 0) or a
    /// reset (the reset code) of the CONNECT stream. The connection is being closed with
    /// H3_NO_ERROR.
    Closed { code: u64, reason: String },
    /// The server answered our CONNECT with this non-2xx status; the connection is being
    /// closed with H3_NO_ERROR.
    Refused { status: u16 },
    /// The peer broke HTTP/3: the stream was refused with the error's code or, for a connection
    /// error, the connection is being closed with it.
    Failed(Error),
}

/// Turns the root of a CONNECT path ([`Request::root`]) into the session's root, or refuses it
/// (the CONNECT is answered 414). The layer above knows what a valid root is.
pub type RootCheck = Box<dyn Fn(&str) -> Option<String>>;

enum Role {
    Server {
        /// The WT-Protocol values we speak.
        protocols: Vec<String>,
        root: RootCheck,
    },
    Client {
        authority: String,
        path: String,
        protocols: Vec<String>,
    },
}

/// A stream the session reads.
enum Reading {
    /// A peer stream's type (and WebTransport session id), up to [`MAX_H3_HEADER`] bytes.
    Header { bidi: bool, buf: Vec<u8> },
    /// The peer's control stream.
    Control { reader: ControlReader, buf: Vec<u8> },
    /// A QPACK stream: read and dropped, but never allowed to end.
    Critical,
    /// Server: the CONNECT request, then the client's capsules.
    Connect { reader: ConnectReader, buf: Vec<u8> },
    /// Client: the response to our CONNECT, then the server's capsules.
    Response {
        reader: ResponseReader,
        buf: Vec<u8>,
    },
}

/// What a session step writes through and reports to.
struct Cx<'a> {
    io: &'a mut dyn Streams,
    out: &'a mut Vec<WebEvent>,
}

/// A server's CONNECT that waits for the layer above to accept or reject it.
struct Asked {
    id: StreamId,
    root: String,
    protocol: Option<String>,
    jwt: Option<String>,
}

/// A WebTransport stream that arrived before the session opened: its bytes wait, bounded.
struct Early {
    id: StreamId,
    bidi: bool,
    session: u64,
    chunks: Vec<Bytes>,
    fin: bool,
}

/// The HTTP/3 + WebTransport session of one connection (one WebTransport session at most).
pub struct WebSession {
    role: Role,
    /// Bytes an HTTP/3 stream may buffer before its reader consumes them.
    max_buffer: usize,
    peer: PeerStreams,
    /// The CONNECT stream, whose id is the WebTransport session id.
    connect: Option<StreamId>,
    /// The CONNECT was answered with 2xx: WebTransport streams may flow.
    open: bool,
    reading: HashMap<StreamId, Reading>,
    /// In arrival order; at most [`MAX_EARLY_STREAMS`].
    early: Vec<Early>,
    asked: Option<Asked>,
}

impl WebSession {
    /// A server's session. `protocols` are the WT-Protocol values we speak (the client's order
    /// of preference picks among them); `root` checks the CONNECT's root; an HTTP/3 stream may
    /// buffer `max_buffer` bytes.
    pub fn server(
        protocols: impl IntoIterator<Item = impl Into<String>>,
        root: impl Fn(&str) -> Option<String> + 'static,
        max_buffer: usize,
    ) -> Self {
        let protocols = protocols.into_iter().map(Into::into).collect();
        Self::new(
            Role::Server {
                protocols,
                root: Box::new(root),
            },
            max_buffer,
        )
    }

    /// A client's session, which sends a CONNECT for `path` (sent as given, query included)
    /// to `authority`, offering `protocols` as WT-Available-Protocols (none leaves the version
    /// to the moq SETUP exchange).
    pub fn client(
        authority: &str,
        path: &str,
        protocols: impl IntoIterator<Item = impl Into<String>>,
        max_buffer: usize,
    ) -> Self {
        let protocols = protocols.into_iter().map(Into::into).collect();
        Self::new(
            Role::Client {
                authority: authority.to_owned(),
                path: path.to_owned(),
                protocols,
            },
            max_buffer,
        )
    }

    fn new(role: Role, max_buffer: usize) -> Self {
        Self {
            role,
            max_buffer,
            peer: PeerStreams::default(),
            connect: None,
            open: false,
            reading: HashMap::new(),
            early: Vec::new(),
            asked: None,
        }
    }

    pub fn is_server(&self) -> bool {
        matches!(self.role, Role::Server { .. })
    }

    /// The WebTransport session id, once the session is open.
    pub fn session_id(&self) -> Option<u64> {
        let connect = self.connect?;
        self.open.then_some(u64::from(connect))
    }

    /// The header a stream we open for the moq session starts with; `None` until the session
    /// is open.
    pub fn stream_prefix(&self, dir: Dir) -> Option<Bytes> {
        let session = self.session_id()?;
        Some(match dir {
            Dir::Uni => uni_prefix(session),
            Dir::Bi => bidi_prefix(session),
        })
    }

    /// `io` as the moq session on top writes through it: each stream it opens starts with the
    /// WebTransport header, so the machine above never knows which transport it is on.
    pub fn streams<'a>(&'a self, io: &'a mut dyn Streams) -> SessionStreams<'a> {
        SessionStreams { io, web: self }
    }

    /// Whether the bytes of `id` are the session's to read ([`Self::on_stream`]) rather than
    /// the moq layer's.
    pub fn owns(&self, id: StreamId) -> bool {
        self.reading.contains_key(&id) || self.early.iter().any(|e| e.id == id)
    }

    /// The connection is up: our SETTINGS at once (Chromium waits for them before sending its
    /// CONNECT), and a client's CONNECT. Neither stream is ever finished.
    pub fn start(&mut self, io: &mut dyn Streams) {
        let Some(control) = io.open(Dir::Uni) else {
            return;
        };
        io.write(control, vec![control_stream(self.is_server())], false);
        let Role::Client {
            authority,
            path,
            protocols,
        } = &self.role
        else {
            return;
        };
        let Some(id) = io.open(Dir::Bi) else {
            return;
        };
        let protocols: Vec<&str> = protocols.iter().map(String::as_str).collect();
        let request = connect_request(authority, path, &protocols);
        self.connect = Some(id);
        self.reading.insert(
            id,
            Reading::Response {
                reader: ResponseReader::new(),
                buf: Vec::new(),
            },
        );
        io.write(id, vec![request], false);
    }

    /// A new peer stream (as quinn hands them out): the session reads its header.
    pub fn accept(&mut self, id: StreamId) {
        let bidi = id.dir() == Dir::Bi;
        let buf = Vec::new();
        self.reading.insert(id, Reading::Header { bidi, buf });
    }

    /// New bytes (and how the read left the stream) on a stream the session owns; a stream it
    /// does not own is ignored.
    pub fn on_stream(
        &mut self,
        io: &mut dyn Streams,
        id: StreamId,
        chunks: Vec<Bytes>,
        end: End,
    ) -> Vec<WebEvent> {
        let mut out = Vec::new();
        let cx = &mut Cx { io, out: &mut out };
        if let Some(i) = self.early.iter().position(|e| e.id == id) {
            self.hold(cx, i, chunks, end);
        } else if let Some(state) = self.reading.remove(&id)
            && let Some(state) = self.step(cx, id, state, chunks, end)
        {
            self.reading.insert(id, state);
        }
        out
    }

    /// Run one stream's state over new bytes; the state to keep, if any.
    fn step(
        &mut self,
        cx: &mut Cx<'_>,
        id: StreamId,
        state: Reading,
        chunks: Vec<Bytes>,
        end: End,
    ) -> Option<Reading> {
        match state {
            Reading::Header { bidi, buf } => self.header(cx, id, bidi, buf, chunks, end),
            Reading::Control { reader, buf } => self.control(cx, id, reader, buf, &chunks, end),
            Reading::Critical if end != End::Open => {
                self.fail(cx, id, Error::closed_critical_stream());
                None
            }
            Reading::Critical => Some(Reading::Critical),
            Reading::Connect { reader, buf } => self.request(cx, id, reader, buf, &chunks, end),
            Reading::Response { reader, buf } => self.response(cx, id, reader, buf, &chunks, end),
        }
    }

    /// A peer stream's header: what the stream is, and where the rest of it goes.
    fn header(
        &mut self,
        cx: &mut Cx<'_>,
        id: StreamId,
        bidi: bool,
        mut buf: Vec<u8>,
        chunks: Vec<Bytes>,
        end: End,
    ) -> Option<Reading> {
        let tail = header_bytes(&mut buf, chunks);
        let parsed = if bidi {
            bidi_header(&buf).map(|h| h.map(|(kind, used)| (Err(kind), used)))
        } else {
            uni_header(&buf).map(|h| h.map(|(kind, used)| (Ok(kind), used)))
        };
        let (kind, used) = match parsed {
            Ok(Some(header)) => header,
            // RFC 9114 §6.2: a stream closed or reset before its header is tolerated.
            Ok(None) if end != End::Open => return None,
            Ok(None) => return Some(Reading::Header { bidi, buf }),
            Err(e) => {
                self.fail(cx, id, e);
                return None;
            }
        };
        let rest = after_header(&buf, used, tail);
        match kind {
            Ok(kind) => self.uni(cx, id, kind, rest, end),
            Err(BidiStream::WebTransport { session }) => {
                self.web_stream(cx, id, true, session, rest, end);
                None
            }
            Err(BidiStream::Request) => {
                if !self.is_server() || self.connect.is_some() {
                    // One session per connection (WEBTRANSPORT_MAX_SESSIONS = 1).
                    self.refuse(cx, id, H3_REQUEST_REJECTED);
                    return None;
                }
                self.connect = Some(id);
                let reader = ConnectReader::new();
                self.request(cx, id, reader, Vec::new(), &rest, end)
            }
        }
    }

    /// A peer uni stream whose type is read.
    fn uni(
        &mut self,
        cx: &mut Cx<'_>,
        id: StreamId,
        kind: UniStream,
        rest: Vec<Bytes>,
        end: End,
    ) -> Option<Reading> {
        if let Err(e) = self.peer.accept(kind) {
            self.fail(cx, id, e);
            return None;
        }
        let state = match kind {
            UniStream::Control => Reading::Control {
                reader: ControlReader::new(self.is_server()),
                buf: Vec::new(),
            },
            UniStream::QpackEncoder | UniStream::QpackDecoder => Reading::Critical,
            UniStream::WebTransport { session } => {
                self.web_stream(cx, id, false, session, rest, end);
                return None;
            }
            UniStream::Push if self.is_server() => {
                let e = Error::connection(H3_STREAM_CREATION_ERROR, "push stream from a client");
                self.fail(cx, id, e);
                return None;
            }
            UniStream::Push | UniStream::Unknown(_) => {
                self.refuse(cx, id, H3_STREAM_CREATION_ERROR);
                return None;
            }
        };
        self.step(cx, id, state, rest, end)
    }

    /// A WebTransport stream header: ours (handed over), early (held until the session
    /// opens), or refused.
    fn web_stream(
        &mut self,
        cx: &mut Cx<'_>,
        id: StreamId,
        bidi: bool,
        session: u64,
        chunks: Vec<Bytes>,
        end: End,
    ) {
        if self.session_id() == Some(session) {
            cx.out.push(WebEvent::Stream {
                id,
                bidi,
                chunks,
                end,
            });
        } else if !self.open && self.early.len() < MAX_EARLY_STREAMS {
            self.early.push(Early {
                id,
                bidi,
                session,
                chunks: Vec::new(),
                fin: false,
            });
            self.hold(cx, self.early.len() - 1, chunks, end);
        } else {
            self.refuse(cx, id, WT_BUFFERED_STREAM_REJECTED);
        }
    }

    /// More bytes of early stream `i`: held while under [`MAX_EARLY_BYTES`].
    fn hold(&mut self, cx: &mut Cx<'_>, i: usize, chunks: Vec<Bytes>, end: End) {
        let early = &mut self.early[i];
        if early.fin {
            // Finished: a later read of the gone stream brings nothing.
            return;
        }
        early.chunks.extend(chunks);
        if early.chunks.iter().map(Bytes::len).sum::<usize>() > MAX_EARLY_BYTES {
            let id = self.early.remove(i).id;
            self.refuse(cx, id, WT_BUFFERED_STREAM_REJECTED);
            return;
        }
        match end {
            End::Open => {}
            End::Fin => self.early[i].fin = true,
            // Given up by the peer before anyone read it.
            End::Reset(_) => {
                self.early.remove(i);
            }
        }
    }

    /// The peer's control stream: SETTINGS, GOAWAY and frames to ignore; it must never end.
    fn control(
        &mut self,
        cx: &mut Cx<'_>,
        id: StreamId,
        mut reader: ControlReader,
        mut buf: Vec<u8>,
        chunks: &[Bytes],
        end: End,
    ) -> Option<Reading> {
        let fed = self
            .extend(&mut buf, chunks)
            .and_then(|()| reader.feed(&buf));
        match fed {
            Ok(used) => {
                buf.drain(..used);
            }
            Err(e) => {
                self.fail(cx, id, e);
                return None;
            }
        }
        if end != End::Open {
            self.fail(cx, id, Error::closed_critical_stream());
            return None;
        }
        Some(Reading::Control { reader, buf })
    }

    /// Server: the CONNECT stream, the request and then the client's capsules.
    fn request(
        &mut self,
        cx: &mut Cx<'_>,
        id: StreamId,
        mut reader: ConnectReader,
        mut buf: Vec<u8>,
        chunks: &[Bytes],
        end: End,
    ) -> Option<Reading> {
        if let Err(e) = self.extend(&mut buf, chunks) {
            self.fail(cx, id, e);
            return None;
        }
        loop {
            let (used, progress) = match reader.feed(&buf) {
                Ok(step) => step,
                Err(e) => {
                    self.fail(cx, id, e);
                    return None;
                }
            };
            buf.drain(..used);
            match progress {
                ConnectProgress::NeedMore => break,
                ConnectProgress::Request(req) => {
                    if !self.answer(cx, id, req) {
                        return None;
                    }
                }
                ConnectProgress::Reject(r) => {
                    tracing::debug!(status = r.status, reason = r.reason, "CONNECT refused");
                    self.connect = None;
                    cx.io.write(id, vec![r.response()], true);
                    cx.io.stop(id, H3_NO_ERROR);
                    return None;
                }
                ConnectProgress::Capsule(c) => {
                    if !self.capsule(cx, c) {
                        return None;
                    }
                }
            }
        }
        match end {
            End::Open => return Some(Reading::Connect { reader, buf }),
            End::Fin => match reader.finish(buf.len()) {
                Err(e) => self.fail(cx, id, e),
                Ok(()) => self.closed(cx, 0, String::new()),
            },
            End::Reset(code) => self.closed(cx, code, "CONNECT stream reset".into()),
        }
        None
    }

    /// The CONNECT request: a root refused by the check is answered 414 (false: the stream is
    /// no longer read); else the layer above is asked ([`WebEvent::Connect`]) and answers with
    /// [`Self::accept_connect`] or [`Self::reject_connect`].
    fn answer(&mut self, cx: &mut Cx<'_>, id: StreamId, req: Request) -> bool {
        let Role::Server { protocols, root } = &self.role else {
            return false;
        };
        let Some(root) = root(&req.root) else {
            cx.io.write(id, vec![response(414, None)], true);
            return false;
        };
        let supported: Vec<&str> = protocols.iter().map(String::as_str).collect();
        let protocol = choose_protocol(&req.protocols, &supported);
        tracing::debug!(
            root = %root,
            offered = ?req.protocols,
            chosen = ?protocol,
            "webtransport session"
        );
        cx.out.push(WebEvent::Connect {
            root: root.clone(),
            protocol: protocol.clone(),
            jwt: req.jwt.clone(),
        });
        self.asked = Some(Asked {
            id,
            root,
            protocol,
            jwt: req.jwt,
        });
        true
    }

    /// Answer the CONNECT that [`WebEvent::Connect`] reported with 200: the session opens
    /// ([`WebEvent::Open`], then the streams held meanwhile).
    pub fn accept_connect(&mut self, io: &mut dyn Streams) -> Vec<WebEvent> {
        let mut out = Vec::new();
        let Some(a) = self.asked.take() else {
            return out;
        };
        let cx = &mut Cx { io, out: &mut out };
        cx.io.set_priority(a.id, CONNECT_PRIORITY);
        cx.io
            .write(a.id, vec![response(200, a.protocol.as_deref())], false);
        self.opened(cx, a.root, a.protocol, a.jwt);
        out
    }

    /// Answer the CONNECT that [`WebEvent::Connect`] reported with `status` (4xx): no session
    /// opens, and the CONNECT stream is no longer read.
    pub fn reject_connect(&mut self, io: &mut dyn Streams, status: u16) {
        let Some(a) = self.asked.take() else {
            return;
        };
        io.write(a.id, vec![response(status, None)], true);
        io.stop(a.id, H3_NO_ERROR);
        self.reading.remove(&a.id);
        self.connect = None;
    }

    /// Client: the response to our CONNECT, then the server's capsules.
    fn response(
        &mut self,
        cx: &mut Cx<'_>,
        id: StreamId,
        mut reader: ResponseReader,
        mut buf: Vec<u8>,
        chunks: &[Bytes],
        end: End,
    ) -> Option<Reading> {
        if let Err(e) = self.extend(&mut buf, chunks) {
            self.fail(cx, id, e);
            return None;
        }
        loop {
            let (used, progress) = match reader.feed(&buf) {
                Ok(step) => step,
                Err(e) => {
                    self.fail(cx, id, e);
                    return None;
                }
            };
            buf.drain(..used);
            match progress {
                ResponseProgress::NeedMore => break,
                ResponseProgress::Response(r) if r.is_success() => {
                    let root = match &self.role {
                        Role::Client { path, .. } => path.clone(),
                        Role::Server { .. } => String::new(),
                    };
                    self.opened(cx, root, r.protocol, None);
                }
                ResponseProgress::Response(r) => {
                    let reason = format!("CONNECT refused with status {}", r.status);
                    cx.io.close(H3_NO_ERROR, reason.as_bytes());
                    cx.out.push(WebEvent::Refused { status: r.status });
                    return None;
                }
                ResponseProgress::Capsule(c) => {
                    if !self.capsule(cx, c) {
                        return None;
                    }
                }
            }
        }
        if end != End::Open {
            self.closed(cx, 0, "CONNECT stream ended".into());
            return None;
        }
        Some(Reading::Response { reader, buf })
    }

    /// The session is open: say so, then hand over the streams held meanwhile (those of
    /// another session are refused).
    fn opened(
        &mut self,
        cx: &mut Cx<'_>,
        root: String,
        protocol: Option<String>,
        jwt: Option<String>,
    ) {
        self.open = true;
        cx.out.push(WebEvent::Open {
            root,
            protocol,
            jwt,
        });
        let session = self.session_id();
        for early in std::mem::take(&mut self.early) {
            if Some(early.session) != session {
                self.refuse(cx, early.id, WT_BUFFERED_STREAM_REJECTED);
                continue;
            }
            cx.out.push(WebEvent::Stream {
                id: early.id,
                bidi: early.bidi,
                chunks: early.chunks,
                end: if early.fin { End::Fin } else { End::Open },
            });
        }
    }

    /// A capsule on the CONNECT stream; false when it ended the session.
    fn capsule(&mut self, cx: &mut Cx<'_>, c: Capsule) -> bool {
        match c {
            Capsule::CloseWebTransportSession { code, reason } => {
                self.closed(cx, u64::from(code), reason);
                false
            }
            // Nothing to wind down: a relay session ends when its peer leaves.
            Capsule::DrainWebTransportSession => true,
        }
    }

    /// The peer ended the WebTransport session, and with it the connection.
    fn closed(&mut self, cx: &mut Cx<'_>, code: u64, reason: String) {
        tracing::debug!(code, reason, "webtransport session closed by peer");
        cx.io.close(H3_NO_ERROR, reason.as_bytes());
        cx.out.push(WebEvent::Closed { code, reason });
    }

    /// An HTTP/3 violation: refuse the stream or close the connection, with the HTTP/3 code.
    fn fail(&mut self, cx: &mut Cx<'_>, id: StreamId, e: Error) {
        tracing::debug!(stream = %id, error = %e, "http/3 error");
        if e.is_connection() {
            cx.io.close(e.code, e.reason.as_bytes());
        } else {
            self.refuse(cx, id, e.code);
        }
        cx.out.push(WebEvent::Failed(e));
    }

    /// Stop reading a stream and reset our half (if we have one), with an HTTP/3 code.
    fn refuse(&mut self, cx: &mut Cx<'_>, id: StreamId, code: u64) {
        self.reading.remove(&id);
        cx.io.stop(id, code);
        if id.dir() == Dir::Bi {
            cx.io.reset(id, code);
        }
    }

    /// Append `chunks` to a stream's buffer, within [`Self::max_buffer`].
    fn extend(&self, buf: &mut Vec<u8>, chunks: &[Bytes]) -> Result<(), Error> {
        for c in chunks {
            if buf.len() + c.len() > self.max_buffer {
                return Err(Error::connection(
                    H3_EXCESSIVE_LOAD,
                    "HTTP/3 stream buffered beyond its limit",
                ));
            }
            buf.extend_from_slice(c);
        }
        Ok(())
    }
}

/// Move up to the header's worth of bytes into `buf`; the rest stays in its chunks, uncopied.
fn header_bytes(buf: &mut Vec<u8>, chunks: Vec<Bytes>) -> VecDeque<Bytes> {
    let mut rest = VecDeque::from(chunks);
    while buf.len() < MAX_H3_HEADER {
        let Some(front) = rest.front_mut() else { break };
        let n = (MAX_H3_HEADER - buf.len()).min(front.len());
        buf.extend_from_slice(&front[..n]);
        front.advance(n);
        if front.is_empty() {
            rest.pop_front();
        }
    }
    rest
}

/// What follows a parsed header of `used` bytes: the rest of `buf`, then the untouched chunks.
fn after_header(buf: &[u8], used: usize, tail: VecDeque<Bytes>) -> Vec<Bytes> {
    let mut rest = Vec::with_capacity(tail.len() + 1);
    if used < buf.len() {
        rest.push(Bytes::copy_from_slice(&buf[used..]));
    }
    rest.extend(tail);
    rest
}

/// The streams of a WebTransport session for the protocol it carries: [`WebSession::streams`].
pub struct SessionStreams<'a> {
    io: &'a mut dyn Streams,
    web: &'a WebSession,
}

impl Streams for SessionStreams<'_> {
    fn side(&self) -> crate::stream::Side {
        self.io.side()
    }

    fn open(&mut self, dir: Dir) -> Option<StreamId> {
        let id = self.io.open(dir)?;
        if let Some(prefix) = self.web.stream_prefix(dir) {
            self.io.write(id, vec![prefix], false);
        }
        Some(id)
    }

    fn write(&mut self, id: StreamId, chunks: Vec<Bytes>, fin: bool) {
        self.io.write(id, chunks, fin);
    }

    fn reset(&mut self, id: StreamId, code: u64) {
        self.io.reset(id, code);
    }

    fn stop(&mut self, id: StreamId, code: u64) {
        self.io.stop(id, code);
    }

    fn set_priority(&mut self, id: StreamId, priority: i32) {
        self.io.set_priority(id, priority);
    }

    fn close(&mut self, code: u64, reason: &[u8]) {
        self.io.close(code, reason);
    }

    fn backlog(&self, id: StreamId) -> Option<usize> {
        self.io.backlog(id)
    }
}
