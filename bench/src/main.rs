//! `mq-bench`: mq against the hand-written rdkafka loop it replaces, on a real broker.
//!
//! ```text
//! mq-bench [--quick] [--messages N] [--runs R] [--only SECTIONS] [--bootstrap HOST:PORT]
//!          [--latency-secs S] [--latency-rounds R] [--json FILE] [--log FILE]
//! ```
//!
//! Sections (all by default, in this order): `throughput`, `scaling`, `scrape`,
//! `latency`, `footprint`, `rabbit` (RabbitMQ on 127.0.0.1:5672, or `MQ_BENCH_AMQP`). See BENCHMARKS.md for what each measures. The exit status is
//! non-zero when something fails (broker unreachable, a message lost, a scrape error),
//! never because of a number: targets missed are reported as `MISSED`.

mod baseline;
mod common;
mod footprint;
mod keyed;
mod lag;
mod mq_app;
mod outbox;
mod rabbit;
mod reply;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use serde::Serialize;

use common::{cpu_time, load1, unique, unix_us, wait_done, BenchResult, Sink};
use footprint::Footprint;

const SECTIONS: [&str; 9] = [
    "throughput",
    "keyed",
    "outbox",
    "lag",
    "scaling",
    "scrape",
    "latency",
    "footprint",
    "rabbit",
];

/// Sections that run only when named in `--only` (not part of a full run).
const ON_REQUEST: [&str; 1] = ["reply"];

/// Command-line options.
#[derive(Debug, Clone)]
struct Opts {
    quick: bool,
    messages: u64,
    runs: usize,
    bootstrap: String,
    sections: Vec<String>,
    latency_secs: u64,
    latency_rates: Vec<u64>,
    /// `fetch.wait.max.ms` of the latency phases: None = librdkafka's default (500).
    latency_fetch_waits: Vec<Option<u32>>,
    /// `linger.ms` of the latency producer.
    latency_linger_ms: u32,
    latency_rounds: usize,
    footprint_runs: usize,
    scrape_rate: u32,
    json: Option<PathBuf>,
    log: PathBuf,
    keep_topics: bool,
    consumer_props: Vec<(String, String)>,
    /// Contenders of the throughput section (profiling one alone).
    contenders: Vec<System>,
    /// A 6-partition topic kept by an earlier run (`--keep-topics`) holding `messages`.
    throughput_topic: Option<String>,
    /// Tokio worker threads of the benchmark's runtime (default: one per core).
    worker_threads: Option<usize>,
    /// Messages per run of the `rabbit` section.
    rabbit_messages: u64,
    /// `basic.qos` prefetch of both contenders of the `rabbit` section.
    rabbit_prefetch: u16,
}

impl Opts {
    fn parse() -> Result<Opts, String> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let quick = args.iter().any(|a| a == "--quick");
        let mut o = Opts {
            quick,
            messages: if quick { 100_000 } else { 1_000_000 },
            runs: if quick { 3 } else { 5 },
            bootstrap: std::env::var("MQ_BENCH_BOOTSTRAP")
                .unwrap_or_else(|_| "127.0.0.1:9092".to_owned()),
            sections: SECTIONS.iter().map(|s| s.to_string()).collect(),
            latency_secs: if quick { 1 } else { 5 },
            latency_rates: vec![1_000, 10_000],
            latency_fetch_waits: vec![None, Some(10)],
            latency_linger_ms: 5,
            latency_rounds: if quick { 1 } else { 3 },
            footprint_runs: if quick { 1 } else { 3 },
            scrape_rate: 50,
            json: None,
            log: std::env::temp_dir().join("mq-bench.log"),
            keep_topics: false,
            consumer_props: Vec::new(),
            contenders: vec![System::Baseline, System::Mq],
            throughput_topic: None,
            worker_threads: None,
            rabbit_messages: if quick { 20_000 } else { 100_000 },
            rabbit_prefetch: 250,
        };
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
            match a.as_str() {
                "--quick" => {}
                "--messages" => o.messages = num(&val("--messages")?)?,
                "--runs" => o.runs = num::<usize>(&val("--runs")?)?.max(1),
                "--bootstrap" => o.bootstrap = val("--bootstrap")?,
                "--only" => {
                    o.sections = val("--only")?.split(',').map(str::to_owned).collect();
                    if let Some(bad) = o.sections.iter().find(|s| {
                        !SECTIONS.contains(&s.as_str()) && !ON_REQUEST.contains(&s.as_str())
                    }) {
                        return Err(format!(
                            "unknown section {bad:?} (known: {SECTIONS:?}, and {ON_REQUEST:?} on request)"
                        ));
                    }
                }
                "--latency-secs" => o.latency_secs = num::<u64>(&val("--latency-secs")?)?.max(1),
                "--latency-rates" => {
                    o.latency_rates = val("--latency-rates")?
                        .split(',')
                        .map(num)
                        .collect::<Result<_, _>>()?
                }
                "--latency-fetch-wait" => {
                    o.latency_fetch_waits = val("--latency-fetch-wait")?
                        .split(',')
                        .map(|w| match w {
                            "default" => Ok(None),
                            ms => num(ms).map(Some),
                        })
                        .collect::<Result<_, _>>()?
                }
                "--latency-linger" => o.latency_linger_ms = num(&val("--latency-linger")?)?,
                "--latency-rounds" => {
                    o.latency_rounds = num::<usize>(&val("--latency-rounds")?)?.max(1)
                }
                "--footprint-runs" => {
                    o.footprint_runs = num::<usize>(&val("--footprint-runs")?)?.max(1)
                }
                "--scrape-rate" => o.scrape_rate = num::<u32>(&val("--scrape-rate")?)?.max(1),
                "--json" => o.json = Some(PathBuf::from(val("--json")?)),
                "--log" => o.log = PathBuf::from(val("--log")?),
                "--keep-topics" => o.keep_topics = true,
                "--rabbit-messages" => {
                    o.rabbit_messages = num::<u64>(&val("--rabbit-messages")?)?.max(1)
                }
                "--rabbit-prefetch" => {
                    o.rabbit_prefetch = num::<u16>(&val("--rabbit-prefetch")?)?.max(1)
                }
                "--throughput-topic" => o.throughput_topic = Some(val("--throughput-topic")?),
                "--worker-threads" => {
                    o.worker_threads = Some(num::<usize>(&val("--worker-threads")?)?.max(1))
                }
                "--contenders" => {
                    o.contenders = val("--contenders")?
                        .split(',')
                        .map(|c| match c {
                            "baseline" => Ok(System::Baseline),
                            "mq" => Ok(System::Mq),
                            other => Err(format!("unknown contender {other:?}")),
                        })
                        .collect::<Result<_, _>>()?
                }
                "--consumer-prop" => {
                    let kv = val("--consumer-prop")?;
                    let (k, v) = kv
                        .split_once('=')
                        .ok_or_else(|| format!("--consumer-prop wants KEY=VALUE, not {kv:?}"))?;
                    o.consumer_props.push((k.to_owned(), v.to_owned()));
                }
                "-h" | "--help" => {
                    println!("{}", HELP.trim());
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other:?} (see --help)")),
            }
        }
        if o.messages < 6 {
            return Err("--messages must be at least 6".to_owned());
        }
        Ok(o)
    }

    fn wants(&self, section: &str) -> bool {
        self.sections.iter().any(|s| s == section)
    }

    /// Timeout of one consuming run: generous (0.05 s per 1,000 messages, at least 60 s).
    fn run_timeout(&self) -> Duration {
        Duration::from_secs((self.messages / 20_000).max(60))
    }
}

