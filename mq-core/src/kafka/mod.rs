//! The Kafka transport (librdkafka through `rdkafka`): client settings, the producer behind
//! [`Publisher`](crate::Publisher), topic administration and the listener consumers.
//!
//! This is the only module that names rdkafka types; the rest of the framework sees
//! [`Record`](crate::record::Record)s in and acknowledgements out.

pub(crate) mod admin;
pub(crate) mod consumer;
pub(crate) mod embedded;
pub(crate) mod health;
pub(crate) mod producer;
pub(crate) mod rebalance;
mod record_copy;
pub(crate) mod replay;

use rdkafka::ClientConfig;

use crate::config::{flatten_properties, AutoOffsetReset, Config};

/// librdkafka settings of a listener's consumer: mq's defaults, then the user's
/// `mq.kafka.consumer.properties` on top.
pub(crate) fn consumer_config(config: &Config, group: &str, client_id: &str) -> ClientConfig {
    let kafka = &config.mq.kafka;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.bootstrap_servers)
        .set("group.id", group)
        .set("client.id", client_id)
        // At-least-once: the framework stores an offset only after the record was handled
        // or dead-lettered; librdkafka commits stored offsets in the background.
        .set("enable.auto.commit", "true")
        .set("enable.auto.offset.store", "false")
        // librdkafka commits stored offsets when they moved, every 100 ms (its default is
        // 5 s): after a crash, at most ~100 ms of handled records are delivered again.
        .set("auto.commit.interval.ms", "100")
        .set(
            "auto.offset.reset",
            match kafka.consumer.auto_offset_reset {
                AutoOffsetReset::Earliest => "earliest",
                AutoOffsetReset::Latest => "latest",
            },
        )
        // librdkafka's default (1000 ms) stops fetching for a whole second whenever the
        // read-ahead queue fills; 10 ms keeps a busy partition flowing (4x throughput here).
        .set("fetch.queue.backoff.ms", "10")
        .set("statistics.interval.ms", "5000");
    for (k, v) in flatten_properties(&kafka.properties)
        .into_iter()
        .chain(flatten_properties(&kafka.consumer.properties))
    {
        c.set(k, v);
    }
    c
}

/// Room for what a dead letter adds to the largest accepted value: its key, the original
/// headers and the `kafka_dlt-*` headers (the stack trace alone is up to 8 KiB).
pub(crate) const DEAD_LETTER_HEADROOM: usize = 64 * 1024;

/// librdkafka settings of the producer: `acks` from config, idempotence on,
/// `message.max.bytes` large enough for a dead letter of any accepted record
/// (`max-payload-bytes` + [`DEAD_LETTER_HEADROOM`]; librdkafka's default, 1,000,000, is
/// below mq's 1 MiB payload limit), then the user's `mq.kafka.producer.properties`.
pub(crate) fn producer_config(config: &Config) -> ClientConfig {
    let kafka = &config.mq.kafka;
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &kafka.bootstrap_servers)
        .set(
            "client.id",
            format!("{}-producer", config.mq.application.name),
        )
        .set("acks", &kafka.producer.acks)
        .set(
            "enable.idempotence",
            if kafka.producer.acks == "all" || kafka.producer.acks == "-1" {
                "true"
            } else {
                "false"
            },
        )
        .set(
            "message.max.bytes",
            (config.mq.listener.max_payload_bytes.min(512 * 1024 * 1024) + DEAD_LETTER_HEADROOM)
                .to_string(),
        );
    for (k, v) in flatten_properties(&kafka.properties)
        .into_iter()
        .chain(flatten_properties(&kafka.producer.properties))
    {
        c.set(k, v);
    }
    c
}

/// Settings of the admin client (topic creation, health probe): the broker list and
/// `mq.kafka.properties` (where security settings belong).
pub(crate) fn admin_config(config: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.mq.kafka.bootstrap_servers);
    for (k, v) in flatten_properties(&config.mq.kafka.properties) {
        c.set(k, v);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_properties_reach_every_client_and_specific_ones_win() {
        let config = Config::from_yaml_str(
            "mq:\n  kafka:\n    properties:\n      security.protocol: SASL_SSL\n      client.rack: a\n    consumer:\n      properties:\n        client.rack: b\n",
        )
        .unwrap();
        let consumer = consumer_config(&config, "g", "c");
        let producer = producer_config(&config);
        let admin = admin_config(&config);
        for c in [&consumer, &producer, &admin] {
            assert_eq!(c.get("security.protocol"), Some("SASL_SSL"));
        }
        assert_eq!(consumer.get("client.rack"), Some("b"));
        assert_eq!(producer.get("client.rack"), Some("a"));
        assert_eq!(consumer.get("enable.auto.offset.store"), Some("false"));
    }

    #[test]
    fn the_producer_takes_a_dead_letter_of_the_largest_accepted_record() {
        let config =
            Config::from_yaml_str("mq:\n  listener:\n    max-payload-bytes: 2000000\n").unwrap();
        assert_eq!(
            producer_config(&config).get("message.max.bytes"),
            Some((2_000_000 + DEAD_LETTER_HEADROOM).to_string().as_str())
        );
        let own = Config::from_yaml_str(
            "mq:\n  kafka:\n    producer:\n      properties:\n        message.max.bytes: 5000\n",
        )
        .unwrap();
        assert_eq!(producer_config(&own).get("message.max.bytes"), Some("5000"));
    }
}
