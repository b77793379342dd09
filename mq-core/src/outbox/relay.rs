//! The relay: publishes committed outbox rows, slot by slot, and marks them sent.
//!
//! One round visits every slot. For a slot, one READ COMMITTED transaction (set
//! explicitly: under a SERIALIZABLE default PostgreSQL could abort it at `COMMIT`, after
//! the broker has the records): take the slot's advisory lock
//! (`pg_try_advisory_xact_lock`; held by another relay: skip the slot this round), read its
//! oldest pending rows, publish them (the rows of one key one after the other, waiting for
//! each acknowledgement; different keys concurrently), mark what the broker acknowledged
//! as sent, commit (which releases the lock). A relay that dies mid-slot leaves its rows
//! pending and its lock released with its connection: they are published again (the same
//! events, the same ids); a relay that cannot mark what it published counts those rows
//! (`mq_outbox_unmarked_total`) before they go out again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::lag::RelayStats;
use super::OutboxError;
use crate::config::OutboxConfig;
use crate::publisher::Publisher;
use chain::{Outcome, Row};

mod chain;

/// What one round of a relay did.
///
/// ```
/// let r = mq_core::outbox::RoundReport::default();
/// assert_eq!(r.published, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundReport {
    /// Rows published and marked sent.
    pub published: u64,
    /// Rows whose publish failed and that stay pending (the broker is away).
    pub failed: u64,
    /// Rows set aside for good (the broker refused the record or its destination, or the
    /// event does not parse).
    pub parked: u64,
    /// Slots held by another relay this round.
    pub busy_slots: u32,
    /// Some slot had a full batch: more rows are waiting.
    pub more: bool,
}

impl std::ops::AddAssign for RoundReport {
    fn add_assign(&mut self, o: RoundReport) {
        self.published += o.published;
        self.failed += o.failed;
        self.parked += o.parked;
        self.busy_slots += o.busy_slots;
        self.more |= o.more;
    }
}

/// The statement that opens every relay transaction.
pub(crate) const BEGIN_READ_COMMITTED: &str = "BEGIN ISOLATION LEVEL READ COMMITTED";

/// At most this many passes over one slot per round (see [`Relay::slot`]).
const MAX_PASSES: usize = 4;

/// What one pass over a slot did.
#[derive(Default)]
struct Pass {
    report: RoundReport,
    /// The batch was full.
    full: bool,
    /// Keys stopped at a row that stays pending.
    stuck: Vec<Vec<u8>>,
}

/// Publishes an outbox table's rows through a [`Publisher`]. The `App`
/// runs one when `mq.datasource.url` is set; tests and tools can run their own.
///
/// ```no_run
/// # async fn f(pool: mq_core::sqlx::PgPool, publisher: mq_core::Publisher) -> Result<(), mq_core::outbox::OutboxError> {
/// let relay = mq_core::outbox::Relay::new(pool, publisher, &Default::default());
/// let round = relay.run_once().await?;
/// println!("published {}", round.published);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Relay {
    pool: PgPool,
    publisher: Publisher,
    settings: OutboxConfig,
    select_sql: Arc<str>,
    sent_sql: Arc<str>,
    failed_sql: Arc<str>,
    parked_sql: Arc<str>,
    pub(crate) stats: Arc<RelayStats>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("table", &self.settings.table)
            .finish_non_exhaustive()
    }
}

impl Relay {
    /// A relay for `settings.table` on `pool`, publishing with `publisher`.
    pub fn new(pool: PgPool, publisher: Publisher, settings: &OutboxConfig) -> Relay {
        Relay::with_stats(pool, publisher, settings, Arc::default())
    }

