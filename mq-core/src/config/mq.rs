//! `mq.application`, `mq.profiles`, `mq.shutdown`, `mq.logging` and the `mq` root.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{duration, lenient};
use super::{KafkaConfig, ListenerConfig, ListenerOverride, RabbitConfig};

/// `mq.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct MqConfig {
    /// `mq.application.*`
    pub application: ApplicationConfig,
    /// `mq.profiles.*`
    pub profiles: ProfilesConfig,
    /// `mq.kafka.*`
    pub kafka: KafkaConfig,
    /// `mq.rabbitmq.*`
    pub rabbitmq: RabbitConfig,
    /// `mq.listener.*`: defaults for every listener.
    pub listener: ListenerConfig,
    /// `mq.listeners.<name>.*`: per-listener overrides.
    pub listeners: BTreeMap<String, ListenerOverride>,
    /// `mq.shutdown.*`
    pub shutdown: ShutdownConfig,
    /// `mq.logging.*`
    pub logging: LoggingConfig,
    /// `mq.datasource.*`: the PostgreSQL database of the outbox and the inbox.
    pub datasource: super::DatasourceConfig,
    /// `mq.outbox.*`
    pub outbox: super::OutboxConfig,
    /// `mq.inbox.*`
    pub inbox: super::InboxConfig,
    /// `mq.reply.*`: requests waiting for replies.
    pub reply: ReplyConfig,
}

/// `mq.reply.*`: how requests (`Publisher::request`) wait.
///
/// ```
/// let c = mq_core::Config::from_yaml_str("mq: {reply: {timeout: 2s, max-in-flight: 500}}").unwrap();
/// assert_eq!(c.mq.reply.timeout, std::time::Duration::from_secs(2));
/// assert_eq!(c.mq.reply.max_in_flight, 500);
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ReplyConfig {
    /// How long a request waits for its reply unless it says otherwise. Default `5s`
    /// (Spring's `ReplyingKafkaTemplate`).
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Requests waiting at once; one more waits for a place before it is sent. Default
    /// 10000.
    pub max_in_flight: usize,
}

impl Default for ReplyConfig {
    fn default() -> Self {
        ReplyConfig {
            timeout: Duration::from_secs(5),
            max_in_flight: 10_000,
        }
    }
}

/// `mq.application.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ApplicationConfig {
    /// Service name: the CloudEvents `source` (`/<name>`), the default consumer group, the
    /// `application` tag of metrics. Default `mq-app`.
    #[serde(deserialize_with = "lenient::string")]
    pub name: String,
    /// The application's version, shown by `/actuator/info` (e.g. set
    /// `MQ_APPLICATION__VERSION` from your build). Default none.
    #[serde(
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub version: Option<String>,
}

impl Default for ApplicationConfig {
    fn default() -> Self {
        ApplicationConfig {
            name: "mq-app".to_owned(),
            version: None,
        }
    }
}

/// `mq.profiles.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ProfilesConfig {
    /// Active profiles (`MQ_PROFILES_ACTIVE` wins over this key).
    #[serde(deserialize_with = "lenient::string_list")]
    pub active: Vec<String>,
}

/// `mq.shutdown.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ShutdownConfig {
    /// How long in-flight handlers get to finish on shutdown. Default `30s`.
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            timeout: Duration::from_secs(30),
        }
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LogFormat {
    /// Human-readable (default).
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// `mq.logging.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct LoggingConfig {
    /// `text` or `json`.
    pub format: LogFormat,
    /// `tracing` filter directive (`RUST_LOG` wins). Default `info`.
    #[serde(deserialize_with = "lenient::string")]
    pub level: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}
