//! Sockets, per-core runtimes, pinning, the connection-ID router and the inter-core doorbell.
//!
//! Nothing here knows QUIC state or MoQ: it moves datagrams and wakes cores.

mod bpf;
mod doorbell;
mod panic;
mod router;
mod runtime;
mod socket;

pub use bpf::attach_reuseport_cbpf;
pub use doorbell::Doorbell;
pub use panic::{THREAD_PREFIX, abort_on_panic};
pub use router::{CID_LEN, core_of_cid_byte, owner_of};
pub use runtime::{IoMode, ParseIoModeError, io_uring_available, run_pinned};
pub use socket::{Received, Socket, SocketOptions, bind_group, bind_one};
