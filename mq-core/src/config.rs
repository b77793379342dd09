//! Typed configuration, loaded with figment the way Spring Boot loads `application.yml`.
//!
//! Sources, later ones winning:
//! 1. `application.yaml` (or `application.yml`) in the config directory (the current
//!    directory, or `MQ_CONFIG_DIR`);
//! 2. `application-{profile}.yaml` for each active profile, in order. Profiles come from
//!    `MQ_PROFILES_ACTIVE` (comma-separated), else from `mq.profiles.active` in the base file;
//! 3. environment variables `MQ_*`, `__` separating levels, `_` standing for `-`:
//!    `MQ_KAFKA__BOOTSTRAP_SERVERS` sets `mq.kafka.bootstrap-servers`,
//!    `MQ_MANAGEMENT__SERVER__PORT` sets `management.server.port`, and below a
//!    `properties` key `_` stands for `.`: `MQ_KAFKA__CONSUMER__PROPERTIES__FETCH_MIN_BYTES`
//!    sets the librdkafka property `fetch.min.bytes`.
//!
//! Unknown keys under `mq` and `management` are errors (a typo must not be silently ignored);
//! other top-level keys are left for the application ([`Config::figment`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format};
use figment::value::{Uncased, Value};
use figment::Figment;
use serde::{Deserialize, Serialize};
use serde_saphyr::figment::Yaml;

use crate::envelope::ContentMode;

/// The whole configuration of an `mq` application.
///
/// ```
/// let config = mq_core::Config::from_yaml_str("mq:\n  application:\n    name: shop\n").unwrap();
/// assert_eq!(config.mq.application.name, "shop");
/// assert_eq!(config.mq.kafka.bootstrap_servers, "127.0.0.1:9092");
/// ```
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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
}

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
    /// `mq.listener.*`: defaults for every listener.
    pub listener: ListenerConfig,
    /// `mq.listeners.<name>.*`: per-listener overrides.
    pub listeners: BTreeMap<String, ListenerOverride>,
    /// `mq.shutdown.*`
    pub shutdown: ShutdownConfig,
    /// `mq.logging.*`
    pub logging: LoggingConfig,
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

/// `mq.kafka.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list. Default `127.0.0.1:9092`.
    #[serde(deserialize_with = "lenient::string")]
    pub bootstrap_servers: String,
    /// librdkafka properties for every client (consumers, producer, admin), like Spring's
    /// `spring.kafka.properties.*`: the place for `security.protocol`, `sasl.*`, `ssl.*`.
    /// `consumer.properties` and `producer.properties` win over these.
    pub properties: BTreeMap<String, Value>,
    /// Consumer settings.
    pub consumer: ConsumerConfig,
    /// Producer settings.
    pub producer: ProducerConfig,
    /// Topic administration at startup.
    pub admin: AdminConfig,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: "127.0.0.1:9092".to_owned(),
            properties: BTreeMap::new(),
            consumer: ConsumerConfig::default(),
            producer: ProducerConfig::default(),
            admin: AdminConfig::default(),
        }
    }
}

/// `mq.kafka.admin.*`: topics created at startup (like Spring's `NewTopic` beans and
/// `@RetryableTopic(autoCreateTopics)`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct AdminConfig {
    /// Create missing listener topics and their dead-letter topics. Default true.
    pub auto_create_topics: bool,
    /// Partitions of a created listener topic (a DLT gets its source's count). Default 1.
    pub partitions: i32,
    /// Replication factor of created topics; -1 takes the broker's default. Default -1.
    pub replication_factor: i32,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            auto_create_topics: true,
            partitions: 1,
            replication_factor: -1,
        }
    }
}

/// Where a new consumer group starts reading.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AutoOffsetReset {
    /// From the oldest retained record (the default: a new service misses nothing).
    #[default]
    Earliest,
    /// Only records produced after the group first joined.
    Latest,
}

/// `mq.kafka.consumer.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ConsumerConfig {
    /// Default group of every listener (else the application name).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub group_id: Option<String>,
    /// `earliest` (default) or `latest`.
    pub auto_offset_reset: AutoOffsetReset,
    /// librdkafka consumer properties, passed as they are (they win over mq's defaults).
    pub properties: BTreeMap<String, Value>,
}

