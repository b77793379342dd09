//! `/actuator/info`: the application's name and version, active profiles, the listener
//! topology, and the configuration with its secrets masked.

use serde_json::{json, Map, Value};

use crate::config::Config;
use crate::registry::ListenerSpec;

/// What a masked value reads.
pub(crate) const MASK: &str = "******";

/// Key fragments whose values are masked, at any depth (as Spring Boot's sanitizer, plus
/// `sasl` for Kafka's `sasl.*` settings).
const SENSITIVE: [&str; 6] = ["password", "secret", "sasl", "token", "key", "credential"];

/// The info document (computed once at startup: none of it changes).
pub(crate) fn info(config: &Config, listeners: &[ListenerSpec]) -> Value {
    let app = &config.mq.application;
    let mut app_json = json!({ "name": app.name });
    if let Some(version) = &app.version {
        app_json["version"] = json!(version);
    }
    let listeners: Map<String, Value> = listeners
        .iter()
        .map(|l| {
            let retry = &l.retry;
            let dlt_topics: Vec<String> = if l.is_queue_listener() {
                l.queues.iter().map(|q| crate::rabbitmq::dlq(q)).collect()
            } else if l.dlt.enabled {
                l.topics.iter().map(|t| l.dlt_topic(t)).collect()
            } else {
                Vec::new()
            };
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

/// Masks, in place, every value whose key names a secret, and the password of any
/// `scheme://user:password@host` string.
pub(crate) fn sanitize(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_sensitive(k) {
                    *v = json!(MASK);
                } else {
                    sanitize(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(sanitize),
        Value::String(s) => {
            if let Some(masked) = mask_userinfo(s) {
                *s = masked;
            }
        }
        _ => {}
    }
}

fn is_sensitive(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SENSITIVE.iter().any(|s| key.contains(s))
}

/// `scheme://user:pass@host/..` → `scheme://user:******@host/..`, for each URI in a
/// comma-separated list.
fn mask_userinfo(s: &str) -> Option<String> {
    if !s.contains("://") || !s.contains('@') {
        return None;
    }
    let parts: Vec<String> = s
        .split(',')
        .map(|part| {
            let Some(scheme_end) = part.find("://") else {
                return part.to_owned();
            };
            let rest = &part[scheme_end + 3..];
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let authority = &rest[..authority_end];
            match authority.rfind('@') {
                Some(at) => {
                    let user = authority[..at].split(':').next().unwrap_or("");
                    format!("{}{user}:{MASK}{}", &part[..scheme_end + 3], &rest[at..])
                }
                None => part.to_owned(),
            }
        })
        .collect();
    Some(parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let doc = info(&config, &[]);
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

    #[test]
    fn masks_uri_passwords() {
        let mut v = json!({"url": "postgres://bob:pw@db:5432/x,redis://h:6379", "n": "a@b"});
        sanitize(&mut v);
        assert_eq!(v["url"], "postgres://bob:******@db:5432/x,redis://h:6379");
        assert_eq!(v["n"], "a@b");
    }
}
