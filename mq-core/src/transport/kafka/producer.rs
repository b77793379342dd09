//! [`KafkaSink`]: the rdkafka producer behind [`Publisher`](crate::publisher::Publisher).
//!
//! librdkafka's idempotent producer can raise a *fatal* error (sequence or epoch trouble
//! it cannot reason about); after one, every send fails for ever. The sink notices it on
//! the first failing send, logs it once, replaces the producer with a new one (new
//! producer id, clean sequence numbers) and sends the record again on it; the count and
//! the last fatal error are in the `publisher` health component.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header as KHeader, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientConfig;

use crate::publisher::{Delivery, PublishError, PublishErrorKind, RecordSink, SinkStatus};
use crate::record::OutgoingRecord;

/// A librdkafka producer. Sends wait for the broker's acknowledgement (per `acks`); a full
/// local queue makes the send wait rather than fail.
#[derive(Clone)]
pub(crate) struct KafkaSink {
    shared: Arc<Shared>,
}

struct Shared {
    config: ClientConfig,
    /// The producer and its generation (bumped on each rebuild).
    producer: RwLock<(u64, FutureProducer)>,
    fatal_errors: AtomicU64,
    last_fatal: Mutex<Option<String>>,
}

impl KafkaSink {
    pub(crate) fn new(config: &ClientConfig) -> Result<Self, crate::error::Error> {
        let producer = create(config)?;
        Ok(KafkaSink {
            shared: Arc::new(Shared {
                config: config.clone(),
                producer: RwLock::new((0, producer)),
                fatal_errors: AtomicU64::new(0),
                last_fatal: Mutex::new(None),
            }),
        })
    }

    /// Waits until every queued record was delivered (or `timeout` passed).
    pub(crate) fn flush(&self, timeout: Duration) {
        if let Err(e) = self.current().1.flush(timeout) {
            tracing::warn!(error = %e, "producer flush did not complete");
        }
    }

    fn current(&self) -> (u64, FutureProducer) {
        self.shared
            .producer
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// After a failed send on producer `generation`: if that producer has a fatal error,
    /// replace it (once, whoever notices first) and say so.
    fn recover_from_fatal(&self, generation: u64, producer: &FutureProducer) -> bool {
        let Some((code, reason)) = producer.client().fatal_error() else {
            return false;
        };
        let mut slot = self
            .shared
            .producer
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if slot.0 != generation {
            return true; // Another send already replaced it.
        }
        let text = format!("{code:?}: {reason}");
        tracing::error!(error = %text, "fatal producer error; replacing the producer");
        self.shared.fatal_errors.fetch_add(1, Ordering::Relaxed);
        *self
            .shared
            .last_fatal
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(text);
        match create(&self.shared.config) {
            Ok(fresh) => {
                let old = std::mem::replace(&mut *slot, (generation + 1, fresh));
                // Destroying a client can block: not on an async thread.
                if let Ok(rt) = tokio::runtime::Handle::try_current() {
                    rt.spawn_blocking(move || drop(old));
                }
                true
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot create a new producer; will try again on the next send");
                false
            }
        }
    }
}

/// A producer from `config`; a refused TLS or SASL setting names mq's key to fix (the
/// producer is made before the start's security check, so it explains them itself).
fn create(config: &ClientConfig) -> Result<FutureProducer, crate::error::Error> {
    config.create().map_err(|e| {
        let reason = e.to_string();
        crate::error::Error::Kafka(match super::security::explain(&reason) {
            Some(hint) => format!("cannot create the producer: {hint} (librdkafka: {reason})"),
            None => format!("cannot create the producer: {reason}"),
        })
    })
}

/// Sends `record` on `producer`.
async fn send_once(
    producer: &FutureProducer,
    record: &OutgoingRecord,
) -> Result<Delivery, KafkaError> {
    let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
    for h in record.headers.iter() {
        headers = headers.insert(KHeader {
            key: &h.key,
            value: h.value.as_deref(),
        });
    }
    let mut fr: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&record.topic).headers(headers);
    if let Some(value) = &record.value {
        fr = fr.payload(&value[..]);
    }
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
        Err((e, _)) => Err(e),
    }
}

