//! The Kafka transport as an app starts it: the producer, the checks that fail a start
//! (client settings, TLS and SASL), topic creation (retried until the broker answers) and
//! the listeners' consumers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::task::JoinHandle;

use super::embedded::EmbeddedKafka;
use super::lazy_sink::LazyKafka;
use super::routes::KafkaRoutes;
use super::{admin, retry_topic, security};
use crate::actuator::HealthIndicator;
use crate::config::Config;
use crate::envelope::ContentMode;
use crate::error::Error;
use crate::failure::routes::FailureRoutes;
use crate::publisher::{RecordSink, Replies};
use crate::registry::ListenerSpec;
use crate::transport::{lane_settings, Transport, Wiring};

/// How long one attempt waits for the cluster's metadata (short: it is retried).
const METADATA_TIMEOUT: Duration = Duration::from_secs(3);

/// Kafka, for one app.
pub(crate) struct KafkaTransport {
    config: Config,
    /// Values that librdkafka's errors may quote and that must never leave in one.
    secrets: Vec<String>,
    sink: LazyKafka,
    /// The process's in-process cluster (`bootstrap-servers: embedded`), kept alive until
    /// the transport is dropped, after every client of it.
    embedded: Option<Arc<EmbeddedKafka>>,
}

impl KafkaTransport {
    /// Resolves an embedded cluster (rewriting `config`'s bootstrap servers to it) and
    /// makes the producer: now when the app has Kafka listeners or no listeners at all (a
    /// bad producer setting then fails the start), else on the first record bound for
    /// Kafka (an app of queue listeners neither connects to Kafka nor logs its absence).
    pub(crate) fn open(
        config: &mut Config,
        specs: &[ListenerSpec],
    ) -> Result<KafkaTransport, Error> {
        let secrets = config.mq.kafka.security().secrets();
        let scrub = |e| security::scrub_error(e, &secrets);
        let embedded = super::embedded::resolve(config).map_err(scrub)?;
        let eager = specs.is_empty() || specs.iter().any(|s| s.queues.is_empty());
        let sink = super::producer_config(config)
            .and_then(|c| LazyKafka::new(c, eager))
            .map_err(scrub)?;
        Ok(KafkaTransport {
            config: config.clone(),
            secrets,
            sink,
            embedded,
        })
    }

    fn scrub(&self, e: Error) -> Error {
        security::scrub_error(e, &self.secrets)
    }

    /// Creates (and drops) one consumer client, so an invalid librdkafka property fails
    /// the start at once (creating a client does not wait for the broker).
    async fn check_consumer_config(&self, specs: &[ListenerSpec]) -> Result<(), Error> {
        let Some(spec) = specs.first() else {
            return Ok(());
        };
        let client = super::consumer_config(&self.config, &spec.group, "mq-config-check")?;
        tokio::task::spawn_blocking(move || {
            client
                .create::<rdkafka::consumer::BaseConsumer>()
                .map(drop)
                .map_err(|e| Error::Kafka(format!("invalid consumer configuration: {e}")))
        })
        .await
        .map_err(|e| Error::Kafka(e.to_string()))?
    }

    async fn prepare_checked(&self, specs: &[ListenerSpec]) -> Result<(), Error> {
        if self.embedded.is_none() {
            // A wrong password or an untrusted certificate fails here, naming the key to
            // fix; a broker that does not answer lets the start go on.
            security::check_connection(&self.config).await?;
        }
        self.check_consumer_config(specs).await?;
        if let Some(cluster) = &self.embedded {
            if self.config.mq.kafka.admin.auto_create_topics && !specs.is_empty() {
                // The mock cluster has no admin CreateTopics: use its own API.
                let (cluster, cfg, topics) = (cluster.clone(), self.config.clone(), specs.to_vec());
                tokio::task::spawn_blocking(move || cluster.create_listener_topics(&cfg, &topics))
                    .await
                    .map_err(|e| Error::Kafka(e.to_string()))??;
            }
        }
        Ok(())
    }
}

