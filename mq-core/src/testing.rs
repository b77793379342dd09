//! An in-memory broker for unit-testing handlers and publishers without Kafka.
//!
//! [`TestBroker`] stores what is published, per topic, with offsets, and hands out
//! [`Publisher`]s that write to it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;

use crate::envelope::ContentMode;
use crate::publisher::{Delivery, PublishError, Publisher, RecordSink};
use crate::record::{OutgoingRecord, Record};

/// An in-memory, single-partition-per-topic broker.
///
/// ```
/// use mq_core::testing::TestBroker;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let broker = TestBroker::new();
/// broker.publisher("/test").send("t", "k", 1u8).await.unwrap();
/// assert_eq!(broker.records("t").len(), 1);
/// # }
/// ```
#[derive(Clone, Default)]
pub struct TestBroker {
    topics: Arc<Mutex<HashMap<String, Vec<Record>>>>,
}

impl TestBroker {
    /// An empty broker.
    pub fn new() -> Self {
        TestBroker::default()
    }

    /// A publisher writing structured CloudEvents to this broker with `source`.
    pub fn publisher(&self, source: &str) -> Publisher {
        Publisher::new(Arc::new(self.clone()), source, ContentMode::Structured)
    }

    /// Everything published to `topic`, in order.
    pub fn records(&self, topic: &str) -> Vec<Record> {
        self.topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
            .cloned()
            .unwrap_or_default()
    }
}

impl RecordSink for TestBroker {
    fn send(&self, record: OutgoingRecord) -> BoxFuture<'static, Result<Delivery, PublishError>> {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        let log = topics.entry(record.topic.clone()).or_default();
        let offset = log.len() as i64;
        log.push(Record {
            topic: Arc::from(record.topic.as_str()),
            partition: 0,
            offset,
            key: record.key,
            value: Some(record.value),
            headers: record.headers,
            timestamp: Some(chrono::Utc::now().timestamp_millis()),
        });
        let delivery = Delivery {
            topic: record.topic,
            partition: 0,
            offset,
        };
        Box::pin(async move { Ok(delivery) })
    }
}