const HELP: &str = r#"
mq-bench: mq against a hand-written rdkafka loop, on a real broker (default 127.0.0.1:9092)

  --quick                 smoke run: 100,000 messages, 3 runs, 1 s latency phases (< 1 min)
  --messages N            messages in the throughput topics (default 1,000,000)
  --runs R                alternating runs of each contender (default 5; 3 with --quick)
  --only a,b              sections: throughput,keyed,outbox,lag,scaling,scrape,latency,footprint,rabbit (default all);
                          reply (request-reply on Kafka and RabbitMQ) only when named
  --bootstrap HOST:PORT   the broker (or MQ_BENCH_BOOTSTRAP)
  --latency-secs S        seconds per latency phase (default 5; 1 with --quick)
  --latency-rates a,b     messages per second of the latency phases (default 1000,10000)
  --latency-rounds R      rounds of latency phases (default 3; 1 with --quick)
  --latency-linger MS     linger.ms of the latency producer (default 5, librdkafka's)
  --latency-fetch-wait a,b  fetch.wait.max.ms of the latency phases, for both contenders
                          (default "default,10": librdkafka's 500 ms, then 10 ms)
  --footprint-runs R      fresh processes per footprint figure (default 3; 1 with --quick)
  --scrape-rate R         /actuator/prometheus scrapes per second (default 50)
  --json FILE             also write the results as JSON
  --log FILE              where the apps' logs go (default $TMPDIR/mq-bench.log)
  --keep-topics           do not delete the benchmark's topics at the end
  --consumer-prop K=V     a librdkafka consumer property for both contenders (repeatable)
  --contenders a,b        throughput section only: baseline,mq (default both; for profiling)
  --throughput-topic T    reuse a 6-partition topic kept with --keep-topics (same --messages)
  --worker-threads N      tokio worker threads of the run (default: one per core)
  --rabbit-messages N     rabbit section: messages per run (default 100,000; 20,000 with --quick)
  --rabbit-prefetch P     rabbit section: basic.qos prefetch of both contenders (default 250)

Exit status: non-zero when something fails (a lost message, a scrape error, no broker);
never because of a number.
"#;

fn num<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.replace(['_', ','], "")
        .parse()
        .map_err(|_| format!("not a number: {s:?}"))
}

// ---------------------------------------------------------------------------------------
// Results
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum System {
    Baseline,
    Mq,
}

impl System {
    fn name(self) -> &'static str {
        match self {
            System::Baseline => "baseline",
            System::Mq => "mq",
        }
    }
}

