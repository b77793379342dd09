//! [`InFlight`]: the records a listener is handling right now, as a gauge whose per-record
//! updates stay on the worker's own cache line.

use std::sync::atomic::{AtomicI64, Ordering};

use prometheus_client::encoding::{EncodeMetric, MetricEncoder};
use prometheus_client::metrics::{MetricType, TypedMetric};

use super::sharded::{Shard, ShardValue, Sharded};

/// A gauge made of per-worker shards ([`Sharded`]), summed when scraped.
#[derive(Clone, Debug, Default)]
pub(crate) struct InFlight(Sharded<Count>);

/// One worker's part of an [`InFlight`] gauge.
pub(crate) type InFlightShard = Shard<Count>;

#[derive(Debug, Default)]
pub(crate) struct Count(AtomicI64);

impl Count {
    /// One more record in flight.
    pub(crate) fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// One record fewer in flight.
    pub(crate) fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ShardValue for Count {
    fn add_to(&self, total: &Self) {
        total
            .0
            .fetch_add(self.0.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

impl InFlight {
    /// A shard for one worker.
    pub(crate) fn shard(&self) -> InFlightShard {
        self.0.shard()
    }

    /// The records in flight in every worker.
    pub(crate) fn get(&self) -> i64 {
        self.0.total().0.load(Ordering::Relaxed)
    }
}

impl TypedMetric for InFlight {
    const TYPE: MetricType = MetricType::Gauge;
}

impl EncodeMetric for InFlight {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.get())
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_the_workers() {
        let g = InFlight::default();
        let (a, b) = (g.shard(), g.shard());
        a.inc();
        b.inc();
        b.inc();
        b.dec();
        assert_eq!(g.get(), 2);
        a.dec();
        drop(a);
        assert_eq!(g.get(), 1);
    }
}
