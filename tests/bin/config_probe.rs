//! The child process of the configuration tests: loads the configuration as a service
//! does, from the process environment (`MQ_CONFIG_DIR`, `MQ_PROFILES_ACTIVE`, `MQ_*`), and
//! prints what the tests check as one JSON line: `{"config": .., "sources": ..,
//! "ignored_environment": .., "kafka_consumer_properties": .., "kafka_client_properties": ..}` or `{"error": ".."}`. The
//! tests give each case its own environment (`Command::env`) instead of changing their own
//! process's, which other threads read.
//!
//! With `--app`, loads through `App::from_config` (what `#[tokio::main]` services call).

use mq_core::{App, Config};

fn main() {
    let loaded = if std::env::args().any(|a| a == "--app") {
        App::from_config().map(|app| app.config().clone())
    } else {
        Config::load().map_err(mq_core::Error::from)
    };
    let out = match loaded {
        Ok(config) => serde_json::json!({
            "config": config,
            "sources": config.sources(),
            "ignored_environment": config.ignored_environment(),
            "kafka_consumer_properties":
                mq_core::config::flatten_properties(&config.mq.kafka.consumer.properties),
            "kafka_client_properties": config
                .mq
                .kafka
                .security()
                .client_properties()
                .unwrap_or_default(),
        }),
        Err(e) => serde_json::json!({ "error": e.to_string() }),
    };
    println!("{out}");
}
