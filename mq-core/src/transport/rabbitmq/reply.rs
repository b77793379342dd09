//! The responder's side of request–reply in AMQP's conventions (the RabbitMQ RPC pattern,
//! Spring AMQP's `@SendTo`, direct reply-to): a request carries the `reply_to` property (a
//! queue, `amq.rabbitmq.reply-to.*` included) and usually `correlation_id`; the reply goes to
//! that queue through the default exchange with the same `correlation_id`. Plain data,
//! always compiled.

use super::destination::SCHEME;
use super::headers as amqp;
use crate::publisher::ReplyAddress;
use crate::record::{OutgoingRecord, Record};

/// Where `request` asks its reply to go: `None` without a `reply_to`. A request without a
/// `correlation_id` gets a reply without one (the RPC tutorial's clients match on it, a
/// direct reply-to client of one request at a time need not).
pub(crate) fn reply_address(request: &Record) -> Option<ReplyAddress> {
    let queue = request.headers.get_str(amqp::REPLY_TO)?.trim();
    if queue.is_empty() {
        return None;
    }
    Some(ReplyAddress {
        destination: format!("{SCHEME}/{queue}"),
        partition: None,
        correlation: request
            .headers
            .get(amqp::CORRELATION_ID)
            .unwrap_or_default()
            .to_vec(),
    })
}

/// Marks `reply` as the answer to the request with `correlation` (the `correlation_id`
/// property; none when the request had none).
pub(crate) fn stamp_reply(reply: &mut OutgoingRecord, correlation: &[u8]) {
    if !correlation.is_empty() {
        reply.headers.insert(amqp::CORRELATION_ID, correlation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_go_to_the_reply_to_queue_through_the_default_exchange() {
        let mut r = Record::new("prices", 0, 1, None, Some(b"{}".to_vec()));
        assert_eq!(reply_address(&r), None);
        r.headers
            .append(amqp::REPLY_TO, "amq.rabbitmq.reply-to.g1h2AA");
        let a = reply_address(&r).unwrap();
        assert_eq!(a.destination, "amqp:///amq.rabbitmq.reply-to.g1h2AA");
        assert!(a.correlation.is_empty());
        r.headers.append(amqp::CORRELATION_ID, "c-1");
        assert_eq!(reply_address(&r).unwrap().correlation, b"c-1");

        let mut out = OutgoingRecord::new(a.destination, None, Vec::new());
        stamp_reply(&mut out, b"");
        assert_eq!(out.headers.get(amqp::CORRELATION_ID), None);
        stamp_reply(&mut out, b"c-1");
        assert_eq!(out.headers.get_str(amqp::CORRELATION_ID), Some("c-1"));
    }
}