/// One throughput run.
#[derive(Debug, Clone, Serialize)]
struct Run {
    msgs_per_s: f64,
    /// First record handled → last record handled.
    secs: f64,
    /// Subscribe (baseline) / `App::start` returned (mq) → partitions assigned.
    join_ms: f64,
    /// mq only: the `App::start` call.
    start_ms: Option<f64>,
    /// Process CPU time / wall time, assignment → done.
    cpu_per_wall: f64,
    /// Process CPU time per message (µs), assignment → done.
    cpu_us_per_msg: f64,
    duplicates: u64,
    load: String,
    /// Scrapes per second achieved (scrape runs).
    scrapes: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
struct Pair {
    baseline: Vec<Run>,
    mq: Vec<Run>,
    baseline_median: f64,
    mq_median: f64,
    ratio: f64,
}

#[derive(Debug, Clone, Serialize)]
struct LatencyRow {
    /// `fetch.wait.max.ms` of both contenders (None: librdkafka's default, 500).
    fetch_wait_ms: Option<u32>,
    rate: u64,
    system: System,
    samples: usize,
    achieved_rate: f64,
    p50_us: i64,
    p99_us: i64,
    max_us: i64,
    /// Producer acknowledgement → handler entry: the consumer's share.
    consumer_p50_us: i64,
    consumer_p99_us: i64,
    /// The producer's send → acknowledged (the broker's share, before any consumer).
    ack_p50_us: i64,
    ack_p99_us: i64,
}

#[derive(Debug, Clone, Serialize)]
struct FootprintRow {
    kind: String,
    runs: usize,
    rss_mb: f64,
    hwm_mb: f64,
    threads: u64,
    to_main_ms: f64,
    to_started_ms: f64,
    join_ms: f64,
    to_assigned_ms: f64,
}

#[derive(Debug, Clone, Serialize)]
struct ScrapeResult {
    without_median: f64,
    with_median: f64,
    ratio: f64,
    scrape_rate: f64,
    mean_scrape_bytes: u64,
    mean_scrape_ms: f64,
    /// Process CPU per scrape on an idle app (ms; 10 ms ticks over 2 s windows).
    cpu_per_scrape_ms: f64,
    without: Vec<Run>,
    with: Vec<Run>,
}

#[derive(Debug, Clone, Serialize)]
struct ScalingRow {
    partitions: usize,
    msgs_per_s: f64,
    cpu_per_wall: f64,
    cpu_us_per_msg: f64,
    runs: Vec<Run>,
    /// The baseline on the same topic (1 partition only): msg/s and CPU µs/msg, medians.
    baseline: Option<(f64, f64)>,
}

#[derive(Debug, Clone, Default, Serialize)]
struct Report {
    date: String,
    allocator: &'static str,
    nproc: usize,
    cpu: String,
    mem_mb: u64,
    load_start: String,
    load_end: String,
    messages: u64,
    value_bytes: usize,
    produce_msgs_per_s: Option<f64>,
    throughput: Option<Pair>,
    scaling: Vec<ScalingRow>,
    scrape: Option<ScrapeResult>,
    latency: Vec<LatencyRow>,
    footprint: Vec<FootprintRow>,
    keyed: Option<keyed::KeyedResult>,
    lag: Vec<lag::LagResult>,
    rabbit: Option<rabbit::RabbitResult>,
    reply: Option<reply::ReplyResult>,
    outbox: Option<outbox::OutboxResult>,
}

fn median(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn percentile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

// ---------------------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------------------

/// The benchmark's state: options, topics to clean up.
struct Bench {
    o: Opts,
    topics: Vec<String>,
    prefix: String,
}

impl Bench {
    fn topic(&mut self, what: &str) -> String {
        let t = format!("{}-{what}", self.prefix);
        self.topics.push(t.clone());
        // mq creates `<topic>-dlt` for its listener's topics.
        self.topics.push(format!("{t}-dlt"));
        t
    }

    /// Creates a topic of `partitions` partitions holding messages `0..n`.
    async fn produced_topic(
        &mut self,
        what: &str,
        partitions: usize,
        report: &mut Report,
    ) -> BenchResult<String> {
        let topic = self.topic(what);
        common::create_topics(&self.o.bootstrap, &[(&topic, partitions as i32)]).await?;
        let (bootstrap, t, n) = (self.o.bootstrap.clone(), topic.clone(), self.o.messages);
        let (secs, size) =
            tokio::task::spawn_blocking(move || common::produce_all(&bootstrap, &t, partitions, n))
                .await
                .map_err(|e| e.to_string())??;
        println!(
            "  produced {n} messages (mean value {size} B) to {topic} ({partitions} partitions) in {secs:.2} s: {:.0} msg/s",
            n as f64 / secs
        );
        report.value_bytes = size;
        report.produce_msgs_per_s.get_or_insert(n as f64 / secs);
        Ok(topic)
    }

    /// One consuming run over `topic` (holding messages `0..messages`).
    async fn run(
        &self,
        system: System,
        topic: &str,
        partitions: usize,
        scrape: bool,
    ) -> BenchResult<Run> {
        let o = &self.o;
        let sink = Sink::new(partitions, o.messages, false);
        let group = unique(&format!("{}-{}", self.prefix, system.name()));
        let load = load1();
        let timeout = o.run_timeout();
        let run = match system {
            System::Baseline => {
                let running = baseline::start(&o.bootstrap, &group, topic, sink.clone())?;
                let join = running.wait_assigned(Duration::from_secs(60)).await?;
                let (cpu0, wall0) = (cpu_time(), Instant::now());
                let done = wait_done(&sink, timeout, "baseline").await;
                let (cpu1, wall1) = (cpu_time(), Instant::now());
                running.finish(Duration::from_secs(10)).await?;
                done?;
                finish_run(
                    &sink,
                    o.messages,
                    join,
                    None,
                    cpu1 - cpu0,
                    wall1 - wall0,
                    load,
                    None,
                )?
            }
            System::Mq => {
                let started = mq_app::start(
                    &o.bootstrap,
                    topic,
                    &group,
                    sink.clone(),
                    Duration::from_secs(60),
                )
                .await?;
                let (cpu0, wall0) = (cpu_time(), Instant::now());
                let scraper = match (scrape, started.app.actuator_addr()) {
                    (false, _) => None,
                    (true, Some(addr)) => Some(mq_app::Scraper::start(addr, o.scrape_rate)),
                    (true, None) => return Err("mq: the actuator is not running".to_owned()),
                };
                let done = wait_done(&sink, timeout, "mq").await;
                let (cpu1, wall1) = (cpu_time(), Instant::now());
                let scraped = scraper.map(mq_app::Scraper::finish).transpose();
                started
                    .app
                    .shutdown()
                    .await
                    .map_err(|e| format!("mq shutdown: {e}"))?;
                done?;
                let scraped = scraped?;
                finish_run(
                    &sink,
                    o.messages,
                    started.join,
                    Some(started.start),
                    cpu1 - cpu0,
                    wall1 - wall0,
                    load,
                    scraped.map(|s| s.scrapes as f64 / s.seconds.max(1e-6)),
                )?
            }
        };
        Ok(run)
    }

    /// One latency phase: a fresh topic, the consumer assigned, then `rate` messages a
    /// second for `latency_secs`; latencies of the messages sent after the first second.
    async fn latency_run(&mut self, system: System, rate: u64) -> BenchResult<LatencyPhase> {
        let secs = self.o.latency_secs;
        let topic = self.topic(&format!("lat-{rate}-{}", unique(system.name())));
        common::create_topics(&self.o.bootstrap, &[(&topic, 6)]).await?;
        let n = rate * secs;
        let sink = Sink::new(6, n, true);
        let group = unique(&format!("{}-lat", self.prefix));
        let o = &self.o;
        let timeout = Duration::from_secs(secs + 60);
        enum Consumer {
            Baseline(baseline::Running),
            Mq(Box<mq_app::Started>),
        }
        let consumer = match system {
            System::Baseline => {
                let r = baseline::start(&o.bootstrap, &group, &topic, sink.clone())?;
                r.wait_assigned(Duration::from_secs(60)).await?;
                Consumer::Baseline(r)
            }
            System::Mq => Consumer::Mq(Box::new(
                mq_app::start(
                    &o.bootstrap,
                    &topic,
                    &group,
                    sink.clone(),
                    Duration::from_secs(60),
                )
                .await?,
            )),
        };
        // Let the fetchers start (offset lookup) before the clock runs.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t0 = unix_us();
        let producer = common::produce_at_rate(
            o.bootstrap.clone(),
            topic.clone(),
            6,
            n,
            rate,
            o.latency_linger_ms,
        );
        let done = wait_done(&sink, timeout, system.name()).await;
        let achieved = tokio::task::spawn_blocking(move || producer.join())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|_| "latency producer panicked".to_owned())?;
        match consumer {
            Consumer::Baseline(r) => r.finish(Duration::from_secs(10)).await?,
            Consumer::Mq(s) => s.app.shutdown().await.map_err(|e| e.to_string())?,
        }
        done?;
        let (achieved, acks) = achieved?;
        sink.verify()?;
        // Warm-up: the first second (or fifth of the phase) is not counted.
        let from_us = t0 + (secs * 1_000_000 / 5).min(1_000_000);
        let mut acked_at = vec![0u64; n as usize];
        let mut ack = Vec::with_capacity(acks.len());
        for (id, sent, at) in acks {
            if let Some(slot) = acked_at.get_mut(id as usize) {
                *slot = at;
            }
            if sent >= from_us {
                ack.push(at.saturating_sub(sent) as i64);
            }
        }
        let (mut lat, mut consumer) = (Vec::new(), Vec::new());
        for (id, sent, at) in sink.entries() {
            if sent < from_us {
                continue;
            }
            lat.push(at.saturating_sub(sent) as i64);
            if let Some(&acked) = acked_at.get(id as usize).filter(|a| **a > 0) {
                consumer.push(at as i64 - acked as i64);
            }
        }
        lat.sort_unstable();
        consumer.sort_unstable();
        ack.sort_unstable();
        Ok(LatencyPhase {
            lat,
            consumer,
            acks: ack,
            achieved,
        })
    }
}

/// One series (end to end, consumer share, acks) of a latency phase.
type Series = fn(&LatencyPhase) -> &[i64];

/// Median over rounds of one percentile of one series of the phases.
fn round_median(phases: &[LatencyPhase], series: Series, q: f64) -> i64 {
    median(
        phases
            .iter()
            .map(|p| percentile(series(p), q) as f64)
            .collect(),
    ) as i64
}

/// One latency phase (µs, each sorted): send → handler entry, producer acknowledgement →
/// handler entry (the consumer's share; negative when the record reached the consumer
/// before the acknowledgement reached the producer), send → acknowledgement.
struct LatencyPhase {
    lat: Vec<i64>,
    consumer: Vec<i64>,
    acks: Vec<i64>,
    achieved: f64,
}

#[allow(clippy::too_many_arguments)]
fn finish_run(
    sink: &Sink,
    n: u64,
    join: Duration,
    start: Option<Duration>,
    cpu: Duration,
    wall: Duration,
    load: String,
    scrapes: Option<f64>,
) -> BenchResult<Run> {
    let duplicates = sink.verify()?;
    let (first, last) = sink.window().ok_or("no record was handled")?;
    let secs = (last - first).as_secs_f64().max(1e-6);
    Ok(Run {
        msgs_per_s: n as f64 / secs,
        secs,
        join_ms: join.as_secs_f64() * 1000.0,
        start_ms: start.map(|s| s.as_secs_f64() * 1000.0),
        cpu_per_wall: cpu.as_secs_f64() / wall.as_secs_f64().max(1e-6),
        cpu_us_per_msg: cpu.as_secs_f64() * 1e6 / n as f64,
        duplicates,
        load,
        scrapes,
    })
}

fn print_run(label: &str, i: usize, r: &Run) {
    let start = r
        .start_ms
        .map(|s| format!(", start {s:.1} ms"))
        .unwrap_or_default();
    let scrapes = r
        .scrapes
        .map(|s| format!(", {s:.0} scrapes/s"))
        .unwrap_or_default();
    let dups = if r.duplicates > 0 {
        format!(", {} DUPLICATES", r.duplicates)
    } else {
        String::new()
    };
    println!(
        "  {label:<14} run {i}: {:>9.0} msg/s ({:.3} s){start}, join {:.0} ms, cpu/wall {:.2}, cpu {:.2} µs/msg, load {}{scrapes}{dups}",
        r.msgs_per_s, r.secs, r.join_ms, r.cpu_per_wall, r.cpu_us_per_msg, r.load
    );
}

async fn bench(o: Opts, report: &mut Report) -> BenchResult<()> {
    if o.sections.iter().any(|s| s != "rabbit") {
        common::check_broker(&o.bootstrap).await?;
    }
    let mut b = Bench {
        prefix: unique("mq-bench"),
        o,
        topics: Vec::new(),
    };
    let result = sections(&mut b, report).await;
    if !b.o.keep_topics {
        common::delete_topics(&b.o.bootstrap, &b.topics).await;
    }
    result
}

async fn sections(b: &mut Bench, report: &mut Report) -> BenchResult<()> {
    let runs = b.o.runs;
    let mut tp6: Option<String> = None;

    if b.o.wants("throughput") {
        println!(
            "\n## throughput: 6 partitions, {} messages, {runs} alternating runs each",
            b.o.messages
        );
        let topic = match b.o.throughput_topic.clone() {
            Some(t) => t,
            None => b.produced_topic("tp6", 6, report).await?,
        };
        let (mut base, mut mq) = (Vec::new(), Vec::new());
        for i in 1..=runs {
            for system in b.o.contenders.clone() {
                let r = b.run(system, &topic, 6, false).await?;
                print_run(system.name(), i, &r);
                match system {
                    System::Baseline => base.push(r),
                    System::Mq => mq.push(r),
                }
            }
        }
        let bm = median(base.iter().map(|r| r.msgs_per_s).collect());
        let mm = median(mq.iter().map(|r| r.msgs_per_s).collect());
        println!(
            "  median: baseline {bm:.0} msg/s, mq {mm:.0} msg/s, mq/baseline {:.3}",
            mm / bm
        );
        report.throughput = Some(Pair {
            baseline: base,
            mq,
            baseline_median: bm,
            mq_median: mm,
            ratio: mm / bm,
        });
        tp6 = Some(topic);
    }

    if b.o.wants("rabbit") {
        println!(
            "\n## rabbit: one queue, {} messages, prefetch {}, {runs} alternating runs each",
            b.o.rabbit_messages, b.o.rabbit_prefetch
        );
        report.rabbit = Some(rabbit::run(b.o.rabbit_messages, runs, b.o.rabbit_prefetch).await?);
    }

    if b.o.wants("reply") {
        let (requests, in_flight) = if b.o.quick { (500, 32) } else { (5_000, 64) };
        println!(
            "\n## reply: request–reply round trips, {requests} requests, {in_flight} in flight, {runs} alternating runs each"
        );
        let prefix = b.topic("rr");
        report.reply = Some(reply::run(&b.o.bootstrap, &prefix, requests, in_flight, runs).await?);
    }

    if b.o.wants("lag") {
        let mb: u64 = std::env::var("MQ_BENCH_LAG_MB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if b.o.quick { 1 } else { 100 });
        println!("\n## lag: RSS of a slow consumer (50 ms per record) joining 1 and 48 partitions with {mb} MB of backlog each");
        for partitions in [1usize, 48] {
            let topic = b.topic(&format!("lag{partitions}"));
            common::create_topics(&b.o.bootstrap, &[(&topic, partitions as i32)]).await?;
            let (bootstrap, t) = (b.o.bootstrap.clone(), topic.clone());
            tokio::task::spawn_blocking(move || {
                lag::produce_backlog(&bootstrap, &t, partitions, mb)
            })
            .await
            .map_err(|e| e.to_string())??;
            let (bootstrap, t) = (b.o.bootstrap.clone(), topic.clone());
            let r =
                tokio::task::spawn_blocking(move || lag::measure(&bootstrap, &t, partitions, mb))
                    .await
                    .map_err(|e| e.to_string())??;
            println!(
                "  {partitions:>2} partitions x {mb} MB backlog: RSS {:.1} MB, peak {:.1} MB, {} records handled in the watch",
                r.rss_mb, r.peak_rss_mb, r.handled
            );
            report.lag.push(r);
        }
    }

    if b.o.wants("keyed") {
        let n = (b.o.messages / 50).clamp(1_000, 5_000);
        println!("\n## keyed: 1 partition, 100 keys, handler waits 1 ms, {n} messages: partition order vs key order");
        let topic = b.topic("keyed");
        let r = keyed::run(&b.o.bootstrap, &topic, n).await?;
        for run in [&r.partition, &r.key] {
            println!(
                "  ordering {:<9} {:>8.0} msg/s, out of key order: {}",
                run.ordering, run.msgs_per_s, run.out_of_order
            );
        }
        println!("  key / partition: {:.1}x", r.ratio);
        if r.partition.out_of_order + r.key.out_of_order > 0 {
            return Err("keyed: a key's records were handled out of order".into());
        }
        report.keyed = Some(r);
    }

    if b.o.wants("outbox") {
        let rows = (b.o.messages / 20).clamp(5_000, 50_000);
        let n = (b.o.messages / 50).clamp(2_000, 20_000);
        println!("\n## outbox: relay of {rows} rows (1,000 keys, 6 partitions) on PostgreSQL; plain vs idempotent listener on {n} of them");
        let topic = b.topic("outbox");
        let r = outbox::run(&b.o.bootstrap, &topic, rows, n).await?;
        println!("  relay: {:.0} rows/s published", r.relay_rows_per_s);
        println!(
            "  listener: plain {:.0} msg/s, idempotent {:.0} msg/s, idempotent / plain {:.3}",
            r.plain_msgs_per_s, r.idempotent_msgs_per_s, r.idempotent_ratio
        );
        report.outbox = Some(r);
    }

    if b.o.wants("scaling") {
        println!(
            "\n## scaling: mq over 1, 3 and 6 partitions, {runs} runs each (and the baseline on 1)"
        );
        let mut topics = Vec::new();
        for p in [1usize, 3, 6] {
            let t = match (&tp6, p) {
                (Some(t), 6) => t.clone(),
                _ => b.produced_topic(&format!("tp{p}"), p, report).await?,
            };
            if p == 6 {
                tp6 = Some(t.clone());
            }
            topics.push((p, t));
        }
        let mut rows: Vec<(usize, Vec<Run>)> =
            topics.iter().map(|(p, _)| (*p, Vec::new())).collect();
        // One partition is where the handoff from the poll loop to the lane is the whole
        // pipeline: the baseline runs there too, alternating with mq.
        let mut baseline_1 = Vec::new();
        for i in 1..=runs {
            for (k, (p, t)) in topics.iter().enumerate() {
                if *p == 1 {
                    let r = b.run(System::Baseline, t, 1, false).await?;
                    print_run("baseline 1 p.", i, &r);
                    baseline_1.push(r);
                }
                let r = b.run(System::Mq, t, *p, false).await?;
                print_run(&format!("mq {p} part."), i, &r);
                rows[k].1.push(r);
            }
        }
        for (p, rs) in rows {
            let baseline = (p == 1).then(|| {
                (
                    median(baseline_1.iter().map(|r| r.msgs_per_s).collect()),
                    median(baseline_1.iter().map(|r| r.cpu_us_per_msg).collect()),
                )
            });
            let row = ScalingRow {
                partitions: p,
                msgs_per_s: median(rs.iter().map(|r| r.msgs_per_s).collect()),
                cpu_per_wall: median(rs.iter().map(|r| r.cpu_per_wall).collect()),
                cpu_us_per_msg: median(rs.iter().map(|r| r.cpu_us_per_msg).collect()),
                runs: rs,
                baseline,
            };
            println!(
                "  median: {p} partition(s): {:.0} msg/s, cpu/wall {:.2}, cpu {:.2} µs/msg",
                row.msgs_per_s, row.cpu_per_wall, row.cpu_us_per_msg
            );
            if let Some((msgs, cpu)) = row.baseline {
                println!(
                    "  median: baseline on 1 partition: {msgs:.0} msg/s, cpu {cpu:.2} µs/msg; mq/baseline {:.3}, CPU per message {:.2}x",
                    row.msgs_per_s / msgs,
                    row.cpu_us_per_msg / cpu
                );
            }
            report.scaling.push(row);
        }
    }

    if b.o.wants("scrape") {
        println!(
            "\n## scrape cost: mq on 6 partitions, /actuator/prometheus at {}/s vs none, {runs} alternating runs",
            b.o.scrape_rate
        );
        let topic = match &tp6 {
            Some(t) => t.clone(),
            None => b.produced_topic("tp6", 6, report).await?,
        };
        let (mut without, mut with) = (Vec::new(), Vec::new());
        let mut scraped = Vec::new();
        for i in 1..=runs {
            let r = b.run(System::Mq, &topic, 6, false).await?;
            print_run("mq", i, &r);
            without.push(r);
            let r = b.run(System::Mq, &topic, 6, true).await?;
            print_run("mq + scrape", i, &r);
            scraped.push(r.scrapes.unwrap_or(0.0));
            with.push(r);
        }
        // Size and duration of one scrape, on an idle app after the runs.
        let (stats, cpu_per_scrape_ms) = idle_scrape_stats(b).await?;
        let wo = median(without.iter().map(|r| r.msgs_per_s).collect());
        let wi = median(with.iter().map(|r| r.msgs_per_s).collect());
        println!(
            "  median: no scrape {wo:.0} msg/s, scraped {wi:.0} msg/s, ratio {:.3}; one scrape: {} B in {:.2} ms, {:.2} ms of process CPU",
            wi / wo,
            stats.mean_bytes,
            stats.mean_ms,
            cpu_per_scrape_ms
        );
        report.scrape = Some(ScrapeResult {
            without_median: wo,
            with_median: wi,
            ratio: wi / wo,
            scrape_rate: median(scraped),
            mean_scrape_bytes: stats.mean_bytes,
            mean_scrape_ms: stats.mean_ms,
            cpu_per_scrape_ms,
            without,
            with,
        });
    }

    if b.o.wants("latency") {
        println!(
            "\n## latency: produce at a fixed rate, send → handler entry, {} s phases, {} round(s); percentiles are the median over rounds, max the max",
            b.o.latency_secs, b.o.latency_rounds
        );
        let base_props = b.o.consumer_props.clone();
        for wait in b.o.latency_fetch_waits.clone() {
            let mut props = base_props.clone();
            let wait_label = match wait {
                Some(ms) => {
                    props.push(("fetch.wait.max.ms".to_owned(), ms.to_string()));
                    format!("fetch.wait.max.ms={ms}")
                }
                None => "fetch.wait.max.ms default".to_owned(),
            };
            common::set_consumer_props(props);
            println!("  -- both consumers with {wait_label}");
            let rates = b.o.latency_rates.clone();
            for rate in rates {
                let mut phases: [Vec<LatencyPhase>; 2] = Default::default();
                for round in 1..=b.o.latency_rounds {
                    for (k, system) in [System::Baseline, System::Mq].into_iter().enumerate() {
                        let load = load1();
                        let ph = b.latency_run(system, rate).await?;
                        println!(
                        "  {:<8} {rate:>6}/s round {round}: p50 {} µs, p99 {} µs, max {} µs ({} samples); ack → handler p50 {} µs, p99 {} µs; send → ack p50 {} µs, p99 {} µs; sent at {:.0}/s, load {load}",
                        system.name(),
                        percentile(&ph.lat, 0.5),
                        percentile(&ph.lat, 0.99),
                        ph.lat.last().copied().unwrap_or(0),
                        ph.lat.len(),
                        percentile(&ph.consumer, 0.5),
                        percentile(&ph.consumer, 0.99),
                        percentile(&ph.acks, 0.5),
                        percentile(&ph.acks, 0.99),
                        ph.achieved,
                    );
                        phases[k].push(ph);
                    }
                }
                for (k, system) in [System::Baseline, System::Mq].into_iter().enumerate() {
                    let ph = std::mem::take(&mut phases[k]);
                    let (lat, consumer, acks): (Series, Series, Series) =
                        (|p| &p.lat, |p| &p.consumer, |p| &p.acks);
                    report.latency.push(LatencyRow {
                        fetch_wait_ms: wait,
                        rate,
                        system,
                        samples: ph.iter().map(|p| p.lat.len()).sum(),
                        achieved_rate: median(ph.iter().map(|p| p.achieved).collect()),
                        p50_us: round_median(&ph, lat, 0.5),
                        p99_us: round_median(&ph, lat, 0.99),
                        max_us: ph
                            .iter()
                            .filter_map(|p| p.lat.last().copied())
                            .max()
                            .unwrap_or(0),
                        consumer_p50_us: round_median(&ph, consumer, 0.5),
                        consumer_p99_us: round_median(&ph, consumer, 0.99),
                        ack_p50_us: round_median(&ph, acks, 0.5),
                        ack_p99_us: round_median(&ph, acks, 0.99),
                    });
                }
            }
        }
        common::set_consumer_props(base_props);
    }

    if b.o.wants("footprint") {
        println!(
            "\n## footprint: a fresh process with one listener (and a bare rdkafka consumer), {} run(s) each",
            b.o.footprint_runs
        );
        let topic = b.topic("idle");
        let dlt = format!("{topic}-dlt");
        common::create_topics(&b.o.bootstrap, &[(&topic, 6), (&dlt, 6)]).await?;
        for kind in ["mq", "rdkafka"] {
            let mut runs: Vec<Footprint> = Vec::new();
            for i in 1..=b.o.footprint_runs {
                let f = footprint::measure_child(kind, &b.o.bootstrap, &topic).await?;
                println!(
                    "  {kind:<8} run {i}: RSS {:.1} MB (peak {:.1} MB, {} threads); spawn → main {:.1} ms, → started {:.1} ms, join {:.1} ms, → assigned {:.1} ms",
                    f.rss_kb as f64 / 1024.0,
                    f.hwm_kb as f64 / 1024.0,
                    f.threads,
                    f.to_main_ms,
                    f.to_started_ms,
                    f.join_ms,
                    f.to_assigned_ms
                );
                runs.push(f);
            }
            let m = |f: fn(&Footprint) -> f64| median(runs.iter().map(f).collect());
            report.footprint.push(FootprintRow {
                kind: kind.to_owned(),
                runs: runs.len(),
                rss_mb: m(|f| f.rss_kb as f64 / 1024.0),
                hwm_mb: m(|f| f.hwm_kb as f64 / 1024.0),
                threads: m(|f| f.threads as f64) as u64,
                to_main_ms: m(|f| f.to_main_ms),
                to_started_ms: m(|f| f.to_started_ms),
                join_ms: m(|f| f.join_ms),
                to_assigned_ms: m(|f| f.to_assigned_ms),
            });
        }
    }
    Ok(())
}

/// Scrapes an idle app for 2 s: size, duration and process CPU time of one scrape.
async fn idle_scrape_stats(b: &mut Bench) -> BenchResult<(mq_app::ScrapeStats, f64)> {
    let topic = b.topic("scrape-idle");
    common::create_topics(&b.o.bootstrap, &[(&topic, 1)]).await?;
    let sink = Sink::new(1, 1, false);
    let started = mq_app::start(
        &b.o.bootstrap,
        &topic,
        &unique("g"),
        sink,
        Duration::from_secs(60),
    )
    .await?;
    let addr = started
        .app
        .actuator_addr()
        .ok_or("the actuator is not running")?;
    // The idle app's own CPU first, then the same time scraped: the difference is the
    // scrapes' (server and the client thread of this process).
    let window = Duration::from_secs(2);
    let cpu0 = cpu_time();
    tokio::time::sleep(window).await;
    let idle = cpu_time() - cpu0;
    let scraper = mq_app::Scraper::start(addr, b.o.scrape_rate);
    let cpu1 = cpu_time();
    tokio::time::sleep(window).await;
    let scraped = cpu_time() - cpu1;
    let stats = scraper.finish();
    started.app.shutdown().await.map_err(|e| e.to_string())?;
    let stats = stats?;
    let per_scrape_ms =
        scraped.saturating_sub(idle).as_secs_f64() * 1000.0 / stats.scrapes.max(1) as f64;
    Ok((stats, per_scrape_ms))
}

// ---------------------------------------------------------------------------------------
// Summary
// ---------------------------------------------------------------------------------------

/// µs as ms with one decimal.
fn ms(us: i64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn summary(r: &Report) -> String {
    let mut s = String::new();
    let mut line = |l: String| {
        s.push_str(&l);
        s.push('\n');
    };
    line(format!(
        "machine: {} cores, {}, {} MB RAM; {}; load {} → {}",
        r.nproc, r.cpu, r.mem_mb, r.date, r.load_start, r.load_end
    ));
    line(format!("allocator: {ALLOCATOR_NAME}"));
    line(format!(
        "messages: {} per throughput topic, value {} B (CloudEvents structured JSON)",
        r.messages, r.value_bytes
    ));
    line(String::new());
    line("| figure | baseline | mq | mq / baseline | target | |".to_owned());
    line("| --- | ---: | ---: | ---: | --- | --- |".to_owned());
    if let Some(q) = &r.rabbit {
        line(format!(
            "| RabbitMQ queue, {} messages, prefetch {}: faster hand-written lapin loop (ack each {:.0}, batched {:.0}) vs mq listener (msg/s) | {:.0} | {:.0} | {:.3} | ≥ 0.90 | {} |",
            q.messages,
            q.prefetch,
            q.per_message_median,
            q.batched_median,
            q.baseline_median,
            q.mq_median,
            q.ratio,
            verdict(q.ratio >= 0.90)
        ));
    }
    for l in &r.lag {
        line(format!(
            "| peak RSS, slow consumer, {} partitions x {} MB backlog (MB) | | {:.1} | | bounded | |",
            l.partitions, l.backlog_mb_per_partition, l.peak_rss_mb
        ));
    }
    if let Some(o) = &r.outbox {
        line(format!(
            "| outbox relay, {} rows on PostgreSQL (rows/s) | | {:.0} | | | |",
            o.relay_rows, o.relay_rows_per_s
        ));
        line(format!(
            "| idempotent ÷ plain listener, {} records (msg/s) | {:.0} (plain) | {:.0} (idempotent) | {:.3} | | |",
            o.listener_messages, o.plain_msgs_per_s, o.idempotent_msgs_per_s, o.idempotent_ratio
        ));
    }
    if let Some(k) = &r.keyed {
        line(format!(
            "| key order ÷ partition order, 1 partition, 100 keys, 1 ms handler (msg/s) | {:.0} (partition) | {:.0} (key) | {:.1} | ≥ 10 | {} |",
            k.partition.msgs_per_s,
            k.key.msgs_per_s,
            k.ratio,
            verdict(k.ratio >= 10.0)
        ));
    }
    if let Some(t) = &r.throughput {
        let bj = median(t.baseline.iter().map(|x| x.join_ms).collect());
        let mj = median(t.mq.iter().map(|x| x.join_ms).collect());
        let bc = median(t.baseline.iter().map(|x| x.cpu_per_wall).collect());
        let mc = median(t.mq.iter().map(|x| x.cpu_per_wall).collect());
        let bu = median(t.baseline.iter().map(|x| x.cpu_us_per_msg).collect());
        let mu = median(t.mq.iter().map(|x| x.cpu_us_per_msg).collect());
        line(format!(
            "| throughput, 6 partitions (msg/s, median of {}) | {:.0} | {:.0} | {:.3} | ≥ 0.90 | {} |",
            t.mq.len(),
            t.baseline_median,
            t.mq_median,
            t.ratio,
            verdict(t.ratio >= 0.90)
        ));
        line(format!(
            "| process CPU time per message (µs) | {bu:.2} | {mu:.2} | {:.2} | ≤ 1.25 | {} |",
            mu / bu.max(1e-9),
            verdict(mu / bu.max(1e-9) <= 1.25)
        ));
        line(format!(
            "| CPU time / wall time while consuming | {bc:.2} | {mc:.2} | | | |"
        ));
        line(format!(
            "| group join (ms, median) | {bj:.0} | {mj:.0} | | | |"
        ));
    }
    let configs: Vec<(Option<u32>, u64)> = {
        let mut v: Vec<(Option<u32>, u64)> = r
            .latency
            .iter()
            .map(|l| (l.fetch_wait_ms, l.rate))
            .collect();
        v.dedup();
        v
    };
    for (wait, rate) in configs {
        let get = |sys: System| {
            r.latency
                .iter()
                .find(|l| l.rate == rate && l.fetch_wait_ms == wait && l.system == sys)
        };
        let w = match wait {
            Some(ms) => format!("fetch.wait.max.ms={ms}"),
            None => "default fetch wait".to_owned(),
        };
        if let (Some(b), Some(m)) = (get(System::Baseline), get(System::Mq)) {
            let ratio = m.p99_us as f64 / b.p99_us.max(1) as f64;
            line(format!(
                "| latency {rate}/s, {w}: p50 / p99 / max (ms) | {} / {} / {} | {} / {} / {} | p99 {ratio:.2} | p99 ≤ 1.2 | {} |",
                ms(b.p50_us),
                ms(b.p99_us),
                ms(b.max_us),
                ms(m.p50_us),
                ms(m.p99_us),
                ms(m.max_us),
                verdict(ratio <= 1.2)
            ));
            line(format!(
                "| (of which producer ack → handler, {rate}/s, {w}: p50 / p99, ms) | {} / {} | {} / {} | p99 {:.2} | | |",
                ms(b.consumer_p50_us),
                ms(b.consumer_p99_us),
                ms(m.consumer_p50_us),
                ms(m.consumer_p99_us),
                m.consumer_p99_us as f64 / b.consumer_p99_us.max(1) as f64
            ));
            line(format!(
                "| (producer send → ack {rate}/s, {w}: p50 / p99, ms) | {} / {} | {} / {} | | | |",
                ms(b.ack_p50_us),
                ms(b.ack_p99_us),
                ms(m.ack_p50_us),
                ms(m.ack_p99_us)
            ));
        }
    }
    let fp = |k: &str| r.footprint.iter().find(|f| f.kind == k);
    if let Some(m) = fp("mq") {
        let b = fp("rdkafka");
        let bv =
            |f: fn(&FootprintRow) -> f64| b.map(|b| format!("{:.1}", f(b))).unwrap_or_default();
        line(format!(
            "| idle RSS after assignment (MB) | {} | {:.1} | | ≤ 20 | {} |",
            bv(|f| f.rss_mb),
            m.rss_mb,
            verdict(m.rss_mb <= 20.0)
        ));
        line(format!(
            "| process start → ready, without group join (ms) | {} | {:.1} | | ≤ 100 | {} |",
            bv(|f| f.to_started_ms),
            m.to_started_ms,
            verdict(m.to_started_ms <= 100.0)
        ));
        line(format!(
            "| group join (ms) | {} | {:.1} | | | |",
            bv(|f| f.join_ms),
            m.join_ms
        ));
        line(format!(
            "| process start → all listeners assigned (ms) | {} | {:.1} | | | |",
            bv(|f| f.to_assigned_ms),
            m.to_assigned_ms
        ));
    }
    if let Some(sc) = &r.scrape {
        line(format!(
            "| mq throughput scraped at {:.0}/s ÷ unscraped | | {:.0} / {:.0} | {:.3} | | |",
            sc.scrape_rate, sc.with_median, sc.without_median, sc.ratio
        ));
        line(format!(
            "| one scrape on an idle app: bytes, client-side ms, process CPU ms | | {} B, {:.2}, {:.2} | | | |",
            sc.mean_scrape_bytes, sc.mean_scrape_ms, sc.cpu_per_scrape_ms
        ));
    }
    for row in &r.scaling {
        if let Some((msgs, cpu)) = row.baseline {
            let ratio = row.msgs_per_s / msgs;
            line(format!(
                "| throughput, 1 partition (msg/s, median) | {msgs:.0} | {:.0} | {ratio:.3} | ≥ 0.90 | {} |",
                row.msgs_per_s,
                verdict(ratio >= 0.90)
            ));
            line(format!(
                "| process CPU time per message, 1 partition (µs) | {cpu:.2} | {:.2} | {:.2} | ≤ 1.25 | {} |",
                row.cpu_us_per_msg,
                row.cpu_us_per_msg / cpu,
                verdict(row.cpu_us_per_msg / cpu <= 1.25)
            ));
        }
        line(format!(
            "| mq throughput, {} partition(s) (msg/s; CPU/wall; CPU µs/msg) | | {:.0} ({:.2}; {:.2}) | | | |",
            row.partitions, row.msgs_per_s, row.cpu_per_wall, row.cpu_us_per_msg
        ));
    }
    s
}

fn machine(report: &mut Report) {
    report.allocator = ALLOCATOR_NAME;
    report.nproc = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    report.cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
        })
        .unwrap_or_else(|| "?".to_owned());
    report.mem_mb = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                l.strip_prefix("MemTotal:")
                    .and_then(|r| r.split_whitespace().next())
                    .and_then(|kb| kb.parse::<u64>().ok())
            })
        })
        .unwrap_or(0)
        / 1024;
    report.date = chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string();
    report.load_start = load1();
}

