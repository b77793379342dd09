//! Partition lanes on the real broker: a rebalance during a slow handler never runs one
//! partition twice at once and never stalls it; committed offsets never move backwards;
//! key ordering keeps each key's order while keys run concurrently; cooperative
//! rebalancing keeps the staying partitions flowing.

use crate::support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mq_core::prelude::*;
use mq_core::App;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::FutureRecord;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};
use support::{bootstrap, config, create_topic, raw_producer, unique};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    key: String,
    seq: u64,
}

/// What the listeners of this file saw.
#[derive(Clone, Default)]
struct Probe {
    /// Handler invocations running now, and the most at any time, per partition.
    running: Arc<Mutex<HashMap<i32, (usize, usize)>>>,
    /// Invocations started, per key.
    starts: Arc<Mutex<HashMap<String, usize>>>,
    /// (key, seq) in the order handlers finished, with the partition.
    finished: Arc<Mutex<Vec<(String, u64)>>>,
    /// Most handler invocations running at once, over all partitions.
    max_overall: Arc<AtomicUsize>,
    overall: Arc<AtomicUsize>,
    /// How long the `slow-1` key sleeps, in ms.
    slow_ms: Arc<AtomicI64>,
    /// How long every other record sleeps, in ms.
    each_ms: Arc<AtomicI64>,
}

impl Probe {
    fn enter(&self, partition: i32, key: &str) {
        let mut running = self.running.lock().unwrap();
        let entry = running.entry(partition).or_default();
        entry.0 += 1;
        entry.1 = entry.1.max(entry.0);
        *self
            .starts
            .lock()
            .unwrap()
            .entry(key.to_owned())
            .or_default() += 1;
        let now = self.overall.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_overall.fetch_max(now, Ordering::SeqCst);
    }

    fn leave(&self, partition: i32) {
        self.running.lock().unwrap().get_mut(&partition).unwrap().0 -= 1;
        self.overall.fetch_sub(1, Ordering::SeqCst);
    }

    fn max_per_partition(&self) -> usize {
        self.running
            .lock()
            .unwrap()
            .values()
            .map(|v| v.1)
            .max()
            .unwrap_or(0)
    }

    fn finished(&self) -> Vec<(String, u64)> {
        self.finished.lock().unwrap().clone()
    }

    async fn wait_finished(&self, n: usize, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let len = self.finished.lock().unwrap().len();
            if len >= n || Instant::now() > deadline {
                return len;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Leaves the running count even when the handler's future is cancelled mid-way.
struct Leave<'a>(&'a Probe, i32);
impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.0.leave(self.1);
    }
}

async fn handle(job: Job, ctx: &Context, probe: &Probe) {
    probe.enter(ctx.partition(), &job.key);
    let _leave = Leave(probe, ctx.partition());
    let ms = if job.key == "slow-1" {
        probe.slow_ms.load(Ordering::SeqCst)
    } else {
        probe.each_ms.load(Ordering::SeqCst)
    };
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms as u64)).await;
    }
    probe.finished.lock().unwrap().push((job.key, job.seq));
}

#[listener(topic = "lanes-ordered")]
async fn on_lane_job(
    job: Job,
    ctx: Context,
    State(probe): State<Probe>,
) -> Result<(), HandlerError> {
    handle(job, &ctx, &probe).await;
    Ok(())
}

#[listener(topic = "lanes-keyed", ordering = "key", max_in_flight = 32)]
async fn on_keyed_job(
    job: Job,
    ctx: Context,
    State(probe): State<Probe>,
) -> Result<(), HandlerError> {
    handle(job, &ctx, &probe).await;
    Ok(())
}

fn yaml(listener: &str, topic: &str, group: &str, extra: &str) -> String {
    format!(
        "mq:\n  shutdown:\n    timeout: 2s\n  listeners:\n    {listener}:\n      topics: [\"{topic}\"]\n      group: \"{group}\"\n{extra}"
    )
}

