//! Where orders live: PostgreSQL when `mq.datasource.url` is set (the order and its
//! `order-create-event` commit together through the outbox; the listeners' status changes
//! commit with their dedup record), else memory (the embedded demo: no database, lost on
//! restart).

use mq_core::inbox::Tx;
use mq_core::outbox::Outbox;
use mq_core::sqlx::{self, PgPool, Row};
use mq_core::{Event, HandlerError, Publisher};

use crate::events::{OrderCreated, PaymentCompleted, StockReserved};
use crate::{new_id, Order, OrderBook, OrderStatus, Topics};

/// The orders, in PostgreSQL (`orders` table in the datasource's schema).
#[derive(Debug, Clone)]
pub struct PgOrders {
    pool: PgPool,
    outbox: Outbox,
}

/// The order storage the service runs on; cheap to clone.
#[derive(Debug, Clone)]
pub enum OrderStore {
    /// In memory (no `mq.datasource.url`): the embedded demo.
    Memory(OrderBook),
    /// PostgreSQL, with the outbox.
    Postgres(PgOrders),
}

impl From<OrderBook> for OrderStore {
    fn from(book: OrderBook) -> Self {
        OrderStore::Memory(book)
    }
}

/// A failure of the store: a database error, for the HTTP layer.
pub type StoreError = Box<dyn std::error::Error + Send + Sync + 'static>;

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS orders (
    order_id   TEXT PRIMARY KEY,
    status     TEXT NOT NULL,
    reason     TEXT,
    product_id BIGINT NOT NULL,
    quantity   INTEGER NOT NULL,
    customer   TEXT,
    payment_id TEXT,
    history    TEXT[] NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
)";

impl PgOrders {
    /// Orders on `pool`, events into `outbox`; creates the `orders` table if needed.
    pub async fn open(pool: PgPool, outbox: Outbox) -> Result<PgOrders, StoreError> {
        sqlx::query(SCHEMA).execute(&pool).await?;
        Ok(PgOrders { pool, outbox })
    }
}

fn status_text(s: OrderStatus) -> &'static str {
    match s {
        OrderStatus::Pending => "PENDING",
        OrderStatus::Confirmed => "CONFIRMED",
        OrderStatus::Rejected => "REJECTED",
    }
}

fn parse_status(s: &str) -> OrderStatus {
    match s {
        "CONFIRMED" => OrderStatus::Confirmed,
        "REJECTED" => OrderStatus::Rejected,
        _ => OrderStatus::Pending,
    }
}

fn order_of(row: &sqlx::postgres::PgRow) -> Result<Order, sqlx::Error> {
    Ok(Order {
        order_id: row.try_get("order_id")?,
        status: parse_status(row.try_get::<&str, _>("status")?),
        reason: row.try_get("reason")?,
        product_id: row.try_get::<i64, _>("product_id")? as u64,
        quantity: row.try_get::<i32, _>("quantity")? as u32,
        customer: row.try_get("customer")?,
        payment_id: row.try_get("payment_id")?,
        history: row.try_get("history")?,
    })
}

const COLUMNS: &str =
    "order_id, status, reason, product_id, quantity, customer, payment_id, history";

impl OrderStore {
    /// Whether orders are in PostgreSQL.
    pub fn is_database(&self) -> bool {
        matches!(self, OrderStore::Postgres(_))
    }

    /// Records a new order and its `order-create-event`: in one transaction (PostgreSQL,
    /// through the outbox), or in memory and then published (the demo). `Ok` means the
    /// event will reach the broker.
    pub async fn create(
        &self,
        order: Order,
        event: Event<OrderCreated>,
        publisher: &Publisher,
        topics: &Topics,
    ) -> Result<(), StoreError> {
        match self {
            OrderStore::Memory(book) => {
                let id = order.order_id.clone();
                // Recorded before publishing: the outcome may arrive before this returns.
                book.insert(order);
                if let Err(e) = publisher
                    .send(&topics.order_created, id.as_bytes(), event)
                    .await
                {
                    book.remove(&id);
                    return Err(e.into());
                }
                Ok(())
            }
            OrderStore::Postgres(pg) => {
                let mut tx = pg.pool.begin().await?;
                sqlx::query(&format!(
                    "INSERT INTO orders ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
                ))
                .bind(&order.order_id)
                .bind(status_text(order.status))
                .bind(&order.reason)
                .bind(order.product_id as i64)
                .bind(order.quantity as i32)
                .bind(&order.customer)
                .bind(&order.payment_id)
                .bind(&order.history)
                .execute(&mut *tx)
                .await?;
                pg.outbox
                    .send(&mut tx, &topics.order_created, &order.order_id, event)
                    .await?;
                tx.commit().await?;
                Ok(())
            }
        }
    }

