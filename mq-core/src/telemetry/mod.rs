//! Logging setup from `mq.logging` (text or JSON lines), unless the application installed
//! a `tracing` subscriber of its own; and trace export over OTLP (feature `otlp`,
//! `management.otlp.tracing.*`), see [`Config::trace_export`].

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{Config, ConfigError, LogFormat};

mod export;
pub(crate) mod spans;

#[cfg(feature = "otlp")]
pub use export::{layer, Exporter};

/// What [`try_init`] installed: the trace exporter to flush at shutdown, if any.
#[derive(Debug, Default)]
#[must_use = "shut the trace export down to send the last spans"]
pub struct Telemetry {
    #[cfg(feature = "otlp")]
    exporter: Option<Exporter>,
}

impl Telemetry {
    /// Whether spans are being exported.
    pub fn exporting(&self) -> bool {
        #[cfg(feature = "otlp")]
        return self.exporter.is_some();
        #[cfg(not(feature = "otlp"))]
        false
    }

    /// Sends the spans still queued and stops the export.
    pub async fn shutdown(self) {
        #[cfg(feature = "otlp")]
        if let Some(exporter) = self.exporter {
            exporter.shutdown().await;
        }
    }
}

/// Installs a global subscriber as `config` says (`mq.logging`; `RUST_LOG` wins over
/// `mq.logging.level`) and, when [`Config::trace_export`] asks for it, a layer exporting
/// mq's spans over OTLP. Does nothing when a subscriber is already installed (add
/// `telemetry::layer`, feature `otlp`, to yours for export). Text logs carry colour codes
/// only when standard output is a terminal and `NO_COLOR` is unset or empty
/// (<https://no-color.org>): a file, a pipe or a log collector gets plain text.
///
/// ```
/// let telemetry = mq_core::telemetry::try_init(&mq_core::Config::default()).unwrap();
/// assert!(!telemetry.exporting(), "nothing is exported unless configured");
/// tracing::info!("logged as text");
/// ```
///
/// # Errors
/// A trace export that is configured but cannot be (an `OTEL_*` variable with no usable
/// value; `management.otlp.tracing.endpoint` set in a build without the `otlp` feature).
pub fn try_init(config: &Config) -> Result<Telemetry, ConfigError> {
    let logging = &config.mq.logging;
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&logging.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let no_color = std::env::var_os("NO_COLOR");
    let ansi = ansi(std::io::stdout().is_terminal(), no_color.as_deref());
    let logs = match logging.format {
        LogFormat::Text => tracing_subscriber::fmt::layer().with_ansi(ansi).boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .boxed(),
    }
    .with_filter(filter);
    let export = config.trace_export()?;
    if tracing::dispatcher::has_been_set() {
        if export.is_some() {
            tracing::info!(
                "a tracing subscriber was installed before the app started: spans are \
                 exported only if mq_core::telemetry::layer was added to it"
            );
        }
        return Ok(Telemetry::default());
    }
    let registry = tracing_subscriber::registry().with(logs);
    #[cfg(feature = "otlp")]
    {
        let Some(export) = export else {
            let _ = registry.try_init();
            return Ok(Telemetry::default());
        };
        let (layer, exporter) = layer(&export).map_err(ConfigError::new)?;
        if registry.with(layer).try_init().is_err() {
            // Another thread installed one meanwhile.
            return Ok(Telemetry::default());
        }
        tracing::info!(endpoint = %export.endpoint, probability = export.probability, "exporting traces over OTLP");
        Ok(Telemetry {
            exporter: Some(exporter),
        })
    }
    #[cfg(not(feature = "otlp"))]
    {
        let _ = registry.try_init();
        if export.is_some() {
            let message =
                "trace export is configured but mq-core is built without its `otlp` feature";
            if config.management.otlp.tracing.endpoint.is_some() {
                return Err(ConfigError::new(format!(
                    "management.otlp.tracing.endpoint: {message}"
                )));
            }
            tracing::warn!("OTEL_EXPORTER_OTLP_* is set: {message}; no span is exported");
        }
        Ok(Telemetry::default())
    }
}

/// Whether log lines may carry ANSI colour codes: only on a terminal, and never when
/// `NO_COLOR` holds a non-empty value.
pub(crate) fn ansi(terminal: bool, no_color: Option<&std::ffi::OsStr>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::ansi;
    use std::ffi::OsStr;

    #[test]
    fn colour_only_on_a_terminal_without_no_color() {
        assert!(ansi(true, None));
        assert!(
            ansi(true, Some(OsStr::new(""))),
            "an empty NO_COLOR is unset"
        );
        assert!(!ansi(true, Some(OsStr::new("1"))));
        assert!(!ansi(false, None), "a file or a pipe gets plain text");
        assert!(!ansi(false, Some(OsStr::new("1"))));
    }
}
