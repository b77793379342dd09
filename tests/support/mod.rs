//! Helpers shared by the end-to-end tests: broker address, unique topics, a raw client,
//! and a collector that listeners write into.
#![allow(dead_code)]

pub mod examples;
pub mod pki;
pub mod process;

pub use process::KillOnDrop;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mq_core::{Config, Context, Event};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::producer::FutureProducer;
use rdkafka::{ClientConfig, Message};
use tokio::sync::Notify;

/// The real broker the tests run against (`scripts/kafka.sh start`).
pub fn bootstrap() -> String {
    std::env::var("MQ_TEST_BOOTSTRAP").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// A name no other test run uses.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    )
}

/// Creates `topic` with `partitions` partitions.
pub async fn create_topic(topic: &str, partitions: i32) {
    create_topic_on(&bootstrap(), topic, partitions).await
}

/// [`create_topic`] on another broker.
pub async fn create_topic_on(bootstrap: &str, topic: &str, partitions: i32) {
    try_create_topic_on(bootstrap, topic, partitions)
        .await
        .unwrap_or_else(|e| panic!("create {topic}: {e}"));
}

/// [`create_topic_on`], with the broker's refusal as the error.
pub async fn try_create_topic_on(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> Result<(), rdkafka::types::RDKafkaErrorCode> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("admin client");
    let t = NewTopic::new(topic, partitions, TopicReplication::Fixed(1));
    let res = admin
        .create_topics(
            [&t],
            &AdminOptions::new()
                .request_timeout(Some(Duration::from_secs(30)))
                .operation_timeout(Some(Duration::from_secs(30))),
        )
        .await
        .expect("create topics");
    res.into_iter()
        .try_for_each(|r| r.map(drop).map_err(|(_, e)| e))
}

/// An app configuration for tests: the real broker, fast group timings, the actuator on
/// an ephemeral port, plus `extra` YAML merged on top (later keys win).
pub fn config(extra: &str) -> Config {
    config_for(&bootstrap(), extra)
}

/// [`config`] for another broker.
pub fn config_for(bootstrap: &str, extra: &str) -> Config {
    let base = format!(
        r#"
mq:
  application:
    name: mq-tests
  kafka:
    bootstrap-servers: "{bootstrap}"
    consumer:
      properties:
        session.timeout.ms: 6000
        heartbeat.interval.ms: 500
  shutdown:
    timeout: 10s
management:
  server:
    port: 0
"#
    );
    Config::from_yaml_str(&base)
        .and_then(|c| c.with_yaml_layer(extra))
        .expect("valid test config")
}

/// A raw rdkafka producer (for records mq itself would not produce).
pub fn raw_producer() -> FutureProducer {
    ClientConfig::new()
        .set("bootstrap.servers", bootstrap())
        .create()
        .expect("producer")
}

/// Reads every record of `topic` until `count` arrived or `timeout` passed.
pub async fn read_topic(
    topic: &str,
    count: usize,
    timeout: Duration,
) -> Vec<rdkafka::message::OwnedMessage> {
    read_topic_on(&bootstrap(), topic, count, timeout).await
}

/// [`read_topic`] on another broker.
pub async fn read_topic_on(
    bootstrap: &str,
    topic: &str,
    count: usize,
    timeout: Duration,
) -> Vec<rdkafka::message::OwnedMessage> {
    let consumer = reader(bootstrap, topic);
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + timeout;
    while out.len() < count {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(m)) => out.push(m.detach()),
            Ok(Err(e)) => panic!("reading {topic}: {e}"),
            Err(_) => break,
        }
    }
    close_reader(consumer).await;
    out
}

/// Every record of `topic`, read until nothing new came for `idle` (the first wait, which
/// includes the group join, is 20 s).
pub async fn read_until_idle(topic: &str, idle: Duration) -> Vec<rdkafka::message::OwnedMessage> {
    let consumer = reader(&bootstrap(), topic);
    let mut out = Vec::new();
    let mut wait = Duration::from_secs(20);
    loop {
        match tokio::time::timeout(wait, consumer.recv()).await {
            Ok(Ok(m)) => {
                out.push(m.detach());
                wait = idle;
            }
            Ok(Err(e)) => panic!("reading {topic}: {e}"),
            Err(_) => break,
        }
    }
    close_reader(consumer).await;
    out
}

/// A consumer of its own group subscribed to `topic` from its start.
fn reader(bootstrap: &str, topic: &str) -> StreamConsumer {
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    consumer
}

/// Closing a consumer blocks (it leaves its group): off the async threads.
async fn close_reader(consumer: StreamConsumer) {
    tokio::task::spawn_blocking(move || drop(consumer))
        .await
        .ok();
}

