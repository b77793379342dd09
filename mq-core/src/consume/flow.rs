//! Read-ahead budget of a lane: the transport pauses a lane's source when the records
//! buffered for it pass the lane's share of the consumer's budget, and the lane resumes it
//! once it has worked its buffer down to half of that.
//!
//! Counting is two atomic additions per record; the pause/resume transitions, rare, take a
//! small lock so that a pause and a resume can never be issued out of order (a lost resume
//! would stall the lane for ever).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

/// Pauses and resumes the source of one lane (a Kafka partition's fetching; a RabbitMQ
/// consumer's flow).
pub(crate) trait Valve: Send + Sync {
    /// Stop fetching records for this lane.
    fn pause(&self);
    /// Fetch again.
    fn resume(&self);
}

/// The buffered bytes of one lane and whether its source is paused.
pub(crate) struct Flow {
    buffered: AtomicUsize,
    paused: AtomicBool,
    /// See [`Flow::set_slow`]: set by the transport, cleared by the lane.
    slow: AtomicBool,
    high: AtomicUsize,
    /// See [`Flow::paced_high`].
    paced_high: AtomicUsize,
    transition: Mutex<()>,
}

/// How much a lane that keeps up needs buffered: the poll thread paces itself to a lane
/// that has more, instead of filling it to its share.
///
/// A lane's records are copied by the transport's thread and read by the lane's, on another
/// core. The closer behind the copy the lane reads, the more of the record is still in
/// cache: with the whole 32 MiB share filled (about 100,000 records of 315 bytes) every
/// record the lane took had left the caches, and one partition ran about 6% slower than
/// with this mark (BENCHMARKS.md round 6). 2 MiB is about 6,000 such records, 8 ms of
/// work for a lane that decodes and handles one in 1.3 µs.
pub(crate) const PACE_BYTES: usize = 2 << 20;

/// A record is never counted as smaller than this, so that a flood of empty records is
/// bounded too.
const MIN_RECORD_BYTES: usize = 64;

impl Flow {
    /// A lane that may buffer `high` bytes before its source is paused.
    pub(crate) fn new(high: usize) -> Flow {
        Flow {
            buffered: AtomicUsize::new(0),
            paused: AtomicBool::new(false),
            slow: AtomicBool::new(false),
            high: AtomicUsize::new(high.max(MIN_RECORD_BYTES)),
            paced_high: AtomicUsize::new(0),
            transition: Mutex::new(()),
        }
    }

    /// The bytes a record of `len` payload bytes counts for.
    pub(crate) fn weight(len: usize) -> usize {
        len.max(MIN_RECORD_BYTES)
    }

    /// Changes the lane's share (the number of lanes of the consumer changed).
    pub(crate) fn set_high(&self, high: usize) {
        self.high
            .store(high.max(MIN_RECORD_BYTES), Ordering::Relaxed);
    }

    /// Bytes buffered right now.
    pub(crate) fn buffered(&self) -> usize {
        self.buffered.load(Ordering::Relaxed)
    }

    /// The most bytes buffered right after a batch was added while the lane was paced to
    /// (neither found [slow](Flow::set_slow) nor paused). A transport that paces itself
    /// keeps this within the pace mark plus one batch, however fast the lane is: the
    /// mechanism, not the machine's speed, bounds it.
    pub(crate) fn paced_high(&self) -> usize {
        self.paced_high.load(Ordering::Relaxed)
    }

    /// Whether the source is paused right now.
    pub(crate) fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Whether `bytes` more fit in the lane's share: its buffer is empty or stays within
    /// its share, or its source is paused already (then waiting for room is pointless).
    pub(crate) fn has_room(&self, bytes: usize) -> bool {
        let buffered = self.buffered.load(Ordering::Relaxed);
        buffered == 0
            || buffered + bytes <= self.high.load(Ordering::Relaxed)
            || self.paused.load(Ordering::Relaxed)
    }

