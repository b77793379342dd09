//! Listener registrations: what `#[listener]` submits through `inventory`, and how the app
//! resolves each one against the configuration at startup.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::future::BoxFuture;

use crate::config::Ordering;
use crate::config::{Config, DltConfig, RetryConfig, RetryMode, RetryOverride};
use crate::handler::invocation::{Failure, Invocation};

/// The function the macro generates for a listener: decode, extract, call, convert.
pub type HandlerFn = fn(Invocation) -> BoxFuture<'static, Result<(), Failure>>;

/// Retry settings written in the macro (`retry(max_attempts = 5, ...)`). Durations stay
/// text until startup, where a bad one is reported with the listener's name.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, Default)]
pub struct MacroRetry {
    pub max_attempts: Option<u32>,
    pub initial_interval: Option<&'static str>,
    pub multiplier: Option<f64>,
    pub max_interval: Option<&'static str>,
    pub jitter: Option<bool>,
    pub mode: Option<&'static str>,
}

/// A queue's binding written in the macro (`exchange = "orders", exchange_type = "topic",
/// routing_key = "order.*"`), checked by the macro.
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub struct MacroBinding {
    pub exchange: &'static str,
    pub exchange_type: &'static str,
    pub routing_key: &'static str,
}

/// One `#[listener]` as registered at compile time.
///
/// Listeners are collected with `inventory`: a listener defined in a library crate is only
/// linked when the binary uses that crate (`use my_listeners as _;`).
#[derive(Debug)]
pub struct ListenerDef {
    /// Listener name (the fn name, or `name = ".."`); the key under `mq.listeners`.
    pub name: &'static str,
    /// Topics from the macro.
    pub topics: &'static [&'static str],
    /// RabbitMQ queues from the macro (`queue = ".."`); a listener has topics or queues.
    pub queues: &'static [&'static str],
    /// The queue's binding from the macro.
    #[doc(hidden)]
    pub binding: Option<MacroBinding>,
    /// Group from the macro.
    pub group: Option<&'static str>,
    /// Consumers from the macro.
    pub concurrency: Option<u32>,
    /// Record ordering from the macro.
    pub ordering: Option<Ordering>,
    /// Records in flight per partition (key ordering) from the macro.
    pub max_in_flight: Option<u32>,
    #[doc(hidden)]
    pub retry: MacroRetry,
    /// `#[listener(idempotent)]`: run as an idempotent consumer (see `mq_core::inbox`).
    pub idempotent: bool,
    /// Where the listener is defined.
    pub module_path: &'static str,
    #[doc(hidden)]
    pub handler: HandlerFn,
}

inventory::collect!(ListenerDef);

/// Every listener linked into this binary, sorted by name.
///
/// ```
/// // A doctest binary has no listeners unless it defines some.
/// assert!(mq_core::registry::registered().iter().all(|l| !l.name.is_empty()));
/// ```
pub fn registered() -> Vec<&'static ListenerDef> {
    let mut all: Vec<_> = inventory::iter::<ListenerDef>.into_iter().collect();
    all.sort_by_key(|l| l.name);
    all
}

/// The names of the listeners linked into this binary that are defined in the crate of
/// `module_path` (pass `module_path!()`), sorted: what a service crate hands to
/// `App::only_listeners` when several services' crates are
/// linked into one binary (a demo, an integration test).
///
/// ```
/// // The doctest's crate defines no listener.
/// assert!(mq_core::registry::registered_in(module_path!()).is_empty());
/// ```
pub fn registered_in(module_path: &str) -> Vec<&'static str> {
    let krate = crate_of(module_path);
    registered()
        .into_iter()
        .filter(|l| crate_of(l.module_path) == krate)
        .map(|l| l.name)
        .collect()
}

fn crate_of(module_path: &str) -> &str {
    module_path.split("::").next().unwrap_or_default()
}

/// A binding of a listener's queue to an exchange, declared (exchange included, durable)
/// at startup.
///
/// ```
/// let b = mq_core::registry::Binding { exchange: "orders".into(), kind: "topic".into(), routing_key: "order.*".into() };
/// assert_eq!(b.kind, "topic");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The exchange.
    pub exchange: String,
    /// Its kind: `direct`, `fanout`, `topic` or `headers`.
    pub kind: String,
    /// The binding's routing key (a pattern for a topic exchange).
    pub routing_key: String,
}

