//! Who a core talks to.

/// One session on one core, numbered by the core and never reused, unlike the QUIC connection
/// handle under it: state that names a `PeerId` can never reach a later session by mistake.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(pub u64);

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "peer{}", self.0)
    }
}
