//! [`Error`]: what stops an app from starting or running, one typed variant per cause.

/// Errors that stop an app from starting or running.
///
/// ```
/// let e: mq_core::Error = mq_core::Config::from_yaml_str("mq: [").unwrap_err().into();
/// assert!(e.to_string().starts_with("invalid configuration"));
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The listeners do not resolve (duplicate names, no topic, bad settings).
    #[error(transparent)]
    Listeners(#[from] crate::registry::RegistryError),
    /// `App::only_listeners` names a listener that is not
    /// registered (a typo, or a listener in a crate this binary does not link).
    #[error("only_listeners names {0:?}, which is not a registered listener")]
    UnknownListener(String),
    /// The Kafka client failed.
    #[error("kafka: {0}")]
    Kafka(String),
    /// The RabbitMQ client failed (TLS settings, a refused certificate).
    #[error("rabbitmq: {0}")]
    Rabbit(String),
    /// The actuator could not start.
    #[error("actuator: {0}")]
    Actuator(#[from] std::io::Error),
    /// A publish failed.
    #[error(transparent)]
    Publish(#[from] crate::publisher::PublishError),
    /// Wiring problems found before any connection (listeners, missing state), all at once.
    #[error(transparent)]
    Startup(#[from] crate::startup::StartupError),
    /// The database (`mq.datasource`) failed: a bad URL, migrations that cannot be applied.
    #[error("database: {0}")]
    Database(String),
    /// `mq-core` was built without the transport a listener or a dead-letter destination
    /// needs (its `kafka` or `rabbitmq` feature); the message names both.
    #[error("{0}")]
    NoTransport(String),
}
