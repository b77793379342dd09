//! Request–reply in memory (`TestApp`): a requester's `Publisher::request` and a responder
//! that returns `Reply<T>`, the way users test both without a broker.

use std::future::IntoFuture;
use std::time::Duration;

use mq_core::handler::Reply;
use mq_core::prelude::*;
use mq_core::publisher::RequestError;
use mq_core::testing::TestApp;
use mq_core::{App, Config};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PriceQuery {
    n: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct PriceQuote {
    n: u64,
    cents: u64,
}

#[listener(topic = "mem-price-requests")]
async fn mem_quote(q: Event<PriceQuery>) -> Result<Reply<PriceQuote>, HandlerError> {
    Ok(Reply::new(PriceQuote {
        n: q.data.n,
        cents: q.data.n * 2,
    }))
}

#[listener(topic = "mem-price-failing")]
async fn mem_quote_failing(_q: PriceQuery) -> Result<Reply<PriceQuote>, HandlerError> {
    Err(HandlerError::permanent_msg("no price list"))
}

fn app(listeners: &[&str]) -> TestApp {
    let config = Config::from_yaml_str(
        "mq:\n  application:\n    name: mem-rr\n  listener:\n    retry:\n      max-attempts: 1\n",
    )
    .unwrap();
    TestApp::new(App::new(config).only_listeners(listeners.iter().copied())).unwrap()
}

#[tokio::test]
async fn a_thousand_concurrent_requests_each_get_their_own_reply() {
    let app = app(&["mem_quote"]);
    let publisher = app.publisher();
    let requests = (0..1000u64).map(|n| {
        publisher
            .request::<_, PriceQuote>("mem-price-requests", n.to_string(), PriceQuery { n })
            .timeout(Duration::from_secs(30))
            .into_future()
    });
    let (replies, _) = tokio::join!(futures::future::join_all(requests), app.drain());
    for (n, reply) in replies.into_iter().enumerate() {
        let reply = reply.unwrap_or_else(|e| panic!("request {n}: {e}"));
        assert_eq!(
            reply.data,
            PriceQuote {
                n: n as u64,
                cents: 2 * n as u64
            }
        );
        assert_eq!(reply.ty, "PriceQuote");
        // The reply was published on behalf of the request (its causation).
        assert!(reply.causationid.is_some());
    }
    assert_eq!(app.replies().waiting(), 0);
    assert_eq!(app.replies().late(), 0);
    // Every reply went to the app's reply topic, with Spring's correlation header.
    let records = app.broker().records("mem-rr.replies");
    assert_eq!(records.len(), 1000);
    assert!(records.iter().all(|r| r
        .headers
        .get("kafka_correlationId")
        .is_some_and(|c| c.len() == 36)));
}

#[tokio::test]
async fn no_responder_and_a_failing_responder_time_out_and_leave_nothing_waiting() {
    let app = app(&["mem_quote_failing"]);
    let publisher = app.publisher();
    for topic in ["mem-price-nobody", "mem-price-failing"] {
        let request = publisher
            .request::<_, PriceQuote>(topic, "k", PriceQuery { n: 1 })
            .timeout(Duration::from_millis(500));
        let (reply, _) = tokio::join!(request.into_future(), app.drain());
        match reply {
            Err(RequestError::Timeout { topic: t, after }) => {
                assert_eq!((t.as_str(), after), (topic, Duration::from_millis(500)));
            }
            other => panic!("{topic}: {other:?}"),
        }
        assert_eq!(app.replies().waiting(), 0, "{topic}");
    }
    // The failing responder's request went to its dead-letter topic, not back as a reply.
    assert_eq!(app.broker().records("mem-price-failing-dlt").len(), 1);
    assert!(app.broker().records("mem-rr.replies").is_empty());
}

#[tokio::test]
async fn a_reply_to_a_message_that_asked_for_none_is_not_sent() {
    let app = app(&["mem_quote"]);
    app.publisher()
        .send("mem-price-requests", "k", PriceQuery { n: u64::MAX / 4 })
        .await
        .unwrap();
    let outcomes = app.drain().await;
    assert_eq!(outcomes.len(), 1);
    assert!(app.broker().records("mem-rr.replies").is_empty());
}

#[tokio::test]
async fn a_reply_that_comes_after_its_request_gave_up_is_counted_late() {
    let app = app(&["mem_quote"]);
    let publisher = app.publisher();
    // Nothing drains while the request waits: it times out, then the reply comes.
    let reply = publisher
        .request::<_, PriceQuote>("mem-price-requests", "k", PriceQuery { n: 3 })
        .timeout(Duration::from_millis(1))
        .await;
    assert!(
        matches!(reply, Err(RequestError::Timeout { .. })),
        "{reply:?}"
    );
    app.drain().await;
    assert_eq!(app.broker().records("mem-rr.replies").len(), 1);
    assert_eq!(app.replies().late(), 1);
    assert_eq!(app.replies().timeouts(), 1);
    // Both are metrics too (Prometheus and /actuator/metrics).
    let text = app.metrics().encode();
    assert!(
        text.contains(r#"mq_reply_late_total{application="mem-rr"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"mq_reply_timeouts_total{application="mem-rr"} 1"#),
        "{text}"
    );
}
