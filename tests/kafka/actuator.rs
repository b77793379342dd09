//! The actuator over HTTP against the real broker: Prometheus counts match the traffic,
//! `/actuator/metrics` agrees, health follows a broker that stops and comes back while
//! liveness stays up, unexposed endpoints are 404, and no response carries a secret.

use crate::support;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use mq_core::actuator::Health;
use mq_core::prelude::*;
use mq_core::{App, RunningApp};
use serde_json::{json, Value};
use support::{config, http, promtool_check_metrics, read_topic, unique, HttpResponse};

const WAIT: Duration = Duration::from_secs(60);
/// A secret put into the consumer properties: no response may contain it.
const SECRET: &str = "sup3r-s3cret-Pa55word";

#[derive(Debug, Serialize, Deserialize)]
struct Job {
    n: u32,
    reject: bool,
}

/// Rejects (permanently: straight to the DLT) the jobs marked `reject`.
#[listener(topic = "actuator-jobs")]
async fn act_jobs(job: Job) -> Result<(), HandlerError> {
    if job.reject {
        Err(HandlerError::permanent_msg(format!(
            "job {} rejected",
            job.n
        )))
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// GET helpers over `support::http`.

async fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    get_with(addr, path, None).await
}

async fn get_with(addr: SocketAddr, path: &str, accept: Option<&str>) -> HttpResponse {
    http(addr, "GET", path, None, accept).await
}

/// The actuator's address, with an unspecified bind address replaced by loopback.
fn actuator(app: &RunningApp) -> SocketAddr {
    let mut addr = app.actuator_addr().expect("actuator enabled");
    if addr.ip().is_unspecified() {
        addr.set_ip([127, 0, 0, 1].into());
    }
    addr
}

// ---------------------------------------------------------------------------------------
// Prometheus scrapes, parsed with a real parser.

const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn parse_prometheus(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("parse")
}

fn scalar(v: &prometheus_parse::Value) -> f64 {
    match v {
        prometheus_parse::Value::Counter(x)
        | prometheus_parse::Value::Gauge(x)
        | prometheus_parse::Value::Untyped(x) => *x,
        other => panic!("not a scalar: {other:?}"),
    }
}

/// Sum of the scalar samples named `metric` whose labels include every `labels` pair.
fn sum(scrape: &prometheus_parse::Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| scalar(&s.value))
        .sum()
}

fn find<'a>(
    scrape: &'a prometheus_parse::Scrape,
    metric: &str,
    labels: &[(&str, &str)],
) -> Option<&'a prometheus_parse::Sample> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == metric)
        .find(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
}

async fn scrape_text(addr: SocketAddr) -> (String, prometheus_parse::Scrape) {
    let r = get_with(addr, "/actuator/prometheus", None).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.content_type, TEXT_004);
    let scrape = parse_prometheus(&r.body);
    (r.body, scrape)
}

// ---------------------------------------------------------------------------------------

