//! Typed configuration, loaded with figment the way Spring Boot loads `application.yml`.
//!
//! Sources, later ones winning:
//! 1. `application.yaml` (or `application.yml`) in the config directory (the current
//!    directory, or `MQ_CONFIG_DIR`);
//! 2. `application-{profile}.yaml` for each active profile, in order. Profiles come from
//!    `MQ_PROFILES_ACTIVE` (comma-separated), else from `mq.profiles.active` in the base file;
//! 3. environment variables `MQ_*` (values are strings; variables that set no key are
//!    ignored with a WARN, see [`Config::ignored_environment`]), `__` separating levels,
//!    `_` standing for `-`:
//!    `MQ_KAFKA__BOOTSTRAP_SERVERS` sets `mq.kafka.bootstrap-servers`,
//!    `MQ_MANAGEMENT__SERVER__PORT` sets `management.server.port`, and below a
//!    `properties` key `_` stands for `.`: `MQ_KAFKA__CONSUMER__PROPERTIES__FETCH_MIN_BYTES`
//!    sets the librdkafka property `fetch.min.bytes`.
//!
//! Unknown keys under `mq` and `management` are errors (a typo must not be silently ignored);
//! other top-level keys are left for the application ([`Config::section`]).

mod datasource;
mod duration;
mod env;
mod files;
pub(crate) mod group_protocol;
mod kafka;
mod lenient;
mod listener;
mod management;
mod mq;
mod otlp;
mod properties;
mod rabbitmq;
mod rabbitmq_ssl;
pub(crate) mod sanitize;
pub mod security;
mod validate;

#[cfg(test)]
mod tests;

use std::path::PathBuf;

use figment::Figment;
use serde::{Deserialize, Serialize};

#[cfg(feature = "postgres")]
pub(crate) use datasource::valid_table_name;
pub use datasource::{DatasourceConfig, InboxConfig, InboxStoreKind, OutboxConfig};
pub use duration::parse_duration;
pub use kafka::{
    flatten_properties, AdminConfig, AutoOffsetReset, ConsumerConfig, DestinationConfig,
    KafkaConfig, ProducerConfig,
};
pub use listener::{
    DltConfig, DltOverride, ListenerConfig, ListenerOverride, Ordering, RetryConfig, RetryMode,
    RetryOverride,
};
pub use management::{
    AuthSettings, EndpointSettings, Endpoints, Exposure, HealthGroupSettings, HealthSettings,
    ManagementConfig, ManagementServer, MetricsSettings, ShowDetails, WebEndpoints,
};
pub use mq::{
    ApplicationConfig, LogFormat, LoggingConfig, MqConfig, ProfilesConfig, ReplyConfig,
    ShutdownConfig,
};
pub use otlp::{OtlpSettings, OtlpTracing, Sampling, TraceExport, TracingSettings};
pub use properties::Properties;
pub use rabbitmq::{
    AcknowledgeMode, BindingConfig, ExchangeType, RabbitConfig, RabbitDeadLetterConfig,
    RabbitListenerConfig, RabbitPublisherConfig,
};
pub use rabbitmq_ssl::RabbitSslConfig;
#[cfg(feature = "rabbitmq")]
pub(crate) use rabbitmq_ssl::{RabbitTls, TlsVersion};
pub use security::{
    KafkaSecurity, SaslConfig, SaslMechanism, Secret, SecurityConfig, SecurityProtocol, SslConfig,
};

/// The whole configuration of an `mq` application.
///
/// ```
/// let config = mq_core::Config::from_yaml_str("mq:\n  application:\n    name: shop\n").unwrap();
/// assert_eq!(config.mq.application.name, "shop");
/// assert_eq!(config.mq.kafka.bootstrap_servers, "127.0.0.1:9092");
/// ```
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Config {
    /// Everything under `mq:`.
    #[serde(default)]
    pub mq: MqConfig,
    /// Everything under `management:` (actuator).
    #[serde(default)]
    pub management: ManagementConfig,
    #[serde(skip)]
    figment: Option<Figment>,
    #[serde(skip)]
    sources: Vec<PathBuf>,
    #[serde(skip)]
    ignored_env: Vec<String>,
}

