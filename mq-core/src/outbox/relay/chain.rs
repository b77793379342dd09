//! One key's rows of a pass, published one after the other.

use crate::envelope::Event;
use crate::publisher::PublishErrorKind;

use super::Relay;

/// One pending row.
pub(super) struct Row {
    pub(super) id: i64,
    pub(super) destination: String,
    pub(super) key: Vec<u8>,
    pub(super) event: String,
}

/// How one row ended in this round.
pub(super) enum Outcome {
    Sent(i64),
    Failed(i64, String),
    Parked(i64, String),
}

impl Relay {
    /// Publishes one key's rows in order; stops at the first the broker did not take (the
    /// rest wait for the next round, so the key's order holds). A row the broker refuses
    /// for good (the record, or its destination) or whose event does not parse is set
    /// aside; the key's later rows go on, or wait behind it with
    /// `mq.outbox.strict-key-order`.
    pub(super) async fn publish_chain(&self, chain: Vec<Row>) -> (Vec<u8>, Vec<Outcome>) {
        let key = chain.first().map(|r| r.key.clone()).unwrap_or_default();
        let mut out = Vec::with_capacity(chain.len());
        for row in chain {
            let event: Event<serde_json::Value> = match serde_json::from_str(&row.event) {
                Ok(e) => e,
                Err(e) => {
                    tracing::error!(row = row.id, error = %e, "outbox row is not a CloudEvent: set aside (failed_at)");
                    out.push(Outcome::Parked(row.id, format!("not a CloudEvent: {e}")));
                    if self.settings.strict_key_order {
                        break;
                    }
                    continue;
                }
            };
            let send = self.publisher.send(&row.destination, &row.key, event);
            let result = match tokio::time::timeout(self.settings.publish_timeout, send).await {
                Ok(r) => r,
                Err(_) => {
                    out.push(Outcome::Failed(row.id, "publish timed out".to_owned()));
                    break;
                }
            };
            match result {
                Ok(_) => out.push(Outcome::Sent(row.id)),
                Err(e) if e.kind() != PublishErrorKind::Transient => {
                    tracing::error!(row = row.id, destination = %row.destination, error = %e, kind = ?e.kind(),
                        "the broker refuses this outbox row: set aside (failed_at, last_error)");
                    self.stats.set_parked_error(format!("row {}: {e}", row.id));
                    out.push(Outcome::Parked(row.id, e.to_string()));
                    if self.settings.strict_key_order {
                        break;
                    }
                }
                Err(e) => {
                    tracing::debug!(row = row.id, destination = %row.destination, error = %e, "outbox publish failed");
                    self.stats.set_error(e.to_string());
                    out.push(Outcome::Failed(row.id, e.to_string()));
                    break;
                }
            }
        }
        (key, out)
    }
}
