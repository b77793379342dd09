//! KIP-848, the next-generation consumer group protocol (`group.protocol: consumer`), on
//! librdkafka's mock cluster, which serves it (`ConsumerGroupHeartbeat`; the bundled
//! librdkafka 2.12 speaks it). nisshi, the real broker of the other tests, does not serve
//! it, so this is proven on the mock only. Two instances of one group share a topic's
//! partitions through incremental assignments into the lanes; a record is handled once
//! while the second instance joins and while it leaves; settings the protocol moves to the
//! broker are refused at startup, naming the key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mq_core::handler::State;
use mq_core::prelude::*;
use mq_core::App;
use rdkafka::mocking::MockCluster;

const PARTITIONS: i32 = 4;

#[derive(Debug, Serialize, Deserialize)]
struct Job {
    n: u32,
}

/// Handled records, by (partition, offset), with how often each was handled.
#[derive(Clone, Default)]
struct Handled(Arc<Mutex<HashMap<(i32, i64), u32>>>);

impl Handled {
    fn distinct(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn twice(&self) -> usize {
        self.0.lock().unwrap().values().filter(|n| **n > 1).count()
    }
}

#[listener(topic = "kip848-jobs", group = "kip848-group")]
async fn on_kip848(
    job: Job,
    ctx: Context,
    State(seen): State<Handled>,
) -> Result<(), HandlerError> {
    let _ = job;
    *seen
        .0
        .lock()
        .unwrap()
        .entry((ctx.partition(), ctx.offset()))
        .or_default() += 1;
    Ok(())
}

/// The tests' usual configuration without its classic-protocol session settings.
fn config(bootstrap: &str) -> mq_core::Config {
    mq_core::Config::from_yaml_str(&format!(
        "mq:\n  application:\n    name: mq-tests\n  kafka:\n    bootstrap-servers: \"{bootstrap}\"\n    admin:\n      auto-create-topics: false\n    consumer:\n      properties:\n        group.protocol: consumer\n  shutdown:\n    timeout: 10s\nmanagement:\n  server:\n    port: 0\n"
    ))
    .expect("valid")
}

async fn start(bootstrap: &str, seen: &Handled) -> mq_core::RunningApp {
    App::new(config(bootstrap))
        .with_state(seen.clone())
        .only_listeners(["on_kip848"])
        .start()
        .await
        .expect("starts with group.protocol: consumer")
}

fn partitions(app: &mq_core::RunningApp) -> usize {
    app.assigned_partitions().iter().map(|(_, n)| n).sum()
}

async fn until(what: &str, limit: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn send(app: &mq_core::RunningApp, from: u32, to: u32) {
    for n in from..to {
        app.publisher()
            .send("kip848-jobs", format!("key-{n}"), Job { n })
            .await
            .expect("sent");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_the_partitions_incrementally_and_handle_each_record_once() {
    let cluster = MockCluster::new(1).unwrap();
    let bootstrap = cluster.bootstrap_servers();
    cluster.create_topic("kip848-jobs", PARTITIONS, 1).unwrap();
    cluster
        .create_topic("kip848-jobs-dlt", PARTITIONS, 1)
        .unwrap();
    let seen = Handled::default();

    let first = start(&bootstrap, &seen).await;
    until(
        "the first instance owns every partition",
        Duration::from_secs(60),
        || partitions(&first) == PARTITIONS as usize,
    )
    .await;
    send(&first, 0, 200).await;
    until("200 handled", Duration::from_secs(60), || {
        seen.distinct() == 200
    })
    .await;

    // A second member joins: the group splits the partitions between the two, and records
    // sent meanwhile are each handled once.
    let second = start(&bootstrap, &seen).await;
    send(&first, 200, 400).await;
    until(
        "the partitions split between the two",
        Duration::from_secs(90),
        || {
            let (a, b) = (partitions(&first), partitions(&second));
            a > 0 && b > 0 && a + b == PARTITIONS as usize
        },
    )
    .await;
    send(&first, 400, 600).await;
    until("600 handled", Duration::from_secs(60), || {
        seen.distinct() == 600
    })
    .await;
    assert!(
        second.rebalances() > 0 && first.rebalances() > 1,
        "incremental assignments reached the lanes"
    );

    // The second leaves (graceful stop): the first takes its partitions back.
    second.shutdown().await.expect("clean shutdown");
    until(
        "the first owns every partition again",
        Duration::from_secs(90),
        || partitions(&first) == PARTITIONS as usize,
    )
    .await;
    send(&first, 600, 800).await;
    until("800 handled", Duration::from_secs(60), || {
        seen.distinct() == 800
    })
    .await;
    // At-least-once: a graceful hand-over commits before it revokes, so none came twice.
    assert_eq!(
        seen.twice(),
        0,
        "records handled twice across the hand-overs"
    );
    first.shutdown().await.expect("clean shutdown");
    drop(cluster);
}

#[test]
fn settings_the_consumer_protocol_moves_to_the_broker_are_refused_at_startup() {
    for (key, value) in [
        ("session.timeout.ms", "10000"),
        ("heartbeat.interval.ms", "1000"),
        ("partition.assignment.strategy", "cooperative-sticky"),
        ("group.protocol.type", "consumer"),
    ] {
        let yaml = format!(
            "mq:\n  kafka:\n    bootstrap-servers: 127.0.0.1:1\n    consumer:\n      properties:\n        group.protocol: consumer\n        {key}: \"{value}\"\nmanagement:\n  server:\n    enabled: false\n"
        );
        // Refused when the configuration is read, before any connection.
        let err = mq_core::Config::from_yaml_str(&yaml)
            .err()
            .unwrap_or_else(|| panic!("{key} with group.protocol: consumer must be refused"))
            .to_string();
        assert!(
            err.contains(&format!("mq.kafka.consumer.properties.{key}")),
            "names the key: {err}"
        );
        assert!(err.contains("group.protocol"), "names the reason: {err}");
    }
}
