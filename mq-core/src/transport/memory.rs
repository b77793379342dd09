//! The in-memory broker: topics of partitions, records placed by key, committed offsets per
//! consumer group.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock};

use futures::future::BoxFuture;

use super::kafka;
use crate::envelope::ContentMode;
use crate::publisher::{Delivery, PublishError, Publisher, RecordSink, Replies};
use crate::record::{OutgoingRecord, Record};

#[derive(Default)]
struct Topic {
    partitions: Vec<Vec<Record>>,
    /// (partition, offset) of every record, in the order they were published.
    order: Vec<(usize, usize)>,
    /// Keyless records go round-robin.
    next_keyless: usize,
}

#[derive(Default)]
pub(crate) struct State {
    topics: HashMap<String, Topic>,
    /// Committed offsets (the next record to read) per (group, topic, partition).
    committed: HashMap<(String, String, i32), i64>,
}

/// An in-memory broker: topics with partitions (one unless created with more), records
/// with a key placed by a hash of the key, offsets from 0, committed offsets per group.
///
/// ```
/// use mq_core::testing::TestBroker;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let broker = TestBroker::new();
/// broker.create_topic("t", 3);
/// broker.publisher("/test").send("t", "k", 1u8).await.unwrap();
/// assert_eq!(broker.records("t").len(), 1);
/// assert_eq!(broker.partitions("t"), 3);
/// # }
/// ```
#[derive(Clone, Default)]
pub struct TestBroker {
    pub(crate) state: Arc<Mutex<State>>,
    /// The reply topic of the app on this broker and its waiting requests: a record sent
    /// there goes to its request at once (the in-memory reply consumer).
    replies: Arc<OnceLock<(String, Arc<Replies>)>>,
}

impl TestBroker {
    /// An empty broker.
    ///
    /// ```
    /// assert!(mq_core::testing::TestBroker::new().records("t").is_empty());
    /// ```
    pub fn new() -> Self {
        TestBroker::default()
    }

    /// Hands records sent to `topic` to the requests of `replies` (Spring Kafka's reply
    /// headers), and stamps requests with `topic`. Set once.
    pub(crate) fn read_replies(&self, topic: String, replies: Arc<Replies>) {
        let _ = self.replies.set((topic, replies));
    }

    pub(crate) fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates `topic` with `partitions` partitions (at least 1); a topic that exists
    /// keeps its records and gains partitions up to that number.
    ///
    /// ```
    /// let broker = mq_core::testing::TestBroker::new();
    /// broker.create_topic("orders", 4);
    /// assert_eq!(broker.partitions("orders"), 4);
    /// ```
    pub fn create_topic(&self, topic: &str, partitions: usize) {
        let mut state = self.lock();
        let t = state.topics.entry(topic.to_owned()).or_default();
        while t.partitions.len() < partitions.max(1) {
            t.partitions.push(Vec::new());
        }
    }

    /// Partitions of `topic` (a topic is created with one on first use).
    ///
    /// ```
    /// assert_eq!(mq_core::testing::TestBroker::new().partitions("new"), 1);
    /// ```
    pub fn partitions(&self, topic: &str) -> usize {
        self.create_topic(topic, 1);
        self.lock().topics[topic].partitions.len()
    }

    /// A publisher writing structured CloudEvents to this broker with `source` (an app's
    /// publisher, `TestApp::publisher`, writes each destination in its broker's mode).
    ///
    /// ```
    /// let p = mq_core::testing::TestBroker::new().publisher("/svc");
    /// # let _ = p;
    /// ```
    pub fn publisher(&self, source: &str) -> Publisher {
        Publisher::new(Arc::new(self.clone()), source, ContentMode::Structured)
    }

    /// Everything published to `topic`, in the order it was published.
    ///
    /// ```
    /// assert!(mq_core::testing::TestBroker::new().records("none").is_empty());
    /// ```
    pub fn records(&self, topic: &str) -> Vec<Record> {
        let state = self.lock();
        let Some(t) = state.topics.get(topic) else {
            return Vec::new();
        };
        t.order
            .iter()
            .map(|&(p, o)| t.partitions[p][o].clone())
            .collect()
    }