/// A listener resolved against the configuration.
#[derive(Debug, Clone)]
pub struct ListenerSpec {
    /// Name.
    pub name: &'static str,
    /// Kafka topics to subscribe to (none for a queue listener).
    pub topics: Vec<String>,
    /// RabbitMQ queues to consume (none for a Kafka listener): which broker the listener
    /// reads is decided by which of the two is set.
    pub queues: Vec<String>,
    /// Bindings of the queue declared at startup (exchange, kind, routing key).
    pub bindings: Vec<Binding>,
    /// Consumer group.
    pub group: String,
    /// Consumers in this process.
    pub concurrency: u32,
    /// Retry policy.
    pub retry: RetryConfig,
    /// Dead-letter settings.
    pub dlt: DltConfig,
    /// Whether the app starts it.
    pub auto_startup: bool,
    /// Which records of one partition may run at once.
    pub ordering: Ordering,
    /// In key ordering, records of one partition taken and not done.
    pub max_in_flight: u32,
    /// A record in the handler for longer than this is reported as hung.
    pub handler_warn_after: Duration,
    /// A handler call running longer than this is cancelled (a transient failure).
    pub handler_timeout: Option<Duration>,
    /// May share its group with another listener on an overlapping topic.
    pub share_group: bool,
    /// Runs as an idempotent consumer (macro `idempotent`, or
    /// `mq.listeners.<name>.idempotency`): see `mq_core::inbox`.
    pub idempotent: bool,
    pub(crate) handler: HandlerFn,
}

impl ListenerSpec {
    /// Whether the listener reads RabbitMQ queues rather than Kafka topics: which of the
    /// two is set decides which transport runs it.
    pub fn is_queue_listener(&self) -> bool {
        !self.queues.is_empty()
    }

    /// What the listener reads: its topics, or its queues.
    pub fn sources(&self) -> &[String] {
        if self.is_queue_listener() {
            &self.queues
        } else {
            &self.topics
        }
    }

    /// The dead-letter topic for records of `topic`: `<topic><suffix>`.
    pub fn dlt_topic(&self, topic: &str) -> String {
        format!("{topic}{}", self.dlt.suffix)
    }

    /// Every dead-letter topic of `topic`: the default one and one per route of
    /// `mq.listener.dlt.routes` (each created with the listener's topics).
    pub fn dlt_topics(&self, topic: &str) -> Vec<String> {
        let mut all = vec![self.dlt_topic(topic)];
        for suffix in self.dlt.routes.values() {
            let routed = format!("{topic}{suffix}");
            if !all.contains(&routed) {
                all.push(routed);
            }
        }
        all
    }
}

/// Why the listeners could not be resolved.
#[derive(Debug, thiserror::Error)]
#[error("invalid listener setup: {0}")]
pub struct RegistryError(String);

fn macro_retry(def: &ListenerDef) -> Result<RetryOverride, String> {
    let duration = |key: &str, v: Option<&'static str>| -> Result<Option<Duration>, String> {
        v.map(|s| {
            humantime::parse_duration(s).map_err(|e| {
                format!(
                    "listener {} ({}): retry {key} = {s:?} is not a duration ({e})",
                    def.name, def.module_path
                )
            })
        })
        .transpose()
    };
    let mode = match def.retry.mode {
        None => None,
        Some("blocking") => Some(RetryMode::Blocking),
        Some("topics") => Some(RetryMode::Topics),
        Some(other) => {
            return Err(format!(
                "listener {}: retry mode {other:?} is not blocking or topics",
                def.name
            ))
        }
    };
    Ok(RetryOverride {
        max_attempts: def.retry.max_attempts,
        initial_interval: duration("initial_interval", def.retry.initial_interval)?,
        multiplier: def.retry.multiplier,
        max_interval: duration("max_interval", def.retry.max_interval)?,
        jitter: def.retry.jitter,
        mode,
    })
}

