//! An in-memory broker for unit-testing handlers, without Kafka.
//!
//! [`TestApp`] runs the registered listeners over a [`TestBroker`] through the same lanes
//! as the Kafka transport (one per assigned partition: decode, handler, retries,
//! dead-lettering, metrics, committed offsets), with Kafka's group semantics: the consumers
//! of one group share a topic's partitions, and each group gets every record. Publish,
//! [`TestApp::drain`], then look at what was published.
//!
//! ```standalone_crate
//! use mq_core::prelude::*;
//! use mq_core::testing::TestApp;
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! struct Ping { n: u32 }
//!
//! #[listener(topic = "pings")]
//! async fn on_ping(event: Event<Ping>, ctx: Context) -> Result<(), HandlerError> {
//!     ctx.publisher().send("pongs", "k", Ping { n: event.data.n + 1 }).await?;
//!     Ok(())
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let app = TestApp::new(mq_core::App::new(Default::default())).unwrap();
//! app.publisher().send("pings", "k", Ping { n: 1 }).await.unwrap();
//! app.drain().await;
//! let pongs = app.events::<Ping>("pongs");
//! assert_eq!(pongs[0].data.n, 2);
//! assert_eq!(pongs[0].causationid, app.events::<Ping>("pings").first().map(|e| e.id.clone()));
//! # }
//! ```

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use serde::de::DeserializeOwned;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use crate::transport::memory::TestBroker;

use crate::app::App;
use crate::consume::{LaneKey, LaneSet, LaneSource, Valve};
use crate::envelope::{self, ContentMode, Event};
use crate::failure::routes::FailureRoutes;
use crate::pipeline::{Disposition, ListenerRuntime};
use crate::publisher::{Publisher, Replies};
use crate::transport::kafka::retry_topic;
use crate::transport::kafka::routes::KafkaRoutes;
use crate::transport::rabbitmq::routes::RabbitRoutes;
use crate::transport::{lane_settings, Wiring};

/// One consumer of a listener: a member of its group with the lanes of the partitions
/// assigned to it.
struct Member {
    runtime: Arc<ListenerRuntime>,
    settings: crate::consume::LaneSettings,
    lanes: OnceLock<Arc<LaneSet>>,
    /// Next offset to push, and the lane's source, per assigned partition.
    assigned: Mutex<HashMap<LaneKey, (usize, Arc<MemorySource>)>>,
}

/// A partition of the in-memory broker as a lane's source.
struct MemorySource {
    broker: TestBroker,
    group: String,
    key: LaneKey,
    pushed: AtomicUsize,
    finished: AtomicUsize,
    progress: Arc<Notify>,
    outcomes: Arc<Mutex<Vec<Disposition>>>,
}

impl Valve for MemorySource {
    // Everything is in memory already: nothing to pause.
    fn pause(&self) {}
    fn resume(&self) {}
}

impl LaneSource for MemorySource {
    fn commit_through(&self, offset: i64) {
        self.broker
            .commit(&self.group, &self.key.topic, self.key.partition, offset + 1);
    }

    fn finished(&self, disposition: Disposition) {
        self.outcomes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(disposition);
        self.finished.fetch_add(1, Ordering::SeqCst);
        self.progress.notify_waiters();
    }
}

/// An [`App`]'s listeners running over a [`TestBroker`] instead of Kafka.
pub struct TestApp {
    broker: TestBroker,
    publisher: Publisher,
    members: Vec<Member>,
    progress: Arc<Notify>,
    outcomes: Arc<Mutex<Vec<Disposition>>>,
    metrics: Arc<crate::metrics::Metrics>,
    replies: Arc<Replies>,
}

