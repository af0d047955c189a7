//! The shape of a load run: how many broadcasts, tracks and subscribers, and what each track
//! publishes. Presets give the usual shapes; every field can be overridden.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use super::payload::STAMP_LEN;
use moq_relay::lite::MAX_FRAME_SIZE;

/// The usual traffic shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// About 2.5 Mbit/s per track: 10 KiB frames at 30 fps in 2 s groups.
    Video,
    /// Opus-like: 160-byte frames at 50 fps, 10 frames (200 ms) per group.
    Audio,
    /// Tiny messages in bursts: 10 messages of 64 bytes back to back twice a second, each
    /// message its own group.
    Chat,
    /// Many broadcasts with few subscribers each: 100 broadcasts of a 480 kbit/s track, two
    /// subscribers each.
    Many,
}

impl Preset {
    pub const ALL: [Self; 4] = [Self::Video, Self::Audio, Self::Chat, Self::Many];

    pub fn name(self) -> &'static str {
        match self {
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Chat => "chat",
            Self::Many => "many",
        }
    }

    pub fn scenario(self) -> Scenario {
        let base = Scenario {
            preset: Some(self),
            broadcasts: 1,
            tracks: 1,
            subscribers: 10,
            frame_size: 10_416,
            fps: 30.0,
            burst: 1,
            frames_per_group: 60,
            duration: Duration::from_secs(30),
            ramp_up: Duration::from_secs(1),
            connections_per_thread: None,
        };
        match self {
            Self::Video => base,
            Self::Audio => Scenario {
                subscribers: 100,
                frame_size: 160,
                fps: 50.0,
                frames_per_group: 10,
                ..base
            },
            Self::Chat => Scenario {
                subscribers: 100,
                frame_size: 64,
                fps: 20.0,
                burst: 10,
                frames_per_group: 1,
                ..base
            },
            Self::Many => Scenario {
                broadcasts: 100,
                subscribers: 2,
                frame_size: 2_000,
                ..base
            },
        }
    }
}

impl fmt::Display for Preset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Preset {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown preset `{s}` (video, audio, chat or many)"))
    }
}

/// What to publish and who subscribes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Scenario {
    pub preset: Option<Preset>,
    pub broadcasts: usize,
    /// Tracks per broadcast.
    pub tracks: usize,
    /// Subscribers per track. Each subscriber is one viewer of one broadcast and subscribes to
    /// all of its tracks.
    pub subscribers: usize,
    /// Payload bytes per frame, including the 16-byte stamp.
    pub frame_size: usize,
    /// Frames per second per track.
    pub fps: f64,
    /// Frames written back to back each time; the average rate stays `fps`.
    pub burst: usize,
    pub frames_per_group: u64,
    /// How long publishers publish, after the ramp-up.
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    /// Subscribers connect spread over this time; publishing starts when it is over.
    #[serde(serialize_with = "secs")]
    pub ramp_up: Duration,
    /// `None`: one connection per subscriber, as real viewers have. `Some(n)`: subscribers are
    /// packed onto `n` connections per client thread, each subscription on its own subscribe
    /// stream, to reach subscriber counts beyond what handshakes allow.
    pub connections_per_thread: Option<usize>,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Bounds that keep a run meaningful on one client machine.
pub const MAX_CONNECTIONS: usize = 100_000;
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
pub const MAX_FPS: f64 = 10_000.0;

impl Default for Scenario {
    fn default() -> Self {
        Preset::Video.scenario()
    }
}

impl Scenario {
    pub fn tracks_total(&self) -> usize {
        self.broadcasts * self.tracks
    }

    /// Viewers in all: each watches one broadcast.
    pub fn viewers(&self) -> usize {
        self.broadcasts * self.subscribers
    }

    pub fn subscriptions(&self) -> usize {
        self.viewers() * self.tracks
    }

    /// Payload bit rate of one track.
    pub fn track_bitrate(&self) -> f64 {
        self.frame_size as f64 * 8.0 * self.fps
    }

