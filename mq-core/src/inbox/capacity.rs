//! Whether the datasource's pool can serve the idempotent listeners' records in flight.
//!
//! Each record of an idempotent listener holds a connection (its claim's transaction) until
//! its handler returns, and the open claims are bounded by the pool (see the PostgreSQL
//! store). A listener with `ordering: key` may take `max-in-flight` records of a partition at
//! once: above the claims the pool allows, the rest only wait for a connection. Nothing
//! fails, but the setting promises concurrency the pool cannot give: a startup WARN names
//! both keys.

use crate::config::Ordering;
use crate::registry::ListenerSpec;

/// One WARN line per idempotent listener whose records in flight exceed what a pool of
/// `pool_size` connections serves at once (`claim_limit` of them).
pub(crate) fn warnings(specs: &[ListenerSpec], pool_size: u32, claim_limit: usize) -> Vec<String> {
    specs
        .iter()
        .filter(|s| s.idempotent && s.ordering == Ordering::Key)
        .filter(|s| s.max_in_flight as usize > claim_limit)
        .map(|s| {
            format!(
                "idempotent listener {name}: mq.listeners.{name}.max-in-flight is {in_flight}, but mq.datasource.pool-size is {pool_size}, so at most {claim_limit} of its records run at once (each holds a connection until its handler returns) and the others wait for a connection; raise mq.datasource.pool-size or lower mq.listeners.{name}.max-in-flight",
                name = s.name,
                in_flight = s.max_in_flight,
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(
        name: &'static str,
        idempotent: bool,
        ordering: Ordering,
        max_in_flight: u32,
    ) -> ListenerSpec {
        ListenerSpec {
            name,
            idempotent,
            ordering,
            max_in_flight,
            ..crate::registry::tests::spec_for_topics(&["t"])
        }
    }

    #[test]
    fn only_key_ordered_idempotent_listeners_above_the_pool_are_warned_about() {
        let specs = [
            spec("reserve", true, Ordering::Key, 64),
            spec("fits", true, Ordering::Key, 9),
            spec("ordered", true, Ordering::Partition, 64),
            spec("plain", false, Ordering::Key, 64),
        ];
        let w = warnings(&specs, 10, 9);
        assert_eq!(w.len(), 1, "{w:#?}");
        assert!(
            w[0].contains("mq.listeners.reserve.max-in-flight is 64"),
            "{}",
            w[0]
        );
        assert!(w[0].contains("mq.datasource.pool-size is 10"), "{}", w[0]);
        assert!(w[0].contains("at most 9"), "{}", w[0]);
    }
}
