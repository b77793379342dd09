//! The lane invariants without a broker: a partition's next lane waits for its previous
//! one, a killed lane commits nothing more, key order commits only the contiguous prefix.

use std::sync::atomic::{AtomicUsize, Ordering as AtomicOrdering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;

use super::flow::Valve;
use super::{LaneKey, LaneSet, LaneSettings, LaneSource, Ordering};
use crate::handler::invocation::{Failure, Invocation};
use crate::pipeline::{Disposition, ListenerRuntime};
use crate::record::Record;
use crate::registry::ListenerSpec;

/// What a test's source saw.
#[derive(Default)]
struct Recorder {
    commits: Mutex<Vec<i64>>,
    finished: AtomicUsize,
}

impl Valve for Recorder {
    fn pause(&self) {}
    fn resume(&self) {}
}

impl LaneSource for Recorder {
    fn commit_through(&self, offset: i64) {
        self.commits.lock().unwrap().push(offset);
    }
    fn finished(&self, _: Disposition) {
        self.finished.fetch_add(1, AtomicOrdering::SeqCst);
    }
}

fn spec(name: &'static str, handler: crate::registry::HandlerFn) -> ListenerSpec {
    ListenerSpec {
        name,
        topics: vec!["t".into()],
        queues: Vec::new(),
        bindings: Vec::new(),
        group: "g".into(),
        concurrency: 1,
        retry: Default::default(),
        dlt: Default::default(),
        auto_startup: true,
        ordering: Ordering::Partition,
        max_in_flight: 8,
        handler_warn_after: Duration::from_secs(60),
        handler_timeout: None,
        share_group: false,
        idempotent: false,
        handler,
    }
}

fn lanes(spec: ListenerSpec, settings: LaneSettings) -> LaneSet {
    let metrics = Arc::new(crate::metrics::Metrics::new(Vec::new()));
    let runtime = Arc::new(ListenerRuntime::new(
        spec,
        crate::publisher::CapturingSink::default().publisher("/t"),
        Default::default(),
        Default::default(),
        &metrics,
        Arc::new(crate::failure::routes::TestRoutes),
    ));
    LaneSet::new(runtime, settings, tokio::runtime::Handle::current())
}

/// Waits (up to 5 s) until `done` holds.
async fn eventually(done: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !done() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn record(offset: i64, key: &str) -> Arc<Record> {
    Arc::new(Record::new(
        "t",
        0,
        offset,
        Some(key.as_bytes().to_vec()),
        Some(b"1".to_vec()),
    ))
}

static RUNNING: AtomicUsize = AtomicUsize::new(0);
static MAX_RUNNING: AtomicUsize = AtomicUsize::new(0);

/// Offset 0 blocks its thread for 300 ms; others are quick. Counts invocations running at once.
fn slow_first(inv: Invocation) -> BoxFuture<'static, Result<(), Failure>> {
    Box::pin(async move {
        let now = RUNNING.fetch_add(1, AtomicOrdering::SeqCst) + 1;
        MAX_RUNNING.fetch_max(now, AtomicOrdering::SeqCst);
        struct Leave;
        impl Drop for Leave {
            fn drop(&mut self) {
                RUNNING.fetch_sub(1, AtomicOrdering::SeqCst);
            }
        }
        let _leave = Leave;
        if inv.record.offset == 0 {
            // Blocking, so the kill after the drain timeout cannot cancel it: the
            // partition's next lane has to wait for it.
            std::thread::sleep(Duration::from_millis(300));
        }
        Ok(())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_returning_partition_waits_for_its_previous_lane_and_the_killed_lane_commits_nothing() {
    let settings = LaneSettings {
        drain_timeout: Duration::from_millis(50),
        ..LaneSettings::default()
    };
    let set = lanes(spec("slow_first", slow_first), settings);
    let key = LaneKey::of("t", 0);
    let first = Arc::new(Recorder::default());
    set.open(key.clone(), first.clone());
    assert!(set.push(&key, record(0, "a")));
    eventually(|| RUNNING.load(AtomicOrdering::SeqCst) == 1).await;
    // Revoked mid-record: the drain times out, the lane is fenced and cancelled.
    set.close(Some(std::slice::from_ref(&key))).await;
    assert!(
        !set.push(&key, record(1, "a")),
        "a closed partition takes nothing"
    );
    // Re-assigned at once: the records come again from the committed offset.
    let second = Arc::new(Recorder::default());
    set.open(key.clone(), second.clone());
    for o in 0..5 {
        assert!(set.push(&key, record(o, "a")));
    }
    eventually(|| second.finished.load(AtomicOrdering::SeqCst) == 5).await;
    assert_eq!(second.finished.load(AtomicOrdering::SeqCst), 5);
    assert_eq!(
        MAX_RUNNING.load(AtomicOrdering::SeqCst),
        1,
        "never two at once"
    );
    assert!(
        first.commits.lock().unwrap().is_empty(),
        "the killed lane committed nothing"
    );
    set.close(None).await;
    let commits = second.commits.lock().unwrap().clone();
    assert_eq!(commits.last(), Some(&4));
    assert!(commits.windows(2).all(|w| w[0] < w[1]), "{commits:?}");
}

static KEYED_DONE: Mutex<Vec<(String, i64)>> = Mutex::new(Vec::new());

/// Key `slow` takes 200 ms, others 1 ms.
fn keyed_handler(inv: Invocation) -> BoxFuture<'static, Result<(), Failure>> {
    Box::pin(async move {
        let key = String::from_utf8(inv.record.key.clone().unwrap_or_default()).unwrap();
        let ms = if key == "slow" { 200 } else { 1 };
        tokio::time::sleep(Duration::from_millis(ms)).await;
        KEYED_DONE.lock().unwrap().push((key, inv.record.offset));
        Ok(())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_order_runs_other_keys_past_a_slow_one_and_commits_only_the_contiguous_prefix() {
    let settings = LaneSettings {
        ordering: Ordering::Key,
        max_in_flight: 16,
        ..LaneSettings::default()
    };
    let set = lanes(spec("keyed_handler", keyed_handler), settings);
    let key = LaneKey::of("t", 0);
    let source = Arc::new(Recorder::default());
    set.open(key.clone(), source.clone());
    set.push(&key, record(0, "slow"));
    for o in 1..=6 {
        set.push(&key, record(o, if o % 2 == 0 { "b" } else { "c" }));
    }
    // The six quick records finish while offset 0 (200 ms) is still running.
    eventually(|| KEYED_DONE.lock().unwrap().len() >= 6).await;
    let done = KEYED_DONE.lock().unwrap().clone();
    assert_eq!(
        done.len(),
        6,
        "the other keys ran past the slow one: {done:?}"
    );
    assert!(
        source.commits.lock().unwrap().is_empty(),
        "nothing committed while offset 0 runs"
    );
    set.push(&key, record(7, "slow"));
    eventually(|| source.finished.load(AtomicOrdering::SeqCst) == 8).await;
    set.close(None).await;
    let done = KEYED_DONE.lock().unwrap().clone();
    let slow: Vec<i64> = done
        .iter()
        .filter(|(k, _)| k == "slow")
        .map(|(_, o)| *o)
        .collect();
    assert_eq!(slow, vec![0, 7], "one key stays in order");
    assert_eq!(source.commits.lock().unwrap().last(), Some(&7));
}