fn init_logging(path: &PathBuf) -> BenchResult<()> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::Layer;
    let file =
        std::fs::File::create(path).map_err(|e| format!("log file {}: {e}", path.display()))?;
    // The same subscriber mq installs by default (fmt, `info` unless RUST_LOG says
    // otherwise), writing to a file instead of stdout: the per-message costs are the same.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(std::sync::Mutex::new(file))
        .with_filter(filter);
    // Trace export as mq installs it when `OTEL_EXPORTER_OTLP_*` asks (BENCHMARKS.md,
    // "Trace export"): every mq run of this process exports.
    let export = mq_core::Config::from_yaml_str("{}")
        .and_then(|c| c.trace_export())
        .map_err(|e| e.to_string())?;
    let otel = match &export {
        Some(export) => {
            let (layer, exporter) = mq_core::telemetry::layer(export)?;
            // Lives as long as the process: the export thread sends until the end.
            std::mem::forget(exporter);
            println!(
                "trace export on: {} (sampling {})",
                export.endpoint, export.probability
            );
            Some(layer)
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(logs)
        .with(otel)
        .try_init()
        .map_err(|e| e.to_string())
}

/// The process allocator, for both contenders and for librdkafka's C allocations too
/// (`override_allocator_on_supported_platforms` replaces `malloc` itself).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The allocator this binary was built with, printed with every report.
const ALLOCATOR_NAME: &str = if cfg!(feature = "jemalloc") {
    "jemalloc (malloc overridden: Rust and librdkafka)"
} else {
    "glibc malloc (built with --no-default-features)"
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("--lag-child") {
        let get = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
        return match lag::child(get(2), get(3)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("lag child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if args.get(1).map(String::as_str) == Some("--footprint-child") {
        let get = |i: usize| args.get(i).map(String::as_str).unwrap_or("");
        return match footprint::child(get(2), get(3), get(4)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("footprint child: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let o = match Opts::parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("mq-bench: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = init_logging(&o.log) {
        eprintln!("mq-bench: {e}");
        return ExitCode::FAILURE;
    }
    common::set_consumer_props(o.consumer_props.clone());
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = o.worker_threads {
        builder.worker_threads(n);
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mq-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut report = Report {
        messages: o.messages,
        ..Report::default()
    };
    machine(&mut report);
    println!(
        "mq-bench{}: {} messages, broker {}, logs in {}",
        if o.quick { " --quick" } else { "" },
        o.messages,
        o.bootstrap,
        o.log.display()
    );
    println!(
        "machine: {} cores, {}, {} MB; {}; load {}",
        report.nproc, report.cpu, report.mem_mb, report.date, report.load_start
    );
    println!("allocator: {ALLOCATOR_NAME}");
    let started = Instant::now();
    let json = o.json.clone();
    let result = rt.block_on(bench(o, &mut report));
    report.load_end = load1();
    println!("\n## summary ({:.0} s)\n", started.elapsed().as_secs_f64());
    print!("{}", summary(&report));
    if let Some(path) = json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => {
                if let Err(e) = std::fs::write(&path, text) {
                    eprintln!("mq-bench: cannot write {}: {e}", path.display());
                }
            }
            Err(e) => eprintln!("mq-bench: {e}"),
        }
    }
    // Let librdkafka's background threads wind down before the process exits.
    rt.shutdown_timeout(Duration::from_secs(5));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nmq-bench FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}
