//! Request–reply (Spring's `ReplyingKafkaTemplate`): [`Publisher::request`] sends a message
//! that carries the app's reply address and a fresh correlation id, and waits for the reply
//! with that id. The transport of the request's destination stamps the address
//! ([`RecordSink::stamp_request`](super::RecordSink::stamp_request)) and runs the consumer
//! that hands replies to [`Replies`]; nothing here names a broker.

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::sync::{oneshot, Notify, Semaphore};

use super::message::{Message, Outgoing};
use super::{PublishError, Publisher};
use crate::envelope::{self, DecodeError, DecodeLimits, Event};
use crate::metrics::Metrics;
use crate::record::Record;
use prometheus_client::metrics::counter::Counter;

/// How long a request waits for its reply unless told otherwise (Spring's
/// `ReplyingKafkaTemplate` default).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a request asks its reply to go, as the transport that delivered the request reads
/// it (Kafka: `kafka_replyTopic`, `kafka_replyPartition`, `kafka_correlationId`; RabbitMQ:
/// `reply_to`, `correlation_id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyAddress {
    /// The destination of the reply (a topic, or an `amqp://` destination).
    pub destination: String,
    /// The partition the requester reads its replies from, when it named one.
    pub partition: Option<i32>,
    /// The request's correlation id, carried back unchanged.
    pub correlation: Vec<u8>,
}

/// Why a request got no reply.
///
/// ```
/// let e = mq_core::publisher::RequestError::Timeout { topic: "prices".into(), after: std::time::Duration::from_secs(2) };
/// assert_eq!(e.to_string(), "no reply to the request on prices within 2s");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No reply came within the timeout (no responder, or a responder that failed).
    #[error("no reply to the request on {topic} within {after:?}")]
    Timeout {
        /// Where the request went.
        topic: String,
        /// The timeout.
        after: Duration,
    },
    /// The app reads no replies for the request's broker (Kafka: set
    /// `mq.kafka.reply-topic`).
    #[error("the app has no reply destination for requests to {topic} (Kafka: set mq.kafka.reply-topic)")]
    NoReplyDestination {
        /// Where the request would have gone.
        topic: String,
    },
    /// The request could not be sent.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The reply came but is not an event of the expected type.
    #[error("the reply to the request on {topic} does not decode: {source}")]
    Decode {
        /// Where the request went.
        topic: String,
        /// Why.
        source: DecodeError,
    },
}

/// The requests of one app waiting for their replies, by correlation id, and the bound on
/// how many wait at once (`mq.reply.max-in-flight`): a request beyond it waits for a place
/// (within its timeout) before it is sent.
pub struct Replies {
    pending: Mutex<HashMap<Vec<u8>, oneshot::Sender<Record>>>,
    places: Semaphore,
    /// Requests started and not ended ([`Replies::in_flight`]).
    in_flight: AtomicUsize,
    /// Told when a request was sent or ended.
    changed: Notify,
    /// `mq_reply_late_total`: replies no request waited for.
    late: Counter,
    /// `mq_reply_timeouts_total`: requests that got no reply in time.
    timeouts: Counter,
    limits: DecodeLimits,
    /// `mq.reply.timeout`.
    timeout: Duration,
    /// Whether the reply consumer reads yet: requests are sent only then.
    ready: tokio::sync::watch::Sender<bool>,
}

impl Replies {
    /// Room for `max_in_flight` requests at once, each waiting `timeout` unless it says
    /// otherwise; `ready` when replies are read already (else [`Replies::set_ready`]). Its
    /// counters go into `metrics`.
    pub(crate) fn new(
        max_in_flight: usize,
        timeout: Duration,
        limits: DecodeLimits,
        ready: bool,
        metrics: &Metrics,
    ) -> Arc<Replies> {
        let max_in_flight = max_in_flight.clamp(1, Semaphore::MAX_PERMITS);
        let (late, timeouts) = (Counter::default(), Counter::default());
        metrics.register(|r| {
            r.register(
                "mq_reply_late",
                "Replies no request waited for (it timed out, or it is another instance's)",
                late.clone(),
            );
            r.register(
                "mq_reply_timeouts",
                "Requests that got no reply within their timeout",
                timeouts.clone(),
            );
        });
        Arc::new(Replies {
            pending: Mutex::new(HashMap::new()),
            places: Semaphore::new(max_in_flight),
            in_flight: AtomicUsize::new(0),
            changed: Notify::new(),
            late,
            timeouts,
            limits,
            timeout,
            ready: tokio::sync::watch::Sender::new(ready),
        })
    }

