//! Static membership: `group.instance.id` from `mq.kafka.consumer.properties` becomes one id
//! per consumer (`<configured>-<listener>-<n>`), so the consumers of one app never fence each
//! other; and a consumer that is fenced all the same (another pod with the same id) stops
//! visibly: readiness DOWN with the reason, one ERROR, and the record it held is not committed.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use crate::support::{self, bootstrap, unique};
use mq_core::prelude::*;
use mq_core::{App, Config};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

const WAIT: Duration = Duration::from_secs(60);

/// The tests' configuration (support's) with this binary's name and health details shown.
fn config_for(bootstrap: &str, extra: &str) -> Config {
    let mine = "mq:\n  application:\n    name: mq-field\nmanagement:\n  endpoint:\n    health:\n      show-details: always\n";
    support::config_for(bootstrap, mine)
        .with_yaml_layer(extra)
        .expect("valid test config")
}

/// `GET path` on the app's management port: (status, body).
async fn get(app: &mq_core::RunningApp, path: &str) -> (u16, String) {
    let addr = app.actuator_addr().expect("actuator runs");
    let r = support::http(addr, "GET", path, None, None).await;
    (r.status, r.body)
}

/// Every log line of the process, for counting ERRORs.
#[derive(Clone, Default)]
pub(crate) struct LogBuffer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Captures the process's log lines, if it is the first to install a global subscriber (an
/// app started before installs its own). Every test of this binary that starts an app calls
/// it first, so here it always is.
pub(crate) fn logs() -> Option<&'static LogBuffer> {
    static LOGS: OnceLock<Option<LogBuffer>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let buf = LogBuffer::default();
        let writer = buf.clone();
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .try_init()
            .ok()
            .map(|()| buf)
    })
    .as_ref()
}

fn log_lines(containing: &[&str]) -> Vec<String> {
    let logs = logs().expect("this binary's log capture is the global subscriber");
    let text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    text.lines()
        .filter(|l| containing.iter().all(|c| l.contains(c)))
        .map(str::to_owned)
        .collect()
}

#[derive(Debug, Serialize, Deserialize)]
struct Job {
    n: u32,
}

/// Records handled, by listener.
#[derive(Clone, Default)]
struct Counts {
    first: Arc<AtomicUsize>,
    second: Arc<AtomicUsize>,
}

