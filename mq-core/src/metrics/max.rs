//! The `_max` gauges of the timers (`spring_kafka_listener_seconds_max`,
//! `spring_kafka_template_seconds_max`), as Micrometer exposes them: the longest duration
//! seen recently, not since the start.
//!
//! Each timer shard keeps two max slots, one per window parity, tagged with the window's
//! number. An observation goes into the slot of the current window (one relaxed load, and
//! a compare-and-swap only when it beats the slot); the gauge is the max over the current
//! and the previous window, so it covers the last one to two minutes. Windows advance when
//! the registry is scraped (a process nobody scrapes shows nobody a stale max): after a
//! gap of several windows, older slots are recognised as stale by their tag.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;

use super::timer::Timer;
use super::TimerLabels;

/// Length of one window.
const WINDOW: Duration = Duration::from_secs(60);
/// Low bits of a slot: nanoseconds (up to about 78 hours); high bits: the window's tag.
const NANOS_BITS: u32 = 48;
const NANOS_MASK: u64 = (1 << NANOS_BITS) - 1;

/// The current window's number (process-wide: windows are a matter of time only).
static EPOCH: AtomicU64 = AtomicU64::new(0);
/// When the current window began (`None` until the first scrape).
static STARTED: Mutex<Option<Instant>> = Mutex::new(None);

/// The current window's number.
pub(super) fn epoch() -> u64 {
    EPOCH.load(Ordering::Relaxed)
}

/// Moves to the window `now` falls in (called by each scrape).
pub(super) fn advance(now: Instant) {
    let mut started = STARTED.lock().unwrap_or_else(|p| p.into_inner());
    let (next, windows) = windows_passed(*started, now);
    *started = Some(next);
    EPOCH.fetch_add(windows, Ordering::Relaxed);
}

/// The start of the window `now` falls in, and how many windows passed since `started`.
fn windows_passed(started: Option<Instant>, now: Instant) -> (Instant, u64) {
    let Some(started) = started else {
        return (now, 0);
    };
    let n = now.saturating_duration_since(started).as_secs() / WINDOW.as_secs();
    (started + WINDOW * n as u32, n)
}

fn tag(epoch: u64) -> u64 {
    epoch & ((1 << (64 - NANOS_BITS)) - 1)
}

/// Two window slots of one shard.
#[derive(Debug, Default)]
pub(super) struct MaxSlots([AtomicU64; 2]);

impl MaxSlots {
    /// Notes one duration in window `epoch`.
    pub(super) fn observe(&self, nanos: u64, epoch: u64) {
        self.offer((tag(epoch) << NANOS_BITS) | nanos.min(NANOS_MASK), epoch);
    }

    /// Puts the tagged value `v` of window `epoch` into its slot if it is newer or larger.
    fn offer(&self, v: u64, epoch: u64) {
        let slot = &self.0[(epoch & 1) as usize];
        let beats = |current: u64| current >> NANOS_BITS != v >> NANOS_BITS || v > current;
        if beats(slot.load(Ordering::Relaxed)) {
            let _ = slot.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                beats(c).then_some(v)
            });
        }
    }

    /// Adds the still current values of these slots into `total` (window `epoch`).
    pub(super) fn add_to(&self, total: &MaxSlots, epoch: u64) {
        for e in [epoch, epoch.wrapping_sub(1)] {
            let v = self.0[(e & 1) as usize].load(Ordering::Relaxed);
            if v >> NANOS_BITS == tag(e) {
                total.offer(v, e);
            }
        }
    }

    /// The max of window `epoch` and the one before, in seconds (0 when none).
    pub(super) fn seconds(&self, epoch: u64) -> f64 {
        [epoch, epoch.wrapping_sub(1)]
            .into_iter()
            .map(|e| self.0[(e & 1) as usize].load(Ordering::Relaxed))
            .zip([epoch, epoch.wrapping_sub(1)])
            .filter(|(v, e)| v >> NANOS_BITS == tag(*e))
            .map(|(v, _)| v & NANOS_MASK)
            .max()
            .unwrap_or(0) as f64
            / 1e9
    }
}

/// The timers of one family, with their labels.
type Timers = Vec<(TimerLabels, Timer)>;

/// The timers whose `_max` gauges are exposed, by family.
#[derive(Debug, Default, Clone)]
pub(super) struct Maxes(Arc<Mutex<HashMap<&'static str, Timers>>>);

impl Maxes {
    /// Exposes `timer`'s max as `<family>_max{labels}` (once per label set).
    pub(super) fn track(&self, family: &'static str, labels: &TimerLabels, timer: &Timer) {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let entries = all.entry(family).or_default();
        if !entries.iter().any(|(l, _)| l == labels) {
            entries.push((labels.clone(), timer.clone()));
        }
    }
}

impl Collector for Maxes {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let mut families: Vec<_> = all.iter().filter(|(_, v)| !v.is_empty()).collect();
        families.sort_by_key(|(name, _)| **name);
        for (family, entries) in families {
            let name = format!("{family}_max");
            let mut metric = encoder.encode_descriptor(
                &name,
                "The longest duration in the last one to two minutes",
                None,
                MetricType::Gauge,
            )?;
            for (labels, timer) in entries {
                ConstGauge::new(timer.max_seconds()).encode(metric.encode_family(labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_max_covers_this_window_and_the_previous_one() {
        let m = MaxSlots::default();
        m.observe(5_000, 10);
        m.observe(3_000, 10);
        assert_eq!(m.seconds(10), 5e-6);
        m.observe(2_000, 11);
        assert_eq!(m.seconds(11), 5e-6, "the previous window still counts");
        assert_eq!(m.seconds(12), 2e-6, "window 10 has gone");
        assert_eq!(m.seconds(14), 0.0, "all stale");
        m.observe(1_000, 14);
        assert_eq!(
            m.seconds(14),
            1e-6,
            "a stale slot is replaced, even by a smaller value"
        );
    }

    #[test]
    fn shards_merge_their_current_windows() {
        let (a, b, total) = (
            MaxSlots::default(),
            MaxSlots::default(),
            MaxSlots::default(),
        );
        a.observe(7_000, 3);
        a.observe(4_000, 4);
        b.observe(9_000, 1); // stale in window 4
        b.observe(6_000, 4);
        a.add_to(&total, 4);
        b.add_to(&total, 4);
        assert_eq!(total.seconds(4), 7e-6);
        assert_eq!(total.seconds(5), 6e-6);
    }

    #[test]
    fn windows_advance_by_whole_windows() {
        let t0 = Instant::now();
        assert_eq!(windows_passed(None, t0), (t0, 0));
        assert_eq!(windows_passed(Some(t0), t0 + WINDOW / 2), (t0, 0));
        assert_eq!(
            windows_passed(Some(t0), t0 + WINDOW * 3 + WINDOW / 2),
            (t0 + WINDOW * 3, 3)
        );
    }
}
