//! How far behind the relay is: the age of the oldest pending row (`mq_outbox_lag_seconds`),
//! the pending count (`mq_outbox_pending`), the rows set aside (`mq_outbox_failed_rows`),
//! the table's size (`mq_outbox_rows`), what the relay did (`mq_outbox_published_total`,
//! `mq_outbox_parked_total`, `mq_outbox_unmarked_total`, `mq_outbox_deleted_total`), the
//! `outbox` health component, and the task that deletes sent rows.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::relay::RoundReport;
use crate::actuator::{Health, HealthFuture, HealthIndicator};
use crate::config::OutboxConfig;

/// What the relay has done, shared with the metrics and the health component.
#[derive(Debug, Default)]
pub(crate) struct RelayStats {
    pub(crate) published: Counter,
    /// Rows set aside.
    parked: Counter,
    /// Rows the broker acknowledged that could not be marked sent (published again).
    pub(crate) unmarked: Counter,
    /// Sent rows deleted by the cleanup.
    pub(crate) deleted: Counter,
    last_error: Mutex<Option<String>>,
    last_parked: Mutex<Option<String>>,
}

fn set(slot: &Mutex<Option<String>>, value: Option<String>) {
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = value;
}

fn get(slot: &Mutex<Option<String>>) -> Option<String> {
    slot.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

impl RelayStats {
    pub(crate) fn record_round(&self, r: &RoundReport) {
        self.published.inc_by(r.published);
        self.parked.inc_by(r.parked);
        if r.published > 0 && r.failed == 0 {
            set(&self.last_error, None);
        }
    }

    pub(crate) fn set_error(&self, e: String) {
        set(&self.last_error, Some(e));
    }

    /// Why the last row set aside was refused.
    pub(crate) fn set_parked_error(&self, e: String) {
        set(&self.last_parked, Some(e));
    }
}

/// The outbox's backlog at one moment.
///
/// ```
/// let s = mq_core::outbox::LagSnapshot::default();
/// assert_eq!(s.pending, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LagSnapshot {
    /// Rows not published yet.
    pub pending: i64,
    /// Age of the oldest of them, in seconds (0 when none).
    pub oldest_seconds: f64,
    /// Rows set aside for good (`failed_at` set).
    pub failed: i64,
    /// All rows of the table, pending, set aside and sent (PostgreSQL's live-row estimate,
    /// `pg_stat_all_tables.n_live_tup`; -1 when unknown).
    pub rows: i64,
}

/// Reads the backlog of `table` (each part through its partial index: the sent rows,
/// most of a busy table, are not read).
pub(crate) async fn snapshot(pool: &PgPool, table: &str) -> Result<LagSnapshot, sqlx::Error> {
    let (pending, oldest, failed, rows): (i64, Option<f64>, i64, Option<i64>) =
        sqlx::query_as(&format!(
            "SELECT p.n, p.oldest, \
             (SELECT count(*) FROM {table} WHERE failed_at IS NOT NULL), \
             pg_stat_get_live_tuples(to_regclass('{table}')) \
             FROM (SELECT count(*) AS n, \
             extract(epoch FROM clock_timestamp() - min(created_at))::float8 AS oldest \
             FROM {table} WHERE sent_at IS NULL AND failed_at IS NULL) p"
        ))
        .fetch_one(pool)
        .await?;
    Ok(LagSnapshot {
        pending,
        oldest_seconds: oldest.unwrap_or(0.0).max(0.0),
        failed,
        rows: rows.unwrap_or(-1),
    })
}

/// The `outbox` health component: UP while the oldest pending row is younger than
/// `mq.outbox.lag-threshold`, DOWN above it (details: `pending`, `lagSeconds`,
/// `thresholdSeconds`, `failedRows` and `lastFailedRow` (rows set aside, why the last one
/// was), `tableRows`, `lastError`), DOWN when the database cannot be read.
#[derive(Clone)]
pub struct OutboxHealth {
    pool: PgPool,
    table: String,
    threshold: Duration,
    stats: Arc<RelayStats>,
}

impl OutboxHealth {
    pub(crate) fn new(pool: PgPool, settings: &OutboxConfig, stats: Arc<RelayStats>) -> Self {
        OutboxHealth {
            pool,
            table: settings.table.clone(),
            threshold: settings.lag_threshold,
            stats,
        }
    }

