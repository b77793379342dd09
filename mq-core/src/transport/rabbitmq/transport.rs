//! The RabbitMQ transport as an app starts it: one connection opened by the first queue
//! consumer or `amqp://` publish, the TLS check that fails a start, and `concurrency`
//! consumers per queue listener (each declares its queue and consumes in the background,
//! again whenever RabbitMQ was away), with the queue-depth gauge beside them.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::task::JoinHandle;

use super::connection::Rabbit;
use super::consumer::{sac_refusal, QueueConsumer};
use super::destination::is_rabbit;
use super::health::RabbitHealth;
use super::publisher::RabbitSink;
use super::redelivery::{ConsumerRoutes, Lost};
use super::routes::RabbitRoutes;
use super::topology;
use crate::actuator::HealthIndicator;
use crate::config::Config;
use crate::error::Error;
use crate::failure::routes::FailureRoutes;
use crate::publisher::{RecordSink, Replies};
use crate::registry::ListenerSpec;
use crate::transport::{lane_settings, Transport, Wiring};

/// RabbitMQ, for one app.
pub(crate) struct RabbitTransport {
    /// The consumers' connection (and the queue-depth poller's, and health's).
    rabbit: Arc<Rabbit>,
    /// The publishing connection: its own, so that a broker blocking publishers (an
    /// alarm) leaves the consumers' acks flowing.
    publishing: Arc<Rabbit>,
    /// The app's publisher sends `amqp://` records here (on `publishing`).
    sink: RabbitSink,
}

impl RabbitTransport {
    /// The connection settings (TLS material read, nothing connected yet).
    pub(crate) fn open(config: &Config) -> Result<RabbitTransport, Error> {
        let rabbit = Rabbit::new(config.mq.rabbitmq.clone(), &config.mq.application.name)
            .map_err(Error::Rabbit)?;
        let rabbit = Arc::new(rabbit);
        let publishing = Rabbit::new(
            config.mq.rabbitmq.clone(),
            &format!("{} publisher", config.mq.application.name),
        )
        .map_err(Error::Rabbit)?;
        let publishing = Arc::new(publishing);
        Ok(RabbitTransport {
            sink: RabbitSink::new(publishing.clone()),
            publishing,
            rabbit,
        })
    }
}

impl RabbitTransport {
    /// A listener with `concurrency` > 1 whose queue exists as a single-active-consumer
    /// queue: only one of its consumers would get messages. A broker that does not answer
    /// within 5 s is not decided here (the consumers report it).
    async fn refuse_concurrent_single_active_consumers(
        &self,
        specs: &[ListenerSpec],
    ) -> Result<(), String> {
        let many: Vec<&ListenerSpec> = specs.iter().filter(|s| s.concurrency > 1).collect();
        if many.is_empty() {
            return Ok(());
        }
        let Ok(Ok(connection)) =
            tokio::time::timeout(Duration::from_secs(5), self.rabbit.connection()).await
        else {
            return Ok(());
        };
        for spec in many {
            let Some(queue) = spec.queues.first() else {
                continue;
            };
            // Only a queue that exists (learning its arguments declares it otherwise).
            let Ok(channel) = connection.create_channel().await else {
                continue;
            };
            let Ok(name) = super::properties::short("the queue name", queue) else {
                continue;
            };
            let passive = lapin::options::QueueDeclareOptions::default().passive();
            let exists = channel
                .queue_declare(name, passive, lapin::types::FieldTable::default())
                .await
                .is_ok();
            let _ = channel.close(200, "checked".into()).await;
            if !exists {
                continue;
            }
            let (wanted, _) = topology::queue_arguments(queue, None);
            if let Ok((channel, args)) =
                topology::existing_arguments(&connection, queue, wanted).await
            {
                let _ = channel.close(200, "checked".into()).await;
                if topology::is_single_active_consumer(&args) {
                    return Err(sac_refusal(spec.name, queue, spec.concurrency));
                }
            }
        }
        Ok(())
    }
}