#[listener(topic = "sm-first")]
async fn sm_first(_job: Job, ctx: Context) -> Result<(), HandlerError> {
    ctx.state::<Counts>().first.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

#[listener(topic = "sm-second")]
async fn sm_second(_job: Job, ctx: Context) -> Result<(), HandlerError> {
    ctx.state::<Counts>().second.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

/// Issue 23, input 5: `group.instance.id: pod-0` with `concurrency: 2` and two listeners in
/// one group. Each consumer joins as its own static member, so every record of both topics is
/// handled, and the app is ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_of_one_app_sharing_a_configured_instance_id_all_consume() {
    let _ = logs();
    let (first, second, group) = (unique("sm-first"), unique("sm-second"), unique("sm-group"));
    let yaml = format!(
        "mq:\n  kafka:\n    admin:\n      partitions: 2\n    consumer:\n      properties:\n        group.instance.id: pod-0\n  listeners:\n    sm_first:\n      topics: [\"{first}\"]\n      group: \"{group}\"\n      concurrency: 2\n    sm_second:\n      topics: [\"{second}\"]\n      group: \"{group}\"\n"
    );
    let counts = Counts::default();
    let app = App::new(config_for(&bootstrap(), &yaml))
        .with_state(counts.clone())
        .only_listeners(["sm_first", "sm_second"])
        .start()
        .await
        .expect("app starts");
    assert!(app.wait_assigned(WAIT).await, "no partitions assigned");
    let publisher = app.publisher();
    for n in 0..20 {
        publisher
            .send(&first, &n.to_string(), Job { n })
            .await
            .unwrap();
        publisher
            .send(&second, &n.to_string(), Job { n })
            .await
            .unwrap();
    }
    let deadline = Instant::now() + WAIT;
    while counts.first.load(Ordering::SeqCst) < 20 || counts.second.load(Ordering::SeqCst) < 20 {
        let (_, health) = get(&app, "/actuator/health/readiness").await;
        assert!(
            Instant::now() < deadline,
            "handled {} of 20 on {first} and {} of 20 on {second}; readiness: {health}",
            counts.first.load(Ordering::SeqCst),
            counts.second.load(Ordering::SeqCst),
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, body) = get(&app, "/actuator/health/readiness").await;
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("stopped"), "{body}");
    app.shutdown().await.unwrap();
}

/// Lets the test hold the handler on one record.
#[derive(Clone, Default)]
struct Gate {
    handled: Arc<AtomicUsize>,
    held: Arc<AtomicBool>,
    release: Arc<tokio::sync::Notify>,
}

#[listener(topic = "sm-fenced", retry(max_attempts = 1))]
async fn sm_fenced(job: Job, ctx: Context) -> Result<(), HandlerError> {
    let gate = ctx.state::<Gate>();
    if job.n == 1 {
        gate.held.store(true, Ordering::SeqCst);
        gate.release.notified().await;
    }
    gate.handled.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

fn committed(bootstrap: &str, group: &str, topic: &str) -> Option<i64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    let got = c.committed_offsets(tpl, Duration::from_secs(5)).ok()?;
    let offset = match got.elements()[0].offset() {
        Offset::Offset(o) => Some(o),
        _ => None,
    };
    drop(c);
    offset
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Issue 23, input 5: a consumer fenced as a static member (the broker answers its heartbeat
/// with FENCED_INSTANCE_ID, what it does when another pod joins with the same id; injected
/// here on librdkafka's mock cluster) stops: readiness DOWN naming the reason, one ERROR,
/// liveness UP, and the record in its handler at that moment is never committed. Before the
/// fix the poll loop logged a WARN and carried on, and readiness stayed UP.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_consumer_stops_visibly_and_leaves_its_record_to_the_next_owner() {
    let _ = logs();
    let cluster = MockCluster::new(1).unwrap();
    let servers = cluster.bootstrap_servers();
    let (topic, group) = (unique("sm-fenced"), unique("sm-fenced-group"));
    cluster.create_topic(&topic, 1, 1).unwrap();
    let yaml = format!(
        "mq:\n  kafka:\n    admin:\n      auto-create-topics: false\n    consumer:\n      properties:\n        group.instance.id: pod-7\n  listener:\n    dlt:\n      enabled: false\n  listeners:\n    sm_fenced:\n      topics: [\"{topic}\"]\n      group: \"{group}\"\n"
    );
    let gate = Gate::default();
    let app = App::new(config_for(&servers, &yaml))
        .with_state(gate.clone())
        .only_listeners(["sm_fenced"])
        .start()
        .await
        .expect("app starts");
    assert!(app.wait_assigned(WAIT).await, "no partition assigned");
    let publisher = app.publisher();
    publisher.send(&topic, "k", Job { n: 0 }).await.unwrap();
    let (b, g, t) = (servers.clone(), group.clone(), topic.clone());
    let deadline = Instant::now() + WAIT;
    loop {
        let (b, g, t) = (b.clone(), g.clone(), t.clone());
        let at = tokio::task::spawn_blocking(move || committed(&b, &g, &t))
            .await
            .unwrap();
        if at == Some(1) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "record 0 never committed: {at:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for n in 1..3 {
        publisher.send(&topic, "k", Job { n }).await.unwrap();
    }
    wait_for("record 1 held in the handler", || {
        gate.held.load(Ordering::SeqCst)
    })
    .await;

    cluster.request_errors(
        RDKafkaApiKey::Heartbeat,
        &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID; 50],
    );
    let deadline = Instant::now() + WAIT;
    let body = loop {
        let (status, body) = get(&app, "/actuator/health/readiness").await;
        if status == 503 && body.contains("FencedInstanceId") {
            break body;
        }
        assert!(
            Instant::now() < deadline,
            "readiness never went DOWN for the fenced consumer: {status} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(body.contains("\"status\":\"DOWN\""), "{body}");
    assert!(
        body.contains("pod-7-sm_fenced-0"),
        "names the instance id: {body}"
    );
    let (live, live_body) = get(&app, "/actuator/health/liveness").await;
    assert_eq!(
        live, 200,
        "a restart does not cure a fenced id: {live_body}"
    );

    // The handler finishes the record it held; it is not committed all the same.
    gate.release.notify_one();
    wait_for("record 1 finished", || {
        gate.handled.load(Ordering::SeqCst) >= 2
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let at = tokio::task::spawn_blocking(move || committed(&b, &g, &t))
        .await
        .unwrap();
    assert_eq!(
        at,
        Some(1),
        "the held record must be left to the next owner"
    );
    let errors = log_lines(&["ERROR", "consumer stopped for good", "sm_fenced"]);
    assert_eq!(errors.len(), 1, "one ERROR: {errors:#?}");
    cluster.clear_request_errors(RDKafkaApiKey::Heartbeat);
    app.shutdown().await.unwrap();
    drop(cluster);
}

#[listener(topic = "sm-pod")]
async fn sm_pod(_job: Job) -> Result<(), HandlerError> {
    Ok(())
}

/// Issue 23, input 5, across processes: two pods configured with the same
/// `group.instance.id` (a copied manifest) on the real broker. The broker lets one member per
/// instance id, so one of the two consumers is fenced: that app's readiness goes DOWN naming
/// the reason, instead of a WARN and a consumer that silently never consumes again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pods_with_one_instance_id_fence_one_and_it_says_so() {
    let _ = logs();
    let (topic, group) = (unique("sm-pod"), unique("sm-pod-group"));
    let yaml = format!(
        "mq:\n  kafka:\n    consumer:\n      properties:\n        group.instance.id: pod-0\n  listeners:\n    sm_pod:\n      topics: [\"{topic}\"]\n      group: \"{group}\"\n"
    );
    let start = || async {
        App::new(config_for(&bootstrap(), &yaml))
            .only_listeners(["sm_pod"])
            .start()
            .await
            .expect("app starts")
    };
    let first = start().await;
    assert!(first.wait_assigned(WAIT).await, "the first pod joins");
    let second = start().await;
    let deadline = Instant::now() + WAIT;
    let fenced = loop {
        let mut found = None;
        for (name, app) in [("first", &first), ("second", &second)] {
            let (status, body) = get(app, "/actuator/health/readiness").await;
            if status == 503 && body.contains("FencedInstanceId") {
                found = Some((name, body));
            }
        }
        if let Some(f) = found {
            break f;
        }
        let (_, a) = get(&first, "/actuator/health/readiness").await;
        let (_, b) = get(&second, "/actuator/health/readiness").await;
        assert!(
            Instant::now() < deadline,
            "neither pod reports a fenced consumer:\nfirst: {a}\nsecond: {b}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(fenced.1.contains("pod-0-sm_pod-0"), "{}", fenced.1);
    eprintln!("fenced: the {} pod", fenced.0);
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
}
