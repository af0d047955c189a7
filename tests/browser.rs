//! Headless Chromium publishes and subscribes through an in-process relay over WebTransport with
//! the reference JS client (`@moq/lite`), driven by `tests/browser/run.mjs`.
//!
//! Needs `/usr/bin/chromium` (Debian's `chromium` package), `node`, and `npm ci` in
//! `tests/browser`; `.ci/run` installs them. Without them the test fails under `CI=true` and
//! skips, loudly, elsewhere. Run it alone with
//! `cargo test --test browser -- --nocapture`.

use std::fs::File;
use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use moq_relay::config::{Cli, Config, File as ConfigFile};
use moq_relay::server::Server;

const CHROMIUM: &str = "/usr/bin/chromium";
/// The runner gives the page 90 s; this covers Chromium's start and stop around that.
const RUNNER_DEADLINE: Duration = Duration::from_secs(180);

fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser")
}

/// What the machine lacks for this test, if anything.
fn missing() -> Vec<String> {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() {
        missing.push(format!("{CHROMIUM} (apt-get install -y chromium)"));
    }
    if Command::new("node").arg("--version").output().is_err() {
        missing.push("node".into());
    }
    let modules = browser_dir().join("node_modules");
    for package in ["playwright-core", "@moq/lite", "esbuild"] {
        if !modules.join(package).exists() {
            missing.push(format!(
                "{} (npm ci in tests/browser)",
                modules.join(package).display()
            ));
        }
    }
    missing
}

/// A relay with QUIC on UDP and HTTP on TCP of the same port number, as `@moq/lite` assumes
/// for `http://` URLs.
fn relay_on_one_port() -> Server {
    let mut last = String::new();
    for _ in 0..20 {
        let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        drop(udp);
        let addr = format!("127.0.0.1:{port}");
        let cli = Cli {
            server_bind: Some(addr.clone()),
            threads: Some(2),
            pin: Some(false),
            tls_generate: vec!["localhost".into(), "127.0.0.1".into()],
            client_bind: Some("127.0.0.1:0".into()),
            web_http_listen: Some(addr),
            ..Cli::default()
        };
        let config = Config::merge(cli, ConfigFile::default()).unwrap();
        // Another process may take the port between the probe and here: try another.
        match Server::start(&config) {
            Ok(server) => return server,
            Err(e) => last = format!("{e:#}"),
        }
    }
    panic!("no port free on both UDP and TCP: {last}");
}

#[test]
fn chromium_publishes_and_subscribes_over_webtransport() {
    let missing = missing();
    if !missing.is_empty() {
        let msg = format!("browser test cannot run, missing: {}", missing.join(", "));
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}");
        }
        eprintln!("\n!!! SKIPPED {msg}\n");
        return;
    }

    let server = relay_on_one_port();
    let port = server.local_addr().port();
    assert_eq!(server.http_addr().map(|a| a.port()), Some(port));
    let fingerprint = server.fingerprints()[0].clone();

    let log_path = std::env::temp_dir().join(format!("moq-browser-{}.log", std::process::id()));
    let log = File::create(&log_path).unwrap();
    let mut child = Command::new("node")
        .arg(browser_dir().join("run.mjs"))
        .arg(port.to_string())
        .arg(&fingerprint)
        .current_dir(browser_dir())
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting node");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > RUNNER_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut output = String::new();
    File::open(&log_path)
        .unwrap()
        .read_to_string(&mut output)
        .unwrap();
    let _ = std::fs::remove_file(&log_path);
    println!("--- node tests/browser/run.mjs {port} ---\n{output}--- end ---");
    server.stop().unwrap();

    match status {
        None => panic!("the browser runner did not finish in {RUNNER_DEADLINE:?}"),
        Some(s) if s.success() => {}
        Some(s) => panic!("the browser runner failed ({s}); its output is above"),
    }
}
