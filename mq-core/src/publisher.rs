//! [`Publisher`]: the `KafkaTemplate` of `mq`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use serde::Serialize;

use crate::envelope::{self, short_type_name, ContentMode, Event};
use crate::metrics::Metrics;
use crate::record::OutgoingRecord;

/// Where a published record landed.
///
/// ```
/// let d = mq_core::Delivery { topic: "t".into(), partition: 0, offset: 3 };
/// assert_eq!(d.offset, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Topic written to.
    pub topic: String,
    /// Partition written to.
    pub partition: i32,
    /// Offset of the record.
    pub offset: i64,
}

/// Why a publish failed.
///
/// ```
/// let e = mq_core::PublishError::Closed;
/// assert_eq!(e.to_string(), "the publisher is shut down");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The data could not be serialized to JSON.
    #[error("cannot serialize the event for topic {topic}: {source}")]
    Serialize {
        /// Destination topic.
        topic: String,
        /// The serde error.
        source: serde_json::Error,
    },
    /// The broker (or the client, after its retries and `delivery.timeout.ms`) gave up.
    #[error("publishing to {topic} failed: {reason}")]
    Broker {
        /// Destination topic.
        topic: String,
        /// The client's error.
        reason: String,
        /// Whether trying again can help, as the transport classified the error.
        kind: PublishErrorKind,
    },
    /// The app is shutting down.
    #[error("the publisher is shut down")]
    Closed,
}

/// What a failed publish says about trying again; the transport maps its own error codes
/// onto these, and the [recoverer](crate::failure::recoverer) acts on them.
///
/// ```
/// use mq_core::{PublishError, PublishErrorKind};
/// let e = PublishError::Broker { topic: "t".into(), reason: "too large".into(), kind: PublishErrorKind::RecordRejected };
/// assert_eq!(e.kind(), PublishErrorKind::RecordRejected);
/// assert_eq!(PublishError::Closed.kind(), PublishErrorKind::Transient);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PublishErrorKind {
    /// Timeouts, unreachable brokers, leader changes, shutdown: the same record may go
    /// through later.
    Transient,
    /// This record can never be written as it is: too large, invalid, corrupt. A smaller
    /// record may go through.
    RecordRejected,
    /// The destination refuses every record: not authorized, unknown topic (auto-creation
    /// off). Needs an operator; retrying the same record later may work.
    DestinationRejected,
}

impl PublishError {
    /// How the failure is classified.
    ///
    /// ```
    /// assert_eq!(mq_core::PublishError::Closed.kind(), mq_core::PublishErrorKind::Transient);
    /// ```
    pub fn kind(&self) -> PublishErrorKind {
        match self {
            PublishError::Serialize { .. } => PublishErrorKind::RecordRejected,
            PublishError::Broker { kind, .. } => *kind,
            PublishError::Closed => PublishErrorKind::Transient,
        }
    }
}

/// The transport side of a publisher: sends one record and reports where it landed.
///
/// Kafka's producer implements it; so does the in-memory broker of [`crate::testing`].
pub trait RecordSink: Send + Sync + 'static {
    /// Sends a record; resolves when the broker acknowledged it (per the `acks` setting).
    fn send(&self, record: OutgoingRecord) -> BoxFuture<'static, Result<Delivery, PublishError>>;

    /// What the sink knows about its own health (shown by the `publisher` health component).
    fn status(&self) -> SinkStatus {
        SinkStatus::default()
    }
}

/// A sink's own account of its health.
///
/// ```
/// assert_eq!(mq_core::publisher::SinkStatus::default().fatal_errors, 0);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SinkStatus {
    /// Fatal client errors seen (each replaced the client).
    pub fatal_errors: u64,
    /// The last of them.
    pub last_fatal_error: Option<String>,
}

/// The event a publisher is publishing on behalf of (set inside handlers).
#[derive(Debug, Clone)]
pub(crate) struct Cause {
    pub(crate) event_id: String,
    pub(crate) correlationid: Option<String>,
    pub(crate) traceparent: Option<String>,
}

impl Cause {
    pub(crate) fn of<T>(event: &Event<T>) -> Self {
        Cause {
            event_id: event.id.clone(),
            correlationid: event.correlationid.clone(),
            traceparent: event.traceparent.clone(),
        }
    }
}

