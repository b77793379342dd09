//! The `mq_queue_depth` gauge: every `queue-depth-interval`, a passive `queue.declare` of a
//! queue listener's queue reads how many messages are ready in it (the RabbitMQ
//! counterpart of Kafka's consumer lag). One poller per queue listener, on its own channel
//! of the app's connection; while RabbitMQ is away the gauge keeps its last value.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::Channel;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::connection::Rabbit;
use crate::consume::status::Statuses;
use crate::metrics::Metrics;

/// The shortest interval a poller accepts (a zero interval would spin).
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Polls the depth of `queue` for listener `listener` until `shutdown`, once a consumer of
/// the listener consumes it (see [`consuming`]).
pub(crate) fn spawn(
    rabbit: Arc<Rabbit>,
    metrics: Arc<Metrics>,
    listener: &'static str,
    queue: String,
    interval: Duration,
    statuses: Statuses,
    shutdown: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut channel: Option<Channel> = None;
        loop {
            if consuming(&statuses, listener) {
                match depth(&rabbit, &mut channel, &queue).await {
                    Ok(ready) => metrics.set_queue_depth(listener, &queue, i64::from(ready)),
                    Err(e) => {
                        tracing::debug!(listener, queue = %queue, error = %e, "queue depth not read")
                    }
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(interval.max(MIN_INTERVAL)) => {}
            }
        }
        if let Some(c) = channel.filter(|c| c.status().connected()) {
            let _ = c.close(200, "shutdown".into()).await;
        }
    })
}

/// True while a consumer of `listener` consumes its queue, so the queue exists: a passive
/// declare of a queue the listener has not declared yet closes the poller's channel, and
/// lapin logs that closure at ERROR (it did on every start of the demo).
fn consuming(statuses: &Statuses, listener: &str) -> bool {
    statuses
        .read()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .any(|(name, s)| *name == listener && s.assigned.load(Ordering::Relaxed) > 0)
}

/// Messages ready in `queue`, on `channel` (opened again when it was lost: a passive
/// declare of a queue that does not exist closes it).
async fn depth(rabbit: &Rabbit, channel: &mut Option<Channel>, queue: &str) -> Result<u32, String> {
    let open = match channel.as_ref().filter(|c| c.status().connected()) {
        Some(c) => c.clone(),
        None => {
            if !rabbit.is_connected().await {
                // The consumers (re)connect; the poller does not add attempts of its own.
                return Err("not connected".to_owned());
            }
            let c = rabbit
                .connection()
                .await?
                .create_channel()
                .await
                .map_err(|e| e.to_string())?;
            *channel = Some(c.clone());
            c
        }
    };
    let passive = QueueDeclareOptions::default().passive();
    open.queue_declare(
        super::properties::short("the queue name", queue)?,
        passive,
        FieldTable::default(),
    )
    .await
    .map(|q| q.message_count())
    .map_err(|e| e.to_string())
}