/// `mq.kafka.producer.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ProducerConfig {
    /// `all` (default), `1` or `0`.
    #[serde(deserialize_with = "lenient::string")]
    pub acks: String,
    /// `structured` (default) or `binary` CloudEvents mode.
    pub content_mode: ContentMode,
    /// librdkafka producer properties, passed as they are.
    pub properties: BTreeMap<String, Value>,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: "all".to_owned(),
            content_mode: ContentMode::default(),
            properties: BTreeMap::new(),
        }
    }
}

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
}

impl Default for DltConfig {
    fn default() -> Self {
        DltConfig {
            enabled: true,
            suffix: "-dlt".to_owned(),
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
    pub ordering: crate::consume::Ordering,
    /// In `key` ordering, records of one partition taken and not yet done. Default 64.
    pub max_in_flight: u32,
    /// A record in the handler for longer than this is logged at WARN and shown in the
    /// `listeners` health component. Default `60s`.
    #[serde(with = "duration")]
    pub handler_warn_after: Duration,
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
            ordering: crate::consume::Ordering::Partition,
            max_in_flight: 64,
            handler_warn_after: Duration::from_secs(60),
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
    pub ordering: Option<crate::consume::Ordering>,
    /// In `key` ordering, records in flight per partition.
    pub max_in_flight: Option<u32>,
    /// When a record in the handler is logged as hung.
    #[serde(with = "opt_duration")]
    pub handler_warn_after: Option<Duration>,
    /// Allow this listener to share its group with another listener of this app on an
    /// overlapping topic (the two then split the records between them). Default false.
    pub share_group: Option<bool>,
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

/// `management.*` (actuator).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ManagementConfig {
    /// `management.server.*`
    pub server: ManagementServer,
    /// `management.endpoints.*`
    pub endpoints: Endpoints,
    /// `management.endpoint.*`
    pub endpoint: EndpointSettings,
    /// `management.metrics.*`
    pub metrics: MetricsSettings,
}

/// `management.server.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ManagementServer {
    /// Serve the actuator at all. Default true.
    pub enabled: bool,
    /// Bind address. Default `0.0.0.0`.
    #[serde(deserialize_with = "lenient::string")]
    pub address: String,
    /// Port; 0 picks a free one. Default 8081.
    pub port: u16,
}

impl Default for ManagementServer {
    fn default() -> Self {
        ManagementServer {
            enabled: true,
            address: "0.0.0.0".to_owned(),
            port: 8081,
        }
    }
}

/// `management.endpoints.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Endpoints {
    /// `management.endpoints.web.*`
    pub web: WebEndpoints,
}

/// `management.endpoints.web.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct WebEndpoints {
    /// Default `/actuator`.
    #[serde(deserialize_with = "lenient::string")]
    pub base_path: String,
    /// Which endpoints answer.
    pub exposure: Exposure,
}

impl Default for WebEndpoints {
    fn default() -> Self {
        WebEndpoints {
            base_path: "/actuator".to_owned(),
            exposure: Exposure::default(),
        }
    }
}

/// `management.endpoints.web.exposure.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct Exposure {
    /// Endpoint ids, or `*`. Default `health` (as Spring Boot).
    #[serde(deserialize_with = "lenient::string_list")]
    pub include: Vec<String>,
}

impl Default for Exposure {
    fn default() -> Self {
        Exposure {
            include: vec!["health".to_owned()],
        }
    }
}

/// `management.endpoint.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct EndpointSettings {
    /// `management.endpoint.health.*`
    pub health: HealthSettings,
}

/// When health details are shown.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShowDetails {
    /// Status only (default, as Spring Boot).
    #[default]
    Never,
    /// Components and details.
    Always,
}

/// `management.endpoint.health.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct HealthSettings {
    /// `never` or `always`.
    pub show_details: ShowDetails,
}

