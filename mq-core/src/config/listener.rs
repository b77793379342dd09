//! `mq.listener.*` (defaults for every listener) and `mq.listeners.<name>.*` (overrides).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration::{self, opt_duration};
use super::lenient;

/// Blocking retries in the partition's worker, or Spring-style retry topics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RetryMode {
    /// Retry in place; only this partition waits.
    #[default]
    Blocking,
    /// Non-blocking: republish to `<topic>-retry-N` topics.
    Topics,
}

/// `mq.listener.retry.*`: how a failing message is retried before it is dead-lettered.
///
/// ```
/// let r = mq_core::config::RetryConfig::default();
/// assert_eq!(r.max_attempts, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RetryConfig {
    /// Total attempts including the first (>= 1). Default 3.
    pub max_attempts: u32,
    /// First backoff. Default `1s`.
    #[serde(with = "duration")]
    pub initial_interval: Duration,
    /// Backoff growth factor (>= 1). Default 2.
    pub multiplier: f64,
    /// Backoff ceiling. Default `10s`.
    #[serde(with = "duration")]
    pub max_interval: Duration,
    /// Randomise each backoff (full jitter on top of the delay). Default false.
    pub jitter: bool,
    /// `blocking` (default) or `topics`.
    pub mode: RetryMode,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            max_attempts: 3,
            initial_interval: Duration::from_secs(1),
            multiplier: 2.0,
            max_interval: Duration::from_secs(10),
            jitter: false,
            mode: RetryMode::Blocking,
        }
    }
}

/// Partial retry settings (per listener in config, or in the macro).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RetryOverride {
    /// See [`RetryConfig::max_attempts`].
    pub max_attempts: Option<u32>,
    /// See [`RetryConfig::initial_interval`].
    #[serde(with = "opt_duration")]
    pub initial_interval: Option<Duration>,
    /// See [`RetryConfig::multiplier`].
    pub multiplier: Option<f64>,
    /// See [`RetryConfig::max_interval`].
    #[serde(with = "opt_duration")]
    pub max_interval: Option<Duration>,
    /// See [`RetryConfig::jitter`].
    pub jitter: Option<bool>,
    /// See [`RetryConfig::mode`].
    pub mode: Option<RetryMode>,
}

impl RetryConfig {
    /// These settings with `o`'s set fields on top.
    ///
    /// ```
    /// use mq_core::config::{RetryConfig, RetryOverride};
    /// let r = RetryConfig::default().merged(&RetryOverride { max_attempts: Some(5), ..Default::default() });
    /// assert_eq!(r.max_attempts, 5);
    /// ```
    pub fn merged(&self, o: &RetryOverride) -> RetryConfig {
        RetryConfig {
            max_attempts: o.max_attempts.unwrap_or(self.max_attempts),
            initial_interval: o.initial_interval.unwrap_or(self.initial_interval),
            multiplier: o.multiplier.unwrap_or(self.multiplier),
            max_interval: o.max_interval.unwrap_or(self.max_interval),
            jitter: o.jitter.unwrap_or(self.jitter),
            mode: o.mode.unwrap_or(self.mode),
        }
    }
}

/// `mq.listener.dlt.*`: the dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct DltConfig {
    /// Publish failed messages to `<topic><suffix>`. Default true. When false, a message
    /// that exhausted its retries is logged at ERROR and skipped (Spring's behaviour without
    /// a recoverer).
    pub enabled: bool,
    /// Default `-dlt`; `.DLT` for Spring interop.
    #[serde(deserialize_with = "lenient::string")]
    pub suffix: String,
    /// Dead-letter routing by failure (Spring's exception-based DLT routing): failure →
    /// the suffix of its own dead-letter topic, `<topic><route suffix>`. A failure is an
    /// error type name as `kafka_dlt-exception-fqcn` shows it (e.g.
    /// `mq_core::envelope::DecodeError::Json`), or a kind: `poison` (does not decode),
    /// `permanent`, `exhausted` (retries used up). The type wins over the kind. Default: none.
    pub routes: std::collections::BTreeMap<String, String>,
}

impl Default for DltConfig {
    fn default() -> Self {
        DltConfig {
            enabled: true,
            suffix: "-dlt".to_owned(),
            routes: Default::default(),
        }
    }
}

/// Partial dead-letter settings for one listener.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct DltOverride {
    /// See [`DltConfig::enabled`].
    pub enabled: Option<bool>,
    /// See [`DltConfig::suffix`].
    #[serde(deserialize_with = "lenient::opt_string")]
    pub suffix: Option<String>,
    /// See [`DltConfig::routes`] (replaces the defaults' routes when set).
    pub routes: Option<std::collections::BTreeMap<String, String>>,
}

