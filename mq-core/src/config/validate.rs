//! Extraction from a figment and the checks serde cannot express.

use figment::Figment;

use super::{Config, ConfigError, RetryConfig};

impl Config {
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
        if let Err(security) = self.mq.kafka.security().client_properties() {
            problems.extend(security);
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
}
