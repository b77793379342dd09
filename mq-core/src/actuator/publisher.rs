//! The `publisher` health component: records waiting for the broker's acknowledgement, and
//! recent delivery errors.
//!
//! [`TrackedSink`] wraps the transport's [`RecordSink`] and counts what goes through it
//! (every publish, the dead-letter ones included, goes through the app's one sink).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;

use super::health::{Health, HealthFuture, HealthIndicator};
use crate::publisher::{Delivery, PublishError, RecordSink};
use crate::record::OutgoingRecord;

/// How long failed deliveries keep the publisher `DOWN` when nothing succeeded since.
const RECENT: Duration = Duration::from_secs(60);
/// Deliveries that must fail in a row (nothing delivered in between) before the publisher
/// is `DOWN`: one record the broker refuses (too large, not authorised) is that record's
/// problem, reported in the details, not an outage of the service.
const FAILURES_FOR_DOWN: u64 = 3;

/// Counters of one app's publishes.
#[derive(Default)]
pub(crate) struct PublisherStats {
    in_flight: AtomicI64,
    delivered: AtomicU64,
    failed: AtomicU64,
    /// Failed deliveries since the last successful one.
    failing_in_a_row: AtomicU64,
    last_failure_ms: AtomicI64,
    last_error: Mutex<Option<String>>,
    /// The transport's sink, for its own account (fatal errors, producer replaced).
    sink: OnceLock<Arc<dyn RecordSink>>,
}

impl PublisherStats {
    fn finished(&self, result: &Result<Delivery, PublishError>) {
        self.in_flight.fetch_sub(1, Ordering::Relaxed);
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
                self.failing_in_a_row.store(0, Ordering::Relaxed);
            }
            // The app shutting down is not a delivery problem.
            Err(PublishError::Closed) => {}
            Err(e) => {
                let now = chrono::Utc::now().timestamp_millis();
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.last_failure_ms.store(now, Ordering::Relaxed);
                self.failing_in_a_row.fetch_add(1, Ordering::Relaxed);
                *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            }
        }
    }

    fn health(&self, now_ms: i64) -> Health {
        let last_failure = self.last_failure_ms.load(Ordering::Relaxed);
        let failing = self.failing_in_a_row.load(Ordering::Relaxed) >= FAILURES_FOR_DOWN
            && now_ms - last_failure <= RECENT.as_millis() as i64;
        let mut h = if failing {
            Health::down()
        } else {
            Health::up()
        };
        h = h
            .with_detail("inFlight", self.in_flight.load(Ordering::Relaxed).max(0))
            .with_detail("delivered", self.delivered.load(Ordering::Relaxed))
            .with_detail("deliveryErrors", self.failed.load(Ordering::Relaxed));
        if last_failure > 0 {
            let error = self
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            h = h
                .with_detail("lastError", error)
                .with_detail("lastErrorAgeMs", (now_ms - last_failure).max(0));
        }
        if let Some(status) = self.sink.get().map(|s| s.status()) {
            if status.fatal_errors > 0 {
                h = h
                    .with_detail("fatalErrors", status.fatal_errors)
                    .with_detail("lastFatalError", status.last_fatal_error);
            }
            if let Some(reason) = status.blocked {
                // Nothing goes out until the broker lifts its block.
                h.status = super::health::Status::Down;
                h = h.with_detail("blocked", reason);
            }
        }
        h
    }
}

/// A sink that counts in-flight records and delivery outcomes in [`PublisherStats`].
pub(crate) struct TrackedSink<S> {
    inner: Arc<S>,
    stats: Arc<PublisherStats>,
}

impl<S: RecordSink> TrackedSink<S> {
    pub(crate) fn new(inner: S, stats: Arc<PublisherStats>) -> Self {
        let inner = Arc::new(inner);
        let _ = stats.sink.set(inner.clone());
        TrackedSink { inner, stats }
    }
}

