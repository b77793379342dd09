//! mq's migrations (`mq-core/migrations/*.sql`): the outbox and the inbox tables.
//!
//! sqlx's own migrator runs fixed SQL files; mq's table names are configurable
//! (`mq.outbox.table`, `mq.inbox.table`), so the files are templates (`{table}`, `{name}`),
//! filled in with the checked names and applied once per table. Applied migrations are
//! recorded in `mq_schema_history` (`<table>:<migration>`), and an advisory lock makes
//! instances that start together apply them one at a time. The migration transaction is
//! READ COMMITTED whatever the database's default: under SERIALIZABLE, an instance that
//! waited for the lock would read the history as it was before it waited, apply the
//! migrations again and fail on the record the other one wrote.

use sqlx::PgPool;

use crate::error::Error;

/// One migration: its id and its SQL template.
struct Migration {
    id: &'static str,
    sql: &'static str,
}

const OUTBOX: &[Migration] = &[
    Migration {
        id: "0001_outbox",
        sql: include_str!("../../migrations/0001_outbox.sql"),
    },
    Migration {
        id: "0003_outbox_failed",
        sql: include_str!("../../migrations/0003_outbox_failed.sql"),
    },
];

const INBOX: &[Migration] = &[Migration {
    id: "0002_inbox",
    sql: include_str!("../../migrations/0002_inbox.sql"),
}];

/// Applies the outbox and inbox migrations to `outbox_table` and `inbox_table` (names
/// already checked by the configuration) that are not applied yet.
///
/// ```no_run
/// # async fn f(pool: mq_core::sqlx::PgPool) -> Result<(), mq_core::Error> {
/// mq_core::outbox::migrate(&pool, "mq_outbox", "mq_inbox").await?;
/// # Ok(()) }
/// ```
pub async fn migrate(pool: &PgPool, outbox_table: &str, inbox_table: &str) -> Result<(), Error> {
    for table in [outbox_table, inbox_table] {
        if !crate::config::valid_table_name(table) {
            return Err(Error::Database(format!("{table:?} is not a table name")));
        }
    }
    let db = |e: sqlx::Error| Error::Database(format!("migrations: {e}"));
    let mut tx = pool
        .begin_with(super::relay::BEGIN_READ_COMMITTED)
        .await
        .map_err(db)?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('mq_schema_history'))")
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS mq_schema_history \
         (name TEXT PRIMARY KEY, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())",
    )
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    for (table, migrations) in [(outbox_table, OUTBOX), (inbox_table, INBOX)] {
        let (schema, name) = match table.split_once('.') {
            Some((schema, name)) => (Some(schema), name),
            None => (None, table),
        };
        for m in migrations {
            let record = format!("{table}:{}", m.id);
            let done: Option<(String,)> =
                sqlx::query_as("SELECT name FROM mq_schema_history WHERE name = $1")
                    .bind(&record)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
            if done.is_some() {
                continue;
            }
            if let Some(schema) = schema {
                sqlx::raw_sql(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
            }
            let sql = m.sql.replace("{table}", table).replace("{name}", name);
            sqlx::raw_sql(&sql).execute(&mut *tx).await.map_err(db)?;
            sqlx::query("INSERT INTO mq_schema_history (name) VALUES ($1)")
                .bind(&record)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            tracing::info!(migration = m.id, table, "applied mq migration");
        }
    }
    tx.commit().await.map_err(db)
}
