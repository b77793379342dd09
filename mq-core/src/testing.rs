//! An in-memory broker for unit-testing handlers, without Kafka.
//!
//! [`TestApp`] runs the registered listeners through the same pipeline as the Kafka
//! transport (decode, handler, retries, dead-lettering, metrics) over a [`TestBroker`]:
//! publish, [`TestApp::drain`], then look at what was published.
//!
//! ```
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
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use crate::app::decode_limits;
use crate::dispatch::{Disposition, ListenerRuntime};
use crate::envelope::{self, ContentMode, Event};
use crate::publisher::{Delivery, PublishError, Publisher, RecordSink};
use crate::record::{OutgoingRecord, Record};
use crate::App;

/// An in-memory broker: one partition per topic, offsets from 0.
///
/// ```
/// use mq_core::testing::TestBroker;
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let broker = TestBroker::new();
/// broker.publisher("/test").send("t", "k", 1u8).await.unwrap();
/// assert_eq!(broker.records("t").len(), 1);
/// # }
/// ```
#[derive(Clone, Default)]
pub struct TestBroker {
    topics: Arc<Mutex<HashMap<String, Vec<Record>>>>,
}

impl TestBroker {
    /// An empty broker.
    ///
    /// ```
    /// assert!(mq_core::testing::TestBroker::new().records("t").is_empty());
    /// ```
    pub fn new() -> Self {
        TestBroker::default()
    }

    /// A publisher writing structured CloudEvents to this broker with `source`.
    ///
    /// ```
    /// let p = mq_core::testing::TestBroker::new().publisher("/svc");
    /// # let _ = p;
    /// ```
    pub fn publisher(&self, source: &str) -> Publisher {
        Publisher::new(Arc::new(self.clone()), source, ContentMode::Structured)
    }

    /// Everything published to `topic`, in order.
    ///
    /// ```
    /// assert!(mq_core::testing::TestBroker::new().records("none").is_empty());
    /// ```
    pub fn records(&self, topic: &str) -> Vec<Record> {
        self.topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
            .cloned()
            .unwrap_or_default()
    }

    fn record_at(&self, topic: &str, offset: usize) -> Option<Record> {
        self.topics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(topic)
            .and_then(|log| log.get(offset).cloned())
    }
}

impl RecordSink for TestBroker {
    fn send(&self, record: OutgoingRecord) -> BoxFuture<'static, Result<Delivery, PublishError>> {
        let mut topics = self.topics.lock().unwrap_or_else(|p| p.into_inner());
        let log = topics.entry(record.topic.clone()).or_default();
        let offset = log.len() as i64;
        log.push(Record {
            topic: Arc::from(record.topic.as_str()),
            partition: 0,
            offset,
            key: record.key,
            value: record.value,
            headers: record.headers,
            timestamp: Some(chrono::Utc::now().timestamp_millis()),
            timestamp_type: crate::record::TimestampType::CreateTime,
        });
        let delivery = Delivery {
            topic: record.topic,
            partition: 0,
            offset,
        };
        Box::pin(async move { Ok(delivery) })
    }
}

/// An [`App`]'s listeners running over a [`TestBroker`] instead of Kafka.
pub struct TestApp {
    broker: TestBroker,
    publisher: Publisher,
    runtimes: Vec<Arc<ListenerRuntime>>,
    positions: Mutex<HashMap<(usize, String), usize>>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl TestApp {
    /// Takes the app's configuration, state and listener selection; no connection is made.
    ///
    /// ```
    /// let app = mq_core::testing::TestApp::new(mq_core::App::new(Default::default())).unwrap();
    /// # let _ = app;
    /// ```
    pub fn new(app: App) -> Result<TestApp, crate::Error> {
        let specs = app.listeners()?;
        let parts = app.into_parts();
        let broker = TestBroker::new();
        let publisher = Publisher::new(
            Arc::new(broker.clone()),
            format!("/{}", parts.config.mq.application.name),
            parts.config.mq.kafka.producer.content_mode,
        )
        .with_metrics(parts.metrics.clone());
        let runtimes = specs
            .into_iter()
            .map(|spec| {
                Arc::new(ListenerRuntime::new(
                    spec,
                    publisher.clone(),
                    parts.state.clone(),
                    decode_limits(&parts.config),
                    &parts.metrics,
                ))
            })
            .collect();
        Ok(TestApp {
            broker,
            publisher,
            runtimes,
            positions: Mutex::new(HashMap::new()),
            metrics: parts.metrics,
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

    /// The app's metrics.
    pub fn metrics(&self) -> Arc<crate::metrics::Metrics> {
        self.metrics.clone()
    }

    /// Delivers every pending record to the listeners subscribed to its topic, in order,
    /// until no listener has anything left (follow-up events included). Returns what
    /// became of each delivery. Retry backoffs really wait: keep them short in tests, or
    /// use `tokio::time::pause()`.
    pub async fn drain(&self) -> Vec<Disposition> {
        let cancel = CancellationToken::new();
        let locals: Vec<_> = self.runtimes.iter().map(|r| r.worker_local()).collect();
        let mut out = Vec::new();
        loop {
            let mut progressed = false;
            for (i, (runtime, local)) in self.runtimes.iter().zip(&locals).enumerate() {
                for topic in runtime.spec.subscriptions() {
                    loop {
                        let key = (i, topic.clone());
                        let at = *self
                            .positions
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .get(&key)
                            .unwrap_or(&0);
                        let Some(record) = self.broker.record_at(&topic, at) else {
                            break;
                        };
                        out.push(runtime.process(local, Arc::new(record), &cancel).await);
                        self.positions
                            .lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .insert(key, at + 1);
                        progressed = true;
                    }
                }
            }
            if !progressed {
                return out;
            }
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
