//! moq-lite versions, their ALPNs and what each one has on the wire (§2).

/// A moq-lite version. Ordered, so `v >= Version::Lite03` reads as "lite-03 or later".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Version {
    Lite01,
    Lite02,
    Lite03,
    Lite04,
    Lite05,
}

impl Version {
    /// Newest first: the reference server's preference.
    pub const ALL: [Self; 5] = [
        Self::Lite05,
        Self::Lite04,
        Self::Lite03,
        Self::Lite02,
        Self::Lite01,
    ];

    /// The shared ALPN of lite-01/02, whose version is picked by the SETUP exchange (§3.1).
    /// WebTransport with no `wt-protocol` falls back to the same exchange.
    pub const LEGACY_ALPN: &'static str = "moql";

    /// ALPNs in the reference server's order of preference (§2.2).
    pub const ALPNS: [&'static str; 4] = [
        "moq-lite-05",
        "moq-lite-04",
        "moq-lite-03",
        Self::LEGACY_ALPN,
    ];

    pub const fn code(self) -> u64 {
        match self {
            Self::Lite01 => 0xff0d_ad01,
            Self::Lite02 => 0xff0d_ad02,
            Self::Lite03 => 0xff0d_ad03,
            Self::Lite04 => 0xff0d_ad04,
            Self::Lite05 => 0xff0d_ad05,
        }
    }

    pub fn from_code(code: u64) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.code() == code)
    }

    pub const fn alpn(self) -> &'static str {
        match self {
            Self::Lite01 | Self::Lite02 => Self::LEGACY_ALPN,
            Self::Lite03 => "moq-lite-03",
            Self::Lite04 => "moq-lite-04",
            Self::Lite05 => "moq-lite-05",
        }
    }

    /// The version an ALPN (or WebTransport subprotocol) fixes. `None` for [`Self::LEGACY_ALPN`],
    /// which leaves the choice to the SETUP exchange, and for anything unknown.
    pub fn from_alpn(alpn: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|v| !v.has_setup_exchange() && v.alpn() == alpn)
    }

    /// The server's pick in the SETUP exchange: the first version in the client's list that we
    /// support (client preference wins, §2.4). Only lite-01/02 are negotiated this way.
    pub fn select(offered: &[u64], supported: &[Self]) -> Option<Self> {
        offered
            .iter()
            .filter_map(|&code| Self::from_code(code))
            .find(|v| v.has_setup_exchange() && supported.contains(v))
    }

    /// lite-01/02: CLIENT_SETUP/SERVER_SETUP on an untyped session stream, SESSION_INFO,
    /// ANNOUNCE_INIT and the untyped SUBSCRIBE_OK.
    pub const fn has_setup_exchange(self) -> bool {
        matches!(self, Self::Lite01 | Self::Lite02)
    }

    /// lite-03+: subscriber ordered/latency/start/end, SUBSCRIBE_UPDATE, typed subscribe
    /// responses, announce hop counts and the Probe stream.
    pub const fn has_subscribe_options(self) -> bool {
        matches!(self, Self::Lite03 | Self::Lite04 | Self::Lite05)
    }

    /// lite-04+: hop ids in ANNOUNCE, the request's Exclude Hop, RTT in PROBE, the Goaway stream.
    pub const fn has_hop_ids(self) -> bool {
        matches!(self, Self::Lite04 | Self::Lite05)
    }

    /// lite-05: the Setup stream, ANNOUNCE_OK, SUBSCRIBE_START/END, Fetch and Track streams,
    /// frame timestamps and datagrams.
    pub const fn has_setup_stream(self) -> bool {
        matches!(self, Self::Lite05)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_alpns() {
        for v in Version::ALL {
            assert_eq!(Version::from_code(v.code()), Some(v));
        }
        assert_eq!(Version::Lite02.code(), 0xff0dad02);
        assert_eq!(Version::from_code(0xff00000e), None);
        assert_eq!(Version::from_alpn("moq-lite-05"), Some(Version::Lite05));
        assert_eq!(Version::from_alpn("moq-lite-03"), Some(Version::Lite03));
        assert_eq!(Version::from_alpn("moql"), None);
        assert_eq!(Version::from_alpn("moqt-19"), None);
        assert_eq!(Version::Lite01.alpn(), "moql");
        assert_eq!(
            Version::ALPNS.map(Version::from_alpn)[..3],
            [
                Some(Version::Lite05),
                Some(Version::Lite04),
                Some(Version::Lite03)
            ]
        );
    }

    #[test]
    fn select_follows_client_preference() {
        let client = [0xff0dad02, 0xff0dad01, 0xff00000e];
        assert_eq!(
            Version::select(&client, &Version::ALL),
            Some(Version::Lite02)
        );
        assert_eq!(
            Version::select(&client, &[Version::Lite01]),
            Some(Version::Lite01)
        );
        assert_eq!(
            Version::select(&[0xff0dad01, 0xff0dad02], &Version::ALL),
            Some(Version::Lite01)
        );
        assert_eq!(Version::select(&[0xff00000e], &Version::ALL), None);
        // Later versions are fixed by ALPN and never negotiated in SETUP.
        assert_eq!(Version::select(&[0xff0dad05], &Version::ALL), None);
    }
}