/// One handled event as a listener saw it.
#[derive(Debug, Clone)]
pub struct Handled {
    pub id: String,
    pub source: String,
    pub ty: String,
    pub subject: Option<String>,
    pub correlationid: Option<String>,
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub attempt: u32,
    pub data: serde_json::Value,
}

/// Shared state listeners record into; tests wait on it.
#[derive(Clone, Default)]
pub struct Seen {
    inner: Arc<(Mutex<Vec<Handled>>, Notify)>,
}

impl Seen {
    pub fn record<T: serde::Serialize>(&self, event: &Event<T>, ctx: &Context) {
        let h = Handled {
            id: event.id.clone(),
            source: event.source.clone(),
            ty: event.ty.clone(),
            subject: event.subject.clone(),
            correlationid: event.correlationid.clone(),
            topic: ctx.topic().to_owned(),
            partition: ctx.partition(),
            offset: ctx.offset(),
            attempt: ctx.attempt(),
            data: serde_json::to_value(&event.data).expect("json"),
        };
        self.inner.0.lock().unwrap().push(h);
        self.inner.1.notify_waiters();
    }

    pub fn all(&self) -> Vec<Handled> {
        self.inner.0.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.inner.0.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until at least `n` events were recorded; returns how many there are.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> usize {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.inner.1.notified();
            let len = self.len();
            if len >= n {
                return len;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.len();
            }
        }
    }

    /// Ids recorded more than once, with their counts.
    pub fn duplicates(&self) -> HashMap<String, usize> {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for h in self.all() {
            *counts.entry(h.id).or_default() += 1;
        }
        counts.retain(|_, c| *c > 1);
        counts
    }
}

/// Header value of a raw message, if present.
pub fn header<'a>(m: &'a rdkafka::message::OwnedMessage, key: &str) -> Option<&'a [u8]> {
    use rdkafka::message::Headers;
    m.headers()?
        .iter()
        .filter(|h| h.key == key)
        .last()
        .and_then(|h| h.value)
}

/// An HTTP response as the tests read it.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl HttpResponse {
    /// The body as JSON; panics (with the body) when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// At most this for one exchange of [`http`]: an app that never answers fails its test
/// (naming the request) instead of holding the whole run.
pub const HTTP_WAIT: Duration = Duration::from_secs(60);

/// A minimal HTTP/1 client (hyper, one connection per request). A `body` is sent as JSON;
/// `accept` sets the `Accept` header. Panics when no answer comes within [`HTTP_WAIT`].
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    accept: Option<&str>,
) -> HttpResponse {
    tokio::time::timeout(HTTP_WAIT, exchange(addr, method, path, body, accept))
        .await
        .unwrap_or_else(|_| panic!("{method} {path} on {addr}: no answer within {HTTP_WAIT:?}"))
}

