//! Sends records to RabbitMQ exchanges: persistent, `mandatory` (a message no queue is
//! bound for comes back, and the publish fails), and confirmed (the publish resolves once
//! the broker took responsibility for the message).

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::{Channel, Confirmation};

use super::super::connection::Rabbit;
use super::super::destination::Exchange;
use super::super::{frame, properties};
use super::direct_reply;
use crate::publisher::{Delivery, PublishError, PublishErrorKind, RecordSink, Replies};
use crate::record::OutgoingRecord;

/// The publishing channel (in confirm mode) over the app's connection, opened on the
/// first publish and again after it was lost.
#[derive(Clone)]
pub(crate) struct RabbitSink {
    inner: Arc<Inner>,
}

struct Inner {
    rabbit: Arc<Rabbit>,
    /// `mq.rabbitmq.publisher.confirm-timeout`.
    confirm_timeout: Duration,
    channel: tokio::sync::Mutex<Option<Channel>>,
    /// The app's waiting requests, once the app started (requests are possible then).
    replies: OnceLock<Arc<Replies>>,
    /// The channel requests go out on (it consumes direct reply-to).
    reply_channel: tokio::sync::Mutex<Option<Channel>>,
}

impl RabbitSink {
    /// Publishes on `rabbit`'s connection; each publish waits at most
    /// `mq.rabbitmq.publisher.confirm-timeout` for the broker's confirm.
    pub(crate) fn new(rabbit: Arc<Rabbit>) -> RabbitSink {
        let confirm_timeout = rabbit.confirm_timeout();
        RabbitSink {
            inner: Arc::new(Inner {
                rabbit,
                confirm_timeout,
                channel: tokio::sync::Mutex::new(None),
                replies: OnceLock::new(),
                reply_channel: tokio::sync::Mutex::new(None),
            }),
        }
    }

    /// Lets the publisher send requests here, whose replies go to `replies`.
    pub(crate) fn read_replies(&self, replies: Arc<Replies>) {
        let _ = self.inner.replies.set(replies);
    }
}

fn failed(topic: &str, reason: String, kind: PublishErrorKind) -> PublishError {
    PublishError::Broker {
        topic: topic.to_owned(),
        reason,
        kind,
    }
}

/// How a refusal reads: a missing exchange or a refused permission needs an operator; a
/// message the broker refuses as it is (406 `PRECONDITION_FAILED`, e.g. a `user_id` not
/// the connection's; a frame error) is the record's fault, and no retry of the same bytes
/// can pass; anything else (connection lost) may pass later.
fn kind_of(e: &lapin::Error) -> PublishErrorKind {
    let text = e.to_string();
    if text.contains("NOT_FOUND") || text.contains("ACCESS_REFUSED") {
        PublishErrorKind::DestinationRejected
    } else if [
        "PRECONDITION_FAILED",
        "FRAME_ERROR",
        "FRAME-ERROR",
        "frame_too_large",
    ]
    .iter()
    .any(|t| text.contains(t))
    {
        PublishErrorKind::RecordRejected
    } else {
        PublishErrorKind::Transient
    }
}

