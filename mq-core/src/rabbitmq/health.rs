//! The `rabbit` health component (Spring Boot's `RabbitHealthIndicator`): UP when the
//! app's connection is open or can be opened, DOWN with the error otherwise.

use std::sync::Arc;

use super::connection::Rabbit;
use crate::actuator::{Health, HealthFuture, HealthIndicator};

/// Checks the app's RabbitMQ connection.
pub(crate) struct RabbitHealth(pub(crate) Arc<Rabbit>);

impl HealthIndicator for RabbitHealth {
    fn health(&self) -> HealthFuture<'_> {
        Box::pin(async move {
            let address = self.0.address();
            if self.0.is_connected().await {
                return Health::up().with_detail("address", address);
            }
            let probe =
                tokio::time::timeout(std::time::Duration::from_secs(2), self.0.connection());
            match probe.await {
                Ok(Ok(_)) => Health::up().with_detail("address", address),
                Ok(Err(e)) => Health::down()
                    .with_detail("address", address)
                    .with_detail("error", e),
                Err(_) => Health::down()
                    .with_detail("address", address)
                    .with_detail("error", "no answer within 2 s"),
            }
        })
    }
}
