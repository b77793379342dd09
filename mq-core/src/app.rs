//! [`App`]: configuration → listeners → producer → running until a signal → clean stop.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::actuator::HealthIndicator;
use crate::config::Config;
use crate::envelope::DecodeLimits;
use crate::handler::StateMap;
use crate::metrics::Metrics;
use crate::publisher::Publisher;
use crate::registry::{self, ListenerSpec};
use crate::Error;

/// A messaging application: every registered `#[listener]`, a [`Publisher`], metrics.
///
/// ```no_run
/// # #[derive(Default)] struct Inventory;
/// #[tokio::main]
/// async fn main() -> Result<(), mq_core::Error> {
///     mq_core::App::from_config()?      // application.yaml + profiles + MQ_* env
///         .with_state(Inventory::default())
///         .run()                          // until SIGTERM / ctrl-c
///         .await
/// }
/// ```
pub struct App {
    config: Config,
    state: StateMap,
    only: Option<Vec<String>>,
    metrics: Arc<Metrics>,
    health_indicators: crate::actuator::Indicators,
}

/// What an [`App`] is made of, for transports other than Kafka (the test broker).
pub(crate) struct AppParts {
    pub(crate) config: Config,
    pub(crate) state: StateMap,
    pub(crate) metrics: Arc<Metrics>,
}

impl App {
    pub(crate) fn into_parts(self) -> AppParts {
        AppParts {
            config: self.config,
            state: self.state,
            metrics: self.metrics,
        }
    }

    /// Loads the configuration ([`Config::load`]) and builds the app. Fails before any
    /// connection when the configuration is invalid.
    ///
    /// ```no_run
    /// let app = mq_core::App::from_config().expect("valid configuration");
    /// ```
    pub fn from_config() -> Result<App, Error> {
        Ok(App::new(Config::load()?))
    }

    /// Builds the app from a configuration.
    ///
    /// ```
    /// let config = mq_core::Config::from_yaml_str("mq:\n  application:\n    name: demo\n").unwrap();
    /// let app = mq_core::App::new(config);
    /// assert_eq!(app.config().mq.application.name, "demo");
    /// ```
    pub fn new(config: Config) -> App {
        let mut tags = config.metric_tags();
        if !tags.iter().any(|(k, _)| k == "application") {
            tags.push(("application".to_owned(), config.mq.application.name.clone()));
        }
        App {
            metrics: Arc::new(Metrics::new(tags)),
            config,
            state: StateMap::default(),
            only: None,
            health_indicators: Vec::new(),
        }
    }

    /// Adds a health check of your own: `components.<name>` of `/actuator/health`
    /// (Spring Boot's `HealthIndicator` bean). An indicator named like a built-in one
    /// (`kafka`, `listeners`, `publisher`) replaces it. See [`HealthIndicator`].
    ///
    /// ```
    /// use mq_core::actuator::Health;
    /// let app = mq_core::App::new(Default::default())
    ///     .with_health_indicator("warehouse-api", || Health::up().with_detail("latencyMs", 12));
    /// # let _ = app;
    /// ```
    pub fn with_health_indicator(
        mut self,
        name: impl Into<String>,
        indicator: impl HealthIndicator,
    ) -> App {
        let name = name.into();
        self.health_indicators.retain(|(n, _)| *n != name);
        self.health_indicators.push((name, Arc::new(indicator)));
        self
    }

