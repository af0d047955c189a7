//! Who may open a connection: the relay's answer to a handshake flood and to one address
//! taking every slot. Each Initial is judged before quinn allocates anything for it.
//!
//! - Unvalidated Initials get a stateless Retry (the client proves it owns its address with
//!   one more round trip) always, never, or, by default, once a core has many handshakes in
//!   flight. A spoofed flood then costs the relay no state at all.
//! - Handshakes in flight per core, connections in total and connections per source address
//!   have caps; over one, the Initial is refused (CONNECTION_REFUSED, stateless too).
//! - A handshake that does not complete in time is closed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// When unvalidated Initials are answered with a Retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryPolicy {
    Never,
    /// Once the core has [`AdmissionLimits::retry_after`] handshakes in flight.
    Auto,
    Always,
}

impl FromStr for RetryPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "never" => Ok(Self::Never),
            "auto" => Ok(Self::Auto),
            "always" => Ok(Self::Always),
            _ => Err(format!("`{s}` is not one of never, auto, always")),
        }
    }
}

/// Named bounds on incoming connections.
#[derive(Clone, Debug)]
pub struct AdmissionLimits {
    /// Server connections open at once, over every core.
    pub max_connections: usize,
    /// Server connections open at once from one source address.
    pub max_connections_per_ip: usize,
    /// Handshakes in flight on one core; past it, Initials are refused.
    pub max_handshakes: usize,
    pub retry: RetryPolicy,
    /// Handshakes in flight on one core from which `Auto` answers with Retry.
    pub retry_after: usize,
    /// A handshake not complete after this long is closed.
    pub handshake_timeout: Duration,
}

impl Default for AdmissionLimits {
    fn default() -> Self {
        Self {
            max_connections: 20_000,
            max_connections_per_ip: 4_096,
            max_handshakes: 1_024,
            retry: RetryPolicy::Auto,
            retry_after: 128,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// What to do with an Initial.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Accept,
    Retry,
    /// Refused, naming the limit.
    Refuse(&'static str),
}

/// The connection counts every core shares: touched once per connection, never per packet.
#[derive(Debug)]
pub(crate) struct Admission {
    pub(crate) limits: AdmissionLimits,
    total: AtomicUsize,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl Admission {
    pub(crate) fn new(limits: AdmissionLimits) -> Self {
        Self {
            limits,
            total: AtomicUsize::new(0),
            per_ip: Mutex::new(HashMap::new()),
        }
    }

    /// Judge an Initial from `ip` on a core with `handshakes` in flight. An `Accept` has
    /// counted the connection: [`Self::release`] it when it is gone.
    pub(crate) fn judge(
        &self,
        ip: IpAddr,
        handshakes: usize,
        validated: bool,
        may_retry: bool,
    ) -> Verdict {
        let l = &self.limits;
        let retry = match l.retry {
            RetryPolicy::Never => false,
            RetryPolicy::Always => true,
            RetryPolicy::Auto => handshakes >= l.retry_after,
        };
        if retry && !validated && may_retry {
            return Verdict::Retry;
        }
        if handshakes >= l.max_handshakes {
            return Verdict::Refuse("server.max_handshakes");
        }
        if self.total.fetch_add(1, Ordering::Relaxed) >= l.max_connections {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Verdict::Refuse("server.max_connections");
        }
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        let n = per_ip.entry(ip).or_insert(0);
        if *n >= l.max_connections_per_ip {
            drop(per_ip);
            self.total.fetch_sub(1, Ordering::Relaxed);
            return Verdict::Refuse("server.max_connections_per_ip");
        }
        *n += 1;
        Verdict::Accept
    }

    /// An accepted connection from `ip` is gone.
    pub(crate) fn release(&self, ip: IpAddr) {
        self.total.fetch_sub(1, Ordering::Relaxed);
        let mut per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                per_ip.remove(&ip);
            }
        }
    }

    /// Connections counted now, in total and from `ip`.
    #[cfg(test)]
    fn counts(&self, ip: IpAddr) -> (usize, usize) {
        let per_ip = self.per_ip.lock().unwrap_or_else(|e| e.into_inner());
        (
            self.total.load(Ordering::Relaxed),
            per_ip.get(&ip).copied().unwrap_or(0),
        )
    }
}

/// An address as its owner sees it: a v4-mapped IPv6 address is the IPv4 one.
pub(crate) fn source_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> AdmissionLimits {
        AdmissionLimits {
            max_connections: 3,
            max_connections_per_ip: 2,
            max_handshakes: 10,
            retry: RetryPolicy::Auto,
            retry_after: 5,
            handshake_timeout: Duration::from_secs(1),
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn caps_in_total_and_per_address_and_release() {
        let a = Admission::new(limits());
        assert_eq!(a.judge(A, 0, false, true), Verdict::Accept);
        assert_eq!(a.judge(A, 0, false, true), Verdict::Accept);
        assert_eq!(
            a.judge(A, 0, false, true),
            Verdict::Refuse("server.max_connections_per_ip")
        );
        assert_eq!(a.judge(B, 0, false, true), Verdict::Accept);
        assert_eq!(
            a.judge(B, 0, false, true),
            Verdict::Refuse("server.max_connections")
        );
        assert_eq!(a.counts(A), (3, 2));
        a.release(A);
        assert_eq!(a.counts(A), (2, 1));
        assert_eq!(a.judge(B, 0, false, true), Verdict::Accept);
        assert_eq!(a.counts(B), (3, 2));
    }

    #[test]
    fn retry_when_busy_unless_validated() {
        let a = Admission::new(limits());
        assert_eq!(a.judge(A, 4, false, true), Verdict::Accept);
        assert_eq!(a.judge(A, 5, false, true), Verdict::Retry);
        // A retried client comes back validated; one that cannot be retried is judged as is.
        assert_eq!(a.judge(A, 5, true, true), Verdict::Accept);
        assert_eq!(
            a.judge(B, 10, true, true),
            Verdict::Refuse("server.max_handshakes")
        );
        let always = Admission::new(AdmissionLimits {
            retry: RetryPolicy::Always,
            ..limits()
        });
        assert_eq!(always.judge(A, 0, false, true), Verdict::Retry);
        assert_eq!(always.judge(A, 0, false, false), Verdict::Accept);
        let never = Admission::new(AdmissionLimits {
            retry: RetryPolicy::Never,
            ..limits()
        });
        assert_eq!(never.judge(A, 9, false, true), Verdict::Accept);
    }

    #[test]
    fn mapped_addresses_count_as_ipv4() {
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(source_ip(mapped), A);
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(source_ip(v6), v6);
    }
}
