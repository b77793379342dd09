//! Static membership (`group.instance.id`, KIP-345) for every consumer of an app.
//!
//! A StatefulSet user sets one id per pod (`pod-0`) in `mq.kafka.consumer.properties`, but an
//! app runs several consumers: `concurrency` per listener, and several listeners may share a
//! group. The broker allows one member per instance id and group, so consumers sharing one
//! fence each other. Each consumer therefore gets `<configured>-<listener>-<n>` (`n`: its index
//! within the listener's concurrency), as Logstash's and Spring's containers derive theirs:
//! distinct within the app, and stable across restarts of the pod, which is what static
//! membership is for.

use rdkafka::ClientConfig;

/// The librdkafka property.
pub(crate) const KEY: &str = "group.instance.id";

/// The instance id of consumer `n` of `listener`, from the configured one.
pub(crate) fn derive(configured: &str, listener: &str, n: u32) -> String {
    format!("{configured}-{listener}-{n}")
}

/// Rewrites the configured `group.instance.id` of `client` (if any) into consumer `n` of
/// `listener`'s own; an empty one is removed (librdkafka would refuse it).
pub(crate) fn assign(client: &mut ClientConfig, listener: &str, n: u32) {
    let Some(configured) = client.get(KEY).map(|v| v.trim().to_owned()) else {
        return;
    };
    if configured.is_empty() {
        client.remove(KEY);
    } else {
        client.set(KEY, derive(&configured, listener, n));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_consumer_of_each_listener_gets_its_own_id() {
        let mut ids = std::collections::HashSet::new();
        for listener in ["reserve_stock", "release_stock"] {
            for n in 0..3 {
                let mut c = ClientConfig::new();
                c.set(KEY, "pod-0");
                assign(&mut c, listener, n);
                assert!(ids.insert(c.get(KEY).unwrap().to_owned()));
            }
        }
        assert_eq!(ids.len(), 6);
        assert!(ids.contains("pod-0-reserve_stock-0"));
        assert!(ids.contains("pod-0-release_stock-2"));
    }

    #[test]
    fn without_a_configured_id_nothing_is_set() {
        let mut c = ClientConfig::new();
        assign(&mut c, "l", 0);
        assert_eq!(c.get(KEY), None);
        c.set(KEY, "  ");
        assign(&mut c, "l", 0);
        assert_eq!(c.get(KEY), None);
    }
}