    /// Registers shared state; handlers get it with `ctx.state::<T>()` or a `State<T>`
    /// argument.
    ///
    /// ```
    /// struct Catalogue(Vec<u64>);
    /// let app = mq_core::App::new(Default::default()).with_state(Catalogue(vec![1, 2]));
    /// # let _ = app;
    /// ```
    pub fn with_state<T: Send + Sync + 'static>(mut self, state: T) -> App {
        self.state.insert(state);
        self
    }

    /// Starts only the listeners named here (tests that define several listeners in one
    /// binary use it). Unknown names are an error at start.
    ///
    /// ```
    /// let app = mq_core::App::new(Default::default()).only_listeners(["on_order"]);
    /// # let _ = app;
    /// ```
    pub fn only_listeners<I, S>(mut self, names: I) -> App
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.only = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// The configuration.
    ///
    /// ```
    /// let app = mq_core::App::new(Default::default());
    /// assert_eq!(app.config().mq.kafka.bootstrap_servers, "127.0.0.1:9092");
    /// ```
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The metrics registry; register application metrics here.
    ///
    /// ```
    /// use prometheus_client::metrics::counter::Counter;
    /// let app = mq_core::App::new(Default::default());
    /// let orders: Counter = Counter::default();
    /// app.metrics().register(|r| r.register("orders", "Orders placed", orders.clone()));
    /// orders.inc();
    /// assert!(app.metrics().encode().contains(r#"orders_total{application="mq-app"} 1"#));
    /// ```
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The listeners this app would start, resolved against the configuration.
    ///
    /// ```
    /// let app = mq_core::App::new(Default::default());
    /// assert!(app.listeners().unwrap().iter().all(|l| !l.topics.is_empty()));
    /// ```
    pub fn listeners(&self) -> Result<Vec<ListenerSpec>, Error> {
        let defs = registry::registered();
        let mut specs = registry::resolve(&defs, &self.config)?;
        if let Some(only) = &self.only {
            if let Some(missing) = only
                .iter()
                .find(|n| !specs.iter().any(|s| s.name == n.as_str()))
            {
                return Err(Error::Kafka(format!(
                    "only_listeners names {missing:?}, which is not a registered listener"
                )));
            }
            specs.retain(|s| only.iter().any(|n| n == s.name));
        }
        specs.retain(|s| s.auto_startup);
        Ok(specs)
    }

    /// Runs until SIGTERM or ctrl-c, then shuts down gracefully: stop fetching, finish
    /// in-flight handlers, commit, leave the groups, flush the producer.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), mq_core::Error> {
    /// mq_core::App::from_config()?.run().await
    /// # }
    /// ```
    pub async fn run(self) -> Result<(), Error> {
        let running = self.start().await?;
        shutdown_signal().await;
        tracing::info!("shutdown requested");
        running.shutdown().await
    }

    /// Starts everything and returns a handle; the app runs until
    /// [`RunningApp::shutdown`].
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), mq_core::Error> {
    /// let running = mq_core::App::from_config()?.start().await?;
    /// running.publisher().send("pings", "k", 1u32).await?;
    /// running.shutdown().await
    /// # }
    /// ```
    pub async fn start(self) -> Result<RunningApp, Error> {
        crate::telemetry::try_init(&self.config.mq.logging);
        let specs = self.listeners()?;
        transport::start(self, specs).await
    }
}

/// A started [`App`].
pub struct RunningApp {
    pub(crate) publisher: Publisher,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: Vec<tokio::task::JoinHandle<()>>,
    pub(crate) statuses: Vec<(&'static str, Arc<transport::ConsumerStatus>)>,
    pub(crate) flush: Box<dyn Fn(Duration) + Send + Sync>,
    pub(crate) config: Config,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) actuator: Option<crate::actuator::ActuatorHandle>,
    /// The embedded cluster (`mq.kafka.bootstrap-servers: embedded`), dropped last.
    pub(crate) embedded: Option<transport::Embedded>,
}

impl RunningApp {
    /// Where the actuator listens (`management.server.address` and the bound port, also
    /// when `management.server.port` is 0); `None` when `management.server.enabled` is
    /// false.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), mq_core::Error> {
    /// let running = mq_core::App::from_config()?.start().await?;
    /// if let Some(addr) = running.actuator_addr() {
    ///     println!("health: http://{addr}/actuator/health");
    /// }
    /// # running.shutdown().await
    /// # }
    /// ```
    pub fn actuator_addr(&self) -> Option<SocketAddr> {
        self.actuator.as_ref().map(|a| a.addr())
    }

