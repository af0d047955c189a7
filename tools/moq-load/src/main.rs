//! `moq-load`: publishers and subscribers of stamped frames against a moq-lite relay, with
//! latency, loss and the relay's CPU and memory per delivered byte.
//!
//! Exit status: 0 for a clean run, 3 when the run finished but lost, refused or failed
//! something, 1 when it could not run (unreachable relay), 2 for bad flags.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use moq_load::{
    self as load, Load, LoadConfig, Phase, Preset, Progress, Report, Scenario, Target,
    TargetOptions, parse_duration,
};
use moq_relay::net::IoMode;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Load generator for moq-lite relays.
///
/// Publishes stamped frames on N broadcasts and subscribes to them from many sessions, then
/// reports delivered bit rate, latency percentiles, lost frames and skipped groups, and, given
/// --relay-pid, the relay's CPU-seconds per delivered GB and RSS per subscriber.
#[derive(Parser, Debug)]
#[command(name = "moq-load", disable_version_flag = true)]
struct Args {
    /// Relay URL: moql://host:port[/path] (raw QUIC, ALPN moql: lite-02/01 via SETUP),
    /// https://host:port/path (WebTransport, every moq-lite version offered, the path is the
    /// root), or http://host:port/path (as https, pinning the certificate fingerprint served at
    /// http://host:port/certificate.sha256).
    #[arg(long)]
    url: String,

    /// Publishers connect here instead of --url (another relay of a cluster, to load a chain);
    /// the same transport and version.
    #[arg(long)]
    publish_url: Option<String>,

    /// quic or webtransport [default: quic for moql://, webtransport for https:// and http://].
    /// Raw QUIC to an https:// URL speaks moq-lite-05 with the path in SETUP.
    #[arg(long)]
    transport: Option<String>,

    /// Accept any server certificate (development only).
    #[arg(long)]
    tls_disable_verify: bool,

    /// Accept only a certificate with this SHA-256 fingerprint (hex); repeatable.
    #[arg(long)]
    tls_fingerprint: Vec<String>,

    /// moq-lite version: lite-01 ... lite-05, or an ALPN (moq-lite-05, moq-lite-04,
    /// moq-lite-03, moql); or IETF moq-transport: moqt-16 ... moqt-19 (also spelled
    /// moq-transport-17 ...) [default: from the URL scheme].
    #[arg(long)]
    version: Option<String>,

    /// Traffic shape: video (2.5 Mbit/s, 30 fps, 2 s groups), audio (160 B at 50 fps),
    /// chat (64 B bursts), many (100 broadcasts, 2 subscribers each).
    #[arg(long, default_value = "video")]
    preset: String,

    /// How long to publish, after the ramp-up (30s, 2m, ...).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,

    /// Subscribers per track (each subscribes to every track of one broadcast).
    #[arg(long)]
    subscribers: Option<usize>,

    /// Number of broadcasts, each with its own publisher session.
    #[arg(long)]
    broadcasts: Option<usize>,

    /// Tracks per broadcast.
    #[arg(long)]
    tracks: Option<usize>,

    /// Payload bytes per frame (at least 16: the timestamp and sequence).
    #[arg(long)]
    frame_size: Option<usize>,

    /// Frames per second per track.
    #[arg(long)]
    fps: Option<f64>,

    /// Frames per group (a group is one QUIC stream per subscriber).
    #[arg(long)]
    frames_per_group: Option<u64>,

    /// Frames written back to back each time (the average rate stays --fps).
    #[arg(long)]
    burst: Option<usize>,

    /// Subscribers connect spread over this time; publishing starts after it.
    #[arg(long, value_parser = parse_duration)]
    ramp_up: Option<Duration>,

    /// Pack subscribers onto this many connections per client thread instead of one
    /// connection each.
    #[arg(long)]
    connections_per_thread: Option<usize>,

    /// Client threads, one event loop each [default: every core].
    #[arg(long, default_value_t = 0)]
    threads: usize,

    /// Pin client thread i to CPU i.
    #[arg(long)]
    pin: bool,

    /// Event loop driver: uring, epoll or auto.
    #[arg(long, default_value = "auto")]
    io: String,

    /// The relay's process id: report its CPU-seconds per delivered GB and RSS per subscriber
    /// (read from /proc, so the relay must run on this machine).
    #[arg(long)]
    relay_pid: Option<u32>,

    /// Write the report as JSON to this file (`-` for stdout).
    #[arg(long)]
    json: Option<PathBuf>,

    /// Give up when no session is up after this long.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    connect_timeout: Duration,

