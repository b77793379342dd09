//! The metrics registry (prometheus-client) and the listener / publisher metrics.
//!
//! Names follow Spring Kafka's Micrometer metrics so existing dashboards work:
//! `spring_kafka_listener_seconds{name,result,exception}` and
//! `spring_kafka_template_seconds{name,result,exception}`, plus `mq_listener_retries`,
//! `mq_listener_dead_lettered`, `mq_listener_decode_errors`, `mq_listener_in_flight` and
//! `mq_consumer_lag` (a queue listener: `spring_rabbitmq_listener_seconds` and
//! `mq_queue_depth{name,queue}`). prometheus-client appends `_total` to counters itself. The timers
//! also have Micrometer's `_max` gauges (`spring_kafka_listener_seconds_max`, ...): the
//! longest duration of the last one to two minutes.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

mod in_flight;
mod labels;
mod max;
mod sharded;
mod timer;

use in_flight::{InFlight, InFlightShard};
use timer::{Timer, TimerShard};

pub use labels::label_name;

/// The listener timer's family (Spring Kafka's `spring.kafka.listener`).
pub(crate) const LISTENER_SECONDS: &str = "spring_kafka_listener_seconds";
/// The queue listeners' timer family (Spring AMQP's `spring.rabbitmq.listener`).
pub(crate) const RABBIT_LISTENER_SECONDS: &str = "spring_rabbitmq_listener_seconds";
/// The publisher timer's family (Spring Kafka's `spring.kafka.template`).
const TEMPLATE_SECONDS: &str = "spring_kafka_template_seconds";

