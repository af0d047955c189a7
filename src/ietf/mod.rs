//! IETF moq-transport (draft-ietf-moq-transport), drafts 14 to 19, sans IO: the codecs and the
//! session machine of one connection, both roles, mapped onto the model's broadcast, track,
//! group and frame.

pub mod coding;
mod error;
mod version;

pub use error::{DecodeError, DoneCode, EncodeError, RequestCode, ResetCode, TerminationCode};
pub use version::{Varint, Version};
