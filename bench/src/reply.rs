//! The `reply` section (only with `--only reply`): request–reply round trips, mq against a
//! client pair written by hand on the same broker, in alternating runs.
//!
//! Each contender is one process holding a requester and a responder. The requester keeps
//! `in_flight` requests outstanding (a new one as each reply comes) until `requests` were
//! answered; each round trip is timed from the request's send to its reply's arrival.
//!
//! - Kafka, mq: `Publisher::request` with `mq.kafka.reply-topic`, a listener returning
//!   `Reply<Quote>`. By hand: an rdkafka `FutureProducer` stamping Spring's headers, a
//!   `StreamConsumer` assigned to the reply topic's end, and a responder loop (consumer on
//!   the request topic, offsets auto-committed, the reply produced and awaited per request).
//! - RabbitMQ, mq: the same calls on an `amqp:///` destination (direct reply-to). By hand:
//!   lapin, direct reply-to on a confirm channel, a responder acking each request after its
//!   confirmed reply (mq's responder acks after the confirmed reply too).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use mq_core::handler::Reply;
use mq_core::prelude::*;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Header, Headers as _, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use serde::Serialize;
use tokio::sync::oneshot;

use crate::common::BenchResult;

/// The responder's queue on RabbitMQ.
const QUEUE: &str = "mq-bench-reply";

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Ask {
    n: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Quote {
    n: u64,
    cents: u64,
}

/// mq's responder on Kafka; its topic is set per run (`mq.listeners.bench_reply.topics`).
#[listener(topic = "mq-bench-reply")]
async fn bench_reply(ask: Ask) -> Result<Reply<Quote>, HandlerError> {
    Ok(Reply::new(Quote {
        n: ask.n,
        cents: ask.n * 2,
    }))
}

/// mq's responder on RabbitMQ.
#[listener(queue = "mq-bench-reply")]
async fn bench_reply_queue(ask: Ask) -> Result<Reply<Quote>, HandlerError> {
    Ok(Reply::new(Quote {
        n: ask.n,
        cents: ask.n * 2,
    }))
}

/// One run of one contender.
#[derive(Debug, Clone, Serialize)]
pub struct ReplyRun {
    pub requests_per_s: f64,
    pub p50_us: u64,
    pub p99_us: u64,
}

/// One broker's runs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BrokerRuns {
    pub mq: Vec<ReplyRun>,
    pub by_hand: Vec<ReplyRun>,
    /// Medians of requests per second, and mq over the pair written by hand.
    pub mq_median: f64,
    pub by_hand_median: f64,
    pub ratio: f64,
}

/// The section's result.
#[derive(Debug, Clone, Serialize)]
pub struct ReplyResult {
    pub requests: u64,
    pub in_flight: usize,
    pub kafka: BrokerRuns,
    pub rabbit: BrokerRuns,
}

/// Sends `requests` requests through `ask` with `in_flight` outstanding; times each.
async fn drive<F, Fut>(requests: u64, in_flight: usize, ask: F) -> BenchResult<ReplyRun>
where
    F: Fn(u64) -> Fut,
    Fut: std::future::Future<Output = BenchResult<u64>>,
{
    let started = Instant::now();
    let mut rtts: Vec<u64> = futures::stream::iter(0..requests)
        .map(|n| {
            let ask = &ask;
            async move {
                let t = Instant::now();
                let cents = ask(n).await?;
                if cents != n * 2 {
                    return Err(format!("request {n}: the reply says {cents}"));
                }
                Ok(t.elapsed().as_micros() as u64)
            }
        })
        .buffer_unordered(in_flight)
        .try_collect()
        .await?;
    let secs = started.elapsed().as_secs_f64();
    rtts.sort_unstable();
    let at = |q: f64| rtts[((rtts.len() as f64 * q) as usize).min(rtts.len() - 1)];
    Ok(ReplyRun {
        requests_per_s: requests as f64 / secs,
        p50_us: at(0.50),
        p99_us: at(0.99),
    })
}

