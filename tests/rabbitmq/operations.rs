//! Running: concurrency as lanes, the `rabbit` health component, recovery of a consumer,
//! the delivery limit of a message the process keeps failing on, lost connections.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use lapin::options::QueueDeleteOptions;
use mq_core::prelude::*;

use super::*;

// --- concurrency, health, recovery ---------------------------------------------------

static SPREAD: Mutex<Vec<(u32, i32)>> = Mutex::new(Vec::new());

#[listener(queue = "mq_t_spread", concurrency = 2)]
async fn on_spread(task: Task, ctx: Context) -> Result<(), HandlerError> {
    SPREAD.lock().unwrap().push((task.n, ctx.partition()));
    tokio::time::sleep(Duration::from_millis(2)).await;
    Ok(())
}

#[tokio::test]
async fn two_consumers_are_two_lanes_and_the_rabbit_health_component_is_up() {
    let (_c, ch) = channel().await;
    fresh(&ch, "mq_t_spread").await;
    let management =
        "management:\n  server:\n    port: 0\n  endpoint:\n    health:\n      show-details: always\n";
    let running = start_with("on_spread", "", management).await;
    let mut lanes: Vec<(String, i32)> = running
        .lanes()
        .into_iter()
        .map(|l| (l.topic, l.partition))
        .collect();
    lanes.sort();
    assert_eq!(
        lanes,
        vec![("mq_t_spread".to_owned(), 0), ("mq_t_spread".to_owned(), 1)]
    );
    let publisher = running.publisher();
    for n in 0..100 {
        publisher
            .send("amqp:///mq_t_spread", "k", Task { n })
            .await
            .unwrap();
    }
    wait_for("100 handled", || SPREAD.lock().unwrap().len() == 100).await;
    let seen = SPREAD.lock().unwrap().clone();
    let mut ns: Vec<u32> = seen.iter().map(|s| s.0).collect();
    ns.sort();
    assert_eq!(ns, (0..100).collect::<Vec<_>>(), "each once");
    assert!(
        seen.iter().any(|s| s.1 == 0) && seen.iter().any(|s| s.1 == 1),
        "both consumers took messages"
    );
    let addr = running.actuator_addr().unwrap();
    let health = support::http(addr, "GET", "/actuator/health/readiness", None, None).await;
    assert_eq!(health.status, 200, "{}", health.body);
    let json: serde_json::Value = serde_json::from_str(&health.body).unwrap();
    assert_eq!(json["components"]["rabbit"]["status"], "UP", "{json}");
    assert_eq!(
        json["components"]["rabbit"]["details"]["address"],
        "127.0.0.1:5672"
    );
    // The broker's version, as Spring Boot shows it (e.g. "3.10.8").
    let version = json["components"]["rabbit"]["details"]["version"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        version.split('.').count() >= 2
            && version.chars().next().is_some_and(|c| c.is_ascii_digit()),
        "{json}"
    );
    let listener = &json["components"]["listeners"]["components"]["on_spread"];
    assert_eq!(listener["status"], "UP", "{json}");
    assert_eq!(
        listener["details"]["queues"],
        serde_json::json!(["mq_t_spread"])
    );
    running.shutdown().await.unwrap();
}

static RECOVERED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

#[listener(queue = "mq_t_recover")]
async fn on_recover(task: Task) -> Result<(), HandlerError> {
    RECOVERED.lock().unwrap().push(task.n);
    Ok(())
}

