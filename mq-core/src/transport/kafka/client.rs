//! Client settings: the librdkafka configuration of consumers, producers and admin
//! clients, from `mq.kafka.*`.

use rdkafka::ClientConfig;

use crate::config::{flatten_properties, AutoOffsetReset, Config};
use crate::error::Error;

/// Sets the librdkafka properties of `mq.kafka.{security,ssl,sasl}` (reading PEM and
/// password files). A problem names its key; it never quotes a secret.
fn set_security(c: &mut ClientConfig, config: &Config) -> Result<(), Error> {
    let props = config
        .mq
        .kafka
        .security()
        .client_properties()
        .map_err(|problems| Error::Kafka(problems.join("; ")))?;
    for (k, v) in props {
        c.set(k, v);
    }
    Ok(())
}

/// librdkafka settings of a listener's consumer: mq's defaults, the security settings,
/// then the user's `mq.kafka.properties` and `mq.kafka.consumer.properties` on top.
pub(crate) fn consumer_config(
    config: &Config,
    group: &str,
    client_id: &str,
) -> Result<ClientConfig, Error> {
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
    set_security(&mut c, config)?;
    for (k, v) in flatten_properties(&kafka.properties)
        .into_iter()
        .chain(flatten_properties(&kafka.consumer.properties))
    {
        c.set(k, v);
    }
    Ok(c)
}

/// Room for what a dead letter adds to the largest accepted value: its key, the original
/// headers and the `kafka_dlt-*` headers (the stack trace alone is up to 8 KiB).
pub(crate) const DEAD_LETTER_HEADROOM: usize = 64 * 1024;

/// librdkafka settings of the producer: `acks` from config, idempotence on,
/// `message.max.bytes` large enough for a dead letter of any accepted record
/// (`max-payload-bytes` + [`DEAD_LETTER_HEADROOM`]; librdkafka's default, 1,000,000, is
/// below mq's 1 MiB payload limit), the security settings, then the user's
/// `mq.kafka.properties` and `mq.kafka.producer.properties`.
pub(crate) fn producer_config(config: &Config) -> Result<ClientConfig, Error> {
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
    set_security(&mut c, config)?;
    for (k, v) in flatten_properties(&kafka.properties)
        .into_iter()
        .chain(flatten_properties(&kafka.producer.properties))
    {
        c.set(k, v);
    }
    Ok(c)
}

/// Settings of the admin client (topic creation, health probe): the broker list, the
/// security settings and `mq.kafka.properties`.
pub(crate) fn admin_config(config: &Config) -> Result<ClientConfig, Error> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &config.mq.kafka.bootstrap_servers);
    set_security(&mut c, config)?;
    for (k, v) in flatten_properties(&config.mq.kafka.properties) {
        c.set(k, v);
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_properties_reach_every_client_and_specific_ones_win() {
        let config = Config::from_yaml_str(
            "mq:\n  kafka:\n    properties:\n      security.protocol: SSL\n      client.rack: a\n    consumer:\n      properties:\n        client.rack: b\n",
        )
        .unwrap();
        let consumer = consumer_config(&config, "g", "c").unwrap();
        let producer = producer_config(&config).unwrap();
        let admin = admin_config(&config).unwrap();
        for c in [&consumer, &producer, &admin] {
            assert_eq!(c.get("security.protocol"), Some("SSL"));
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
            producer_config(&config).unwrap().get("message.max.bytes"),
            Some((2_000_000 + DEAD_LETTER_HEADROOM).to_string().as_str())
        );
        let own = Config::from_yaml_str(
            "mq:\n  kafka:\n    producer:\n      properties:\n        message.max.bytes: 5000\n",
        )
        .unwrap();
        assert_eq!(
            producer_config(&own).unwrap().get("message.max.bytes"),
            Some("5000")
        );
    }
}
