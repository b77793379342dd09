//! Starting the listeners on Kafka: producer, actuator, then (in the background, so a
//! broker that is down at startup only delays them) the topics and the consumers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub(crate) use crate::kafka::health::Statuses;
pub(crate) use crate::kafka::rebalance::ConsumerStatus;

/// Keeps the process's embedded cluster alive.
pub(crate) type Embedded = Arc<crate::kafka::embedded::EmbeddedKafka>;

use super::lazy_sink::LazyKafka;
use super::{decode_limits, App, RunningApp};
use crate::actuator;
use crate::dispatch::ListenerRuntime;
use crate::kafka::{self, admin};
use crate::publisher::Publisher;
use crate::rabbitmq::connection::Rabbit;
use crate::rabbitmq::consumer::QueueConsumer;
use crate::rabbitmq::health::RabbitHealth;
use crate::rabbitmq::publisher::Routed;
use crate::registry::ListenerSpec;
use crate::Error;

/// Starts `app` with `specs`: fails only for what a broker cannot fix (the management port,
/// client settings, a TLS or SASL refusal); everything that needs the broker happens in the
/// background.
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
        mut health_indicators,
        ..
    } = app;
    // Queue listeners run on RabbitMQ, the others on Kafka; the one connection to RabbitMQ
    // is opened by the first queue consumer or `amqp://` publish.
    let all_specs = specs.clone();
    let (queue_specs, specs): (Vec<ListenerSpec>, Vec<ListenerSpec>) =
        specs.into_iter().partition(ListenerSpec::is_queue_listener);
    let rabbit = Arc::new(
        Rabbit::new(config.mq.rabbitmq.clone(), &config.mq.application.name)
            .map_err(Error::Rabbit)?,
    );
    let queues_only = specs.is_empty() && !queue_specs.is_empty();
    // Bind the management port first: a taken port fails the start before any client.
    let management = actuator::bind(&config).await?;
    // `embedded`: start (or join) the in-process cluster before any client exists.
    let embedded = kafka::embedded::resolve(&mut config)?;
    if embedded.is_none() && !queues_only {
        // A wrong password or an untrusted certificate fails here, naming the key to fix;
        // a broker that does not answer lets the start go on.
        kafka::security::check_connection(&config).await?;
    }
    if !queue_specs.is_empty() {
        // The same for RabbitMQ over TLS: an untrusted or misnamed certificate fails here.
        rabbit.check_tls().await.map_err(Error::Rabbit)?;
    }
    let sink = LazyKafka::new(kafka::producer_config(&config)?, !queues_only)?;
    let sends = Arc::new(actuator::PublisherStats::default());
    let publisher = Publisher::new(
        Arc::new(actuator::TrackedSink::new(
            Routed::new(rabbit.clone(), sink.clone()),
            sends.clone(),
        )),
        format!("/{}", config.mq.application.name),
        config.mq.kafka.producer.content_mode,
    )
    .with_topic_modes(config.mq.kafka.producer.topic_content_modes())
    .with_metrics(metrics.clone());
    // A bad librdkafka property fails the start here, not in the background.
    check_consumer_configs(&config, &specs).await?;
    if let Some(cluster) = &embedded {
        if config.mq.kafka.admin.auto_create_topics && !specs.is_empty() {
            // The mock cluster has no admin CreateTopics: use its own API.
            let (cluster, cfg, topics) = (cluster.clone(), config.clone(), specs.clone());
            tokio::task::spawn_blocking(move || cluster.create_listener_topics(&cfg, &topics))
                .await
                .map_err(|e| Error::Kafka(e.to_string()))??;
        }
    }

    let shutdown = CancellationToken::new();
    let statuses = Statuses::default();
    let startup = actuator::StartupState::default();
    let consumers = specs
        .iter()
        .chain(&queue_specs)
        .map(|s| s.concurrency as usize)
        .sum();
    let rabbit_health: Arc<dyn actuator::HealthIndicator> =
        Arc::new(RabbitHealth::new(rabbit.clone()));
    let broker: (String, Arc<dyn actuator::HealthIndicator>) = if queues_only {
        ("rabbit".to_owned(), rabbit_health)
    } else {
        if !queue_specs.is_empty() {
            health_indicators.retain(|(n, _)| n != "rabbit");
            health_indicators.push(("rabbit".to_owned(), rabbit_health));
        }
        let kafka = kafka::health::KafkaHealth::new(&config, &specs)?;
        ("kafka".to_owned(), Arc::new(kafka))
    };
    let actuator = management.map(|listener| {
        actuator::serve(
            listener,
            actuator::Parts {
                config: config.clone(),
                metrics: metrics.clone(),
                listeners: all_specs,
                consumers: kafka::health::consumer_source(statuses.clone()),
                broker: Some(broker),
                publisher: sends,
                user: health_indicators,
                app_shutdown: shutdown.clone(),
                startup: startup.clone(),
            },
        )
    });
    // Topics first (retried until the broker answers), then the consumers: the service
    // is up, alive and not ready while the broker is away, and joins by itself.
    let create = config.mq.kafka.admin.auto_create_topics && embedded.is_none();
    let listeners = Listeners {
        specs,
        config: config.clone(),
        publisher: publisher.clone(),
        state,
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
        statuses: statuses.clone(),
        startup,
    };
    let mut tasks = listeners.start_queue_consumers(&queue_specs, &rabbit);
    let rt = tokio::runtime::Handle::current();
    tasks.push(tokio::spawn(listeners.run(create)));
    Ok(RunningApp {
        publisher,
        shutdown,
        tasks,
        statuses,
        consumers,
        // Called on a blocking thread once the consumers ended: flush Kafka's producer,
        // then close the RabbitMQ connection (if the app ever opened it).
        flush: Box::new(move |timeout| {
            sink.flush(timeout);
            let _ = rt.block_on(tokio::time::timeout(timeout, rabbit.close()));
        }),
        config,
        metrics,
        actuator,
        embedded,
    })
}

