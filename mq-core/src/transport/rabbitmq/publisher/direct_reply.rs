//! The requester's side of request–reply on RabbitMQ: direct reply-to
//! (`amq.rabbitmq.reply-to`, what Spring AMQP's `RabbitTemplate` uses by default). Requests
//! are published on a channel of their own that consumes the pseudo-queue with automatic
//! acknowledgement (the broker requires both on one channel); each reply goes to the
//! request waiting for its `correlation_id`. Nothing is declared, nothing is acknowledged:
//! a reply whose channel closed is gone, and its request times out.

use std::sync::Arc;

use futures::StreamExt;
use lapin::options::{BasicConsumeOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};

use super::super::{headers as amqp, properties};
use crate::publisher::Replies;
use crate::record::OutgoingRecord;

/// The pseudo-queue of direct reply-to.
pub(crate) const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// Marks `request` for a reply through direct reply-to with `correlation` (an ASCII id,
/// as `correlation_id` is a short string).
pub(crate) fn stamp_request(request: &mut OutgoingRecord, correlation: &[u8]) {
    request.headers.insert(amqp::REPLY_TO, DIRECT_REPLY_TO);
    request.headers.insert(amqp::CORRELATION_ID, correlation);
}

/// Whether `routing_key` (of the default exchange) is a requester's direct reply-to
/// address.
pub(crate) fn is_reply(routing_key: &str) -> bool {
    routing_key.starts_with("amq.rabbitmq.reply-to.")
}

/// Whether `record` is a request to be published on the reply channel.
pub(crate) fn is_request(record: &OutgoingRecord) -> bool {
    record.headers.get_str(amqp::REPLY_TO) == Some(DIRECT_REPLY_TO)
}

/// A channel in confirm mode that consumes direct reply-to and hands each reply to
/// `replies` (until the channel closes).
pub(crate) async fn open(
    connection: &Connection,
    replies: Arc<Replies>,
) -> Result<Channel, String> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| format!("cannot open the reply channel: {e}"))?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| format!("cannot enable publisher confirms: {e}"))?;
    let mut deliveries = channel
        .basic_consume(
            properties::short("the queue name", DIRECT_REPLY_TO)?,
            properties::short("the consumer tag", "mq-replies")?,
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(|e| format!("cannot consume {DIRECT_REPLY_TO}: {e}"))?;
    let queue: Arc<str> = Arc::from(DIRECT_REPLY_TO);
    tokio::spawn(async move {
        while let Some(delivery) = deliveries.next().await {
            let Ok(d) = delivery else { break };
            let record = properties::record_of(&queue, 0, &d);
            match record.headers.get(amqp::CORRELATION_ID).map(<[u8]>::to_vec) {
                Some(correlation) => {
                    replies.complete(&correlation, record);
                }
                None => tracing::debug!("a reply without correlation_id: dropped"),
            }
        }
        tracing::debug!("the direct reply-to channel closed");
    });
    Ok(channel)
}