async fn start(yaml: &str, listener: &str, probe: &Probe) -> mq_core::RunningApp {
    let app = App::new(config(yaml))
        .with_state(probe.clone())
        .only_listeners([listener])
        .start()
        .await
        .expect("app starts");
    assert!(app.wait_assigned(Duration::from_secs(30)).await, "assigned");
    app
}

async fn produce(topic: &str, key: &str, seq: u64) {
    let value = serde_json::to_vec(&Job {
        key: key.to_owned(),
        seq,
    })
    .unwrap();
    raw_producer()
        .send(
            FutureRecord::to(topic).key(key).payload(&value),
            Duration::from_secs(10),
        )
        .await
        .expect("produced");
}

/// Sets its flag to 0 when dropped, so that a blocking loop that runs while the flag is 1
/// also ends when the test fails before it stops the loop: the runtime waits for its
/// blocking threads, so one left running would hold the failed test for ever.
struct StopLoop(Arc<AtomicUsize>);

impl Drop for StopLoop {
    fn drop(&mut self) {
        self.0.store(0, Ordering::SeqCst);
    }
}

/// The group's committed offset of `topic`'s partition 0 (-1: none yet).
fn committed(group: &str, topic: &str) -> i64 {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let got = c
        .committed_offsets(tpl, Duration::from_secs(5))
        .expect("committed offsets");
    match got.find_partition(topic, 0).map(|e| e.offset()) {
        Some(Offset::Offset(o)) => o,
        _ => -1,
    }
}

/// The scenario: a handler still inside a slow record when an eager rebalance
/// revokes and re-assigns its partition (a second member joins the group for an unrelated
/// topic). The drain times out (2 s), the old lane is fenced and cancelled, and only then
/// does the new lane run the partition again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebalance_during_a_slow_handler_never_runs_the_partition_twice_and_never_stalls() {
    let topic = unique("lanes-slow");
    let other = unique("lanes-other");
    create_topic(&topic, 1).await;
    create_topic(&other, 1).await;
    let group = unique("g1");
    let probe = Probe::default();
    probe.slow_ms.store(6_000, Ordering::SeqCst);
    let app = start(
        &yaml("on_lane_job", &topic, &group, ""),
        "on_lane_job",
        &probe,
    )
    .await;

    // Committed offsets, read all along: they must never go backwards.
    let watching = Arc::new(AtomicUsize::new(1));
    let _stop_watching = StopLoop(watching.clone());
    let commits = {
        let (group, topic, watching) = (group.clone(), topic.clone(), watching.clone());
        tokio::task::spawn_blocking(move || {
            let mut seen = vec![];
            while watching.load(Ordering::SeqCst) == 1 {
                seen.push(committed(&group, &topic));
                std::thread::sleep(Duration::from_millis(100));
            }
            seen
        })
    };

    produce(&topic, "slow-1", 0).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while probe.starts.lock().unwrap().get("slow-1").is_none() {
        assert!(Instant::now() < deadline, "slow record never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A second member of the group, for an unrelated topic: an eager rebalance revokes and
    // re-assigns our partition while the slow handler runs.
    let intruder: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .set("group.id", &group)
        .set("session.timeout.ms", "6000")
        .create()
        .expect("intruder");
    intruder.subscribe(&[&other]).expect("subscribe");
    let polling = Arc::new(AtomicUsize::new(1));
    let _stop_polling = StopLoop(polling.clone());
    let intruder_task = {
        let polling = polling.clone();
        tokio::task::spawn_blocking(move || {
            while polling.load(Ordering::SeqCst) == 1 {
                let _ = intruder.poll(Duration::from_millis(100));
            }
            intruder
        })
    };
    let rebalances_before = app.rebalances();
    // The records below go in once the rebalance has revoked the partition mid-record.
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.rebalances() <= rebalances_before && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for i in 0..50 {
        produce(&topic, &format!("k{}", i % 5), i + 1).await;
    }
    // Everything after the slow record gets handled (the slow one runs at most twice).
    let handled = probe.wait_finished(51, Duration::from_secs(40)).await;
    assert!(
        app.rebalances() > rebalances_before,
        "the intruder caused a rebalance"
    );
    for i in 50..100 {
        produce(&topic, &format!("k{}", i % 5), i + 1).await;
    }
    let handled_all = probe.wait_finished(101, Duration::from_secs(30)).await;
    let slow_starts = probe.starts.lock().unwrap()["slow-1"];
    let max_concurrent = probe.max_per_partition();

    polling.store(0, Ordering::SeqCst);
    let intruder = intruder_task.await.unwrap();
    tokio::task::spawn_blocking(move || drop(intruder))
        .await
        .unwrap();
    app.shutdown().await.unwrap();
    watching.store(0, Ordering::SeqCst);
    let commits = commits.await.unwrap();

    assert_eq!(
        max_concurrent, 1,
        "never two handler invocations of the partition at once"
    );
    assert!(slow_starts <= 2, "the slow record ran {slow_starts} times");
    assert!(
        handled >= 51,
        "the first 50 after the slow record were handled: {handled}"
    );
    assert!(
        handled_all >= 101,
        "all 100 later records were handled: {handled_all}"
    );
    let finished = probe.finished();
    let seqs: Vec<u64> = finished
        .iter()
        .filter(|(k, _)| k != "slow-1")
        .map(|(_, s)| *s)
        .collect();
    let mut sorted = seqs.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), 100, "each of the 100 records handled");
    assert!(
        seqs.windows(2).all(|w| w[0] <= w[1]),
        "handled in partition order: {seqs:?}"
    );
    assert!(
        commits.windows(2).all(|w| w[0] <= w[1]),
        "committed offsets went backwards: {commits:?}"
    );
    assert_eq!(
        commits.last().copied(),
        Some(101),
        "everything committed at the end"
    );
}

