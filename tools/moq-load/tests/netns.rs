//! Three relays on three hosts: network namespaces joined by veth pairs, with `tc netem` delay
//! and loss on the links between relays. C dials B, B dials A; the load generator, in the
//! test's own namespace, publishes on A and subscribes on C. Nothing may be lost; the latency
//! is printed. Needs root and `ip`/`tc` (iproute2, which `.ci/run` installs): without them the
//! test says SKIPPED, except under `CI=true`, where it fails.
//!
//! A kernel without netem (`CONFIG_NET_SCH_NETEM` unset, as on the project's VMs) gets the
//! same impairment another way: the loss from a classic-BPF classifier on each link end that
//! picks 1 % of packets at random and redirects them to an interface that is down, where they
//! are dropped; the delay from a user-space UDP link in the dialling relay's namespace
//! (`tests/support/link.rs`) that holds each datagram 20 to 30 ms each way.

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::Command;
use std::time::Duration;

use moq_load::{LoadConfig, Scenario, Target, TargetOptions, run};
use moq_relay::cluster::parse_peer;
use moq_relay::relay::Limits;
use moq_relay::server::Server;
use support::link::DelayLink;

/// Delay, jitter and loss on each direction of each relay-to-relay link.
const NETEM: &[&str] = &["delay", "25ms", "5ms", "loss", "1%"];

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Namespaces and links made for one test, removed when it ends (their veths go with them).
struct Hosts {
    names: Vec<String>,
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

impl Hosts {
    fn add(&mut self, name: &str) {
        // A run that was killed may have left one of the same name.
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        ip(&["netns", "add", name]);
        self.names.push(name.into());
        ip(&["-n", name, "link", "set", "lo", "up"]);
    }

    /// A veth pair between namespaces `a` (`None`: the test's own) and `b`, `{net}.1` on the
    /// `a` end and `{net}.2` on the `b` end, and netem on both ends when `lossy`.
    fn link(&self, a: Option<&str>, b: &str, net: &str, tag: &str, lossy: bool) {
        let (ea, eb) = (format!("{tag}a"), format!("{tag}b"));
        ip(&["link", "add", &ea, "type", "veth", "peer", "name", &eb]);
        if let Some(a) = a {
            ip(&["link", "set", &ea, "netns", a]);
        }
        ip(&["link", "set", &eb, "netns", b]);
        for (ns, dev, addr) in [
            (a, &ea, format!("{net}.1/24")),
            (Some(b), &eb, format!("{net}.2/24")),
        ] {
            let mut on: Vec<&str> = match ns {
                Some(n) => vec!["-n", n],
                None => Vec::new(),
            };
            let n = on.len();
            on.extend(["addr", "add", &addr, "dev", dev]);
            ip(&on);
            on.truncate(n);
            on.extend(["link", "set", dev, "up"]);
            ip(&on);
            if let (true, Some(ns)) = (lossy, ns) {
                lose(ns, dev);
            }
        }
    }
}

/// Whether the kernel has netem (else the links lose packets but add no delay).
fn has_netem() -> bool {
    let config = Command::new("sh")
        .args(["-c", "zcat /proc/config.gz 2>/dev/null"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    !config.contains("# CONFIG_NET_SCH_NETEM is not set")
}

/// Impair what `dev` (in namespace `ns`) sends: netem's delay and loss, or, without netem, 1 %
/// random loss (classic BPF `ld rand` below 2^32 / 100 matches; matched packets go to a
/// veth that is down).
fn lose(ns: &str, dev: &str) {
    if has_netem() {
        let mut tc = vec!["netns", "exec", ns, "tc", "qdisc", "add", "dev", dev];
        tc.extend(["root", "netem"]);
        tc.extend_from_slice(NETEM);
        ip(&tc);
        return;
    }
    let (sink, peer) = (format!("{dev}z"), format!("{dev}w"));
    ip(&[
        "-n", ns, "link", "add", &sink, "type", "veth", "peer", "name", &peer,
    ]);
    ip(&[
        "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "clsact",
    ]);
    let one_percent = "4,32 0 0 4294963256,53 1 0 42949673,6 0 0 1,6 0 0 0";
    ip(&[
        "netns",
        "exec",
        ns,
        "tc",
        "filter",
        "add",
        "dev",
        dev,
        "egress",
        "bpf",
        "bytecode",
        one_percent,
        "action",
        "mirred",
        "egress",
        "redirect",
        "dev",
        &sink,
    ]);
}

/// Run `f` with this thread in namespace `name`: threads it starts stay there (a relay's
/// cores and their sockets).
fn inside<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let own = File::open("/proc/thread-self/ns/net").expect("own namespace");
    let target = File::open(format!("/var/run/netns/{name}")).expect("namespace file");
    // SAFETY: setns on descriptors we hold open, for this thread only.
    assert_eq!(
        unsafe { libc::setns(target.as_raw_fd(), libc::CLONE_NEWNET) },
        0
    );
    let out = f();
    assert_eq!(
        unsafe { libc::setns(own.as_raw_fd(), libc::CLONE_NEWNET) },
        0
    );
    out
}

fn relay(ns: &str, peer: Option<&str>, id: u64) -> Server {
    let mut config = support::config(1, Limits::default());
    config.bind = "0.0.0.0:4443".parse().unwrap();
    config.client_bind = "0.0.0.0:0".parse().unwrap();
    config.cluster.id = Some(id);
    config.cluster.peers = peer.iter().map(|u| parse_peer(u, None).unwrap()).collect();
    inside(ns, || support::start(&config))
}

fn target(url: &str) -> Target {
    let mut o = TargetOptions::new(url);
    o.tls_disable_verify = true;
    o.version = Some("lite-05".into());
    Target::resolve(&o).unwrap()
}

/// Root and `ip`, or why not.
fn missing() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root".into());
    }
    for tool in ["ip", "tc"] {
        if Command::new(tool).arg("-V").output().is_err() {
            return Some(format!("`{tool}` missing (apt-get install -y iproute2)"));
        }
    }
    None
}

