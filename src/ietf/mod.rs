//! IETF moq-transport (draft-ietf-moq-transport), drafts 14 to 19, sans IO: the codecs and the
//! session machine of one connection, both roles, mapped onto the model's broadcast, track,
//! group and frame.
//!
//! Files: `version.rs` (the drafts, their ALPNs and integer forms), `coding.rs` (integers,
//! strings, namespace tuples), `params.rs` (Key-Value-Pairs, message parameters, tokens),
//! `message.rs` (control messages), `data.rs` (subgroup streams), `session/` (the machine).

pub mod coding;
pub mod data;
mod error;
pub mod message;
pub mod params;
pub mod session;
#[cfg(test)]
mod tests;
mod version;

pub use error::{DecodeError, DoneCode, EncodeError, RequestCode, ResetCode, TerminationCode};
pub use version::{Varint, Version};