    async fn check(&self) -> Health {
        let health = match snapshot(&self.pool, &self.table).await {
            Ok(s) => {
                let behind = s.oldest_seconds > self.threshold.as_secs_f64();
                let h = if behind { Health::down() } else { Health::up() };
                let h = h
                    .with_detail("pending", s.pending)
                    .with_detail("lagSeconds", (s.oldest_seconds * 1000.0).round() / 1000.0)
                    .with_detail("thresholdSeconds", self.threshold.as_secs_f64())
                    .with_detail("failedRows", s.failed)
                    .with_detail("tableRows", s.rows);
                if behind {
                    h.with_detail(
                        "reason",
                        "the oldest pending outbox row is older than mq.outbox.lag-threshold",
                    )
                } else {
                    h
                }
            }
            Err(e) => Health::down().with_detail("error", e.to_string()),
        };
        let health = match get(&self.stats.last_parked) {
            Some(e) => health.with_detail("lastFailedRow", e),
            None => health,
        };
        match get(&self.stats.last_error) {
            Some(e) => health.with_detail("lastError", e),
            None => health,
        }
    }
}

impl HealthIndicator for OutboxHealth {
    fn health(&self) -> HealthFuture<'_> {
        Box::pin(self.check())
    }
}

/// Registers the outbox metrics and starts the task that refreshes the lag gauges (every
/// second) and deletes sent rows past `mq.outbox.retention`.
pub(crate) fn watch(
    pool: PgPool,
    settings: &OutboxConfig,
    stats: Arc<RelayStats>,
    metrics: &crate::metrics::Metrics,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let lag: Gauge<f64, std::sync::atomic::AtomicU64> = Gauge::default();
    let (pending, failed, rows): (Gauge, Gauge, Gauge) = Default::default();
    metrics.register(|r| {
        r.register(
            "mq_outbox_lag_seconds",
            "Age of the oldest outbox row not published yet",
            lag.clone(),
        );
        r.register(
            "mq_outbox_pending",
            "Outbox rows not published yet",
            pending.clone(),
        );
        r.register(
            "mq_outbox_failed_rows",
            "Outbox rows set aside (refused by the broker), kept until retried or dropped",
            failed.clone(),
        );
        r.register(
            "mq_outbox_rows",
            "Rows in the outbox table, pending, set aside and sent (PostgreSQL's estimate)",
            rows.clone(),
        );
        r.register(
            "mq_outbox_published",
            "Outbox rows published by this relay",
            stats.published.clone(),
        );
        r.register(
            "mq_outbox_parked",
            "Outbox rows this relay set aside (refused by the broker)",
            stats.parked.clone(),
        );
        r.register(
            "mq_outbox_unmarked",
            "Outbox rows acknowledged by the broker that this relay could not mark sent (published again)",
            stats.unmarked.clone(),
        );
        r.register(
            "mq_outbox_deleted",
            "Sent outbox rows deleted after the retention",
            stats.deleted.clone(),
        );
    });
    let table = settings.table.clone();
    let (retention, cleanup_every) = (settings.retention, settings.cleanup_interval);
    tokio::spawn(async move {
        let mut since_cleanup = Duration::ZERO;
        let tick = Duration::from_secs(1);
        loop {
            match snapshot(&pool, &table).await {
                Ok(s) => {
                    lag.set(s.oldest_seconds);
                    pending.set(s.pending);
                    failed.set(s.failed);
                    rows.set(s.rows);
                }
                Err(e) => tracing::debug!(error = %e, "outbox lag: cannot read the outbox"),
            }
            if since_cleanup >= cleanup_every {
                since_cleanup = Duration::ZERO;
                match super::cleanup::sent_rows(&pool, &table, retention).await {
                    Ok(c) => {
                        stats.deleted.inc_by(c.deleted);
                        if c.deleted > 0 {
                            tracing::debug!(
                                deleted = c.deleted,
                                batches = c.batches,
                                "outbox: deleted sent rows past retention"
                            );
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "outbox: cannot delete sent rows"),
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(tick) => since_cleanup += tick,
            }
        }
    })
}