/// A configuration that could not be loaded; the message names the file (or environment
/// variable) and the key.
///
/// ```
/// let err = mq_core::Config::from_yaml_str("mq:\n  listener:\n    retry:\n      max-attempts: many\n").unwrap_err();
/// assert!(err.to_string().contains("mq.listener.retry.max-attempts"), "{err}");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(String);

impl ConfigError {
    /// An error with `message` (which names the key or the variable).
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ConfigError(message.into())
    }
}

impl std::fmt::Debug for Config {
    /// The settings with every secret masked, as `/actuator/info` shows them (a `{:?}` of
    /// the configuration may end up in a log line): no password, token, key, `sasl.*` value
    /// or URI password; never the merged sources, which hold every raw value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut settings = serde_json::to_value(self).unwrap_or_default();
        sanitize::sanitize(&mut settings);
        f.debug_struct("Config")
            .field("settings", &format_args!("{settings}"))
            .field("sources", &self.sources)
            .field("ignored_env", &self.ignored_env)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// The files that were read, in order.
    ///
    /// ```
    /// assert!(mq_core::Config::default().sources().is_empty());
    /// ```
    pub fn sources(&self) -> &[PathBuf] {
        &self.sources
    }

    /// The `MQ_*` environment variables that set no configuration key and were ignored,
    /// sorted: for instance the service links Kubernetes injects for a Service named `mq`
    /// (`MQ_PORT=tcp://10.0.0.1:5672`, `MQ_SERVICE_HOST`, ...). `App` logs
    /// them in one WARN at start.
    ///
    /// ```
    /// assert!(mq_core::Config::default().ignored_environment().is_empty());
    /// ```
    pub fn ignored_environment(&self) -> &[String] {
        &self.ignored_env
    }

    /// The application's own settings under the top-level `key` (dots go deeper:
    /// `my-app.topics`), read from the same merged files as `mq` and `management`. A key
    /// that is absent reads as an empty map (fields with defaults take them). Numbers and
    /// booleans are also read from strings. The error names the key and the file it came
    /// from.
    ///
    /// ```
    /// #[derive(Debug, serde::Deserialize)]
    /// struct Shop { currency: String, #[serde(default)] max_items: u32 }
    /// let c = mq_core::Config::from_yaml_str("shop:\n  currency: EUR\n").unwrap();
    /// let shop: Shop = c.section("shop").unwrap();
    /// assert_eq!((shop.currency.as_str(), shop.max_items), ("EUR", 0));
    /// let err = c.section::<Shop>("store").unwrap_err().to_string();
    /// assert!(err.contains("store") && err.contains("currency"), "{err}");
    /// ```
    pub fn section<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<T, ConfigError> {
        let figment = self.figment.clone().unwrap_or_default();
        let scalar = matches!(figment.find_value(key), Ok(v) if v.as_dict().is_none());
        let result = if scalar {
            figment.extract_inner_lossy::<T>(key).map_err(|e| {
                e.into_iter()
                    .map(|e| (key.to_owned(), e))
                    .collect::<Vec<_>>()
            })
        } else {
            // An absent key reads as an empty map; error paths are relative to `key`.
            figment.focus(key).extract_lossy::<T>().map_err(|e| {
                e.into_iter()
                    .map(|e| {
                        let full = std::iter::once(key.to_owned())
                            .chain(e.path.iter().cloned())
                            .collect::<Vec<_>>()
                            .join(".");
                        (full, e)
                    })
                    .collect()
            })
        };
        result.map_err(|errors| {
            ConfigError(
                errors
                    .into_iter()
                    .map(
                        |(full, e)| match e.metadata.as_ref().and_then(|m| m.source.as_ref()) {
                            Some(source) => format!("{full}: {} (in {source})", e.kind),
                            None => format!("{full}: {}", e.kind),
                        },
                    )
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })
    }

    /// The `management.metrics.tags` as label pairs, keys made legal label names
    /// (`deployment-env` → `deployment_env`, see [`crate::metrics::label_name`]).
    pub(crate) fn metric_tags(&self) -> Vec<(String, String)> {
        self.management
            .metrics
            .tags
            .iter()
            .map(|(k, v)| (crate::metrics::label_name(k), v.clone()))
            .collect()
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}
