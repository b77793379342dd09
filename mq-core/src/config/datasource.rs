//! `mq.datasource.*` (the PostgreSQL database, Spring's `spring.datasource.*`), `mq.outbox.*`
//! (the transactional outbox and its relay) and `mq.inbox.*` (the idempotent consumer).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::duration;
use super::lenient;

/// `mq.datasource.*`: the PostgreSQL database of the outbox and the inbox.
///
/// ```
/// let c = mq_core::Config::from_yaml_str(
///     "mq:\n  datasource:\n    url: postgres://postgres@127.0.0.1:5432/test\n    pool-size: 4\n",
/// ).unwrap();
/// assert_eq!(c.mq.datasource.pool_size, 4);
/// assert!(c.mq.datasource.migrate);
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct DatasourceConfig {
    /// `postgres://user:password@host:port/database` (libpq URL). Unset: no database (the
    /// outbox is off and idempotent listeners deduplicate in memory).
    #[serde(
        deserialize_with = "lenient::opt_string",
        skip_serializing_if = "Option::is_none"
    )]
    pub url: Option<String>,
    /// Connections in the pool (shared by the relay, the inbox and the application). Default 10.
    pub pool_size: u32,
    /// How long to wait for a connection from the pool. Default `5s`.
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// Apply mq's migrations (outbox and inbox tables) at startup. Default true.
    pub migrate: bool,
}

impl Default for DatasourceConfig {
    fn default() -> Self {
        DatasourceConfig {
            url: None,
            pool_size: 10,
            connect_timeout: Duration::from_secs(5),
            migrate: true,
        }
    }
}

/// `mq.outbox.*`: the outbox table and the relay that publishes its rows.
///
/// ```
/// let o = mq_core::config::OutboxConfig::default();
/// assert_eq!(o.table, "mq_outbox");
/// assert_eq!(o.lag_threshold, std::time::Duration::from_secs(60));
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct OutboxConfig {
    /// Run the relay in this process (when `mq.datasource.url` is set). Default true. The
    /// lag metric and the `outbox` health component are there either way.
    pub enabled: bool,
    /// The outbox table (`name` or `schema.name`). Default `mq_outbox`.
    #[serde(deserialize_with = "lenient::string")]
    pub table: String,
    /// Rows one relay takes from one slot at a time. Default 256.
    pub batch_size: u32,
    /// How often an idle relay looks for new rows. Default `100ms`.
    #[serde(with = "duration")]
    pub poll_interval: Duration,
    /// Keys are hashed into this many slots; one relay at a time owns a slot (a PostgreSQL
    /// advisory lock), which keeps each key in order across relays. Default 16. Every
    /// instance on one table must use the same value (relays with different values would
    /// lock different slots over the same rows).
    pub slots: u32,
    /// How long one publish may take before the row is left for the next round. Default `30s`.
    #[serde(with = "duration")]
    pub publish_timeout: Duration,
    /// Sent rows are deleted this long after they were sent. Default `1h`.
    #[serde(with = "duration")]
    pub retention: Duration,
    /// How often sent rows past the retention are deleted. Default `1m`.
    #[serde(with = "duration")]
    pub cleanup_interval: Duration,
    /// The `outbox` health component is DOWN while the oldest pending row is older than
    /// this. Default `60s`.
    #[serde(with = "duration")]
    pub lag_threshold: Duration,
    /// A key's later rows wait behind a row set aside (refused by the broker) until it is
    /// retried or dropped. Default false: they are published (see the README).
    pub strict_key_order: bool,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        OutboxConfig {
            enabled: true,
            table: "mq_outbox".to_owned(),
            batch_size: 256,
            poll_interval: Duration::from_millis(100),
            slots: 16,
            publish_timeout: Duration::from_secs(30),
            retention: Duration::from_secs(3600),
            cleanup_interval: Duration::from_secs(60),
            lag_threshold: Duration::from_secs(60),
            strict_key_order: false,
        }
    }
}

/// Where idempotent listeners record the events they handled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InboxStoreKind {
    /// PostgreSQL when `mq.datasource.url` is set, else memory.
    #[default]
    Auto,
    /// In this process's memory (tests, demos): forgotten on restart.
    Memory,
    /// The `mq.inbox.table` table, in the handler's transaction.
    Postgres,
}

