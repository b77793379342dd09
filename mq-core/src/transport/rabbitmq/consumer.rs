//! A queue listener's consumers: each one a channel with `basic.qos(prefetch)`, one
//! `basic.consume`, and one lane.
//!
//! The consumer task only routes deliveries into its lane (and each delivery's lapin
//! `Acker` to the [`Acks`] task); the lane runs the listener's pipeline and commits
//! through a delivery tag once everything up to it is done, which the [`Acks`] task turns
//! into `basic.ack(tag, multiple = true)` through that delivery's `Acker`, in order: one
//! ack per half prefetch of settled deliveries, or
//! 2 ms after the last one (the broker shares the machine's cores; every ack frame costs
//! it). When the channel or the connection is lost, the lane
//! is closed (its unacked messages come back from RabbitMQ, to this or another consumer),
//! and the consumer connects, declares and consumes again, with a new lane.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Acker, Channel};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::connection::Rabbit;
use super::redelivery::Lost;
use super::topology::QueueMode;
use super::{properties, topology};
use crate::actuator::StartupState;
use crate::config::{AcknowledgeMode, RabbitListenerConfig};
use crate::consume::status::{ConsumerStatus, Statuses};
use crate::consume::{self, LaneKey, LaneSet, LaneSettings, LaneSource, Valve};
use crate::pipeline::ListenerRuntime;
use crate::record::Record;

/// What the ack task is asked to do.
enum AckMsg {
    /// A delivery came, with its acker (sent before its record reaches the lane).
    Delivered(u64, Acker),
    /// Acknowledge every delivery through this tag.
    Through(u64),
    /// Answer once every ack asked before was sent.
    Flush(oneshot::Sender<()>),
}

/// A consumer's channel as its lane's source: acks go out in the order the lane commits
/// them (a `multiple` ack behind a higher one would be an unknown tag, which closes the
/// channel), from one task, each through the `Acker` of the highest delivery it settles
/// (lapin's per-delivery handle: once the channel closed it refuses, so an ack never
/// reaches a channel the delivery did not come on).
struct Acks {
    tx: mpsc::UnboundedSender<AckMsg>,
    manual: bool,
}

impl Acks {
    /// The ack task of `channel`: one `multiple` ack once `batch` deliveries (half the
    /// prefetch) are settled past the last ack, or [`ACK_LINGER`] after the last settled
    /// one, or on a flush; never for a delivery not settled yet.
    fn start(manual: bool, batch: u64) -> Acks {
        let (tx, mut rx) = mpsc::unbounded_channel::<AckMsg>();
        tokio::spawn(async move {
            // The ackers of the deliveries not acked yet (at most `prefetch`), in tag order.
            let mut unacked = VecDeque::new();
            // The highest settled tag not acked yet, and the last tag acked.
            let mut pending: Option<u64> = None;
            let mut acked = 0u64;
            loop {
                let msg = match pending {
                    None => rx.recv().await,
                    Some(tag) => match tokio::time::timeout(ACK_LINGER, rx.recv()).await {
                        Ok(msg) => msg,
                        Err(_) => {
                            acked = ack(&mut unacked, tag).await;
                            pending = None;
                            continue;
                        }
                    },
                };
                match msg {
                    Some(AckMsg::Delivered(tag, acker)) => unacked.push_back((tag, acker)),
                    Some(AckMsg::Through(tag)) => {
                        let tag = pending.map_or(tag, |p| p.max(tag));
                        if tag <= acked {
                            continue;
                        }
                        if tag - acked >= batch {
                            acked = ack(&mut unacked, tag).await;
                            pending = None;
                        } else {
                            pending = Some(tag);
                        }
                    }
                    Some(AckMsg::Flush(f)) => {
                        if let Some(tag) = pending.take() {
                            acked = ack(&mut unacked, tag).await;
                        }
                        let _ = f.send(());
                    }
                    None => {
                        if let Some(tag) = pending {
                            ack(&mut unacked, tag).await;
                        }
                        break;
                    }
                }
            }
        });
        Acks { tx, manual }
    }

    /// Hands the ack task the acker of delivery `tag` (in manual mode; none is needed
    /// otherwise).
    fn delivered(&self, tag: u64, acker: Acker) {
        if self.manual {
            let _ = self.tx.send(AckMsg::Delivered(tag, acker));
        }
    }