    /// Whether the lane has more buffered than a lane that keeps up needs
    /// ([`PACE_BYTES`], or its share when that is smaller) while its source is not paused
    /// and it was not found [slow](Flow::set_slow): the transport then paces itself to the
    /// lane.
    pub(crate) fn is_deep(&self) -> bool {
        self.buffered.load(Ordering::Relaxed) > self.mark()
            && !self.paused.load(Ordering::Relaxed)
            && !self.slow.load(Ordering::Relaxed)
    }

    /// Whether the lane runs low: less than half its pace mark buffered, not paused. The
    /// transport does not pace itself to one lane while another runs low (it may be
    /// waiting for records that are behind the deep lane's in the transport's queue: a
    /// lane with nothing to read runs low too, and then nothing is paced to).
    pub(crate) fn is_low(&self) -> bool {
        self.buffered.load(Ordering::Relaxed) < self.mark() / 2
            && !self.paused.load(Ordering::Relaxed)
    }

    /// The transport waited for the lane to work its buffer down and it did not: its
    /// handler is slow, and pacing to it would hold every other lane of the transport. It
    /// is not [deep](Flow::is_deep) until it has taken its buffer back within the mark (it
    /// fills to its share meanwhile and is paused, as any lane that does not keep up).
    pub(crate) fn set_slow(&self) {
        self.slow.store(true, Ordering::Relaxed);
    }

    /// The transport buffered `bytes` more for the lane.
    pub(crate) fn added(&self, bytes: usize, valve: &dyn Valve) {
        let now = self.buffered.fetch_add(bytes, Ordering::SeqCst) + bytes;
        if !self.slow.load(Ordering::Relaxed) && !self.paused.load(Ordering::Relaxed) {
            // Once a batch (not per record): the poll thread is the only writer.
            self.paced_high.fetch_max(now, Ordering::Relaxed);
        }
        if now > self.high.load(Ordering::Relaxed) && !self.paused.load(Ordering::SeqCst) {
            let _guard = self.transition.lock().unwrap_or_else(|p| p.into_inner());
            if self.paused.load(Ordering::SeqCst) {
                return;
            }
            self.paused.store(true, Ordering::SeqCst);
            valve.pause();
            // The lane may have emptied its buffer between our count and the flag: it then
            // saw no pause to undo, so look again.
            if self.buffered.load(Ordering::SeqCst) <= self.low() {
                self.paused.store(false, Ordering::SeqCst);
                valve.resume();
            }
        }
    }

    /// The lane took `bytes` out of its buffer.
    pub(crate) fn taken(&self, bytes: usize, valve: &dyn Valve) {
        let now = self
            .buffered
            .fetch_sub(bytes, Ordering::SeqCst)
            .saturating_sub(bytes);
        if now <= self.mark() && self.slow.load(Ordering::Relaxed) {
            // Caught up: paced to again.
            self.slow.store(false, Ordering::Relaxed);
        }
        if now <= self.low() && self.paused.load(Ordering::SeqCst) {
            let _guard = self.transition.lock().unwrap_or_else(|p| p.into_inner());
            if self.paused.load(Ordering::SeqCst)
                && self.buffered.load(Ordering::SeqCst) <= self.low()
            {
                self.paused.store(false, Ordering::SeqCst);
                valve.resume();
            }
        }
    }

    fn low(&self) -> usize {
        self.high.load(Ordering::Relaxed) / 2
    }

