//! `mq.kafka.bootstrap-servers: embedded`: an in-process Kafka cluster (librdkafka's
//! mock cluster, `rdkafka::mocking::MockCluster`) for demos and first tries on a machine
//! with no broker.
//!
//! It speaks the real Kafka protocol on a loopback port, so the app's producer, consumers,
//! health probe (and any other process, e.g. `kcat -b <address>`) talk to it as to a broker.
//! Nothing is persisted; it lives as long as the apps that use it.
//!
//! One cluster per process: every `App` of the process that asks for
//! `embedded` shares it (the one-command demo runs two services in one process, and they
//! must see each other's topics). It is created by the first app to start and destroyed
//! when the last `RunningApp` holding it has shut down.
//!
//! Limits of the mock cluster (librdkafka 2.12), and how `mq` deals with them:
//! - no admin `CreateTopics`: listener topics and their dead-letter topics are created
//!   through the mock API instead (when `mq.kafka.admin.auto-create-topics` is true, the
//!   default); topics only published to are auto-created on first use;
//! - no `ListGroups`/`DescribeGroups`;
//! - the broker holds every fetch for the full `fetch.wait.max.ms` even when records
//!   arrive: consumers of the embedded cluster default to 10 ms instead of 500 ms (set
//!   `mq.kafka.consumer.properties.fetch.wait.max.ms` to choose);
//! - a consumer group's first join takes about 3 s, and a second member joining an
//!   existing group triggers a long rebalance (about 35 s): give each listener its own
//!   group (`mq.listeners.<name>.group`) when several share a process;
//! - it must outlive the clients that use it, else their shutdown hangs for seconds:
//!   the `RunningApp` drops it last.
//!
//! The mock cluster is not `Send`; it lives on a thread of its own and this handle talks to
//! it over a channel (no `unsafe` needed).

use std::collections::HashSet;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::types::RDKafkaErrorCode;

use crate::config::Config;
use crate::error::Error;
use crate::registry::ListenerSpec;

/// The `mq.kafka.bootstrap-servers` value that selects the embedded cluster.
pub(crate) const EMBEDDED: &str = "embedded";

/// How long dropping the last handle waits for the cluster to be destroyed.
const DESTROY_TIMEOUT: Duration = Duration::from_secs(10);

/// Consumers' `fetch.wait.max.ms` on the embedded cluster (see [`resolve`]).
const EMBEDDED_FETCH_WAIT_MS: u32 = 10;

/// The process's embedded cluster, while some app uses it.
static SHARED: Mutex<Weak<EmbeddedKafka>> = Mutex::new(Weak::new());

/// True when `bootstrap` asks for the embedded cluster.
pub(crate) fn is_embedded(bootstrap: &str) -> bool {
    bootstrap.trim().eq_ignore_ascii_case(EMBEDDED)
}

/// When the configuration says `embedded`, starts (or joins) the process's embedded cluster
/// and points `mq.kafka.bootstrap-servers` at it; otherwise does nothing.
pub(crate) fn resolve(config: &mut Config) -> Result<Option<Arc<EmbeddedKafka>>, Error> {
    if !is_embedded(&config.mq.kafka.bootstrap_servers) {
        return Ok(None);
    }
    let cluster = EmbeddedKafka::shared()?;
    tracing::info!(
        bootstrap_servers = cluster.bootstrap_servers(),
        "using the embedded Kafka cluster (in memory, this process only)"
    );
    config.mq.kafka.bootstrap_servers = cluster.bootstrap_servers().to_owned();
    // The mock broker holds every fetch for the whole `fetch.wait.max.ms` (librdkafka's
    // default 500 ms), even when records arrive meanwhile; a real broker answers at once.
    // Poll it often instead, unless the configuration says otherwise.
    let props = &mut config.mq.kafka.consumer.properties;
    if !props.contains_key("fetch.wait.max.ms") {
        props.insert("fetch.wait.max.ms", EMBEDDED_FETCH_WAIT_MS.to_string());
    }
    Ok(Some(cluster))
}

enum Command {
    CreateTopic {
        name: String,
        partitions: i32,
        reply: mpsc::Sender<Result<(), String>>,
    },
}

/// A handle on the in-process mock cluster.
pub(crate) struct EmbeddedKafka {
    bootstrap: String,
    commands: Mutex<Option<mpsc::Sender<Command>>>,
    destroyed: Mutex<Option<mpsc::Receiver<()>>>,
    created: Mutex<HashSet<String>>,
}