/// Runs the section.
pub async fn run(
    bootstrap: &str,
    prefix: &str,
    requests: u64,
    in_flight: usize,
    runs: usize,
) -> BenchResult<ReplyResult> {
    let mut kafka = BrokerRuns::default();
    let mut rabbit = BrokerRuns::default();
    for i in 1..=runs {
        let topic = format!("{prefix}-rr{i}");
        crate::common::create_topics(bootstrap, &[(&topic, 1)]).await?;
        let r = kafka_mq(bootstrap, &topic, requests, in_flight).await?;
        report("kafka, mq", i, &r);
        kafka.mq.push(r);
        let hand_topic = format!("{topic}-hand");
        let replies = format!("{topic}-hand-replies");
        crate::common::create_topics(bootstrap, &[(&hand_topic, 1), (&replies, 1)]).await?;
        let r = kafka_by_hand(bootstrap, &hand_topic, &replies, requests, in_flight).await?;
        report("kafka, by hand", i, &r);
        kafka.by_hand.push(r);
        let r = rabbit_mq(requests, in_flight).await?;
        report("rabbit, mq", i, &r);
        rabbit.mq.push(r);
        let r = rabbit_by_hand(requests, in_flight).await?;
        report("rabbit, by hand", i, &r);
        rabbit.by_hand.push(r);
    }
    for (name, b) in [("kafka", &mut kafka), ("rabbit", &mut rabbit)] {
        let median = |v: &[ReplyRun]| crate::median(v.iter().map(|r| r.requests_per_s).collect());
        b.mq_median = median(&b.mq);
        b.by_hand_median = median(&b.by_hand);
        b.ratio = b.mq_median / b.by_hand_median;
        println!(
            "  {name} median: mq {:.0} req/s, by hand {:.0} req/s, mq / by hand {:.3}",
            b.mq_median, b.by_hand_median, b.ratio
        );
    }
    Ok(ReplyResult {
        requests,
        in_flight,
        kafka,
        rabbit,
    })
}

fn report(name: &str, i: usize, r: &ReplyRun) {
    println!(
        "  {name:<16} run {i}: {:>8.0} req/s, round trip p50 {} µs, p99 {} µs",
        r.requests_per_s, r.p50_us, r.p99_us
    );
}

/// mq on Kafka: one app requests (its reply topic) and answers (the listener), with the
/// latency settings of the pair written by hand (`fetch.wait.max.ms` 10, `linger.ms` 0),
/// as a user who wants short round trips sets them.
async fn kafka_mq(
    bootstrap: &str,
    topic: &str,
    requests: u64,
    in_flight: usize,
) -> BenchResult<ReplyRun> {
    let yaml = format!(
        "mq:\n  application:\n    name: {topic}\n  kafka:\n    bootstrap-servers: \"{bootstrap}\"\n    \
         reply-topic: \"{topic}-replies\"\n    consumer:\n      properties:\n        fetch.wait.max.ms: \"10\"\n    \
         producer:\n      properties:\n        linger.ms: \"0\"\n  listeners:\n    bench_reply:\n      topics: [\"{topic}\"]\n      \
         group: \"{topic}\"\nmanagement:\n  server:\n    enabled: false\n"
    );
    let config = mq_core::Config::from_yaml_str(&yaml).map_err(|e| e.to_string())?;
    let app = mq_core::App::new(config)
        .only_listeners(["bench_reply"])
        .start()
        .await
        .map_err(|e| e.to_string())?;
    if !app.wait_assigned(Duration::from_secs(60)).await {
        return Err("the responder was not assigned its partition".into());
    }
    let publisher = app.publisher();
    // One request first: the reply consumer is assigned, the topics are warm.
    publisher
        .request::<_, Quote>(topic, "warm-up", Ask { n: 0 })
        .timeout(Duration::from_secs(60))
        .await
        .map_err(|e| format!("warm-up: {e}"))?;
    let r = drive(requests, in_flight, |n| {
        let publisher = &publisher;
        async move {
            let reply = publisher
                .request::<_, Quote>(topic, n.to_string(), Ask { n })
                .timeout(Duration::from_secs(60))
                .await
                .map_err(|e| e.to_string())?;
            Ok(reply.data.cents)
        }
    })
    .await;
    app.shutdown().await.map_err(|e| e.to_string())?;
    r
}

type Waiting = Arc<Mutex<HashMap<Vec<u8>, oneshot::Sender<Vec<u8>>>>>;

