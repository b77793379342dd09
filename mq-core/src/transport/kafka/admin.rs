//! Topic administration: creating the topics listeners need (source and dead-letter).

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientConfig;

/// Creates each topic of `topics` that does not exist yet. A topic that exists is left as
/// it is; a failure is reported (and the caller decides whether it matters).
pub(crate) async fn ensure_topics(
    config: &ClientConfig,
    topics: &[(String, i32)],
    replication: i32,
) -> Result<(), String> {
    if topics.is_empty() {
        return Ok(());
    }
    let admin: AdminClient<DefaultClientContext> = config
        .create()
        .map_err(|e| format!("cannot create the admin client: {e}"))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| {
            NewTopic::new(name, *partitions, TopicReplication::Fixed(replication))
        })
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = admin
        .create_topics(new.iter(), &opts)
        .await
        .map_err(|e| format!("create topics: {e}"))?;
    let mut problems = Vec::new();
    for r in results {
        match r {
            Ok(name) => tracing::info!(topic = %name, "created topic"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => problems.push(format!("{name}: {code}")),
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("cannot create topics: {}", problems.join(", ")))
    }
}

/// Partition counts of the topics that exist, by name (one metadata request).
pub(crate) fn partition_counts(
    config: &ClientConfig,
    timeout: Duration,
) -> Result<std::collections::HashMap<String, i32>, String> {
    let consumer: BaseConsumer = config
        .create()
        .map_err(|e| format!("cannot create a metadata client: {e}"))?;
    let md = consumer
        .fetch_metadata(None, timeout)
        .map_err(|e| format!("cannot reach the brokers: {e}"))?;
    Ok(md
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .map(|t| (t.name().to_owned(), t.partitions().len() as i32))
        .collect())
}
