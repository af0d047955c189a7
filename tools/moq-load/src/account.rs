//! Per-subscription delivery accounting, pure so that it can be checked against known
//! sequences: which frames arrived, which were expected, and what went wrong in between.
//!
//! A subscription expects every frame from the first group it could have been given to the last
//! frame its publisher wrote. A moq-lite relay hands a new subscriber the latest group from
//! frame 0, so that first group is the publisher's latest group when SUBSCRIBE was sent (or an
//! older one, if the relay had not seen the newest yet and delivered it). Frames published before
//! SUBSCRIBE was sent arrive as a catch-up burst; they count as delivered but stay out of the
//! latency figures, which describe live delivery.

use std::ops::AddAssign;

use serde::Serialize;

use super::payload::Stamp;

/// Sequences at or above this are treated as corrupt (they would need a huge bitmap); it is
/// 18 hours of frames at 1000 per second.
pub const MAX_SEQ: u64 = 1 << 26;

/// What one received frame was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// Published after SUBSCRIBE was sent: its end-to-end latency in microseconds.
    Live(u64),
    /// Published before SUBSCRIBE was sent and delivered from the relay's cache.
    CatchUp,
    Duplicate,
    /// No readable stamp, or a stamp that does not belong to the group it came in.
    Corrupt,
}

#[derive(Clone, Debug)]
pub struct Account {
    frames_per_group: u64,
    /// The publisher's latest group when SUBSCRIBE was sent; `None` if it had published nothing.
    joined_group: Option<u64>,
    /// Wall-clock microseconds when SUBSCRIBE was sent.
    subscribed_us: u64,
    first_group: Option<u64>,
    max_seq: Option<u64>,
    /// Bit `seq` is set once frame `seq` arrived.
    seen: Vec<u64>,
    tally: Tally,
}

/// Totals of one or many subscriptions.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Tally {
    /// Frames the subscriptions should have received.
    pub expected: u64,
    /// Distinct expected frames that arrived intact.
    pub delivered: u64,
    /// Payload bytes of those frames.
    pub bytes: u64,
    /// `expected - delivered`.
    pub lost: u64,
    /// Groups of the expected range with at least one frame missing: what stale-group drops
    /// (a relay resetting a group stream for a subscriber that fell behind) look like.
    pub groups_skipped: u64,
    /// Group streams the relay reset.
    pub groups_reset: u64,
    pub duplicates: u64,
    /// Frames that arrived after a frame with a higher sequence (across group streams).
    pub reordered: u64,
    pub corrupt: u64,
    /// Frames published before SUBSCRIBE and delivered anyway (late join).
    pub catchup: u64,
}

impl AddAssign for Tally {
    fn add_assign(&mut self, o: Self) {
        self.expected += o.expected;
        self.delivered += o.delivered;
        self.bytes += o.bytes;
        self.lost += o.lost;
        self.groups_skipped += o.groups_skipped;
        self.groups_reset += o.groups_reset;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
        self.corrupt += o.corrupt;
        self.catchup += o.catchup;
    }
}

impl Account {
    pub fn new(frames_per_group: u64, joined_group: Option<u64>, subscribed_us: u64) -> Self {
        Self {
            frames_per_group: frames_per_group.max(1),
            joined_group,
            subscribed_us,
            first_group: None,
            max_seq: None,
            seen: Vec::new(),
            tally: Tally::default(),
        }
    }

    /// A complete frame of `size` payload bytes arrived in group `group` at `recv_us`.
    pub fn frame(&mut self, group: u64, size: u64, stamp: Option<Stamp>, recv_us: u64) -> Received {
        let Some(stamp) =
            stamp.filter(|s| s.seq < MAX_SEQ && s.seq / self.frames_per_group == group)
        else {
            self.tally.corrupt += 1;
            return Received::Corrupt;
        };
        let (word, bit) = ((stamp.seq / 64) as usize, stamp.seq % 64);
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & (1 << bit) != 0 {
            self.tally.duplicates += 1;
            return Received::Duplicate;
        }
        self.seen[word] |= 1 << bit;
        self.tally.bytes += size;
        if self.max_seq.is_some_and(|m| stamp.seq < m) {
            self.tally.reordered += 1;
        }
        self.max_seq = self.max_seq.max(Some(stamp.seq));
        self.first_group = Some(self.first_group.map_or(group, |g| g.min(group)));
        if stamp.sent_us < self.subscribed_us {
            self.tally.catchup += 1;
            return Received::CatchUp;
        }
        Received::Live(recv_us.saturating_sub(stamp.sent_us))
    }

    /// The relay reset a group stream before it was complete.
    pub fn group_reset(&mut self) {
        self.tally.groups_reset += 1;
    }

    /// Frames received so far (distinct).
    pub fn received(&self) -> u64 {
        self.seen.iter().map(|w| u64::from(w.count_ones())).sum()
    }

    /// The first sequence this subscription is owed.
    fn start_seq(&self) -> u64 {
        let start = self
            .first_group
            .unwrap_or(u64::MAX)
            .min(self.joined_group.unwrap_or(0));
        start.saturating_mul(self.frames_per_group)
    }

    fn has(&self, seq: u64) -> bool {
        self.seen
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }

    /// Whether every frame owed out of `published` has arrived.
    pub fn complete(&self, published: u64) -> bool {
        let start = self.start_seq();
        published <= start || (start..published).all(|s| self.has(s))
    }

    /// The totals once the publisher has written `published` frames in all.
    pub fn finish(&self, published: u64) -> Tally {
        let mut t = self.tally;
        let start = self.start_seq().min(published);
        t.expected = published - start;
        let fpg = self.frames_per_group;
        let mut seq = start;
        while seq < published {
            let group_end = ((seq / fpg) + 1) * fpg;
            let end = group_end.min(published);
            let got = (seq..end).filter(|&s| self.has(s)).count() as u64;
            t.delivered += got;
            if got < end - seq {
                t.groups_skipped += 1;
            }
            seq = end;
        }
        t.lost = t.expected - t.delivered;
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FPG: u64 = 4;

    fn stamp(seq: u64, sent_us: u64) -> Option<Stamp> {
        Some(Stamp { sent_us, seq })
    }

    /// Delivers `seqs` in order, each sent at `1000 + seq` and received 250 µs later.
    fn deliver(a: &mut Account, seqs: impl IntoIterator<Item = u64>) -> Vec<Received> {
        seqs.into_iter()
            .map(|s| a.frame(s / FPG, 100, stamp(s, 1000 + s), 1250 + s))
            .collect()
    }

    #[test]
    fn complete_delivery_from_the_start() {
        let mut a = Account::new(FPG, None, 0);
        let got = deliver(&mut a, 0..10);
        assert!(got.iter().all(|r| *r == Received::Live(250)));
        assert!(a.complete(10));
        assert!(!a.complete(11));
        let t = a.finish(10);
        assert_eq!(
            t,
            Tally {
                expected: 10,
                delivered: 10,
                bytes: 1000,
                ..Default::default()
            }
        );
    }

    #[test]
    fn loss_duplicates_reordering_and_skipped_groups() {
        let mut a = Account::new(FPG, None, 0);
        // Group 1 (seqs 4..8) is dropped by the relay after one frame; 9 comes before 8;
        // 2 arrives twice.
        let got = deliver(&mut a, [0, 1, 2, 2, 3, 4, 9, 8, 10, 11]);
        assert_eq!(got[3], Received::Duplicate);
        a.group_reset();
        let t = a.finish(12);
        assert_eq!(t.expected, 12);
        assert_eq!(t.delivered, 9);
        assert_eq!(t.lost, 3, "5, 6 and 7");
        assert_eq!(t.groups_skipped, 1);
        assert_eq!(t.groups_reset, 1);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.reordered, 1, "8 after 9");
        assert_eq!(t.bytes, 900);
        assert!(!a.complete(12));
    }

    #[test]
    fn late_join_owes_from_the_latest_group_and_keeps_catch_up_out_of_latency() {
        // SUBSCRIBE sent at 1006, when the publisher was in group 1 (seqs 4..8) and had
        // written up to seq 5.
        let mut a = Account::new(FPG, Some(1), 1006);
        let got = deliver(&mut a, [4, 5, 6, 7, 8]);
        assert_eq!(got[..2], [Received::CatchUp, Received::CatchUp]);
        assert_eq!(got[2], Received::Live(250));
        let t = a.finish(9);
        assert_eq!((t.expected, t.delivered, t.lost, t.catchup), (5, 5, 0, 2));

        // Had the relay skipped group 1, frames 4..8 would be owed and missing.
        let mut b = Account::new(FPG, Some(1), 1006);
        deliver(&mut b, [8]);
        let t = b.finish(9);
        assert_eq!(
            (t.expected, t.delivered, t.lost, t.groups_skipped),
            (5, 1, 4, 1)
        );

        // A relay that had not yet seen group 1 hands over group 0 too: owed from there.
        let mut c = Account::new(FPG, Some(1), 1006);
        deliver(&mut c, 0..9);
        let t = c.finish(9);
        assert_eq!((t.expected, t.delivered, t.lost), (9, 9, 0));
    }

    #[test]
    fn nothing_received_owes_everything_since_joining() {
        let a = Account::new(FPG, Some(2), 0);
        let t = a.finish(10);
        assert_eq!(
            (t.expected, t.delivered, t.lost, t.groups_skipped),
            (2, 0, 2, 1)
        );
        let b = Account::new(FPG, None, 0);
        assert_eq!(b.finish(10).lost, 10);
        assert_eq!(b.finish(0), Tally::default());
    }

    #[test]
    fn corrupt_frames_are_not_delivered() {
        let mut a = Account::new(FPG, None, 0);
        assert_eq!(a.frame(0, 10, None, 5), Received::Corrupt);
        // Seq 5 belongs to group 1, not 0.
        assert_eq!(a.frame(0, 10, stamp(5, 0), 5), Received::Corrupt);
        assert_eq!(a.frame(0, 10, stamp(MAX_SEQ, 0), 5), Received::Corrupt);
        let t = a.finish(1);
        assert_eq!((t.corrupt, t.delivered, t.lost), (3, 0, 1));
    }

    #[test]
    fn the_last_group_may_be_short() {
        let mut a = Account::new(FPG, None, 0);
        deliver(&mut a, 0..6);
        let t = a.finish(6);
        assert_eq!((t.expected, t.lost, t.groups_skipped), (6, 0, 0));
        assert!(a.complete(6));
    }
}