async fn exchange(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: Option<&str>,
    accept: Option<&str>,
) -> HttpResponse {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use hyper::header;

    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("http handshake");
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, addr.to_string());
    if body.is_some() {
        req = req.header(header::CONTENT_TYPE, "application/json");
    }
    if let Some(a) = accept {
        req = req.header(header::ACCEPT, a);
    }
    let req = req
        .body(Full::new(Bytes::from(body.unwrap_or_default().to_owned())))
        .expect("request");
    let resp = sender
        .send_request(req)
        .await
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
    let status = resp.status().as_u16();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = resp.into_body().collect().await.expect("body").to_bytes();
    HttpResponse {
        status,
        content_type,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

/// The lines of the file at `path` (none when it does not exist yet).
pub fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A pseudo-random number in `lo..hi` (no RNG crate needed for this).
pub fn random_between(lo: usize, hi: usize) -> usize {
    let n = uuid::Uuid::new_v4().as_u128();
    lo + (n % (hi - lo) as u128) as usize
}

/// Waits until every id of `ids` is a line of the file at `out`, or `timeout` passed;
/// returns how many are still missing (0: all handled).
pub async fn wait_for_lines(
    out: &std::path::Path,
    ids: &std::collections::HashSet<String>,
    timeout: Duration,
) -> usize {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let handled: std::collections::HashSet<String> = lines(out).into_iter().collect();
        let missing = ids.iter().filter(|id| !handled.contains(*id)).count();
        if missing == 0 || tokio::time::Instant::now() >= deadline {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs `promtool check metrics` (Debian's `prometheus` package; scripts/test.sh installs
/// it) on a text 0.0.4 scrape and fails on any error it reports.
pub fn promtool_check_metrics(scrape: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("promtool on PATH (scripts/test.sh installs Debian's prometheus package)");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(scrape.as_bytes())
        .expect("write the scrape to promtool");
    let out = child.wait_with_output().expect("promtool runs");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // promtool exits 3 for lint findings (e.g. naming advice) and 1 for errors; only an
    // error (an unparsable scrape, a duplicate label) fails the test.
    assert_ne!(
        out.status.code(),
        Some(1),
        "promtool check metrics:\n{report}\n{scrape}"
    );
    assert!(
        !report.contains("error"),
        "promtool check metrics:\n{report}\n{scrape}"
    );
}

/// The command for a child mq app of a crash test: a clean environment but `PATH`, its
/// configuration from `dir`, the real broker with the tests' group timings, an ephemeral
/// actuator, WARN logs; its stderr shows in the test output. Add the test's own variables
/// (a later `env` of the same name wins), then spawn.
pub fn child_app(bin: &str, dir: &std::path::Path, name: &str) -> std::process::Command {
    let mut cmd = std::process::Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MQ_CONFIG_DIR", dir)
        .env("MQ_APPLICATION__NAME", name)
        .env("MQ_KAFKA__BOOTSTRAP_SERVERS", bootstrap())
        .env("MQ_KAFKA__CONSUMER__PROPERTIES__SESSION_TIMEOUT_MS", "6000")
        .env(
            "MQ_KAFKA__CONSUMER__PROPERTIES__HEARTBEAT_INTERVAL_MS",
            "500",
        )
        .env("MQ_MANAGEMENT__SERVER__PORT", "0")
        .env("MQ_LOGGING__LEVEL", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit());
    cmd
}

/// Runs `scripts/kafka.sh ARGS` for a broker of the test's own on `port` (the shared one
/// on 9092 stays up).
pub fn broker_on(port: &str, args: &[&str]) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh");
    let status = std::process::Command::new(script)
        .args(args)
        .env("MQ_KAFKA_PORT", port)
        .status()
        .expect("run scripts/kafka.sh");
    assert!(status.success(), "kafka.sh {args:?} failed");
}

/// Stops the broker on its port when dropped (a failing test included).
pub struct StopOnDrop(pub &'static str);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        broker_on(self.0, &["stop"]);
    }
}

/// Loads the configuration in a child process (`mq-config-probe`) whose environment holds
/// only `vars` of the `MQ_*` variables, from `dir` (as `MQ_CONFIG_DIR`); `app` loads through
/// `App::from_config`. `Ok` is the probe's JSON (`config`, `sources`,
/// `ignored_environment`, `kafka_client_properties`), `Err` the error's text. A test that
/// changed its own environment would race every thread of its binary that reads it.
pub fn load_config_with_env(
    probe: &str,
    dir: &std::path::Path,
    vars: &[(&str, &str)],
    app: bool,
) -> Result<serde_json::Value, String> {
    let mut cmd = std::process::Command::new(probe);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("MQ_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("MQ_CONFIG_DIR", dir).envs(vars.iter().copied());
    if app {
        cmd.arg("--app");
    }
    let out = cmd.output().expect("run mq-config-probe");
    assert!(
        out.status.success(),
        "mq-config-probe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = line
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("mq-config-probe printed no JSON: {line}"));
    match json.get("error").and_then(|e| e.as_str()) {
        Some(e) => Err(e.to_owned()),
        None => Ok(json),
    }
}

/// At most this for one Python peer (pika, aiokafka, FastStream) to run to its end: more
/// than any `--timeout` a test gives it (90 s) plus its start; one still running then is
/// killed and fails its test.
pub const PYTHON_WAIT: Duration = Duration::from_secs(180);

/// Starts `python3 script args..` on a blocking thread at once (the test's runtime keeps
/// serving the apps beside it); the future gives the JSON lines it printed, and panics with
/// its output when it failed or ran past [`PYTHON_WAIT`]. `needs` says what installs the
/// script's packages.
pub fn python(
    script: &str,
    args: &[&str],
    needs: &'static str,
) -> impl std::future::Future<Output = Vec<serde_json::Value>> + use<> {
    let mut command = std::process::Command::new("python3");
    command.arg(script).args(args);
    let script = script.to_owned();
    let what = format!("python3 {script} ({needs})");
    let run = tokio::task::spawn_blocking(move || process::run(&mut command, PYTHON_WAIT, &what));
    async move {
        let (status, stdout, stderr) = run.await.expect("the python thread");
        assert!(status.success(), "{script} failed:\n{stdout}\n{stderr}");
        stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{script}: {l}: {e}")))
            .collect()
    }
}
