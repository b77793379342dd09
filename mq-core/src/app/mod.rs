//! [`App`]: configuration → listeners → producer → running until a signal → clean stop.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::actuator::HealthIndicator;
use crate::config::Config;
use crate::consume::status::ConsumerStatus;
use crate::error::Error;
use crate::handler::StateMap;
use crate::metrics::Metrics;
use crate::publisher::Publisher;
use crate::registry::{self, ListenerSpec};
use crate::transport::start::Started;

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
    #[cfg(feature = "postgres")]
    datasource: Option<sqlx::PgPool>,
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
            #[cfg(feature = "postgres")]
            datasource: None,
        }
    }

    /// Uses `pool` as the app's database (the outbox relay and the idempotent listeners'
    /// inbox), instead of a pool of its own on `mq.datasource.url`: share it with the
    /// application's queries. See [`crate::datasource`].
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), mq_core::Error> {
    /// let config = mq_core::Config::load()?;
    /// let pool = mq_core::datasource::pool(&config)?.expect("mq.datasource.url");
    /// let app = mq_core::App::new(config).with_datasource(pool);
    /// # let _ = app; Ok(()) }
    /// ```
    #[cfg(feature = "postgres")]
    pub fn with_datasource(mut self, pool: sqlx::PgPool) -> App {
        self.datasource = Some(pool);
        self
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
                return Err(Error::UnknownListener(missing.clone()));
            }
            specs.retain(|s| only.iter().any(|n| n == s.name));
        }
        specs.retain(|s| s.auto_startup);
        Ok(specs)
    }

    /// [`App::listeners`], with every wiring problem found before any connection reported
    /// together: listeners that do not resolve, listeners sharing a topic in one group, and
    /// `State<T>` arguments without a [`App::with_state`].
    pub(crate) fn checked_listeners(&self) -> Result<Vec<ListenerSpec>, Error> {
        let mut problems = Vec::new();
        let specs = match self.listeners() {
            Ok(specs) => Some(specs),
            Err(e) => {
                problems.push(e.to_string());
                None
            }
        };
        let names: Vec<&str> = match &specs {
            Some(specs) => crate::startup::names(specs).collect(),
            // Still check the states of the listeners that would start.
            None => registry::registered()
                .iter()
                .map(|d| d.name)
                .filter(|n| {
                    self.only
                        .as_ref()
                        .is_none_or(|only| only.iter().any(|o| o == n))
                })
                .collect(),
        };
        problems.extend(crate::startup::missing_states(names, &self.state));
        if let Some(specs) = &specs {
            problems.extend(crate::startup::overlapping_groups(specs));
            problems.extend(crate::startup::tx_without_idempotency(specs));
        }
        match specs {
            Some(specs) if problems.is_empty() => Ok(specs),
            _ => Err(crate::startup::StartupError::from_problems(problems).into()),
        }
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
        let telemetry = crate::telemetry::try_init(&self.config)?;
        let ignored = self.config.ignored_environment();
        if !ignored.is_empty() {
            tracing::warn!(
                variables = %ignored.join(", "),
                "ignored MQ_* environment variables that set no configuration key \
                 (e.g. Kubernetes service links of a Service named mq)"
            );
        }
        let specs = self.checked_listeners()?;
        let mut app = self;
        let effects = effects::prepare(&mut app).await?;
        let App {
            config,
            state,
            metrics,
            health_indicators,
            ..
        } = app;
        let started =
            crate::transport::start::start(config, state, metrics, health_indicators, specs)
                .await?;
        let mut running = RunningApp::from(started);
        running.telemetry = telemetry;
        effects.start(&mut running);
        Ok(running)
    }
}

/// A started [`App`].
pub struct RunningApp {
    pub(crate) started: Started,
    /// The trace export, flushed last at shutdown.
    telemetry: crate::telemetry::Telemetry,
}

impl From<Started> for RunningApp {
    fn from(started: Started) -> Self {
        RunningApp {
            started,
            telemetry: Default::default(),
        }
    }
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
        self.started.actuator.as_ref().map(|a| a.addr())
    }

    /// The app's publisher (events sent from here start a new correlation).
    ///
    /// ```no_run
    /// # async fn f(app: mq_core::RunningApp) {
    /// app.publisher().send("orders", "1", 1u32).await.unwrap();
    /// # }
    /// ```
    pub fn publisher(&self) -> Publisher {
        self.started.publisher.clone()
    }

    /// The metrics registry.
    ///
    /// ```no_run
    /// # async fn f(app: mq_core::RunningApp) {
    /// println!("{}", app.metrics().encode());
    /// # }
    /// ```
    pub fn metrics(&self) -> Arc<Metrics> {
        self.started.metrics.clone()
    }

    /// The started consumers (none while the broker is down at startup).
    fn consumer_statuses(&self) -> Vec<(&'static str, Arc<ConsumerStatus>)> {
        self.started
            .statuses
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// True when every consumer of every listener has started and has partitions assigned.
    ///
    /// ```no_run
    /// # async fn f(app: mq_core::RunningApp) {
    /// if !app.all_assigned() { println!("still joining"); }
    /// # }
    /// ```
    pub fn all_assigned(&self) -> bool {
        let statuses = self.consumer_statuses();
        statuses.len() == self.started.consumers
            && statuses
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
        self.consumer_statuses()
            .iter()
            .map(|(n, s)| (*n, s.assigned.load(Ordering::Relaxed)))
            .collect()
    }

    /// The lanes of every listener's consumers: one per assigned partition (plus closing
    /// ones still running), with its epoch. A lane reopened by a rebalance has a new epoch,
    /// so a partition whose epoch did not change kept flowing.
    ///
    /// ```no_run
    /// # async fn f(app: mq_core::RunningApp) {
    /// for lane in app.lanes() {
    ///     println!("{} {}-{} epoch {}", lane.listener, lane.topic, lane.partition, lane.epoch);
    /// }
    /// # }
    /// ```
    pub fn lanes(&self) -> Vec<crate::consume::LaneInfo> {
        self.consumer_statuses()
            .into_iter()
            .flat_map(|(n, s)| {
                s.lanes
                    .get()
                    .map(|l| l.views())
                    .unwrap_or_default()
                    .into_iter()
                    .map(|v| crate::consume::LaneInfo::from_view(n, v))
            })
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
        self.consumer_statuses()
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
        let Started {
            publisher,
            shutdown,
            tasks,
            config,
            actuator,
            transports,
            statuses,
            ..
        } = self.started;
        let telemetry = self.telemetry;
        shutdown.cancel();
        for task in tasks {
            let _ = task.await;
        }
        // The consumers ended: flush what is still being sent, close the connections.
        let timeout = config.mq.shutdown.timeout;
        let closing = transports.clone();
        let _ = tokio::task::spawn_blocking(move || {
            for t in &closing {
                t.close(timeout);
            }
        })
        .await;
        // Last: the probes keep answering (readiness OUT_OF_SERVICE) while the app drains.
        if let Some(actuator) = actuator {
            actuator.stop().await;
        }
        // The transports go after every client of theirs (an embedded cluster must outlive
        // them, else their close hangs); dropping a client can block.
        // The consumers' statuses hold their lanes, whose listener runtimes hold publishers
        // (producer clients) and the app's state.
        drop(publisher);
        drop(statuses);
        let _ = tokio::task::spawn_blocking(move || drop(transports)).await;
        tracing::info!("stopped");
        telemetry.shutdown().await;
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

mod effects;