/// What an rdkafka error means for sending the same record again.
pub(crate) fn classify(e: &KafkaError) -> PublishErrorKind {
    use RDKafkaErrorCode as C;
    let code = match e {
        KafkaError::MessageProduction(code) => *code,
        _ => return PublishErrorKind::Transient,
    };
    match code {
        C::MessageSizeTooLarge
        | C::InvalidMessageSize
        | C::InvalidMessage
        | C::InvalidRecord
        | C::InvalidRequiredAcks
        | C::BadMessage
        | C::InvalidTimestamp
        | C::UnsupportedForMessageFormat => PublishErrorKind::RecordRejected,
        C::TopicAuthorizationFailed
        | C::ClusterAuthorizationFailed
        | C::UnknownTopic
        | C::UnknownTopicOrPartition
        | C::InvalidTopic
        | C::UnknownPartition
        | C::InvalidPartitions => PublishErrorKind::DestinationRejected,
        _ => PublishErrorKind::Transient,
    }
}

impl RecordSink for KafkaSink {
    fn send(&self, record: OutgoingRecord) -> BoxFuture<'static, Result<Delivery, PublishError>> {
        let sink = self.clone();
        Box::pin(async move {
            let (generation, producer) = sink.current();
            let error = match send_once(&producer, &record).await {
                Ok(d) => return Ok(d),
                Err(e) => e,
            };
            let error = if sink.recover_from_fatal(generation, &producer) {
                match send_once(&sink.current().1, &record).await {
                    Ok(d) => return Ok(d),
                    Err(e) => e,
                }
            } else {
                error
            };
            Err(PublishError::Broker {
                topic: record.topic.clone(),
                reason: error.to_string(),
                kind: classify(&error),
            })
        })
    }

    fn status(&self) -> SinkStatus {
        SinkStatus {
            fatal_errors: self.shared.fatal_errors.load(Ordering::Relaxed),
            last_fatal_error: self
                .shared
                .last_fatal
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            blocked: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    #[test]
    fn errors_are_classified_by_what_retrying_can_do() {
        let e = |c| KafkaError::MessageProduction(c);
        assert_eq!(
            classify(&e(RDKafkaErrorCode::MessageSizeTooLarge)),
            PublishErrorKind::RecordRejected
        );
        assert_eq!(
            classify(&e(RDKafkaErrorCode::InvalidRecord)),
            PublishErrorKind::RecordRejected
        );
        assert_eq!(
            classify(&e(RDKafkaErrorCode::TopicAuthorizationFailed)),
            PublishErrorKind::DestinationRejected
        );
        assert_eq!(
            classify(&e(RDKafkaErrorCode::UnknownTopicOrPartition)),
            PublishErrorKind::DestinationRejected
        );
        assert_eq!(
            classify(&e(RDKafkaErrorCode::RequestTimedOut)),
            PublishErrorKind::Transient
        );
        assert_eq!(
            classify(&e(RDKafkaErrorCode::MessageTimedOut)),
            PublishErrorKind::Transient
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fatal_producer_error_is_noticed_and_the_producer_replaced() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic("fatal", 1, 1).unwrap();
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "5000");
        let sink = KafkaSink::new(&config).unwrap();
        let record = OutgoingRecord::new("fatal", None, b"1".to_vec());
        sink.send(record.clone()).await.unwrap();
        // An out-of-order sequence on the head-of-line request: librdkafka's idempotent
        // producer can no longer vouch for ordering and raises a fatal error.
        cluster.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER],
        );
        let delivered = sink.send(record.clone()).await;
        assert!(delivered.is_ok(), "{delivered:?}");
        let status = sink.status();
        assert_eq!(status.fatal_errors, 1);
        assert!(
            status
                .last_fatal_error
                .as_deref()
                .unwrap()
                .contains("OutOfOrderSequenceNumber"),
            "{status:?}"
        );
        // The new producer keeps working.
        sink.send(record).await.unwrap();
        assert_eq!(sink.status().fatal_errors, 1);
        tokio::task::spawn_blocking(move || drop(sink))
            .await
            .unwrap();
        drop(cluster);
    }
}