impl Inner {
    async fn channel(&self) -> Result<Channel, String> {
        let mut current = self.channel.lock().await;
        if let Some(c) = current.as_ref().filter(|c| c.status().connected()) {
            return Ok(c.clone());
        }
        let connection = self.rabbit.connection().await?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| format!("cannot open a channel: {e}"))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| format!("cannot enable publisher confirms: {e}"))?;
        *current = Some(channel.clone());
        Ok(channel)
    }

    /// The channel of requests: opened (and consuming direct reply-to) on the first
    /// request, and again after it was lost.
    async fn reply_channel(&self) -> Result<Channel, String> {
        let replies = self
            .replies
            .get()
            .ok_or("the app reads no replies")?
            .clone();
        let mut current = self.reply_channel.lock().await;
        if let Some(c) = current.as_ref().filter(|c| c.status().connected()) {
            return Ok(c.clone());
        }
        let connection = self.rabbit.connection().await?;
        let channel = direct_reply::open(&connection, replies).await?;
        *current = Some(channel.clone());
        Ok(channel)
    }

    async fn publish(&self, record: OutgoingRecord) -> Result<Delivery, PublishError> {
        let topic = record.topic.as_str();
        let Some(dest) = Exchange::parse(topic, record.key.as_deref()) else {
            let reason = "not an amqp:// destination".to_owned();
            return Err(failed(topic, reason, PublishErrorKind::DestinationRejected));
        };
        let channel = match direct_reply::is_request(&record) {
            true => self.reply_channel().await,
            false => self.channel().await,
        }
        .map_err(|e| failed(topic, e, PublishErrorKind::Transient))?;
        // A reply to direct reply-to is not `mandatory`: the broker (3.x) returns it as
        // NO_ROUTE although it delivered it, and the reply would be sent again.
        let options = BasicPublishOptions {
            mandatory: !direct_reply::is_reply(&dest.routing_key),
            immediate: false,
        };
        let body = record.value.as_deref().unwrap_or_default();
        let props = properties::outgoing(&record)
            .map_err(|e| failed(topic, e, PublishErrorKind::RecordRejected))?;
        let exchange = properties::short("the exchange name", &dest.exchange)
            .map_err(|e| failed(topic, e, PublishErrorKind::DestinationRejected))?;
        let routing_key = properties::short("the routing key", &dest.routing_key)
            .map_err(|e| failed(topic, e, PublishErrorKind::RecordRejected))?;
        // A header frame over frame_max would have the broker close the connection, for
        // every consumer and publisher on it: refused here, nothing sent.
        let frame_max = self.rabbit.frame_max().load(Ordering::Relaxed);
        let size = frame::header_frame_size(&props);
        if frame_max > 0 && size > frame_max as usize {
            let reason = format!(
                "properties and headers take {size} bytes, over the connection's frame_max of \
                 {frame_max}: not sent (the broker would close the connection)"
            );
            return Err(failed(topic, reason, PublishErrorKind::RecordRejected));
        }
        // A blocked connection (a broker alarm) holds the publish and its confirm: wait
        // at most `confirm_timeout` for both, then fail as transient (retried as any).
        let published = async {
            let confirm = channel
                .basic_publish(exchange, routing_key, options, body, props)
                .await?;
            confirm.await
        };
        let confirmation = tokio::time::timeout(self.confirm_timeout, published)
            .await
            .map_err(|_| {
                let reason = format!(
                    "no publisher confirm within {:?} (mq.rabbitmq.publisher.confirm-timeout); \
                     the broker may be blocking publishers (a memory or disk alarm)",
                    self.confirm_timeout
                );
                failed(topic, reason, PublishErrorKind::Transient)
            })?
            .map_err(|e| failed(topic, e.to_string(), kind_of(&e)))?;
        match confirmation {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(Delivery {
                topic: record.topic,
                partition: 0,
                offset: 0,
            }),
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => Err(failed(
                topic,
                format!(
                    "unroutable: exchange {:?} has no queue bound for routing key {:?} ({} {})",
                    dest.exchange, dest.routing_key, returned.reply_code, returned.reply_text
                ),
                PublishErrorKind::DestinationRejected,
            )),
            Confirmation::Nack(None) => Err(failed(
                topic,
                "the broker refused the message (nack)".to_owned(),
                PublishErrorKind::Transient,
            )),
        }
    }
}

impl RecordSink for RabbitSink {
    /// Blocked while the broker blocks the publishing connection.
    fn status(&self) -> crate::publisher::SinkStatus {
        crate::publisher::SinkStatus {
            blocked: self.inner.rabbit.blocked(),
            ..Default::default()
        }
    }

    fn send(&self, record: OutgoingRecord) -> BoxFuture<'static, Result<Delivery, PublishError>> {
        let inner = self.inner.clone();
        Box::pin(async move { inner.publish(record).await })
    }

    fn stamp_request(&self, request: &mut OutgoingRecord, correlation: &[u8]) -> bool {
        if self.inner.replies.get().is_none() {
            return false;
        }
        direct_reply::stamp_request(request, correlation);
        true
    }

    fn stamp_reply(&self, reply: &mut OutgoingRecord, correlation: &[u8]) {
        super::super::reply::stamp_reply(reply, correlation);
    }
}
