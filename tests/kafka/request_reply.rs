//! Request–reply on the real broker: a requester app (`Publisher::request`, its reply topic
//! from `mq.kafka.reply-topic`) and a responder app (a listener returning `Reply<T>`), in
//! Spring Kafka's headers; and a requester nobody here wrote (aiokafka, the way
//! `ReplyingKafkaTemplate` writes one) answered by mq.
//!
//! The Python requester needs `aiokafka`, which `faststream[kafka]` brings (scripts/test.sh
//! installs it).

use crate::support;

use std::future::IntoFuture;
use std::time::{Duration, Instant};

use mq_core::handler::Reply;
use mq_core::prelude::*;
use mq_core::publisher::RequestError;
use mq_core::App;
use support::{bootstrap, config, create_topic, unique};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/kafka_requester.py");
const RESPONDER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/kafka_responder.py");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PriceQuery {
    n: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PriceQuote {
    n: u64,
    cents: u64,
}

#[listener(topic = "rr-price-requests")]
async fn rr_quote(q: PriceQuery) -> Result<Reply<PriceQuote>, HandlerError> {
    Ok(Reply::new(PriceQuote {
        n: q.n,
        cents: q.n * 2,
    }))
}

#[listener(topic = "rr-price-failing")]
async fn rr_quote_failing(_q: PriceQuery) -> Result<Reply<PriceQuote>, HandlerError> {
    Err(HandlerError::permanent_msg("no price list"))
}

/// A responder app running `listener` on `topic`.
async fn responder(listener: &str, topic: &str) -> mq_core::RunningApp {
    let cfg = config(&format!(
        "mq:\n  application:\n    name: {topic}-responder\n  listeners:\n    {listener}:\n      \
         topics: [\"{topic}\"]\n      group: \"{topic}\"\n      retry:\n        max-attempts: 1\n"
    ));
    App::new(cfg)
        .only_listeners([listener])
        .start()
        .await
        .unwrap()
}

/// A requester app (no listeners) reading its replies on `reply_topic`.
async fn requester(reply_topic: &str) -> mq_core::RunningApp {
    let cfg = config(&format!(
        "mq:\n  application:\n    name: {reply_topic}-requester\n  kafka:\n    reply-topic: \"{reply_topic}\"\n"
    ));
    App::new(cfg)
        .only_listeners(Vec::<String>::new())
        .start()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_thousand_concurrent_requests_each_get_their_own_reply() {
    let topic = unique("rr-price-requests");
    create_topic(&topic, 3).await;
    let responder = responder("rr_quote", &topic).await;
    let requester = requester(&unique("rr-replies")).await;
    let publisher = requester.publisher();
    let requests = (0..1000u64).map(|n| {
        publisher
            .request::<_, PriceQuote>(&topic, n.to_string(), PriceQuery { n })
            .timeout(Duration::from_secs(120))
            .into_future()
    });
    let replies = futures::future::join_all(requests).await;
    for (n, reply) in replies.into_iter().enumerate() {
        let reply = reply.unwrap_or_else(|e| panic!("request {n}: {e}"));
        assert_eq!(
            reply.data,
            PriceQuote {
                n: n as u64,
                cents: 2 * n as u64
            }
        );
        assert!(reply.source.ends_with("-responder"), "{}", reply.source);
    }
    requester.shutdown().await.unwrap();
    responder.shutdown().await.unwrap();
}

#[tokio::test]
async fn no_responder_and_a_failing_responder_end_in_a_timeout() {
    let nobody = unique("rr-price-nobody");
    let failing = unique("rr-price-failing");
    create_topic(&nobody, 1).await;
    create_topic(&failing, 1).await;
    let responder = responder("rr_quote_failing", &failing).await;
    let requester = requester(&unique("rr-replies")).await;
    let publisher = requester.publisher();
    let timeout = Duration::from_secs(3);
    for topic in [&nobody, &failing] {
        let started = Instant::now();
        let reply = publisher
            .request::<_, PriceQuote>(topic, "k", PriceQuery { n: 1 })
            .timeout(timeout)
            .await;
        match reply {
            Err(RequestError::Timeout { after, .. }) => assert_eq!(after, timeout),
            other => panic!("{topic}: {other:?}"),
        }
        // The request waited out its whole timeout (a lower bound: no machine is too slow
        // for it); that it ended at all is the `Timeout` above, with no upper bound on time.
        assert!(
            started.elapsed() >= timeout,
            "{topic}: {:?}",
            started.elapsed()
        );
    }
    requester.shutdown().await.unwrap();
    responder.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_python_requester_with_springs_headers_gets_mqs_reply() {
    let topic = unique("rr-price-requests");
    let reply_topic = unique("rr-py-replies");
    create_topic(&topic, 2).await;
    create_topic(&reply_topic, 2).await;
    let responder = responder("rr_quote", &topic).await;
    // The responder runs on this test's runtime: the requester runs beside it.
    let lines = support::python(
        SCRIPT,
        &[
            "--bootstrap",
            &bootstrap(),
            "--topic",
            &topic,
            "--reply-topic",
            &reply_topic,
        ]
        .into_iter()
        .chain(["--count", "5", "--timeout", "90"])
        .collect::<Vec<_>>(),
        "scripts/test.sh installs faststream[kafka], which brings aiokafka",
    )
    .await;
    assert_eq!(lines.len(), 5, "{lines:?}");
    for line in &lines {
        assert_eq!(line["matched"], true, "{line}");
        let n = line["n"].as_u64().unwrap();
        // Kafka's default content mode is binary: the value is the bare data, as Spring's
        // JsonDeserializer reads it, and the CloudEvents attributes are ce_ headers.
        assert_eq!(
            line["data"],
            serde_json::json!({"n": n, "cents": 2 * n}),
            "{line}"
        );
        assert_eq!(line["headers"]["ce_type"], "PriceQuote", "{line}");
    }
    responder.shutdown().await.unwrap();
}

#[tokio::test]
async fn mqs_requests_are_answered_by_a_python_responder_with_springs_headers() {
    let topic = unique("rr-py-requests");
    create_topic(&topic, 2).await;
    let requester = requester(&unique("rr-replies")).await;
    let bootstrap = bootstrap();
    let responder = support::python(
        RESPONDER,
        &[
            "--bootstrap",
            &bootstrap,
            "--topic",
            &topic,
            "--count",
            "5",
            "--timeout",
            "90",
        ],
        "scripts/test.sh installs faststream[kafka], which brings aiokafka",
    );
    let publisher = requester.publisher();
    let requests = (0..5u64).map(|n| {
        publisher
            .request::<_, PriceQuote>(&topic, n.to_string(), PriceQuery { n })
            .timeout(Duration::from_secs(90))
            .into_future()
    });
    // Spring's reply is plain JSON (no CloudEvents attributes): it reads as an event whose
    // data is the value.
    for (n, reply) in futures::future::join_all(requests)
        .await
        .into_iter()
        .enumerate()
    {
        let reply = reply.unwrap_or_else(|e| panic!("request {n}: {e}"));
        assert_eq!(
            reply.data,
            PriceQuote {
                n: n as u64,
                cents: 3 * n as u64
            }
        );
    }
    // It answered every request and ended well (the helper checks its exit status).
    responder.await;
    requester.shutdown().await.unwrap();
}
