//! The top of the house: the brokers. Each transport is a unit that supplies what the
//! layers below it ask for through their own traits (lanes to the consumers, a
//! [`RecordSink`] to the publisher, [`FailureRoutes`](crate::failure::routes::FailureRoutes)
//! to the pipeline, a health indicator to the actuator) and implements [`Transport`] for
//! [`start`](start::start), which wires the ones an app needs. Nothing below names any of them, and Kafka
//! and RabbitMQ do not name each other.
//!
//! - [`kafka`]: librdkafka (feature `kafka`); Spring Kafka's retry-topic and dead-letter
//!   conventions;
//! - [`rabbitmq`]: lapin (feature `rabbitmq`); Spring AMQP's retry-queue and dead-letter
//!   conventions;
//! - [`memory`]: the in-memory broker of `TestApp`.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::actuator::{HealthIndicator, StartupState};
use crate::config::Config;
use crate::consume::status::Statuses;
use crate::consume::LaneSettings;
use crate::control::Controls;
use crate::envelope::{ContentMode, DecodeLimits};
use crate::error::Error;
use crate::failure::routes::FailureRoutes;
use crate::handler::StateMap;
use crate::metrics::Metrics;
use crate::pipeline::ListenerRuntime;
use crate::publisher::{Publisher, RecordSink, Replies};
use crate::registry::ListenerSpec;

pub mod dead_letter;
pub(crate) mod kafka;
pub(crate) mod memory;
pub(crate) mod rabbitmq;
pub(crate) mod start;

/// What a transport's listeners are started with.
#[derive(Clone)]
#[cfg_attr(not(any(feature = "kafka", feature = "rabbitmq")), allow(dead_code))]
pub(crate) struct Wiring {
    pub(crate) config: Config,
    pub(crate) publisher: Publisher,
    pub(crate) state: StateMap,
    pub(crate) metrics: Arc<Metrics>,
    /// Cancelled when the app stops: the consumers drain and end.
    pub(crate) shutdown: CancellationToken,
    /// Where each started consumer shows itself.
    pub(crate) statuses: Statuses,
    /// Why the consumers are not running yet (a broker away at startup).
    pub(crate) startup: StartupState,
    /// The listeners' gates (pause and resume).
    pub(crate) controls: Controls,
}

/// One broker, as [`start`](start::start) drives it. Created from the configuration without
/// connecting; everything that needs the broker itself happens in the background, so a
/// broker that is down at startup only delays the listeners.
pub(crate) trait Transport: Send + Sync {
    /// The name of its health component (`kafka`, `rabbit`).
    fn name(&self) -> &'static str;

    /// Whether it runs `spec` (reads its topics or queues).
    fn runs(&self, spec: &ListenerSpec) -> bool;

    /// Whether it takes records bound for `destination` (as opposed to the default
    /// transport, which takes the rest).
    fn publishes_to(&self, destination: &str) -> bool;

    /// Checks, before any listener starts, what no broker can fix (client settings, TLS
    /// and SASL refusals), and readies what must exist before the listeners run. `specs`
    /// are the listeners it will run (none: it only publishes).
    fn prepare<'a>(&'a self, specs: &'a [ListenerSpec]) -> BoxFuture<'a, Result<(), Error>>;

    /// Where the app's publisher sends the records this transport takes.
    fn sink(&self) -> Arc<dyn RecordSink>;

    /// Its broker's reachability, for health and readiness.
    fn health(&self, specs: &[ListenerSpec]) -> Result<Arc<dyn HealthIndicator>, Error>;

    /// Starts the consumers of `specs` (in the background); the tasks end on shutdown.
    fn start_listeners(&self, specs: Vec<ListenerSpec>, wiring: &Wiring) -> Vec<JoinHandle<()>>;

    /// The CloudEvents content mode of events sent to its destinations when neither
    /// `mq.kafka.producer.content-mode` nor the destination's own setting says: structured
    /// unless the transport says otherwise (Kafka: binary).
    fn default_content_mode(&self) -> ContentMode {
        ContentMode::Structured
    }

    /// Starts the consumer that hands the replies to this app's requests to `replies`,
    /// when the app reads replies on this broker (Kafka: `mq.kafka.reply-topic`); the task
    /// ends on shutdown. Default: none.
    fn start_replies(&self, replies: &Arc<Replies>, wiring: &Wiring) -> Option<JoinHandle<()>> {
        let _ = (replies, wiring);
        None
    }

    /// Where the dead letters of `spec` go (for `/actuator/info`).
    fn dead_letter_destinations(&self, spec: &ListenerSpec) -> Vec<String>;

    /// Flushes what is still being sent and closes its connections. Called on a blocking
    /// thread once the consumers ended.
    fn close(&self, timeout: Duration);
}

impl Wiring {
    /// The runtime of one listener on a transport whose failure conventions are `routes`:
    /// the one place a listener's pipeline is assembled.
    pub(crate) fn runtime(
        &self,
        spec: ListenerSpec,
        routes: Arc<dyn FailureRoutes>,
    ) -> Arc<ListenerRuntime> {
        let spec_name = spec.name;
        Arc::new(
            ListenerRuntime::new(
                spec,
                self.publisher.clone(),
                self.state.clone(),
                decode_limits(&self.config),
                &self.metrics,
                routes,
            )
            .with_gate(self.controls.gate(spec_name)),
        )
    }
}

/// How the lanes of `spec`'s consumers run, from the configuration.
pub(crate) fn lane_settings(config: &Config, spec: &ListenerSpec) -> LaneSettings {
    LaneSettings {
        ordering: spec.ordering,
        max_in_flight: spec.max_in_flight,
        buffer_bytes: config.mq.listener.buffer_bytes,
        drain_timeout: config.mq.shutdown.timeout,
        warn_after: spec.handler_warn_after,
    }
}

/// What a listener's records may be, from the configuration.
pub(crate) fn decode_limits(config: &Config) -> DecodeLimits {
    DecodeLimits {
        max_payload_bytes: config.mq.listener.max_payload_bytes,
    }
}
