//! A Media over QUIC relay: one pinned io_uring event loop per core driving sans-IO quinn-proto.
//!
//! Modules, bottom up:
//! - [`stream`]: the stream contract wire machines write through, and its recording fake.
//! - [`net`]: sockets (GSO, GRO, pktinfo, ECN), the pinned per-core runtimes (io_uring or
//!   epoll), the connection-ID router, reuseport cBPF steering and the inter-core doorbell.
//! - [`quic`]: the per-core engine on quinn-proto: driver, timers, GSO transmit, TLS, both
//!   roles, and the [`quic::Handler`] the layers above plug in as; [`quic::stream_io`] reads and
//!   writes streams without copies.
//! - [`web`]: HTTP/3 just far enough for WebTransport, sans IO.
//! - [`model`]: the vocabulary with no I/O: paths, frames, groups and the group cache, track
//!   info, error codes, peer ids, what a wire session reports ([`model::PeerEvent`]), and the
//!   seam between the sessions of a core and what runs on them ([`model::Peers`],
//!   [`model::Application`]).
//! - [`lite`]: moq-lite, lite-01 to lite-05, sans IO: the wire codecs and
//!   [`lite::session::Session`], the session machine of one connection in both roles.
//! - [`session`]: [`session::Host`], the one [`quic::Handler`] of a core: it picks the wire,
//!   runs one [`session::Session`] (transport and machine) per connection, dials, and runs an
//!   [`model::Application`] over them.
//! - [`relay`]: the shared [`relay::Registry`] and [`relay::Node`], each core's relay as an
//!   application that knows only the model: tracks, subscriptions, announcements, fan-out
//!   within and across cores.
//! - [`http`]: the TCP endpoints `/certificate.sha256`, `/announced/...`, `/fetch/...`.
//! - [`config`]: CLI flags, `MOQ_*` variables and the TOML file, merged.
//! - [`server`]: starts the relay from a [`config::Config`] and stops it gracefully.
//! - [`client`]: a one-connection moq-lite client on the same engine and node.
//!
//! The load generator is not in this library: it is the `moq-load` crate in `tools/moq-load`.
//!
//! The design (layers, the path of one frame, the rules of the house, how to add a wire
//! protocol) is in the repository's `docs/design.md`.

pub mod auth;
pub mod client;
pub mod cluster;
pub mod config;
pub mod http;
pub mod ietf;
pub mod lite;
pub mod model;
pub mod net;
pub mod quic;
pub mod relay;
pub mod server;
pub mod session;
pub mod stream;
pub mod web;