/// Everything the listeners' consumers are started from, in the background.
struct Listeners {
    specs: Vec<ListenerSpec>,
    config: crate::Config,
    publisher: Publisher,
    state: crate::handler::StateMap,
    metrics: Arc<crate::metrics::Metrics>,
    shutdown: CancellationToken,
    statuses: Statuses,
    startup: actuator::StartupState,
}

impl Listeners {
    /// Starts the consumers of the queue listeners (each connects, declares its queue and
    /// consumes in the background, again whenever RabbitMQ was away).
    fn start_queue_consumers(
        &self,
        specs: &[ListenerSpec],
        rabbit: &Arc<Rabbit>,
    ) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        for spec in specs {
            let runtime = Arc::new(ListenerRuntime::new(
                spec.clone(),
                self.publisher.clone(),
                self.state.clone(),
                decode_limits(&self.config),
                &self.metrics,
            ));
            for index in 0..spec.concurrency {
                let consumer = QueueConsumer {
                    rabbit: rabbit.clone(),
                    runtime: runtime.clone(),
                    index: index as i32,
                    settings: super::lane_settings(&self.config, spec),
                    listener: self.config.mq.rabbitmq.listener.clone(),
                    shutdown: self.shutdown.child_token(),
                    statuses: self.statuses.clone(),
                    startup: self.startup.clone(),
                };
                tasks.push(consumer.spawn());
            }
            tasks.push(crate::rabbitmq::depth::spawn(
                rabbit.clone(),
                self.metrics.clone(),
                spec.name,
                spec.queues[0].clone(),
                self.config.mq.rabbitmq.listener.queue_depth_interval,
                self.shutdown.child_token(),
            ));
            tracing::info!(listener = spec.name, queue = %spec.queues[0], concurrency = spec.concurrency, "queue listener started");
        }
        tasks
    }

    /// Creates the topics (when `create`, retrying until the broker answers), starts
    /// every consumer, and waits for them to end (on shutdown).
    async fn run(self, create: bool) {
        if create && !self.specs.is_empty() && !self.create_topics_until_done().await {
            return; // shut down before the broker came
        }
        let mut tasks = Vec::new();
        for spec in self.specs.clone() {
            let name = spec.name;
            let group = spec.group.clone();
            let concurrency = spec.concurrency;
            let lane_settings = super::lane_settings(&self.config, &spec);
            let runtime = Arc::new(ListenerRuntime::new(
                spec,
                self.publisher.clone(),
                self.state.clone(),
                decode_limits(&self.config),
                &self.metrics,
            ));
            for i in 0..concurrency {
                let client_id = format!("{}-{name}-{i}", self.config.mq.application.name);
                let spawned =
                    kafka::consumer_config(&self.config, &group, &client_id).and_then(|client| {
                        kafka::consumer::spawn(
                            runtime.clone(),
                            client,
                            lane_settings,
                            self.shutdown.child_token(),
                            self.metrics.clone(),
                        )
                    });
                match spawned {
                    Ok((task, status)) => {
                        tasks.push(task);
                        self.statuses
                            .write()
                            .unwrap_or_else(|p| p.into_inner())
                            .push((name, status));
                    }
                    Err(e) => {
                        tracing::error!(listener = name, error = %e, "cannot start a consumer");
                        self.set_startup(Some(format!("cannot start a consumer: {e}")));
                    }
                }
            }
            tracing::info!(listener = name, group = %group, concurrency, "listener started");
        }
        for task in tasks {
            let _ = task.await;
        }
    }

    /// Retries topic creation with a growing pause (up to 5 s) until it succeeds;
    /// false when the app shut down first.
    async fn create_topics_until_done(&self) -> bool {
        let mut pause = Duration::from_millis(250);
        let mut attempts = 0u32;
        loop {
            match create_topics(&self.config, &self.specs).await {
                Ok(()) => {
                    if attempts > 0 {
                        tracing::info!(attempts, "topics ready: the broker is back");
                    }
                    self.set_startup(None);
                    return true;
                }
                Err(e) => {
                    attempts += 1;
                    // Attempts 1, 2, 4, 8, ...: a lasting problem (no permission to create
                    // topics, a replication factor the cluster cannot meet) stays visible
                    // in the log without flooding it.
                    if attempts.is_power_of_two() {
                        tracing::warn!(error = %e, attempts, "cannot create the listeners' topics yet; retrying until the broker answers");
                    } else {
                        tracing::debug!(error = %e, attempts, "topics not created yet");
                    }
                    self.set_startup(Some(format!(
                        "waiting for the broker to create the listeners' topics: {e}"
                    )));
                }
            }
            tokio::select! {
                _ = self.shutdown.cancelled() => return false,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    fn set_startup(&self, why: Option<String>) {
        *self.startup.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }
}

/// Creates (and drops) one consumer client per listener group, so an invalid
/// librdkafka property fails the start at once (creating a client does not wait for
/// the broker).
async fn check_consumer_configs(
    config: &crate::Config,
    specs: &[ListenerSpec],
) -> Result<(), Error> {
    let Some(spec) = specs.first() else {
        return Ok(());
    };
    let client = kafka::consumer_config(config, &spec.group, "mq-config-check")?;
    tokio::task::spawn_blocking(move || {
        client
            .create::<rdkafka::consumer::BaseConsumer>()
            .map(drop)
            .map_err(|e| Error::Kafka(format!("invalid consumer configuration: {e}")))
    })
    .await
    .map_err(|e| Error::Kafka(e.to_string()))?
}

/// How long one attempt waits for the cluster's metadata (short: it is retried).
const METADATA_TIMEOUT: Duration = Duration::from_secs(3);

/// Creates missing listener topics and their dead-letter topics (same partition count
/// as the source topic).
async fn create_topics(config: &crate::Config, specs: &[ListenerSpec]) -> Result<(), Error> {
    let admin_cfg = kafka::admin_config(config)?;
    let cfg = admin_cfg.clone();
    let existing: HashMap<String, i32> =
        tokio::task::spawn_blocking(move || admin::partition_counts(&cfg, METADATA_TIMEOUT))
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
                derived.extend(spec.dlt_topics(topic));
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