#[tokio::test]
async fn a_consumer_whose_queue_vanished_redeclares_it_and_consumes_again() {
    let (_c, ch) = channel().await;
    fresh(&ch, "mq_t_recover").await;
    let running = start("on_recover", "").await;
    let publisher = running.publisher();
    publisher
        .send("amqp:///mq_t_recover", "k", Task { n: 1 })
        .await
        .unwrap();
    wait_for("the first handled", || RECOVERED.lock().unwrap().len() == 1).await;
    // RabbitMQ cancels the consumer of a deleted queue.
    ch.queue_delete("mq_t_recover".into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    // Until the consumer has declared the queue again, the message is unroutable: the
    // publish fails (mandatory) rather than dropping it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match publisher
            .send("amqp:///mq_t_recover", "k", Task { n: 2 })
            .await
        {
            Ok(_) => break,
            Err(e) => {
                assert!(e.to_string().contains("unroutable"), "{e}");
                assert!(tokio::time::Instant::now() < deadline, "never redeclared");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    wait_for("the second handled", || {
        RECOVERED.lock().unwrap().len() == 2
    })
    .await;
    running.shutdown().await.unwrap();
    assert_eq!(RECOVERED.lock().unwrap().as_slice(), &[1, 2]);
}

// --- a message that hangs its handler every time -------------------------------------

static HUNG: AtomicU32 = AtomicU32::new(0);

#[listener(queue = "mq_t_limit")]
async fn on_hang(_task: Task) -> Result<(), HandlerError> {
    HUNG.fetch_add(1, Ordering::SeqCst);
    std::future::pending::<()>().await;
    Ok(())
}

#[tokio::test]
async fn a_message_that_never_gets_acked_stops_coming_back_after_the_delivery_limit() {
    let (_c, ch) = channel().await;
    for q in ["mq_t_limit", "mq_t_limit.dlq"] {
        ch.queue_delete(q.into(), QueueDeleteOptions::default())
            .await
            .unwrap();
    }
    // A quorum queue with x-delivery-limit 1; each shutdown kills the hung handler after
    // 100 ms, so the message goes back unacked, as if the process had died on it.
    let yaml =
        "  rabbitmq:\n    listener:\n      delivery-limit: 1\n  shutdown:\n    timeout: 100ms\n";
    for cycle in 1..=2 {
        let running = start("on_hang", yaml).await;
        if cycle == 1 {
            running
                .publisher()
                .send("amqp:///mq_t_limit", "k", Task { n: 1 })
                .await
                .unwrap();
        }
        wait_for("the handler hangs", || HUNG.load(Ordering::SeqCst) == cycle).await;
        running.shutdown().await.unwrap();
    }
    // Returned twice with a limit of 1: RabbitMQ dead-letters it to mq.dlx → the DLQ.
    let mut dead = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while dead.is_empty() && tokio::time::Instant::now() < deadline {
        dead = drain(&ch, "mq_t_limit.dlq").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(dead.len(), 1);
    assert!(header(&dead[0].delivery.properties, "x-death").is_some());
    assert!(drain(&ch, "mq_t_limit").await.is_empty());
    assert_eq!(HUNG.load(Ordering::SeqCst), 2);
}

// --- a queue declared otherwise ------------------------------------------------------

#[listener(queue = "mq_t_inequivalent")]
async fn on_inequivalent(_task: Task) -> Result<(), HandlerError> {
    Ok(())
}

#[tokio::test]
async fn a_queue_that_exists_with_other_arguments_keeps_the_listener_unready_and_says_why() {
    let (_c, ch) = channel().await;
    // A classic queue; the app wants a quorum queue with a delivery limit.
    fresh(&ch, "mq_t_inequivalent").await;
    let yaml = "  rabbitmq:\n    listener:\n      delivery-limit: 3\n";
    let management =
        "management:\n  server:\n    port: 0\n  endpoint:\n    health:\n      show-details: always\n";
    let running = start_unchecked("on_inequivalent", yaml, management).await;
    assert!(!running.wait_assigned(Duration::from_secs(2)).await);
    let addr = running.actuator_addr().unwrap();
    let health = support::http(addr, "GET", "/actuator/health/readiness", None, None).await;
    assert_eq!(health.status, 503, "{}", health.body);
    for part in [
        "queue mq_t_inequivalent exists with other settings",
        "x-queue-type=quorum, x-delivery-limit=3",
        "PRECONDITION_FAILED",
    ] {
        assert!(health.body.contains(part), "{part} in {}", health.body);
    }
    running.shutdown().await.unwrap();
}

// --- the broker drops every connection mid-stream ------------------------------------

static SURVIVED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

#[listener(queue = "mq_t_conn_loss")]
async fn on_conn_loss(task: Task) -> Result<(), HandlerError> {
    SURVIVED.lock().unwrap().push(task.n);
    tokio::time::sleep(Duration::from_micros(200)).await;
    Ok(())
}

fn rabbitmqctl(args: &[&str]) -> String {
    let (status, stdout, stderr) = run_tool(
        std::process::Command::new("rabbitmqctl").args(args),
        &format!("rabbitmqctl {args:?} (installed with rabbitmq-server)"),
    );
    assert!(status.success(), "{stderr}");
    stdout
}

/// Has RabbitMQ close the connections of `application` (as a broker restart or a network
/// cut would), leaving the other tests' connections alone.
pub(super) async fn close_connections_of(application: &'static str) {
    tokio::task::spawn_blocking(move || {
        let listing = rabbitmqctl(&["list_connections", "-q", "pid", "client_properties"]);
        let pids: Vec<&str> = listing
            .lines()
            .filter(|l| l.contains(application))
            .filter_map(|l| l.split('\t').next())
            .collect();
        assert!(
            !pids.is_empty(),
            "no connection of {application} in {listing}"
        );
        for pid in pids {
            rabbitmqctl(&["close_connection", pid, "mq test: connection loss"]);
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn connections_lost_mid_stream_lose_nothing_the_broker_confirmed() {
    let (_c, ch) = channel().await;
    fresh(&ch, "mq_t_conn_loss").await;
    let management = "management:\n  server:\n    enabled: false\n";
    let running = start_named("rabbit-conn-loss", "on_conn_loss", "", management).await;
    assert!(running.wait_assigned(Duration::from_secs(20)).await);
    let publisher = running.publisher();
    let total = 2_000u32;
    for n in 0..total {
        if n == total / 2 {
            close_connections_of("rabbit-conn-loss").await;
        }
        // A publish that fails while the connection is away is sent again: every one of
        // them is confirmed by the broker in the end.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while let Err(e) = publisher
            .send("amqp:///mq_t_conn_loss", "k", Task { n })
            .await
        {
            assert!(tokio::time::Instant::now() < deadline, "{e}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    wait_for("every confirmed message handled", || {
        let seen = SURVIVED.lock().unwrap();
        let distinct: std::collections::BTreeSet<u32> = seen.iter().copied().collect();
        distinct.len() == total as usize
    })
    .await;
    assert!(
        running.wait_assigned(Duration::from_secs(20)).await,
        "the consumer is back"
    );
    running.shutdown().await.unwrap();
    assert!(
        drain(&ch, "mq_t_conn_loss").await.is_empty(),
        "all acked in the end"
    );
    // Shutdown closed the app's connection, though a publisher handle is still held here.
    let listing = tokio::task::spawn_blocking(|| {
        rabbitmqctl(&["list_connections", "-q", "pid", "client_properties"])
    })
    .await
    .unwrap();
    assert!(!listing.contains("rabbit-conn-loss"), "{listing}");
    drop(publisher);
}