impl EmbeddedKafka {
    /// The process's cluster: the running one, or a new one.
    pub(crate) fn shared() -> Result<Arc<EmbeddedKafka>, Error> {
        let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cluster) = shared.upgrade() {
            return Ok(cluster);
        }
        let cluster = Arc::new(EmbeddedKafka::start()?);
        *shared = Arc::downgrade(&cluster);
        Ok(cluster)
    }

    /// Starts a one-broker mock cluster on its own thread.
    fn start() -> Result<EmbeddedKafka, Error> {
        let (commands, inbox) = mpsc::channel::<Command>();
        let (ready_tx, ready) = mpsc::channel::<Result<String, String>>();
        let (destroyed_tx, destroyed) = mpsc::channel::<()>();
        std::thread::Builder::new()
            .name("mq-embedded-kafka".to_owned())
            .spawn(move || {
                let cluster = match MockCluster::new(1) {
                    Ok(c) => c,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(cluster.bootstrap_servers()));
                // Runs until every handle is gone (the command channel closes).
                while let Ok(command) = inbox.recv() {
                    match command {
                        Command::CreateTopic {
                            name,
                            partitions,
                            reply,
                        } => {
                            let result = match cluster.create_topic(&name, partitions, 1) {
                                Ok(()) => Ok(()),
                                Err(KafkaError::MockCluster(
                                    RDKafkaErrorCode::TopicAlreadyExists,
                                )) => Ok(()),
                                Err(e) => Err(format!("cannot create topic {name}: {e}")),
                            };
                            let _ = reply.send(result);
                        }
                    }
                }
                drop(cluster);
                let _ = destroyed_tx.send(());
            })
            .map_err(|e| Error::Kafka(format!("cannot start the embedded cluster: {e}")))?;
        let bootstrap = ready
            .recv()
            .map_err(|_| Error::Kafka("the embedded cluster did not start".to_owned()))?
            .map_err(|e| Error::Kafka(format!("cannot start the embedded cluster: {e}")))?;
        Ok(EmbeddedKafka {
            bootstrap,
            commands: Mutex::new(Some(commands)),
            destroyed: Mutex::new(Some(destroyed)),
            created: Mutex::new(HashSet::new()),
        })
    }

    /// Where the cluster listens (`127.0.0.1:<port>`).
    pub(crate) fn bootstrap_servers(&self) -> &str {
        &self.bootstrap
    }

    /// Creates `topic` with `partitions` partitions unless it exists. Blocks briefly (a
    /// round trip to the cluster's thread).
    pub(crate) fn create_topic(&self, topic: &str, partitions: i32) -> Result<(), Error> {
        if self
            .created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(topic)
        {
            return Ok(());
        }
        let (reply, answer) = mpsc::channel();
        let sender = self
            .commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| Error::Kafka("the embedded cluster is shut down".to_owned()))?;
        sender
            .send(Command::CreateTopic {
                name: topic.to_owned(),
                partitions,
                reply,
            })
            .map_err(|_| Error::Kafka("the embedded cluster is gone".to_owned()))?;
        answer
            .recv()
            .map_err(|_| Error::Kafka("the embedded cluster is gone".to_owned()))?
            .map_err(Error::Kafka)?;
        self.created
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(topic.to_owned());
        tracing::info!(%topic, partitions, "created topic on the embedded cluster");
        Ok(())
    }

    /// Creates the listeners' topics, their retry topics and their dead-letter topics (what
    /// the admin client does against a real broker), with `mq.kafka.admin.partitions`
    /// partitions.
    pub(crate) fn create_listener_topics(
        &self,
        config: &Config,
        specs: &[ListenerSpec],
    ) -> Result<(), Error> {
        let partitions = config.mq.kafka.admin.partitions.max(1);
        for spec in specs {
            for topic in &spec.topics {
                self.create_topic(topic, partitions)?;
                for retry in super::retry_topic::of_listener(spec, topic) {
                    self.create_topic(&retry, partitions)?;
                }
                if spec.dlt.enabled {
                    for dlt in spec.dlt_topics(topic) {
                        self.create_topic(&dlt, partitions)?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl Drop for EmbeddedKafka {
    fn drop(&mut self) {
        // Closing the channel ends the cluster's thread, which destroys the cluster.
        self.commands
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let destroyed = self
            .destroyed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(destroyed) = destroyed {
            if destroyed.recv_timeout(DESTROY_TIMEOUT).is_err() {
                tracing::warn!("the embedded cluster did not stop in time");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_keyword_is_recognised_loosely() {
        assert!(is_embedded("embedded"));
        assert!(is_embedded(" Embedded "));
        assert!(!is_embedded("127.0.0.1:9092"));
    }

    #[test]
    fn apps_of_one_process_share_one_cluster_until_the_last_is_gone() {
        let a = EmbeddedKafka::shared().unwrap();
        let b = EmbeddedKafka::shared().unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(
            a.bootstrap_servers().starts_with("127.0.0.1:"),
            "{}",
            a.bootstrap_servers()
        );
        a.create_topic("t", 2).unwrap();
        b.create_topic("t", 2).unwrap();
        drop((a, b));
        let c = EmbeddedKafka::shared().unwrap();
        c.create_topic("t", 1).unwrap();
    }
}
