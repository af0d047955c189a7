//! The vocabulary of the relay, with no I/O and no wire format: broadcast paths, frames and
//! groups with the group cache, track info, and the ids of peers. Wire machines (`lite`) and the
//! relay (`relay`) both speak it; it imports nothing else of this crate.

mod frame;
mod info;
pub mod path;
mod peer;

pub use frame::{CacheLimits, Frame, Group, GroupCache, Opened};
pub use info::TrackInfo;
pub use peer::PeerId;
