//! Starting a session: the version, the lite-01/02 SETUP exchange on the session stream, the
//! lite-05 SETUP stream, and what a session does once it is set up.

use super::{PeerEnd, PeerEvent, Session, State, Step, short};
use crate::lite::{
    ClientSetup, DataType, DecodeError, ErrorCode, Message, ProbeLevel, ServerSetup, SessionInfo,
    Setup, Version, decode_framed,
};
use crate::model::path;
use crate::stream::{Dir, StreamId, Streams};

impl Session {
    /// The transport is up and the version known, or left to the SETUP exchange (`None`).
    /// `root` is the broadcast path the transport fixed (a WebTransport server's URL path);
    /// without one, a raw QUIC server takes it from the lite-05 SETUP.
    pub fn start(
        &mut self,
        io: &mut dyn Streams,
        version: Option<Version>,
        root: Option<String>,
        events: &mut Vec<PeerEvent>,
    ) {
        self.version = version;
        self.legacy = version.is_none();
        if let Some(root) = root {
            self.root = root;
            self.root_fixed = true;
        }
        let server = self.cfg.server;
        match version {
            Some(Version::Lite05) => {
                let setup = Setup {
                    probe: ProbeLevel::None,
                    path: if server {
                        None
                    } else {
                        self.cfg.setup_path.clone().filter(|p| !p.is_empty())
                    },
                    role: self.cfg.role,
                    cost: None,
                    origin: self.cfg.origin,
                };
                if let Some(id) = io.open(Dir::Uni) {
                    self.write_msg(
                        io,
                        id,
                        |v, b| {
                            DataType::Setup.encode(v, b)?;
                            setup.encode(v, b)
                        },
                        true,
                    );
                }
                // A client need not wait for the server's SETUP; a server waits for the
                // client's, which carries the root.
                if !server {
                    self.set_ready(io, events);
                }
            }
            Some(_) => self.set_ready(io, events),
            None if !server => {
                let Some(id) = io.open(Dir::Bi) else {
                    return;
                };
                let versions = self.offered();
                let setup = ClientSetup {
                    versions: versions.iter().map(|v| v.code()).collect(),
                    parameters: Vec::new(),
                };
                self.session_stream = Some(id);
                self.ins.insert(
                    id,
                    State::SessionStream {
                        buf: Vec::new(),
                        setup_done: false,
                    },
                );
                self.write_msg(io, id, |v, b| setup.encode(v, b), false);
            }
            None => {}
        }
    }

    /// The versions a client offers in CLIENT_SETUP (the SETUP exchange knows only lite-01/02).
    fn offered(&self) -> Vec<Version> {
        if self.cfg.setup_versions.is_empty() {
            vec![Version::Lite02, Version::Lite01]
        } else {
            self.cfg.setup_versions.clone()
        }
    }

    /// The lite-01/02 session stream: the SETUP exchange, then SESSION_INFO messages, which
    /// are read and ignored. Its end ends the session.
    pub(super) fn session_stream(
        &mut self,
        io: &mut dyn Streams,
        id: StreamId,
        mut buf: Vec<u8>,
        mut setup_done: bool,
        end: PeerEnd,
        events: &mut Vec<PeerEvent>,
    ) -> Result<Step, DecodeError> {
        let max = self.cfg.limits.max_message;
        if !setup_done {
            let chosen = if self.cfg.server {
                let Some((setup, used)) = decode_framed::<ClientSetup>(&buf, Version::Lite02, max)?
                else {
                    return short(end, State::SessionStream { buf, setup_done });
                };
                buf.drain(..used);
                let Some(v) = Version::select(&setup.versions, &[Version::Lite02, Version::Lite01])
                else {
                    return Ok(Step::Close(ErrorCode::VERSION, "no common version"));
                };
                let reply = ServerSetup {
                    version: v.code(),
                    parameters: Vec::new(),
                };
                self.version = Some(v);
                self.write_msg(io, id, |v, b| reply.encode(v, b), false);
                v
            } else {
                let Some((setup, used)) = decode_framed::<ServerSetup>(&buf, Version::Lite02, max)?
                else {
                    return short(end, State::SessionStream { buf, setup_done });
                };
                buf.drain(..used);
                let offered = self.offered();
                let Some(v) = Version::from_code(setup.version)
                    .filter(|v| *v <= Version::Lite02 && offered.contains(v))
                else {
                    return Ok(Step::Close(
                        ErrorCode::VERSION,
                        "server chose a version we did not offer",
                    ));
                };
                v
            };
            self.version = Some(chosen);
            setup_done = true;
            self.set_ready(io, events);
        }
        let mut used_total = 0;
        while let Some((_, used)) =
            decode_framed::<SessionInfo>(&buf[used_total..], self.version(), max)?
        {
            used_total += used;
        }
        buf.drain(..used_total);
        if end != PeerEnd::Open {
            return Ok(Step::Close(ErrorCode::CANCEL, "cancelled"));
        }
        Ok(Step::Keep(State::SessionStream { buf, setup_done }))
    }

    /// The lite-05 SETUP stream. A server takes its root from SETUP Path (before any `?`) and
    /// its token from the `jwt` query parameter, unless the transport fixed them; then the
    /// session is set up.
    pub(super) fn setup_stream(
        &mut self,
        io: &mut dyn Streams,
        buf: Vec<u8>,
        end: PeerEnd,
        events: &mut Vec<PeerEvent>,
    ) -> Result<Step, DecodeError> {
        let max = self.cfg.limits.max_message;
        let Some((setup, _)) = decode_framed::<Setup>(&buf, self.version(), max)? else {
            return short(end, State::Setup { buf });
        };
        if std::mem::replace(&mut self.setup_seen, true) {
            return Ok(Step::Close(ErrorCode::PROTOCOL_VIOLATION, "second SETUP"));
        }
        if self.cfg.server {
            self.peer_role = setup.role;
            if !self.root_fixed {
                let raw = setup.path.unwrap_or_default();
                let (raw, query) = raw.split_once('?').unwrap_or((&raw, ""));
                self.root = path::normalize(raw, self.cfg.limits.max_path)?;
                let Some(token) = path::query_param(query, "jwt") else {
                    return Ok(Step::Close(ErrorCode::PROTOCOL_VIOLATION, "malformed jwt"));
                };
                self.token = token;
            }
            self.set_ready(io, events);
        }
        Ok(Step::Keep(State::Discard))
    }

    /// Setup is complete: requests may flow.
    pub(super) fn set_ready(&mut self, _io: &mut dyn Streams, events: &mut Vec<PeerEvent>) {
        if self.ready {
            return;
        }
        self.ready = true;
        events.push(PeerEvent::Ready);
    }
}
