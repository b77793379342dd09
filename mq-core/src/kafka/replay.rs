//! Dead-letter replay: reads a dead-letter topic and carries out what
//! [`redrive::plan`](crate::failure::redrive::plan) decides for each record (replay to its
//! topic, park, skip). A tombstone is replayed as a tombstone (null value).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Headers as _, Message};
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Config;
use crate::failure::redrive::{plan, ReplayOptions, Step};
use crate::publisher::RecordSink;
use crate::record::{Header, Headers, Record};
use crate::Error;

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records republished, per destination topic.
    pub replayed: BTreeMap<String, usize>,
    /// Records left alone: filtered out, or stored without their value.
    pub skipped: usize,
    /// Records sent to the parking topic (replayed too often already).
    pub parked: usize,
    /// Dry run: one line per record saying what would be done.
    pub planned: Vec<String>,
}

impl ReplayReport {
    /// Records republished in all.
    pub fn total(&self) -> usize {
        self.replayed.values().sum()
    }
}

/// Replays the records of `dlt_topic` up to the end of the topic as it was when the
/// replay started (or `opts.limit` records). Without filters or dry run, progress is
/// committed under the consumer group `<application>-dlt-replay` (only after a record's
/// republication was acknowledged), so running it twice does not republish a record
/// twice; with them, nothing is committed and the whole topic is read.
pub(crate) async fn replay(
    config: &Config,
    dlt_topic: &str,
    opts: &ReplayOptions,
) -> Result<ReplayReport, Error> {
    let commit = !opts.dry_run && !opts.is_filtered();
    let limit = opts.limit;
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
            let start = if commit {
                Offset::Stored
            } else {
                Offset::Beginning
            };
            tpl.add_partition_offset(&topic, p, start)
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
                Offset::Offset(o) if commit => o,
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
    let handled = |r: &ReplayReport| r.total() + r.skipped + r.parked + r.planned.len();
    while done.values().any(|d| !d) && limit.is_none_or(|l| handled(&report) < l) {
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
        let record = to_record(&m);
        let step = plan(dlt_topic, &record, opts)
            .map_err(|e| Error::Kafka(format!("{e}; replay stopped there")))?;
        if opts.dry_run {
            report.planned.push(describe(&record, &step));
        } else {
            match step {
                Step::Replay(out) => {
                    let target = out.topic.clone();
                    sink.send(out).await.map_err(Error::Publish)?;
                    *report.replayed.entry(target).or_default() += 1;
                }
                Step::Park(out) => {
                    tracing::warn!(dlt = %dlt_topic, partition = m.partition(), offset = m.offset(),
                        parking = %out.topic, "replayed too often; parked");
                    sink.send(out).await.map_err(Error::Publish)?;
                    report.parked += 1;
                }
                Step::Skip(why) => {
                    tracing::debug!(dlt = %dlt_topic, partition = m.partition(), offset = m.offset(), why, "not replayed");
                    report.skipped += 1;
                }
            }
        }
        if !commit {
            if m.offset() + 1 >= end {
                done.insert(m.partition(), true);
            }
            continue;
        }
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(dlt_topic, m.partition(), Offset::Offset(m.offset() + 1))
            .map_err(|e| Error::Kafka(e.to_string()))?;
        consumer
            .commit(&tpl, CommitMode::Sync)
            .map_err(|e| Error::Kafka(format!("commit: {e}")))?;
        if m.offset() + 1 >= end {
            done.insert(m.partition(), true);
        }
    }
    tokio::task::spawn_blocking(move || drop(consumer))
        .await
        .ok();
    Ok(report)
}

/// A copy of `m` as a transport-neutral record.
fn to_record(m: &rdkafka::message::BorrowedMessage<'_>) -> Record {
    let mut r = Record::new(
        m.topic(),
        m.partition(),
        m.offset(),
        m.key().map(<[u8]>::to_vec),
        m.payload().map(<[u8]>::to_vec),
    );
    r.timestamp = m.timestamp().to_millis();
    if let Some(hs) = m.headers() {
        r.headers = Headers::from_vec(
            hs.iter()
                .map(|h| Header {
                    key: h.key.to_owned(),
                    value: h.value.map(<[u8]>::to_vec),
                })
                .collect(),
        );
    }
    r
}

/// One dry-run line: where the record is, its key, and what would happen.
fn describe(r: &Record, step: &Step) -> String {
    let key = r
        .key
        .as_deref()
        .map_or("-".into(), |k| String::from_utf8_lossy(k).into_owned());
    let what = match step {
        Step::Replay(out) => format!("replay -> {}", out.topic),
        Step::Park(out) => format!("park -> {}", out.topic),
        Step::Skip(why) => format!("skip ({why})"),
    };
    let fqcn = r
        .headers
        .get_str(crate::dead_letter::headers::EXCEPTION_FQCN)
        .unwrap_or("-");
    format!(
        "{}/{}@{} key={key} exception={fqcn}: {what}",
        r.topic, r.partition, r.offset
    )
}