/// A client pair written by hand on rdkafka, in Spring's headers.
async fn kafka_by_hand(
    bootstrap: &str,
    topic: &str,
    replies: &str,
    requests: u64,
    in_flight: usize,
) -> BenchResult<ReplyRun> {
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "0")
        .create()
        .map_err(|e| e.to_string())?;
    let consumer = |group: &str| -> BenchResult<StreamConsumer> {
        ClientConfig::new()
            .set("bootstrap.servers", bootstrap)
            .set("group.id", group)
            .set("auto.offset.reset", "earliest")
            .set("fetch.wait.max.ms", "10")
            .create()
            .map_err(|e| e.to_string())
    };
    // The reply reader, at the reply topic's end.
    let reader = consumer(&format!("{replies}-reader"))?;
    let (_, high) = reader
        .fetch_watermarks(replies, 0, Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(replies, 0, Offset::Offset(high))
        .map_err(|e| e.to_string())?;
    reader.assign(&tpl).map_err(|e| e.to_string())?;
    let waiting: Waiting = Arc::default();
    let w = waiting.clone();
    let reading = tokio::spawn(async move {
        let mut stream = reader.stream();
        while let Some(Ok(m)) = stream.next().await {
            let corr = m.headers().and_then(|h| {
                h.iter()
                    .find(|h| h.key == "kafka_correlationId")
                    .and_then(|h| h.value.map(<[u8]>::to_vec))
            });
            let tx = corr.and_then(|c| w.lock().unwrap().remove(&c));
            if let (Some(tx), Some(v)) = (tx, m.payload()) {
                let _ = tx.send(v.to_vec());
            }
        }
    });
    // The responder.
    let responder = consumer(&format!("{topic}-responder"))?;
    responder.subscribe(&[topic]).map_err(|e| e.to_string())?;
    let out = producer.clone();
    let answering = tokio::spawn(async move {
        let mut stream = responder.stream();
        while let Some(Ok(m)) = stream.next().await {
            let header = |k: &str| {
                m.headers().and_then(|h| {
                    h.iter()
                        .find(|h| h.key == k)
                        .and_then(|h| h.value.map(<[u8]>::to_vec))
                })
            };
            let (Some(to), Some(corr), Some(v)) = (
                header("kafka_replyTopic"),
                header("kafka_correlationId"),
                m.payload(),
            ) else {
                continue;
            };
            let Ok(ask) = serde_json::from_slice::<Ask>(v) else {
                continue;
            };
            let body = serde_json::to_vec(&Quote {
                n: ask.n,
                cents: ask.n * 2,
            })
            .unwrap_or_default();
            let to = String::from_utf8_lossy(&to).into_owned();
            let headers = OwnedHeaders::new().insert(Header {
                key: "kafka_correlationId",
                value: Some(&corr),
            });
            let record = FutureRecord::<(), _>::to(&to)
                .payload(&body)
                .headers(headers);
            let _ = out.send(record, Duration::from_secs(10)).await;
        }
    });
    // The responder joins its group before the first request.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let r = drive(requests, in_flight, |n| {
        let (producer, waiting) = (&producer, &waiting);
        async move {
            let corr = uuid::Uuid::new_v4().hyphenated().to_string().into_bytes();
            let (tx, rx) = oneshot::channel();
            waiting.lock().unwrap().insert(corr.clone(), tx);
            let body = serde_json::to_vec(&Ask { n }).map_err(|e| e.to_string())?;
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "kafka_replyTopic",
                    value: Some(replies),
                })
                .insert(Header {
                    key: "kafka_correlationId",
                    value: Some(&corr),
                });
            let key = n.to_string();
            let record = FutureRecord::to(topic)
                .key(&key)
                .payload(&body)
                .headers(headers);
            producer
                .send(record, Duration::from_secs(10))
                .await
                .map_err(|(e, _)| e.to_string())?;
            let reply = tokio::time::timeout(Duration::from_secs(60), rx)
                .await
                .map_err(|_| format!("request {n}: no reply"))?
                .map_err(|e| e.to_string())?;
            let quote: Quote = serde_json::from_slice(&reply).map_err(|e| e.to_string())?;
            Ok(quote.cents)
        }
    })
    .await;
    reading.abort();
    answering.abort();
    r
}

