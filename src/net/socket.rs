//! One UDP socket per core: bound with socket2 into a SO_REUSEPORT group, read and written with
//! quinn-udp (recvmmsg + GRO, sendmsg + GSO, pktinfo, ECN), with readiness from monoio.

use std::io::{self, IoSliceMut};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::rc::Rc;

use quinn_udp::{RecvMeta, Transmit, UdpSockRef, UdpSocketState};
use socket2::{Domain, Protocol, Socket as RawSocket, Type};

/// Knobs for every UDP socket the engine opens.
#[derive(Clone, Debug)]
pub struct SocketOptions {
    /// Send batches of segments in one `sendmsg` (UDP_SEGMENT).
    pub gso: bool,
    /// Let the kernel coalesce received segments (UDP_GRO).
    pub gro: bool,
    /// SO_RCVBUF request; the kernel caps it at `net.core.rmem_max`.
    pub recv_buffer: usize,
    /// SO_SNDBUF request; the kernel caps it at `net.core.wmem_max`.
    pub send_buffer: usize,
}

impl Default for SocketOptions {
    fn default() -> Self {
        Self {
            gso: true,
            gro: true,
            recv_buffer: 8 << 20,
            send_buffer: 8 << 20,
        }
    }
}

fn new_raw(addr: SocketAddr, reuse_port: bool, opts: &SocketOptions) -> io::Result<RawSocket> {
    let sock = RawSocket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // `[::]` serves IPv4 too, as v4-mapped addresses.
        sock.set_only_v6(false)?;
    }
    if reuse_port {
        sock.set_reuse_port(true)?;
    }
    // Best effort: an unprivileged process gets at most rmem_max/wmem_max.
    let _ = sock.set_recv_buffer_size(opts.recv_buffer);
    let _ = sock.set_send_buffer_size(opts.send_buffer);
    sock.bind(&addr.into())?;
    Ok(sock)
}

/// Bind `count` sockets to `addr` as one SO_REUSEPORT group, in core order, and optionally attach
/// the CID steering program. All are bound before any is used, so the kernel's socket index in
/// the group equals the core index (the cBPF program relies on that).
pub fn bind_group(
    addr: SocketAddr,
    count: usize,
    steer: bool,
    opts: &SocketOptions,
) -> io::Result<Vec<std::net::UdpSocket>> {
    let count = count.max(1);
    let first = new_raw(addr, count > 1, opts)?;
    let bound = first
        .local_addr()?
        .as_socket()
        .ok_or_else(|| io::Error::other("bound to a non-IP address"))?;
    let mut group = vec![first];
    for _ in 1..count {
        group.push(new_raw(bound, true, opts)?);
    }
    if count > 1
        && steer
        && let Err(e) = super::attach_reuseport_cbpf(&group[0], count)
    {
        tracing::warn!(error = %e, "reuseport cBPF steering unavailable; forwarding instead");
    }
    Ok(group.into_iter().map(Into::into).collect())
}

/// Bind one socket on its own (a client's socket, or a single-core server).
pub fn bind_one(addr: SocketAddr, opts: &SocketOptions) -> io::Result<std::net::UdpSocket> {
    Ok(new_raw(addr, false, opts)?.into())
}

/// One received datagram, or a GRO batch of equal-sized segments sharing a 4-tuple.
pub struct Received<'a> {
    pub data: &'a [u8],
    /// Segment size; the last segment may be shorter. Equals `data.len()` without GRO.
    pub stride: usize,
    pub remote: SocketAddr,
    /// The local address it was sent to (pktinfo), needed to reply from a wildcard bind.
    pub local_ip: Option<IpAddr>,
    /// The IP ECN bits, if the kernel reported them.
    pub ecn: Option<u8>,
}

const BATCH: usize = 16;

/// A core's socket. Owned by one thread; readiness futures hold an `Rc` to the monoio half.
pub struct Socket {
    std: std::net::UdpSocket,
    ready: Rc<monoio::net::udp::UdpSocket>,
    state: UdpSocketState,
    gso: bool,
    local: SocketAddr,
    slot: usize,
    arena: Vec<u8>,
    metas: Vec<RecvMeta>,
}

impl Socket {
    /// Take over a bound socket. Must run inside the core's monoio runtime.
    pub fn new(std: std::net::UdpSocket, opts: &SocketOptions) -> io::Result<Self> {
        let state = UdpSocketState::new(UdpSockRef::from(&std))?;
        let gro = opts.gro && state.gro_segments() > 1;
        if !gro {
            set_gro(&std, false)?;
        }
        let local = std.local_addr()?;
        let ready = monoio::net::udp::UdpSocket::from_std(std.try_clone()?)?;
        let slot = if gro { 65535 } else { 2048 };
        Ok(Self {
            std,
            ready: Rc::new(ready),
            state,
            gso: opts.gso,
            local,
            slot,
            arena: vec![0; slot * BATCH],
            metas: vec![RecvMeta::default(); BATCH],
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// How many segments one send may carry: 1 with GSO off or after the kernel refused it.
    pub fn max_gso_segments(&self) -> usize {
        if self.gso {
            self.state.max_gso_segments()
        } else {
            1
        }
    }

    /// One `recvmmsg`: hands each datagram (or GRO batch) to `f`. `WouldBlock` when empty.
    pub fn recv_batch(&mut self, mut f: impl FnMut(Received<'_>)) -> io::Result<usize> {
        let mut bufs: Vec<IoSliceMut<'_>> = self
            .arena
            .chunks_mut(self.slot)
            .map(IoSliceMut::new)
            .collect();
        let n = self
            .state
            .recv(UdpSockRef::from(&self.std), &mut bufs, &mut self.metas)?;
        for (meta, buf) in self.metas.iter().zip(bufs.iter()).take(n) {
            f(Received {
                data: &buf[..meta.len],
                stride: if meta.stride == 0 {
                    meta.len
                } else {
                    meta.stride
                },
                remote: meta.addr,
                local_ip: meta.dst_ip,
                ecn: meta.ecn.map(|e| e as u8),
            });
        }
        Ok(n)
    }

    /// One `sendmsg`, with `segment_size` set for a GSO batch. `WouldBlock` means wait for
    /// [`Socket::writable`] and retry the same bytes; other errors are final for these bytes.
    pub fn send(
        &self,
        destination: SocketAddr,
        ecn: Option<u8>,
        contents: &[u8],
        segment_size: Option<usize>,
        src_ip: Option<IpAddr>,
    ) -> io::Result<()> {
        let transmit = Transmit {
            destination,
            ecn: ecn.and_then(quinn_udp::EcnCodepoint::from_bits),
            contents,
            segment_size,
            src_ip,
        };
        self.state.try_send(UdpSockRef::from(&self.std), &transmit)
    }

    /// Resolves when the socket may have datagrams; owns what it needs so the caller can keep it
    /// pending across loop turns without borrowing the socket.
    pub fn readable(&self) -> impl Future<Output = io::Result<()>> + 'static {
        let io = self.ready.clone();
        async move { io.readable(false).await }
    }

    pub fn writable(&self) -> impl Future<Output = io::Result<()>> + 'static {
        let io = self.ready.clone();
        async move { io.writable(false).await }
    }
}

fn set_gro(sock: &std::net::UdpSocket, on: bool) -> io::Result<()> {
    let value: libc::c_int = on.into();
    // SAFETY: a plain int option on a socket we own.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_GRO,
            &value as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 || !on {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
