//! Which offset of a lane may be committed: the highest one below which every record the
//! lane received is done (handled, dead-lettered, rescheduled or skipped).
//!
//! In partition order one record is in flight at a time, so that is simply the last done
//! one. In key order several records of one partition run at once and finish in any
//! order; the tracker then holds the offsets still pending and commits up to the lowest.
//! Either way the committable offset never moves backwards.

use std::collections::BTreeSet;

/// Tracks received and done offsets of one lane.
#[derive(Debug, Default)]
pub(crate) struct OffsetTracker {
    /// The lowest offset received and not yet done. In partition order it is the only one,
    /// so the common case never touches `more` (no allocation per record).
    lowest: Option<i64>,
    /// The other offsets received and not yet done (key order).
    more: BTreeSet<i64>,
    /// The lowest and the highest offset received so far.
    received: Option<(i64, i64)>,
    /// The highest offset handed out by [`OffsetTracker::take_committable`].
    last_committed: Option<i64>,
}

impl OffsetTracker {
    /// `offset` entered the lane.
    pub(crate) fn received(&mut self, offset: i64) {
        match self.lowest {
            None => self.lowest = Some(offset),
            Some(l) if offset < l => {
                self.more.insert(l);
                self.lowest = Some(offset);
            }
            Some(l) if offset == l => {}
            Some(_) => {
                self.more.insert(offset);
            }
        }
        self.received = Some(match self.received {
            None => (offset, offset),
            Some((lo, hi)) => (lo.min(offset), hi.max(offset)),
        });
    }

    /// `offset` is done.
    pub(crate) fn done(&mut self, offset: i64) {
        if self.lowest == Some(offset) {
            self.lowest = self.more.pop_first();
        } else {
            self.more.remove(&offset);
        }
    }

    /// Records received and not yet done.
    pub(crate) fn pending(&self) -> usize {
        usize::from(self.lowest.is_some()) + self.more.len()
    }

    /// The offset through which everything received is done, when that is more than was
    /// already handed out.
    pub(crate) fn committable(&self) -> Option<i64> {
        let (lowest_received, highest_received) = self.received?;
        let through = match self.lowest {
            Some(lowest_pending) => lowest_pending - 1,
            None => highest_received,
        };
        let fresh = self.last_committed.is_none_or(|c| through > c);
        (through >= lowest_received && fresh).then_some(through)
    }

    /// [`committable`](Self::committable), remembered so that it is handed out once and
    /// never a lower one after it.
    pub(crate) fn take_committable(&mut self) -> Option<i64> {
        let c = self.committable()?;
        self.last_committed = Some(c);
        Some(c)
    }
}

#[cfg(test)]
mod tests {
    use super::OffsetTracker;

    #[test]
    fn nothing_is_committable_before_the_first_record_is_done() {
        let mut t = OffsetTracker::default();
        assert_eq!(t.committable(), None);
        t.received(10);
        assert_eq!(t.committable(), None);
        t.done(10);
        assert_eq!(t.take_committable(), Some(10));
        assert_eq!(t.take_committable(), None, "handed out once");
    }

    #[test]
    fn out_of_order_completion_commits_only_the_contiguous_prefix() {
        let mut t = OffsetTracker::default();
        for o in 5..=9 {
            t.received(o);
        }
        t.done(7);
        t.done(6);
        assert_eq!(t.committable(), None, "5 is still pending");
        t.done(5);
        assert_eq!(t.take_committable(), Some(7), "8 is still pending");
        t.done(9);
        assert_eq!(t.take_committable(), None, "8 holds 9 back");
        t.done(8);
        assert_eq!(t.take_committable(), Some(9));
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn gaps_in_offsets_do_not_hold_the_commit_back() {
        // Compacted topics and transaction markers leave holes between offsets.
        let mut t = OffsetTracker::default();
        t.received(3);
        t.received(8);
        t.done(8);
        assert_eq!(t.committable(), None);
        t.done(3);
        assert_eq!(t.take_committable(), Some(8));
    }

    #[test]
    fn the_committable_offset_never_moves_backwards() {
        let mut t = OffsetTracker::default();
        t.received(20);
        t.done(20);
        assert_eq!(t.take_committable(), Some(20));
        // The same records delivered again (the partition was re-read from an older
        // commit): nothing below what was handed out is handed out again.
        t.received(15);
        t.done(15);
        assert_eq!(t.take_committable(), None);
        t.received(21);
        t.done(21);
        assert_eq!(t.take_committable(), Some(21));
    }
}
