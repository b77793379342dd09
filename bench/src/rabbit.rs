//! The `rabbit` section: an mq queue listener against the consumer one would write by hand
//! with lapin, on the same queue with the same prefetch, in alternating runs.
//!
//! Before each run the queue is filled with the same `messages` structured CloudEvents
//! (the JSON of [`event_json`], content type `application/cloudevents+json`), then the
//! contender drains it: decode into `CloudEvent<OrderCreated>` (mq: `Event<OrderCreated>`),
//! the trivial handler, manual ack. Two hand-written loops: the one lapin's examples show
//! (`delivery.ack()` awaited for every message) and a tuned one that acks with `multiple`
//! every `prefetch / 2` messages (and the last one); mq acks after the handler, coalescing
//! consecutive tags into one `multiple` ack from a task of its own. The ratio is mq over the
//! faster loop. The figure is messages per second from the first handled to the last.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use mq_core::prelude::*;
use serde::Serialize;

use crate::common::{cpu_time, event_json, wait_done, BenchResult, CloudEvent, OrderCreated, Sink};

/// The benchmark's queue (declared durable without arguments, as mq declares it).
pub const QUEUE: &str = "mq-bench-rabbit";
/// The mq contender's listener, for `only_listeners`.
pub const LISTENER: &str = "bench_rabbit_listener";

/// The mq contender: decode by the framework, then the same trivial handler.
#[listener(queue = "mq-bench-rabbit")]
async fn bench_rabbit_listener(
    event: Event<OrderCreated>,
    sink: State<Arc<Sink>>,
) -> Result<(), HandlerError> {
    sink.handle(0, &event.data);
    Ok(())
}

/// One run of one contender.
#[derive(Debug, Clone, Serialize)]
pub struct RabbitRun {
    pub msgs_per_s: f64,
    pub secs: f64,
    pub cpu_us_per_msg: f64,
}

/// The section's result.
#[derive(Debug, Clone, Serialize)]
pub struct RabbitResult {
    pub messages: u64,
    pub prefetch: u16,
    /// The loop of lapin's examples: every delivery acked, awaited.
    pub per_message: Vec<RabbitRun>,
    /// The tuned loop: one `multiple` ack per `prefetch / 2` deliveries.
    pub batched: Vec<RabbitRun>,
    pub mq: Vec<RabbitRun>,
    pub per_message_median: f64,
    pub batched_median: f64,
    /// The faster loop's median.
    pub baseline_median: f64,
    pub mq_median: f64,
    /// mq over the faster loop.
    pub ratio: f64,
}

/// The contenders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Contender {
    PerMessage,
    Batched,
    Mq,
}

