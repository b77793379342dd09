//! What both contenders share: the event on the wire, the trivial handler (a [`Sink`]),
//! producing, topic administration, and process measurements (CPU time, RSS, load).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, Utc};
use mq_core::envelope::attributes as attr;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext};
use serde::{Deserialize, Serialize};

/// librdkafka consumer properties given with `--consumer-prop`, applied to both
/// contenders alike.
pub static CONSUMER_PROPS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());

/// The consumer properties in force (none unless given).
pub fn consumer_props() -> Vec<(String, String)> {
    CONSUMER_PROPS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// Sets the consumer properties in force.
pub fn set_consumer_props(props: Vec<(String, String)>) {
    *CONSUMER_PROPS.lock().unwrap_or_else(|p| p.into_inner()) = props;
}

/// (order id, sent µs, a later instant µs): an acknowledgement or a handler entry.
pub type Timed = (u64, u64, u64);

/// A benchmark failure (never a slow number: those are reported, not failed).
pub type BenchResult<T> = Result<T, String>;

/// The event data both contenders decode. `sent_us` is the producer's wall clock at send
/// time (latency); `order_id` is the message's sequence number (checked at the end).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderCreated {
    pub order_id: u64,
    pub product_id: u64,
    pub quantity: u32,
    pub sent_us: u64,
}

/// The baseline's own struct mirroring the CloudEvents 1.0 envelope, field for field and
/// type for type what `mq_core::Event<T>` holds (so both decode the same amount of work).
#[derive(Debug, Deserialize)]
#[allow(dead_code)] // decoded, as a real consumer would, but only `data` is used
pub struct CloudEvent<T> {
    pub id: String,
    pub source: String,
    pub specversion: String,
    #[serde(rename = "type")]
    pub ty: String,
    #[serde(default)]
    pub time: Option<DateTime<Utc>>,
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub datacontenttype: Option<String>,
    #[serde(default)]
    pub dataschema: Option<String>,
    #[serde(default)]
    pub correlationid: Option<String>,
    #[serde(default)]
    pub causationid: Option<String>,
    #[serde(default)]
    pub traceparent: Option<String>,
    pub data: T,
}

/// Wall clock in microseconds since the Unix epoch (comparable across processes).
pub fn unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// The JSON of message `i` (about 300 bytes): a structured-mode CloudEvent, exactly as
/// mq's publisher writes it.
pub fn event_json(i: u64, sent_us: u64) -> Vec<u8> {
    let data = OrderCreated {
        order_id: i,
        product_id: 1000 + i % 97,
        quantity: 1 + (i % 5) as u32,
        sent_us,
    };
    let event = mq_core::Event::new("com.example.OrderCreated", data)
        .with_source("/mq-bench-producer")
        .with_subject(format!("order-{i}"));
    event.to_json().expect("an event serializes")
}

// ---------------------------------------------------------------------------------------
// The trivial handler
// ---------------------------------------------------------------------------------------

/// Per-partition counters, each on its own cache lines: a partition is handled by one
/// task at a time, so the handler's atomics are uncontended (no false sharing between the
/// workers of different partitions, which would penalise the multi-threaded contender).
#[repr(align(128))]
struct Shard {
    expected: u64,
    expected_sum: u64,
    count: AtomicU64,
    sum: AtomicU64,
    first: OnceLock<Instant>,
    done: OnceLock<Instant>,
    /// (order id, sent_us, handler entry µs) when latency is recorded.
    latencies: Mutex<Vec<Timed>>,
}

/// The trivial handler both contenders call, and the finish line: it knows how many
/// messages (and which order ids) each partition holds.
pub struct Sink {
    shards: Vec<Shard>,
    done_shards: AtomicUsize,
    record_latency: bool,
}

impl Sink {
    /// A sink for a topic of `partitions` partitions holding messages `0..total`, message
    /// `i` in partition `i % partitions` (see [`send`]).
    pub fn new(partitions: usize, total: u64, record_latency: bool) -> Arc<Sink> {
        let shards = (0..partitions)
            .map(|p| {
                let ids = (p as u64..total).step_by(partitions);
                Shard {
                    expected: ids.clone().count() as u64,
                    expected_sum: ids.sum(),
                    count: AtomicU64::new(0),
                    sum: AtomicU64::new(0),
                    first: OnceLock::new(),
                    done: OnceLock::new(),
                    latencies: Mutex::new(Vec::new()),
                }
            })
            .collect();
        Arc::new(Sink {
            shards,
            done_shards: AtomicUsize::new(0),
            record_latency,
        })
    }

    /// The handler: counts the message, and in latency mode records when it got it.
    #[inline]
    pub fn handle(&self, partition: i32, order: &OrderCreated) {
        let entered_us = self.record_latency.then(unix_us);
        let Some(s) = self.shards.get(partition as usize) else {
            return;
        };
        let c = s.count.fetch_add(1, Ordering::Relaxed) + 1;
        s.sum.fetch_add(order.order_id, Ordering::Relaxed);
        if c == 1 {
            let _ = s.first.set(Instant::now());
        }
        if let Some(at) = entered_us {
            s.latencies.lock().unwrap_or_else(|p| p.into_inner()).push((
                order.order_id,
                order.sent_us,
                at,
            ));
        }
        if c == s.expected {
            let _ = s.done.set(Instant::now());
            self.done_shards.fetch_add(1, Ordering::Release);
        }
    }

