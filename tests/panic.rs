//! A panic on a core thread ends the whole process (so that its supervisor restarts it) rather
//! than leaving a live process with a dead core. The test runs itself again as a child process
//! whose engine's handler panics, and checks how the child ended.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::Duration;

use moq_relay::net::{IoMode, SocketOptions};
use moq_relay::quic::{ClientRole, ConnectionHandle, Ctx, Engine, EngineConfig, Event, Handler};

const CHILD: &str = "MOQ_PANIC_TEST_CHILD";

/// Panics as soon as its core starts.
struct Panics;

impl Handler for Panics {
    fn on_start(&mut self, _ctx: &mut Ctx<'_>) {
        panic!("a bug in a handler");
    }

    fn on_event(&mut self, _ctx: &mut Ctx<'_>, _conn: ConnectionHandle, _event: Event) {}
}

/// In the child: start a one-core engine whose handler panics, then outlive it by far.
fn child() -> ! {
    let config = EngineConfig {
        threads: 1,
        io: IoMode::Auto,
        pin: false,
        socket: SocketOptions::default(),
        steer: false,
        server: None,
        client: Some(ClientRole {
            bind: "127.0.0.1:0".parse().unwrap(),
            config: None,
        }),
    };
    let _engine = Engine::start(config, |_| Panics);
    std::thread::sleep(Duration::from_secs(20));
    // Still here: the core died and the process went on without it.
    std::process::exit(0);
}

#[test]
fn a_panicking_core_aborts_the_process() {
    if std::env::var_os(CHILD).is_some() {
        child();
    }
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "a_panicking_core_aborts_the_process",
            "--exact",
            "--nocapture",
        ])
        .env(CHILD, "1")
        .status()
        .unwrap();
    assert_eq!(
        status.signal(),
        Some(libc_sigabrt()),
        "the child should have aborted, it ended with {status:?}"
    );
}

/// SIGABRT, which `std::process::abort` raises (6 on Linux).
fn libc_sigabrt() -> i32 {
    6
}
