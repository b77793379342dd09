//! The contender: the same work as a `#[listener]` run by `App`, with mq's defaults.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mq_core::prelude::*;
use mq_core::{Config, RunningApp};

use crate::common::{BenchResult, OrderCreated, Sink};

/// The listener: decode (by the framework), then the same trivial handler as the baseline.
/// Its topic and group are set per run under `mq.listeners.bench_listener`.
#[listener(topic = "mq-bench", group = "mq-bench")]
async fn bench_listener(
    event: Event<OrderCreated>,
    ctx: Context,
    sink: State<Arc<Sink>>,
) -> Result<(), HandlerError> {
    sink.handle(ctx.partition(), &event.data);
    Ok(())
}

/// The listener's name, for `only_listeners`.
pub const LISTENER: &str = "bench_listener";

/// A service configuration: the broker, the listener's topic and group, the actuator on
/// an ephemeral loopback port with `prometheus` exposed. Everything else is mq's default.
pub fn config(bootstrap: &str, topic: &str, group: &str) -> BenchResult<Config> {
    let mut props = String::new();
    for (k, v) in crate::common::consumer_props() {
        props.push_str(&format!("        {k}: \"{v}\"\n"));
    }
    if !props.is_empty() {
        props.insert_str(0, "    consumer:\n      properties:\n");
    }
    let yaml = format!(
        r#"
mq:
  application:
    name: mq-bench
  kafka:
    bootstrap-servers: "{bootstrap}"
{props}  listeners:
    {LISTENER}:
      topics: ["{topic}"]
      group: "{group}"
  shutdown:
    timeout: 10s
management:
  server:
    address: 127.0.0.1
    port: 0
  endpoints:
    web:
      exposure:
        include: [health, prometheus]
"#
    );
    Config::from_yaml_str(&yaml).map_err(|e| e.to_string())
}

/// A started app and how long starting took.
pub struct Started {
    pub app: RunningApp,
    /// `App::start` call → returned.
    pub start: Duration,
    /// `App::start` returned → every listener assigned (the broker's group join).
    pub join: Duration,
}

/// Starts the app with the bench listener on `topic` and waits for its assignment.
pub async fn start(
    bootstrap: &str,
    topic: &str,
    group: &str,
    sink: Arc<Sink>,
    timeout: Duration,
) -> BenchResult<Started> {
    let config = config(bootstrap, topic, group)?;
    let t0 = Instant::now();
    let app = App::new(config)
        .with_state(sink)
        .only_listeners([LISTENER])
        .start()
        .await
        .map_err(|e| format!("mq start: {e}"))?;
    let start = t0.elapsed();
    let t1 = Instant::now();
    while !app.all_assigned() {
        if t1.elapsed() > timeout {
            let _ = app.shutdown().await;
            return Err("mq: no partitions assigned in time".to_owned());
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Ok(Started {
        app,
        start,
        join: t1.elapsed(),
    })
}

/// Scrapes `/actuator/prometheus` at a fixed rate from a thread of its own (one new
/// connection per scrape, as Prometheus does after an idle timeout), until dropped.
pub struct Scraper {
    stop: Arc<AtomicBool>,
    join: Option<std::thread::JoinHandle<BenchResult<ScrapeStats>>>,
}

/// What the scraper saw.
#[derive(Debug, Clone, Default)]
pub struct ScrapeStats {
    pub scrapes: u64,
    pub mean_bytes: u64,
    pub mean_ms: f64,
    /// How long the scraper ran.
    pub seconds: f64,
}

impl Scraper {
    pub fn start(addr: SocketAddr, per_second: u32) -> Scraper {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let join = std::thread::spawn(move || {
            let (mut scrapes, mut bytes) = (0u64, 0u64);
            let mut busy = Duration::ZERO;
            let started = Instant::now();
            let period = Duration::from_secs(1) / per_second;
            let mut i = 0u32;
            while !flag.load(Ordering::Relaxed) {
                let due = started + period * i;
                let now = Instant::now();
                if due > now {
                    std::thread::sleep(due - now);
                }
                i += 1;
                let t = Instant::now();
                let body = scrape(addr)?;
                busy += t.elapsed();
                scrapes += 1;
                bytes += body as u64;
            }
            let n = scrapes.max(1);
            Ok(ScrapeStats {
                scrapes,
                mean_bytes: bytes / n,
                mean_ms: busy.as_secs_f64() * 1000.0 / n as f64,
                seconds: started.elapsed().as_secs_f64(),
            })
        });
        Scraper {
            stop,
            join: Some(join),
        }
    }

    /// Stops and returns what it saw; an error if any scrape failed.
    pub fn finish(mut self) -> BenchResult<ScrapeStats> {
        self.stop.store(true, Ordering::Relaxed);
        match self.join.take().map(|j| j.join()) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err("scraper panicked".to_owned()),
            None => Err("scraper already finished".to_owned()),
        }
    }
}

impl Drop for Scraper {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// One `GET /actuator/prometheus`; the body size, or an error unless 200 with the
/// listener timer in it.
fn scrape(addr: SocketAddr) -> BenchResult<usize> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("scrape connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(
        b"GET /actuator/prometheus HTTP/1.1\r\nHost: localhost\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\nConnection: close\r\n\r\n",
    )
    .map_err(|e| format!("scrape write: {e}"))?;
    let mut resp = Vec::with_capacity(64 * 1024);
    s.read_to_end(&mut resp)
        .map_err(|e| format!("scrape read: {e}"))?;
    let text = String::from_utf8_lossy(&resp);
    let status_ok = text.starts_with("HTTP/1.1 200");
    let has_timer = text.contains("spring_kafka_listener_seconds");
    if !status_ok || !has_timer {
        let head: String = text.chars().take(200).collect();
        return Err(format!("scrape: unexpected answer: {head:?}"));
    }
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.len())
        .unwrap_or(0);
    Ok(body)
}