    /// Checks the scenario; the message names the flag to fix.
    pub fn validate(&self) -> Result<(), String> {
        if self.broadcasts == 0 {
            return Err("--broadcasts must be at least 1".into());
        }
        if self.tracks == 0 {
            return Err("--tracks must be at least 1".into());
        }
        if self.subscribers == 0 {
            return Err(
                "--subscribers must be at least 1: without subscribers nothing is measured".into(),
            );
        }
        if self.frame_size < STAMP_LEN {
            return Err(format!(
                "--frame-size {} is below {STAMP_LEN}: every frame carries a 16-byte timestamp and sequence",
                self.frame_size
            ));
        }
        if self.frame_size as u64 > MAX_FRAME_SIZE {
            return Err(format!(
                "--frame-size {} is above the protocol limit: moq-lite caps a frame at {MAX_FRAME_SIZE} bytes (32 MiB)",
                self.frame_size
            ));
        }
        if !(self.fps > 0.0 && self.fps <= MAX_FPS) {
            return Err(format!(
                "--fps {} must be above 0 and at most {MAX_FPS}",
                self.fps
            ));
        }
        if self.burst == 0 {
            return Err("--burst must be at least 1".into());
        }
        if self.frames_per_group == 0 {
            return Err("--frames-per-group must be at least 1".into());
        }
        if self.duration.is_zero() || self.duration > MAX_DURATION {
            return Err(format!(
                "--duration {:?} must be above 0 and at most 24h",
                self.duration
            ));
        }
        if self.ramp_up > MAX_DURATION {
            return Err("--ramp-up must be at most 24h".into());
        }
        if self.connections_per_thread == Some(0) {
            return Err("--connections-per-thread must be at least 1".into());
        }
        let conns = self
            .broadcasts
            .checked_add(self.viewers())
            .filter(|_| self.broadcasts.checked_mul(self.subscribers).is_some())
            .filter(|_| self.viewers().checked_mul(self.tracks).is_some());
        match conns {
            Some(n) if n <= MAX_CONNECTIONS || self.connections_per_thread.is_some() => Ok(()),
            _ => Err(format!(
                "{} broadcasts x {} subscribers is more than {MAX_CONNECTIONS} connections; \
                 use --connections-per-thread to pack subscribers",
                self.broadcasts, self.subscribers
            )),
        }
    }
}

/// Parses `30s`, `500ms`, `2m`, `1h` or a bare number of seconds (`1.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (like 30s, 500ms, 2m)"))?;
    let scale = match unit.trim() {
        "" | "s" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        other => return Err(format!("`{other}` is not a duration unit (ms, s, m, h)")),
    };
    let secs = value * scale;
    if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_are_valid_and_shaped_as_named() {
        for p in Preset::ALL {
            let s = p.scenario();
            s.validate().unwrap();
            assert_eq!(p.name().parse::<Preset>().unwrap(), p);
        }
        let video = Preset::Video.scenario();
        let mbps = video.track_bitrate() / 1e6;
        assert!((2.4..2.6).contains(&mbps), "{mbps}");
        assert_eq!(video.frames_per_group as f64 / video.fps, 2.0);
        assert_eq!(Preset::Audio.scenario().fps, 50.0);
        assert!(Preset::Many.scenario().broadcasts >= 50);
        assert!(
            "hd".parse::<Preset>()
                .unwrap_err()
                .contains("unknown preset")
        );
    }

    #[test]
    fn nonsense_is_refused_with_the_flag_named() {
        let ok = Scenario::default();
        let cases: Vec<(Scenario, &str)> = vec![
            (
                Scenario {
                    subscribers: 0,
                    ..ok.clone()
                },
                "--subscribers",
            ),
            (
                Scenario {
                    broadcasts: 0,
                    ..ok.clone()
                },
                "--broadcasts",
            ),
            (
                Scenario {
                    tracks: 0,
                    ..ok.clone()
                },
                "--tracks",
            ),
            (
                Scenario {
                    frame_size: 8,
                    ..ok.clone()
                },
                "--frame-size",
            ),
            (
                Scenario {
                    frame_size: (MAX_FRAME_SIZE + 1) as usize,
                    ..ok.clone()
                },
                "protocol limit",
            ),
            (
                Scenario {
                    fps: 0.0,
                    ..ok.clone()
                },
                "--fps",
            ),
            (
                Scenario {
                    fps: f64::NAN,
                    ..ok.clone()
                },
                "--fps",
            ),
            (
                Scenario {
                    burst: 0,
                    ..ok.clone()
                },
                "--burst",
            ),
            (
                Scenario {
                    frames_per_group: 0,
                    ..ok.clone()
                },
                "--frames-per-group",
            ),
            (
                Scenario {
                    duration: Duration::ZERO,
                    ..ok.clone()
                },
                "--duration",
            ),
            (
                Scenario {
                    connections_per_thread: Some(0),
                    ..ok.clone()
                },
                "--connections-per-thread",
            ),
            (
                Scenario {
                    broadcasts: 1000,
                    subscribers: 1000,
                    ..ok.clone()
                },
                "--connections-per-thread",
            ),
        ];
        for (s, flag) in cases {
            let e = s.validate().unwrap_err();
            assert!(e.contains(flag), "{e} should name {flag}");
        }
        assert!(
            Scenario {
                frame_size: MAX_FRAME_SIZE as usize,
                ..ok
            }
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("30").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("-3s").is_err());
    }
}