    /// The app's publisher (events sent from here start a new correlation).
    ///
    /// ```no_run
    /// # async fn f(app: mq_core::RunningApp) {
    /// app.publisher().send("orders", "1", 1u32).await.unwrap();
    /// # }
    /// ```
    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }

    /// The metrics registry.
    ///
    /// ```no_run
    /// # async fn f(app: mq_core::RunningApp) {
    /// println!("{}", app.metrics().encode());
    /// # }
    /// ```
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// True when every consumer of every listener has partitions assigned.
    ///
    /// ```no_run
    /// # async fn f(app: mq_core::RunningApp) {
    /// if !app.all_assigned() { println!("still joining"); }
    /// # }
    /// ```
    pub fn all_assigned(&self) -> bool {
        self.statuses
            .iter()
            .all(|(_, s)| s.assigned.load(Ordering::Relaxed) > 0)
    }

    /// Partitions assigned to this process, per listener.
    ///
    /// ```no_run
    /// # async fn f(app: mq_core::RunningApp) {
    /// for (listener, n) in app.assigned_partitions() { println!("{listener}: {n}"); }
    /// # }
    /// ```
    pub fn assigned_partitions(&self) -> Vec<(&'static str, usize)> {
        self.statuses
            .iter()
            .map(|(n, s)| (*n, s.assigned.load(Ordering::Relaxed)))
            .collect()
    }

    /// Rebalances (assignments and revocations) seen by all consumers since start.
    ///
    /// ```no_run
    /// # async fn f(app: mq_core::RunningApp) {
    /// let seen: usize = app.rebalances();
    /// # }
    /// ```
    pub fn rebalances(&self) -> usize {
        self.statuses
            .iter()
            .map(|(_, s)| s.rebalances.load(Ordering::Relaxed))
            .sum()
    }

    /// Waits until [`RunningApp::all_assigned`] or `timeout`; true if assigned.
    ///
    /// ```no_run
    /// # async fn f(app: mq_core::RunningApp) {
    /// assert!(app.wait_assigned(std::time::Duration::from_secs(30)).await);
    /// # }
    /// ```
    pub async fn wait_assigned(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.all_assigned() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Stops gracefully: no new records, in-flight handlers finish (up to
    /// `mq.shutdown.timeout`), offsets are committed, consumers leave their groups, the
    /// producer is flushed.
    ///
    /// ```no_run
    /// # async fn f(app: mq_core::RunningApp) {
    /// app.shutdown().await.unwrap();
    /// # }
    /// ```
    pub async fn shutdown(self) -> Result<(), Error> {
        self.shutdown.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        let flush = self.flush;
        let timeout = self.config.mq.shutdown.timeout;
        let _ = tokio::task::spawn_blocking(move || flush(timeout)).await;
        // Last: the probes keep answering (readiness OUT_OF_SERVICE) while the app drains.
        if let Some(actuator) = self.actuator {
            actuator.stop().await;
        }
        // The embedded cluster goes after every client of this app (else their close hangs).
        if let Some(embedded) = self.embedded {
            drop(self.publisher);
            let _ = tokio::task::spawn_blocking(move || drop(embedded)).await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = async {
                match term.as_mut() {
                    Some(t) => { t.recv().await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

pub(crate) fn decode_limits(config: &Config) -> DecodeLimits {
    DecodeLimits {
        max_payload_bytes: config.mq.listener.max_payload_bytes,
    }
}

#[cfg(feature = "kafka")]
mod transport {
    use std::collections::HashMap;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio_util::sync::CancellationToken;

    pub(crate) use crate::kafka::consumer::ConsumerStatus;

    /// Keeps the process's embedded cluster alive.
    pub(crate) type Embedded = Arc<crate::kafka::embedded::EmbeddedKafka>;

    use super::{decode_limits, App, RunningApp};
    use crate::actuator;
    use crate::dispatch::ListenerRuntime;
    use crate::kafka::{self, admin, producer::KafkaSink};
    use crate::publisher::Publisher;
    use crate::registry::ListenerSpec;
    use crate::Error;

    pub(super) async fn start(app: App, specs: Vec<ListenerSpec>) -> Result<RunningApp, Error> {
        // librdkafka's errors can quote configuration: no secret leaves in one.
        let secrets = app.config.mq.kafka.security().secrets();
        start_clients(app, specs)
            .await
            .map_err(|e| kafka::security::scrub_error(e, &secrets))
    }

    async fn start_clients(app: App, specs: Vec<ListenerSpec>) -> Result<RunningApp, Error> {
        let App {
            mut config,
            state,
            metrics,
            health_indicators,
            ..
        } = app;
        // `embedded`: start (or join) the in-process cluster before any client exists.
        let embedded = kafka::embedded::resolve(&mut config)?;
        if embedded.is_none() {
            // A wrong password or an untrusted certificate fails here, naming the key.
            kafka::security::check_connection(&config).await?;
        }
        let sink = KafkaSink::new(&kafka::producer_config(&config)?)?;
        let sends = Arc::new(actuator::PublisherStats::default());
        let publisher = Publisher::new(
            Arc::new(actuator::TrackedSink::new(sink.clone(), sends.clone())),
            format!("/{}", config.mq.application.name),
            config.mq.kafka.producer.content_mode,
        )
        .with_metrics(metrics.clone());

        if config.mq.kafka.admin.auto_create_topics && !specs.is_empty() {
            match &embedded {
                // The mock cluster has no admin CreateTopics: use its own API.
                Some(cluster) => {
                    let (cluster, cfg, topics) = (cluster.clone(), config.clone(), specs.clone());
                    tokio::task::spawn_blocking(move || {
                        cluster.create_listener_topics(&cfg, &topics)
                    })
                    .await
                    .map_err(|e| Error::Kafka(e.to_string()))??;
                }
                None => create_topics(&config, &specs).await?,
            }
        }

        // Bind the management port first: a taken port fails the start before any consumer.
        let management = actuator::bind(&config).await?;
        let actuator_specs = specs.clone();
        let shutdown = CancellationToken::new();
        let mut tasks = Vec::new();
        let mut statuses = Vec::new();
        for spec in specs {
            let name = spec.name;
            let group = spec.group.clone();
            let concurrency = spec.concurrency;
            let runtime = Arc::new(ListenerRuntime::new(
                spec,
                publisher.clone(),
                state.clone(),
                decode_limits(&config),
                &metrics,
            ));
            for i in 0..concurrency {
                let client_id = format!("{}-{name}-{i}", config.mq.application.name);
                let (task, status) = kafka::consumer::spawn(
                    runtime.clone(),
                    kafka::consumer_config(&config, &group, &client_id)?,
                    shutdown.child_token(),
                    config.mq.shutdown.timeout,
                    metrics.clone(),
                )?;
                tasks.push(task);
                statuses.push((name, status));
            }
            tracing::info!(listener = name, group = %group, concurrency, "listener started");
        }
        let broker = Arc::new(kafka::health::KafkaHealth::new(&config, &actuator_specs)?);
        let actuator = management.map(|listener| {
            actuator::serve(
                listener,
                actuator::Parts {
                    config: config.clone(),
                    metrics: metrics.clone(),
                    listeners: actuator_specs,
                    consumers: kafka::health::consumer_source(statuses.clone()),
                    broker: Some(("kafka".to_owned(), broker)),
                    publisher: sends,
                    user: health_indicators,
                    app_shutdown: shutdown.clone(),
                },
            )
        });
        Ok(RunningApp {
            publisher,
            shutdown,
            tasks,
            statuses,
            flush: Box::new(move |timeout| sink.flush(timeout)),
            config,
            metrics,
            actuator,
            embedded,
        })
    }

    /// Creates missing listener topics and their dead-letter topics (same partition count
    /// as the source topic).
    async fn create_topics(config: &crate::Config, specs: &[ListenerSpec]) -> Result<(), Error> {
        let admin_cfg = kafka::admin_config(config)?;
        let cfg = admin_cfg.clone();
        let existing: HashMap<String, i32> = tokio::task::spawn_blocking(move || {
            admin::partition_counts(&cfg, Duration::from_secs(10))
        })
        .await
        .map_err(|e| Error::Kafka(e.to_string()))?
        .map_err(Error::Kafka)?;
        let defaults = &config.mq.kafka.admin;
        let mut wanted: Vec<(String, i32)> = Vec::new();
        for spec in specs {
            for topic in &spec.topics {
                let partitions = existing.get(topic).copied().unwrap_or(defaults.partitions);
                if !existing.contains_key(topic) {
                    wanted.push((topic.clone(), partitions));
                }
                let mut derived = spec.retry_topics(topic);
                if spec.dlt.enabled {
                    derived.push(spec.dlt_topic(topic));
                }
                for t in derived {
                    if !existing.contains_key(&t) {
                        wanted.push((t, partitions));
                    }
                }
            }
        }
        wanted.sort();
        wanted.dedup_by(|a, b| a.0 == b.0);
        admin::ensure_topics(&admin_cfg, &wanted, defaults.replication_factor)
            .await
            .map_err(Error::Kafka)
    }
}

#[cfg(not(feature = "kafka"))]
mod transport {
    use super::{App, RunningApp};
    use crate::registry::ListenerSpec;
    use crate::Error;

    #[derive(Debug, Default)]
    pub(crate) struct ConsumerStatus {
        pub(crate) assigned: std::sync::atomic::AtomicUsize,
        pub(crate) rebalances: std::sync::atomic::AtomicUsize,
    }

    /// No transport, no embedded cluster.
    pub(crate) type Embedded = ();

    pub(super) async fn start(_app: App, _specs: Vec<ListenerSpec>) -> Result<RunningApp, Error> {
        Err(Error::NoTransport)
    }
}
