//! Logging setup from `mq.logging` (text or JSON lines), unless the application installed
//! a `tracing` subscriber of its own.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LoggingConfig};

/// Installs a global subscriber as `config` says; `RUST_LOG` wins over `mq.logging.level`.
/// Does nothing when a subscriber is already installed.
///
/// ```
/// mq_core::telemetry::try_init(&Default::default());
/// tracing::info!("logged as text");
/// ```
pub fn try_init(config: &LoggingConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    let _ = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
