//! [`KafkaSink`]: the rdkafka producer behind [`Publisher`](crate::Publisher).

use std::time::Duration;

use futures::future::BoxFuture;
use rdkafka::message::{Header as KHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;

use crate::publisher::{Delivery, PublishError, RecordSink};
use crate::record::OutgoingRecord;

/// A librdkafka producer. Sends wait for the broker's acknowledgement (per `acks`); a full
/// local queue makes the send wait rather than fail.
#[derive(Clone)]
pub(crate) struct KafkaSink {
    producer: FutureProducer,
}

impl KafkaSink {
    pub(crate) fn new(config: &ClientConfig) -> Result<Self, crate::Error> {
        let producer = config
            .create()
            .map_err(|e| crate::Error::Kafka(format!("cannot create the producer: {e}")))?;
        Ok(KafkaSink { producer })
    }

    /// Waits until every queued record was delivered (or `timeout` passed).
    pub(crate) fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, "producer flush did not complete");
        }
    }
}

impl RecordSink for KafkaSink {
    fn send(&self, record: OutgoingRecord) -> BoxFuture<'static, Result<Delivery, PublishError>> {
        let producer = self.producer.clone();
        Box::pin(async move {
            let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
            for h in record.headers.iter() {
                headers = headers.insert(KHeader {
                    key: &h.key,
                    value: h.value.as_deref(),
                });
            }
            let mut fr: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&record.topic)
                .payload(&record.value[..])
                .headers(headers);
            if let Some(key) = &record.key {
                fr = fr.key(&key[..]);
            }
            if let Some(p) = record.partition {
                fr = fr.partition(p);
            }
            // Timeout::Never: wait for room in the local queue instead of failing;
            // message.timeout.ms still bounds the delivery itself.
            match producer.send(fr, rdkafka::util::Timeout::Never).await {
                Ok(d) => Ok(Delivery {
                    topic: record.topic.clone(),
                    partition: d.partition,
                    offset: d.offset,
                }),
                Err((e, _)) => Err(PublishError::Broker {
                    topic: record.topic.clone(),
                    reason: e.to_string(),
                }),
            }
        })
    }
}