/// Labels of a timer: which listener or publisher, and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TimerLabels {
    name: String,
    result: &'static str,
    exception: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ListenerLabels {
    name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    name: String,
    queue: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LagLabels {
    name: String,
    topic: String,
    partition: String,
}

/// All metrics of one app, registered in one [`Registry`].
///
/// ```
/// let m = mq_core::metrics::Metrics::new(vec![("application".into(), "demo".into())]);
/// let text = m.encode();
/// assert!(text.ends_with("# EOF\n"));
/// ```
pub struct Metrics {
    registry: std::sync::RwLock<Registry>,
    listener_seconds: Family<TimerLabels, Timer>,
    rabbit_listener_seconds: Family<TimerLabels, Timer>,
    template_seconds: Family<TimerLabels, Timer>,
    retries: Family<ListenerLabels, Counter>,
    dead_lettered: Family<ListenerLabels, Counter>,
    decode_errors: Family<ListenerLabels, Counter>,
    in_flight: Family<ListenerLabels, InFlight>,
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    lag: Family<LagLabels, Gauge>,
    #[cfg_attr(not(feature = "rabbitmq"), allow(dead_code))]
    queue_depth: Family<QueueLabels, Gauge>,
    /// The timers whose `_max` gauges the scrape shows.
    maxes: max::Maxes,
}

impl Metrics {
    /// A registry whose every series carries `common_tags` (from `management.metrics.tags`;
    /// give legal label names, see [`label_name`]). A series' own label wins over a common
    /// tag of the same name, as in Micrometer: with a tag `name: shop`, the listener timer
    /// keeps `name="<listener>"`.
    ///
    /// ```
    /// use prometheus_client::metrics::counter::Counter;
    /// let m = mq_core::metrics::Metrics::new(vec![("application".into(), "shop".into())]);
    /// let c: Counter = Counter::default();
    /// m.register(|r| r.register("jobs", "Jobs", c.clone()));
    /// c.inc();
    /// assert!(m.encode().contains(r#"jobs_total{application="shop"} 1"#));
    /// ```
    pub fn new(common_tags: Vec<(String, String)>) -> Self {
        let mut registry =
            Registry::with_labels(common_tags.into_iter().map(|(k, v)| (k.into(), v.into())));
        let listener_seconds = Family::<TimerLabels, Timer>::default();
        let template_seconds = Family::<TimerLabels, Timer>::default();
        let rabbit_listener_seconds = Family::<TimerLabels, Timer>::default();
        let retries = Family::<ListenerLabels, Counter>::default();
        let dead_lettered = Family::<ListenerLabels, Counter>::default();
        let decode_errors = Family::<ListenerLabels, Counter>::default();
        let in_flight = Family::<ListenerLabels, InFlight>::default();
        let lag = Family::<LagLabels, Gauge>::default();
        let queue_depth = Family::<QueueLabels, Gauge>::default();
        registry.register(
            LISTENER_SECONDS,
            "Time spent in listener handlers",
            listener_seconds.clone(),
        );
        registry.register(
            RABBIT_LISTENER_SECONDS,
            "Time spent in queue listener handlers (RabbitMQ)",
            rabbit_listener_seconds.clone(),
        );
        registry.register(
            TEMPLATE_SECONDS,
            "Time to publish a record, until the broker acknowledged it",
            template_seconds.clone(),
        );
        registry.register(
            "mq_listener_retries",
            "Handler attempts that failed and were retried",
            retries.clone(),
        );
        registry.register(
            "mq_listener_dead_lettered",
            "Records published to a dead-letter topic",
            dead_lettered.clone(),
        );
        registry.register(
            "mq_listener_decode_errors",
            "Records that could not be decoded (poison messages)",
            decode_errors.clone(),
        );
        registry.register(
            "mq_listener_in_flight",
            "Records being handled right now",
            in_flight.clone(),
        );
        registry.register(
            "mq_consumer_lag",
            "Records behind the partition's high watermark",
            lag.clone(),
        );
        registry.register(
            "mq_queue_depth",
            "Messages ready in a queue listener's RabbitMQ queue",
            queue_depth.clone(),
        );
        let maxes = max::Maxes::default();
        registry.register_collector(Box::new(maxes.clone()));
        Metrics {
            maxes,
            registry: std::sync::RwLock::new(registry),
            listener_seconds,
            rabbit_listener_seconds,
            template_seconds,
            retries,
            dead_lettered,
            decode_errors,
            in_flight,
            lag,
            queue_depth,
        }
    }

    /// Lets the application register metrics of its own in the same registry.
    ///
    /// ```
    /// use prometheus_client::metrics::counter::Counter;
    /// let m = mq_core::metrics::Metrics::new(vec![]);
    /// let orders: Counter = Counter::default();
    /// m.register(|r| r.register("orders_placed", "Orders placed", orders.clone()));
    /// orders.inc();
    /// assert!(m.encode().contains("orders_placed_total 1"));
    /// ```
    pub fn register(&self, f: impl FnOnce(&mut Registry)) {
        let mut registry = self.registry.write().unwrap_or_else(|p| p.into_inner());
        f(&mut registry);
    }

    /// The OpenMetrics text exposition of every metric.
    ///
    /// ```
    /// // Families without series are left out; an empty registry is just the end marker.
    /// let m = mq_core::metrics::Metrics::new(vec![]);
    /// assert_eq!(m.encode(), "# EOF\n");
    /// ```
    pub fn encode(&self) -> String {
        max::advance(std::time::Instant::now());
        let registry = self.registry.read().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .expect("writing to a String cannot fail");
        match labels::drop_shadowed_labels(&out) {
            std::borrow::Cow::Borrowed(_) => out,
            std::borrow::Cow::Owned(fixed) => fixed,
        }
    }

    /// Handles for one listener, looked up once so the per-message path takes no lock; its
    /// timer in `family` ([`LISTENER_SECONDS`] or [`RABBIT_LISTENER_SECONDS`], as its
    /// transport names it).
    pub(crate) fn listener_on(
        self: &Arc<Self>,
        name: &str,
        family: &'static str,
    ) -> ListenerMetrics {
        let labels = ListenerLabels {
            name: name.to_owned(),
        };
        ListenerMetrics {
            success: self.timer(
                family,
                &TimerLabels {
                    name: name.to_owned(),
                    result: "success",
                    exception: "none".to_owned(),
                },
            ),
            retries: self.retries.get_or_create(&labels).clone(),
            dead_lettered: self.dead_lettered.get_or_create(&labels).clone(),
            decode_errors: self.decode_errors.get_or_create(&labels).clone(),
            in_flight: self.in_flight.get_or_create(&labels).clone(),
            name: name.to_owned(),
            family,
            metrics: self.clone(),
        }
    }

    /// The timer of `family` for `labels`, created (and its `_max` exposed) on first use.
    fn timer(&self, family: &'static str, labels: &TimerLabels) -> Timer {
        let timers = self.timers(family);
        if let Some(timer) = timers.get(labels) {
            return timer.clone();
        }
        let timer = timers.get_or_create(labels).clone();
        self.maxes.track(family, labels, &timer);
        timer
    }

    /// Observes `elapsed` on the timer of `family` for `labels` (no clone when it exists).
    fn observe(&self, family: &'static str, labels: &TimerLabels, elapsed: Duration) {
        match self.timers(family).get(labels) {
            Some(timer) => timer.observe(elapsed),
            None => self.timer(family, labels).observe(elapsed),
        }
    }

    fn timers(&self, family: &'static str) -> &Family<TimerLabels, Timer> {
        match family {
            TEMPLATE_SECONDS => &self.template_seconds,
            RABBIT_LISTENER_SECONDS => &self.rabbit_listener_seconds,
            _ => &self.listener_seconds,
        }
    }

    /// Records consumer lag of one partition.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn set_lag(&self, listener: &str, topic: &str, partition: i32, lag: i64) {
        self.lag
            .get_or_create(&LagLabels {
                name: listener.to_owned(),
                topic: topic.to_owned(),
                partition: partition.to_string(),
            })
            .set(lag);
    }

    /// Records the messages ready in a queue listener's queue (the RabbitMQ counterpart of
    /// the lag).
    #[cfg_attr(not(feature = "rabbitmq"), allow(dead_code))]
    pub(crate) fn set_queue_depth(&self, listener: &str, queue: &str, depth: i64) {
        self.queue_depth
            .get_or_create(&QueueLabels {
                name: listener.to_owned(),
                queue: queue.to_owned(),
            })
            .set(depth);
    }

    /// Removes the lag series of a partition this process no longer reads (call it when the
    /// partition is revoked), so a revoked partition's last lag does not stay in the scrape
    /// forever. True when there was one.
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    pub(crate) fn remove_lag(&self, listener: &str, topic: &str, partition: i32) -> bool {
        self.lag.remove(&LagLabels {
            name: listener.to_owned(),
            topic: topic.to_owned(),
            partition: partition.to_string(),
        })
    }

    /// A publish of `elapsed` ended: `error` is `None` for a success, else the short name
    /// of what failed (`BrokerError`, ...), the `exception` label.
    pub(crate) fn observe_send(&self, elapsed: Duration, error: Option<&'static str>) {
        let (result, exception) = match error {
            None => ("success", "none"),
            Some(e) => ("failure", e),
        };
        self.observe(
            TEMPLATE_SECONDS,
            &TimerLabels {
                name: "publisher".to_owned(),
                result,
                exception: exception.to_owned(),
            },
            elapsed,
        );
    }
}