/// Key ordering: one partition, 100 keys; each key's records are handled in order, keys run
/// concurrently, and the committed offset is the contiguous done one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_ordering_keeps_each_keys_order_and_runs_keys_concurrently() {
    let topic = unique("lanes-keyed");
    create_topic(&topic, 1).await;
    let group = unique("gk");
    let probe = Probe::default();
    probe.each_ms.store(5, Ordering::SeqCst);
    let producer = raw_producer();
    const KEYS: u64 = 100;
    const PER_KEY: u64 = 10;
    let mut sends = Vec::new();
    for seq in 0..PER_KEY {
        for k in 0..KEYS {
            let value = serde_json::to_vec(&Job {
                key: format!("key-{k}"),
                seq,
            })
            .unwrap();
            let key = format!("key-{k}");
            sends.push(async {
                let (key, value) = (key, value);
                producer
                    .send(
                        FutureRecord::to(&topic).key(&key).payload(&value),
                        Duration::from_secs(10),
                    )
                    .await
                    .expect("produced")
            });
        }
    }
    futures::future::join_all(sends).await;
    let app = start(
        &yaml("on_keyed_job", &topic, &group, ""),
        "on_keyed_job",
        &probe,
    )
    .await;
    let total = (KEYS * PER_KEY) as usize;
    assert_eq!(
        probe.wait_finished(total, Duration::from_secs(60)).await,
        total
    );
    app.shutdown().await.unwrap();

    let mut last: HashMap<String, u64> = HashMap::new();
    for (key, seq) in probe.finished() {
        if let Some(prev) = last.insert(key.clone(), seq) {
            assert!(seq > prev, "{key}: {seq} handled after {prev}");
        }
    }
    assert_eq!(last.len(), KEYS as usize);
    assert!(last.values().all(|s| *s == PER_KEY - 1));
    let max = probe.max_per_partition();
    assert!(
        max > 1 && max <= 32,
        "keys ran concurrently within max_in_flight: {max}"
    );
    let committed = tokio::task::spawn_blocking(move || committed(&group, &topic))
        .await
        .unwrap();
    assert_eq!(committed, total as i64, "committed through the last record");
}

async fn readiness(app: &mq_core::RunningApp) -> u16 {
    let addr = app.actuator_addr().expect("actuator");
    support::http(addr, "GET", "/actuator/health/readiness", None, None)
        .await
        .status
}