impl Transport for RabbitTransport {
    fn name(&self) -> &'static str {
        "rabbit"
    }

    fn runs(&self, spec: &ListenerSpec) -> bool {
        !spec.queues.is_empty()
    }

    /// `amqp://<exchange>/<routing-key>` destinations.
    fn publishes_to(&self, destination: &str) -> bool {
        is_rabbit(destination)
    }

    /// Over TLS, an untrusted or misnamed certificate fails the start here; so does a
    /// listener with more than one consumer on a single-active-consumer queue.
    fn prepare<'a>(&'a self, specs: &'a [ListenerSpec]) -> BoxFuture<'a, Result<(), Error>> {
        Box::pin(async move {
            if specs.is_empty() {
                return Ok(());
            }
            self.rabbit.check_tls().await.map_err(Error::Rabbit)?;
            self.refuse_concurrent_single_active_consumers(specs)
                .await
                .map_err(Error::Rabbit)
        })
    }

    fn sink(&self) -> Arc<dyn RecordSink> {
        Arc::new(self.sink.clone())
    }

    /// Direct reply-to needs no consumer of its own until the first request: the sink
    /// opens the request channel, which consumes the replies, then.
    fn start_replies(&self, replies: &Arc<Replies>, _wiring: &Wiring) -> Option<JoinHandle<()>> {
        self.sink.read_replies(replies.clone());
        None
    }

    fn health(&self, _specs: &[ListenerSpec]) -> Result<Arc<dyn HealthIndicator>, Error> {
        Ok(Arc::new(RabbitHealth::new(
            self.rabbit.clone(),
            self.publishing.clone(),
        )))
    }

    fn start_listeners(&self, specs: Vec<ListenerSpec>, wiring: &Wiring) -> Vec<JoinHandle<()>> {
        let mut tasks = Vec::new();
        for spec in specs {
            let (name, queue, concurrency) = (spec.name, spec.queues[0].clone(), spec.concurrency);
            let settings = lane_settings(&wiring.config, &spec);
            let declare = wiring
                .config
                .mq
                .listeners
                .get(name)
                .and_then(|o| o.declare)
                .unwrap_or(wiring.config.mq.rabbitmq.listener.declare);
            let lost = Arc::new(Lost::default());
            let routes = ConsumerRoutes {
                lost: lost.clone(),
                stack_trace: wiring.config.mq.rabbitmq.listener.dead_letter.stack_trace,
                frame_max: self.rabbit.frame_max(),
                headroom: wiring
                    .config
                    .mq
                    .rabbitmq
                    .listener
                    .dead_letter
                    .frame_max_headroom,
            };
            let runtime = wiring.runtime(spec, Arc::new(routes));
            for index in 0..concurrency {
                let consumer = QueueConsumer {
                    rabbit: self.rabbit.clone(),
                    runtime: runtime.clone(),
                    index: index as i32,
                    settings,
                    listener: wiring.config.mq.rabbitmq.listener.clone(),
                    shutdown: wiring.shutdown.child_token(),
                    statuses: wiring.statuses.clone(),
                    startup: wiring.startup.clone(),
                    lost: lost.clone(),
                    declare,
                    warned: Default::default(),
                    warned_dead_letters: Default::default(),
                };
                tasks.push(consumer.spawn());
            }
            tasks.push(super::depth::spawn(
                self.rabbit.clone(),
                wiring.metrics.clone(),
                name,
                queue.clone(),
                wiring.config.mq.rabbitmq.listener.queue_depth_interval,
                wiring.statuses.clone(),
                wiring.shutdown.child_token(),
            ));
            tracing::info!(listener = name, queue = %queue, concurrency, "queue listener started");
        }
        tasks
    }

    fn dead_letter_destinations(&self, spec: &ListenerSpec) -> Vec<String> {
        RabbitRoutes.dead_letter_destinations(spec)
    }

    /// Closes the connection, if the app ever opened it.
    fn close(&self, timeout: Duration) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let both = async { tokio::join!(self.rabbit.close(), self.publishing.close()) };
        let _ = rt.block_on(tokio::time::timeout(timeout, both));
    }
}
