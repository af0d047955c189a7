//! Our requests: SUBSCRIBE_NAMESPACE (what the peer publishes) and SUBSCRIBE, each on a bidi
//! stream of ours, and the responses read back.

use std::collections::HashSet;
use std::sync::Arc;

use super::super::message::{Message, Namespace, Subscribe};
use super::super::params::{Filter, Params};
use super::super::{DecodeError, DoneCode, RequestCode, TerminationCode};
use super::control::virtual_stream;
use super::{CONTROL_PRIORITY, PeerEnd, Session, State, Step, groups};
use crate::model::{ErrorCode, InfoAsk, PeerEvent, path};
use crate::stream::{Dir, StreamId, Streams};

/// `path` (absolute) relative to `root` as a namespace tuple; `None` outside the root.
fn namespace(path_: &str, root: &str) -> Option<Namespace> {
    Some(
        path::strip_prefix(path_, root)?
            .split('/')
            .filter(|f| !f.is_empty())
            .map(|f| f.as_bytes().to_vec())
            .collect(),
    )
}

impl Session {
    /// Open a request stream, write `msg`, and read its responses as `state`.
    /// On 16 a request other than SUBSCRIBE_NAMESPACE goes on the control stream, under the
    /// virtual stream of its id, and only below the peer's MAX_REQUEST_ID.
    fn ask(&mut self, io: &mut dyn Streams, msg: &Message, state: State) -> Option<StreamId> {
        let id = if self.legacy() && !matches!(msg, Message::SubscribeNamespace { .. }) {
            let request = msg.request_id()?;
            if request >= self.peer_max_request {
                tracing::debug!(request, "request past the peer's MAX_REQUEST_ID");
                return None;
            }
            let control = self.peer_control?;
            self.write(io, control, msg, false);
            virtual_stream(request)
        } else {
            let id = io.open(Dir::Bi)?;
            io.set_priority(id, CONTROL_PRIORITY);
            self.write(io, id, msg, false);
            id
        };
        self.ins.insert(id, state);
        Some(id)
    }

    /// Ask the peer which broadcasts under `prefix` (absolute) it publishes:
    /// SUBSCRIBE_NAMESPACE, and [`PeerEvent::Announced`] for each NAMESPACE it answers.
    pub fn announce_interest(&mut self, io: &mut dyn Streams, prefix: &str) -> Option<StreamId> {
        let ns = namespace(prefix, &self.root)?;
        let msg = Message::SubscribeNamespace {
            request_id: self.request_id(),
            prefix: ns,
            options: 1,
            params: Params::default(),
        };
        let state = State::OurInterest {
            buf: Vec::new(),
            prefix: prefix.to_owned(),
            answered: false,
            active: HashSet::new(),
        };
        self.ask(io, &msg, state)
    }