/// Publishes events: wraps data in the CloudEvents envelope and sends it.
///
/// Inside a handler, take it from [`Context::publisher`](crate::Context::publisher): events
/// sent from there carry the handled event's correlation id (or its id, when it had none)
/// and trace context, and its id as their causation id. Outside handlers, take it from the
/// running app ([`RunningApp::publisher`](crate::RunningApp::publisher)).
///
/// ```
/// use mq_core::testing::TestBroker;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let broker = TestBroker::new();
/// let publisher = broker.publisher("/order-service");
/// let delivery = publisher.send("orders", "order-1", serde_json::json!({"qty": 2})).await.unwrap();
/// assert_eq!((delivery.topic.as_str(), delivery.offset), ("orders", 0));
/// # }
/// ```
#[derive(Clone)]
pub struct Publisher {
    shared: Arc<Shared>,
    cause: Option<Arc<Cause>>,
}

/// What every clone of a publisher shares: cloning one is a reference count, not four.
#[derive(Clone)]
struct Shared {
    sink: Arc<dyn RecordSink>,
    source: Arc<str>,
    mode: ContentMode,
    /// Destinations whose mode differs from `mode`
    /// (`mq.kafka.producer.destinations.<topic>.content-mode`).
    topic_modes: HashMap<String, ContentMode>,
    metrics: Option<Arc<Metrics>>,
}

impl Publisher {
    /// A publisher over a sink. `source` becomes the CloudEvents `source` of every event.
    ///
    /// ```
    /// # use mq_core::testing::TestBroker;
    /// let sink = TestBroker::new();
    /// let p = mq_core::Publisher::new(std::sync::Arc::new(sink), "/svc", Default::default());
    /// # let _ = p;
    /// ```
    pub fn new(sink: Arc<dyn RecordSink>, source: impl Into<Arc<str>>, mode: ContentMode) -> Self {
        Publisher {
            shared: Arc::new(Shared {
                sink,
                source: source.into(),
                mode,
                topic_modes: HashMap::new(),
                metrics: None,
            }),
            cause: None,
        }
    }

    /// Sets the content mode of some destination topics; every other topic keeps the mode
    /// given to [`Publisher::new`]. Dead letters, retry-topic copies and replays
    /// ([`Publisher::send_record`]) are sent as they are, whatever their topic's mode.
    ///
    /// ```
    /// use mq_core::envelope::ContentMode;
    /// # use mq_core::testing::TestBroker;
    /// let p = TestBroker::new()
    ///     .publisher("/svc")
    ///     .with_topic_modes([("orders.v1".to_string(), ContentMode::Binary)]);
    /// assert_eq!(p.content_mode("orders.v1"), ContentMode::Binary);
    /// assert_eq!(p.content_mode("payments"), ContentMode::Structured);
    /// ```
    pub fn with_topic_modes(
        mut self,
        modes: impl IntoIterator<Item = (String, ContentMode)>,
    ) -> Self {
        Arc::make_mut(&mut self.shared).topic_modes.extend(modes);
        self
    }

    /// The content mode events sent to `topic` are written in.
    ///
    /// ```
    /// # use mq_core::testing::TestBroker;
    /// let p = TestBroker::new().publisher("/svc");
    /// assert_eq!(p.content_mode("orders"), mq_core::envelope::ContentMode::Structured);
    /// ```
    pub fn content_mode(&self, topic: &str) -> ContentMode {
        self.shared
            .topic_modes
            .get(topic)
            .copied()
            .unwrap_or(self.shared.mode)
    }

    pub(crate) fn with_metrics(mut self, metrics: Arc<Metrics>) -> Self {
        Arc::make_mut(&mut self.shared).metrics = Some(metrics);
        self
    }

    pub(crate) fn caused_by(&self, cause: Arc<Cause>) -> Self {
        Publisher {
            shared: self.shared.clone(),
            cause: Some(cause),
        }
    }

    /// Sends `data` as a new event to `topic` with `key`; the CloudEvents `type` is the
    /// data's Rust type name (e.g. `OrderCreated`). Resolves to where the record landed.
    ///
    /// ```
    /// # use mq_core::testing::TestBroker;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let publisher = TestBroker::new().publisher("/svc");
    /// #[derive(serde::Serialize)]
    /// struct OrderCreated { order_id: u64 }
    /// let d = publisher.send("order-create-event", "1", OrderCreated { order_id: 1 }).await.unwrap();
    /// assert_eq!(d.partition, 0);
    /// # }
    /// ```
    pub async fn send<T: Serialize>(
        &self,
        topic: &str,
        key: impl AsRef<[u8]>,
        data: T,
    ) -> Result<Delivery, PublishError> {
        self.send_event(topic, key, Event::new(short_type_name::<T>(), data))
            .await
    }

