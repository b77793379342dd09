//! The Kafka producer of an app whose listeners all read RabbitMQ queues: created on the
//! first record bound for Kafka, so such an app neither connects to Kafka nor logs its
//! absence unless it publishes there. Every other app creates it at start, where a bad
//! producer setting fails the start.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::future::BoxFuture;
use rdkafka::ClientConfig;

use super::producer::KafkaSink;
use crate::publisher::{Delivery, PublishError, PublishErrorKind, RecordSink, SinkStatus};
use crate::record::OutgoingRecord;

/// A Kafka producer made when first needed.
#[derive(Clone)]
pub(crate) struct LazyKafka {
    config: Arc<ClientConfig>,
    sink: Arc<OnceLock<Result<KafkaSink, String>>>,
}

impl LazyKafka {
    /// Made on first use (`eager` false) or now (`eager`: a bad setting is an error here).
    pub(crate) fn new(config: ClientConfig, eager: bool) -> Result<LazyKafka, crate::error::Error> {
        let sink = OnceLock::new();
        if eager {
            let _ = sink.set(Ok(KafkaSink::new(&config)?));
        }
        Ok(LazyKafka {
            config: Arc::new(config),
            sink: Arc::new(sink),
        })
    }

    fn get(&self) -> &Result<KafkaSink, String> {
        self.sink
            .get_or_init(|| KafkaSink::new(&self.config).map_err(|e| e.to_string()))
    }

    /// Flushes the producer, if there is one.
    pub(crate) fn flush(&self, timeout: Duration) {
        if let Some(Ok(sink)) = self.sink.get() {
            sink.flush(timeout);
        }
    }
}

impl RecordSink for LazyKafka {
    fn send(&self, record: OutgoingRecord) -> BoxFuture<'static, Result<Delivery, PublishError>> {
        match self.get() {
            Ok(sink) => sink.send(record),
            Err(e) => {
                let error = PublishError::Broker {
                    topic: record.topic,
                    reason: e.clone(),
                    kind: PublishErrorKind::DestinationRejected,
                };
                Box::pin(async move { Err(error) })
            }
        }
    }

    fn status(&self) -> SinkStatus {
        match self.sink.get() {
            Some(Ok(sink)) => sink.status(),
            _ => SinkStatus::default(),
        }
    }
}
