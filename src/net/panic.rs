//! A panic on one of our threads ends the process. A core thread that unwound would leave a
//! zombie: its socket out of the reuseport group, its sessions dead, its broadcasts never
//! unpublished, while the process looks healthy to its supervisor. Aborting makes the failure
//! loud and lets systemd (or whatever runs the relay) restart it.

use std::sync::Once;

/// Threads whose names start with this are ours: the core threads and the HTTP thread.
pub const THREAD_PREFIX: &str = "moq-";

/// Install, once per process, a panic hook that reports the panic as usual and then aborts
/// when the panicking thread is one of ours. Other threads (a test harness, an embedding
/// application) keep the default behaviour.
pub fn abort_on_panic() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            report(info);
            let thread = std::thread::current();
            let name = thread.name().unwrap_or("");
            if name.starts_with(THREAD_PREFIX) {
                eprintln!("moq-relay: thread {name} panicked; aborting the process");
                std::process::abort();
            }
        }));
    });
}
