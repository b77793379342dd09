//! Past one machine: a three-node RabbitMQ cluster (`scripts/rabbit-cluster.sh`: nodes
//! mqc1–mqc3 on 127.0.0.1:5681–5683, beside the machine's broker). A node stopped under a
//! listener, then a quorum queue's leader stopped, while messages flow; and a memory alarm
//! that blocks publishers while the consumers go on acknowledging. The alarm is cluster
//! wide, and the nodes are stopped: the tests here take turns ([`CLUSTER`]).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use mq_core::prelude::*;

use super::{support, Task};

/// One test on the cluster at a time.
static CLUSTER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Runs `scripts/rabbit-cluster.sh args` (on a blocking thread, at most
/// [`super::TOOL_WAIT`]) and returns what it printed.
async fn cluster(args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/rabbit-cluster.sh");
        let (status, stdout, stderr) = super::run_tool(
            std::process::Command::new(script).args(&args),
            &format!("scripts/rabbit-cluster.sh {args:?}"),
        );
        assert!(
            status.success(),
            "rabbit-cluster.sh {args:?}: {stdout}{stderr}"
        );
        stdout
    })
    .await
    .unwrap()
}

/// A channel on node `n` (1–3).
async fn channel_on(n: u16) -> (Connection, Channel) {
    let uri = format!("amqp://guest:guest@127.0.0.1:{}/%2f", 5680 + n);
    let c = Connection::connect(&uri, ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| panic!("cluster node {n} (scripts/rabbit-cluster.sh): {e}"));
    let ch = c.create_channel().await.unwrap();
    (c, ch)
}

/// `queue`'s row of `list_queues name leader online messages` on node `n`.
async fn queue_row(n: u16, queue: &str) -> Vec<String> {
    let node = n.to_string();
    let listing = cluster(&[
        "ctl",
        &node,
        "list_queues",
        "-q",
        "name",
        "leader",
        "online",
        "messages",
    ])
    .await;
    listing
        .lines()
        .map(|l| l.split('\t').map(str::to_owned).collect::<Vec<_>>())
        .find(|row| row.first().map(String::as_str) == Some(queue))
        .unwrap_or_else(|| panic!("no {queue} in {listing}"))
}

async fn health(running: &mq_core::RunningApp) -> serde_json::Value {
    let addr = running.actuator_addr().unwrap();
    let health = support::http(addr, "GET", "/actuator/health", None, None).await;
    serde_json::from_str(&health.body).unwrap()
}