    /// The reply consumer reads: requests may go.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn set_ready(&self) {
        self.ready.send_replace(true);
    }

    async fn wait_ready(&self) {
        let mut ready = self.ready.subscribe();
        let _ = ready.wait_for(|r| *r).await;
    }

    /// Hands `reply` to the request waiting for `correlation`; false (and counted as late)
    /// when none waits: it timed out, or the reply is another instance's.
    pub(crate) fn complete(&self, correlation: &[u8], reply: Record) -> bool {
        let waiting = self.lock().remove(correlation);
        match waiting.map(|tx| tx.send(reply)) {
            Some(Ok(())) => true,
            _ => {
                self.late.inc();
                tracing::debug!(
                    correlation = %hex(correlation),
                    "reply dropped: no request waits for it (timed out, or another instance's)"
                );
                false
            }
        }
    }

    /// Replies that found no request waiting.
    ///
    /// ```
    /// # use mq_core::testing::TestApp;
    /// let app = TestApp::new(mq_core::App::new(Default::default())).unwrap();
    /// assert_eq!(app.replies().late(), 0);
    /// ```
    pub fn late(&self) -> u64 {
        self.late.get()
    }

    /// Requests that got no reply within their timeout.
    pub fn timeouts(&self) -> u64 {
        self.timeouts.get()
    }

    /// Requests waiting for their reply now.
    pub fn waiting(&self) -> usize {
        self.lock().len()
    }

    /// Requests started and not ended (waiting for a place, being sent, or waiting for
    /// their reply).
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Told (`notify_waiters`) when a request was sent or ended: the in-memory broker's
    /// `drain` waits on it instead of polling.
    pub(crate) fn changed(&self) -> &Notify {
        &self.changed
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, oneshot::Sender<Record>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl std::fmt::Debug for Replies {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replies")
            .field("waiting", &self.waiting())
            .field("late", &self.late())
            .finish()
    }
}

/// Counts a request in flight from its start to its end, however it ends (reply, error,
/// timeout, dropped future), and tells [`Replies::changed`] when it ends.
struct InFlight<'a>(&'a Replies);

impl<'a> InFlight<'a> {
    fn start(replies: &'a Replies) -> Self {
        replies.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(replies)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_waiters();
    }
}

/// Removes a request's entry when it ends without its reply (timeout, failed send, dropped
/// future), so the map holds only requests that still wait.
struct Waiting<'a> {
    replies: &'a Replies,
    correlation: Vec<u8>,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.replies.lock().remove(&self.correlation);
    }
}

/// A request being built: [`Publisher::request`]; await it for the reply.
#[must_use = "a request does nothing until awaited"]
pub struct Request<'a, M, R> {
    publisher: &'a Publisher,
    topic: &'a str,
    key: Vec<u8>,
    message: M,
    timeout: Option<Duration>,
    _reply: std::marker::PhantomData<fn() -> R>,
}

impl<M, R> Request<'_, M, R> {
    /// How long to wait for the reply, the wait for a place among `mq.reply.max-in-flight`
    /// and the send included (default `mq.reply.timeout`, 5 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl<'a, M, R> IntoFuture for Request<'a, M, R>
where
    M: Message + Send + 'a,
    M::Data: Send,
    R: DeserializeOwned + 'a,
{
    type Output = Result<Event<R>, RequestError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let timeout = self.timeout.unwrap_or_else(|| {
                self.publisher
                    .shared
                    .replies
                    .as_ref()
                    .map_or(DEFAULT_TIMEOUT, |r| r.timeout)
            });
            let topic = self.topic;
            let replies = self.publisher.shared.replies.clone();
            match tokio::time::timeout(timeout, self.run()).await {
                Ok(result) => result,
                Err(_) => {
                    if let Some(replies) = replies {
                        replies.timeouts.inc();
                    }
                    Err(RequestError::Timeout {
                        topic: topic.to_owned(),
                        after: timeout,
                    })
                }
            }
        })
    }
}