/// Resolves `defs` against `config`: config overrides (`mq.listeners.<name>`) win over
/// the macro's values, which win over the `mq.listener` defaults.
pub(crate) fn resolve(
    defs: &[&'static ListenerDef],
    config: &Config,
) -> Result<Vec<ListenerSpec>, RegistryError> {
    let mut problems = Vec::new();
    let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
    for def in defs {
        if let Some(other) = seen.insert(def.name, def.module_path) {
            problems.push(format!(
                "two listeners are named {:?} (in {other} and {}); give one a `name = \"..\"`",
                def.name, def.module_path
            ));
        }
    }
    for name in config.mq.listeners.keys() {
        if !seen.contains_key(name.as_str()) {
            problems.push(format!(
                "mq.listeners.{name} configures a listener that does not exist (known: {})",
                seen.keys().copied().collect::<Vec<_>>().join(", ")
            ));
        }
    }
    let defaults = &config.mq.listener;
    let mut specs = Vec::new();
    for def in defs {
        let o = config
            .mq
            .listeners
            .get(def.name)
            .cloned()
            .unwrap_or_default();
        let macro_retry = match macro_retry(def) {
            Ok(r) => r,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        let retry: RetryConfig = defaults.retry.merged(&macro_retry).merged(&o.retry);
        if retry.max_attempts == 0 {
            problems.push(format!(
                "listener {}: max-attempts must be at least 1",
                def.name
            ));
        }
        let topics = o
            .topics
            .clone()
            .unwrap_or_else(|| def.topics.iter().map(|t| (*t).to_owned()).collect());
        let queues: Vec<String> = def.queues.iter().map(|q| (*q).to_owned()).collect();
        let topics = if queues.is_empty() {
            topics
        } else {
            Vec::new()
        };
        if topics.is_empty() && queues.is_empty() {
            problems.push(format!("listener {} has no topic", def.name));
        }
        if queues.is_empty() && o.bindings.is_some() {
            problems.push(format!(
                "mq.listeners.{}.bindings: bindings are for queue listeners (`queue = \"..\"`), and {} reads Kafka topics",
                def.name, def.name
            ));
        }
        let default_concurrency = if queues.is_empty() {
            defaults.concurrency
        } else {
            config.mq.rabbitmq.listener.concurrency
        };
        let group = o
            .group
            .clone()
            .or_else(|| def.group.map(str::to_owned))
            .or_else(|| config.mq.kafka.consumer.group_id.clone())
            .unwrap_or_else(|| config.mq.application.name.clone());
        let dlt = DltConfig {
            enabled: o.dlt.enabled.unwrap_or(defaults.dlt.enabled),
            suffix: o.dlt.suffix.clone().unwrap_or(defaults.dlt.suffix.clone()),
            routes: o.dlt.routes.clone().unwrap_or(defaults.dlt.routes.clone()),
        };
        specs.push(ListenerSpec {
            name: def.name,
            topics,
            queues,
            bindings: match &o.bindings {
                Some(configured) => configured
                    .iter()
                    .map(|b| Binding {
                        exchange: b.exchange.clone(),
                        kind: b.exchange_type.as_str().to_owned(),
                        routing_key: b.routing_key.clone(),
                    })
                    .collect(),
                None => def
                    .binding
                    .iter()
                    .map(|b| Binding {
                        exchange: b.exchange.to_owned(),
                        kind: b.exchange_type.to_owned(),
                        routing_key: b.routing_key.to_owned(),
                    })
                    .collect(),
            },
            group,
            concurrency: o
                .concurrency
                .or(def.concurrency)
                .unwrap_or(default_concurrency)
                .max(1),
            retry,
            dlt,
            auto_startup: o.auto_startup.unwrap_or(true),
            ordering: o.ordering.or(def.ordering).unwrap_or(defaults.ordering),
            max_in_flight: o
                .max_in_flight
                .or(def.max_in_flight)
                .unwrap_or(defaults.max_in_flight)
                .max(1),
            handler_warn_after: o.handler_warn_after.unwrap_or(defaults.handler_warn_after),
            handler_timeout: o.handler_timeout.or(defaults.handler_timeout),
            share_group: o.share_group.unwrap_or(false),
            idempotent: o.idempotency.unwrap_or(def.idempotent),
            handler: def.handler,
        });
    }
    if problems.is_empty() {
        Ok(specs)
    } else {
        Err(RegistryError(problems.join("; ")))
    }
}

/// Specs for the unit tests of the layers above.
#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn never(_: Invocation) -> BoxFuture<'static, Result<(), Failure>> {
        Box::pin(async { Ok(()) })
    }

    /// A listener of `topics`, with the default settings and a handler that succeeds.
    pub(crate) fn spec_for_topics(topics: &[&str]) -> ListenerSpec {
        ListenerSpec {
            name: "test",
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            queues: Vec::new(),
            bindings: Vec::new(),
            group: "g".into(),
            concurrency: 1,
            retry: Default::default(),
            dlt: Default::default(),
            auto_startup: true,
            ordering: Ordering::Partition,
            max_in_flight: 8,
            handler_warn_after: Duration::from_secs(60),
            handler_timeout: None,
            share_group: false,
            idempotent: false,
            handler: never,
        }
    }

    /// A listener of `queue`.
    pub(crate) fn spec_for_queue(queue: &str) -> ListenerSpec {
        ListenerSpec {
            topics: Vec::new(),
            queues: vec![queue.to_owned()],
            ..spec_for_topics(&[])
        }
    }
}
