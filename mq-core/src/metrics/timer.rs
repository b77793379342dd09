//! [`Timer`]: a lock-free histogram of durations, encoded as a Prometheus histogram.
//!
//! prometheus-client's `Histogram` takes a mutex on every `observe`. A listener's success
//! timer is observed once per record by every partition worker of the listener, so with
//! workers on several cores that mutex was contended on every record. Here each
//! observation is two relaxed atomic additions (its bucket, the sum in nanoseconds) on the
//! worker's own shard; the count is the sum of the buckets, read at scrape time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};

use super::max::{self, MaxSlots};
use super::sharded::{Shard, ShardValue, Sharded};

/// Upper bounds of the finite buckets: 0.25 ms doubling 18 times (up to about 33 s).
const BUCKETS: usize = 18;
const FIRST_BOUND_NANOS: u64 = 250_000;

/// A histogram of durations (seconds in the exposition) that never locks on `observe`.
///
/// Clones share the same counts. Per-record paths observe into a [`TimerShard`] of their
/// own (see [`Sharded`]).
#[derive(Clone, Debug, Default)]
pub(crate) struct Timer(Sharded<Counts>);

/// One worker's part of a [`Timer`].
pub(crate) type TimerShard = Shard<Counts>;

#[derive(Debug, Default)]
pub(crate) struct Counts {
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; BUCKETS + 1],
    sum_nanos: AtomicU64,
    /// The longest durations of the current and the previous window (the `_max` gauge).
    max: MaxSlots,
}

/// Index of the first bucket whose upper bound (`FIRST_BOUND_NANOS << i`) is ≥ `nanos`.
fn bucket_of(nanos: u64) -> usize {
    if nanos <= FIRST_BOUND_NANOS {
        return 0;
    }
    // ceil(log2(nanos / FIRST_BOUND_NANOS)), in integers.
    let ratio = nanos.div_ceil(FIRST_BOUND_NANOS);
    let index = (u64::BITS - (ratio - 1).leading_zeros()) as usize;
    index.min(BUCKETS)
}

fn upper_bound(index: usize) -> f64 {
    if index == BUCKETS {
        f64::INFINITY
    } else {
        (FIRST_BOUND_NANOS << index) as f64 / 1e9
    }
}

impl Counts {
    /// Records one duration.
    pub(crate) fn observe(&self, elapsed: Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(nanos)].fetch_add(1, Ordering::Relaxed);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        self.max.observe(nanos, max::epoch());
    }
}

impl ShardValue for Counts {
    fn add_to(&self, total: &Self) {
        for (b, t) in self.buckets.iter().zip(&total.buckets) {
            t.fetch_add(b.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        total
            .sum_nanos
            .fetch_add(self.sum_nanos.load(Ordering::Relaxed), Ordering::Relaxed);
        self.max.add_to(&total.max, max::epoch());
    }
}

impl Timer {
    /// Records one duration in the shared part (paths that are not per record).
    pub(crate) fn observe(&self, elapsed: Duration) {
        self.0.shared().observe(elapsed);
    }

    /// A shard for one worker.
    pub(crate) fn shard(&self) -> TimerShard {
        self.0.shard()
    }

    /// The longest duration of the last one to two minutes, in seconds (see [`max`]).
    pub(crate) fn max_seconds(&self) -> f64 {
        self.0.total().max.seconds(max::epoch())
    }
}

impl TypedMetric for Timer {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Timer {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let total = self.0.total();
        let buckets: Vec<(f64, u64)> = total
            .buckets
            .iter()
            .enumerate()
            .map(|(i, b)| (upper_bound(i), b.load(Ordering::Relaxed)))
            .collect();
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum = total.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
    use prometheus_client::registry::Registry;

    fn exposition(metric: impl EncodeMetric + Send + Sync + std::fmt::Debug + 'static) -> String {
        let mut registry = Registry::default();
        registry.register("t_seconds", "t", metric);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        out
    }

    #[test]
    fn buckets_are_the_first_upper_bound_at_or_above() {
        assert_eq!(bucket_of(0), 0);
        assert_eq!(bucket_of(250_000), 0);
        assert_eq!(bucket_of(250_001), 1);
        assert_eq!(bucket_of(500_000), 1);
        assert_eq!(bucket_of(500_001), 2);
        assert_eq!(bucket_of(FIRST_BOUND_NANOS << 17), 17);
        assert_eq!(bucket_of((FIRST_BOUND_NANOS << 17) + 1), BUCKETS);
        assert_eq!(bucket_of(u64::MAX), BUCKETS);
    }

    #[test]
    fn encodes_like_prometheus_clients_histogram() {
        // Durations exactly representable in seconds as f64, so both sums print the same.
        let durations = [
            0,
            1,
            250_000,
            250_001,
            3_000_000,
            1_000_000_000,
            64_000_000_000,
        ]
        .map(Duration::from_nanos);
        let timer = Timer::default();
        let histogram = Histogram::new(exponential_buckets(0.000_25, 2.0, 18));
        let shard = timer.shard();
        for (i, d) in durations.into_iter().enumerate() {
            if i % 2 == 0 {
                timer.observe(d);
            } else {
                shard.observe(d);
            }
            histogram.observe(d.as_secs_f64());
        }
        let ours = exposition(timer);
        let theirs = exposition(histogram);
        let lines = |s: &str| -> Vec<String> {
            s.lines()
                .filter(|l| !l.starts_with("t_seconds_sum"))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(lines(&ours), lines(&theirs));
        assert!(ours.contains("t_seconds_count 7"), "{ours}");
        assert!(ours.contains(r#"t_seconds_bucket{le="+Inf"} 7"#), "{ours}");
        let sum: f64 = ours
            .lines()
            .find_map(|l| l.strip_prefix("t_seconds_sum "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 65.003_500_002).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn shards_of_clones_add_up_across_threads() {
        let timer = Timer::default();
        std::thread::scope(|s| {
            for _ in 0..4 {
                let t = timer.clone();
                s.spawn(move || {
                    let shard = t.shard();
                    for _ in 0..10_000 {
                        shard.observe(Duration::from_micros(100));
                    }
                });
            }
        });
        assert!(exposition(timer).contains("t_seconds_count 40000"));
    }
}