impl<S: RecordSink> RecordSink for TrackedSink<S> {
    fn status(&self) -> crate::publisher::SinkStatus {
        self.inner.status()
    }

    fn stamp_request(&self, request: &mut OutgoingRecord, correlation: &[u8]) -> bool {
        self.inner.stamp_request(request, correlation)
    }

    fn stamp_reply(&self, reply: &mut OutgoingRecord, correlation: &[u8]) {
        self.inner.stamp_reply(reply, correlation);
    }

    fn send(&self, record: OutgoingRecord) -> BoxFuture<'static, Result<Delivery, PublishError>> {
        self.stats.in_flight.fetch_add(1, Ordering::Relaxed);
        let sending = self.inner.send(record);
        let stats = self.stats.clone();
        Box::pin(async move {
            // Counted down even if the caller drops the future before it resolves.
            let mut guard = Pending(Some(stats));
            let result = sending.await;
            if let Some(stats) = guard.0.take() {
                stats.finished(&result);
            }
            result
        })
    }
}

/// Decrements `in_flight` of a send whose future was dropped unfinished.
struct Pending(Option<Arc<PublisherStats>>);

impl Drop for Pending {
    fn drop(&mut self) {
        if let Some(stats) = self.0.take() {
            stats.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The `publisher` component.
pub(crate) struct PublisherIndicator(pub(crate) Arc<PublisherStats>);

impl HealthIndicator for PublisherIndicator {
    fn health(&self) -> HealthFuture<'_> {
        let h = self.0.health(chrono::Utc::now().timestamp_millis());
        Box::pin(async move { h })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actuator::health::Status;
    use crate::publisher::CapturingSink;

    struct Failing;
    impl RecordSink for Failing {
        fn send(&self, r: OutgoingRecord) -> BoxFuture<'static, Result<Delivery, PublishError>> {
            Box::pin(async move {
                Err(PublishError::Broker {
                    topic: r.topic,
                    reason: "all brokers down".into(),
                    kind: crate::publisher::PublishErrorKind::Transient,
                })
            })
        }
    }

    #[tokio::test]
    async fn counts_deliveries_and_recent_errors() {
        let stats = Arc::new(PublisherStats::default());
        let ok = crate::publisher::Publisher::new(
            Arc::new(TrackedSink::new(CapturingSink::default(), stats.clone())),
            "/t",
            Default::default(),
        );
        let bad = crate::publisher::Publisher::new(
            Arc::new(TrackedSink::new(Failing, stats.clone())),
            "/t",
            Default::default(),
        );
        ok.send("t", "k", 1u8).await.unwrap();
        let now = chrono::Utc::now().timestamp_millis();
        assert_eq!(stats.health(now).status, Status::Up);
        bad.send("t", "k", 1u8).await.unwrap_err();
        let h = stats.health(chrono::Utc::now().timestamp_millis());
        assert_eq!(
            h.status,
            Status::Up,
            "one refused record is no outage: {h:?}"
        );
        assert_eq!(h.details["deliveryErrors"], 1);
        assert!(h.details["lastError"]
            .as_str()
            .unwrap()
            .contains("all brokers down"));
        bad.send("t", "k", 1u8).await.unwrap_err();
        bad.send("t", "k", 1u8).await.unwrap_err();
        let h = stats.health(chrono::Utc::now().timestamp_millis());
        assert_eq!(h.status, Status::Down, "three in a row");
        assert_eq!(h.details["deliveryErrors"], 3);
        assert_eq!(h.details["delivered"], 1);
        assert_eq!(h.details["inFlight"], 0);
        // A minute later, or after a success, it is up again.
        assert_eq!(stats.health(now + 61_000).status, Status::Up);
        ok.send("t", "k", 1u8).await.unwrap();
        assert_eq!(
            stats.health(chrono::Utc::now().timestamp_millis()).status,
            Status::Up
        );
    }
}
