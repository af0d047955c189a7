//! The vocabulary of the relay, with no I/O and no wire format: broadcast paths, frames and
//! groups with the group cache, what a session may access, track info, error codes, the ids of peers, what a wire
//! session reports ([`PeerEvent`]) and the seam between sessions and what runs on them
//! ([`Peers`], [`Application`]). Wire machines (`lite`), the session host (`session`) and the
//! relay (`relay`) all speak it; it imports nothing else of this crate.

mod access;
mod app;
mod error;
mod event;
mod frame;
mod info;
mod limits;
pub mod path;
mod peer;

pub use access::{Access, Gate, Refusal};
pub use app::{Application, Peers, SessionCounts};
pub use error::ErrorCode;
pub use event::{Delivery, InfoAsk, Notice, PeerEvent, RequestId};
pub use frame::{CacheLimits, Frame, Group, GroupCache, Opened};
pub use info::TrackInfo;
pub use limits::{AnnounceBudget, SessionLimits};
pub use peer::{PeerHasher, PeerId, PeerMap};
