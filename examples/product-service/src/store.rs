//! Where the stock lives: PostgreSQL when `mq.datasource.url` is set (a reservation, the
//! stock it takes and the outcome event commit in the listener's transaction, with its
//! dedup record), else memory (the embedded demo).

use mq_core::inbox::Tx;
use mq_core::outbox::Outbox;
use mq_core::sqlx::{self, PgPool, Row};
use mq_core::HandlerError;

use crate::events::{OrderCreated, StockRejected, StockReserved};
use crate::{Inventory, Product, Reservation};

/// The stock in PostgreSQL: `products` (seeded from the catalogue) and `reservations`
/// (one row per reservation made; nothing prevents two for one order but the inbox, so
/// tests can count them).
#[derive(Debug, Clone)]
pub struct PgStock {
    pool: PgPool,
    outbox: Outbox,
}

/// The stock the service runs on; cheap to clone.
#[derive(Debug, Clone)]
pub enum Stockroom {
    /// In memory (no `mq.datasource.url`): the embedded demo.
    Memory(Inventory),
    /// PostgreSQL, outcomes through the outbox.
    Postgres(PgStock),
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS products (
    id          BIGINT PRIMARY KEY,
    name        TEXT NOT NULL,
    stock       BIGINT NOT NULL,
    price_cents BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS reservations (
    id          BIGSERIAL PRIMARY KEY,
    order_id    TEXT NOT NULL,
    product_id  BIGINT NOT NULL,
    quantity    INTEGER NOT NULL,
    event_id    TEXT NOT NULL,
    reserved_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS reservations_order ON reservations (order_id);";

impl PgStock {
    /// The stock on `pool`: creates the tables if needed and adds the catalogue's products
    /// that are not there yet (a restart keeps the stock as it is).
    pub async fn open(
        pool: PgPool,
        outbox: Outbox,
        catalogue: &[Product],
    ) -> Result<PgStock, sqlx::Error> {
        sqlx::raw_sql(SCHEMA).execute(&pool).await?;
        for p in catalogue {
            sqlx::query(
                "INSERT INTO products (id, name, stock, price_cents) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(p.id as i64)
            .bind(&p.name)
            .bind(i64::from(p.stock))
            .bind(p.price_cents as i64)
            .execute(&pool)
            .await?;
        }
        Ok(PgStock { pool, outbox })
    }

    /// The pool (for tests and tools).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl Stockroom {
    /// Reserves stock for `order` (event `event_id`). Memory: returns the outcome for the
    /// caller to publish (and whether it is a replay). PostgreSQL: writes the reservation
    /// and the outcome event (into the outbox, for `topic_reserved` / `topic_rejected`) in
    /// the listener's transaction, and returns `None`: nothing left to publish. `Err`:
    /// unknown product (permanent) or a database failure (transient).
    pub(crate) async fn reserve(
        &self,
        tx: &Tx,
        event_id: &str,
        order: &OrderCreated,
        topics: &crate::Topics,
    ) -> Result<Option<(Reservation, bool)>, HandlerError> {
        let pg = match self {
            Stockroom::Memory(inventory) => {
                return inventory
                    .reserve(event_id, order)
                    .map(Some)
                    .map_err(HandlerError::permanent_msg)
            }
            Stockroom::Postgres(pg) => pg,
        };
        let mut conn = tx.conn().await?;
        let taken = sqlx::query(
            "UPDATE products SET stock = stock - $2 WHERE id = $1 AND stock >= $2 \
             RETURNING stock, price_cents",
        )
        .bind(order.product_id as i64)
        .bind(i64::from(order.quantity))
        .fetch_optional(&mut *conn)
        .await?;
        let key = order.order_id.as_str();
        let outcome = match taken {
            Some(row) => {
                sqlx::query(
                    "INSERT INTO reservations (order_id, product_id, quantity, event_id) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&order.order_id)
                .bind(order.product_id as i64)
                .bind(order.quantity as i32)
                .bind(event_id)
                .execute(&mut *conn)
                .await?;
                Reservation::Reserved(StockReserved {
                    order_id: order.order_id.clone(),
                    product_id: order.product_id,
                    quantity: order.quantity,
                    unit_price_cents: row.try_get::<i64, _>("price_cents")? as u64,
                    remaining: row.try_get::<i64, _>("stock")?.max(0) as u32,
                })
            }
            None => {
                let product = sqlx::query("SELECT name, stock FROM products WHERE id = $1")
                    .bind(order.product_id as i64)
                    .fetch_optional(&mut *conn)
                    .await?
                    .ok_or_else(|| {
                        HandlerError::permanent_msg(format!("unknown product {}", order.product_id))
                    })?;
                Reservation::Rejected(StockRejected {
                    order_id: order.order_id.clone(),
                    product_id: order.product_id,
                    reason: format!(
                        "insufficient stock for {}: requested {}, available {}",
                        product.try_get::<&str, _>("name")?,
                        order.quantity,
                        product.try_get::<i64, _>("stock")?
                    ),
                })
            }
        };
        crate::log_outcome(&outcome, false);
        let subject = order.order_id.clone();
        match outcome {
            Reservation::Reserved(r) => {
                let event = mq_core::Event::new("StockReserved", r).with_subject(subject);
                pg.outbox
                    .send(&mut conn, &topics.stock_reserved, key, event)
                    .await?;
            }
            Reservation::Rejected(r) => {
                let event = mq_core::Event::new("StockRejected", r).with_subject(subject);
                pg.outbox
                    .send(&mut conn, &topics.stock_rejected, key, event)
                    .await?;
            }
        }
        Ok(None)
    }
}