impl TestApp {
    /// Takes the app's configuration, state and listener selection; no connection is made.
    ///
    /// ```
    /// let app = mq_core::testing::TestApp::new(mq_core::App::new(Default::default())).unwrap();
    /// # let _ = app;
    /// ```
    pub fn new(app: App) -> Result<TestApp, crate::error::Error> {
        let specs = app.checked_listeners()?;
        let parts = app.into_parts();
        let broker = TestBroker::new();
        // Requests are answered in memory: the reply topic is read as soon as it is written.
        let replies = Replies::new(
            parts.config.mq.reply.max_in_flight,
            parts.config.mq.reply.timeout,
            crate::transport::decode_limits(&parts.config),
            true,
            &parts.metrics,
        );
        let reply_topic = (parts.config.mq.kafka.reply_topic.clone())
            .unwrap_or_else(|| format!("{}.replies", parts.config.mq.application.name));
        broker.read_replies(reply_topic, replies.clone());
        let mode = parts.config.mq.kafka.producer.content_mode;
        let publisher = Publisher::new(
            Arc::new(broker.clone()),
            format!("/{}", parts.config.mq.application.name),
            mode.unwrap_or(ContentMode::Binary),
        )
        .with_default_modes(match mode {
            Some(_) => None,
            None => Some(Arc::new(crate::transport::memory::default_content_mode)),
        })
        .with_topic_modes(parts.config.mq.kafka.producer.topic_content_modes())
        .with_metrics(parts.metrics.clone())
        .with_replies(replies.clone());
        let wiring = Wiring {
            config: parts.config.clone(),
            publisher: publisher.clone(),
            state: parts.state,
            metrics: parts.metrics.clone(),
            shutdown: CancellationToken::new(),
            statuses: Default::default(),
            startup: Default::default(),
            controls: Default::default(),
        };
        let mut members = Vec::new();
        for spec in specs {
            let settings = lane_settings(&parts.config, &spec);
            // The failure conventions of the broker the listener would run on.
            let routes: Arc<dyn FailureRoutes> = if spec.queues.is_empty() {
                Arc::new(KafkaRoutes)
            } else {
                Arc::new(RabbitRoutes)
            };
            let runtime = wiring.runtime(spec, routes);
            for _ in 0..runtime.spec.concurrency {
                members.push(Member {
                    runtime: runtime.clone(),
                    settings,
                    lanes: OnceLock::new(),
                    assigned: Mutex::new(HashMap::new()),
                });
            }
        }
        Ok(TestApp {
            broker,
            publisher,
            members,
            progress: Arc::new(Notify::new()),
            outcomes: Arc::new(Mutex::new(Vec::new())),
            metrics: parts.metrics,
            replies,
        })
    }

    /// A publisher into the in-memory broker.
    pub fn publisher(&self) -> Publisher {
        self.publisher.clone()
    }

    /// The in-memory broker.
    pub fn broker(&self) -> &TestBroker {
        &self.broker
    }

    /// The requests of the app's publisher waiting for replies, and the replies that came
    /// late.
    pub fn replies(&self) -> &Replies {
        &self.replies
    }

    /// The app's metrics.
    pub fn metrics(&self) -> Arc<crate::metrics::Metrics> {
        self.metrics.clone()
    }

