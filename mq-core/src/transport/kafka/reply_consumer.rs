//! The requester's side of request–reply on Kafka: the producer stamps requests with the
//! app's reply topic ([`ReplySink`]), and one consumer per app reads that topic and hands
//! each reply to the request waiting for its correlation id (Spring's reply container).
//!
//! The consumer is assigned every partition of the reply topic at its end offsets (no
//! group rebalance, nothing committed: a reply is only worth something to a request
//! waiting now), and requests wait until that assignment is in place, so no reply is
//! written before its reader looks.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::lazy_sink::LazyKafka;
use super::reply;
use crate::config::Config;
use crate::publisher::{Delivery, PublishError, RecordSink, Replies, SinkStatus};
use crate::record::OutgoingRecord;

/// How long one metadata or watermark request waits (it is retried).
const METADATA_TIMEOUT: Duration = Duration::from_secs(3);

/// The app's Kafka producer, stamping requests with its reply topic.
pub(crate) struct ReplySink {
    pub(crate) inner: LazyKafka,
    /// `mq.kafka.reply-topic`.
    pub(crate) reply_topic: Option<String>,
}

impl RecordSink for ReplySink {
    fn send(&self, record: OutgoingRecord) -> BoxFuture<'static, Result<Delivery, PublishError>> {
        self.inner.send(record)
    }

    fn status(&self) -> SinkStatus {
        self.inner.status()
    }

    fn stamp_request(&self, request: &mut OutgoingRecord, correlation: &[u8]) -> bool {
        let Some(topic) = &self.reply_topic else {
            return false;
        };
        reply::stamp_request(request, topic, correlation);
        true
    }

    fn stamp_reply(&self, reply: &mut OutgoingRecord, correlation: &[u8]) {
        reply::stamp_reply(reply, correlation);
    }
}

/// Starts the reply consumer of `topic` (created first, when topics are created at
/// startup); it runs until `shutdown`.
pub(crate) fn spawn(
    config: Config,
    topic: String,
    replies: Arc<Replies>,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut pause = Duration::from_millis(250);
        let consumer = loop {
            match prepare(&config, &topic).await {
                Ok(consumer) => break consumer,
                Err(e) => {
                    tracing::warn!(topic = %topic, error = %e, "reply consumer not ready yet; retrying")
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        };
        replies.set_ready();
        tracing::info!(topic = %topic, "reading replies");
        let stop = shutdown.clone();
        let _ = tokio::task::spawn_blocking(move || read(consumer, &topic, &replies, &stop)).await;
    })
}

/// Creates the topic (when the app creates topics) and a consumer assigned to its end.
async fn prepare(config: &Config, topic: &str) -> Result<BaseConsumer, String> {
    let admin = &config.mq.kafka.admin;
    if admin.auto_create_topics {
        let admin_cfg = super::admin_config(config).map_err(|e| e.to_string())?;
        let wanted = [(topic.to_owned(), admin.partitions)];
        super::admin::ensure_topics(&admin_cfg, &wanted, admin.replication_factor).await?;
    }
    let app = &config.mq.application.name;
    let mut client =
        super::consumer_config(config, &format!("{app}.replies"), &format!("{app}-replies"))
            .map_err(|e| e.to_string())?;
    // Nothing is committed, and the group is not joined: no static membership either.
    client.set("enable.auto.commit", "false");
    client.remove("group.instance.id");
    let topic = topic.to_owned();
    tokio::task::spawn_blocking(move || assign_at_end(&client, &topic))
        .await
        .map_err(|e| e.to_string())?
}

fn assign_at_end(client: &rdkafka::ClientConfig, topic: &str) -> Result<BaseConsumer, String> {
    let consumer: BaseConsumer = client.create().map_err(|e| e.to_string())?;
    let md = consumer
        .fetch_metadata(Some(topic), METADATA_TIMEOUT)
        .map_err(|e| e.to_string())?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    if partitions.is_empty() {
        return Err(format!("reply topic {topic} does not exist"));
    }
    let mut tpl = TopicPartitionList::new();
    for p in partitions {
        let (_, high) = consumer
            .fetch_watermarks(topic, p, METADATA_TIMEOUT)
            .map_err(|e| e.to_string())?;
        tpl.add_partition_offset(topic, p, Offset::Offset(high))
            .map_err(|e| e.to_string())?;
    }
    consumer.assign(&tpl).map_err(|e| e.to_string())?;
    Ok(consumer)
}

/// Hands every reply read to the request waiting for it, until `stop`.
fn read(consumer: BaseConsumer, topic: &str, replies: &Replies, stop: &CancellationToken) {
    let topic: Arc<str> = Arc::from(topic);
    while !stop.is_cancelled() {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                let record = super::record_copy::to_record(&m, topic.clone());
                match reply::correlation_of(&record.headers).map(<[u8]>::to_vec) {
                    Some(correlation) => {
                        replies.complete(&correlation, record);
                    }
                    None => tracing::debug!(
                        partition = m.partition(),
                        offset = m.offset(),
                        "a record on the reply topic without kafka_correlationId: dropped"
                    ),
                }
            }
            Some(Err(e)) => tracing::debug!(error = %e, "reply consumer"),
        }
    }
}