    /// The offset `group` committed on `topic`'s `partition`: the next record it reads
    /// (`None` before its first commit).
    ///
    /// ```
    /// assert_eq!(mq_core::testing::TestBroker::new().committed("g", "t", 0), None);
    /// ```
    pub fn committed(&self, group: &str, topic: &str, partition: i32) -> Option<i64> {
        self.lock()
            .committed
            .get(&(group.to_owned(), topic.to_owned(), partition))
            .copied()
    }

    /// Commits `next` for the group, never moving backwards.
    pub(crate) fn commit(&self, group: &str, topic: &str, partition: i32, next: i64) {
        let mut state = self.lock();
        let c = state
            .committed
            .entry((group.to_owned(), topic.to_owned(), partition))
            .or_insert(next);
        *c = (*c).max(next);
    }

    /// Records of `topic`'s `partition` from offset `from`.
    pub(crate) fn read(&self, topic: &str, partition: i32, from: usize) -> Vec<Record> {
        let state = self.lock();
        state
            .topics
            .get(topic)
            .and_then(|t| t.partitions.get(partition as usize))
            .map(|log| log.get(from..).unwrap_or_default().to_vec())
            .unwrap_or_default()
    }
}

impl RecordSink for TestBroker {
    fn send(
        &self,
        mut record: OutgoingRecord,
    ) -> BoxFuture<'static, Result<Delivery, PublishError>> {
        if super::rabbitmq::destination::is_rabbit(&record.topic) {
            record.topic = super::rabbitmq::destination::in_memory_topic(&record.topic);
        }
        let mut state = self.lock();
        let t = state.topics.entry(record.topic.clone()).or_default();
        if t.partitions.is_empty() {
            t.partitions.push(Vec::new());
        }
        let explicit = record
            .partition
            .filter(|p| (*p as usize) < t.partitions.len() && *p >= 0);
        let partition = match &record.key {
            _ if explicit.is_some() => explicit.unwrap_or_default() as usize,
            Some(key) => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                key.hash(&mut h);
                (h.finish() % t.partitions.len() as u64) as usize
            }
            None => {
                t.next_keyless = t.next_keyless.wrapping_add(1);
                t.next_keyless % t.partitions.len()
            }
        };
        let log = &mut t.partitions[partition];
        let offset = log.len();
        log.push(Record {
            topic: Arc::from(record.topic.as_str()),
            partition: partition as i32,
            offset: offset as i64,
            key: record.key,
            value: record.value,
            headers: record.headers,
            timestamp: Some(chrono::Utc::now().timestamp_millis()),
            timestamp_type: crate::record::TimestampType::CreateTime,
        });
        t.order.push((partition, offset));
        if let Some((topic, replies)) = self.replies.get() {
            if *topic == record.topic {
                let reply = t.partitions[partition][offset].clone();
                drop(state);
                if let Some(correlation) = kafka::reply::correlation_of(&reply.headers) {
                    let correlation = correlation.to_vec();
                    replies.complete(&correlation, reply);
                }
            }
        }
        let delivery = Delivery {
            topic: record.topic,
            partition: partition as i32,
            offset: offset as i64,
        };
        Box::pin(async move { Ok(delivery) })
    }

    /// Spring Kafka's reply headers, on a Kafka topic only.
    fn stamp_request(&self, request: &mut OutgoingRecord, correlation: &[u8]) -> bool {
        match self.replies.get() {
            Some((topic, _)) if !super::rabbitmq::destination::is_rabbit(&request.topic) => {
                kafka::reply::stamp_request(request, topic, correlation);
                true
            }
            _ => false,
        }
    }

    fn stamp_reply(&self, reply: &mut OutgoingRecord, correlation: &[u8]) {
        kafka::reply::stamp_reply(reply, correlation);
    }
}

/// The content mode an app's events take by default on `destination`, as the broker that
/// would carry it writes them: structured for a RabbitMQ destination (`amqp://`), binary for
/// a Kafka topic.
pub(crate) fn default_content_mode(destination: &str) -> ContentMode {
    if super::rabbitmq::destination::is_rabbit(destination) {
        ContentMode::Structured
    } else {
        ContentMode::Binary
    }
}