/// Asks `done` every 100 ms until it says true; fails naming `what` after `secs` seconds.
async fn until<F: std::future::Future<Output = bool>>(
    what: &str,
    secs: u64,
    mut done: impl FnMut() -> F,
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !done().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The app's view: the node its connection goes to, and its listener's status.
async fn view(running: &mq_core::RunningApp, listener: &str) -> (String, String) {
    let json = health(running).await;
    let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
    let address = text(&json["components"]["rabbit"]["details"]["address"]);
    let status = text(&json["components"]["listeners"]["components"][listener]["status"]);
    (address, status)
}

// --- nodes stopped under a listener ----------------------------------------------------

static FAILOVER: Mutex<Vec<u32>> = Mutex::new(Vec::new());

#[listener(queue = "mq_t_cluster")]
async fn on_cluster(task: Task) -> Result<(), HandlerError> {
    FAILOVER.lock().unwrap().push(task.n);
    tokio::time::sleep(Duration::from_millis(1)).await;
    Ok(())
}

/// Publishes `{"n":..}` to `queue` from node 3 (never stopped) until `stop`, each message
/// confirmed before the next (one that fails or is nacked is published again, and may
/// then come twice). Returns how many went out.
fn publish_until(
    queue: &'static str,
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU32>,
) -> tokio::task::JoinHandle<u32> {
    tokio::spawn(async move {
        let open = || async {
            let (c, ch) = channel_on(3).await;
            ch.confirm_select(ConfirmSelectOptions::default()).await?;
            Ok::<_, lapin::Error>((c, ch))
        };
        let (mut _connection, mut ch) = open().await.unwrap();
        let mut n = 0u32;
        while !stop.load(Ordering::Relaxed) {
            let body = format!(r#"{{"n":{n}}}"#);
            let published = async {
                ch.basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    body.as_bytes(),
                    BasicProperties::default().with_delivery_mode(2),
                )
                .await?
                .await
            };
            match published.await {
                Ok(c) if c.is_ack() => {
                    n += 1;
                    sent.store(n, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                _ => {
                    // A leader election under way: a new channel, and the same message.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    if let Ok((c, fresh)) = open().await {
                        (_connection, ch) = (c, fresh);
                    }
                }
            }
        }
        n
    })
}

/// Waits until the app's listener is UP on a connection to `address` and has handled a
/// message numbered `first_new` or above (published after the outage began); returns how
/// long that took since `started` and the views health gave on the way.
async fn recovery(
    running: &mq_core::RunningApp,
    address: &str,
    first_new: u32,
    started: Instant,
) -> (Duration, Vec<(String, String)>) {
    let mut seen: Vec<(String, String)> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v = view(running, "on_cluster").await;
        if seen.last() != Some(&v) {
            seen.push(v.clone());
        }
        let new = FAILOVER.lock().unwrap().iter().any(|n| *n >= first_new);
        if v.0 == address && v.1 == "UP" && new {
            return (started.elapsed(), seen);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no recovery onto {address}: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn sent_at_least(sent: &AtomicU32, n: u32) {
    until("publisher stuck", 60, || async {
        sent.load(Ordering::Relaxed) >= n
    })
    .await;
}

#[tokio::test]
async fn a_listener_survives_its_node_and_the_quorum_leader_stopping_and_loses_nothing() {
    let _turn = CLUSTER.lock().await;
    cluster(&["start"]).await;
    let queue = "mq_t_cluster";
    {
        let (_c, ch) = channel_on(1).await;
        for q in [queue.to_owned(), format!("{queue}.dlq")] {
            ch.queue_delete(q.as_str().into(), QueueDeleteOptions::default())
                .await
                .unwrap();
        }
        // Declared on node 1: its leader is there (RabbitMQ 3.10 places it client-local).
        let mut args = FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            AMQPValue::LongString("quorum".into()),
        );
        let durable = lapin::options::QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        ch.queue_declare(queue.into(), durable, args).await.unwrap();
    }
    assert_eq!(queue_row(3, queue).await[1], "mqc1@localhost", "the leader");
    // Node 2 first, then node 3, then node 1 (the leader's).
    let yaml = "  rabbitmq:\n    addresses: [127.0.0.1:5682, 127.0.0.1:5683, 127.0.0.1:5681]\n";
    let management =
        "management:\n  server:\n    port: 0\n  endpoint:\n    health:\n      show-details: always\n";
    let running = super::start_named("rabbit-cluster", "on_cluster", yaml, management).await;
    assert!(running.wait_assigned(Duration::from_secs(30)).await);
    assert_eq!(
        view(&running, "on_cluster").await,
        ("127.0.0.1:5682".to_owned(), "UP".to_owned())
    );
    // The dead letters of a quorum queue go to a quorum queue: they outlive a node too.
    let kinds = cluster(&["ctl", "3", "list_queues", "-q", "name", "type"]).await;
    assert!(
        kinds.lines().any(|l| l == "mq_t_cluster.dlq\tquorum"),
        "{kinds}"
    );

    let (stop, sent) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicU32::new(0)),
    );
    let publisher = publish_until(queue, stop.clone(), sent.clone());

    // 1. The node the service is connected to stops.
    sent_at_least(&sent, 500).await;
    let started = Instant::now();
    cluster(&["ctl", "2", "stop_app"]).await;
    let first_new = sent.load(Ordering::Relaxed);
    let (node_outage, node_views) = recovery(&running, "127.0.0.1:5683", first_new, started).await;
    cluster(&["ctl", "2", "start_app"]).await;
    // Back in the queue's membership before the next node goes.
    until("node 2 never rejoined", 60, || async {
        queue_row(3, queue).await[2].contains("mqc2@localhost")
    })
    .await;

    // 2. The queue's leader stops (the service stays connected to node 3).
    let before = sent.load(Ordering::Relaxed);
    sent_at_least(&sent, before + 500).await;
    let started = Instant::now();
    cluster(&["ctl", "1", "stop_app"]).await;
    let first_new = sent.load(Ordering::Relaxed);
    let (leader_outage, leader_views) =
        recovery(&running, "127.0.0.1:5683", first_new, started).await;
    let leader = queue_row(3, queue).await[1].clone();
    assert_ne!(leader, "mqc1@localhost", "a new leader");
    cluster(&["ctl", "1", "start_app"]).await;

    let before = sent.load(Ordering::Relaxed);
    sent_at_least(&sent, before + 300).await;
    stop.store(true, Ordering::Relaxed);
    let total = tokio::time::timeout(Duration::from_secs(60), publisher)
        .await
        .expect("the publisher did not stop within 60 s (a publish never confirmed)")
        .unwrap();
    super::wait_for("every confirmed message handled", || {
        let seen = FAILOVER.lock().unwrap();
        let distinct: std::collections::BTreeSet<u32> = seen.iter().copied().collect();
        distinct.len() == total as usize
    })
    .await;
    // What comes again (an ack the stopped node never passed on, a message the publisher
    // sent twice) is handled again, then the queue is empty: everything acknowledged.
    until("messages left unacknowledged", 60, || async {
        queue_row(3, queue).await[3] == "0"
    })
    .await;
    running.shutdown().await.unwrap();
    let seen = FAILOVER.lock().unwrap().clone();
    let distinct: std::collections::BTreeSet<u32> = seen.iter().copied().collect();
    assert_eq!(distinct, (0..total).collect(), "every message, none other");
    eprintln!(
        "cluster: {total} messages, {} handled twice or more; node 2 stopped: \
         on node 3 and handling again after {node_outage:?} (health: {node_views:?}); \
         leader node 1 stopped: handling again after {leader_outage:?} with leader \
         {leader} (health: {leader_views:?})",
        seen.len() - distinct.len()
    );
}

// --- a memory alarm ------------------------------------------------------------------

static ALARMED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

#[listener(queue = "mq_t_alarm")]
async fn on_alarm(task: Task) -> Result<(), HandlerError> {
    ALARMED.lock().unwrap().push(task.n);
    Ok(())
}

/// A memory alarm on node 1 (`set_vm_memory_high_watermark 0`), which blocks every
/// publishing connection of the cluster; lifted when dropped, however the test ends.
struct Alarm;

impl Alarm {
    async fn raise() -> Alarm {
        cluster(&["ctl", "1", "set_vm_memory_high_watermark", "0"]).await;
        until("no memory alarm", 30, || async {
            cluster(&["ctl", "1", "eval", "rabbit_alarm:get_alarms()."])
                .await
                .contains("memory")
        })
        .await;
        Alarm
    }
}

impl Drop for Alarm {
    fn drop(&mut self) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/rabbit-cluster.sh");
        let _ = super::run_tool(
            std::process::Command::new(script).args([
                "ctl",
                "1",
                "set_vm_memory_high_watermark",
                "0.4",
            ]),
            "lifting the memory alarm (rabbit-cluster.sh ctl 1 set_vm_memory_high_watermark 0.4)",
        );
    }
}

