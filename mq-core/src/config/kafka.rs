//! `mq.kafka.*`: bootstrap servers, librdkafka properties, consumer, producer, admin.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::lenient;
use super::properties::Properties;
use super::security::{KafkaSecurity, SaslConfig, SecurityConfig, SslConfig};
use crate::envelope::ContentMode;

/// `mq.kafka.*`
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct KafkaConfig {
    /// Comma-separated `host:port` list. Default `127.0.0.1:9092`.
    #[serde(deserialize_with = "lenient::string")]
    pub bootstrap_servers: String,
    /// librdkafka properties for every client (consumers, producer, admin), like Spring's
    /// `spring.kafka.properties.*`: the place for `security.protocol`, `sasl.*`, `ssl.*`.
    /// `consumer.properties` and `producer.properties` win over these.
    pub properties: Properties,
    /// Consumer settings.
    pub consumer: ConsumerConfig,
    /// Producer settings.
    pub producer: ProducerConfig,
    /// Topic administration at startup.
    pub admin: AdminConfig,
    /// `mq.kafka.security.*`: the security protocol.
    pub security: SecurityConfig,
    /// `mq.kafka.ssl.*`: TLS trust and client certificate (PEM files or text).
    pub ssl: SslConfig,
    /// `mq.kafka.sasl.*`: SASL mechanism and credentials.
    pub sasl: SaslConfig,
    /// The topic this app reads the replies to its requests from (Spring's
    /// `ReplyingKafkaTemplate` reply container), created at startup with
    /// `mq.kafka.admin.partitions`. Every instance reads all of it and keeps the replies to
    /// its own requests. Default none: the app sends no requests to Kafka.
    #[serde(
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub reply_topic: Option<String>,
}

impl KafkaConfig {
    /// The security settings (`security`, `ssl`, `sasl`) with every `properties` map,
    /// ready to resolve into librdkafka properties.
    ///
    /// ```
    /// let c = mq_core::Config::default();
    /// assert!(c.mq.kafka.security().client_properties().unwrap().is_empty());
    /// ```
    pub fn security(&self) -> KafkaSecurity<'_> {
        KafkaSecurity::new(
            &self.security,
            &self.ssl,
            &self.sasl,
            vec![
                ("mq.kafka.properties", flatten_properties(&self.properties)),
                (
                    "mq.kafka.consumer.properties",
                    flatten_properties(&self.consumer.properties),
                ),
                (
                    "mq.kafka.producer.properties",
                    flatten_properties(&self.producer.properties),
                ),
            ],
        )
    }
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // `properties` may hold `sasl.password` and friends: masked.
        f.debug_struct("KafkaConfig")
            .field("bootstrap_servers", &self.bootstrap_servers)
            .field("properties", &self.properties)
            .field("consumer", &self.consumer)
            .field("producer", &self.producer)
            .field("admin", &self.admin)
            .field("security", &self.security)
            .field("ssl", &self.ssl)
            .field("sasl", &self.sasl)
            .finish()
    }
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            bootstrap_servers: "127.0.0.1:9092".to_owned(),
            properties: Properties::new(),
            consumer: ConsumerConfig::default(),
            producer: ProducerConfig::default(),
            admin: AdminConfig::default(),
            security: SecurityConfig::default(),
            ssl: SslConfig::default(),
            sasl: SaslConfig::default(),
            reply_topic: None,
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
#[derive(Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ConsumerConfig {
    /// Default group of every listener (else the application name).
    #[serde(deserialize_with = "lenient::opt_string")]
    pub group_id: Option<String>,
    /// `earliest` (default) or `latest`.
    pub auto_offset_reset: AutoOffsetReset,
    /// librdkafka consumer properties, passed as they are (they win over mq's defaults).
    pub properties: Properties,
}

/// `mq.kafka.producer.*`
#[derive(Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct ProducerConfig {
    /// `all` (default), `1` or `0`.
    #[serde(deserialize_with = "lenient::string")]
    pub acks: String,
    /// `binary` or `structured` CloudEvents mode of every destination without its own.
    /// Unset (the default): each broker's own, `binary` on Kafka (what Spring Cloud Stream,
    /// Knative and FastStream write, and what Spring's `JsonDeserializer` and FastStream
    /// read as plain JSON), `structured` on RabbitMQ.
    pub content_mode: Option<ContentMode>,
    /// `mq.kafka.producer.destinations.<topic>.*`: settings of one destination topic, keyed
    /// by the topic's name as it is (dots included: file keys are not split on dots).
    pub destinations: BTreeMap<String, DestinationConfig>,
    /// librdkafka producer properties, passed as they are.
    pub properties: Properties,
}

impl ProducerConfig {
    /// The destinations with a content mode of their own, for
    /// `Publisher::with_topic_modes`.
    ///
    /// ```
    /// let c: mq_core::Config = mq_core::Config::from_yaml_str(
    ///     "mq:\n  kafka:\n    producer:\n      destinations:\n        orders.v1:\n          content-mode: binary\n",
    /// ).unwrap();
    /// let modes: Vec<_> = c.mq.kafka.producer.topic_content_modes().collect();
    /// assert_eq!(modes, vec![("orders.v1".to_string(), mq_core::envelope::ContentMode::Binary)]);
    /// ```
    pub fn topic_content_modes(&self) -> impl Iterator<Item = (String, ContentMode)> + '_ {
        self.destinations
            .iter()
            .filter_map(|(topic, d)| d.content_mode.map(|m| (topic.clone(), m)))
    }
}

/// `mq.kafka.producer.destinations.<topic>.*`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct DestinationConfig {
    /// `structured` or `binary`; unset takes `mq.kafka.producer.content-mode`, or the
    /// broker's default.
    pub content_mode: Option<ContentMode>,
}

impl std::fmt::Debug for ConsumerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerConfig")
            .field("group_id", &self.group_id)
            .field("auto_offset_reset", &self.auto_offset_reset)
            .field("properties", &self.properties)
            .finish()
    }
}

impl std::fmt::Debug for ProducerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerConfig")
            .field("acks", &self.acks)
            .field("content_mode", &self.content_mode)
            .field("destinations", &self.destinations)
            .field("properties", &self.properties)
            .finish()
    }
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            acks: "all".to_owned(),
            content_mode: None,
            destinations: BTreeMap::new(),
            properties: Properties::new(),
        }
    }
}

/// The properties as librdkafka `key=value` pairs, ordered by name (nested maps were
/// already joined with `.` when read, see [`Properties`]).
///
/// ```
/// let mut p = mq_core::config::Properties::new();
/// p.insert("linger.ms", "5");
/// assert_eq!(mq_core::config::flatten_properties(&p), vec![("linger.ms".to_string(), "5".to_string())]);
/// ```
pub fn flatten_properties(properties: &Properties) -> Vec<(String, String)> {
    properties
        .iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}