impl<M: Message, R: DeserializeOwned> Request<'_, M, R> {
    async fn run(self) -> Result<Event<R>, RequestError> {
        let topic = self.topic;
        let no_route = || RequestError::NoReplyDestination {
            topic: topic.to_owned(),
        };
        let replies = self.publisher.shared.replies.clone().ok_or_else(no_route)?;
        // Declared first, dropped last: the request is in flight until everything below
        // let go of it (its place among max-in-flight included).
        let _in_flight = InFlight::start(&replies);
        let _place = replies
            .places
            .acquire()
            .await
            .map_err(|_| RequestError::Publish(PublishError::Closed))?;
        replies.wait_ready().await;
        // ASCII (a UUID's text): AMQP's `correlation_id` is a short string; Kafka takes any bytes.
        let correlation = uuid::Uuid::new_v4().hyphenated().to_string().into_bytes();
        // Waiting before the request leaves: its reply may come before the send resolves.
        let (tx, rx) = oneshot::channel();
        replies.lock().insert(correlation.clone(), tx);
        let waiting = Waiting {
            replies: &replies,
            correlation,
        };
        let sink = &self.publisher.shared.sink;
        let stamp =
            |r: &mut crate::record::OutgoingRecord| sink.stamp_request(r, &waiting.correlation);
        let key = Some(self.key);
        let sent = match self.message.into_outgoing() {
            Outgoing::Event(event) => self.publisher.send_event(topic, key, event, stamp).await?,
            Outgoing::Raw(raw) => {
                let mut record = raw.into_record(topic, key);
                match stamp(&mut record) {
                    true => Some(self.publisher.send_record(record).await?),
                    false => None,
                }
            }
        };
        if sent.is_none() {
            return Err(no_route());
        }
        replies.changed.notify_waiters();
        // The sender is dropped only with the entry, which `_waiting` keeps until now.
        let reply = rx
            .await
            .map_err(|_| RequestError::Publish(PublishError::Closed))?;
        envelope::decode(&reply, &replies.limits).map_err(|source| RequestError::Decode {
            topic: topic.to_owned(),
            source,
        })
    }
}

impl Publisher {
    /// Sends `message` to `topic` as a request and resolves to the reply: the
    /// `ReplyingKafkaTemplate.sendAndReceive` of mq. The request carries the app's reply
    /// address and a new correlation id in its broker's conventions (Kafka: Spring's
    /// `kafka_replyTopic` and `kafka_correlationId` headers); a listener that returns
    /// `handler::Reply` answers it, and so does any Spring `@SendTo` listener. Waits at most
    /// [`Request::timeout`] (default `mq.reply.timeout`, 5 s).
    ///
    /// Kafka needs `mq.kafka.reply-topic`: the app reads its replies there (created at
    /// startup; every instance reads every reply and keeps its own).
    ///
    /// ```standalone_crate
    /// use mq_core::{listener, testing::TestApp, App, Event, HandlerError, handler::Reply};
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct PriceQuery { sku: String }
    /// #[derive(serde::Serialize, serde::Deserialize)]
    /// struct PriceQuote { cents: u64 }
    ///
    /// #[listener(topic = "price-requests")]
    /// async fn quote(q: PriceQuery) -> Result<Reply<PriceQuote>, HandlerError> {
    ///     Ok(Reply::new(PriceQuote { cents: if q.sku == "A" { 250 } else { 0 } }))
    /// }
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let app = TestApp::new(App::new(Default::default())).unwrap();
    /// let publisher = app.publisher();
    /// let request = publisher
    ///     .request::<_, PriceQuote>("price-requests", "A", PriceQuery { sku: "A".into() })
    ///     .timeout(std::time::Duration::from_secs(2));
    /// // In memory, `drain` delivers the request to the responder while it waits.
    /// let (quote, _) = tokio::join!(request.into_future(), app.drain());
    /// assert_eq!(quote.unwrap().data.cents, 250);
    /// # }
    /// # use std::future::IntoFuture;
    /// ```
    ///
    /// # Errors
    /// [`RequestError::Timeout`] when no reply came in time; [`RequestError::Publish`] when
    /// the request could not be sent; [`RequestError::Decode`] when the reply is not an
    /// `Event<R>`; [`RequestError::NoReplyDestination`] when the app reads no replies.
    pub fn request<'a, M: Message, R: DeserializeOwned>(
        &'a self,
        topic: &'a str,
        key: impl AsRef<[u8]>,
        message: M,
    ) -> Request<'a, M, R> {
        Request {
            publisher: self,
            topic,
            key: key.as_ref().to_vec(),
            message,
            timeout: None,
            _reply: std::marker::PhantomData,
        }
    }

    /// Sends `event` as the reply to a request whose address is `to`.
    pub(crate) async fn reply<T: serde::Serialize>(
        &self,
        to: &ReplyAddress,
        event: Event<T>,
    ) -> Result<(), PublishError> {
        let sink = &self.shared.sink;
        let stamp = |r: &mut crate::record::OutgoingRecord| {
            r.partition = to.partition;
            sink.stamp_reply(r, &to.correlation);
            true
        };
        self.send_event(&to.destination, None, event, stamp)
            .await
            .map(drop)
    }

    pub(crate) fn with_replies(mut self, replies: Arc<Replies>) -> Self {
        Arc::make_mut(&mut self.shared).replies = Some(replies);
        self
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