#[tokio::test]
async fn under_a_memory_alarm_consumers_ack_publishes_wait_and_health_says_blocked() {
    let _turn = CLUSTER.lock().await;
    cluster(&["start"]).await;
    let (_c, ch) = channel_on(1).await;
    for q in ["mq_t_alarm", "mq_t_alarm.dlq", "mq_t_alarm_out"] {
        ch.queue_delete(q.into(), QueueDeleteOptions::default())
            .await
            .unwrap();
    }
    let durable = lapin::options::QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    for q in ["mq_t_alarm", "mq_t_alarm_out"] {
        ch.queue_declare(q.into(), durable, FieldTable::default())
            .await
            .unwrap();
    }
    for n in 0..100u32 {
        let body = format!(r#"{{"n":{n}}}"#);
        super::publish_raw(
            &ch,
            "mq_t_alarm",
            body.as_bytes(),
            BasicProperties::default(),
        )
        .await;
    }
    let alarm = Alarm::raise().await;

    let yaml = "  rabbitmq:\n    addresses: [127.0.0.1:5681]\n    publisher:\n      confirm-timeout: 10m\n";
    let management =
        "management:\n  server:\n    port: 0\n  endpoint:\n    health:\n      show-details: always\n";
    let running = super::start_named("rabbit-alarm", "on_alarm", yaml, management).await;
    assert!(running.wait_assigned(Duration::from_secs(30)).await);
    let publisher = running.publisher();
    let blocked_send = tokio::spawn(async move {
        publisher
            .send("amqp:///mq_t_alarm_out", "k", Task { n: 1_000 })
            .await
    });

    // The consumers' connection publishes nothing: the broker leaves it alone, and every
    // message is handled and acknowledged during the alarm.
    super::wait_for("100 handled", || ALARMED.lock().unwrap().len() >= 100).await;
    until("acks held back", 30, || async {
        queue_row(1, "mq_t_alarm").await[3] == "0"
    })
    .await;
    // The publishing connection is blocked: health says so, with the broker's reason.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let json = loop {
        let json = health(&running).await;
        if json["components"]["publisher"]["status"] == "DOWN" {
            break json;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "not blocked: {json}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let reason = json["components"]["publisher"]["details"]["blocked"].clone();
    assert!(
        reason.as_str().is_some_and(|r| r.contains("memory")),
        "{json}"
    );
    let rabbit = &json["components"]["rabbit"];
    assert_eq!(rabbit["status"], "UP", "consumers work: {json}");
    assert_eq!(rabbit["details"]["blocked"]["publisher"], reason, "{json}");
    assert!(
        rabbit["details"]["blocked"].get("consumers").is_none(),
        "{json}"
    );
    assert!(!blocked_send.is_finished(), "a blocked publish waits");

    // With a short confirm timeout, a publish under the alarm fails as transient (the
    // broker may still take it once the alarm lifts: at least once).
    let yaml = "mq:\n  application:\n    name: rabbit-alarm-timeout\n  kafka:\n    bootstrap-servers: 127.0.0.1:1\n  rabbitmq:\n    addresses: [127.0.0.1:5681]\n    publisher:\n      confirm-timeout: 1s\nmanagement:\n  server:\n    enabled: false\n";
    let impatient = mq_core::App::new(mq_core::Config::from_yaml_str(yaml).unwrap())
        .only_listeners(Vec::<String>::new())
        .start()
        .await
        .unwrap();
    let error = impatient
        .publisher()
        .send("amqp:///mq_t_alarm_out", "k", Task { n: 2_000 })
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("mq.rabbitmq.publisher.confirm-timeout"),
        "{error}"
    );
    impatient.shutdown().await.unwrap();

    // The alarm lifts: the waiting publish is confirmed, health is UP again.
    drop(alarm);
    tokio::time::timeout(Duration::from_secs(60), blocked_send)
        .await
        .expect("the blocked publish went out after the alarm")
        .unwrap()
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let json = health(&running).await;
        let publisher = &json["components"]["publisher"];
        let rabbit = &json["components"]["rabbit"]["details"];
        if publisher["status"] == "UP" && rabbit.get("blocked").is_none() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "still blocked: {json}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let out = super::take_at_least(&ch, "mq_t_alarm_out", 1).await;
    let numbers: Vec<serde_json::Value> = out
        .iter()
        .map(|m| {
            let body: serde_json::Value = serde_json::from_slice(&m.delivery.data).unwrap();
            body["data"]["n"].clone()
        })
        .collect();
    assert!(
        numbers.contains(&1_000.into()),
        "the waiting publish arrived: {numbers:?}"
    );
    running.shutdown().await.unwrap();
    let mut handled = ALARMED.lock().unwrap().clone();
    handled.sort();
    handled.dedup();
    assert_eq!(handled, (0..100).collect::<Vec<_>>());
}
