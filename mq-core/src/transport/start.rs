//! Starting an app on its transports: the management port first, then each transport the
//! listeners need (checked before anything runs), one publisher over all of them, the
//! actuator, and the listeners in the background (a broker that is down at startup only
//! delays them).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::future::BoxFuture;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{Transport, Wiring};
use crate::actuator::{self, ActuatorHandle, ConsumerSource, ConsumerView, HealthIndicator};
use crate::config::Config;
use crate::consume::status::Statuses;
use crate::envelope::ContentMode;
use crate::error::Error;
use crate::handler::StateMap;
use crate::metrics::Metrics;
use crate::publisher::{
    Delivery, PublishError, PublishErrorKind, Publisher, RecordSink, Replies, SinkStatus,
};
use crate::record::OutgoingRecord;
use crate::registry::ListenerSpec;

/// A started app's transports, consumers and actuator (the app wraps it in `RunningApp`).
pub(crate) struct Started {
    pub(crate) publisher: Publisher,
    pub(crate) shutdown: CancellationToken,
    pub(crate) tasks: Vec<JoinHandle<()>>,
    pub(crate) statuses: Statuses,
    /// Consumers the listeners run in all.
    pub(crate) consumers: usize,
    pub(crate) config: Config,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) actuator: Option<ActuatorHandle>,
    /// Dropped last, after every client of theirs (an embedded cluster must outlive them).
    pub(crate) transports: Vec<Arc<dyn Transport>>,
}

/// The transports this build of mq has, in the order they claim listeners and
/// destinations; the last one that takes every destination is the default.
#[allow(clippy::vec_init_then_push)] // one push per transport built in
fn transports(
    config: &mut Config,
    specs: &[ListenerSpec],
) -> Result<Vec<Arc<dyn Transport>>, Error> {
    #[allow(unused_mut)] // a build without transports
    let mut all: Vec<Arc<dyn Transport>> = Vec::new();
    #[cfg(feature = "rabbitmq")]
    all.push(Arc::new(super::rabbitmq::transport::RabbitTransport::open(
        config,
    )?));
    #[cfg(feature = "kafka")]
    all.push(Arc::new(super::kafka::transport::KafkaTransport::open(
        config, specs,
    )?));
    let _ = (&config, specs);
    Ok(all)
}

/// Starts `specs` on the transports that run them: fails only for what a broker cannot
/// fix (the management port, client settings, a TLS or SASL refusal, a listener no
/// transport of this build runs).
pub(crate) async fn start(
    mut config: Config,
    state: StateMap,
    metrics: Arc<Metrics>,
    mut indicators: actuator::Indicators,
    specs: Vec<ListenerSpec>,
) -> Result<Started, Error> {
    // Bind the management port first: a taken port fails the start before any client.
    let management = actuator::bind(&config).await?;
    let transports = transports(&mut config, &specs)?;
    // Each listener goes to the first transport that runs it.
    let mut assigned: Vec<Vec<ListenerSpec>> = vec![Vec::new(); transports.len()];
    for spec in &specs {
        match transports.iter().position(|t| t.runs(spec)) {
            Some(i) => assigned[i].push(spec.clone()),
            None => return Err(Error::NoTransport(no_transport(spec))),
        }
    }
    // The transports with listeners; with none at all, the default one (it publishes).
    let mut active: Vec<usize> = (0..transports.len())
        .filter(|i| !assigned[*i].is_empty())
        .collect();
    if active.is_empty() && !transports.is_empty() {
        active.push(transports.len() - 1);
    }
    for &i in &active {
        transports[i].prepare(&assigned[i]).await?;
    }
    let sends = Arc::new(actuator::PublisherStats::default());
    // Requests wait for the reply consumer only where one will run.
    let reads_replies = config.mq.kafka.reply_topic.is_some();
    let replies = Replies::new(
        config.mq.reply.max_in_flight,
        config.mq.reply.timeout,
        super::decode_limits(&config),
        !reads_replies,
        &metrics,
    );
    let mode = config.mq.kafka.producer.content_mode;
    let publisher = Publisher::new(
        Arc::new(actuator::TrackedSink::new(
            Routed::over(&transports),
            sends.clone(),
        )),
        format!("/{}", config.mq.application.name),
        mode.unwrap_or(ContentMode::Binary),
    )
    .with_default_modes(match mode {
        Some(_) => None,
        None => Some(transport_modes(&transports)),
    })
    .with_topic_modes(config.mq.kafka.producer.topic_content_modes())
    .with_metrics(metrics.clone())
    .with_replies(replies.clone());

    // The broker component of health and readiness is the first active transport's; the
    // others' join the indicators under their own names.
    let mut broker: Option<(String, Arc<dyn HealthIndicator>)> = None;
    for &i in &active {
        let t = &transports[i];
        let health = t.health(&assigned[i])?;
        if broker.is_none() {
            broker = Some((t.name().to_owned(), health));
        } else {
            indicators.retain(|(n, _)| n != t.name());
            indicators.push((t.name().to_owned(), health));
        }
    }

    let shutdown = CancellationToken::new();
    let statuses = Statuses::default();
    let startup = actuator::StartupState::default();
    let controls = crate::control::Controls::default();
    let consumers = specs.iter().map(|s| s.concurrency as usize).sum();
    let actuator = management.map(|listener| {
        let routes = transports.clone();
        actuator::serve(
            listener,
            actuator::Parts {
                config: config.clone(),
                metrics: metrics.clone(),
                listeners: specs.clone(),
                dead_letters: Arc::new(move |spec: &ListenerSpec| {
                    routes
                        .iter()
                        .find(|t| t.runs(spec))
                        .map(|t| t.dead_letter_destinations(spec))
                        .unwrap_or_default()
                }),
                consumers: consumer_source(statuses.clone()),
                broker,
                publisher: sends,
                user: indicators,
                app_shutdown: shutdown.clone(),
                controls: controls.clone(),
                startup: startup.clone(),
            },
        )
    });
    let wiring = Wiring {
        config: config.clone(),
        publisher: publisher.clone(),
        state,
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
        statuses: statuses.clone(),
        startup,
        controls,
    };
    let mut tasks = Vec::new();
    for (transport, specs) in transports.iter().zip(assigned) {
        if !specs.is_empty() {
            tasks.extend(transport.start_listeners(specs, &wiring));
        }
        tasks.extend(transport.start_replies(&replies, &wiring));
    }
    Ok(Started {
        publisher,
        shutdown,
        tasks,
        statuses,
        consumers,
        config,
        metrics,
        actuator,
        transports,
    })
}