/// The metric handles of one listener.
pub(crate) struct ListenerMetrics {
    name: String,
    family: &'static str,
    success: Timer,
    pub(crate) retries: Counter,
    pub(crate) dead_lettered: Counter,
    pub(crate) decode_errors: Counter,
    in_flight: InFlight,
    metrics: Arc<Metrics>,
}

impl ListenerMetrics {
    /// The per-record metrics of one worker (its own shards: see [`sharded`]).
    pub(crate) fn worker(&self) -> WorkerMetrics {
        WorkerMetrics {
            success: self.success.shard(),
            in_flight: self.in_flight.shard(),
        }
    }

    pub(crate) fn failure(&self, elapsed: Duration, exception: &str) {
        self.metrics.observe(
            self.family,
            &TimerLabels {
                name: self.name.clone(),
                result: "failure",
                exception: exception.to_owned(),
            },
            elapsed,
        );
    }
}

/// What a partition worker updates for every record, in shards of its own.
pub(crate) struct WorkerMetrics {
    success: TimerShard,
    pub(crate) in_flight: InFlightShard,
}

impl WorkerMetrics {
    pub(crate) fn success(&self, elapsed: Duration) {
        self.success.observe(elapsed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_tags_are_on_every_series() {
        let m = Arc::new(Metrics::new(vec![(
            "application".into(),
            "order-service".into(),
        )]));
        let l = m.listener_on("on_order", LISTENER_SECONDS);
        l.worker().success(Duration::from_millis(3));
        l.retries.inc();
        let text = m.encode();
        assert!(
            text.contains(
                r#"mq_listener_retries_total{application="order-service",name="on_order"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"spring_kafka_listener_seconds_count{application="order-service",name="on_order",result="success",exception="none"} 1"#), "{text}");
    }

    #[test]
    fn a_series_own_label_wins_over_a_common_tag() {
        let m = Arc::new(Metrics::new(vec![
            ("name".into(), "shop".into()),
            ("topic".into(), "all".into()),
            ("application".into(), "order-service".into()),
        ]));
        m.listener_on("on_order", LISTENER_SECONDS)
            .worker()
            .success(Duration::from_millis(3));
        m.set_lag("on_order", "orders", 0, 4);
        let text = m.encode();
        assert!(text.contains(r#"spring_kafka_listener_seconds_count{topic="all",application="order-service",name="on_order",result="success",exception="none"} 1"#), "{text}");
        assert!(text.contains(r#"mq_consumer_lag{application="order-service",name="on_order",topic="orders",partition="0"} 4"#), "{text}");
        assert!(!text.contains("shop"), "{text}");
    }

    #[test]
    fn queue_depth_is_a_gauge_per_listener_and_queue() {
        let m = Metrics::new(vec![("application".into(), "notify".into())]);
        m.set_queue_depth("on_task", "task_queue", 12);
        m.set_queue_depth("on_task", "task_queue", 3);
        let text = m.encode();
        assert!(text.contains("# TYPE mq_queue_depth gauge"), "{text}");
        assert!(
            text.contains(
                r#"mq_queue_depth{application="notify",name="on_task",queue="task_queue"} 3"#
            ),
            "{text}"
        );
    }

    #[test]
    fn a_revoked_partition_lag_series_goes() {
        let m = Metrics::new(vec![]);
        m.set_lag("l", "orders", 0, 4);
        m.set_lag("l", "orders", 1, 2);
        assert!(m.remove_lag("l", "orders", 0));
        assert!(!m.remove_lag("l", "orders", 0));
        let text = m.encode();
        assert!(!text.contains(r#"partition="0""#), "{text}");
        assert!(
            text.contains(r#"mq_consumer_lag{name="l",topic="orders",partition="1"} 2"#),
            "{text}"
        );
    }

    #[test]
    fn timers_have_a_max_gauge() {
        let m = Arc::new(Metrics::new(vec![("application".into(), "shop".into())]));
        let l = m.listener_on("on_order", LISTENER_SECONDS);
        l.worker().success(Duration::from_millis(3));
        l.worker().success(Duration::from_millis(40));
        l.failure(Duration::from_millis(7), "Boom");
        m.observe_send(Duration::from_millis(2), Some("Closed"));
        let text = m.encode();
        assert!(
            text.contains("# TYPE spring_kafka_listener_seconds_max gauge"),
            "{text}"
        );
        assert!(text.contains(r#"spring_kafka_listener_seconds_max{application="shop",name="on_order",result="success",exception="none"} 0.04"#), "{text}");
        assert!(text.contains(r#"spring_kafka_listener_seconds_max{application="shop",name="on_order",result="failure",exception="Boom"} 0.007"#), "{text}");
        assert!(text.contains(r#"spring_kafka_template_seconds_max{application="shop",name="publisher",result="failure",exception="Closed"} 0.002"#), "{text}");
    }
}
