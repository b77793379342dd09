//! `mq.rabbitmq.*`: the RabbitMQ broker and its listeners, as Spring Boot's
//! `spring.rabbitmq.*`.

use serde::{Deserialize, Serialize};

use super::lenient;
use super::rabbitmq_ssl::RabbitSslConfig;
use super::security::Secret;

/// `mq.rabbitmq.*`
///
/// ```
/// let c = mq_core::Config::from_yaml_str(
///     "mq:\n  rabbitmq:\n    host: rabbit\n    virtual-host: shop\n    listener:\n      prefetch: 10\n",
/// ).unwrap();
/// assert_eq!(c.mq.rabbitmq.uris(), vec!["amqp://guest:guest@rabbit:5672/shop".to_owned()]);
/// assert_eq!(c.mq.rabbitmq.listener.prefetch, 10);
/// assert!(mq_core::Config::default().mq.rabbitmq.uris()[0].ends_with(":5672/%2F"));
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RabbitConfig {
    /// Broker host. Default `127.0.0.1`.
    #[serde(deserialize_with = "lenient::string")]
    pub host: String,
    /// Broker port. Default `5672`, or `5671` with `ssl.enabled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// User. Default `guest`.
    #[serde(deserialize_with = "lenient::string")]
    pub username: String,
    /// Password. Default `guest`.
    pub password: Secret,
    /// Virtual host. Default `/`.
    #[serde(deserialize_with = "lenient::string")]
    pub virtual_host: String,
    /// `host:port` list tried in order; when set, `host` and `port` are not used.
    #[serde(deserialize_with = "lenient::string_list")]
    pub addresses: Vec<String>,
    /// The direct exchange dead letters are published to; each queue's `<queue>.dlq` is
    /// bound to it with the queue's name. Default `mq.dlx`.
    #[serde(deserialize_with = "lenient::string")]
    pub dead_letter_exchange: String,
    /// `mq.rabbitmq.listener.*`
    pub listener: RabbitListenerConfig,
    /// `mq.rabbitmq.ssl.*`: TLS (see [`RabbitSslConfig`]).
    pub ssl: RabbitSslConfig,
    /// `mq.rabbitmq.publisher.*`
    pub publisher: RabbitPublisherConfig,
}

/// `mq.rabbitmq.publisher.*`: the app's publishing connection (its own, beside the
/// consumers', as Spring's `usePublisherConnection` and RabbitMQ advise: a broker that
/// blocks publishers under an alarm leaves the consumers' acks flowing).
///
/// ```
/// let c = mq_core::Config::from_yaml_str("mq: {rabbitmq: {publisher: {confirm-timeout: 5s}}}").unwrap();
/// assert_eq!(c.mq.rabbitmq.publisher.confirm_timeout, std::time::Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RabbitPublisherConfig {
    /// How long a publish waits for the broker's confirm (a blocked connection waits
    /// here); then it fails as a transient error, retried as any. Default `30s`.
    #[serde(with = "super::duration")]
    pub confirm_timeout: std::time::Duration,
}

impl Default for RabbitPublisherConfig {
    fn default() -> Self {
        RabbitPublisherConfig {
            confirm_timeout: std::time::Duration::from_secs(30),
        }
    }
}

impl Default for RabbitConfig {
    fn default() -> Self {
        RabbitConfig {
            host: "127.0.0.1".to_owned(),
            port: None,
            username: "guest".to_owned(),
            password: Secret::new("guest"),
            virtual_host: "/".to_owned(),
            addresses: Vec::new(),
            dead_letter_exchange: "mq.dlx".to_owned(),
            listener: RabbitListenerConfig::default(),
            ssl: RabbitSslConfig::default(),
            publisher: RabbitPublisherConfig::default(),
        }
    }
}

impl RabbitConfig {
    /// The AMQP URIs to try, in order (they carry the password: never log them).
    pub fn uris(&self) -> Vec<String> {
        // The URI's path is the virtual host, percent-encoded: `/` is `%2F` (an empty
        // path would name the vhost "").
        let vhost: String = match self.virtual_host.as_str() {
            "" => "%2F".to_owned(),
            v => form_urlencoded::byte_serialize(v.as_bytes()).collect(),
        };
        let user: String = form_urlencoded::byte_serialize(self.username.as_bytes()).collect();
        let pass: String =
            form_urlencoded::byte_serialize(self.password.expose().as_bytes()).collect();
        let scheme = if self.ssl.enabled { "amqps" } else { "amqp" };
        self.addresses_or_host()
            .iter()
            .map(|a| format!("{scheme}://{user}:{pass}@{a}/{vhost}"))
            .collect()
    }

    /// The `host:port` addresses to try, in order: `addresses`, else `host` and `port`.
    pub(crate) fn addresses_or_host(&self) -> Vec<String> {
        if self.addresses.is_empty() {
            vec![format!("{}:{}", self.host, self.port())]
        } else {
            self.addresses.clone()
        }
    }

    /// The first broker address, for logs and health details (no credentials).
    pub fn display_address(&self) -> String {
        self.addresses
            .first()
            .cloned()
            .unwrap_or_else(|| format!("{}:{}", self.host, self.port()))
    }

    /// `port`, else 5671 with TLS and 5672 without (as Spring Boot).
    ///
    /// ```
    /// let mut c = mq_core::config::RabbitConfig::default();
    /// assert_eq!(c.port(), 5672);
    /// c.ssl.enabled = true;
    /// assert_eq!(c.port(), 5671);
    /// ```
    pub fn port(&self) -> u16 {
        self.port
            .unwrap_or(if self.ssl.enabled { 5671 } else { 5672 })
    }
}