/// Why no transport of this build runs `spec`.
fn no_transport(spec: &ListenerSpec) -> String {
    let (what, feature) = if spec.queues.is_empty() {
        ("topics", "kafka")
    } else {
        ("queues", "rabbitmq")
    };
    format!(
        "listener {} reads {what} {:?}, but mq-core was built without the `{feature}` feature",
        spec.name,
        spec.sources()
    )
}

/// Each destination's default content mode: its transport's (the first that publishes to
/// it, as [`Routed`] picks).
fn transport_modes(transports: &[Arc<dyn Transport>]) -> crate::publisher::DefaultModes {
    let transports = transports.to_vec();
    Arc::new(move |destination: &str| {
        transports
            .iter()
            .find(|t| t.publishes_to(destination))
            .map_or(ContentMode::Structured, |t| t.default_content_mode())
    })
}

/// What the actuator reads of the listeners' consumers.
fn consumer_source(statuses: Statuses) -> ConsumerSource {
    Arc::new(move || {
        statuses
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(name, s)| ConsumerView {
                listener: name,
                assigned: s.assigned.load(Ordering::Relaxed),
                last_poll_ms: s.last_poll_ms.load(Ordering::Relaxed),
                rebalances: s.rebalances.load(Ordering::Relaxed),
                member: s.member.load(Ordering::Relaxed),
                lanes: s.lanes.get().map(|l| l.views()).unwrap_or_default(),
                stopped: s.stopped().map(str::to_owned),
            })
            .collect()
    })
}

/// The app's one sink: each record goes to the first transport that takes its
/// destination.
struct Routed {
    sinks: Vec<(Arc<dyn Transport>, Arc<dyn RecordSink>)>,
}

impl Routed {
    fn over(transports: &[Arc<dyn Transport>]) -> Routed {
        Routed {
            sinks: transports.iter().map(|t| (t.clone(), t.sink())).collect(),
        }
    }
}

impl Routed {
    /// The sink of the first transport that takes `destination`.
    fn sink_of(&self, destination: &str) -> Option<&Arc<dyn RecordSink>> {
        self.sinks
            .iter()
            .find(|(t, _)| t.publishes_to(destination))
            .map(|(_, s)| s)
    }
}

impl RecordSink for Routed {
    fn send(&self, record: OutgoingRecord) -> BoxFuture<'static, Result<Delivery, PublishError>> {
        match self.sink_of(&record.topic) {
            Some(sink) => sink.send(record),
            None => {
                let error = PublishError::Broker {
                    reason: format!(
                        "no transport of this build publishes to {:?} (mq-core's `kafka` or `rabbitmq` feature)",
                        record.topic
                    ),
                    topic: record.topic,
                    kind: PublishErrorKind::DestinationRejected,
                };
                Box::pin(async move { Err(error) })
            }
        }
    }

    fn stamp_request(&self, request: &mut OutgoingRecord, correlation: &[u8]) -> bool {
        self.sink_of(&request.topic)
            .is_some_and(|s| s.stamp_request(request, correlation))
    }

    fn stamp_reply(&self, reply: &mut OutgoingRecord, correlation: &[u8]) {
        if let Some(sink) = self.sink_of(&reply.topic) {
            sink.stamp_reply(reply, correlation);
        }
    }

    /// Every transport's, together: fatal errors added up, the last one and a block
    /// from whichever sink reports one.
    fn status(&self) -> SinkStatus {
        let mut all = SinkStatus::default();
        for (_, sink) in &self.sinks {
            let status = sink.status();
            all.fatal_errors += status.fatal_errors;
            all.last_fatal_error = all.last_fatal_error.or(status.last_fatal_error);
            all.blocked = all.blocked.or(status.blocked);
        }
        all
    }
}