    /// [`Relay::new`], counting into `stats` (shared with the health component).
    pub(crate) fn with_stats(
        pool: PgPool,
        publisher: Publisher,
        settings: &OutboxConfig,
        stats: Arc<RelayStats>,
    ) -> Relay {
        let t = &settings.table;
        Relay {
            select_sql: select_sql(t, settings.strict_key_order).into(),
            sent_sql: format!("UPDATE {t} SET sent_at = clock_timestamp(), attempts = attempts + 1 WHERE id = ANY($1)").into(),
            failed_sql: format!(
                "UPDATE {t} SET attempts = attempts + 1, last_error = e.error \
                 FROM unnest($1::bigint[], $2::text[]) AS e(id, error) WHERE {t}.id = e.id"
            )
            .into(),
            parked_sql: format!(
                "UPDATE {t} SET failed_at = clock_timestamp(), attempts = attempts + 1, last_error = e.error \
                 FROM unnest($1::bigint[], $2::text[]) AS e(id, error) WHERE {t}.id = e.id"
            )
            .into(),
            pool,
            publisher,
            settings: settings.clone(),
            stats,
        }
    }

    /// The outbox's backlog now: pending rows, the age of the oldest, rows set aside.
    ///
    /// ```no_run
    /// # async fn f(relay: mq_core::outbox::Relay) -> Result<(), mq_core::outbox::OutboxError> {
    /// let backlog = relay.backlog().await?;
    /// println!("{} pending, oldest {:.1}s", backlog.pending, backlog.oldest_seconds);
    /// # Ok(()) }
    /// ```
    pub async fn backlog(&self) -> Result<super::LagSnapshot, OutboxError> {
        Ok(super::lag::snapshot(&self.pool, &self.settings.table).await?)
    }

    /// Deletes the rows sent more than `mq.outbox.retention` ago, in batches of 5,000 rows
    /// (each its own short transaction) until none is left; the app's lag watcher does it
    /// every `mq.outbox.cleanup-interval`.
    ///
    /// ```no_run
    /// # async fn f(relay: mq_core::outbox::Relay) -> Result<(), mq_core::outbox::OutboxError> {
    /// let cleanup = relay.clean_up().await?;
    /// println!("deleted {} rows in {} batches", cleanup.deleted, cleanup.batches);
    /// # Ok(()) }
    /// ```
    pub async fn clean_up(&self) -> Result<super::Cleanup, OutboxError> {
        let table = &self.settings.table;
        let done = super::cleanup::sent_rows(&self.pool, table, self.settings.retention).await?;
        self.stats.deleted.inc_by(done.deleted);
        Ok(done)
    }