/// `management.metrics.*`
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct MetricsSettings {
    /// Labels put on every series, e.g. `application: order-service`.
    pub tags: BTreeMap<String, Value>,
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

impl Config {
    /// Loads from the current directory (or `MQ_CONFIG_DIR`), active profiles and `MQ_*`.
    ///
    /// ```no_run
    /// let config = mq_core::Config::load().expect("valid application.yaml");
    /// ```
    pub fn load() -> Result<Config, ConfigError> {
        let dir = std::env::var_os("MQ_CONFIG_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        Self::load_from(dir)
    }

    /// Like [`Config::load`], but when `MQ_CONFIG_DIR` is unset and the current directory
    /// has no `application.yaml`/`.yml`, reads the files from `fallback` instead (e.g.
    /// `env!("CARGO_MANIFEST_DIR")`, so `cargo run -p my-service` works from a workspace
    /// root).
    ///
    /// ```no_run
    /// let config = mq_core::Config::load_or_from(env!("CARGO_MANIFEST_DIR")).unwrap();
    /// ```
    pub fn load_or_from(fallback: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let here = Path::new("application.yaml").exists() || Path::new("application.yml").exists();
        if std::env::var_os("MQ_CONFIG_DIR").is_some() || here {
            Self::load()
        } else {
            Self::load_from(fallback)
        }
    }

    /// Loads from `dir` (files), active profiles and `MQ_*` (environment).
    ///
    /// ```
    /// let dir = std::env::temp_dir().join("mq-doc-load-from");
    /// std::fs::create_dir_all(&dir).unwrap();
    /// std::fs::write(dir.join("application.yaml"), "mq:\n  application:\n    name: doc\n").unwrap();
    /// let config = mq_core::Config::load_from(&dir).unwrap();
    /// assert_eq!(config.mq.application.name, "doc");
    /// ```
    pub fn load_from(dir: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let dir = dir.as_ref();
        let base = ["application.yaml", "application.yml"]
            .iter()
            .map(|f| dir.join(f))
            .find(|p| p.exists());
        let mut figment = Figment::new();
        let mut sources = Vec::new();
        if let Some(base) = &base {
            figment = figment.merge(Yaml::file_exact(base));
            sources.push(base.clone());
        }
        let profiles = match std::env::var("MQ_PROFILES_ACTIVE") {
            Ok(list) => split_list(&list),
            Err(_) => figment
                .extract_inner::<ProfilesConfig>("mq.profiles")
                .map(|p| p.active)
                .unwrap_or_default(),
        };
        for profile in &profiles {
            let file = ["yaml", "yml"]
                .iter()
                .map(|ext| dir.join(format!("application-{profile}.{ext}")))
                .find(|p| p.exists());
            match file {
                Some(file) => {
                    figment = figment.merge(Yaml::file_exact(&file));
                    sources.push(file);
                }
                None => tracing::warn!(
                    profile,
                    dir = %dir.display(),
                    "active profile has no application-{profile}.yaml"
                ),
            }
        }
        figment = figment.merge(env_provider());
        let mut config = Self::from_figment(figment)?;
        config.mq.profiles.active = profiles;
        config.sources = sources;
        Ok(config)
    }

    /// Parses one YAML document (no files, no environment): handy in tests.
    ///
    /// ```
    /// let c = mq_core::Config::from_yaml_str("management:\n  server:\n    port: 0\n").unwrap();
    /// assert_eq!(c.management.server.port, 0);
    /// ```
    pub fn from_yaml_str(yaml: &str) -> Result<Config, ConfigError> {
        Self::from_figment(Figment::from(Yaml::string(yaml)))
    }

    /// Extracts and validates a configuration from any figment.
    ///
    /// ```
    /// use figment::{Figment, providers::Serialized};
    /// let f = Figment::from(Serialized::default("mq.application.name", "x"));
    /// assert_eq!(mq_core::Config::from_figment(f).unwrap().mq.application.name, "x");
    /// ```
    pub fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let mut config: Config = figment.extract().map_err(|e| {
            ConfigError(
                e.into_iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
        config.validate(&figment)?;
        config.figment = Some(figment);
        Ok(config)
    }

    fn validate(&self, figment: &Figment) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        let check_retry = |problems: &mut Vec<String>, key: &str, retry: &RetryConfig| {
            if retry.max_attempts == 0 {
                problems.push(format!("{key}.max-attempts must be at least 1"));
            }
            if !(retry.multiplier >= 1.0 && retry.multiplier.is_finite()) {
                problems.push(format!("{key}.multiplier must be >= 1"));
            }
            if retry.max_interval < retry.initial_interval {
                problems.push(format!("{key}.max-interval must be >= initial-interval"));
            }
        };
        check_retry(&mut problems, "mq.listener.retry", &self.mq.listener.retry);
        for (name, o) in &self.mq.listeners {
            check_retry(
                &mut problems,
                &format!("mq.listeners.{name}.retry"),
                &self.mq.listener.retry.merged(&o.retry),
            );
            if o.concurrency == Some(0) {
                problems.push(format!(
                    "mq.listeners.{name}.concurrency must be at least 1"
                ));
            }
        }
        if self.mq.listener.concurrency == 0 {
            problems.push("mq.listener.concurrency must be at least 1".to_owned());
        }
        if self.mq.kafka.bootstrap_servers.trim().is_empty() {
            problems.push("mq.kafka.bootstrap-servers must not be empty".to_owned());
        }
        if !matches!(
            self.mq.kafka.producer.acks.as_str(),
            "all" | "-1" | "0" | "1"
        ) {
            problems.push(format!(
                "mq.kafka.producer.acks must be all, 1 or 0, not {:?}",
                self.mq.kafka.producer.acks
            ));
        }
        if !self.management.endpoints.web.base_path.starts_with('/') {
            problems.push("management.endpoints.web.base-path must start with /".to_owned());
        }
        if problems.is_empty() {
            return Ok(());
        }
        // Name the file each offending key came from.
        let described = problems
            .into_iter()
            .map(|p| {
                let key = p.split_whitespace().next().unwrap_or_default();
                match figment.find_metadata(key).and_then(|m| m.source.as_ref()) {
                    Some(source) => format!("{p} (in {source})"),
                    None => p,
                }
            })
            .collect::<Vec<_>>();
        Err(ConfigError(described.join("; ")))
    }

    /// The files that were read, in order.
    ///
    /// ```
    /// assert!(mq_core::Config::default().sources().is_empty());
    /// ```
    pub fn sources(&self) -> &[PathBuf] {
        &self.sources
    }

    /// The merged figment, to extract the application's own settings from the same files.
    ///
    /// ```
    /// #[derive(serde::Deserialize)]
    /// struct Shop { currency: String }
    /// let c = mq_core::Config::from_yaml_str("shop:\n  currency: EUR\n").unwrap();
    /// let shop: Shop = c.figment().extract_inner("shop").unwrap();
    /// assert_eq!(shop.currency, "EUR");
    /// ```
    pub fn figment(&self) -> Figment {
        self.figment.clone().unwrap_or_default()
    }

    /// The `management.metrics.tags` as label pairs.
    pub(crate) fn metric_tags(&self) -> Vec<(String, String)> {
        self.management
            .metrics
            .tags
            .iter()
            .map(|(k, v)| (k.clone(), value_to_string(v)))
            .collect()
    }
}

/// Flattens a `properties` map into librdkafka `key=value` pairs: nested maps join with
/// `.` (so `fetch: {min.bytes: 1}` and `fetch.min.bytes: 1` mean the same), scalars become
/// strings.
///
/// ```
/// use std::collections::BTreeMap;
/// use figment::value::Value;
/// let mut m = BTreeMap::new();
/// m.insert("linger.ms".to_string(), Value::from(5u32));
/// assert_eq!(mq_core::config::flatten_properties(&m), vec![("linger.ms".to_string(), "5".to_string())]);
/// ```
pub fn flatten_properties(map: &BTreeMap<String, Value>) -> Vec<(String, String)> {
    fn walk(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
        match value {
            Value::Dict(_, dict) => {
                for (k, v) in dict {
                    walk(&format!("{prefix}.{k}"), v, out);
                }
            }
            other => out.push((prefix.to_owned(), value_to_string(other))),
        }
    }
    let mut out = Vec::new();
    for (k, v) in map {
        walk(k, v, &mut out);
    }
    out
}

fn value_to_string(value: &Value) -> String {
    match value {
        Value::String(_, s) => s.clone(),
        Value::Char(_, c) => c.to_string(),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => n
            .to_u128()
            .map(|n| n.to_string())
            .or_else(|| n.to_i128().map(|n| n.to_string()))
            .or_else(|| n.to_f64().map(|n| n.to_string()))
            .unwrap_or_default(),
        Value::Empty(_, _) => String::new(),
        Value::Array(_, items) => items
            .iter()
            .map(value_to_string)
            .collect::<Vec<_>>()
            .join(","),
        Value::Dict(_, _) => String::new(),
    }
}

fn split_list(s: &str) -> Vec<String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `MQ_*` variables: `MQ_A__B_C` → `mq.a.b-c`; `MQ_MANAGEMENT__X` → `management.x`;
/// below `properties`, `_` → `.`. Errors name the variable, not the mapped key.
struct EnvVars(Env);

fn env_provider() -> EnvVars {
    EnvVars(
        Env::prefixed("MQ_")
            .filter(|k| k != "profiles_active" && k != "config_dir")
            .map(|key| Uncased::from(env_key(key.as_str()))),
    )
}

impl figment::Provider for EnvVars {
    fn metadata(&self) -> figment::Metadata {
        figment::Metadata::named("environment variable").interpolater(|_, path| env_var_name(path))
    }

    fn data(
        &self,
    ) -> Result<figment::value::Map<figment::Profile, figment::value::Dict>, figment::Error> {
        self.0.data()
    }
}

/// The variable that sets `path` (the inverse of [`env_key`]).
fn env_var_name(path: &[&str]) -> String {
    let path = match path.first() {
        Some(&"mq") => &path[1..],
        _ => path,
    };
    let upper = |s: &str| s.replace(['-', '.'], "_").to_ascii_uppercase();
    let split = path
        .iter()
        .position(|s| *s == "properties")
        .map_or(path.len(), |i| i + 1);
    let mut out: Vec<String> = path[..split].iter().map(|s| upper(s)).collect();
    if split < path.len() {
        out.push(
            path[split..]
                .iter()
                .map(|s| upper(s))
                .collect::<Vec<_>>()
                .join("_"),
        );
    }
    format!("MQ_{}", out.join("__"))
}

fn env_key(key: &str) -> String {
    let mut out = Vec::new();
    let mut in_properties = false;
    for segment in key.split("__") {
        let segment = segment.to_ascii_lowercase();
        // Listener names are fn names: their underscores are theirs.
        let verbatim = out.len() == 1 && out[0] == "listeners";
        out.push(if in_properties {
            segment.replace('_', ".")
        } else if verbatim {
            segment.clone()
        } else {
            segment.replace('_', "-")
        });
        in_properties |= segment == "properties";
    }
    if out.first().map(String::as_str) != Some("management") {
        out.insert(0, "mq".to_owned());
    }
    out.join(".")
}

/// Durations as Spring writes them: `500ms`, `1s`, `2m`, or a bare number of milliseconds.
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    pub(super) enum Raw {
        Millis(u64),
        Text(String),
    }

    pub(super) fn parse(raw: Raw) -> Result<Duration, String> {
        match raw {
            Raw::Millis(ms) => Ok(Duration::from_millis(ms)),
            Raw::Text(s) => humantime::parse_duration(s.trim())
                .map_err(|e| format!("{s:?} is not a duration like 500ms, 1s or 2m ({e})")),
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        parse(Raw::deserialize(d)?).map_err(serde::de::Error::custom)
    }

    pub(super) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }
}

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        match Option::<super::duration::Raw>::deserialize(d)? {
            None => Ok(None),
            Some(raw) => super::duration::parse(raw)
                .map(Some)
                .map_err(serde::de::Error::custom),
        }
    }

    pub(super) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => super::duration::serialize(d, s),
            None => s.serialize_none(),
        }
    }
}