fn epochs(app: &mq_core::RunningApp) -> HashMap<i32, u64> {
    app.lanes()
        .into_iter()
        .filter(|l| !l.closing)
        .map(|l| (l.partition, l.epoch))
        .collect()
}

async fn wait_split(apps: &[&mq_core::RunningApp], partitions: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let counts: Vec<usize> = apps.iter().map(|a| epochs(a).len()).collect();
        if counts.iter().all(|c| *c > 0) && counts.iter().sum::<usize>() == partitions {
            return;
        }
        assert!(Instant::now() < deadline, "no stable split: {counts:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Cooperative-sticky: a third instance joins, then leaves. The partitions that stay with
/// an instance keep their lane (same epoch: never stopped), readiness stays UP on the
/// staying instances, and every record is handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cooperative_rebalancing_keeps_the_staying_partitions_flowing() {
    let topic = unique("lanes-coop");
    create_topic(&topic, 6).await;
    let group = unique("gc");
    let coop = "  kafka:\n    consumer:\n      properties:\n        partition.assignment.strategy: cooperative-sticky\n";
    let yaml = yaml("on_lane_job", &topic, &group, coop);
    let probe = Probe::default();
    let a = start(&yaml, "on_lane_job", &probe).await;
    let b = start(&yaml, "on_lane_job", &probe).await;
    wait_split(&[&a, &b], 6).await;

    // A steady stream while the group changes.
    let producing = {
        let topic = topic.clone();
        tokio::spawn(async move {
            for i in 0..600u64 {
                produce(&topic, &format!("k{}", i % 12), i).await;
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let ready_checks = Arc::new(Mutex::new(Vec::new()));
    let checking = Arc::new(AtomicUsize::new(1));
    let (before_a, before_b) = (epochs(&a), epochs(&b));

    let c = start(&yaml, "on_lane_job", &probe).await;
    let checker = {
        let (checks, checking) = (ready_checks.clone(), checking.clone());
        let (addr_a, addr_b) = (a.actuator_addr().unwrap(), b.actuator_addr().unwrap());
        tokio::spawn(async move {
            while checking.load(Ordering::SeqCst) == 1 {
                for addr in [addr_a, addr_b] {
                    let s = support::http(addr, "GET", "/actuator/health/readiness", None, None)
                        .await
                        .status;
                    checks.lock().unwrap().push(s);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    wait_split(&[&a, &b, &c], 6).await;
    let (during_a, during_b) = (epochs(&a), epochs(&b));
    c.shutdown().await.unwrap();
    wait_split(&[&a, &b], 6).await;
    let (after_a, after_b) = (epochs(&a), epochs(&b));
    tokio::time::timeout(Duration::from_secs(240), producing)
        .await
        .expect("the 600 records were not produced within 240 s")
        .unwrap();
    let handled = probe.wait_finished(600, Duration::from_secs(60)).await;
    checking.store(0, Ordering::SeqCst);
    checker.await.unwrap();
    assert_eq!(readiness(&a).await, 200);
    a.shutdown().await.unwrap();
    b.shutdown().await.unwrap();

    for (before, during, after, who) in [
        (&before_a, &during_a, &after_a, "a"),
        (&before_b, &during_b, &after_b, "b"),
    ] {
        assert!(
            during.len() < before.len(),
            "{who} gave a partition to the newcomer"
        );
        for (p, epoch) in during {
            assert_eq!(
                before.get(p),
                Some(epoch),
                "{who} kept partition {p} without reopening it"
            );
            assert_eq!(
                after.get(p),
                Some(epoch),
                "{who} still has partition {p}'s lane after the leave"
            );
        }
    }
    let seqs: std::collections::HashSet<u64> =
        probe.finished().into_iter().map(|(_, s)| s).collect();
    assert_eq!(
        seqs.len(),
        600,
        "every record handled ({handled} handlings)"
    );
    let checks = ready_checks.lock().unwrap().clone();
    assert!(
        !checks.is_empty() && checks.iter().all(|s| *s == 200),
        "readiness stayed UP: {checks:?}"
    );
}