    /// Publishes what is pending now, one pass over every slot (slots in parallel, up to
    /// half the pool).
    pub async fn run_once(&self) -> Result<RoundReport, OutboxError> {
        let slots = self.settings.slots.max(1);
        let parallel = (self.pool.options().get_max_connections() / 2).clamp(1, slots) as usize;
        // Start at a different slot each round, so relays do not queue up on the same one.
        let start = (rand_u32() % slots) as usize;
        let order: Vec<u32> = (0..slots)
            .cycle()
            .skip(start)
            .take(slots as usize)
            .collect();
        let results: Vec<Result<RoundReport, sqlx::Error>> = futures::stream::iter(order)
            .map(|slot| self.slot(slot))
            .buffer_unordered(parallel)
            .collect()
            .await;
        let mut report = RoundReport::default();
        let mut first_error = None;
        for r in results {
            match r {
                Ok(r) => report += r,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        self.stats.record_round(&report);
        match first_error {
            Some(e) if report.published == 0 => Err(e.into()),
            Some(e) => {
                tracing::warn!(error = %e, "outbox relay: a slot failed this round");
                Ok(report)
            }
            None => Ok(report),
        }
    }

    /// Runs rounds until `shutdown`: at once again while rows are waiting, after
    /// `mq.outbox.poll-interval` when idle, with a growing pause (up to 5 s) while the
    /// database or the broker fails.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut failing = 0u32;
        loop {
            let pause = match self.run_once().await {
                Ok(r) if r.failed == 0 => {
                    failing = 0;
                    if r.more {
                        Duration::ZERO
                    } else {
                        self.settings.poll_interval
                    }
                }
                Ok(r) => {
                    failing += 1;
                    if failing.is_power_of_two() {
                        tracing::warn!(
                            failed = r.failed,
                            published = r.published,
                            "outbox relay: publishing failed; rows stay pending and are retried"
                        );
                    }
                    backoff(self.settings.poll_interval, failing)
                }
                Err(e) => {
                    failing += 1;
                    self.stats.set_error(e.to_string());
                    if failing.is_power_of_two() {
                        tracing::warn!(error = %e, "outbox relay: cannot read the outbox; retrying");
                    }
                    backoff(self.settings.poll_interval, failing)
                }
            };
            if pause.is_zero() {
                if shutdown.is_cancelled() {
                    return;
                }
                tokio::task::yield_now().await;
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(pause) => {}
            }
        }
    }

    /// One slot: up to [`MAX_PASSES`] passes. A pass whose batch was full and in which
    /// some key stopped at a row the broker did not take (it stays pending, and the key's
    /// later rows wait behind it) is followed by another pass without those keys, so a key
    /// with many rows stuck at its head never keeps the slot's other keys waiting.
    async fn slot(&self, slot: u32) -> Result<RoundReport, sqlx::Error> {
        let mut report = RoundReport::default();
        let mut stuck: Vec<Vec<u8>> = Vec::new();
        for _ in 0..MAX_PASSES {
            let pass = match self.pass(slot, &stuck).await {
                Ok(pass) => pass,
                Err(e) if stuck.is_empty() => return Err(e),
                Err(e) => {
                    // The first pass is marked and committed: report it.
                    tracing::warn!(error = %e, "outbox relay: a further pass over a slot failed");
                    break;
                }
            };
            report.published += pass.report.published;
            report.failed += pass.report.failed;
            report.parked += pass.report.parked;
            report.busy_slots += pass.report.busy_slots;
            report.more = pass.report.more;
            if !pass.full || pass.stuck.is_empty() {
                break;
            }
            stuck.extend(pass.stuck);
        }
        if report.failed > 0 {
            report.more = false; // do not spin on a broker that is away
        }
        Ok(report)
    }

    /// One pass over a slot, in one READ COMMITTED transaction (whatever the database's
    /// `default_transaction_isolation`: a SERIALIZABLE one could abort the transaction at
    /// `COMMIT`, after the broker has the records, and every row would be published
    /// again): lock the slot, read its oldest pending rows (not those of `skip`), publish
    /// them, mark them, commit.
    async fn pass(&self, slot: u32, skip: &[Vec<u8>]) -> Result<Pass, sqlx::Error> {
        let mut tx = self.pool.begin_with(BEGIN_READ_COMMITTED).await?;
        // The slot's key is the table itself (its oid, through the search path), not its
        // name: relays of two schemas with the same table name must not share slots.
        let (locked,): (bool,) = sqlx::query_as(
            "SELECT pg_try_advisory_xact_lock(hashtext($1::regclass::oid::text), $2)",
        )
        .bind(&self.settings.table)
        .bind(slot as i32)
        .fetch_one(&mut *tx)
        .await?;
        if !locked {
            return Ok(Pass {
                report: RoundReport {
                    busy_slots: 1,
                    ..Default::default()
                },
                ..Default::default()
            });
        }
        let batch = i64::from(self.settings.batch_size.max(1));
        let rows: Vec<(i64, String, Vec<u8>, String)> = sqlx::query_as(&self.select_sql)
            .bind(self.settings.slots.max(1) as i32)
            .bind(slot as i32)
            .bind(batch)
            .bind(skip)
            .fetch_all(&mut *tx)
            .await?;
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(Pass::default());
        }
        let full = rows.len() as i64 == batch;
        // The rows of each key, in id order; keys in the order they first appear.
        let mut chains: Vec<Vec<Row>> = Vec::new();
        let mut by_key: HashMap<Vec<u8>, usize> = HashMap::new();
        for (id, destination, key, event) in rows {
            let i = *by_key.entry(key.clone()).or_insert_with(|| {
                chains.push(Vec::new());
                chains.len() - 1
            });
            chains[i].push(Row {
                id,
                destination,
                key,
                event,
            });
        }
        let mut pass = Pass {
            full,
            report: RoundReport {
                more: full,
                ..Default::default()
            },
            ..Default::default()
        };
        let (mut sent, mut failed, mut parked) = (
            Vec::new(),
            (Vec::new(), Vec::new()),
            (Vec::new(), Vec::new()),
        );
        let chains =
            futures::future::join_all(chains.into_iter().map(|chain| self.publish_chain(chain)))
                .await;
        for (key, outcomes) in chains {
            for o in outcomes {
                match o {
                    Outcome::Sent(id) => sent.push(id),
                    Outcome::Failed(id, e) => {
                        failed.0.push(id);
                        failed.1.push(e);
                        pass.stuck.push(key.clone());
                    }
                    Outcome::Parked(id, e) => {
                        parked.0.push(id);
                        parked.1.push(e);
                    }
                }
            }
        }
        pass.report.published = sent.len() as u64;
        pass.report.failed = failed.0.len() as u64;
        pass.report.parked = parked.0.len() as u64;
        if let Err(e) = self.mark(tx, &sent, failed, parked).await {
            // The broker has these records, the table still says pending: they go out
            // again next round (at least once). Counted, as the only duplicates a running
            // relay makes.
            self.stats.unmarked.inc_by(sent.len() as u64);
            tracing::error!(error = %e, rows = sent.len(), "outbox relay: published rows could not be marked sent; they will be published again");
            return Err(e);
        }
        Ok(pass)
    }