    /// Responses to our SUBSCRIBE_NAMESPACE: REQUEST_OK or REQUEST_ERROR, then NAMESPACE and
    /// NAMESPACE_DONE with suffixes of the prefix. Its end ends every namespace it announced.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn our_interest(
        &mut self,
        io: &mut dyn Streams,
        id: StreamId,
        buf: Vec<u8>,
        prefix: String,
        mut answered: bool,
        mut active: HashSet<Arc<str>>,
        end: PeerEnd,
        events: &mut Vec<PeerEvent>,
    ) -> Result<Step, DecodeError> {
        let mut at = 0;
        let mut refused = false;
        while let Some((msg, used)) =
            Message::decode(&buf[at..], self.version, self.cfg.limits.max_message)?
        {
            at += used;
            let on = matches!(msg, Message::Namespace(_));
            match msg {
                Message::RequestOk { .. } if !answered => answered = true,
                Message::RequestError { code, reason, .. } if !answered => {
                    tracing::debug!(code, %reason, prefix, "namespace subscription refused");
                    refused = true;
                    break;
                }
                Message::Namespace(suffix) | Message::NamespaceDone(suffix) if answered => {
                    let rel = self.path_of(&suffix)?;
                    let rel = path::strip_prefix(&rel, &self.root).unwrap_or_default();
                    let full: Arc<str> = path::join(&prefix, rel, self.cfg.limits.max_path)
                        .map_err(|_| DecodeError::TooLong)?
                        .into();
                    let changed = if on {
                        active.insert(full.clone())
                    } else {
                        active.remove(&full)
                    };
                    if !changed && !on {
                        return Ok(Step::Close(
                            TerminationCode::PROTOCOL_VIOLATION,
                            "NAMESPACE_DONE before its NAMESPACE",
                        ));
                    }
                    if changed {
                        if let Some(step) = self.change_refused(&full, on) {
                            // What this request announced goes with it.
                            if on {
                                active.remove(&full);
                            } else {
                                active.insert(full.clone());
                            }
                            for p in active {
                                self.source(&p, false, events);
                            }
                            return Ok(step);
                        }
                        self.source(&full, on, events);
                    }
                }
                _ => {
                    return Ok(Step::Close(
                        TerminationCode::PROTOCOL_VIOLATION,
                        "unexpected response to SUBSCRIBE_NAMESPACE",
                    ));
                }
            }
        }
        if end == PeerEnd::Open && !refused {
            return Ok(Step::Keep(State::OurInterest {
                buf: buf[at..].to_vec(),
                prefix,
                answered,
                active,
            }));
        }
        for p in active {
            self.source(&p, false, events);
        }
        self.finish(io, id);
        Ok(Step::Done)
    }

    /// Subscribe to `track` of broadcast `path_` (absolute) from its largest object on;
    /// `None` outside the root or without a stream.
    pub fn subscribe(&mut self, io: &mut dyn Streams, path_: &str, track: &str) -> Option<u64> {
        let ns = namespace(path_, &self.root)?;
        let up = self.next_up;
        // A track the peer offered with PUBLISH: ask it to forward, on its own stream.
        let key: (Arc<str>, Arc<str>) = (path_.into(), track.into());
        if let Some(offer) = self.offers.get(&key)
            && offer.up.is_none()
        {
            let (stream, existing, alias) = (offer.stream, offer.request_id, offer.alias);
            let update = Message::RequestUpdate {
                request_id: self.request_id(),
                existing,
                params: Params {
                    forward: Some(true),
                    ..Params::default()
                },
            };
            self.write(io, stream, &update, false);
            self.next_up += 1;
            self.ups.insert(
                up,
                groups::Up {
                    stream,
                    alias: Some(alias),
                },
            );
            self.aliases.insert(alias, up);
            if let Some(o) = self.offers.get_mut(&key) {
                o.up = Some(up);
            }
            return Some(up);
        }
        let msg = Message::Subscribe(Subscribe {
            request_id: self.request_id(),
            namespace: ns,
            name: track.as_bytes().to_vec(),
            params: Params {
                forward: Some(true),
                subscriber_priority: Some(128),
                filter: Some(Filter::LargestObject),
                ..Params::default()
            },
        });
        let state = State::OurSubscribe {
            buf: Vec::new(),
            up,
        };
        let stream = self.ask(io, &msg, state)?;
        self.next_up += 1;
        self.ups.insert(
            up,
            groups::Up {
                stream,
                alias: None,
            },
        );
        Some(up)
    }

    /// Our subscription `up` is no longer wanted: the request is cancelled both ways.
    pub fn unsubscribe(&mut self, io: &mut dyn Streams, up: u64) {
        let Some(u) = self.ups.remove(&up) else {
            return;
        };
        if let Some(alias) = u.alias {
            self.aliases.remove(&alias);
        }
        // An offered track: back to forward 0, the offer stays.
        if let Some(offer) = self.offers.values_mut().find(|o| o.up == Some(up)) {
            offer.up = None;
            let (stream, existing) = (offer.stream, offer.request_id);
            let update = Message::RequestUpdate {
                request_id: self.request_id(),
                existing,
                params: Params {
                    forward: Some(false),
                    ..Params::default()
                },
            };
            self.write(io, stream, &update, false);
            return;
        }
        self.ins.remove(&u.stream);
        self.abandon(io, u.stream, true);
    }

    /// moq-transport has no TRACK_INFO: the defaults apply.
    pub fn ask_info(
        &mut self,
        _io: &mut dyn Streams,
        _path: &Arc<str>,
        _track: &Arc<str>,
    ) -> InfoAsk {
        InfoAsk::Unsupported
    }

    /// Responses to our SUBSCRIBE `up`: SUBSCRIBE_OK with the track alias, or REQUEST_ERROR;
    /// later PUBLISH_DONE, or the stream's end.
    pub(super) fn our_subscribe(
        &mut self,
        io: &mut dyn Streams,
        id: StreamId,
        buf: Vec<u8>,
        up: u64,
        end: PeerEnd,
        events: &mut Vec<PeerEvent>,
    ) -> Result<Step, DecodeError> {
        let mut at = 0;
        let mut ended = None;
        while let Some((msg, used)) =
            Message::decode(&buf[at..], self.version, self.cfg.limits.max_message)?
        {
            at += used;
            let answered = self.ups.get(&up).is_some_and(|u| u.alias.is_some());
            match msg {
                Message::SubscribeOk { alias, .. } if !answered => {
                    if self.aliases.contains_key(&alias) {
                        return Ok(Step::Close(
                            TerminationCode::DUPLICATE_TRACK_ALIAS,
                            "duplicate track alias",
                        ));
                    }
                    self.aliases.insert(alias, up);
                    if let Some(u) = self.ups.get_mut(&up) {
                        u.alias = Some(alias);
                    }
                }
                Message::RequestError { code, .. } if !answered => {
                    ended = Some(RequestCode::to_model(code));
                    break;
                }
                Message::PublishDone { status, .. } if answered => {
                    ended = Some(match status {
                        DoneCode::TRACK_ENDED | DoneCode::SUBSCRIPTION_ENDED => ErrorCode::CANCEL,
                        DoneCode::UNAUTHORIZED => ErrorCode::UNAUTHORIZED,
                        _ => ErrorCode::DROPPED,
                    });
                    break;
                }
                // The answer to an update we never send, or a GOAWAY for this request.
                Message::RequestOk { .. } | Message::Goaway { .. } => {}
                _ => {
                    return Ok(Step::Close(
                        TerminationCode::PROTOCOL_VIOLATION,
                        "unexpected response to SUBSCRIBE",
                    ));
                }
            }
        }
        let ended = ended.or(match end {
            PeerEnd::Open => None,
            PeerEnd::Fin => Some(ErrorCode::CANCEL),
            PeerEnd::Reset => Some(ErrorCode::DROPPED),
        });
        let Some(code) = ended else {
            return Ok(Step::Keep(State::OurSubscribe {
                buf: buf[at..].to_vec(),
                up,
            }));
        };
        if let Some(u) = self.ups.remove(&up) {
            if let Some(alias) = u.alias {
                self.aliases.remove(&alias);
            }
            events.push(PeerEvent::UpstreamEnded { up, code });
        }
        self.finish(io, id);
        Ok(Step::Done)
    }
}
