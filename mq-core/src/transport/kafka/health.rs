//! The `kafka` health component: can we reach a broker? One metadata request with a short
//! timeout, on a long-lived client, off the async threads, cached briefly so frequent
//! scrapes stay cheap.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;

use super::security::{refusal, serve_events, SecuredContext};
use crate::actuator::{Health, HealthFuture, HealthIndicator};
use crate::config::{flatten_properties, Config};
use crate::registry::ListenerSpec;

/// How long one probe waits for the broker.
const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long a probe's answer is reused.
const CACHE_FOR: Duration = Duration::from_millis(1500);

/// The broker reachability probe.
pub(crate) struct KafkaHealth {
    client_config: ClientConfig,
    context: SecuredContext,
    bootstrap: String,
    /// A topic to ask about (a listener's), so the answer stays small on big clusters.
    topic: Option<String>,
    client: Arc<Mutex<Option<BaseConsumer<SecuredContext>>>>,
    cache: tokio::sync::Mutex<Option<(Instant, Health)>>,
}

impl KafkaHealth {
    /// A probe of the configured cluster, with the user's security settings
    /// (`security.*`, `sasl.*`, `ssl.*` of the consumer properties). It asks about the
    /// first listener's first topic (all topics when there is no listener).
    pub(crate) fn new(
        config: &Config,
        listeners: &[ListenerSpec],
    ) -> Result<Self, crate::error::Error> {
        let topic = listeners.iter().find_map(|l| l.topics.first().cloned());
        let mut c = super::admin_config(config)?;
        c.set(
            "client.id",
            format!("{}-health", config.mq.application.name),
        )
        .set("reconnect.backoff.ms", "100")
        .set("reconnect.backoff.max.ms", "1000")
        .set("socket.connection.setup.timeout.ms", "1000");
        for (k, v) in flatten_properties(&config.mq.kafka.consumer.properties) {
            if k.starts_with("security.")
                || k.starts_with("sasl.")
                || k.starts_with("ssl.")
                || k.starts_with("client.dns.")
            {
                c.set(k, v);
            }
        }
        Ok(KafkaHealth {
            client_config: c,
            context: SecuredContext::new(config),
            bootstrap: config.mq.kafka.bootstrap_servers.clone(),
            topic,
            client: Arc::new(Mutex::new(None)),
            cache: tokio::sync::Mutex::new(None),
        })
    }

    async fn check(&self) -> Health {
        // One probe at a time; concurrent requests wait and share its answer.
        let mut cache = self.cache.lock().await;
        if let Some((at, h)) = cache.as_ref() {
            if at.elapsed() < CACHE_FOR {
                return h.clone();
            }
        }
        let client = self.client.clone();
        let config = self.client_config.clone();
        let context = self.context.clone();
        let topic = self.topic.clone();
        let health = tokio::task::spawn_blocking(move || {
            let mut guard = client.lock().unwrap_or_else(|p| p.into_inner());
            if guard.is_none() {
                match config.create_with_context::<_, BaseConsumer<_>>(context.clone()) {
                    Ok(c) => *guard = Some(c),
                    Err(e) => {
                        let e = context.scrub(&e.to_string());
                        return Health::down()
                            .with_detail("error", format!("cannot create a client: {e}"));
                    }
                }
            }
            let consumer = guard.as_ref().expect("set above");
            probe(consumer, topic.as_deref(), &config)
        })
        .await
        .unwrap_or_else(|e| Health::down().with_detail("error", e.to_string()))
        .with_detail("bootstrapServers", &self.bootstrap);
        *cache = Some((Instant::now(), health.clone()));
        health
    }
}

fn probe(
    consumer: &BaseConsumer<SecuredContext>,
    topic: Option<&str>,
    client: &ClientConfig,
) -> Health {
    let started = Instant::now();
    let result = consumer.fetch_metadata(topic, PROBE_TIMEOUT);
    // Serve the client's queue (errors, logs) so it does not grow during an outage.
    serve_events(consumer);
    match result {
        Ok(md) => {
            let brokers: Vec<_> = md
                .brokers()
                .iter()
                .map(|b| serde_json::json!({"id": b.id(), "address": format!("{}:{}", b.host(), b.port())}))
                .collect();
            let mut h = Health::up()
                .with_detail("brokers", brokers)
                .with_detail("responseTimeMs", started.elapsed().as_millis() as u64);
            let remaining = PROBE_TIMEOUT.saturating_sub(started.elapsed());
            if let Some(id) = consumer
                .client()
                .fetch_cluster_id(remaining.max(Duration::from_millis(100)))
            {
                h = h.with_detail("clusterId", id);
            }
            h
        }
        Err(e) => {
            // The broker's own reason (a rejected password, an untrusted certificate) and
            // the key to fix, when there is one.
            match refusal(consumer.context(), client) {
                Some(refusal) => Health::down().with_detail("error", refusal),
                None => {
                    Health::down().with_detail("error", format!("cannot reach the brokers: {e}"))
                }
            }
        }
    }
}

impl HealthIndicator for KafkaHealth {
    fn health(&self) -> HealthFuture<'_> {
        Box::pin(self.check())
    }
}

impl Drop for KafkaHealth {
    fn drop(&mut self) {
        // Destroying a client can block: not on an async thread.
        let client = self.client.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let (Some(client), Ok(rt)) = (client, tokio::runtime::Handle::try_current()) {
            rt.spawn_blocking(move || drop(client));
        }
    }
}
