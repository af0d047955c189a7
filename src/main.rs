use std::process::ExitCode;

use moq_relay::config::Config;
use moq_relay::server::Server;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let config = match Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("moq-relay: {e}");
            return ExitCode::from(2);
        }
    };
    init_logging(&config.log_level);
    for w in &config.warnings {
        tracing::warn!("{w}");
    }

    // Block the stop signals before any core thread exists, so that only `wait_for_stop` sees them.
    let signals = block_stop_signals();
    let server = match Server::start(&config) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("moq-relay: {e:#}");
            return ExitCode::from(1);
        }
    };
    let signal = wait_for_stop(&signals);
    tracing::info!(signal, "stopping");
    match server.stop() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(level: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn block_stop_signals() -> libc::sigset_t {
    // SAFETY: plain signal-mask calls on a zeroed sigset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_for_stop(set: &libc::sigset_t) -> &'static str {
    let mut sig: libc::c_int = 0;
    // SAFETY: `set` holds the signals blocked above.
    unsafe { libc::sigwait(set, &mut sig) };
    if sig == libc::SIGINT {
        "SIGINT"
    } else {
        "SIGTERM"
    }
}