/// `mq.listener.*`: defaults for every listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ListenerConfig {
    /// Retry policy.
    pub retry: RetryConfig,
    /// Dead-letter topic.
    pub dlt: DltConfig,
    /// Consumers per listener in this process (Spring's `concurrency`). Default 1; each
    /// consumer already runs one worker per assigned partition.
    pub concurrency: u32,
    /// Larger record values are poison (straight to the DLT). Default 1 MiB.
    pub max_payload_bytes: usize,
    /// Which records of one partition may run at once: `partition` (one at a time, the
    /// default) or `key` (records of one key in order, different keys concurrently).
    pub ordering: Ordering,
    /// In `key` ordering, records of one partition taken and not yet done. Default 64.
    pub max_in_flight: u32,
    /// A record in the handler for longer than this is logged at WARN and shown in the
    /// `listeners` health component. Default `60s`.
    #[serde(with = "duration")]
    pub handler_warn_after: Duration,
    /// Cancel a handler call that takes longer than this; the timeout is a transient
    /// failure (retried, then dead-lettered). Default none: a handler is never cancelled.
    ///
    /// On RabbitMQ keep it (times `max-attempts`, plus the backoffs, for blocking retries)
    /// below the broker's `consumer_timeout` (30 minutes by default): a delivery
    /// unacknowledged for longer has its channel closed by the broker
    /// and is delivered again. mq then counts that delivery as an attempt (see the README),
    /// so the message reaches the dead-letter queue after `max-attempts` such deliveries
    /// instead of looping, but every one of them waited the whole `consumer_timeout`.
    /// `handler-warn-after` (default 60 s) warns long before.
    #[serde(with = "opt_duration")]
    pub handler_timeout: Option<Duration>,
    /// Bytes of records a consumer buffers for its partitions' lanes, split across them; a
    /// lane over its share has its partition paused. Default 32 MiB.
    pub buffer_bytes: usize,
}

impl Default for ListenerConfig {
    fn default() -> Self {
        ListenerConfig {
            retry: RetryConfig::default(),
            dlt: DltConfig::default(),
            concurrency: 1,
            max_payload_bytes: 1024 * 1024,
            ordering: Ordering::Partition,
            max_in_flight: 64,
            handler_warn_after: Duration::from_secs(60),
            handler_timeout: None,
            buffer_bytes: 32 * 1024 * 1024,
        }
    }
}

/// `mq.listeners.<name>.*`: overrides for one listener (they win over the macro's values).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ListenerOverride {
    /// Topics to read instead of the macro's.
    #[serde(deserialize_with = "lenient::opt_string_list")]
    pub topics: Option<Vec<String>>,
    /// Consumer group.
    #[serde(deserialize_with = "lenient::opt_string")]
    pub group: Option<String>,
    /// Consumers in this process.
    pub concurrency: Option<u32>,
    /// Start with the app (default true).
    pub auto_startup: Option<bool>,
    /// Retry settings.
    pub retry: RetryOverride,
    /// Dead-letter settings.
    pub dlt: DltOverride,
    /// Record ordering (`partition` or `key`).
    pub ordering: Option<Ordering>,
    /// In `key` ordering, records in flight per partition.
    pub max_in_flight: Option<u32>,
    /// When a record in the handler is logged as hung.
    #[serde(with = "opt_duration")]
    pub handler_warn_after: Option<Duration>,
    /// Cancel a handler call after this long (a transient failure).
    #[serde(with = "opt_duration")]
    pub handler_timeout: Option<Duration>,
    /// Allow this listener to share its group with another listener of this app on an
    /// overlapping topic (the two then split the records between them). Default false.
    pub share_group: Option<bool>,
    /// A queue listener's bindings, instead of the macro's.
    pub bindings: Option<Vec<super::BindingConfig>>,
    /// A queue listener: declare its queue (see `mq.rabbitmq.listener.declare`), or take it
    /// as it exists.
    pub declare: Option<bool>,
    /// Run the handler as an idempotent consumer (`#[listener(idempotent)]`): in a
    /// transaction that records the event's identity, skipping events already recorded.
    pub idempotency: Option<bool>,
}

/// Which records of one partition may run at the same time.
///
/// ```
/// use mq_core::config::Ordering;
/// let o: Ordering = serde_json::from_str("\"key\"").unwrap();
/// assert_eq!(o, Ordering::Key);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ordering {
    /// One record of a partition at a time, in offset order (Spring Kafka's behaviour).
    #[default]
    Partition,
    /// Records of one key in order; records of different keys of one partition
    /// concurrently, up to `max-in-flight`. The committed offset is the highest one below
    /// which every record is done.
    Key,
}
