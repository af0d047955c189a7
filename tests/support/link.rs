//! A UDP link in user space between a dialler and one address: every datagram waits `delay`
//! (plus up to `jitter`, order kept) in each direction, and the link can be cut without a
//! word, as a peer that loses power or a network that partitions. It stands in for `tc netem`
//! where the kernel has none, and for a silent peer death where no process may be killed.

use std::collections::{BinaryHeap, HashMap};
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// How often blocked reads look at whether the link is being dropped.
const POLL: Duration = Duration::from_millis(50);

pub struct DelayLink {
    addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

struct Shared {
    delay: Duration,
    jitter: Duration,
    cut: AtomicBool,
    stop: AtomicBool,
    queue: Mutex<Queue>,
    ready: Condvar,
}

#[derive(Default)]
struct Queue {
    /// Datagrams by when they leave: (due, sequence), socket, destination (None: connected).
    heap: BinaryHeap<std::cmp::Reverse<(Instant, u64, Sent)>>,
    seq: u64,
    /// The last due time each way, so that jitter never reorders (`true`: towards the target).
    last: [Option<Instant>; 2],
    rand: u64,
}

struct Sent {
    socket: Arc<UdpSocket>,
    to: Option<SocketAddr>,
    bytes: Vec<u8>,
}

// Ordered by (due, sequence) alone; these let Sent ride in the tuple.
impl PartialEq for Sent {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}
impl Eq for Sent {}
impl PartialOrd for Sent {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Sent {
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

impl Shared {
    fn push(&self, upward: bool, socket: &Arc<UdpSocket>, to: Option<SocketAddr>, bytes: &[u8]) {
        if self.cut.load(Ordering::Relaxed) {
            return;
        }
        let mut q = self.queue.lock().unwrap();
        q.rand ^= q.rand << 13;
        q.rand ^= q.rand >> 7;
        q.rand ^= q.rand << 17;
        let extra = self
            .jitter
            .mul_f64((q.rand >> 11) as f64 / (1u64 << 53) as f64);
        let mut due = Instant::now() + self.delay + extra;
        let way = usize::from(upward);
        if let Some(last) = q.last[way] {
            due = due.max(last);
        }
        q.last[way] = Some(due);
        q.seq += 1;
        let sent = Sent {
            socket: socket.clone(),
            to,
            bytes: bytes.to_vec(),
        };
        let seq = q.seq;
        q.heap.push(std::cmp::Reverse((due, seq, sent)));
        self.ready.notify_one();
    }
}

impl DelayLink {
    /// A link listening on `bind` (port 0 for any) that carries datagrams to and from
    /// `target`. Its sockets live in the network namespace of the calling thread.
    pub fn start(bind: SocketAddr, target: SocketAddr, delay: Duration, jitter: Duration) -> Self {
        let front = Arc::new(UdpSocket::bind(bind).expect("link socket"));
        front.set_read_timeout(Some(POLL)).unwrap();
        let addr = front.local_addr().unwrap();
        let shared = Arc::new(Shared {
            delay,
            jitter,
            cut: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            queue: Mutex::new(Queue {
                rand: 0x9e37_79b9_7f4a_7c15,
                ..Queue::default()
            }),
            ready: Condvar::new(),
        });
        let mut threads = Vec::new();
        let s = shared.clone();
        threads.push(std::thread::spawn(move || sender(&s)));
        let s = shared.clone();
        threads.push(std::thread::spawn(move || {
            // One socket towards the target per dialler address, as a NAT would.
            let mut uplinks: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
            let mut readers = Vec::new();
            let mut buf = vec![0u8; 65_536];
            while !s.stop.load(Ordering::Relaxed) {
                let Ok((n, from)) = front.recv_from(&mut buf) else {
                    continue;
                };
                let up = uplinks.entry(from).or_insert_with(|| {
                    let any: SocketAddr = match target {
                        SocketAddr::V4(_) => "0.0.0.0:0".parse().unwrap(),
                        SocketAddr::V6(_) => "[::]:0".parse().unwrap(),
                    };
                    let up = Arc::new(UdpSocket::bind(any).expect("uplink socket"));
                    up.connect(target).unwrap();
                    up.set_read_timeout(Some(POLL)).unwrap();
                    let (s, up2, front) = (s.clone(), up.clone(), front.clone());
                    readers.push(std::thread::spawn(move || {
                        let mut buf = vec![0u8; 65_536];
                        while !s.stop.load(Ordering::Relaxed) {
                            if let Ok(n) = up2.recv(&mut buf) {
                                s.push(false, &front, Some(from), &buf[..n]);
                            }
                        }
                    }));
                    up
                });
                let up = up.clone();
                s.push(true, &up, None, &buf[..n]);
            }
            for r in readers {
                let _ = r.join();
            }
        }));
        Self {
            addr,
            shared,
            threads: Mutex::new(threads),
        }
    }

    /// Where the dialler sends.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// From now on nothing crosses, either way, and nothing says so.
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::Relaxed);
        self.shared.queue.lock().unwrap().heap.clear();
    }
}

impl Drop for DelayLink {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        self.shared.ready.notify_all();
        for t in self.threads.lock().unwrap().drain(..) {
            let _ = t.join();
        }
    }
}

/// Send each queued datagram when it is due.
fn sender(s: &Shared) {
    let mut q = s.queue.lock().unwrap();
    while !s.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        let wait = match q.heap.peek() {
            Some(std::cmp::Reverse((due, _, _))) if *due <= now => {
                let std::cmp::Reverse((_, _, sent)) = q.heap.pop().unwrap();
                drop(q);
                let _ = match sent.to {
                    Some(to) => sent.socket.send_to(&sent.bytes, to),
                    None => sent.socket.send(&sent.bytes),
                };
                q = s.queue.lock().unwrap();
                continue;
            }
            Some(std::cmp::Reverse((due, _, _))) => *due - now,
            None => POLL,
        };
        q = s.ready.wait_timeout(q, wait).unwrap().0;
    }
}