    /// Marks a pass's outcomes and commits.
    async fn mark(
        &self,
        mut tx: sqlx::Transaction<'static, sqlx::Postgres>,
        sent: &[i64],
        failed: (Vec<i64>, Vec<String>),
        parked: (Vec<i64>, Vec<String>),
    ) -> Result<(), sqlx::Error> {
        if !sent.is_empty() {
            sqlx::query(&self.sent_sql)
                .bind(sent)
                .execute(&mut *tx)
                .await?;
        }
        for (sql, (ids, errors)) in [(&self.failed_sql, failed), (&self.parked_sql, parked)] {
            if !ids.is_empty() {
                sqlx::query(sql)
                    .bind(&ids)
                    .bind(&errors)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        tx.commit().await
    }
}

/// The oldest pending rows of slot `$2` (of `$1`), at most `$3`, none of the keys `$4`;
/// with `strict`, none behind a row of its key that was set aside.
fn select_sql(t: &str, strict: bool) -> String {
    let held = if strict {
        format!(
            " AND NOT EXISTS (SELECT 1 FROM {t} f WHERE f.failed_at IS NOT NULL \
             AND f.key_hash = {t}.key_hash AND f.msg_key = {t}.msg_key AND f.id < {t}.id)"
        )
    } else {
        String::new()
    };
    format!(
        "SELECT id, destination, msg_key, event FROM {t} \
         WHERE sent_at IS NULL AND failed_at IS NULL AND key_hash % $1 = $2 \
         AND NOT (msg_key = ANY($4::bytea[])){held} ORDER BY id LIMIT $3"
    )
}

fn backoff(base: Duration, failures: u32) -> Duration {
    let factor = 2u32.saturating_pow(failures.min(16));
    base.max(Duration::from_millis(50))
        .saturating_mul(factor)
        .min(Duration::from_secs(5))
}

/// A cheap random number (the slot to start a round at).
fn rand_u32() -> u32 {
    uuid::Uuid::new_v4().as_u128() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        assert_eq!(backoff(base, 1), Duration::from_millis(200));
        assert_eq!(backoff(base, 30), Duration::from_secs(5));
    }
}