    /// After publishing stops, wait at most this long for the last frames.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    drain: Duration,

    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

/// The scenario: the preset with each given flag on top.
fn scenario(args: &Args) -> Result<Scenario, String> {
    let preset: Preset = args.preset.parse().map_err(|e| format!("--preset: {e}"))?;
    let mut s = preset.scenario();
    let custom = args.broadcasts.is_some()
        || args.tracks.is_some()
        || args.frame_size.is_some()
        || args.fps.is_some()
        || args.frames_per_group.is_some()
        || args.burst.is_some();
    if let Some(v) = args.duration {
        s.duration = v;
    }
    if let Some(v) = args.subscribers {
        s.subscribers = v;
    }
    if let Some(v) = args.broadcasts {
        s.broadcasts = v;
    }
    if let Some(v) = args.tracks {
        s.tracks = v;
    }
    if let Some(v) = args.frame_size {
        s.frame_size = v;
    }
    if let Some(v) = args.fps {
        s.fps = v;
    }
    if let Some(v) = args.frames_per_group {
        s.frames_per_group = v;
    }
    if let Some(v) = args.burst {
        s.burst = v;
    }
    if let Some(v) = args.ramp_up {
        s.ramp_up = v;
    }
    s.connections_per_thread = args.connections_per_thread;
    if custom {
        // The shape no longer is the preset's; keep its name out of the report.
        s.preset = None;
    }
    s.validate()?;
    Ok(s)
}

/// Everything but the network: flags into a config. Flags are checked before the URL is
/// resolved, so a bad flag is reported as such even when the relay is down.
fn config(args: &Args) -> Result<LoadConfig, String> {
    let scenario = scenario(args)?;
    if args.threads > 256 {
        return Err(format!("--threads {} is more than 256", args.threads));
    }
    let io: IoMode = args.io.parse().map_err(|e| format!("--io: {e}"))?;
    let transport = args.transport.as_deref().map(str::parse).transpose()?;
    if args.connect_timeout.is_zero() {
        return Err("--connect-timeout must be above 0".into());
    }
    let target = Target::resolve(&TargetOptions {
        url: args.url.clone(),
        version: args.version.clone(),
        transport,
        tls_disable_verify: args.tls_disable_verify,
        tls_fingerprints: args.tls_fingerprint.clone(),
        timeout: args.connect_timeout,
    })?;
    let publish_target = match &args.publish_url {
        Some(url) => Some(Target::resolve(&TargetOptions {
            url: url.clone(),
            version: args.version.clone(),
            transport,
            tls_disable_verify: args.tls_disable_verify,
            tls_fingerprints: args.tls_fingerprint.clone(),
            timeout: args.connect_timeout,
        })?),
        None => None,
    };
    let mut config = LoadConfig::new(scenario, target);
    config.publish_target = publish_target;
    config.threads = args.threads;
    config.io = io;
    config.pin = args.pin;
    config.connect_timeout = args.connect_timeout;
    config.drain = args.drain;
    Ok(config)
}

/// The live line: rates since the previous line.
struct Live {
    tty: bool,
    last: Option<Progress>,
}

impl Live {
    fn show(&mut self, load: &Load, p: &Progress) {
        let (pub_rate, del_rate) = match &self.last {
            Some(l) => {
                let secs = (p.elapsed - l.elapsed).as_secs_f64().max(1e-3);
                (
                    (p.bytes_published - l.bytes_published) as f64 * 8.0 / secs / 1e6,
                    (p.bytes_received - l.bytes_received) as f64 * 8.0 / secs / 1e6,
                )
            }
            None => (0.0, 0.0),
        };
        self.last = Some(*p);
        let phase = match load.phase() {
            Phase::RampUp => "ramp-up",
            Phase::Publishing => "publishing",
            Phase::Draining => "draining",
        };
        let line = format!(
            "[{:6.1}s {phase:>10}] sessions {}/{} up, {} failed | pub {:.2} Mbit/s | del {:.2} Mbit/s, {} frames | resets {} | max latency {:.1} ms",
            p.elapsed.as_secs_f64(),
            p.sessions_ready,
            load.planned_connections(),
            p.connect_failures + p.sessions_lost + p.subscribe_failures,
            pub_rate,
            del_rate,
            p.frames_received,
            p.groups_reset,
            p.max_latency_us as f64 / 1000.0,
        );
        let mut err = std::io::stderr().lock();
        if self.tty {
            let _ = write!(err, "\r\x1b[2K{line}");
        } else if p.elapsed.as_secs().is_multiple_of(5) || load.phase() == Phase::Draining {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }
}

fn write_json(path: &PathBuf, report: &Report) -> Result<(), String> {
    let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    if path.as_os_str() == "-" {
        println!("{json}");
        return Ok(());
    }
    std::fs::write(path, json + "\n").map_err(|e| format!("--json {}: {e}", path.display()))
}

fn main() -> ExitCode {
    let args = Args::parse();
    let config = match config(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("moq-load: {e}");
            return ExitCode::from(2);
        }
    };
    let mut live = Live {
        tty: std::io::stderr().is_terminal(),
        last: None,
    };
    let quiet = args.quiet;
    let result = load::run(config, args.relay_pid, |load, p| {
        if !quiet {
            live.show(load, p);
        }
    });
    if live.tty && !quiet {
        eprintln!();
    }
    let report = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("moq-load: {e}");
            return ExitCode::from(1);
        }
    };
    println!("{}", report.summary());
    if let Some(path) = &args.json
        && let Err(e) = write_json(path, &report)
    {
        eprintln!("moq-load: {e}");
        return ExitCode::from(1);
    }
    if report.clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Result<Args, clap::Error> {
        let mut argv = vec![
            "moq-load",
            "--url",
            "moql://127.0.0.1:4443",
            "--tls-disable-verify",
        ];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv)
    }

    fn refused(extra: &[&str]) -> String {
        config(&args(extra).unwrap()).unwrap_err()
    }

    #[test]
    fn presets_and_overrides() {
        let c = config(&args(&[]).unwrap()).unwrap();
        assert_eq!(c.scenario, Preset::Video.scenario());
        let c = config(
            &args(&[
                "--preset",
                "audio",
                "--subscribers",
                "7",
                "--duration",
                "20s",
                "--ramp-up",
                "500ms",
                "--threads",
                "1",
            ])
            .unwrap(),
        )
        .unwrap();
        assert_eq!(c.scenario.preset, Some(Preset::Audio));
        assert_eq!(c.scenario.subscribers, 7);
        assert_eq!(c.scenario.duration, Duration::from_secs(20));
        assert_eq!(c.scenario.ramp_up, Duration::from_millis(500));
        assert_eq!(c.threads, 1);
        let c = config(&args(&["--preset", "chat", "--frame-size", "100"]).unwrap()).unwrap();
        assert_eq!(
            c.scenario.preset, None,
            "a changed shape is no longer the preset"
        );
        assert_eq!(c.scenario.burst, 10);
        assert_eq!(c.target.alpns, ["moql"]);
    }

    #[test]
    fn nonsense_flags_are_refused_clearly() {
        let e = refused(&["--subscribers", "0"]);
        assert!(e.contains("--subscribers must be at least 1"), "{e}");
        let e = refused(&["--frame-size", "33554433"]);
        assert!(e.contains("protocol limit"), "{e}");
        let e = refused(&["--frame-size", "4"]);
        assert!(e.contains("16-byte"), "{e}");
        let e = refused(&["--preset", "4k"]);
        assert!(e.contains("--preset"), "{e}");
        let e = refused(&["--fps", "0"]);
        assert!(e.contains("--fps"), "{e}");
        let e = refused(&["--version", "lite-7"]);
        assert!(e.contains("--version"), "{e}");
        let e = refused(&["--transport", "tcp"]);
        assert!(e.contains("--transport"), "{e}");
        let e = refused(&["--transport", "webtransport"]);
        assert!(e.contains("https://"), "{e}");
        let e = refused(&["--io", "kqueue"]);
        assert!(e.contains("--io"), "{e}");
        let e = refused(&["--threads", "1000"]);
        assert!(e.contains("--threads"), "{e}");
        // A bad flag wins over a bad URL: it is checked first.
        let e = config(
            &Args::try_parse_from([
                "moq-load",
                "--url",
                "moql://nowhere.invalid:1",
                "--subscribers",
                "0",
            ])
            .unwrap(),
        )
        .unwrap_err();
        assert!(e.contains("--subscribers"), "{e}");
        let e =
            config(&Args::try_parse_from(["moq-load", "--url", "ftp://x:1"]).unwrap()).unwrap_err();
        assert!(e.contains("not supported"), "{e}");
        assert!(args(&["--duration", "soon"]).is_err());
        assert!(
            Args::try_parse_from(["moq-load"]).is_err(),
            "--url is required"
        );
    }

    #[test]
    fn unreachable_url_fails_with_a_timeout() {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("moql://127.0.0.1:{port}");
        let a = Args::try_parse_from([
            "moq-load",
            "--url",
            &url,
            "--tls-disable-verify",
            "--connect-timeout",
            "700ms",
            "--threads",
            "1",
            "--subscribers",
            "1",
        ])
        .unwrap();
        let started = std::time::Instant::now();
        let e = load::run(config(&a).unwrap(), None, |_, _| {}).unwrap_err();
        assert!(e.contains("could not reach") && e.contains("700ms"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