    /// The order with this id.
    pub async fn get(&self, order_id: &str) -> Result<Option<Order>, StoreError> {
        match self {
            OrderStore::Memory(book) => Ok(book.get(order_id)),
            OrderStore::Postgres(pg) => {
                let row = sqlx::query(&format!("SELECT {COLUMNS} FROM orders WHERE order_id = $1"))
                    .bind(order_id)
                    .fetch_optional(&pg.pool)
                    .await?;
                Ok(row.as_ref().map(order_of).transpose()?)
            }
        }
    }

    /// Every order, by id.
    pub async fn all(&self) -> Result<Vec<Order>, StoreError> {
        let mut all = match self {
            OrderStore::Memory(book) => book.all(),
            OrderStore::Postgres(pg) => sqlx::query(&format!("SELECT {COLUMNS} FROM orders"))
                .fetch_all(&pg.pool)
                .await?
                .iter()
                .map(order_of)
                .collect::<Result<_, _>>()?,
        };
        all.sort_by(|a, b| a.order_id.cmp(&b.order_id));
        Ok(all)
    }

    /// Moves a pending order to a final status, in the listener's transaction: `Some(true)`
    /// when it moved, `Some(false)` when it was already final, `None` for an unknown order.
    pub(crate) async fn finish(
        &self,
        tx: &Tx,
        order_id: &str,
        status: OrderStatus,
        reason: Option<String>,
    ) -> Result<Option<bool>, HandlerError> {
        match self {
            OrderStore::Memory(book) => Ok(book.update(order_id, |o| o.finish(status, reason))),
            OrderStore::Postgres(_) => {
                let step = match status {
                    OrderStatus::Confirmed => "CONFIRMED",
                    _ => "REJECTED",
                };
                let mut conn = tx.conn().await?;
                let moved = sqlx::query(
                    "UPDATE orders SET status = $2, reason = $3, history = array_append(history, $4) \
                     WHERE order_id = $1 AND status = 'PENDING'",
                )
                .bind(order_id)
                .bind(status_text(status))
                .bind(&reason)
                .bind(step)
                .execute(&mut *conn)
                .await?
                .rows_affected();
                if moved == 1 {
                    return Ok(Some(true));
                }
                let exists = sqlx::query("SELECT 1 FROM orders WHERE order_id = $1")
                    .bind(order_id)
                    .fetch_optional(&mut *conn)
                    .await?;
                Ok(exists.map(|_| false))
            }
        }
    }

    /// The payment step for a reservation: `None` for an unknown order, `Some(None)` when
    /// the order is already final, else the payment, which is published (memory) or
    /// written to the outbox in the listener's transaction (PostgreSQL).
    pub(crate) async fn pay(
        &self,
        tx: &Tx,
        reserved: &StockReserved,
        publisher: &Publisher,
        topics: &Topics,
    ) -> Result<Option<Option<PaymentCompleted>>, HandlerError> {
        let amount_cents = reserved.unit_price_cents * u64::from(reserved.quantity);
        let payment = match self {
            OrderStore::Memory(book) => book.update(&reserved.order_id, |order| {
                if order.status != OrderStatus::Pending {
                    return None;
                }
                order.step("STOCK_RESERVED");
                let payment_id = order
                    .payment_id
                    .get_or_insert_with(|| new_id("pay"))
                    .clone();
                order.step("PAID");
                Some(PaymentCompleted {
                    order_id: reserved.order_id.clone(),
                    payment_id,
                    amount_cents,
                })
            }),
            OrderStore::Postgres(pg) => {
                let mut conn = tx.conn().await?;
                let row = sqlx::query("SELECT status FROM orders WHERE order_id = $1 FOR UPDATE")
                    .bind(&reserved.order_id)
                    .fetch_optional(&mut *conn)
                    .await?;
                let Some(row) = row else { return Ok(None) };
                if row.try_get::<&str, _>("status")? != "PENDING" {
                    return Ok(Some(None));
                }
                let payment = PaymentCompleted {
                    order_id: reserved.order_id.clone(),
                    payment_id: new_id("pay"),
                    amount_cents,
                };
                sqlx::query(
                    "UPDATE orders SET payment_id = $2, \
                     history = history || ARRAY['STOCK_RESERVED', 'PAID'] WHERE order_id = $1",
                )
                .bind(&reserved.order_id)
                .bind(&payment.payment_id)
                .execute(&mut *conn)
                .await?;
                let key = payment.order_id.clone();
                let event =
                    Event::new("PaymentCompleted", payment.clone()).with_subject(key.clone());
                pg.outbox
                    .send(&mut conn, &topics.payment_completed, &key, event)
                    .await?;
                return Ok(Some(Some(payment)));
            }
        };
        if let Some(Some(p)) = &payment {
            let key = p.order_id.clone();
            let event = Event::new("PaymentCompleted", p.clone()).with_subject(key.clone());
            publisher
                .send(&topics.payment_completed, key.as_bytes(), event)
                .await?;
        }
        Ok(payment)
    }
}
