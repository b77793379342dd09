//! Dead letters, whichever broker holds them: the headers that say why a record died and
//! where it came from (Spring Kafka's [`headers`]; a queue listener's dead letters carry
//! Spring AMQP's `x-exception-*` and `x-original-*`), and replaying them to where they came
//! from (`mq dlt-replay`).

pub use super::kafka::dead_letter::headers;
pub use crate::failure::redrive::{ReplayOptions, ReplayReport};
pub use crate::failure::FailureInfo;

use crate::config::Config;
use crate::error::Error;

/// Republishes the records of `dlt_topic` to the topics they came from (their
/// `kafka_dlt-original-topic`, or `kafka_original-topic` as Spring's `@RetryableTopic`
/// writes it, with any `-retry-N` suffix removed), without the dead-letter headers of
/// either dialect (`kafka_dlt-*`, `kafka_original-*`, `kafka_exception-*`), `mq_dlt-*` and
/// `retry_topic-*`; key, value (a tombstone stays null) and other headers byte for byte.
///
/// A record that cannot be replayed (no original topic, stored without its value) does not
/// stop the replay: it is listed in [`ReplayReport::unreplayable`] with the reason, and its
/// partition's later records are held ([`ReplayReport::held`]) unless
/// [`ReplayOptions::skip_unreplayable`] commits past it.
///
/// Progress is committed under the group `<mq.application.name>-dlt-replay` after each
/// acknowledged republication, so a second run replays only what arrived since. The replay
/// stops at the end of the topic as it was when it started, or after `limit` records.
/// The `mq` command wraps it: `mq dlt-replay <dlt-topic> [--limit N]`. For filters, dry
/// runs and the parking guard, see [`replay_with`].
///
/// ```no_run
/// # async fn f() -> Result<(), mq_core::Error> {
/// let config = mq_core::Config::load()?;
/// let report = mq_core::dead_letter::replay(&config, "orders-dlt", None).await?;
/// println!("replayed {} records", report.total());
/// # Ok(()) }
/// ```
pub async fn replay(
    config: &Config,
    dlt_topic: &str,
    limit: Option<usize>,
) -> Result<ReplayReport, Error> {
    let opts = ReplayOptions {
        limit,
        ..Default::default()
    };
    replay_with(config, dlt_topic, &opts).await
}

/// [`replay`] with [`ReplayOptions`]: filters by
/// exception type, key and time range, a dry run that sends nothing and reports what it
/// would do, and the guard that parks a record replayed `max_replays` times in
/// `<dlt-topic>-parking`. With a filter or a dry run, progress is not committed.
///
/// `dlt_topic` may also name a queue listener's RabbitMQ dead-letter queue as
/// `amqp:///<queue>.dlq`: its messages go back to `<queue>` (see
/// the RabbitMQ transport's redrive; parked ones to `<queue>.dlq.parking`).
///
/// ```no_run
/// # async fn f() -> Result<(), mq_core::Error> {
/// use mq_core::failure::redrive::ReplayOptions;
/// let config = mq_core::Config::load()?;
/// let opts = ReplayOptions { exception: Some("DecodeError".into()), dry_run: true, ..Default::default() };
/// for line in mq_core::dead_letter::replay_with(&config, "orders-dlt", &opts).await?.planned {
///     println!("{line}");
/// }
/// # Ok(()) }
/// ```
pub async fn replay_with(
    config: &Config,
    dlt_topic: &str,
    opts: &ReplayOptions,
) -> Result<ReplayReport, Error> {
    let queue = super::rabbitmq::destination::Exchange::parse(dlt_topic, None)
        .filter(|d| d.exchange.is_empty())
        .map(|d| d.routing_key);
    match queue {
        // `amqp:///<queue>.dlq`: a queue listener's dead-letter queue.
        #[cfg(feature = "rabbitmq")]
        Some(dlq) => super::rabbitmq::replay::replay(config, &dlq, opts).await,
        #[cfg(feature = "kafka")]
        None => super::kafka::replay::replay(config, dlt_topic, opts).await,
        #[allow(unreachable_patterns)]
        other => {
            let _ = (config, opts);
            let (what, feature) = match other {
                Some(_) => ("a RabbitMQ dead-letter queue", "rabbitmq"),
                None => ("a Kafka topic", "kafka"),
            };
            Err(Error::NoTransport(format!(
                "{dlt_topic} is {what}, but mq-core was built without the `{feature}` feature"
            )))
        }
    }
}
