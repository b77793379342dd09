//! A queue listener answering requests (`Reply<T>`) to a client nobody here wrote: pika
//! with direct reply-to (`reply_to: amq.rabbitmq.reply-to`, `correlation_id`), the way the
//! RabbitMQ RPC tutorial and Spring AMQP's `convertSendAndReceive` ask.
//!
//! And mq's own requests over direct reply-to: answered by mq's responder (1000 at once)
//! and by a pika responder that answers as a Spring `@RabbitListener` does.
//!
//! Needs `python3` with `pika` (scripts/test.sh installs it).

use std::future::IntoFuture;

use mq_core::handler::Reply;

use super::*;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/pika_requester.py");
const RESPONDER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/pika_responder.py");

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Doubled {
    n: u32,
    twice: u32,
}

#[listener(queue = "mq_t_rpc")]
async fn on_rpc(task: Task) -> Result<Reply<Doubled>, HandlerError> {
    Ok(Reply::new(Doubled {
        n: task.n,
        twice: task.n * 2,
    }))
}

#[tokio::test]
async fn a_pika_requester_with_direct_reply_to_gets_each_reply() {
    let (_c, ch) = channel().await;
    fresh(&ch, "mq_t_rpc").await;
    let running = start("on_rpc", "").await;
    let lines = support::python(
        SCRIPT,
        &["--queue", "mq_t_rpc", "--count", "5", "--timeout", "60"],
        "scripts/test.sh installs pika",
    )
    .await;
    assert_eq!(lines.len(), 5, "{lines:?}");
    for line in &lines {
        assert_eq!(line["matched"], true, "{line}");
        let n = line["n"].as_u64().unwrap();
        assert_eq!(
            line["data"],
            serde_json::json!({"n": n, "twice": 2 * n}),
            "{line}"
        );
    }
    running.shutdown().await.unwrap();
}

/// The requesting app: a RabbitMQ-only service (its one listener reads a queue of its own,
/// so Kafka, which points nowhere, is never connected).
async fn requester() -> mq_core::RunningApp {
    start_named(
        "rabbit-requester",
        "on_rpc_idle",
        "",
        "management:\n  server:\n    enabled: false\n",
    )
    .await
}

#[listener(queue = "mq_t_rpc_idle")]
async fn on_rpc_idle(_task: Task) -> Result<(), HandlerError> {
    Ok(())
}

#[tokio::test]
async fn a_thousand_concurrent_requests_over_direct_reply_to_each_get_their_own_reply() {
    let (_c, ch) = channel().await;
    fresh(&ch, "mq_t_rpc_mq").await;
    let responder = start("on_rpc_mq", "").await;
    let requester = requester().await;
    ask_doubled(
        &requester,
        "amqp:///mq_t_rpc_mq",
        1000,
        Duration::from_secs(120),
    )
    .await;
    requester.shutdown().await.unwrap();
    responder.shutdown().await.unwrap();
}

/// Sends `count` requests `{"n": i}` to `destination` at once; each must get its own
/// reply, `i` doubled.
async fn ask_doubled(
    requester: &mq_core::RunningApp,
    destination: &str,
    count: u32,
    timeout: Duration,
) {
    let publisher = requester.publisher();
    let requests = (0..count).map(|n| {
        publisher
            .request::<_, Doubled>(destination, n.to_string(), Task { n })
            .timeout(timeout)
            .into_future()
    });
    let replies = futures::future::join_all(requests).await;
    for (n, reply) in replies.into_iter().enumerate() {
        let reply = reply.unwrap_or_else(|e| panic!("request {n}: {e}"));
        assert_eq!((reply.data.n, reply.data.twice), (n as u32, 2 * n as u32));
    }
}

#[listener(queue = "mq_t_rpc_mq")]
async fn on_rpc_mq(task: Task) -> Result<Reply<Doubled>, HandlerError> {
    Ok(Reply::new(Doubled {
        n: task.n,
        twice: task.n * 2,
    }))
}

#[tokio::test]
async fn mqs_requests_are_answered_by_a_pika_responder() {
    let (_c, ch) = channel().await;
    fresh(&ch, "mq_t_rpc_py").await;
    let responder = support::python(
        RESPONDER,
        &["--queue", "mq_t_rpc_py", "--count", "5", "--timeout", "60"],
        "scripts/test.sh installs pika",
    );
    let requester = requester().await;
    // The plain JSON reply reads as an event whose data is the body.
    ask_doubled(
        &requester,
        "amqp:///mq_t_rpc_py",
        5,
        Duration::from_secs(60),
    )
    .await;
    // It answered every request and ended well (the helper checks its exit status).
    responder.await;
    requester.shutdown().await.unwrap();
}

#[listener(queue = "mq_t_rpc_failing")]
async fn on_rpc_failing(_task: Task) -> Result<Reply<Doubled>, HandlerError> {
    Err(HandlerError::permanent_msg("no answer for you"))
}

#[tokio::test]
async fn no_responder_and_a_failing_responder_end_in_a_timeout() {
    let (_c, ch) = channel().await;
    fresh(&ch, "mq_t_rpc_nobody").await;
    fresh(&ch, "mq_t_rpc_failing").await;
    let responder = start("on_rpc_failing", "").await;
    let requester = requester().await;
    let publisher = requester.publisher();
    let timeout = Duration::from_secs(2);
    for queue in ["mq_t_rpc_nobody", "mq_t_rpc_failing"] {
        let destination = format!("amqp:///{queue}");
        let started = std::time::Instant::now();
        let reply = publisher
            .request::<_, Doubled>(&destination, "k", Task { n: 1 })
            .timeout(timeout)
            .await;
        match reply {
            Err(mq_core::publisher::RequestError::Timeout { after, .. }) => {
                assert_eq!(after, timeout)
            }
            other => panic!("{queue}: {other:?}"),
        }
        assert!(started.elapsed() >= timeout, "{queue}");
    }
    // The failing responder's request is in its dead-letter queue; the unanswered one
    // waits in its queue.
    assert_eq!(take_at_least(&ch, "mq_t_rpc_failing.dlq", 1).await.len(), 1);
    assert_eq!(take_at_least(&ch, "mq_t_rpc_nobody", 1).await.len(), 1);
    requester.shutdown().await.unwrap();
    responder.shutdown().await.unwrap();
}