    /// The pace mark: [`PACE_BYTES`], or the lane's share when that is smaller.
    fn mark(&self) -> usize {
        PACE_BYTES.min(self.high.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicI32;

    #[derive(Default)]
    struct Counting {
        state: AtomicI32,
        calls: AtomicUsize,
    }
    impl Valve for Counting {
        fn pause(&self) {
            assert_eq!(self.state.swap(1, Ordering::SeqCst), 0, "paused twice");
            self.calls.fetch_add(1, Ordering::SeqCst);
        }
        fn resume(&self) {
            assert_eq!(
                self.state.swap(0, Ordering::SeqCst),
                1,
                "resumed while running"
            );
            self.calls.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn pauses_over_the_share_and_resumes_at_half() {
        let valve = Counting::default();
        let flow = Flow::new(1000);
        flow.added(600, &valve);
        assert!(!flow.is_paused());
        flow.added(600, &valve);
        assert!(flow.is_paused());
        flow.taken(600, &valve);
        assert!(flow.is_paused(), "600 left is above half of 1000");
        flow.taken(600, &valve);
        assert!(!flow.is_paused());
        assert_eq!(valve.calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn room_is_within_the_share_in_an_empty_buffer_or_once_paused() {
        let valve = Counting::default();
        let flow = Flow::new(1000);
        assert!(
            flow.has_room(5000),
            "an empty lane takes a batch over its share"
        );
        flow.added(600, &valve);
        assert!(flow.has_room(400));
        assert!(!flow.has_room(401), "the poll thread waits for the lane");
        flow.added(600, &valve);
        assert!(flow.is_paused());
        assert!(flow.has_room(401), "paused: waiting for room is pointless");
    }

    #[test]
    fn deep_over_the_pace_mark_until_paused_or_found_slow() {
        let valve = Counting::default();
        let flow = Flow::new(4 * PACE_BYTES);
        flow.added(PACE_BYTES, &valve);
        assert!(!flow.is_deep(), "at the mark a lane is not deep");
        flow.added(1, &valve);
        assert!(
            flow.is_deep() && flow.has_room(1),
            "deep, with room in its share"
        );
        flow.set_slow();
        assert!(!flow.is_deep(), "a slow lane is not paced to");
        flow.added(2 * PACE_BYTES, &valve);
        assert!(!flow.is_deep(), "still slow above the mark");
        flow.taken(PACE_BYTES, &valve);
        assert!(!flow.is_deep(), "still slow: not yet within the mark");
        flow.taken(PACE_BYTES + 1, &valve);
        assert!(!flow.is_deep(), "back within the mark: no longer slow");
        flow.added(1, &valve);
        assert!(flow.is_deep(), "paced to again");
        flow.added(3 * PACE_BYTES, &valve);
        assert!(
            flow.is_paused() && !flow.is_deep(),
            "a paused lane is not waited for"
        );
        assert!(!flow.is_low(), "nor does it run low");
    }

    #[test]
    fn low_below_half_the_pace_mark() {
        let valve = Counting::default();
        let flow = Flow::new(4 * PACE_BYTES);
        assert!(flow.is_low(), "empty");
        flow.added(PACE_BYTES / 2 - 1, &valve);
        assert!(flow.is_low());
        flow.added(1, &valve);
        assert!(!flow.is_low());
    }

    #[test]
    fn a_share_below_the_pace_mark_is_the_mark() {
        let valve = Counting::default();
        let flow = Flow::new(1000);
        flow.added(1000, &valve);
        assert!(!flow.is_deep());
        flow.added(1, &valve);
        assert!(flow.is_paused() && !flow.is_deep());
    }

    #[test]
    fn racing_producer_and_lane_never_leave_the_source_paused_when_empty() {
        for _ in 0..200 {
            let valve = std::sync::Arc::new(Counting::default());
            let flow = std::sync::Arc::new(Flow::new(256));
            let (f, v) = (flow.clone(), valve.clone());
            let (tx, rx) = std::sync::mpsc::channel::<usize>();
            let lane = std::thread::spawn(move || {
                for bytes in rx {
                    f.taken(bytes, &*v);
                }
            });
            for i in 0..2000 {
                let bytes = 64 + (i % 7) * 50;
                flow.added(bytes, &*valve);
                tx.send(bytes).unwrap();
            }
            drop(tx);
            lane.join().unwrap();
            assert_eq!(flow.buffered(), 0);
            assert!(!flow.is_paused(), "an empty lane must not stay paused");
            assert_eq!(valve.state.load(Ordering::SeqCst), 0);
        }
    }
}
