//! Key ordering against partition ordering: one partition, 100 keys, a handler that waits
//! 1 ms (an I/O call). In partition order the records run one after the other; in key
//! order the keys run concurrently, each still in order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mq_core::prelude::*;
use mq_core::Config;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::ClientConfig;
use serde::Serialize;

use crate::common::BenchResult;

/// Keys of the keyed section.
const KEYS: u64 = 100;

/// What the keyed listener saw.
#[derive(Default)]
pub struct KeyedSink {
    /// When the first record was handled (the group join is not part of the figure).
    first: std::sync::OnceLock<Instant>,
    handled: AtomicU64,
    last: Mutex<HashMap<u64, u64>>,
    out_of_order: AtomicU64,
}

#[derive(Debug, Serialize, Deserialize)]
struct Keyed {
    key: u64,
    seq: u64,
}

#[listener(topic = "mq-bench-keyed", group = "mq-bench-keyed")]
async fn bench_keyed(k: Keyed, sink: State<Arc<KeyedSink>>) -> Result<(), HandlerError> {
    sink.first.get_or_init(Instant::now);
    tokio::time::sleep(Duration::from_millis(1)).await;
    if let Some(prev) = sink.last.lock().unwrap().insert(k.key, k.seq) {
        if prev >= k.seq {
            sink.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
    }
    sink.handled.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

/// One mode's run.
#[derive(Debug, Clone, Serialize)]
pub struct KeyedRun {
    pub ordering: &'static str,
    pub msgs_per_s: f64,
    pub out_of_order: u64,
}

/// Both modes on the same topic.
#[derive(Debug, Clone, Serialize)]
pub struct KeyedResult {
    pub messages: u64,
    pub partition: KeyedRun,
    pub key: KeyedRun,
    /// key / partition throughput.
    pub ratio: f64,
}

/// Produces `n` records over 100 keys to `topic` (one partition), then consumes them once
/// in partition order and once in key order (`max-in-flight: 64`), each with a new group.
pub async fn run(bootstrap: &str, topic: &str, n: u64) -> BenchResult<KeyedResult> {
    crate::common::create_topics(bootstrap, &[(topic, 1)]).await?;
    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create()
        .map_err(|e| e.to_string())?;
    let sends = (0..n).map(|i| {
        let producer = &producer;
        async move {
            let value = serde_json::to_vec(&Keyed {
                key: i % KEYS,
                seq: i / KEYS,
            })
            .unwrap();
            let key = (i % KEYS).to_string();
            producer
                .send(
                    FutureRecord::to(topic).key(&key).payload(&value),
                    Duration::from_secs(30),
                )
                .await
                .map(|_| ())
                .map_err(|(e, _)| e.to_string())
        }
    });
    for r in futures::future::join_all(sends).await {
        r?;
    }
    let partition = consume(bootstrap, topic, n, "partition").await?;
    let key = consume(bootstrap, topic, n, "key").await?;
    Ok(KeyedResult {
        messages: n,
        ratio: key.msgs_per_s / partition.msgs_per_s,
        partition,
        key,
    })
}

async fn consume(
    bootstrap: &str,
    topic: &str,
    n: u64,
    ordering: &'static str,
) -> BenchResult<KeyedRun> {
    let yaml = format!(
        "mq:\n  application:\n    name: mq-bench\n  kafka:\n    bootstrap-servers: \"{bootstrap}\"\n  listeners:\n    bench_keyed:\n      topics: [\"{topic}\"]\n      group: \"{}\"\n      ordering: {ordering}\n      max-in-flight: 64\nmanagement:\n  server:\n    enabled: false\n",
        crate::common::unique("keyed")
    );
    let config = Config::from_yaml_str(&yaml).map_err(|e| e.to_string())?;
    let sink = Arc::new(KeyedSink::default());
    let app = mq_core::App::new(config)
        .with_state(sink.clone())
        .only_listeners(["bench_keyed"])
        .start()
        .await
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(300);
    while sink.handled.load(Ordering::Relaxed) < n {
        if Instant::now() > deadline {
            return Err(format!(
                "keyed ({ordering}): {} of {n} handled in 300 s",
                sink.handled.load(Ordering::Relaxed)
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let secs = sink
        .first
        .get()
        .map_or(0.0, |first| first.elapsed().as_secs_f64())
        .max(1e-6);
    app.shutdown().await.map_err(|e| e.to_string())?;
    Ok(KeyedRun {
        ordering,
        msgs_per_s: n as f64 / secs,
        out_of_order: sink.out_of_order.load(Ordering::Relaxed),
    })
}