    /// Waits until every ack asked for so far was sent.
    async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(AckMsg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

impl Valve for Acks {
    // `basic.qos(prefetch)` bounds what RabbitMQ sends a consumer ahead of its acks, so a
    // lane's buffer never grows past `prefetch` messages: there is nothing to pause.
    fn pause(&self) {}
    fn resume(&self) {}
}

impl LaneSource for Acks {
    fn commit_through(&self, offset: i64) {
        if self.manual {
            let _ = self.tx.send(AckMsg::Through(offset as u64));
        }
    }
}

/// How long settled deliveries wait for more before they are acked (fewer ack frames for
/// the broker to process, at most this much later).
const ACK_LINGER: Duration = Duration::from_millis(2);

/// Acknowledges every delivery through `tag` (`multiple`, through the acker of `tag`) and
/// forgets their ackers; returns `tag`.
async fn ack(unacked: &mut VecDeque<(u64, Acker)>, tag: u64) -> u64 {
    let mut last = None;
    while unacked.front().is_some_and(|(t, _)| *t <= tag) {
        last = unacked.pop_front();
    }
    let Some((_, acker)) = last.filter(|(t, _)| *t == tag) else {
        // Never a delivery of this channel: nothing to ack (the broker would close it).
        tracing::debug!(tag, "ack not sent: no such delivery");
        return tag;
    };
    let multiple = BasicAckOptions { multiple: true };
    match acker.ack(multiple).await {
        Ok(true) => {}
        // The channel is gone: RabbitMQ delivers the messages again.
        Ok(false) => tracing::debug!(tag, "ack not sent: channel closed"),
        Err(e) => tracing::debug!(tag, error = %e, "ack not sent: channel closed"),
    }
    tag
}

/// One consumer of a queue listener.
pub(crate) struct QueueConsumer {
    pub(crate) rabbit: Arc<Rabbit>,
    pub(crate) runtime: Arc<ListenerRuntime>,
    pub(crate) index: i32,
    pub(crate) settings: LaneSettings,
    pub(crate) listener: RabbitListenerConfig,
    pub(crate) shutdown: CancellationToken,
    /// Where the consumer shows itself once it consumes (until then the listener is not
    /// ready, and `startup` says why).
    pub(crate) statuses: Statuses,
    /// Why the consumer is not consuming (broker away, a refused declaration).
    pub(crate) startup: StartupState,
    /// Where a message whose channel closed under its handler is told (shared with the
    /// listener's routes).
    pub(crate) lost: Arc<Lost>,
    /// Declare the queue (`mq.listeners.<name>.declare`, else
    /// `mq.rabbitmq.listener.declare`), or take it as it exists.
    pub(crate) declare: bool,
    /// Said once that the queue is consumed as it is.
    pub(crate) warned: AtomicBool,
    /// Whether the WARN that a dead-letter or retry queue is used as it is was given.
    pub(crate) warned_dead_letters: AtomicBool,
}

impl QueueConsumer {
    /// Starts the consumer; the task ends after shutdown, once its lane drained and its
    /// acks were sent.
    pub(crate) fn spawn(self) -> JoinHandle<()> {
        let status = Arc::new(ConsumerStatus::default());
        let rt = tokio::runtime::Handle::current();
        let lanes = Arc::new(LaneSet::new(
            self.runtime.clone(),
            self.settings,
            rt.clone(),
        ));
        let _ = status.lanes.set(lanes.clone());
        consume::spawn_watchdog(&lanes, self.shutdown.clone(), &rt);
        tokio::spawn(async move { self.run(&lanes, &status).await })
    }

    fn set_startup(&self, why: Option<String>) {
        *self.startup.lock().unwrap_or_else(|p| p.into_inner()) = why;
    }

    /// Shows the consumer to health checks and `RunningApp`, once.
    fn show(&self, status: &Arc<ConsumerStatus>) {
        let mut statuses = self.statuses.write().unwrap_or_else(|p| p.into_inner());
        if !statuses.iter().any(|(_, s)| Arc::ptr_eq(s, status)) {
            statuses.push((self.runtime.spec.name, status.clone()));
        }
    }

    /// Consumes until shutdown, starting over (with a growing pause, up to 5 s) whenever
    /// the broker is away or the channel was lost.
    async fn run(self, lanes: &LaneSet, status: &Arc<ConsumerStatus>) {
        let name = self.runtime.spec.name;
        let mut pause = Duration::from_millis(250);
        let mut last: Option<String> = None;
        loop {
            match self.consume(lanes, status).await {
                Ok(()) => return,
                Err(e) => {
                    status.assigned.store(0, Ordering::Relaxed);
                    let broker = self.rabbit.address();
                    if last.as_deref() == Some(e.as_str()) {
                        // Said already: the same refusal every few seconds is noise.
                        tracing::debug!(listener = name, error = %e, "queue consumer still refused");
                    } else if needs_operator(&e) {
                        tracing::error!(listener = name, broker = %broker, error = %e,
                            "queue consumer cannot consume until an operator acts; readiness is DOWN, trying again quietly");
                    } else {
                        tracing::warn!(listener = name, broker = %broker, error = %e,
                            "queue consumer stopped; consuming again when RabbitMQ answers");
                    }
                    self.set_startup(Some(format!("listener {name}: {e}")));
                    last = Some(e);
                }
            }
            // The loop is alive while it waits: RabbitMQ being away is for readiness to
            // report, not liveness.
            stamp(status);
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
            stamp(status);
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    /// One life of the consumer: channel, topology, qos, consume, route; `Ok` on shutdown.
    async fn consume(&self, lanes: &LaneSet, status: &Arc<ConsumerStatus>) -> Result<(), String> {
        let queue = self.runtime.spec.queues[0].as_str();
        let connection = self.rabbit.connection().await?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| format!("cannot open a channel: {e}"))?;
        let bindings = &self.runtime.spec.bindings;
        let retry_ttls = super::retry_queue::ttls(&self.runtime.spec.retry);
        let limit = self.listener.delivery_limit;
        let mode = if self.declare {
            QueueMode::Declare
        } else {
            QueueMode::AsItIs
        };
        // With a delivery limit mq declares a quorum queue; otherwise what exists says.
        let (channel, quorum) =
            match topology::declare(&channel, queue, mode, bindings, limit).await {
                // A queue operations created otherwise (quorum, single active consumer, its own
                // dead-lettering): consumed as it is, as Spring's `@RabbitListener(queues = ..)`
                // does, unless mq needs its own arguments (a delivery limit).
                Err(e)
                    if mode == QueueMode::Declare
                        && limit.is_none()
                        && topology::is_inequivalent(&e) =>
                {
                    let (channel, args) = self.as_it_is(&connection, queue, &e).await?;
                    // The bindings.
                    topology::declare(&channel, queue, QueueMode::AsItIs, bindings, limit).await?;
                    (channel, topology::is_quorum(&args))
                }
                Err(e) => return Err(e),
                Ok(()) if mode == QueueMode::AsItIs => {
                    // `declare: false`: the queue exists; its kind (quorum, single active
                    // consumer) only its arguments say.
                    let (channel, args) = self.as_it_is(&connection, queue, "").await?;
                    (channel, topology::is_quorum(&args))
                }
                Ok(()) => (channel, limit.is_some()),
            };
        // Dead letters have somewhere to go; where they cannot for now (their queue's node
        // is down), the listener consumes on: a dead letter waits unacknowledged until its
        // queue takes it.
        match topology::declare_dead_letters(&connection, queue, quorum, &retry_ttls).await {
            Ok(notes)
                if !notes.is_empty() && !self.warned_dead_letters.swap(true, Ordering::Relaxed) =>
            {
                tracing::warn!(listener = self.runtime.spec.name, notes = %notes.join("; "),
                    "dead-letter or retry queue exists with other settings; using it as it is");
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(listener = self.runtime.spec.name, error = %e,
                "cannot declare the dead-letter queues now; consuming on (a dead letter waits \
                 unacknowledged until its queue takes it)"),
        }

        channel
            .basic_qos(self.listener.prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| format!("basic.qos: {e}"))?;
        let manual = self.listener.acknowledge_mode == AcknowledgeMode::Auto;
        let tag = format!(
            "mq-{}-{}-{}",
            self.runtime.spec.name,
            self.index,
            std::process::id()
        );
        let mut deliveries = channel
            .basic_consume(
                properties::short("the queue name", queue)?,
                properties::short("the consumer tag", &tag)?,
                BasicConsumeOptions {
                    no_ack: !manual,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| format!("cannot consume {queue}: {e}"))?;
        let key = LaneKey::of(queue, self.index);
        let batch = u64::from((self.listener.prefetch / 2).max(1));
        let acks = Arc::new(Acks::start(manual, batch));
        lanes.open(key.clone(), acks.clone());
        status.assigned.store(1, Ordering::Relaxed);
        status.member.store(true, Ordering::Relaxed);
        stamp(status);
        self.show(status);
        self.set_startup(None);
        tracing::info!(
            listener = self.runtime.spec.name,
            queue,
            consumer = self.index,
            prefetch = self.listener.prefetch,
            "consuming"
        );
        // One shutdown future and one liveness tick for the consumer's life, not one timer
        // per delivery.
        let shutdown = self.shutdown.cancelled();
        tokio::pin!(shutdown);
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The deliveries not acknowledged yet are among the last `prefetch` ones: the one a
        // handler runs on when the channel closes is found here.
        let window = if manual {
            usize::from(self.listener.prefetch)
        } else {
            0
        };
        let mut recent: VecDeque<Arc<Record>> = VecDeque::with_capacity(window);
        let ended = loop {
            stamp(status);
            tokio::select! {
                biased;
                _ = &mut shutdown => break Ok(()),
                d = deliveries.next() => match d {
                    Some(Ok(d)) => {
                        let record = Arc::new(properties::record_of(&key.topic, self.index, &d));
                        acks.delivered(d.delivery_tag, d.acker);
                        if window > 0 {
                            if recent.len() == window {
                                recent.pop_front();
                            }
                            recent.push_back(record.clone());
                        }
                        if !lanes.push(&key, record) {
                            // The lane closed: never acked, so delivered again.
                            tracing::debug!(queue, tag = d.delivery_tag, "lane closed: delivery left unacked");
                        }
                    }
                    Some(Err(e)) => break Err(format!("consumer of {queue} failed: {e}")),
                    None => break Err(format!("consumer of {queue} was cancelled")),
                },
                _ = tick.tick() => {}
            }
        };
        if ended.is_err() {
            self.lost_under_handler(lanes, &key, &recent);
        }
        drop(recent);
        lanes.close(Some(std::slice::from_ref(&key))).await;
        acks.flush().await;
        if ended.is_ok() {
            let _ = channel.close(200, "shutdown".into()).await;
        }
        ended
    }
}

impl QueueConsumer {
    /// Takes `queue` as it exists (RabbitMQ refused mq's declaration: `refusal`, or
    /// `declare: false`): learns its arguments, refuses a single-active-consumer queue for
    /// more than one consumer, and says once what differs. The channel to consume on.
    async fn as_it_is(
        &self,
        connection: &lapin::Connection,
        queue: &str,
        refusal: &str,
    ) -> Result<(Channel, lapin::types::FieldTable), String> {
        let (wanted, _) = topology::queue_arguments(queue, None);
        let (channel, actual) = topology::existing_arguments(connection, queue, wanted).await?;
        let concurrency = self.runtime.spec.concurrency;
        if topology::is_single_active_consumer(&actual) && concurrency > 1 {
            return Err(sac_refusal(self.runtime.spec.name, queue, concurrency));
        }
        if !refusal.is_empty() && !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(listener = self.runtime.spec.name, queue,
                arguments = %topology::describe(&actual),
                "queue exists with other arguments than mq declares; consuming it as it is \
                 (set mq.listeners.<name>.declare: false to say so and skip this warning)");
        }
        Ok((channel, actual))
    }

    /// The channel closed: the record a handler of the lane is running on (if any) will
    /// be delivered again, and its ack, when the handler ends, goes nowhere.
    fn lost_under_handler(&self, lanes: &LaneSet, key: &LaneKey, recent: &VecDeque<Arc<Record>>) {
        let running = lanes.views().into_iter().find(|v| {
            v.in_handler_ms > 0
                && !v.failed
                && v.partition == key.partition
                && v.topic.as_str() == &*key.topic
        });
        let Some(view) = running else { return };
        if let Some(record) = recent.iter().rev().find(|r| r.offset == view.offset) {
            tracing::warn!(listener = self.runtime.spec.name, queue = %key.topic, tag = view.offset,
                in_handler = ?Duration::from_millis(view.in_handler_ms as u64),
                "channel closed while the handler ran on this message (RabbitMQ's consumer_timeout, or a lost connection): \
                 it will be delivered again and counted as another attempt");
            self.lost.under_handler(record);
        }
    }
}

/// A refusal no retry fixes: the queue's settings or existence.
fn needs_operator(error: &str) -> bool {
    topology::is_inequivalent(error)
        || error.contains("single-active-consumer")
        || error.contains("not there to consume")
        || error.contains("PRECONDITION_FAILED")
        || error.contains("NOT_FOUND")
        || error.contains("ACCESS_REFUSED")
}

/// Why a listener with `concurrency` consumers may not read single-active-consumer `queue`.
pub(crate) fn sac_refusal(listener: &str, queue: &str, concurrency: u32) -> String {
    format!(
        "queue {queue} is a single-active-consumer queue (x-single-active-consumer: true): only \
         one consumer gets its messages, in order, yet listener {listener} has concurrency \
         {concurrency}; set mq.listeners.{listener}.concurrency: 1 (other instances take over \
         in order when this one stops)"
    )
}

fn stamp(status: &ConsumerStatus) {
    status
        .last_poll_ms
        .store(chrono::Utc::now().timestamp_millis(), Ordering::Relaxed);
}
