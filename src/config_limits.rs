//! Reading the configuration's limits: `[server]` admission, `[relay]` and its session
//! bounds. Every value is checked against its range, and a bad one names its key.

use super::*;

/// The admission limits of `[server]`.
pub(super) fn admission(cli: &Cli, file: &FileServer) -> Result<AdmissionLimits, ConfigError> {
    let d = AdmissionLimits::default();
    let retry = match cli.retry.as_deref().or(file.retry.as_deref()) {
        Some(r) => r
            .parse()
            .map_err(|e| bad("server.retry (--server-retry)", e))?,
        None => d.retry,
    };
    let timeout = bounded(
        "server.handshake_timeout (--server-handshake-timeout)",
        cli.handshake_timeout,
        file.handshake_timeout,
        d.handshake_timeout.as_millis() as u64,
        100,
        60_000,
    )?;
    Ok(AdmissionLimits {
        max_connections: bounded(
            "server.max_connections (--server-max-connections)",
            us(cli.max_connections),
            us(file.max_connections),
            d.max_connections as u64,
            1,
            10_000_000,
        )? as usize,
        max_connections_per_ip: bounded(
            "server.max_connections_per_ip (--server-max-connections-per-ip)",
            us(cli.max_connections_per_ip),
            us(file.max_connections_per_ip),
            d.max_connections_per_ip as u64,
            1,
            10_000_000,
        )? as usize,
        max_handshakes: bounded(
            "server.max_handshakes (--server-max-handshakes)",
            us(cli.max_handshakes),
            us(file.max_handshakes),
            d.max_handshakes as u64,
            1,
            1_000_000,
        )? as usize,
        retry,
        retry_after: bounded(
            "server.retry_after (--server-retry-after)",
            us(cli.retry_after),
            us(file.retry_after),
            d.retry_after as u64,
            0,
            1_000_000,
        )? as usize,
        handshake_timeout: std::time::Duration::from_millis(timeout),
    })
}

/// The HTTP plane's limits, `[web]`.
pub(super) fn http(cli: &Cli, file: &FileWeb) -> Result<HttpLimits, ConfigError> {
    let d = HttpLimits::default();
    let count = |key, cli: Option<usize>, file: Option<usize>, default: usize| {
        bounded(key, us(cli), us(file), default as u64, 1, 1_000_000).map(|v| v as usize)
    };
    Ok(HttpLimits {
        max_connections: count(
            "web.max_connections (--web-max-connections)",
            cli.web_max_connections,
            file.max_connections,
            d.max_connections,
        )?,
        max_connections_per_ip: count(
            "web.max_connections_per_ip (--web-max-connections-per-ip)",
            cli.web_max_connections_per_ip,
            file.max_connections_per_ip,
            d.max_connections_per_ip,
        )?,
        max_fetches: count(
            "web.max_fetches (--web-max-fetches)",
            cli.web_max_fetches,
            file.max_fetches,
            d.max_fetches,
        )?,
        write_timeout: std::time::Duration::from_millis(bounded(
            "web.write_timeout (--web-write-timeout)",
            cli.web_write_timeout,
            file.write_timeout,
            d.write_timeout.as_millis() as u64,
            100,
            600_000,
        )?),
    })
}

/// The flag, else the file's key, else the default; within `min..=max`.
fn bounded(
    key: &str,
    cli: Option<u64>,
    file: Option<u64>,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let v = pick(cli, file, default);
    if v < min || v > max {
        Err(bad(key, format!("{v} is outside {min}..={max}")))
    } else {
        Ok(v)
    }
}

fn us(v: Option<usize>) -> Option<u64> {
    v.map(|v| v as u64)
}

/// The `[relay]` keys that bound one session.
fn session_limits(cli: &Cli, file: &FileRelay) -> Result<SessionLimits, ConfigError> {
    let ds = SessionLimits::default();
    let get = bounded;
    Ok(SessionLimits {
        max_groups_in_flight: get(
            "relay.groups_in_flight (--relay-groups-in-flight)",
            us(cli.groups_in_flight),
            us(file.groups_in_flight),
            ds.max_groups_in_flight as u64,
            1,
            1024,
        )? as usize,
        max_subscriptions: get(
            "relay.max_subscriptions (--relay-max-subscriptions)",
            us(cli.max_subscriptions),
            us(file.max_subscriptions),
            ds.max_subscriptions as u64,
            1,
            1 << 20,
        )? as usize,
        max_announces: get(
            "relay.max_announces (--relay-max-announces)",
            us(cli.max_announces),
            us(file.max_announces),
            ds.max_announces as u64,
            1,
            1 << 16,
        )? as usize,
        max_frame: get(
            "relay.max_frame (--relay-max-frame)",
            cli.max_frame,
            file.max_frame,
            ds.max_frame,
            1,
            crate::lite::MAX_FRAME_SIZE,
        )?,
        max_message: get(
            "relay.max_message (--relay-max-message)",
            us(cli.max_message),
            us(file.max_message),
            ds.max_message as u64,
            256,
            1 << 20,
        )? as usize,
        max_broadcasts: get(
            "relay.max_broadcasts (--relay-max-broadcasts)",
            us(cli.max_broadcasts),
            us(file.max_broadcasts),
            ds.max_broadcasts as u64,
            1,
            1 << 20,
        )? as usize,
        max_announce_rate: get(
            "relay.max_announce_rate (--relay-max-announce-rate)",
            cli.max_announce_rate.map(u64::from),
            file.max_announce_rate.map(u64::from),
            u64::from(ds.max_announce_rate),
            1,
            1_000_000,
        )? as u32,
        max_queued: get(
            "relay.max_queued (--relay-max-queued)",
            us(cli.max_queued),
            us(file.max_queued),
            ds.max_queued as u64,
            64 * 1024,
            1 << 34,
        )? as usize,
        max_group_frames: get(
            "relay.max_group_frames (--relay-max-group-frames)",
            us(cli.max_group_frames),
            us(file.max_group_frames),
            ds.max_group_frames as u64,
            1,
            1 << 24,
        )? as usize,
        max_group_bytes: get(
            "relay.max_group_bytes (--relay-max-group-bytes)",
            cli.max_group_bytes,
            file.max_group_bytes,
            ds.max_group_bytes,
            1024,
            1 << 40,
        )?,
        max_partial: get(
            "relay.max_partial (--relay-max-partial)",
            cli.max_partial,
            file.max_partial,
            ds.max_partial,
            1024,
            1 << 40,
        )?,
        ..ds
    })
}

pub(super) fn relay_limits(cli: &Cli, file: &FileRelay) -> Result<Limits, ConfigError> {
    let d = Limits::default();
    let get = bounded;
    let groups = get(
        "relay.cache_groups (--relay-cache-groups)",
        us(cli.cache_groups),
        us(file.cache_groups),
        d.cache.groups as u64,
        1,
        1024,
    )?;
    let age = get(
        "relay.cache_age (--relay-cache-age)",
        cli.cache_age,
        file.cache_age,
        d.cache.age.as_millis() as u64,
        0,
        3_600_000,
    )?;
    let linger = get(
        "relay.track_linger (--relay-track-linger)",
        cli.track_linger,
        file.track_linger,
        d.track_linger.as_millis() as u64,
        0,
        3_600_000,
    )?;
    let session = session_limits(cli, file)?;
    Ok(Limits {
        session,
        track_linger: std::time::Duration::from_millis(linger),
        cache: CacheLimits {
            groups: groups as usize,
            age: std::time::Duration::from_millis(age),
        },
        ..Limits::default()
    })
}
