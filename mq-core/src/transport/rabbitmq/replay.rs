//! Dead-letter replay of a queue listener's `<queue>.dlq`: takes the messages that were in
//! it when the replay started (`basic.get`, one at a time) and carries out what
//! [`redrive::plan`](super::redrive::plan) decides: a replayed or parked message is acked
//! on the DLQ only after its republication was confirmed; a message a filter leaves out
//! (and every message of a dry run) stays unacked until the end, when closing the channel
//! returns it to the DLQ in its place.

use std::sync::Arc;

use lapin::options::{BasicAckOptions, BasicGetOptions, QueueDeclareOptions};
use lapin::types::FieldTable;

use super::connection::Rabbit;
use super::publisher::RabbitSink;
use super::redrive::{parking_queue, plan, source_queue};
use crate::config::Config;
use crate::error::Error;
use crate::failure::redrive::ReplayReport;
use crate::failure::redrive::{ReplayOptions, Step};
use crate::publisher::RecordSink;
use crate::record::Record;

/// Replays `dlq` (a `<queue>.dlq`) as the module explains.
pub(crate) async fn replay(
    config: &Config,
    dlq: &str,
    opts: &ReplayOptions,
) -> Result<ReplayReport, Error> {
    source_queue(dlq).ok_or_else(|| {
        Error::Rabbit(format!(
            "{dlq} is not a dead-letter queue: name one as amqp:///<queue>.dlq"
        ))
    })?;
    let application = format!("{}-dlt-replay", config.mq.application.name);
    let rabbit =
        Arc::new(Rabbit::new(config.mq.rabbitmq.clone(), &application).map_err(Error::Rabbit)?);
    let headroom = config.mq.rabbitmq.listener.dead_letter.frame_max_headroom;
    let outcome = run(&rabbit, dlq, opts, headroom).await;
    rabbit.close().await;
    outcome
}

async fn run(
    rabbit: &Arc<Rabbit>,
    dlq: &str,
    opts: &ReplayOptions,
    headroom: u32,
) -> Result<ReplayReport, Error> {
    let failed = |what: &str, e: lapin::Error| Error::Rabbit(format!("{what}: {e}"));
    let connection = rabbit.connection().await.map_err(Error::Rabbit)?;
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| failed("cannot open a channel", e))?;
    let dlq_name =
        super::properties::short("the dead-letter queue name", dlq).map_err(Error::Rabbit)?;
    let passive = QueueDeclareOptions::default().passive();
    let waiting = channel
        .queue_declare(dlq_name.clone(), passive, FieldTable::default())
        .await
        .map_err(|e| failed(&format!("no queue {dlq}"), e))?
        .message_count() as usize;
    let sink = RabbitSink::new(rabbit.clone());
    let name: Arc<str> = Arc::from(dlq);
    let mut report = ReplayReport::default();
    let mut parking_declared = false;
    let handled = |r: &ReplayReport| r.total() + r.skipped + r.parked + r.planned.len();
    for _ in 0..waiting {
        if opts.limit.is_some_and(|l| handled(&report) >= l) {
            break;
        }
        let Some(message) = channel
            .basic_get(dlq_name.clone(), BasicGetOptions { no_ack: false })
            .await
            .map_err(|e| failed(&format!("reading {dlq}"), e))?
        else {
            break; // someone else took the rest
        };
        let delivery = &message.delivery;
        let record = super::properties::record_of(&name, 0, delivery);
        let step = plan(dlq, &record, opts);
        if opts.dry_run {
            report.planned.push(describe(&record, &step));
            continue;
        }
        let out = match step {
            Step::Skip(why) => {
                tracing::debug!(dlq, tag = delivery.delivery_tag, why, "not replayed");
                report.skipped += 1;
                continue;
            }
            Step::Replay(out) => {
                *report.replayed.entry(out.topic.clone()).or_default() += 1;
                out
            }
            Step::Park(out) => {
                if !parking_declared {
                    let parking =
                        super::properties::short("the parking queue name", &parking_queue(dlq))
                            .map_err(Error::Rabbit)?;
                    channel
                        .queue_declare(
                            parking,
                            QueueDeclareOptions::durable(),
                            FieldTable::default(),
                        )
                        .await
                        .map_err(|e| {
                            failed(&format!("cannot declare {}", parking_queue(dlq)), e)
                        })?;
                    parking_declared = true;
                }
                tracing::warn!(dlq, parking = %parking_queue(dlq), "replayed too often; parked");
                report.parked += 1;
                out
            }
        };
        let mut out = out;
        let budget = super::frame::budget(
            rabbit
                .frame_max()
                .load(std::sync::atomic::Ordering::Relaxed),
            headroom,
        );
        super::frame::fit_to(&mut out, budget, "replay");
        // Confirmed first, acked on the DLQ after: a failure leaves it in the DLQ.
        sink.send(out).await.map_err(Error::Publish)?;
        let acked = delivery
            .acker
            .ack(BasicAckOptions::default())
            .await
            .map_err(|e| failed(&format!("ack on {dlq}"), e))?;
        if !acked {
            // The channel closed after the copy was confirmed: the message is back in the
            // DLQ, and a later replay sends it again.
            return Err(Error::Rabbit(format!("ack on {dlq}: the channel closed")));
        }
    }
    // What was left unacked (filtered out, dry run) goes back to the DLQ.
    let _ = channel.close(200, "replay done".into()).await;
    Ok(report)
}

/// One dry-run line: the message, its first routing key and error, and what would happen.
fn describe(r: &Record, step: &Step) -> String {
    let h = &r.headers;
    let routing_key = h.get_str(super::dead_letter::headers::ORIGINAL_ROUTING_KEY);
    let error = h
        .get_str(super::dead_letter::headers::EXCEPTION_STACKTRACE)
        .and_then(|s| s.split(':').next())
        .unwrap_or("-");
    let what = match step {
        Step::Replay(out) => format!("replay -> {}", out.topic),
        Step::Park(out) => format!("park -> {}", out.topic),
        Step::Skip(why) => format!("skip ({why})"),
    };
    format!(
        "{}#{} routing-key={} exception={error}: {what}",
        r.topic,
        r.offset,
        routing_key.unwrap_or("-")
    )
}