    /// Delivers every pending record to the consumers its group assigned its partition to,
    /// in order per partition, until no lane has anything left (follow-up events
    /// included) and no request of the app's publisher waits for its reply (each ends with
    /// its reply or its timeout). Returns what became of each delivery (in order per partition). Retry
    /// backoffs really wait: keep them short in tests, or use `tokio::time::pause()`.
    pub async fn drain(&self) -> Vec<Disposition> {
        loop {
            self.assign();
            let mut pushed_any = false;
            for member in &self.members {
                pushed_any |= self.push_pending(member);
            }
            self.wait_idle().await;
            if !pushed_any {
                // A request of the app's publisher may still be on its way to a responder
                // here: go on until every request got its reply or gave up, woken when one
                // is sent or ends.
                let changed = self.replies.changed().notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if self.replies.in_flight() == 0 {
                    break;
                }
                changed.await;
            }
        }
        std::mem::take(&mut *self.outcomes.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Assigns every partition of every subscribed topic to one member of each group
    /// (round robin over the group's members, as Kafka's range and round-robin assignors
    /// spread them), opening the lanes of partitions new to a member.
    fn assign(&self) {
        let mut groups: HashMap<&str, Vec<&Member>> = HashMap::new();
        for m in &self.members {
            groups
                .entry(m.runtime.spec.group.as_str())
                .or_default()
                .push(m);
        }
        for (group, members) in groups {
            let mut topics: Vec<String> = members
                .iter()
                .flat_map(|m| subscriptions(&m.runtime.spec))
                .collect();
            topics.sort();
            topics.dedup();
            for topic in topics {
                let readers: Vec<&&Member> = members
                    .iter()
                    .filter(|m| subscriptions(&m.runtime.spec).contains(&topic))
                    .collect();
                for p in 0..self.broker.partitions(&topic) {
                    let member = readers[p % readers.len()];
                    self.open(member, group, &topic, p as i32);
                }
            }
        }
    }

    fn open(&self, member: &Member, group: &str, topic: &str, partition: i32) {
        let key = LaneKey::of(topic, partition);
        let mut assigned = member.assigned.lock().unwrap_or_else(|p| p.into_inner());
        if assigned.contains_key(&key) {
            return;
        }
        let lanes = member.lanes.get_or_init(|| {
            Arc::new(LaneSet::new(
                member.runtime.clone(),
                member.settings,
                tokio::runtime::Handle::current(),
            ))
        });
        let from = self.broker.committed(group, topic, partition).unwrap_or(0) as usize;
        let source = Arc::new(MemorySource {
            broker: self.broker.clone(),
            group: group.to_owned(),
            key: key.clone(),
            pushed: AtomicUsize::new(0),
            finished: AtomicUsize::new(0),
            progress: self.progress.clone(),
            outcomes: self.outcomes.clone(),
        });
        lanes.open(key.clone(), source.clone());
        assigned.insert(key, (from, source));
    }

    /// Pushes the records each of `member`'s partitions got since the last push.
    fn push_pending(&self, member: &Member) -> bool {
        let Some(lanes) = member.lanes.get() else {
            return false;
        };
        let mut pushed_any = false;
        let mut assigned = member.assigned.lock().unwrap_or_else(|p| p.into_inner());
        for (key, (next, source)) in assigned.iter_mut() {
            for record in self.broker.read(&key.topic, key.partition, *next) {
                *next += 1;
                source.pushed.fetch_add(1, Ordering::SeqCst);
                if lanes.push(key, Arc::new(record)) {
                    pushed_any = true;
                } else {
                    source.pushed.fetch_sub(1, Ordering::SeqCst);
                }
            }
        }
        pushed_any
    }

    /// Waits until every lane has finished every record pushed to it.
    async fn wait_idle(&self) {
        loop {
            let notified = self.progress.notified();
            let busy = self.members.iter().any(|m| {
                let lanes_failed = m
                    .lanes
                    .get()
                    .is_some_and(|l| l.views().iter().any(|v| v.failed));
                !lanes_failed
                    && m.assigned
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .values()
                        .any(|(_, s)| {
                            s.finished.load(Ordering::SeqCst) < s.pushed.load(Ordering::SeqCst)
                        })
            });
            if !busy {
                return;
            }
            notified.await;
        }
    }

    /// The events published to `topic`, decoded as `T` (records that do not decode are
    /// left out; see [`TestBroker::records`] for the raw ones).
    pub fn events<T: DeserializeOwned>(&self, topic: &str) -> Vec<Event<T>> {
        self.broker
            .records(topic)
            .iter()
            .filter_map(|r| envelope::decode(r, &Default::default()).ok())
            .collect()
    }
}

/// The topics a listener's members read in memory: a queue listener's queues (an `amqp://`
/// publish lands in a topic named after its routing key), else its topics and their retry
/// topics.
fn subscriptions(spec: &crate::registry::ListenerSpec) -> Vec<String> {
    if spec.queues.is_empty() {
        retry_topic::subscriptions(spec)
    } else {
        spec.queues.clone()
    }
}