/// How a queue listener acknowledges (Spring's `AcknowledgeMode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AcknowledgeMode {
    /// The framework acks after the handler succeeded or the message reached the
    /// dead-letter queue (Spring's `AUTO`, done with manual acks on the wire).
    #[default]
    #[serde(alias = "AUTO", alias = "manual", alias = "MANUAL")]
    Auto,
    /// The broker considers a message done once it is sent (at-most-once). `prefetch`
    /// does not apply then: RabbitMQ sends as fast as it can, and what the handler has not
    /// reached yet waits in memory (and is lost with the process).
    #[serde(alias = "NONE")]
    None,
}

/// `mq.rabbitmq.listener.*`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RabbitListenerConfig {
    /// Unacknowledged messages per consumer (`basic.qos`). Default 250, as Spring AMQP.
    pub prefetch: u16,
    /// Consumers (channels) per queue listener, each one lane. Default 1 (order holds).
    pub concurrency: u32,
    /// `auto` (ack after the work) or `none`.
    pub acknowledge_mode: AcknowledgeMode,
    /// When set, listeners' queues are declared as quorum queues with this
    /// `x-delivery-limit` and `mq.dlx` as their dead-letter exchange: a message that keeps
    /// coming back unacked (the process crashed or hung on it again and again) goes to
    /// `<queue>.dlq` instead of looping. Default none (classic queues).
    pub delivery_limit: Option<u32>,
    /// How often each queue listener reads the messages ready in its queue (a passive
    /// `queue.declare`) for the `mq_queue_depth` gauge. Default `10s`.
    #[serde(with = "super::duration")]
    pub queue_depth_interval: std::time::Duration,
    /// `mq.rabbitmq.listener.dead-letter.*`
    pub dead_letter: RabbitDeadLetterConfig,
    /// Declare each listener's queue at startup (default `true`). With `false` the queue is
    /// taken as it exists (a passive declare: a missing queue keeps the listener unready,
    /// with one ERROR); per listener: `mq.listeners.<name>.declare`. Even when declaring,
    /// a queue that exists with other arguments (a quorum queue, single active consumer,
    /// its own dead-lettering) is consumed as it is, with one WARN, unless mq needs its own
    /// (`delivery-limit`).
    pub declare: bool,
}

/// `mq.rabbitmq.listener.dead-letter.*`: what a queue listener's dead letters carry.
///
/// ```
/// let c = mq_core::Config::from_yaml_str(
///     "mq:\n  rabbitmq:\n    listener:\n      dead-letter:\n        stack-trace: false\n",
/// ).unwrap();
/// assert!(!c.mq.rabbitmq.listener.dead_letter.stack_trace);
/// assert!(mq_core::Config::default().mq.rabbitmq.listener.dead_letter.stack_trace);
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct RabbitDeadLetterConfig {
    /// Write `x-exception-stacktrace` (the error and its causes, one per line, at most
    /// 8 KiB). Default `true`: in mq it is the error's cause chain, not a JVM stack, and
    /// the only header that carries the causes; `false` for Spring AMQP 4.1's default, or
    /// to keep dead letters small.
    pub stack_trace: bool,
    /// Bytes of the negotiated `frame_max` left free when what mq writes (dead letters,
    /// retry copies, replays) is cut to fit one header frame (Spring AMQP's
    /// `frameMaxHeadroom`). Default 20000, as Spring.
    pub frame_max_headroom: u32,
}

impl Default for RabbitDeadLetterConfig {
    fn default() -> Self {
        RabbitDeadLetterConfig {
            stack_trace: true,
            frame_max_headroom: 20_000,
        }
    }
}

impl Default for RabbitListenerConfig {
    fn default() -> Self {
        RabbitListenerConfig {
            prefetch: 250,
            concurrency: 1,
            acknowledge_mode: AcknowledgeMode::Auto,
            delivery_limit: None,
            queue_depth_interval: std::time::Duration::from_secs(10),
            dead_letter: RabbitDeadLetterConfig::default(),
            declare: true,
        }
    }
}

/// The kind of an exchange.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExchangeType {
    /// Routes by exact routing key.
    #[default]
    Direct,
    /// Routes to every bound queue.
    Fanout,
    /// Routes by routing-key pattern (`order.*`, `order.#`).
    Topic,
    /// Routes by header values.
    Headers,
}

impl ExchangeType {
    /// The AMQP name.
    ///
    /// ```
    /// assert_eq!(mq_core::config::ExchangeType::Topic.as_str(), "topic");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            ExchangeType::Direct => "direct",
            ExchangeType::Fanout => "fanout",
            ExchangeType::Topic => "topic",
            ExchangeType::Headers => "headers",
        }
    }
}

/// `mq.listeners.<name>.bindings[*]`: a binding of a queue listener's queue, declared at
/// startup (replaces the macro's).
///
/// ```
/// let c = mq_core::Config::from_yaml_str(
///     "mq:\n  listeners:\n    notify:\n      bindings:\n        - exchange: orders\n          exchange-type: topic\n          routing-key: order.*\n",
/// ).unwrap();
/// let b = &c.mq.listeners["notify"].bindings.as_ref().unwrap()[0];
/// assert_eq!((b.exchange.as_str(), b.exchange_type.as_str(), b.routing_key.as_str()), ("orders", "topic", "order.*"));
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct BindingConfig {
    /// The exchange (declared durable).
    #[serde(deserialize_with = "lenient::string")]
    pub exchange: String,
    /// Its kind. Default `direct`.
    #[serde(default)]
    pub exchange_type: ExchangeType,
    /// The binding's routing key (a pattern for a topic exchange). Default empty.
    #[serde(default, deserialize_with = "lenient::string")]
    pub routing_key: String,
}