/// `mq.inbox.*`: the idempotent consumer's record of handled events.
///
/// ```
/// let i = mq_core::config::InboxConfig::default();
/// assert_eq!(i.table, "mq_inbox");
/// assert_eq!(i.window, std::time::Duration::from_secs(7 * 24 * 3600));
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct InboxConfig {
    /// `auto` (default), `memory` or `postgres`.
    pub store: InboxStoreKind,
    /// The inbox table (`name` or `schema.name`). Default `mq_inbox`.
    #[serde(deserialize_with = "lenient::string")]
    pub table: String,
    /// How long a handled event is remembered; a redelivery after that runs the handler
    /// again. Default `7d`.
    #[serde(with = "duration")]
    pub window: Duration,
    /// How often expired identities are deleted. Default `1m`.
    #[serde(with = "duration")]
    pub cleanup_interval: Duration,
}

impl Default for InboxConfig {
    fn default() -> Self {
        InboxConfig {
            store: InboxStoreKind::Auto,
            table: "mq_inbox".to_owned(),
            window: Duration::from_secs(7 * 24 * 3600),
            cleanup_interval: Duration::from_secs(60),
        }
    }
}

/// A table name mq may put into SQL: `name` or `schema.name`, each part a plain
/// identifier (letters, digits, `_`, not starting with a digit, at most 63 bytes).
pub(crate) fn valid_table_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() <= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 63
                && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && !p.starts_with(|c: char| c.is_ascii_digit())
        })
}

impl super::Config {
    /// Problems of `mq.datasource`, `mq.outbox` and `mq.inbox`, each starting with its key.
    pub(super) fn check_datasource(&self, problems: &mut Vec<String>) {
        let mq = &self.mq;
        if let Some(url) = &mq.datasource.url {
            if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                problems.push(
                    "mq.datasource.url must be a PostgreSQL URL (postgres://user@host:5432/db)"
                        .to_owned(),
                );
            }
        }
        if mq.datasource.pool_size == 0 {
            problems.push("mq.datasource.pool-size must be at least 1".to_owned());
        }
        for (key, table) in [
            ("mq.outbox.table", &mq.outbox.table),
            ("mq.inbox.table", &mq.inbox.table),
        ] {
            if !valid_table_name(table) {
                problems.push(format!(
                    "{key} must be a table name (letters, digits and _, optionally schema.table), not {table:?}"
                ));
            }
        }
        if mq.outbox.table == mq.inbox.table {
            problems.push("mq.inbox.table must differ from mq.outbox.table".to_owned());
        }
        for (key, n) in [
            ("mq.outbox.batch-size", mq.outbox.batch_size),
            ("mq.outbox.slots", mq.outbox.slots),
        ] {
            if n == 0 {
                problems.push(format!("{key} must be at least 1"));
            }
        }
        if mq.inbox.store == InboxStoreKind::Postgres && mq.datasource.url.is_none() {
            problems
                .push("mq.inbox.store is postgres, but mq.datasource.url is not set".to_owned());
        }
        for (key, d) in [
            ("mq.outbox.poll-interval", mq.outbox.poll_interval),
            ("mq.outbox.cleanup-interval", mq.outbox.cleanup_interval),
            ("mq.inbox.cleanup-interval", mq.inbox.cleanup_interval),
            ("mq.outbox.publish-timeout", mq.outbox.publish_timeout),
        ] {
            if d.is_zero() {
                problems.push(format!("{key} must be greater than 0"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_are_plain_identifiers() {
        assert!(valid_table_name("mq_outbox"));
        assert!(valid_table_name("app.mq_outbox"));
        assert!(!valid_table_name("mq-outbox"));
        assert!(!valid_table_name("x; drop table y"));
        assert!(!valid_table_name("1x"));
        assert!(!valid_table_name("a.b.c"));
        assert!(!valid_table_name(""));
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = crate::config::Config::from_yaml_str(
            "mq:\n  datasource:\n    url: mysql://x\n    pool-size: 0\n  outbox:\n    table: \"a-b\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("mq.datasource.url must be a PostgreSQL URL"),
            "{e}"
        );
        assert!(
            e.contains("mq.datasource.pool-size must be at least 1"),
            "{e}"
        );
        assert!(e.contains("mq.outbox.table must be a table name"), "{e}");
    }
}