fn amqp_uri() -> String {
    std::env::var("MQ_BENCH_AMQP")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

async fn fresh_queue() -> BenchResult<Connection> {
    let c = Connection::connect(&amqp_uri(), ConnectionProperties::default())
        .await
        .map_err(|e| e.to_string())?;
    let ch = c.create_channel().await.map_err(|e| e.to_string())?;
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
    Ok(c)
}

/// mq on RabbitMQ: one app requests (direct reply-to) and answers (a queue listener).
async fn rabbit_mq(requests: u64, in_flight: usize) -> BenchResult<ReplyRun> {
    let admin = fresh_queue().await?;
    let yaml = "mq:\n  application:\n    name: mq-bench-reply\n  kafka:\n    bootstrap-servers: 127.0.0.1:1\n\
                management:\n  server:\n    enabled: false\n";
    let config = mq_core::Config::from_yaml_str(yaml).map_err(|e| e.to_string())?;
    let app = mq_core::App::new(config)
        .only_listeners(["bench_reply_queue"])
        .start()
        .await
        .map_err(|e| e.to_string())?;
    if !app.wait_assigned(Duration::from_secs(30)).await {
        return Err("the queue consumer did not start".into());
    }
    let publisher = app.publisher();
    let destination = format!("amqp:///{QUEUE}");
    // One request first: the reply channel is open.
    publisher
        .request::<_, Quote>(&destination, "warm-up", Ask { n: 0 })
        .timeout(Duration::from_secs(60))
        .await
        .map_err(|e| format!("warm-up: {e}"))?;
    let r = drive(requests, in_flight, |n| {
        let (publisher, destination) = (&publisher, &destination);
        async move {
            let reply = publisher
                .request::<_, Quote>(destination, n.to_string(), Ask { n })
                .timeout(Duration::from_secs(60))
                .await
                .map_err(|e| e.to_string())?;
            Ok(reply.data.cents)
        }
    })
    .await;
    app.shutdown().await.map_err(|e| e.to_string())?;
    let _ = admin.close(200, "done".into()).await;
    r
}

/// A client pair written by hand on lapin: direct reply-to, confirms on both sides.
async fn rabbit_by_hand(requests: u64, in_flight: usize) -> BenchResult<ReplyRun> {
    let conn = fresh_queue().await?;
    let e = |e: lapin::Error| e.to_string();
    // The responder.
    let rch = conn.create_channel().await.map_err(e)?;
    rch.confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(e)?;
    let mut incoming = rch
        .basic_consume(
            QUEUE.into(),
            "bench-responder".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(e)?;
    let answering = tokio::spawn(async move {
        while let Some(Ok(d)) = incoming.next().await {
            let (Some(to), Ok(ask)) = (
                d.properties.reply_to().clone(),
                serde_json::from_slice::<Ask>(&d.data),
            ) else {
                continue;
            };
            let body = serde_json::to_vec(&Quote {
                n: ask.n,
                cents: ask.n * 2,
            })
            .unwrap_or_default();
            let mut props = BasicProperties::default().with_content_type("application/json".into());
            if let Some(c) = d.properties.correlation_id().clone() {
                props = props.with_correlation_id(c);
            }
            if let Ok(confirm) = rch
                .basic_publish("".into(), to, BasicPublishOptions::default(), &body, props)
                .await
            {
                let _ = confirm.await;
            }
            let _ = d.acker.ack(BasicAckOptions::default()).await;
        }
    });
    // The requester: direct reply-to on a confirm channel.
    let qch = conn.create_channel().await.map_err(e)?;
    qch.confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(e)?;
    let mut replies = qch
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "bench-requester".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(e)?;
    let waiting: Waiting = Arc::default();
    let w = waiting.clone();
    let reading = tokio::spawn(async move {
        while let Some(Ok(d)) = replies.next().await {
            let corr = d
                .properties
                .correlation_id()
                .as_ref()
                .map(|c| c.as_str().as_bytes().to_vec());
            if let Some(tx) = corr.and_then(|c| w.lock().unwrap().remove(&c)) {
                let _ = tx.send(d.data);
            }
        }
    });
    let r = drive(requests, in_flight, |n| {
        let (qch, waiting) = (&qch, &waiting);
        async move {
            let corr = uuid::Uuid::new_v4().hyphenated().to_string();
            let (tx, rx) = oneshot::channel();
            waiting
                .lock()
                .unwrap()
                .insert(corr.clone().into_bytes(), tx);
            let body = serde_json::to_vec(&Ask { n }).map_err(|e| e.to_string())?;
            let props = BasicProperties::default()
                .with_content_type("application/json".into())
                .with_delivery_mode(2)
                .with_reply_to("amq.rabbitmq.reply-to".into())
                .with_correlation_id(corr.into());
            qch.basic_publish(
                "".into(),
                QUEUE.into(),
                BasicPublishOptions::default(),
                &body,
                props,
            )
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
            let reply = tokio::time::timeout(Duration::from_secs(60), rx)
                .await
                .map_err(|_| format!("request {n}: no reply"))?
                .map_err(|e| e.to_string())?;
            let quote: Quote = serde_json::from_slice(&reply).map_err(|e| e.to_string())?;
            Ok(quote.cents)
        }
    })
    .await;
    reading.abort();
    answering.abort();
    let _ = conn.close(200, "done".into()).await;
    r
}