    /// Sends a fully built event. Empty `source` and missing `correlationid`,
    /// `causationid` and `traceparent` are filled in.
    ///
    /// ```
    /// # use mq_core::testing::TestBroker;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let publisher = TestBroker::new().publisher("/svc");
    /// let event = mq_core::Event::new("com.example.Ping", 1u8).with_subject("pings");
    /// publisher.send_event("pings", b"k", event).await.unwrap();
    /// # }
    /// ```
    pub async fn send_event<T: Serialize>(
        &self,
        topic: &str,
        key: impl AsRef<[u8]>,
        mut event: Event<T>,
    ) -> Result<Delivery, PublishError> {
        self.fill(&mut event);
        let mode = self.content_mode(topic);
        let record = envelope::encode(topic, Some(key.as_ref().to_vec()), &event, mode).map_err(
            |source| PublishError::Serialize {
                topic: topic.to_owned(),
                source,
            },
        )?;
        self.send_record(record).await
    }

    /// Sends a record as it is, with no envelope (dead-lettering and replay use this).
    ///
    /// ```
    /// # use mq_core::testing::TestBroker;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let publisher = TestBroker::new().publisher("/svc");
    /// let r = mq_core::record::OutgoingRecord::new("raw", None, b"not an event".to_vec());
    /// publisher.send_record(r).await.unwrap();
    /// # }
    /// ```
    pub async fn send_record(&self, record: OutgoingRecord) -> Result<Delivery, PublishError> {
        let started = Instant::now();
        let result = self.shared.sink.send(record).await;
        if let Some(metrics) = &self.shared.metrics {
            metrics.observe_send(started.elapsed(), &result);
        }
        result
    }

    fn fill<T>(&self, event: &mut Event<T>) {
        if event.source.is_empty() {
            event.source = self.shared.source.to_string();
        }
        match &self.cause {
            Some(cause) => {
                if event.correlationid.is_none() {
                    event.correlationid = Some(
                        cause
                            .correlationid
                            .clone()
                            .unwrap_or_else(|| cause.event_id.clone()),
                    );
                }
                if event.causationid.is_none() {
                    event.causationid = Some(cause.event_id.clone());
                }
                if event.traceparent.is_none() {
                    event.traceparent = cause.traceparent.clone();
                }
            }
            None => {
                if event.correlationid.is_none() {
                    event.correlationid = Some(event.id.clone());
                }
            }
        }
    }
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("source", &self.shared.source)
            .field("mode", &self.shared.mode)
            .field("topic_modes", &self.shared.topic_modes)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::OutgoingRecord;
    use crate::testing::TestBroker;

    fn content_type(r: &crate::record::Record) -> Option<String> {
        r.headers.get_str("content-type").map(str::to_owned)
    }

    #[tokio::test]
    async fn each_destination_is_encoded_in_its_own_mode_and_raw_records_stay_as_they_are() {
        let broker = TestBroker::new();
        let publisher = broker
            .publisher("/svc")
            .with_topic_modes([("orders.v1".to_owned(), ContentMode::Binary)]);
        let data = serde_json::json!({"order_id": 1});
        publisher
            .send("orders.v1", "k", data.clone())
            .await
            .unwrap();
        publisher.send("orders", "k", data.clone()).await.unwrap();
        let raw = b"{\"specversion\":\"1.0\"}".to_vec();
        let mut copy = OutgoingRecord::new("orders.v1", None, raw.clone());
        copy.headers
            .insert("content-type", b"application/cloudevents+json".to_vec());
        publisher.send_record(copy).await.unwrap();

        let binary = broker.records("orders.v1");
        assert_eq!(binary.len(), 2);
        assert_eq!(
            content_type(&binary[0]).as_deref(),
            Some("application/json")
        );
        let value: serde_json::Value =
            serde_json::from_slice(binary[0].value.as_deref().unwrap()).unwrap();
        assert_eq!(value, data);
        // The raw record (a dead letter, a retry copy) keeps its bytes and headers.
        assert_eq!(binary[1].value.as_deref(), Some(&raw[..]));
        assert_eq!(
            content_type(&binary[1]).as_deref(),
            Some("application/cloudevents+json")
        );

        let structured = broker.records("orders");
        assert_eq!(
            content_type(&structured[0]).as_deref(),
            Some("application/cloudevents+json; charset=UTF-8")
        );
        let envelope: serde_json::Value =
            serde_json::from_slice(structured[0].value.as_deref().unwrap()).unwrap();
        assert_eq!(envelope["data"], data);
    }
}
