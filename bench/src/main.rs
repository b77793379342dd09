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
mod options;
mod outbox;
mod rabbit;
mod reply;
mod runs;
mod sections;
mod summary;

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

async fn bench(o: Opts, report: &mut Report) -> BenchResult<()> {
    if o.sections.iter().any(|s| s != "rabbit") {
        common::check_broker(&o.bootstrap).await?;
    }
    let mut b = Bench {
        prefix: unique("mq-bench"),
        o,
        topics: Vec::new(),
    };
    let result = sections::sections(&mut b, report).await;
    if !b.o.keep_topics {
        common::delete_topics(&b.o.bootstrap, &b.topics).await;
    }
    result
}

// ---------------------------------------------------------------------------------------
// Summary
// ---------------------------------------------------------------------------------------
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
    print!("{}", summary::summary(&report));
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