impl Transport for KafkaTransport {
    fn name(&self) -> &'static str {
        "kafka"
    }

    fn runs(&self, spec: &ListenerSpec) -> bool {
        spec.queues.is_empty()
    }

    /// The default transport: every destination no other transport claims.
    fn publishes_to(&self, _destination: &str) -> bool {
        true
    }

    fn prepare<'a>(&'a self, specs: &'a [ListenerSpec]) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move { self.prepare_checked(specs).await.map_err(|e| self.scrub(e)) })
    }

    fn sink(&self) -> Arc<dyn RecordSink> {
        Arc::new(super::reply_consumer::ReplySink {
            inner: self.sink.clone(),
            reply_topic: self.config.mq.kafka.reply_topic.clone(),
        })
    }

    fn start_replies(&self, replies: &Arc<Replies>, wiring: &Wiring) -> Option<JoinHandle<()>> {
        let topic = self.config.mq.kafka.reply_topic.clone()?;
        Some(super::reply_consumer::spawn(
            self.config.clone(),
            topic,
            replies.clone(),
            wiring.shutdown.child_token(),
        ))
    }

    fn health(&self, specs: &[ListenerSpec]) -> Result<Arc<dyn HealthIndicator>, Error> {
        let health =
            super::health::KafkaHealth::new(&self.config, specs).map_err(|e| self.scrub(e))?;
        Ok(Arc::new(health))
    }

    /// Topics first (retried until the broker answers), then the consumers: the service
    /// is up, alive and not ready while the broker is away, and joins by itself.
    fn start_listeners(&self, specs: Vec<ListenerSpec>, wiring: &Wiring) -> Vec<JoinHandle<()>> {
        let create = self.config.mq.kafka.admin.auto_create_topics && self.embedded.is_none();
        let listeners = Listeners {
            specs,
            wiring: wiring.clone(),
        };
        vec![tokio::spawn(listeners.run(create))]
    }

    /// Binary: Spring Cloud Stream and Knative write it, and Spring's `JsonDeserializer` and
    /// FastStream read its value as the plain JSON they expect (structured mode is raw bytes
    /// to them).
    fn default_content_mode(&self) -> ContentMode {
        ContentMode::Binary
    }

    fn dead_letter_destinations(&self, spec: &ListenerSpec) -> Vec<String> {
        KafkaRoutes.dead_letter_destinations(spec)
    }

    fn close(&self, timeout: Duration) {
        self.sink.flush(timeout);
    }
}

/// Everything the listeners' consumers are started from, in the background.
struct Listeners {
    specs: Vec<ListenerSpec>,
    wiring: Wiring,
}

impl Listeners {
    /// Creates the topics (when `create`, retrying until the broker answers), starts
    /// every consumer, and waits for them to end (on shutdown).
    async fn run(self, create: bool) {
        if create && !self.specs.is_empty() && !self.create_topics_until_done().await {
            return; // shut down before the broker came
        }
        let w = &self.wiring;
        let mut tasks = Vec::new();
        for spec in self.specs.clone() {
            let name = spec.name;
            let group = spec.group.clone();
            let concurrency = spec.concurrency;
            let lanes = lane_settings(&w.config, &spec);
            let runtime = w.runtime(spec, Arc::new(KafkaRoutes));
            for i in 0..concurrency {
                let client_id = format!("{}-{name}-{i}", w.config.mq.application.name);
                let spawned = super::consumer_config(&w.config, &group, &client_id)
                    .map(|mut client| {
                        super::instance_id::assign(&mut client, name, i);
                        client
                    })
                    .and_then(|client| {
                        super::consumer::spawn(
                            runtime.clone(),
                            client,
                            lanes,
                            w.shutdown.child_token(),
                            w.metrics.clone(),
                        )
                    });
                match spawned {
                    Ok((task, status)) => {
                        tasks.push(task);
                        w.statuses
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
            match create_topics(&self.wiring.config, &self.specs).await {
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
                _ = self.wiring.shutdown.cancelled() => return false,
                _ = tokio::time::sleep(pause) => {}
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    fn set_startup(&self, why: Option<String>) {
        *self
            .wiring
            .startup
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = why;
    }
}

/// Creates missing listener topics and their retry and dead-letter topics (same partition
/// count as the source topic).
async fn create_topics(config: &Config, specs: &[ListenerSpec]) -> Result<(), Error> {
    let admin_cfg = super::admin_config(config)?;
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
            let mut derived = retry_topic::of_listener(spec, topic);
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
