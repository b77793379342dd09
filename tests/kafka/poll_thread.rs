//! The poll loop runs on a thread of its own: handlers that block every runtime thread
//! (synchronous I/O, a `std::thread::sleep`, a CPU-bound loop) for longer than
//! `max.poll.interval.ms` do not cost the consumer its group membership, so their
//! partitions are not taken away and their records are not run twice.

use crate::support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mq_core::prelude::*;
use mq_core::App;
use rdkafka::producer::FutureRecord;
use support::{config, create_topic, raw_producer, unique};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Task {
    id: u64,
    block_ms: u64,
}

/// How many times each task id was handled.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<HashMap<u64, usize>>>);

#[listener(topic = "poll-thread-blocking")]
async fn on_blocking_task(task: Task, State(seen): State<Seen>) -> Result<(), HandlerError> {
    // Blocks the runtime thread it runs on: what a handler calling a synchronous client
    // does.
    std::thread::sleep(Duration::from_millis(task.block_ms));
    *seen.0.lock().unwrap().entry(task.id).or_default() += 1;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handlers_blocking_every_runtime_thread_past_the_poll_interval_keep_their_partitions() {
    let topic = unique("poll-thread");
    create_topic(&topic, 2).await;
    // The shortest poll interval librdkafka allows with the tests' 6 s session timeout.
    let yaml = format!(
        "mq:\n  kafka:\n    consumer:\n      properties:\n        max.poll.interval.ms: 6000\n  listeners:\n    on_blocking_task:\n      topics: [\"{topic}\"]\n      group: \"{}\"\n",
        unique("poll-thread-group")
    );
    let seen = Seen::default();
    let app = App::new(config(&yaml))
        .with_state(seen.clone())
        .only_listeners(["on_blocking_task"])
        .start()
        .await
        .expect("app starts");
    assert!(app.wait_assigned(Duration::from_secs(30)).await, "assigned");
    let epochs = |app: &mq_core::RunningApp| {
        let mut e: Vec<(i32, u64)> = app.lanes().iter().map(|l| (l.partition, l.epoch)).collect();
        e.sort();
        e
    };
    let before = epochs(&app);
    assert_eq!(before.len(), 2, "both partitions assigned: {before:?}");

    // One record per partition blocks its thread for 8 s: both runtime threads at once,
    // past the 6 s poll interval. Then a few quick ones behind each.
    let producer = raw_producer();
    let mut id = 0;
    for partition in 0..2 {
        for n in 0..4 {
            id += 1;
            let task = Task {
                id,
                block_ms: if n == 0 { 8_000 } else { 10 },
            };
            let value = serde_json::to_vec(&task).unwrap();
            producer
                .send(
                    FutureRecord::<(), _>::to(&topic)
                        .partition(partition)
                        .payload(&value),
                    Duration::from_secs(10),
                )
                .await
                .expect("produced");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.0.lock().unwrap().len() < id as usize && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let handled = seen.0.lock().unwrap().clone();
    assert_eq!(
        handled.len(),
        id as usize,
        "every task handled: {handled:?}"
    );
    assert!(
        handled.values().all(|n| *n == 1),
        "no task handled twice (a lost membership re-delivers): {handled:?}"
    );
    assert_eq!(
        epochs(&app),
        before,
        "the lanes were never closed and reopened: the member kept its partitions"
    );
    app.shutdown().await.expect("clean shutdown");
}

#[listener(topic = "poll-thread-gone")]
async fn rt_gone_listener(task: Task) -> Result<(), HandlerError> {
    let _ = task;
    Ok(())
}

/// Threads of this process whose name starts with `prefix` (Linux truncates names to 15
/// bytes: `mq-poll-` and the listener's first 7).
fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

/// An app whose runtime is dropped without `shutdown` (a test that returns early, a
/// `main` that panics): the poll thread stops instead of polling, and rebalancing into
/// lanes, for ever.
#[test]
fn the_poll_thread_ends_when_the_runtime_is_dropped_without_shutdown() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let app = rt.block_on(async {
        let topic = unique("poll-thread-gone");
        create_topic(&topic, 1).await;
        let yaml = format!(
            "mq:\n  listeners:\n    rt_gone_listener:\n      topics: [\"{topic}\"]\n      group: \"{}\"\n",
            unique("poll-thread-gone-group")
        );
        let app = App::new(config(&yaml))
            .only_listeners(["rt_gone_listener"])
            .start()
            .await
            .expect("app starts");
        assert!(app.wait_assigned(Duration::from_secs(30)).await, "assigned");
        app
    });
    assert_eq!(threads_named("mq-poll-rt_gone"), 1, "the poll thread runs");
    drop(rt);
    let deadline = Instant::now() + Duration::from_secs(10);
    while threads_named("mq-poll-rt_gone") > 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        threads_named("mq-poll-rt_gone"),
        0,
        "the poll thread ended with its runtime"
    );
    drop(app);
}