fn jobs_config(topic: &str, group: &str, bootstrap: &str, concurrency: u32) -> mq_core::Config {
    config(&format!(
        r#"
mq:
  application:
    name: act-svc
    version: 9.9.9-test
  profiles:
    active: [actuator-test]
  kafka:
    bootstrap-servers: "{bootstrap}"
    consumer:
      properties:
        sasl.password: "{SECRET}"
  listeners:
    act_jobs:
      topics: ["{topic}"]
      group: "{group}"
      concurrency: {concurrency}
management:
  server:
    address: 127.0.0.1
  endpoints:
    web:
      exposure:
        include: "*"
  endpoint:
    health:
      show-details: always
  metrics:
    tags:
      region: test-eu
      deployment-env: prod   # not a legal label name: becomes deployment_env
      name: shop             # shadowed by each series' own `name`
"#
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_metrics_info_and_health_match_the_traffic() {
    const OK: usize = 20;
    const REJECTED: usize = 5;
    let topic = unique("act-jobs");
    let app = App::new(jobs_config(&topic, &unique("g"), &support::bootstrap(), 1))
        .with_health_indicator("warehouse", || Health::up().with_detail("stock", 12))
        .only_listeners(["act_jobs"])
        .start()
        .await
        .expect("app starts");
    assert!(app.wait_assigned(WAIT).await, "no partition assigned");
    let addr = actuator(&app);

    let publisher = app.publisher();
    for n in 0..(OK + REJECTED) as u32 {
        let job = Job {
            n,
            reject: n % 5 == 4,
        };
        publisher
            .send(&topic, n.to_string(), job)
            .await
            .expect("sent");
    }

    // Scrape until every record is accounted for.
    let deadline = Instant::now() + WAIT;
    let (text, scrape) = loop {
        let (text, scrape) = scrape_text(addr).await;
        let handled = sum(
            &scrape,
            "spring_kafka_listener_seconds_count",
            &[("name", "act_jobs")],
        );
        let dead = sum(
            &scrape,
            "mq_listener_dead_lettered_total",
            &[("name", "act_jobs")],
        );
        if handled as usize >= OK + REJECTED && dead as usize >= REJECTED {
            break (text, scrape);
        }
        assert!(
            Instant::now() < deadline,
            "traffic not seen in time:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    println!("--- /actuator/prometheus (text/plain) ---\n{text}");

    let me = [("name", "act_jobs")];
    let success = [
        ("name", "act_jobs"),
        ("result", "success"),
        ("exception", "none"),
    ];
    assert_eq!(
        sum(&scrape, "spring_kafka_listener_seconds_count", &success),
        OK as f64
    );
    let failures = [("name", "act_jobs"), ("result", "failure")];
    assert_eq!(
        sum(&scrape, "spring_kafka_listener_seconds_count", &failures),
        REJECTED as f64
    );
    let failure = find(&scrape, "spring_kafka_listener_seconds_count", &failures).unwrap();
    assert_ne!(failure.labels.get("exception"), Some("none"));
    assert!(sum(&scrape, "spring_kafka_listener_seconds_sum", &success) > 0.0);
    // The histogram's +Inf bucket counts every observation.
    let histogram = find(&scrape, "spring_kafka_listener_seconds", &success).expect("histogram");
    match &histogram.value {
        prometheus_parse::Value::Histogram(buckets) => {
            let inf = buckets.iter().find(|b| b.less_than.is_infinite()).unwrap();
            assert_eq!(inf.count, OK as f64);
        }
        other => panic!("not a histogram: {other:?}"),
    }
    assert_eq!(
        sum(&scrape, "mq_listener_dead_lettered_total", &me),
        REJECTED as f64
    );
    assert_eq!(
        sum(&scrape, "mq_listener_retries_total", &me),
        0.0,
        "permanent errors are not retried"
    );
    assert_eq!(sum(&scrape, "mq_listener_decode_errors_total", &me), 0.0);
    assert_eq!(sum(&scrape, "mq_listener_in_flight", &me), 0.0);
    // Sends: the jobs, then the dead letters.
    assert_eq!(
        sum(
            &scrape,
            "spring_kafka_template_seconds_count",
            &[("name", "publisher"), ("result", "success")]
        ),
        (OK + 2 * REJECTED) as f64
    );
    // Counters keep `_total` and are typed as counters in the 0.0.4 format.
    assert!(matches!(
        find(&scrape, "mq_listener_dead_lettered_total", &me)
            .unwrap()
            .value,
        prometheus_parse::Value::Counter(_)
    ));
    assert!(!text.contains("# EOF") && !text.contains("# UNIT") && !text.contains("_created"));
    // Process metrics.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(sum(&scrape, "process_cpu_seconds_total", &[]) > 0.0);
    assert!(sum(&scrape, "process_resident_memory_bytes", &[]) > 1e6);
    assert!(sum(&scrape, "process_open_fds", &[]) > 0.0);
    let start = sum(&scrape, "process_start_time_seconds", &[]);
    // (/proc/stat's boot time is whole seconds and drifts a little.)
    assert!(
        start > now - 86_400.0 && start <= now + 5.0,
        "start time {start}"
    );
    // Common tags on every series, keys made legal label names; a series' own `name`
    // wins over the common tag `name`.
    for s in &scrape.samples {
        assert_eq!(s.labels.get("application"), Some("act-svc"), "{}", s.metric);
        assert_eq!(s.labels.get("region"), Some("test-eu"), "{}", s.metric);
        assert_eq!(s.labels.get("deployment_env"), Some("prod"), "{}", s.metric);
    }
    assert!(!text.contains("deployment-env"), "{text}");
    assert!(find(&scrape, "mq_listener_in_flight", &[("name", "act_jobs")]).is_some());
    // Micrometer's `_max` gauge of the timer: the longest handling of the last minutes.
    let max = sum(
        &scrape,
        "spring_kafka_listener_seconds_max",
        &[("name", "act_jobs"), ("result", "success")],
    );
    assert!(max > 0.0 && max < 30.0, "max {max}");
    // Prometheus's own checker accepts the scrape (a repeated or illegal label would
    // make Prometheus reject all of it).
    promtool_check_metrics(&text);

    // Spring Boot's negotiation: text 0.0.4 unless OpenMetrics is asked for by name.
    for accept in [
        Some("*/*"),
        Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        Some("text/plain"),
    ] {
        let r = get_with(addr, "/actuator/prometheus", accept).await;
        assert_eq!(
            (r.status, r.content_type.as_str()),
            (200, TEXT_004),
            "{accept:?}"
        );
    }

    // The OpenMetrics scrape, asked for by name (as Prometheus does), says the same.
    let om = get_with(
        addr,
        "/actuator/prometheus",
        Some("application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
    )
    .await;
    assert_eq!((om.status, om.content_type.as_str()), (200, OPENMETRICS));
    assert!(om.body.ends_with("# EOF\n"));
    assert!(om
        .body
        .contains("# TYPE mq_listener_dead_lettered counter\n"));
    assert!(om
        .body
        .contains("# UNIT process_resident_memory_bytes bytes\n"));
    let om_scrape = parse_prometheus(&om.body);
    for (metric, labels, expected) in [
        ("mq_listener_dead_lettered_total", &me[..], REJECTED),
        ("spring_kafka_listener_seconds_count", &success[..], OK),
        (
            "spring_kafka_listener_seconds_count",
            &failures[..],
            REJECTED,
        ),
    ] {
        assert_eq!(sum(&om_scrape, metric, labels), expected as f64, "{metric}");
    }

    // The dead-letter topic holds exactly the rejected jobs.
    let dlt = read_topic(&format!("{topic}-dlt"), REJECTED, Duration::from_secs(20)).await;
    assert_eq!(dlt.len(), REJECTED);

    // /actuator/metrics agrees.
    let names = get(addr, "/actuator/metrics").await.json();
    let names: HashSet<&str> = names["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    for n in [
        "spring_kafka_listener_seconds",
        "spring_kafka_template_seconds",
        "mq_listener_dead_lettered",
        "process_cpu_seconds",
        "process_resident_memory_bytes",
    ] {
        assert!(names.contains(n), "{n} missing from {names:?}");
    }
    let m = get(
        addr,
        "/actuator/metrics/mq_listener_dead_lettered?tag=name:act_jobs",
    )
    .await;
    assert_eq!(m.status, 200);
    assert_eq!(
        m.json()["measurements"],
        json!([{"statistic": "COUNT", "value": REJECTED as f64}])
    );
    let m = get(
        addr,
        "/actuator/metrics/spring_kafka_listener_seconds?tag=name:act_jobs&tag=result:success",
    )
    .await
    .json();
    assert_eq!(m["name"], "spring_kafka_listener_seconds");
    assert_eq!(
        m["measurements"][0],
        json!({"statistic": "COUNT", "value": OK as f64})
    );
    assert_eq!(m["measurements"][1]["statistic"], "TOTAL_TIME");
    assert!(m["measurements"][1]["value"].as_f64().unwrap() > 0.0);
    assert!(m["availableTags"]
        .as_array()
        .unwrap()
        .contains(&json!({"tag": "exception", "values": ["none"]})));
    assert_eq!(
        get(addr, "/actuator/metrics/no_such_metric").await.status,
        404
    );

    // /actuator/info: name, version, profiles, listener topology.
    let info = get(addr, "/actuator/info").await.json();
    assert_eq!(
        info["app"],
        json!({"name": "act-svc", "version": "9.9.9-test"})
    );
    assert_eq!(info["profiles"]["active"], json!(["actuator-test"]));
    let l = &info["listeners"]["act_jobs"];
    assert_eq!(l["topics"], json!([topic]));
    assert_eq!(l["concurrency"], 1);
    assert_eq!(l["retry"]["maxAttempts"], 3);
    assert_eq!(
        l["dlt"],
        json!({"enabled": true, "suffix": "-dlt", "topics": [format!("{topic}-dlt")]})
    );
    assert_eq!(
        info["config"]["mq"]["kafka"]["consumer"]["properties"]["sasl.password"],
        "******"
    );

    // /actuator/health: every component, Spring's shape.
    let health = get(addr, "/actuator/health").await;
    println!("--- /actuator/health ---\n{}", health.body);
    assert_eq!(health.status, 200, "{}", health.body);
    let h = health.json();
    assert_eq!(h["status"], "UP");
    let kafka = &h["components"]["kafka"];
    assert_eq!(kafka["status"], "UP");
    assert!(!kafka["details"]["brokers"].as_array().unwrap().is_empty());
    let listener = &h["components"]["listeners"]["components"]["act_jobs"];
    assert_eq!(listener["status"], "UP");
    assert_eq!(listener["details"]["assignedPartitions"], 1);
    let publisher = &h["components"]["publisher"];
    assert_eq!(publisher["status"], "UP");
    assert_eq!(publisher["details"]["delivered"], OK + 2 * REJECTED);
    assert_eq!(publisher["details"]["deliveryErrors"], 0);
    assert_eq!(publisher["details"]["inFlight"], 0);
    assert_eq!(
        h["components"]["warehouse"],
        json!({"status": "UP", "details": {"stock": 12}})
    );
    assert_eq!(get(addr, "/actuator/health/liveness").await.status, 200);
    assert_eq!(get(addr, "/actuator/health/readiness").await.status, 200);

    // No response carries the secret.
    let paths = [
        "/actuator",
        "/actuator/health",
        "/actuator/health/liveness",
        "/actuator/health/readiness",
        "/actuator/health/kafka",
        "/actuator/info",
        "/actuator/metrics",
        "/actuator/metrics/process_open_fds",
        "/actuator/prometheus",
    ];
    for path in paths {
        for accept in [None, Some("application/openmetrics-text")] {
            let r = get_with(addr, path, accept).await;
            assert_eq!(r.status, 200, "{path}");
            assert!(
                !r.body.contains(SECRET),
                "{path} leaks the secret: {}",
                r.body
            );
        }
    }

    app.shutdown().await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "the actuator stops with the app"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unexposed_endpoints_are_404_and_details_hidden_by_default() {
    let app = App::new(config(
        r#"
management:
  server:
    address: 127.0.0.1
  endpoints:
    web:
      base-path: /manage
      exposure:
        include: health, info
"#,
    ))
    .only_listeners(Vec::<String>::new())
    .start()
    .await
    .expect("app starts");
    let addr = actuator(&app);

    let links = get(addr, "/manage").await;
    assert_eq!(links.status, 200);
    let links = links.json()["_links"].clone();
    let ids: BTreeMap<String, Value> = serde_json::from_value(links.clone()).unwrap();
    assert_eq!(
        ids.keys().map(String::as_str).collect::<Vec<_>>(),
        ["health", "health-path", "info", "self"]
    );
    assert_eq!(
        links["health"],
        json!({"href": "/manage/health", "templated": false})
    );

    for path in [
        "/manage/metrics",
        "/manage/metrics/process_open_fds",
        "/manage/prometheus",
        "/manage/env",
        "/manage/beans",
        "/actuator/health",
        "/actuator",
    ] {
        assert_eq!(get(addr, path).await.status, 404, "{path}");
    }
    // show-details: never (the default) shows the status alone.
    for path in [
        "/manage/health",
        "/manage/health/liveness",
        "/manage/health/readiness",
    ] {
        let r = get(addr, path).await;
        assert_eq!(
            (r.status, r.json()),
            (200, json!({"status": "UP"})),
            "{path}"
        );
    }
    assert_eq!(get(addr, "/manage/info").await.status, 200);
    app.shutdown().await.unwrap();

    let off = App::new(config("management:\n  server:\n    enabled: false\n"))
        .only_listeners(Vec::<String>::new())
        .start()
        .await
        .expect("app starts");
    assert_eq!(off.actuator_addr(), None);
    off.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_without_partitions_is_ready() {
    // Two consumers, one partition: one of them idles in the group, as in Spring Kafka.
    let topic = unique("act-idle");
    let app = App::new(jobs_config(&topic, &unique("g"), &support::bootstrap(), 2))
        .only_listeners(["act_jobs"])
        .start()
        .await
        .expect("app starts");
    let addr = actuator(&app);
    let deadline = Instant::now() + WAIT;
    // Ready once both joined; wait until the join's rebalance is over to look at them.
    let ready = loop {
        let r = get(addr, "/actuator/health/readiness").await;
        if r.status == 200 {
            let body = r.json();
            let consumers =
                &body["components"]["listeners"]["components"]["act_jobs"]["details"]["consumers"];
            if consumers
                .as_array()
                .is_some_and(|c| c.len() == 2 && c.iter().all(|c| c["member"] == true))
            {
                break body;
            }
        }
        assert!(Instant::now() < deadline, "never ready: {}", r.body);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let listener = &ready["components"]["listeners"]["components"]["act_jobs"];
    assert_eq!(listener["details"]["assignedPartitions"], 1, "{ready}");
    let consumers = listener["details"]["consumers"].as_array().unwrap();
    assert_eq!(consumers.len(), 2);
    assert!(consumers.iter().all(|c| c["member"] == true), "{ready}");
    assert_eq!(get(addr, "/actuator/health").await.status, 200);
    app.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------------------
// A broker of our own, to stop and restart.

const OWN_PORT: u16 = 19192;

struct OwnBroker {
    dir: tempfile::TempDir,
}

impl OwnBroker {
    fn script() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh")
    }

    fn run(args: &[&str]) {
        assert!(Self::try_run(args), "scripts/kafka.sh {args:?} failed");
    }

    fn try_run(args: &[&str]) -> bool {
        std::process::Command::new("bash")
            .arg(Self::script())
            .args(args)
            .env("MQ_KAFKA_PORT", OWN_PORT.to_string())
            // nisshi 0.8.1 reads `sqlite:///abs/dir` as the relative path `abs/dir`: from
            // `/`, that is the absolute path again.
            .current_dir("/")
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Starts a broker on [`OWN_PORT`] with sqlite storage (topics and offsets survive a
    /// restart).
    fn start() -> OwnBroker {
        let dir = tempfile::tempdir().expect("temp dir");
        let b = OwnBroker { dir };
        b.resume();
        b
    }

    fn resume(&self) {
        Self::run(&["start-sqlite", self.dir.path().to_str().unwrap()]);
    }

    fn stop(&self) {
        Self::run(&["stop"]);
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        // Also runs while a failed test unwinds: no panic here.
        Self::try_run(&["stop"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_follows_the_broker_and_liveness_stays_up() {
    let broker = OwnBroker::start();
    let topic = unique("act-restart");
    let bootstrap = format!("127.0.0.1:{OWN_PORT}");
    let app = App::new(jobs_config(&topic, &unique("g"), &bootstrap, 1))
        .only_listeners(["act_jobs"])
        .start()
        .await
        .expect("app starts");
    assert!(app.wait_assigned(WAIT).await, "no partition assigned");
    let addr = actuator(&app);

    let up = get(addr, "/actuator/health").await;
    assert_eq!(up.status, 200, "{}", up.body);
    assert_eq!(
        up.json()["components"]["kafka"]["details"]["bootstrapServers"],
        format!("127.0.0.1:{OWN_PORT}")
    );

    // Polls until `/actuator/health` answers `want`, checking liveness all along.
    async fn until_health(addr: SocketAddr, want: u16) -> (HttpResponse, usize) {
        let deadline = Instant::now() + WAIT;
        let mut liveness_checks = 0;
        loop {
            let live = get(addr, "/actuator/health/liveness").await;
            assert_eq!(
                live.status, 200,
                "liveness must not follow the broker: {}",
                live.body
            );
            liveness_checks += 1;
            let h = get(addr, "/actuator/health").await;
            if h.status == want {
                return (h, liveness_checks);
            }
            assert!(
                Instant::now() < deadline,
                "health never became {want}: {}",
                h.body
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    broker.stop();
    let (down, checks) = until_health(addr, 503).await;
    println!("--- /actuator/health, broker stopped ---\n{}", down.body);
    let down = down.json();
    assert_eq!(down["status"], "DOWN");
    assert_eq!(down["components"]["kafka"]["status"], "DOWN");
    assert!(down["components"]["kafka"]["details"]["error"].is_string());
    assert!(checks >= 1);
    let readiness = get(addr, "/actuator/health/readiness").await;
    assert_eq!(readiness.status, 503, "{}", readiness.body);
    // Stay down a while: liveness must hold.
    for _ in 0..8 {
        assert_eq!(get(addr, "/actuator/health/liveness").await.status, 200);
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    broker.resume();
    let (up, _) = until_health(addr, 200).await;
    assert_eq!(up.json()["components"]["kafka"]["status"], "UP");
    let deadline = Instant::now() + WAIT;
    loop {
        let r = get(addr, "/actuator/health/readiness").await;
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readiness never recovered: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(get(addr, "/actuator/health/liveness").await.status, 200);

    // UP means working: a job sent now is handled.
    app.publisher()
        .send(
            &topic,
            "after",
            Job {
                n: 1,
                reject: false,
            },
        )
        .await
        .expect("sent after the restart");
    let deadline = Instant::now() + WAIT;
    loop {
        let (text, scrape) = scrape_text(addr).await;
        let handled = sum(
            &scrape,
            "spring_kafka_listener_seconds_count",
            &[("name", "act_jobs"), ("result", "success")],
        );
        if handled >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "job not handled after the restart:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    app.shutdown().await.unwrap();
    drop(broker);
}
