//! Dead-letter replay: reads a dead-letter topic and carries out what
//! [`redrive::plan`](super::redrive::plan) decides for each record (replay to its
//! topic, park, skip). A tombstone is replayed as a tombstone (null value).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Headers as _, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::redrive::plan;
use crate::config::Config;
use crate::error::Error;
use crate::failure::redrive::{ReplayOptions, ReplayReport, Step, Unreplayable};
use crate::publisher::RecordSink;
use crate::record::{Header, Headers, Record};

/// Replays the records of `dlt_topic` up to the end of the topic as it was when the
/// replay started (or `opts.limit` records). Without filters or dry run, progress is
/// committed under the consumer group `<application>-dlt-replay` (only after a record's
/// republication was acknowledged), so running it twice does not republish a record
/// twice; with them, nothing is committed and the whole topic is read.
///
/// A record that cannot be replayed never stops the replay: it is counted with its reason
/// in [`ReplayReport::unreplayable`]. With `opts.skip_unreplayable` the position moves past
/// it; without, its partition's position stays there and the partition's later records are
/// held (counted in [`ReplayReport::held`], replayed by a later run), since replaying them
/// now would replay them a second time then. Other partitions go on.
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
    // The replay assigns its partitions and joins no group: a `group.instance.id` meant for
    // the services' consumers is no member of its group.
    let consumer: BaseConsumer = super::consumer_config(config, &group, &group)?
        .remove(super::instance_id::KEY)
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
    // Partitions whose position stays at an unreplayable record: what follows is held.
    // A dry run shows what a run with the same options would do.
    let holds = !opts.skip_unreplayable && !opts.is_filtered();
    let mut blocked: BTreeMap<i32, i64> = BTreeMap::new();
    let deadline_idle = Duration::from_secs(10);
    let mut last_progress = Instant::now();
    // Records of the replayed range taken so far (for `opts.limit`).
    let mut taken = 0usize;
    while done.values().any(|d| !d) && limit.is_none_or(|l| taken < l) {
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
        taken += 1;
        let record = to_record(&m);
        let at = format!("{}/{}@{}", record.topic, record.partition, record.offset);
        let moved_past = if let Some(first) = blocked.get(&m.partition()) {
            report.held += 1;
            if opts.dry_run {
                report.planned.push(format!(
                    "{at}: held (behind the unreplayable {dlt_topic}/{}@{first})",
                    m.partition()
                ));
            }
            false
        } else {
            match plan(dlt_topic, &record, opts) {
                Err(reason) => {
                    tracing::warn!(dlt = %dlt_topic, partition = m.partition(), offset = m.offset(),
                        %reason, "cannot be replayed");
                    if opts.dry_run {
                        report
                            .planned
                            .push(format!("{at}: unreplayable ({reason})"));
                    }
                    report.unreplayable.push(Unreplayable { at, reason });
                    if holds {
                        blocked.insert(m.partition(), m.offset());
                    }
                    !holds
                }
                Ok(step) => {
                    carry_out(&sink, dlt_topic, &m, &record, step, opts, &mut report).await?;
                    true
                }
            }
        };
        if !commit || !moved_past {
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

/// Does `step` for the record `m` (a dry run only describes it).
async fn carry_out(
    sink: &super::producer::KafkaSink,
    dlt_topic: &str,
    m: &rdkafka::message::BorrowedMessage<'_>,
    record: &Record,
    step: Step,
    opts: &ReplayOptions,
    report: &mut ReplayReport,
) -> Result<(), Error> {
    if opts.dry_run {
        report.planned.push(describe(record, &step));
        return Ok(());
    }
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
    Ok(())
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
                .map(|h| Header::raw(h.key, h.value.map(<[u8]>::to_vec)))
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
    let fqcn = super::dlt_dialect::exception_fqcn(&r.headers).unwrap_or("-");
    format!(
        "{}/{}@{} key={key} exception={fqcn}: {what}",
        r.topic, r.partition, r.offset
    )
}
