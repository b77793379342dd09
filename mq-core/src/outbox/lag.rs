//! How far behind the relay is: the age of the oldest pending row (`mq_outbox_lag_seconds`),
//! the pending count (`mq_outbox_pending`), rows published (`mq_outbox_published_total`),
//! the `outbox` health component, and the cleanup of sent rows.

use std::sync::atomic::{AtomicU64, Ordering};
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
    parked: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl RelayStats {
    pub(crate) fn record_round(&self, r: &RoundReport) {
        self.published.inc_by(r.published);
        self.parked.fetch_add(r.parked, Ordering::Relaxed);
        if r.published > 0 && r.failed == 0 {
            *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
    }

    pub(crate) fn set_error(&self, e: String) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    }

    fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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
}

/// Reads the backlog of `table`.
pub(crate) async fn snapshot(pool: &PgPool, table: &str) -> Result<LagSnapshot, sqlx::Error> {
    let (pending, oldest, failed): (i64, Option<f64>, i64) = sqlx::query_as(&format!(
        "SELECT count(*) FILTER (WHERE sent_at IS NULL AND failed_at IS NULL), \
         extract(epoch FROM clock_timestamp() - min(created_at) FILTER (WHERE sent_at IS NULL AND failed_at IS NULL))::float8, \
         count(*) FILTER (WHERE failed_at IS NOT NULL) \
         FROM {table} WHERE sent_at IS NULL"
    ))
    .fetch_one(pool)
    .await?;
    Ok(LagSnapshot {
        pending,
        oldest_seconds: oldest.unwrap_or(0.0).max(0.0),
        failed,
    })
}

/// The `outbox` health component: UP while the oldest pending row is younger than
/// `mq.outbox.lag-threshold`, DOWN above it (details: `pending`, `lagSeconds`,
/// `thresholdSeconds`, `failedRows`, `lastError`), DOWN when the database cannot be read.
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
                    .with_detail("failedRows", s.failed);
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
        match self.stats.last_error() {
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
    let pending: Gauge = Gauge::default();
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
            "mq_outbox_published",
            "Outbox rows published by this relay",
            stats.published.clone(),
        );
    });
    let table = settings.table.clone();
    let cleanup_sql = format!(
        "DELETE FROM {table} WHERE id IN (SELECT id FROM {table} \
         WHERE sent_at < clock_timestamp() - make_interval(secs => $1) LIMIT 10000)"
    );
    let (retention, cleanup_every) = (settings.retention, settings.cleanup_interval);
    tokio::spawn(async move {
        let mut since_cleanup = Duration::ZERO;
        let tick = Duration::from_secs(1);
        loop {
            match snapshot(&pool, &table).await {
                Ok(s) => {
                    lag.set(s.oldest_seconds);
                    pending.set(s.pending);
                }
                Err(e) => tracing::debug!(error = %e, "outbox lag: cannot read the outbox"),
            }
            if since_cleanup >= cleanup_every {
                since_cleanup = Duration::ZERO;
                match sqlx::query(&cleanup_sql)
                    .bind(retention.as_secs_f64())
                    .execute(&pool)
                    .await
                {
                    Ok(r) if r.rows_affected() > 0 => {
                        tracing::debug!(
                            deleted = r.rows_affected(),
                            "outbox: deleted sent rows past retention"
                        )
                    }
                    Ok(_) => {}
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
