//! [`Publisher`]: the `KafkaTemplate` of `mq`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use tracing::Instrument;

use crate::envelope::{self, ContentMode, Event};
use crate::metrics::Metrics;
use crate::record::OutgoingRecord;
use crate::telemetry::spans;

mod message;
mod request;

#[doc(hidden)]
pub use message::Outgoing;
pub use message::{IntoEvent, Message, Raw};
pub use request::{Replies, ReplyAddress, Request, RequestError, DEFAULT_TIMEOUT};

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
/// onto these, and the failure recoverer acts on them.
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
    /// The `exception` label of the publish timer for this failure.
    fn kind_name(&self) -> &'static str {
        match self {
            PublishError::Serialize { .. } => "SerializeError",
            PublishError::Broker { .. } => "BrokerError",
            PublishError::Closed => "Closed",
        }
    }

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
/// Kafka's producer implements it; so does the in-memory broker of `mq_core::testing`.
pub trait RecordSink: Send + Sync + 'static {
    /// Sends a record; resolves when the broker acknowledged it (per the `acks` setting).
    fn send(&self, record: OutgoingRecord) -> BoxFuture<'static, Result<Delivery, PublishError>>;

    /// What the sink knows about its own health (shown by the `publisher` health component).
    fn status(&self) -> SinkStatus {
        SinkStatus::default()
    }

    /// Stamps the app's reply address and `correlation` onto `request` (bound for one of
    /// the sink's destinations) in its broker's conventions; false when the app reads no
    /// replies there. Default: false.
    fn stamp_request(&self, request: &mut OutgoingRecord, correlation: &[u8]) -> bool {
        let _ = (request, correlation);
        false
    }

    /// Stamps `correlation` onto `reply` (bound for one of the sink's destinations) in its
    /// broker's conventions. Default: nothing.
    fn stamp_reply(&self, reply: &mut OutgoingRecord, correlation: &[u8]) {
        let _ = (reply, correlation);
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
    /// The broker's reason while it blocks publishing (RabbitMQ's `connection.blocked`
    /// under a resource alarm): publishes wait, and the `publisher` component is `DOWN`.
    pub blocked: Option<String>,
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
/// Inside a handler, take it from `Context::publisher`: events
/// sent from there carry the handled event's correlation id (or its id, when it had none)
/// and trace context, and its id as their causation id. Outside handlers, take it from the
/// running app (`RunningApp::publisher`).
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

/// A destination's default content mode (its broker's).
pub(crate) type DefaultModes = Arc<dyn Fn(&str) -> ContentMode + Send + Sync>;

/// What every clone of a publisher shares: cloning one is a reference count, not four.
#[derive(Clone)]
struct Shared {
    sink: Arc<dyn RecordSink>,
    source: Arc<str>,
    mode: ContentMode,
    /// Destinations whose mode differs from `mode`
    /// (`mq.kafka.producer.destinations.<topic>.content-mode`).
    topic_modes: HashMap<String, ContentMode>,
    /// Each destination's mode when it has none of its own, instead of `mode`: its
    /// broker's default (set by the app when `mq.kafka.producer.content-mode` is unset).
    default_modes: Option<DefaultModes>,
    metrics: Option<Arc<Metrics>>,
    /// The app's requests waiting for replies (when it reads replies).
    replies: Option<Arc<Replies>>,
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
                default_modes: None,
                metrics: None,
                replies: None,
            }),
            cause: None,
        }
    }

    /// Sets the content mode of some destination topics; every other topic keeps the mode
    /// given to [`Publisher::new`]. Dead letters, retry-topic copies and replays
    /// ([`Raw`] messages) are sent as they are, whatever their topic's mode.
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

    /// Takes each destination's mode, when it has none of its own, from `modes` (its
    /// broker's default) instead of the mode given to [`Publisher::new`]; `None` keeps that.
    pub(crate) fn with_default_modes(mut self, modes: Option<DefaultModes>) -> Self {
        Arc::make_mut(&mut self.shared).default_modes = modes;
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
        match (
            self.shared.topic_modes.get(topic),
            &self.shared.default_modes,
        ) {
            (Some(mode), _) => *mode,
            (None, Some(defaults)) => defaults(topic),
            (None, None) => self.shared.mode,
        }
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

    /// Sends `message` to `topic` (a Kafka topic or an `amqp://` destination) with `key`,
    /// and resolves to where the record landed. A message is one of:
    ///
    /// - data of any `Serialize` type: sent as a new [`Event`] whose CloudEvents `type` is
    ///   the data's Rust type name (`OrderCreated`);
    /// - an [`Event`] built by hand (its id, type, subject...); an empty `source` and a
    ///   missing `correlationid`, `causationid` and `traceparent` are filled in;
    /// - [`Raw`] bytes with headers, sent as they are, with no envelope.
    ///
    /// Events are written in the destination's content mode ([`Publisher::content_mode`]).
    ///
    /// ```
    /// # use mq_core::testing::TestBroker;
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let publisher = TestBroker::new().publisher("/svc");
    /// use mq_core::publisher::Raw;
    /// #[derive(serde::Serialize)]
    /// struct OrderCreated { order_id: u64 }
    /// let d = publisher.send("order-create-event", "1", OrderCreated { order_id: 1 }).await.unwrap();
    /// assert_eq!(d.partition, 0);
    ///
    /// let event = mq_core::Event::new("com.example.Ping", 1u8).with_subject("pings");
    /// publisher.send("pings", b"k", event).await.unwrap();
    ///
    /// let raw = Raw::new(b"not an event".to_vec()).with_header("origin", "legacy");
    /// publisher.send("raw", "k", raw).await.unwrap();
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`PublishError::Serialize`] when the data does not serialize to JSON; otherwise
    /// what the broker answered ([`PublishError::kind`] tells retriable from not).
    pub async fn send<M: Message>(
        &self,
        topic: &str,
        key: impl AsRef<[u8]>,
        message: M,
    ) -> Result<Delivery, PublishError> {
        let key = Some(key.as_ref().to_vec());
        match message.into_outgoing() {
            Outgoing::Event(event) => self
                .send_event(topic, key, event, |_| true)
                .await
                .map(|d| d.expect("nothing refuses a plain send")),
            Outgoing::Raw(raw) => self.send_record(raw.into_record(topic, key)).await,
        }
    }

    /// Sends `event` to `topic` in its content mode, inside a `send` span (trace export)
    /// whose context becomes the event's `traceparent`; `stamp` edits the record last
    /// (a request's reply address, a reply's correlation) and may refuse it (`Ok(None)`,
    /// nothing sent).
    pub(crate) async fn send_event<T: serde::Serialize>(
        &self,
        topic: &str,
        key: Option<Vec<u8>>,
        mut event: Event<T>,
        stamp: impl FnOnce(&mut OutgoingRecord) -> bool,
    ) -> Result<Option<Delivery>, PublishError> {
        self.fill(&mut event);
        // The `send` span of trace export (disabled unless a layer is installed): its
        // context becomes the event's `traceparent`.
        let span = spans::send(topic, Some(&event.id), event.traceparent.as_deref());
        if let Some(traceparent) = spans::traceparent(&span) {
            event.traceparent = Some(traceparent);
        }
        let mode = self.content_mode(topic);
        let mut record = envelope::encode(topic, key, &event, mode).map_err(|source| {
            PublishError::Serialize {
                topic: topic.to_owned(),
                source,
            }
        })?;
        if !stamp(&mut record) {
            return Ok(None);
        }
        if !span.is_disabled() {
            return self.send_record(record).instrument(span).await.map(Some);
        }
        self.send_record(record).await.map(Some)
    }

    /// Sends a record as it is (dead letters, retry copies and replays keep their topic,
    /// partition and headers).
    pub(crate) async fn send_record(
        &self,
        record: OutgoingRecord,
    ) -> Result<Delivery, PublishError> {
        let started = Instant::now();
        let result = self.shared.sink.send(record).await;
        if let Some(metrics) = &self.shared.metrics {
            metrics.observe_send(
                started.elapsed(),
                result.as_ref().err().map(PublishError::kind_name),
            );
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

/// A sink that keeps what it is sent, for the unit tests of the layers above the publisher
/// (the in-memory broker of `mq_core::testing` sits above them).
#[cfg(test)]
#[derive(Clone, Default)]
pub(crate) struct CapturingSink {
    pub(crate) sent: Arc<std::sync::Mutex<Vec<OutgoingRecord>>>,
}

#[cfg(test)]
impl CapturingSink {
    /// The records sent to `topic`, in order.
    pub(crate) fn records(&self, topic: &str) -> Vec<OutgoingRecord> {
        let sent = self.sent.lock().unwrap();
        sent.iter().filter(|r| r.topic == topic).cloned().collect()
    }

    /// A publisher on this sink, with `source` as its events' source.
    pub(crate) fn publisher(&self, source: &str) -> Publisher {
        Publisher::new(Arc::new(self.clone()), source, ContentMode::Structured)
    }
}

#[cfg(test)]
impl RecordSink for CapturingSink {
    fn send(&self, record: OutgoingRecord) -> BoxFuture<'static, Result<Delivery, PublishError>> {
        let mut sent = self.sent.lock().unwrap();
        let offset = sent.iter().filter(|r| r.topic == record.topic).count() as i64;
        let delivery = Delivery {
            topic: record.topic.clone(),
            partition: 0,
            offset,
        };
        sent.push(record);
        Box::pin(async move { Ok(delivery) })
    }
}

#[cfg(test)]
mod tests;