/// Strings that tolerate figment's typed parsing of environment values (`MQ_X=123` is an
/// integer to figment, but a group id or a suffix is a string).
mod lenient {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        S(String),
        I(i64),
        U(u64),
        F(f64),
        B(bool),
    }

    impl From<Scalar> for String {
        fn from(s: Scalar) -> String {
            match s {
                Scalar::S(s) => s,
                Scalar::I(i) => i.to_string(),
                Scalar::U(u) => u.to_string(),
                Scalar::F(f) => f.to_string(),
                Scalar::B(b) => b.to_string(),
            }
        }
    }

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum List {
        Many(Vec<Scalar>),
        One(Scalar),
    }

    impl From<List> for Vec<String> {
        fn from(l: List) -> Vec<String> {
            match l {
                List::Many(v) => v.into_iter().map(String::from).collect(),
                List::One(s) => super::split_list(&String::from(s)),
            }
        }
    }

    pub(super) fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Scalar::deserialize(d).map(String::from)
    }

    pub(super) fn opt_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        Ok(Option::<Scalar>::deserialize(d)?.map(String::from))
    }

    pub(super) fn string_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        List::deserialize(d).map(Vec::from)
    }

    pub(super) fn opt_string_list<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Vec<String>>, D::Error> {
        Ok(Option::<List>::deserialize(d)?.map(Vec::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_keys_map_to_kebab_case_paths() {
        assert_eq!(
            env_key("kafka__bootstrap_servers"),
            "mq.kafka.bootstrap-servers"
        );
        assert_eq!(
            env_key("management__server__port"),
            "management.server.port"
        );
        assert_eq!(
            env_key("listeners__on_order__retry__max_attempts"),
            "mq.listeners.on_order.retry.max-attempts"
        );
        assert_eq!(
            env_key("kafka__consumer__properties__fetch_min_bytes"),
            "mq.kafka.consumer.properties.fetch.min.bytes"
        );
    }

    #[test]
    fn env_var_names_invert_env_keys() {
        assert_eq!(
            env_var_name(&[
                "mq",
                "kafka",
                "consumer",
                "properties",
                "fetch",
                "min",
                "bytes"
            ]),
            "MQ_KAFKA__CONSUMER__PROPERTIES__FETCH_MIN_BYTES"
        );
        assert_eq!(
            env_var_name(&["management", "server", "port"]),
            "MQ_MANAGEMENT__SERVER__PORT"
        );
    }

    #[test]
    fn nested_and_dotted_properties_flatten_alike() {
        let c = Config::from_yaml_str(
            "mq:\n  kafka:\n    consumer:\n      properties:\n        fetch.min.bytes: 1\n        queued:\n          max.messages.kbytes: 2048\n",
        )
        .unwrap();
        let props = flatten_properties(&c.mq.kafka.consumer.properties);
        assert_eq!(
            props,
            vec![
                ("fetch.min.bytes".to_owned(), "1".to_owned()),
                ("queued.max.messages.kbytes".to_owned(), "2048".to_owned())
            ]
        );
    }

    #[test]
    fn durations_accept_spring_forms() {
        let c = Config::from_yaml_str(
            "mq:\n  listener:\n    retry:\n      initial-interval: 250ms\n      max-interval: 2000\n",
        )
        .unwrap();
        assert_eq!(
            c.mq.listener.retry.initial_interval,
            Duration::from_millis(250)
        );
        assert_eq!(c.mq.listener.retry.max_interval, Duration::from_secs(2));
    }

    #[test]
    fn a_partly_given_section_keeps_the_defaults_of_the_rest() {
        let c = Config::from_yaml_str(
            "mq:\n  listener:\n    retry:\n      max-attempts: 5\n    dlt:\n      enabled: false\nmanagement:\n  server:\n    port: 9000\n",
        )
        .unwrap();
        let l = &c.mq.listener;
        assert_eq!(l.retry.max_attempts, 5);
        assert_eq!(l.retry.initial_interval, Duration::from_secs(1));
        assert_eq!(l.retry.max_interval, Duration::from_secs(10));
        assert_eq!(l.retry.multiplier, 2.0);
        assert!(!l.dlt.enabled);
        assert_eq!(l.dlt.suffix, "-dlt");
        assert_eq!((l.concurrency, l.max_payload_bytes), (1, 1024 * 1024));
        let server = &c.management.server;
        assert_eq!((server.port, server.address.as_str()), (9000, "0.0.0.0"));
        assert!(server.enabled);
        assert_eq!(c.management.endpoints.web.exposure.include, ["health"]);
        assert_eq!(c.mq.kafka.producer.acks, "all");
        assert_eq!(c.mq.shutdown.timeout, Duration::from_secs(30));
        assert_eq!(c.mq.logging.level, "info");
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let err = Config::from_yaml_str("mq:\n  kafka:\n    bootstrap-server: x\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("bootstrap-server"), "{text}");
        assert!(text.contains("mq.kafka"), "{text}");
    }

    #[test]
    fn numeric_strings_are_tolerated() {
        let c = Config::from_yaml_str(
            "mq:\n  kafka:\n    consumer:\n      group-id: 123\n    producer:\n      acks: 1\n",
        )
        .unwrap();
        assert_eq!(c.mq.kafka.consumer.group_id.as_deref(), Some("123"));
        assert_eq!(c.mq.kafka.producer.acks, "1");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let err = Config::from_yaml_str("mq:\n  listener:\n    retry:\n      max-attempts: 0\n")
            .unwrap_err();
        assert!(
            err.to_string().contains("mq.listener.retry.max-attempts"),
            "{err}"
        );
    }
}
