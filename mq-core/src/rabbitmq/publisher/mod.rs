//! Publishing to RabbitMQ behind the one [`Publisher`](crate::Publisher): a sink that
//! sends `amqp://` destinations to RabbitMQ and everything else to the app's other sink
//! (Kafka's producer, or the in-memory broker).

mod sink;

use std::sync::Arc;

use futures::future::BoxFuture;

pub(crate) use sink::RabbitSink;

use super::destination::is_rabbit;
use crate::publisher::{Delivery, PublishError, RecordSink, SinkStatus};
use crate::record::OutgoingRecord;

/// Routes each record by its destination.
pub(crate) struct Routed<S> {
    pub(crate) rabbit: RabbitSink,
    pub(crate) other: S,
}

impl<S: RecordSink> RecordSink for Routed<S> {
    fn send(&self, record: OutgoingRecord) -> BoxFuture<'static, Result<Delivery, PublishError>> {
        if is_rabbit(&record.topic) {
            self.rabbit.send(record)
        } else {
            self.other.send(record)
        }
    }

    fn status(&self) -> SinkStatus {
        self.other.status()
    }
}

impl<S: RecordSink> Routed<S> {
    /// `other`, with `amqp://` destinations going to `rabbit`.
    pub(crate) fn new(rabbit: Arc<super::connection::Rabbit>, other: S) -> Self {
        Routed {
            rabbit: RabbitSink::new(rabbit),
            other,
        }
    }
}
