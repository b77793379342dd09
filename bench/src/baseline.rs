//! The baseline: the consumer loop one would write by hand with rdkafka, tuned as DESIGN §5
//! says (`fetch.queue.backoff.ms=10`), at-least-once (offsets stored after handling).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::{ClientConfig, ClientContext, Message};

use crate::common::{BenchResult, CloudEvent, OrderCreated, Sink};

/// Notes when partitions were assigned.
#[derive(Default)]
pub struct AssignWatch {
    pub assigned_at: Mutex<Option<Instant>>,
}

impl ClientContext for AssignWatch {}

impl ConsumerContext for AssignWatch {
    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            if tpl.count() > 0 {
                let mut at = self.assigned_at.lock().unwrap_or_else(|p| p.into_inner());
                at.get_or_insert_with(Instant::now);
            }
        }
    }
}

impl AssignWatch {
    pub fn assigned(&self) -> Option<Instant> {
        *self.assigned_at.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The hand-written consumer's settings: librdkafka defaults, at-least-once, and the one
/// setting that matters for throughput (DESIGN §5).
pub fn consumer(bootstrap: &str, group: &str) -> BenchResult<Arc<StreamConsumer<AssignWatch>>> {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.queue.backoff.ms", "10")
        .set("session.timeout.ms", "6000");
    for (k, v) in crate::common::consumer_props() {
        config.set(k, v);
    }
    let c: StreamConsumer<AssignWatch> = config
        .create_with_context(AssignWatch::default())
        .map_err(|e| format!("baseline consumer: {e}"))?;
    Ok(Arc::new(c))
}

/// The loop itself: receive, decode, handle, store the offset; until the sink is done.
pub async fn consume(
    consumer: Arc<StreamConsumer<AssignWatch>>,
    sink: Arc<Sink>,
) -> BenchResult<()> {
    loop {
        let m = consumer
            .recv()
            .await
            .map_err(|e| format!("baseline recv: {e}"))?;
        let payload = m.payload().ok_or("baseline: record without value")?;
        let event: CloudEvent<OrderCreated> =
            serde_json::from_slice(payload).map_err(|e| format!("baseline decode: {e}"))?;
        sink.handle(m.partition(), &event.data);
        consumer
            .store_offset_from_message(&m)
            .map_err(|e| format!("baseline store offset: {e}"))?;
        if sink.all_done() {
            return Ok(());
        }
    }
}

/// A started baseline consumer.
pub struct Running {
    pub consumer: Arc<StreamConsumer<AssignWatch>>,
    pub task: tokio::task::JoinHandle<BenchResult<()>>,
    pub subscribed_at: Instant,
}

/// Creates, subscribes and spawns the loop.
pub fn start(bootstrap: &str, group: &str, topic: &str, sink: Arc<Sink>) -> BenchResult<Running> {
    let consumer = consumer(bootstrap, group)?;
    let subscribed_at = Instant::now();
    consumer
        .subscribe(&[topic])
        .map_err(|e| format!("baseline subscribe: {e}"))?;
    let task = tokio::spawn(consume(consumer.clone(), sink));
    Ok(Running {
        consumer,
        task,
        subscribed_at,
    })
}

impl Running {
    /// Waits for the assignment; returns subscribe → assigned.
    pub async fn wait_assigned(&self, timeout: Duration) -> BenchResult<Duration> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(at) = self.consumer.context().assigned() {
                return Ok(at - self.subscribed_at);
            }
            if self.task.is_finished() {
                return Err("baseline loop ended before the assignment".to_owned());
            }
            if Instant::now() >= deadline {
                return Err("baseline: no partitions assigned in time".to_owned());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Waits for the loop to end (it ends when the sink is done) and closes the consumer.
    pub async fn finish(self, timeout: Duration) -> BenchResult<()> {
        let mut task = self.task;
        let r = match tokio::time::timeout(timeout, &mut task).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => Err(format!("baseline loop panicked: {e}")),
            Err(_) => {
                task.abort();
                let _ = task.await;
                Err(format!("baseline: not done within {timeout:?}"))
            }
        };
        let consumer = self.consumer;
        // Closing commits and leaves the group: it blocks.
        let _ = tokio::task::spawn_blocking(move || {
            consumer.unsubscribe();
            drop(consumer);
        })
        .await;
        r
    }
}