/// The broker: `MQ_BENCH_AMQP`, else the local RabbitMQ.
fn uri() -> String {
    std::env::var("MQ_BENCH_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

async fn connect() -> BenchResult<Connection> {
    Connection::connect(&uri(), ConnectionProperties::default())
        .await
        .map_err(|e| {
            format!(
                "RabbitMQ at {}: {e}",
                uri().rsplit('@').next().unwrap_or("?")
            )
        })
}

/// Runs the section: `runs` alternating runs of each contender over `messages` messages.
pub async fn run(messages: u64, runs: usize, prefetch: u16) -> BenchResult<RabbitResult> {
    let admin = connect().await?;
    let ch = admin.create_channel().await.map_err(|e| e.to_string())?;
    for q in [QUEUE.to_owned(), format!("{QUEUE}.dlq")] {
        ch.queue_delete(q.into(), QueueDeleteOptions::default())
            .await
            .map_err(|e| e.to_string())?;
    }
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    ch.queue_declare(QUEUE.into(), durable, FieldTable::default())
        .await
        .map_err(|e| e.to_string())?;
    let (mut per_message, mut batched, mut mq) = (Vec::new(), Vec::new(), Vec::new());
    for i in 1..=runs {
        for who in [Contender::PerMessage, Contender::Batched, Contender::Mq] {
            fill(&admin, messages).await?;
            let (r, name, runs) = match who {
                Contender::Mq => (run_mq(messages, prefetch).await?, "mq", &mut mq),
                Contender::PerMessage => (
                    run_baseline(messages, prefetch, false).await?,
                    "lapin, ack each",
                    &mut per_message,
                ),
                Contender::Batched => (
                    run_baseline(messages, prefetch, true).await?,
                    "lapin, batched",
                    &mut batched,
                ),
            };
            println!(
                "  {name:<16} run {i}: {:>9.0} msg/s ({:.3} s), cpu {:.2} µs/msg",
                r.msgs_per_s, r.secs, r.cpu_us_per_msg
            );
            runs.push(r);
        }
    }
    for q in [QUEUE.to_owned(), format!("{QUEUE}.dlq")] {
        let _ = ch
            .queue_delete(q.into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = admin.close(200, "done".into()).await;
    let median = |v: &[RabbitRun]| crate::median(v.iter().map(|r| r.msgs_per_s).collect());
    let (pm, bm, mm) = (median(&per_message), median(&batched), median(&mq));
    let best = pm.max(bm);
    println!(
        "  median: lapin ack each {pm:.0} msg/s, lapin batched {bm:.0} msg/s, mq {mm:.0} msg/s; mq / faster loop {:.3}",
        mm / best
    );
    Ok(RabbitResult {
        messages,
        prefetch,
        per_message,
        batched,
        mq,
        per_message_median: pm,
        batched_median: bm,
        baseline_median: best,
        mq_median: mm,
        ratio: mm / best,
    })
}

/// Publishes messages `0..n` (confirmed, in batches), then waits until all are ready.
async fn fill(connection: &Connection, n: u64) -> BenchResult<()> {
    let ch = connection
        .create_channel()
        .await
        .map_err(|e| e.to_string())?;
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let props = BasicProperties::default()
        .with_content_type(mq_core::envelope::attributes::STRUCTURED_CONTENT_TYPE.into());
    let mut pending = Vec::with_capacity(1000);
    for i in 0..n {
        let confirm = ch
            .basic_publish(
                "".into(),
                QUEUE.into(),
                BasicPublishOptions::default(),
                &event_json(i, 0),
                props.clone(),
            )
            .await
            .map_err(|e| format!("publish: {e}"))?;
        pending.push(confirm);
        if pending.len() == 1000 || i + 1 == n {
            for c in pending.drain(..) {
                c.await.map_err(|e| format!("confirm: {e}"))?;
            }
        }
    }
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = ch
            .queue_declare(QUEUE.into(), passive, FieldTable::default())
            .await
            .map_err(|e| e.to_string())?
            .message_count();
        if u64::from(ready) >= n {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("{QUEUE}: {ready} of {n} messages ready"));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = ch.close(200, "filled".into()).await;
    Ok(())
}

fn finish(sink: &Sink, n: u64, cpu: Duration) -> BenchResult<RabbitRun> {
    sink.verify()?;
    let (first, last) = sink.window().ok_or("no message handled")?;
    let secs = (last - first).as_secs_f64().max(1e-6);
    Ok(RabbitRun {
        msgs_per_s: n as f64 / secs,
        secs,
        cpu_us_per_msg: cpu.as_secs_f64() * 1e6 / n as f64,
    })
}

/// The hand-written consumer: qos, consume, decode, handle, ack each delivery (or, `batched`,
/// one `multiple` ack per `prefetch / 2` deliveries and for the last).
async fn run_baseline(n: u64, prefetch: u16, batched: bool) -> BenchResult<RabbitRun> {
    let every = u64::from((prefetch / 2).max(1));
    let mut unacked = 0u64;
    let sink = Sink::new(1, n, false);
    let connection = connect().await?;
    let ch: Channel = connection
        .create_channel()
        .await
        .map_err(|e| e.to_string())?;
    ch.basic_qos(prefetch, BasicQosOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let mut consumer = ch
        .basic_consume(
            QUEUE.into(),
            "bench-lapin-loop".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(|e| e.to_string())?;
    let cpu0 = cpu_time();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !sink.all_done() {
        if Instant::now() > deadline {
            return Err(format!(
                "lapin loop: {} of {n} handled in time",
                sink.handled()
            ));
        }
        let next = tokio::time::timeout(Duration::from_secs(10), consumer.next()).await;
        let delivery = match next {
            Ok(Some(Ok(d))) => d,
            Ok(Some(Err(e))) => return Err(format!("lapin loop: {e}")),
            Ok(None) => return Err("lapin loop: consumer cancelled".to_owned()),
            Err(_) => return Err(format!("lapin loop: stalled at {} of {n}", sink.handled())),
        };
        match serde_json::from_slice::<CloudEvent<OrderCreated>>(&delivery.data) {
            Ok(event) => sink.handle(0, &event.data),
            Err(e) => return Err(format!("lapin loop: does not decode: {e}")),
        }
        if !batched {
            delivery
                .ack(BasicAckOptions::default())
                .await
                .map_err(|e| format!("ack: {e}"))?;
            continue;
        }
        unacked += 1;
        if unacked >= every || sink.all_done() {
            delivery
                .ack(BasicAckOptions { multiple: true })
                .await
                .map_err(|e| format!("ack: {e}"))?;
            unacked = 0;
        }
    }
    let cpu = cpu_time() - cpu0;
    let _ = ch.close(200, "done".into()).await;
    let _ = connection.close(200, "done".into()).await;
    finish(&sink, n, cpu)
}

/// mq: the listener above, with mq's defaults but the prefetch.
async fn run_mq(n: u64, prefetch: u16) -> BenchResult<RabbitRun> {
    let sink = Sink::new(1, n, false);
    let yaml = format!(
        "mq:\n  application:\n    name: mq-bench-rabbit\n  kafka:\n    bootstrap-servers: 127.0.0.1:1\n  rabbitmq:\n    listener:\n      prefetch: {prefetch}\nmanagement:\n  server:\n    enabled: false\n"
    );
    let config = mq_core::Config::from_yaml_str(&yaml).map_err(|e| e.to_string())?;
    let app = App::new(config)
        .with_state(sink.clone())
        .only_listeners([LISTENER])
        .start()
        .await
        .map_err(|e| format!("mq start: {e}"))?;
    let cpu0 = cpu_time();
    let done = wait_done(&sink, Duration::from_secs(300), "mq").await;
    let cpu = cpu_time() - cpu0;
    app.shutdown()
        .await
        .map_err(|e| format!("mq shutdown: {e}"))?;
    done?;
    finish(&sink, n, cpu)
}
