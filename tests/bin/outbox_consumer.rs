//! The child process of the inbox crash test: an mq service with one idempotent listener
//! that writes an `effects` row in its transaction. With `STALL_MARKER` naming a file that
//! does not exist yet, the first call creates it after its write and never returns (the
//! transaction stays open), so the test can kill the process between the handler's write
//! and the commit. Configured by `MQ_*` variables.

use mq_core::inbox::Tx;
use mq_core::prelude::*;

#[derive(Debug, Serialize, Deserialize)]
struct Effect {
    n: u32,
}

#[listener(topic = "outbox-consumer", idempotent)]
async fn apply_once(event: Event<Effect>, tx: Tx) -> Result<(), HandlerError> {
    mq_core::sqlx::query("INSERT INTO effects (event_id, n) VALUES ($1, $2)")
        .bind(&event.id)
        .bind(event.data.n as i32)
        .execute(&mut *tx.conn().await?)
        .await?;
    if let Some(marker) = std::env::var_os("STALL_MARKER") {
        if !std::path::Path::new(&marker).exists() {
            std::fs::write(&marker, event.id.as_bytes())?;
            std::future::pending::<()>().await;
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), mq_core::Error> {
    App::from_config()?.run().await
}
