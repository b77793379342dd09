//! The rdkafka context of a listener's consumer: turns rebalances into lanes.
//!
//! On assignment each partition gets a lane (which waits for the partition's previous lane,
//! if one is still ending). On revocation the revoked partitions' lanes stop taking
//! records, their in-flight records get up to `mq.shutdown.timeout`, lanes still running
//! after that are fenced and cancelled, and the stored offsets are committed before the
//! partitions go. Eager and cooperative protocols both come through here: a cooperative
//! revocation closes only the lanes it names, and the others keep running.

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, Weak};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Statistics, TopicPartitionList};

use crate::consume::{LaneSet, LaneSource, Valve};
use crate::metrics::Metrics;

pub(crate) use crate::consume::status::ConsumerStatus;

pub(crate) type MqConsumer = BaseConsumer<MqContext>;

/// The rdkafka context: opens and closes lanes on rebalances.
pub(crate) struct MqContext {
    /// The consumer's `group.instance.id` (static membership), if any.
    pub(crate) instance_id: Option<String>,
    pub(crate) lanes: Arc<LaneSet>,
    pub(crate) consumer: OnceLock<Weak<MqConsumer>>,
    pub(crate) status: Arc<ConsumerStatus>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) rt: tokio::runtime::Handle,
    /// The runtime the lanes run on was dropped without a shutdown: nothing to wait for.
    pub(crate) runtime_gone: tokio_util::sync::CancellationToken,
}

impl ClientContext for MqContext {
    fn stats(&self, stats: Statistics) {
        let listener = self.lanes.runtime().spec.name;
        for topic in stats.topics.values() {
            for p in topic.partitions.values() {
                if p.partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics
                        .set_lag(listener, &topic.topic, p.partition, p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for MqContext {
    fn pre_rebalance(
        &self,
        consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let keys: Vec<_> = tpl
                .elements()
                .iter()
                .map(|e| crate::consume::LaneKey::of(e.topic(), e.partition()))
                .collect();
            tracing::info!(
                listener = self.lanes.runtime().spec.name,
                partitions = ?keys.iter().map(|k| format!("{}-{}", k.topic, k.partition)).collect::<Vec<_>>(),
                "partitions revoked"
            );
            self.block_on(self.lanes.close(Some(&keys)));
            // A fatal error may come with a revocation ahead of its event: a fenced
            // consumer commits nothing (its records go to the next owner).
            if self.status.stopped().is_none() && consumer.client().fatal_error().is_none() {
                commit_stored(consumer);
            }
            // A revoked partition's lag is its next owner's to report.
            let listener = self.lanes.runtime().spec.name;
            for k in &keys {
                self.metrics.remove_lag(listener, &k.topic, k.partition);
            }
            self.status
                .assigned
                .store(self.lanes.len(), Ordering::Relaxed);
        }
    }

    fn post_rebalance(
        &self,
        _consumer: &rdkafka::consumer::BaseConsumer<Self>,
        rebalance: &Rebalance<'_>,
    ) {
        self.status.rebalances.fetch_add(1, Ordering::Relaxed);
        match rebalance {
            Rebalance::Assign(tpl) => {
                let Some(consumer) = self.consumer.get().cloned() else {
                    return;
                };
                for e in tpl.elements() {
                    let key = crate::consume::LaneKey::of(e.topic(), e.partition());
                    let source = Arc::new(PartitionSource {
                        consumer: consumer.clone(),
                        status: self.status.clone(),
                        topic: key.topic.clone(),
                        partition: key.partition,
                    });
                    // A partition paused by a previous lane starts flowing again.
                    source.resume();
                    self.lanes.open(key, source);
                }
                self.status
                    .assigned
                    .store(self.lanes.len(), Ordering::Relaxed);
                self.status.member.store(true, Ordering::Relaxed);
                tracing::info!(
                    listener = self.lanes.runtime().spec.name,
                    partitions = ?tpl.elements().iter().map(|e| format!("{}-{}", e.topic(), e.partition())).collect::<Vec<_>>(),
                    "partitions assigned"
                );
            }
            Rebalance::Error(e) => tracing::error!(error = %e, "rebalance failed"),
            Rebalance::Revoke(_) => {}
        }
    }
}

impl MqContext {
    /// Waits for `f` inside a rebalance callback. Those run within a poll on the consumer's
    /// poll thread (outside the runtime: wait there), or within the consumer's close on a
    /// blocking thread of the runtime (step out of the async context to wait; on a
    /// current-thread runtime that cannot block, do not wait: closed lanes are then fenced
    /// at once by the next lane's wait for them, and their records are delivered again).
    ///
    /// A panic must not unwind into librdkafka (it would abort the process): one is caught
    /// and logged, and the closed lanes are then fenced by their successors as above.
    fn block_on(&self, f: impl std::future::Future<Output = ()>) {
        if self.runtime_gone.is_cancelled() {
            return;
        }
        let wait = std::panic::AssertUnwindSafe(|| match tokio::runtime::Handle::try_current() {
            Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| h.block_on(f));
            }
            Ok(_) => tracing::debug!("current-thread runtime: not waiting for closed lanes"),
            Err(_) => self.rt.block_on(f),
        });
        if std::panic::catch_unwind(wait).is_err() {
            tracing::warn!("waiting for the revoked partitions' lanes failed; they are fenced");
        }
    }
}

/// Commits the stored offsets now (revocation, shutdown).
pub(crate) fn commit_stored<C: ConsumerContext>(consumer: &impl Consumer<C>) {
    match consumer.commit_consumer_state(CommitMode::Sync) {
        Ok(()) => {}
        Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(e) => tracing::warn!(error = %e, "commit of stored offsets failed"),
    }
}

/// One assigned partition as a lane's source: stores offsets, pauses and resumes fetching.
struct PartitionSource {
    consumer: Weak<MqConsumer>,
    /// Its consumer's status: once the consumer stopped for good, nothing is stored.
    status: Arc<ConsumerStatus>,
    topic: Arc<str>,
    partition: i32,
}

impl PartitionSource {
    fn tpl(&self) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, self.partition);
        tpl
    }
}

impl Valve for PartitionSource {
    fn pause(&self) {
        if let Some(c) = self.consumer.upgrade() {
            if let Err(e) = c.pause(&self.tpl()) {
                tracing::debug!(error = %e, topic = %self.topic, partition = self.partition, "pause failed");
            }
        }
    }

    fn resume(&self) {
        if let Some(c) = self.consumer.upgrade() {
            if let Err(e) = c.resume(&self.tpl()) {
                tracing::debug!(error = %e, topic = %self.topic, partition = self.partition, "resume failed");
            }
        }
    }
}

impl LaneSource for PartitionSource {
    fn commit_through(&self, offset: i64) {
        // A consumer stopped by a fatal error commits nothing more: the records it held
        // are read again by their partitions' next owner.
        if self.status.stopped().is_some() {
            return;
        }
        let Some(c) = self.consumer.upgrade() else {
            return;
        };
        // librdkafka stores `offset + 1`, the next record to read.
        if let Err(e) = c.store_offset(&self.topic, self.partition, offset) {
            // The partition was revoked meanwhile: its next owner reads the record again.
            tracing::debug!(error = %e, "offset not stored");
        }
    }
}
