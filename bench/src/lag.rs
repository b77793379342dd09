//! Read-ahead under lag: a consumer whose handler is slow (50 ms a record) joins a topic
//! of many partitions that each hold a backlog. librdkafka and the lanes read ahead until
//! their budgets are full; the child process reports its peak RSS after `WATCH`, which
//! must not grow with the partition count or the backlog.

use std::time::Duration;

use mq_core::prelude::*;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientConfig, ClientContext};
use serde::Serialize;

use crate::common::{proc_status, BenchResult};

const MARKER: &str = "MQ_BENCH_LAG ";
/// How long the child consumes before it reports.
const WATCH: Duration = Duration::from_secs(15);
/// Value size of the backlog's records.
const VALUE_BYTES: usize = 10_000;

/// Records the lag child handled.
static HANDLED: AtomicU64 = AtomicU64::new(0);

#[listener(topic = "mq-bench-lag", group = "mq-bench-lag")]
async fn bench_lag(_v: serde_json::Value) -> Result<(), HandlerError> {
    // Far slower than fetching: the backlog stays, and read-ahead fills its budgets.
    tokio::time::sleep(Duration::from_millis(50)).await;
    HANDLED.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// Counts the backlog's deliveries, so that a backlog that did not arrive fails the section.
#[derive(Default)]
struct Acks {
    ok: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.first_error
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// The figure of the lag section.
#[derive(Debug, Clone, Serialize)]
pub struct LagResult {
    pub partitions: usize,
    pub backlog_mb_per_partition: u64,
    pub rss_mb: f64,
    pub peak_rss_mb: f64,
    /// Records the slow consumer handled while it was watched.
    pub handled: u64,
}

/// Fills `partitions` partitions of `topic` with `mb` MB each.
pub fn produce_backlog(
    bootstrap: &str,
    topic: &str,
    partitions: usize,
    mb: u64,
) -> BenchResult<()> {
    let producer: ThreadedProducer<Acks> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "20")
        .set("queue.buffering.max.kbytes", "1048576")
        .create_with_context(Acks::default())
        .map_err(|e| e.to_string())?;
    let value = format!("{{\"pad\":\"{}\"}}", "x".repeat(VALUE_BYTES - 10));
    let per_partition = mb * 1_000_000 / VALUE_BYTES as u64;
    for i in 0..per_partition {
        for p in 0..partitions as i32 {
            let key = i.to_string();
            let mut record = BaseRecord::to(topic).partition(p).key(&key).payload(&value);
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, r)) => {
                        record = r;
                        std::thread::sleep(Duration::from_millis(5));
                    }
                }
            }
        }
    }
    producer
        .flush(Duration::from_secs(120))
        .map_err(|e| e.to_string())
}

/// The child's body: consume `topic` slowly for `WATCH`, then print the RSS figures.
pub fn child(bootstrap: &str, topic: &str) -> BenchResult<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let yaml = format!(
            "mq:\n  application:\n    name: mq-bench-lag\n  kafka:\n    bootstrap-servers: \"{bootstrap}\"\n  listeners:\n    bench_lag:\n      topics: [\"{topic}\"]\n      group: \"{}\"\n  shutdown:\n    timeout: 1s\nmanagement:\n  server:\n    enabled: false\n",
            crate::common::unique("lag")
        );
        let config = mq_core::Config::from_yaml_str(&yaml).map_err(|e| e.to_string())?;
        let app = mq_core::App::new(config)
            .only_listeners(["bench_lag"])
            .start()
            .await
            .map_err(|e| e.to_string())?;
        tokio::time::sleep(WATCH).await;
        let (rss, hwm) = (proc_status("VmRSS").unwrap_or(0), proc_status("VmHWM").unwrap_or(0));
        println!("{MARKER}{rss} {hwm} {}", HANDLED.load(Ordering::Relaxed));
        app.shutdown().await.map_err(|e| e.to_string())
    })
}

/// Runs the child on `topic` and reads its figures.
pub fn measure(bootstrap: &str, topic: &str, partitions: usize, mb: u64) -> BenchResult<LagResult> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let out = std::process::Command::new(exe)
        .args(["--lag-child", bootstrap, topic])
        .output()
        .map_err(|e| e.to_string())?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(MARKER))
        .ok_or_else(|| {
            format!(
                "lag child reported nothing: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    let mut it = line
        .split_whitespace()
        .map(|v| v.parse::<u64>().unwrap_or(0));
    let (rss, hwm, handled) = (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    );
    if handled == 0 {
        return Err(format!("lag child on {topic} handled nothing in {WATCH:?}"));
    }
    Ok(LagResult {
        partitions,
        backlog_mb_per_partition: mb,
        rss_mb: rss as f64 / 1024.0,
        peak_rss_mb: hwm as f64 / 1024.0,
        handled,
    })
}