    /// Every partition reached its count.
    #[inline]
    pub fn all_done(&self) -> bool {
        self.done_shards.load(Ordering::Acquire) == self.shards.len()
    }

    /// Messages handled so far.
    pub fn handled(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.count.load(Ordering::Relaxed))
            .sum()
    }

    /// First record handled → last record handled (all partitions).
    pub fn window(&self) -> Option<(Instant, Instant)> {
        let first = self.shards.iter().filter_map(|s| s.first.get()).min()?;
        let last = self.shards.iter().filter_map(|s| s.done.get()).max()?;
        Some((*first, *last))
    }

    /// Checks that every message was handled: an error when one is missing or another
    /// stands in for it; `Ok(duplicates)` otherwise (at-least-once allows them).
    pub fn verify(&self) -> BenchResult<u64> {
        let mut duplicates = 0;
        for (p, s) in self.shards.iter().enumerate() {
            let (count, sum) = (
                s.count.load(Ordering::Relaxed),
                s.sum.load(Ordering::Relaxed),
            );
            if count < s.expected {
                return Err(format!(
                    "partition {p}: {count} of {} messages handled",
                    s.expected
                ));
            }
            if count == s.expected && sum != s.expected_sum {
                return Err(format!(
                    "partition {p}: right count, wrong messages (order-id sum {sum}, expected {})",
                    s.expected_sum
                ));
            }
            duplicates += count - s.expected;
        }
        Ok(duplicates)
    }

    /// Every handled message (latency mode): (order id, sent µs, handler entry µs).
    pub fn entries(&self) -> Vec<Timed> {
        let mut out = Vec::new();
        for s in &self.shards {
            out.extend_from_slice(&s.latencies.lock().unwrap_or_else(|p| p.into_inner()));
        }
        out
    }
}

