//! `/actuator/info`: the application's name and version, active profiles, the listener
//! topology, and the configuration with its secrets masked.

use serde_json::{json, Map, Value};

use crate::config::sanitize::sanitize;
use crate::config::Config;
use crate::registry::ListenerSpec;

/// Where a listener's dead letters go, as its transport names them.
pub(crate) type DeadLetters = std::sync::Arc<dyn Fn(&ListenerSpec) -> Vec<String> + Send + Sync>;

/// The info document (computed once at startup: none of it changes).
pub(crate) fn info(
    config: &Config,
    listeners: &[ListenerSpec],
    dead_letters: &(dyn Fn(&ListenerSpec) -> Vec<String> + Send + Sync),
) -> Value {
    let app = &config.mq.application;
    let mut app_json = json!({ "name": app.name });
    if let Some(version) = &app.version {
        app_json["version"] = json!(version);
    }
    let listeners: Map<String, Value> = listeners
        .iter()
        .map(|l| {
            let retry = &l.retry;
            let dlt_topics = dead_letters(l);
            (
                l.name.to_owned(),
                json!({
                    "topics": l.topics,
                    "queues": l.queues,
                    "group": l.group,
                    "concurrency": l.concurrency,
                    "retry": {
                        "maxAttempts": retry.max_attempts,
                        "initialInterval": humantime::format_duration(retry.initial_interval).to_string(),
                        "multiplier": retry.multiplier,
                        "maxInterval": humantime::format_duration(retry.max_interval).to_string(),
                        "jitter": retry.jitter,
                        "mode": retry.mode,
                    },
                    "dlt": {
                        "enabled": l.dlt.enabled,
                        "suffix": l.dlt.suffix,
                        "topics": dlt_topics,
                    },
                }),
            )
        })
        .collect();
    let mut config_json = serde_json::to_value(config).unwrap_or(Value::Null);
    sanitize(&mut config_json);
    json!({
        "app": app_json,
        "profiles": { "active": config.mq.profiles.active },
        "mq": { "version": env!("CARGO_PKG_VERSION") },
        "listeners": listeners,
        "config": config_json,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::sanitize::MASK;

    #[test]
    fn masks_secret_keys_at_any_depth() {
        let config = Config::from_yaml_str(
            r#"
mq:
  application:
    name: shop
    version: 1.2.3
  kafka:
    consumer:
      properties:
        sasl.password: hunter2
        sasl:
          username: alice
        ssl.key.password: k3y
        fetch.min.bytes: 1
    producer:
      properties:
        sasl.jaas.config: "org.apache.kafka... password=\"p4ss\";"
        ssl.keystore.location: /etc/ks
"#,
        )
        .unwrap();
        let doc = info(&config, &[], &|_| Vec::new());
        let text = doc.to_string();
        for secret in ["hunter2", "alice", "k3y", "p4ss"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        let props = &doc["config"]["mq"]["kafka"]["consumer"]["properties"];
        assert_eq!(props["sasl.password"], MASK);
        assert_eq!(
            props["fetch.min.bytes"], "1",
            "properties are a map of strings"
        );
        assert_eq!(
            doc["config"]["mq"]["kafka"]["producer"]["properties"]["ssl.keystore.location"],
            MASK
        );
        assert_eq!(doc["app"], json!({"name": "shop", "version": "1.2.3"}));
        assert_eq!(
            doc["config"]["mq"]["kafka"]["bootstrap-servers"],
            "127.0.0.1:9092"
        );
    }
}
