//! A classic BPF program for the SO_REUSEPORT group that steers each datagram to the socket (and
//! so the core) that owns its destination connection ID, the same function as [`super::owner_of`].
//! Without it the kernel hashes the 4-tuple, which is right until the peer's address changes;
//! the user-space router keeps the relay correct either way, this only makes forwarding rare.

use std::io;
use std::os::fd::AsRawFd;

use super::router::CID_LEN;

const BPF_LD: u16 = 0x00;
const BPF_W: u16 = 0x00;
const BPF_B: u16 = 0x10;
const BPF_ABS: u16 = 0x20;
const BPF_LEN: u16 = 0x80;
const BPF_JMP: u16 = 0x05;
const BPF_JA: u16 = 0x00;
const BPF_JGE: u16 = 0x30;
const BPF_JSET: u16 = 0x40;
const BPF_K: u16 = 0x00;
const BPF_ALU: u16 = 0x04;
const BPF_MOD: u16 = 0x90;
const BPF_RET: u16 = 0x06;
const BPF_A: u16 = 0x10;

fn insn(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The program, for `cores` sockets bound in core order. Offsets are from the UDP payload.
fn program(cores: u32) -> Vec<libc::sock_filter> {
    vec![
        // 0: A = datagram length; too short to carry a CID -> kernel hash.
        insn(BPF_LD | BPF_W | BPF_LEN, 0, 0, 0),
        insn(BPF_JMP | BPF_JGE | BPF_K, 0, 7, 1 + CID_LEN as u32),
        // 2: long header (0x80 set) keeps its DCID at offset 6, short at offset 1.
        insn(BPF_LD | BPF_B | BPF_ABS, 0, 0, 0),
        insn(BPF_JMP | BPF_JSET | BPF_K, 2, 0, 0x80),
        insn(BPF_LD | BPF_B | BPF_ABS, 0, 0, 1),
        insn(BPF_JMP | BPF_JA, 0, 0, 1),
        insn(BPF_LD | BPF_B | BPF_ABS, 0, 0, 6),
        // 7: socket index = key byte mod cores.
        insn(BPF_ALU | BPF_MOD | BPF_K, 0, 0, cores),
        insn(BPF_RET | BPF_A, 0, 0, 0),
        // 9: an index past the group makes the kernel fall back to its hash.
        insn(BPF_RET | BPF_K, 0, 0, cores),
    ]
}

/// Attach the steering program to the reuseport group that `socket` belongs to. Call once,
/// after every core's socket is bound, in core order.
pub fn attach_reuseport_cbpf(socket: &impl AsRawFd, cores: usize) -> io::Result<()> {
    let mut filter = program(cores as u32);
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_mut_ptr(),
    };
    // SAFETY: `prog` points at `filter`, which outlives the call; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_REUSEPORT_CBPF,
            &prog as *const libc::sock_fprog as *const libc::c_void,
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::super::socket::{SocketOptions, bind_group};
    use std::net::UdpSocket;
    use std::time::Duration;

    /// The kernel steers by the first DCID byte once the program is attached.
    #[test]
    fn kernel_steers_by_cid_byte() {
        let opts = SocketOptions::default();
        let group = bind_group("127.0.0.1:0".parse().unwrap(), 2, true, &opts).unwrap();
        let addr = group[0].local_addr().unwrap();
        for s in &group {
            s.set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
        }
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        for key in 0u8..6 {
            let mut short = vec![0x40u8; 40];
            short[1] = key;
            client.send_to(&short, addr).unwrap();
            let mut buf = [0u8; 64];
            let want = key as usize % 2;
            let (n, _) = group[want].recv_from(&mut buf).expect("steered to owner");
            assert_eq!(n, 40);
            assert_eq!(buf[1], key);
        }
    }
}
