//! Dead-letter replay: republish the records of a dead-letter topic to the topics they
//! came from, without their `kafka_dlt-*` and `retry_topic-*` headers.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Headers as _, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Config;
use crate::dead_letter::headers as dlt;
use crate::publisher::RecordSink;
use crate::record::{Header, Headers, OutgoingRecord};
use crate::{retry_topic, Error};

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records republished, per destination topic.
    pub replayed: BTreeMap<String, usize>,
}

impl ReplayReport {
    /// Records republished in all.
    pub fn total(&self) -> usize {
        self.replayed.values().sum()
    }
}

/// Republishes every record of `dlt_topic` that this replay group has not replayed yet,
/// up to the end of the topic as it was when the replay started (or `limit` records).
/// Progress is committed under the consumer group `<application>-dlt-replay`, so running
/// it twice does not republish a record twice. A record is committed only after its
/// republication was acknowledged.
pub(crate) async fn replay(
    config: &Config,
    dlt_topic: &str,
    limit: Option<usize>,
) -> Result<ReplayReport, Error> {
    // A wrong password or an untrusted certificate fails here, naming the key to fix.
    super::security::check_connection(config).await?;
    let sink = super::producer::KafkaSink::new(&super::producer_config(config)?)?;
    let group = format!("{}-dlt-replay", config.mq.application.name);
    let consumer: BaseConsumer = super::consumer_config(config, &group, &group)?
        .set("enable.auto.commit", "false")
        .set("statistics.interval.ms", "0")
        .create()
        .map_err(|e| Error::Kafka(format!("replay consumer: {e}")))?;
    let timeout = Duration::from_secs(10);
    let topic = dlt_topic.to_owned();
    let (consumer, ends, mut done) = tokio::task::spawn_blocking(move || -> Result<_, Error> {
        let md = consumer
            .fetch_metadata(Some(&topic), timeout)
            .map_err(|e| Error::Kafka(format!("metadata of {topic}: {e}")))?;
        let partitions: Vec<i32> = md
            .topics()
            .first()
            .map(|t| t.partitions().iter().map(|p| p.id()).collect())
            .unwrap_or_default();
        let mut tpl = TopicPartitionList::new();
        let mut ends = BTreeMap::new();
        for p in partitions {
            let (_, high) = consumer
                .fetch_watermarks(&topic, p, timeout)
                .map_err(|e| Error::Kafka(format!("watermarks of {topic}/{p}: {e}")))?;
            tpl.add_partition_offset(&topic, p, Offset::Stored)
                .map_err(|e| Error::Kafka(e.to_string()))?;
            ends.insert(p, high);
        }
        // Partitions whose committed replay position is already at the end are done.
        let committed = consumer
            .committed_offsets(tpl.clone(), timeout)
            .map_err(|e| Error::Kafka(format!("committed offsets of {topic}: {e}")))?;
        let mut done = BTreeMap::new();
        for e in committed.elements() {
            let end = ends.get(&e.partition()).copied().unwrap_or(0);
            let at = match e.offset() {
                Offset::Offset(o) => o,
                _ => 0,
            };
            done.insert(e.partition(), at >= end);
        }
        consumer
            .assign(&tpl)
            .map_err(|e| Error::Kafka(format!("assign {topic}: {e}")))?;
        Ok((consumer, ends, done))
    })
    .await
    .map_err(|e| Error::Kafka(e.to_string()))??;

    let mut report = ReplayReport::default();
    let deadline_idle = Duration::from_secs(10);
    let mut last_progress = Instant::now();
    while done.values().any(|d| !d) && limit.is_none_or(|l| report.total() < l) {
        let Some(polled) = consumer.poll(Duration::from_millis(100)) else {
            // Caught up already (everything committed) shows as no records at all.
            if last_progress.elapsed() > deadline_idle {
                break;
            }
            let positions = consumer
                .position()
                .map_err(|e| Error::Kafka(e.to_string()))?;
            for e in positions.elements() {
                if let (Offset::Offset(o), Some(end)) = (e.offset(), ends.get(&e.partition())) {
                    if o >= *end {
                        done.insert(e.partition(), true);
                    }
                }
            }
            continue;
        };
        let m = polled.map_err(|e| Error::Kafka(format!("reading {dlt_topic}: {e}")))?;
        last_progress = Instant::now();
        let end = ends.get(&m.partition()).copied().unwrap_or(0);
        if m.offset() >= end {
            done.insert(m.partition(), true);
            continue;
        }
        let mut headers = Vec::new();
        let mut original = None;
        if let Some(hs) = m.headers() {
            for h in hs.iter() {
                if h.key == dlt::ORIGINAL_TOPIC {
                    original = h
                        .value
                        .and_then(|v| std::str::from_utf8(v).ok())
                        .map(str::to_owned);
                }
                if h.key.starts_with(dlt::PREFIX) || h.key.starts_with(retry_topic::PREFIX) {
                    continue;
                }
                headers.push(Header {
                    key: h.key.to_owned(),
                    value: h.value.map(<[u8]>::to_vec),
                });
            }
        }
        let original = original.ok_or_else(|| {
            Error::Kafka(format!(
                "{dlt_topic}/{}@{} has no {} header: not a dead letter, replay stopped there",
                m.partition(),
                m.offset(),
                dlt::ORIGINAL_TOPIC
            ))
        })?;
        let target = retry_topic::base_name(&original).to_owned();
        let out = OutgoingRecord {
            topic: target.clone(),
            partition: None,
            key: m.key().map(<[u8]>::to_vec),
            value: m.payload().map(<[u8]>::to_vec).unwrap_or_default(),
            headers: Headers::from_vec(headers),
        };
        sink.send(out).await.map_err(Error::Publish)?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(dlt_topic, m.partition(), Offset::Offset(m.offset() + 1))
            .map_err(|e| Error::Kafka(e.to_string()))?;
        consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| Error::Kafka(format!("commit: {e}")))?;
        *report.replayed.entry(target).or_default() += 1;
        if m.offset() + 1 >= end {
            done.insert(m.partition(), true);
        }
    }
    tokio::task::spawn_blocking(move || drop(consumer))
        .await
        .ok();
    Ok(report)
}