/// Waits until `sink` is done, polling every millisecond; an error after `timeout`.
pub async fn wait_done(sink: &Sink, timeout: Duration, what: &str) -> BenchResult<()> {
    let deadline = Instant::now() + timeout;
    while !sink.all_done() {
        if Instant::now() >= deadline {
            return Err(format!(
                "{what}: timed out after {timeout:?} with {} messages handled",
                sink.handled()
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Producing and topics
// ---------------------------------------------------------------------------------------

/// Counts delivery results.
#[derive(Default)]
pub struct DeliveryCount {
    /// (order id, sent µs, acknowledged µs) of timed sends (latency phases).
    pub acks: Mutex<Vec<Timed>>,
    ok: AtomicU64,
    failed: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl ClientContext for DeliveryCount {}

impl ProducerContext for DeliveryCount {
    /// (order id, send time µs); the time is 0 when the send is not timed.
    type DeliveryOpaque = Box<(u64, u64)>;
    fn delivery(&self, result: &DeliveryResult<'_>, sent: Box<(u64, u64)>) {
        match result {
            Ok(_) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                let (id, sent_us) = *sent;
                if sent_us > 0 {
                    self.acks.lock().unwrap_or_else(|p| p.into_inner()).push((
                        id,
                        sent_us,
                        unix_us(),
                    ));
                }
            }
            Err((e, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
                first.get_or_insert_with(|| e.to_string());
            }
        }
    }
}

/// A producer for the benchmark's own traffic (not part of either contender).
pub fn producer(bootstrap: &str, linger_ms: u32) -> BenchResult<ThreadedProducer<DeliveryCount>> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", linger_ms.to_string())
        .set("batch.size", "1000000")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create_with_context(DeliveryCount::default())
        .map_err(|e| format!("cannot create producer: {e}"))
}

/// Sends message `i` (JSON from [`event_json`]) to partition `i % partitions`, retrying
/// while librdkafka's queue is full. `sent_us` > 0 has its acknowledgement timed.
pub fn send(
    producer: &ThreadedProducer<DeliveryCount>,
    topic: &str,
    partitions: usize,
    i: u64,
    payload: &[u8],
    sent_us: u64,
) -> BenchResult<()> {
    let key = i.to_string();
    let headers = OwnedHeaders::new().insert(Header {
        key: attr::CONTENT_TYPE_HEADER,
        value: Some(attr::STRUCTURED_CONTENT_TYPE),
    });
    let mut record = BaseRecord::with_opaque_to(topic, Box::new((i, sent_us)))
        .partition((i % partitions as u64) as i32)
        .key(&key)
        .payload(payload)
        .headers(headers);
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((e, r)) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::QueueFull) => {
                record = r;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err((e, _)) => return Err(format!("produce to {topic}: {e}")),
        }
    }
}

/// Waits for every send to be acknowledged; an error if any failed.
pub fn flush(
    producer: &ThreadedProducer<DeliveryCount>,
    expected: u64,
    topic: &str,
) -> BenchResult<()> {
    producer
        .flush(Duration::from_secs(120))
        .map_err(|e| format!("flush to {topic}: {e}"))?;
    let ctx = producer.context();
    let (ok, failed) = (
        ctx.ok.load(Ordering::Relaxed),
        ctx.failed.load(Ordering::Relaxed),
    );
    if failed > 0 || ok != expected {
        let first = ctx
            .first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .unwrap_or_default();
        return Err(format!(
            "produce to {topic}: {ok} of {expected} acknowledged, {failed} failed ({first})"
        ));
    }
    Ok(())
}

/// Produces messages `0..n` to `topic` as fast as the broker takes them; returns the
/// seconds it took and the mean value size.
pub fn produce_all(
    bootstrap: &str,
    topic: &str,
    partitions: usize,
    n: u64,
) -> BenchResult<(f64, usize)> {
    let producer = producer(bootstrap, 20)?;
    let started = Instant::now();
    let mut bytes = 0usize;
    let now = unix_us();
    for i in 0..n {
        let payload = event_json(i, now);
        bytes += payload.len();
        send(&producer, topic, partitions, i, &payload, 0)?;
    }
    flush(&producer, n, topic)?;
    Ok((started.elapsed().as_secs_f64(), bytes / n.max(1) as usize))
}

/// Produces messages `0..n` at `rate` per second from a thread of its own, each stamped
/// with its send time. Returns when all are acknowledged: the rate achieved and each
/// message's (order id, sent µs, acknowledged µs).
pub fn produce_at_rate(
    bootstrap: String,
    topic: String,
    partitions: usize,
    n: u64,
    rate: u64,
    linger_ms: u32,
) -> std::thread::JoinHandle<BenchResult<(f64, Vec<Timed>)>> {
    std::thread::spawn(move || {
        let producer = producer(&bootstrap, linger_ms)?;
        let started = Instant::now();
        for i in 0..n {
            let due = started + Duration::from_nanos(i * 1_000_000_000 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
            let sent_us = unix_us();
            let payload = event_json(i, sent_us);
            send(&producer, &topic, partitions, i, &payload, sent_us)?;
        }
        let secs = started.elapsed().as_secs_f64();
        flush(&producer, n, &topic)?;
        let acks = std::mem::take(
            &mut *producer
                .context()
                .acks
                .lock()
                .unwrap_or_else(|p| p.into_inner()),
        );
        Ok((n as f64 / secs, acks))
    })
}

fn admin(bootstrap: &str) -> BenchResult<AdminClient<DefaultClientContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .map_err(|e| format!("cannot create admin client: {e}"))
}

/// Creates topics (name, partitions).
pub async fn create_topics(bootstrap: &str, topics: &[(&str, i32)]) -> BenchResult<()> {
    let admin = admin(bootstrap)?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(t, p)| NewTopic::new(t, *p, TopicReplication::Fixed(1)))
        .collect();
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(20)));
    let res = tokio::time::timeout(Duration::from_secs(30), admin.create_topics(&new, &opts))
        .await
        .map_err(|_| "create topics: no answer from the broker within 30 s".to_owned())?
        .map_err(|e| format!("create topics: {e}"))?;
    for r in res {
        r.map_err(|(t, e)| format!("create topic {t}: {e}"))?;
    }
    // Let the metadata settle so the first consumer sees every partition.
    tokio::time::sleep(Duration::from_millis(200)).await;
    Ok(())
}

/// Fails unless the broker answers a metadata request within 10 s.
pub async fn check_broker(bootstrap: &str) -> BenchResult<()> {
    let bootstrap = bootstrap.to_owned();
    tokio::task::spawn_blocking(move || {
        let client: rdkafka::consumer::BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .create()
            .map_err(|e| format!("cannot create a metadata client: {e}"))?;
        rdkafka::consumer::Consumer::fetch_metadata(&client, None, Duration::from_secs(10))
            .map(|_| ())
            .map_err(|e| format!("no broker answers at {bootstrap} (scripts/kafka.sh start): {e}"))
    })
    .await
    .map_err(|e| e.to_string())?
}

/// Deletes topics (errors ignored: cleanup only).
pub async fn delete_topics(bootstrap: &str, topics: &[String]) {
    if topics.is_empty() {
        return;
    }
    if let Ok(admin) = admin(bootstrap) {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        let opts = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
        let _ =
            tokio::time::timeout(Duration::from_secs(15), admin.delete_topics(&names, &opts)).await;
    }
}

// ---------------------------------------------------------------------------------------
// Process measurements
// ---------------------------------------------------------------------------------------

/// CPU time (user + system) of this process so far, from /proc/self/stat (10 ms ticks).
pub fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which may hold spaces) closed by ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after ')'.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|f| f.parse::<u64>().ok()))
        .sum();
    Duration::from_millis(ticks * 10)
}

/// A `/proc/self/status` line in kB (VmRSS, VmHWM) or as a count (Threads).
pub fn proc_status(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(key)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// The 1-minute load average.
pub fn load1() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".to_owned())
}

/// A name no other run uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    )
}
