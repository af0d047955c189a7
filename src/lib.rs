//! A Media over QUIC relay: one pinned io_uring event loop per core driving sans-IO quinn-proto.
//!
//! Layers, bottom up: [`net`] (sockets, runtimes, routing datagrams to cores), [`quic`] (the
//! per-core endpoint driver and TLS). See DESIGN.md for the rest of the stack.

pub mod client;
pub mod config;
pub mod http;
pub mod lite;
pub mod net;
pub mod quic;
pub mod relay;
pub mod server;
pub mod web;