#[test]
fn three_relays_on_three_hosts_lose_nothing() {
    if let Some(why) = missing() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("the network-namespace test cannot run: {why}");
        }
        eprintln!("\n!!! SKIPPED three_relays_on_three_hosts_lose_nothing: {why}\n");
        return;
    }
    let tag = format!("q{}", std::process::id() % 100_000);
    let mut hosts = Hosts { names: Vec::new() };
    let (na, nb, nc) = (format!("{tag}A"), format!("{tag}B"), format!("{tag}C"));
    for n in [&na, &nb, &nc] {
        hosts.add(n);
    }
    let net = 10 + std::process::id() % 200;
    // The test's namespace reaches A (publishers) and C (subscribers) directly.
    hosts.link(None, &na, &format!("10.{net}.0"), &format!("{tag}p"), false);
    hosts.link(None, &nc, &format!("10.{net}.3"), &format!("{tag}s"), false);
    // A-B and B-C are the lossy, delayed links between relays.
    hosts.link(
        Some(&nb),
        &na,
        &format!("10.{net}.1"),
        &format!("{tag}x"),
        true,
    );
    hosts.link(
        Some(&nc),
        &nb,
        &format!("10.{net}.2"),
        &format!("{tag}y"),
        true,
    );

    // Without netem, each dialling relay reaches its peer through a delay link of its own.
    let delayed = |ns: &str, peer: &str| -> (String, Option<DelayLink>) {
        if has_netem() {
            return (format!("moql://{peer}/"), None);
        }
        let link = inside(ns, || {
            DelayLink::start(
                "127.0.0.1:0".parse().unwrap(),
                peer.parse().unwrap(),
                Duration::from_millis(20),
                Duration::from_millis(10),
            )
        });
        (format!("moql://{}/", link.addr()), Some(link))
    };
    let (to_a, link_b) = delayed(&nb, &format!("10.{net}.1.2:4443"));
    let (to_b, link_c) = delayed(&nc, &format!("10.{net}.2.2:4443"));
    let a = relay(&na, None, 1);
    let b = relay(&nb, Some(&to_a), 2);
    let c = relay(&nc, Some(&to_b), 3);

    let scenario = Scenario {
        preset: None,
        broadcasts: 1,
        tracks: 1,
        subscribers: 4,
        frame_size: 1200,
        fps: 30.0,
        burst: 1,
        frames_per_group: 30,
        duration: Duration::from_secs(4),
        ramp_up: Duration::from_secs(3),
        connections_per_thread: None,
    };
    let mut config = LoadConfig::new(scenario, target(&format!("moql://10.{net}.3.2:4443/")));
    config.publish_target = Some(target(&format!("moql://10.{net}.0.2:4443/")));
    config.threads = 1;
    config.drain = Duration::from_secs(8);
    let report = run(config, None, |_, _| {}).unwrap();
    let summary = report.summary();
    println!("{summary}");
    let d = &report.delivery;
    assert!(report.frames_published > 0, "{summary}");
    assert_eq!(d.lost, 0, "{summary}");
    assert_eq!(d.delivered, report.frames_published * 4, "{summary}");
    // Two links of 20 to 30 ms one way: at least 40 ms from A to C.
    assert!(report.latency_us.p50 >= 40_000, "{summary}");
    let impaired = if has_netem() {
        format!("netem {}", NETEM.join(" "))
    } else {
        "20-30 ms (user-space link) and 1 % loss (cBPF) each way on each link".into()
    };
    println!(
        "latency through A-B-C with {impaired}: p50 {} ms, p99 {} ms, max {} ms",
        report.latency_us.p50 / 1000,
        report.latency_us.p99 / 1000,
        report.latency_us.max / 1000
    );
    for r in [c, b, a] {
        r.stop().unwrap();
    }
    drop((link_b, link_c));
    drop(hosts);
}
