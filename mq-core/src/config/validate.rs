//! Extraction from a figment and the checks serde cannot express.

use figment::{Figment, Profile};

use super::env::ENV_PROVIDER;
use super::{flatten_properties, Config, ConfigError, RetryConfig};

/// librdkafka consumer properties mq sets itself, and why a user value would break it.
const PROTECTED: [(&str, &str); 3] = [
    (
        "enable.auto.offset.store",
        "mq stores an offset only after its record was handled or dead-lettered \
         (at-least-once); librdkafka's automatic store would commit records no handler finished",
    ),
    (
        "enable.auto.commit",
        "mq has librdkafka commit the offsets it stored, every 100 ms \
         (auto.commit.interval.ms); without it nothing is committed and a restart re-reads",
    ),
    (
        "group.id",
        "each listener's group comes from #[listener(group)], mq.listeners.<name>.group or \
         mq.kafka.consumer.group-id; one property for every consumer would merge the groups",
    ),
];

impl Config {
    /// Extracts and validates a configuration from a figment. Numbers, booleans and
    /// durations are also read from strings (environment values are strings).
    pub(crate) fn from_figment(figment: Figment) -> Result<Config, ConfigError> {
        let mut config: Config = figment.extract_lossy().map_err(|e| {
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
        problems.extend(super::otlp::problems(
            &self.management.otlp,
            &self.management.tracing,
        ));
        if self.mq.listener.concurrency == 0 {
            problems.push("mq.listener.concurrency must be at least 1".to_owned());
        }
        if let Err(security) = self.mq.kafka.security().client_properties() {
            problems.extend(security);
        }
        let prefetch = self.mq.rabbitmq.listener.prefetch;
        if prefetch == 0 {
            // 0 is "no limit" to RabbitMQ: every message of the queue would be pushed into
            // the process at once.
            problems.push(
                "mq.rabbitmq.listener.prefetch must be from 1 to 65535 (0 would mean no limit \
                 to RabbitMQ: the whole queue pushed into the process)"
                    .to_owned(),
            );
        }
        if let Err(tls) = self.mq.rabbitmq.ssl.resolve() {
            problems.extend(tls);
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
        let auth = &self.management.server.auth;
        let blank = |v: &Option<String>| v.as_deref().is_some_and(|v| v.trim().is_empty());
        if auth.username.is_some() != auth.password.is_some() {
            problems.push(
                "management.server.auth.username and management.server.auth.password go together"
                    .to_owned(),
            );
        }
        for (key, value) in [
            ("username", &auth.username),
            ("password", &auth.password),
            ("bearer-token", &auth.bearer_token),
        ] {
            if blank(value) {
                problems.push(format!("management.server.auth.{key} must not be empty"));
            }
        }
        for (name, group) in &self.management.endpoint.health.group {
            if let Some(path) = &group.additional_path {
                let path = path
                    .strip_prefix("server:")
                    .or_else(|| path.strip_prefix("management:"))
                    .unwrap_or(path);
                if !path.starts_with('/') || path.len() < 2 {
                    problems.push(format!(
                        "management.endpoint.health.group.{name}.additional-path must be a path \
                         such as server:/healthz, not {path:?}"
                    ));
                }
            }
        }
        if !self.management.endpoints.web.base_path.starts_with('/') {
            problems.push("management.endpoints.web.base-path must start with /".to_owned());
        }
        self.check_datasource(&mut problems);
        self.check_protected_properties(&mut problems);
        problems.extend(super::group_protocol::problems(&self.mq.kafka));
        self.check_metric_tags(&mut problems);
        if problems.is_empty() {
            return Ok(());
        }
        // Name the file or the environment variable each offending key came from.
        let described = problems
            .into_iter()
            .map(|p| {
                let key = p.split_whitespace().next().unwrap_or_default();
                match figment.find_metadata(key) {
                    Some(m) if m.source.is_some() => {
                        format!("{p} (in {})", m.source.as_ref().expect("checked"))
                    }
                    Some(m) if m.name == ENV_PROVIDER => {
                        let path: Vec<&str> = key.split('.').collect();
                        format!("{p} (set by {})", m.interpolate(&Profile::Default, &path))
                    }
                    _ => p,
                }
            })
            .collect::<Vec<_>>();
        Err(ConfigError(described.join("; ")))
    }

    /// Properties that would break at-least-once delivery (see [`PROTECTED`]).
    fn check_protected_properties(&self, problems: &mut Vec<String>) {
        let kafka = &self.mq.kafka;
        for (prefix, map) in [
            ("mq.kafka.properties", &kafka.properties),
            ("mq.kafka.consumer.properties", &kafka.consumer.properties),
        ] {
            for (key, _) in flatten_properties(map) {
                if let Some((_, why)) = PROTECTED.iter().find(|(k, _)| *k == key) {
                    problems.push(format!("{prefix}.{key} must not be set: {why}"));
                }
            }
        }
    }

    /// Two tags that become the same label name would repeat a label on every series.
    fn check_metric_tags(&self, problems: &mut Vec<String>) {
        let keys: Vec<&String> = self.management.metrics.tags.keys().collect();
        for (i, a) in keys.iter().enumerate() {
            let label = crate::metrics::label_name(a);
            if let Some(b) = keys[i + 1..]
                .iter()
                .find(|b| crate::metrics::label_name(b) == label)
            {
                problems.push(format!(
                    "management.metrics.tags.{b} becomes the label {label:?}, as \
                     management.metrics.tags.{a} does: keep one"
                ));
            }
        }
    }
}
