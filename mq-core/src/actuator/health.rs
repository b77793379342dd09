//! Health model as Spring Boot's: [`Status`], [`Health`], the [`HealthIndicator`] trait, and
//! how component statuses aggregate.
//!
//! The JSON is Spring Boot's:
//! `{"status":"UP","components":{"kafka":{"status":"UP","details":{..}},"listeners":{..}}}`.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

/// The status of a component or of the whole application, as in Spring Boot.
///
/// `DOWN` and `OUT_OF_SERVICE` answer HTTP 503, `UP` and `UNKNOWN` 200.
///
/// ```
/// use mq_core::actuator::Status;
/// assert_eq!(serde_json::to_string(&Status::OutOfService).unwrap(), "\"OUT_OF_SERVICE\"");
/// assert_eq!(Status::Down.http_status(), 503);
/// assert_eq!(Status::Up.http_status(), 200);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Working.
    Up,
    /// Not working.
    Down,
    /// Working, but taken out of service on purpose (e.g. shutting down, not ready yet).
    OutOfService,
    /// Cannot tell.
    Unknown,
}

impl Status {
    /// The status code as Spring Boot writes it: `UP`, `DOWN`, `OUT_OF_SERVICE`, `UNKNOWN`.
    ///
    /// ```
    /// assert_eq!(mq_core::actuator::Status::Unknown.as_str(), "UNKNOWN");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Up => "UP",
            Status::Down => "DOWN",
            Status::OutOfService => "OUT_OF_SERVICE",
            Status::Unknown => "UNKNOWN",
        }
    }

    /// The HTTP status a health endpoint answers with (Spring Boot's default mapping).
    ///
    /// ```
    /// assert_eq!(mq_core::actuator::Status::OutOfService.http_status(), 503);
    /// ```
    pub fn http_status(self) -> u16 {
        match self {
            Status::Down | Status::OutOfService => 503,
            Status::Up | Status::Unknown => 200,
        }
    }

    /// Lower is worse: the order Spring Boot's `SimpleStatusAggregator` uses.
    fn severity(self) -> u8 {
        match self {
            Status::Down => 0,
            Status::OutOfService => 1,
            Status::Up => 2,
            Status::Unknown => 3,
        }
    }

    /// The aggregate of `statuses`: the worst one (`DOWN` < `OUT_OF_SERVICE` < `UP` <
    /// `UNKNOWN`), `UNKNOWN` when there is none.
    ///
    /// ```
    /// use mq_core::actuator::Status;
    /// assert_eq!(Status::aggregate([Status::Up, Status::Down, Status::OutOfService]), Status::Down);
    /// assert_eq!(Status::aggregate([Status::Up, Status::Unknown]), Status::Up);
    /// assert_eq!(Status::aggregate([]), Status::Unknown);
    /// ```
    pub fn aggregate(statuses: impl IntoIterator<Item = Status>) -> Status {
        statuses
            .into_iter()
            .min_by_key(|s| s.severity())
            .unwrap_or(Status::Unknown)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Status {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The health of one component: a [`Status`], optional details, optional sub-components.
///
/// ```
/// use mq_core::actuator::{Health, Status};
/// let h = Health::up().with_detail("connections", 3).with_detail("pool", "main");
/// assert_eq!(h.status, Status::Up);
/// assert_eq!(
///     serde_json::to_value(&h).unwrap(),
///     serde_json::json!({"status": "UP", "details": {"connections": 3, "pool": "main"}})
/// );
/// ```
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Health {
    /// The status.
    pub status: Status,
    /// Free-form details, shown when `management.endpoint.health.show-details: always`.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub details: Map<String, Value>,
    /// Sub-components (a composite such as `listeners` has one per listener).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub components: BTreeMap<String, Health>,
}

impl Health {
    /// A health with `status` and nothing else.
    ///
    /// ```
    /// use mq_core::actuator::{Health, Status};
    /// assert_eq!(Health::new(Status::Unknown).status, Status::Unknown);
    /// ```
    pub fn new(status: Status) -> Health {
        Health {
            status,
            details: Map::new(),
            components: BTreeMap::new(),
        }
    }

    /// `UP`.
    ///
    /// ```
    /// assert_eq!(mq_core::actuator::Health::up().status, mq_core::actuator::Status::Up);
    /// ```
    pub fn up() -> Health {
        Health::new(Status::Up)
    }

    /// `DOWN`.
    ///
    /// ```
    /// assert_eq!(mq_core::actuator::Health::down().status, mq_core::actuator::Status::Down);
    /// ```
    pub fn down() -> Health {
        Health::new(Status::Down)
    }

    /// `OUT_OF_SERVICE`.
    ///
    /// ```
    /// use mq_core::actuator::{Health, Status};
    /// assert_eq!(Health::out_of_service().status, Status::OutOfService);
    /// ```
    pub fn out_of_service() -> Health {
        Health::new(Status::OutOfService)
    }

    /// `UNKNOWN`.
    ///
    /// ```
    /// use mq_core::actuator::{Health, Status};
    /// assert_eq!(Health::unknown().status, Status::Unknown);
    /// ```
    pub fn unknown() -> Health {
        Health::new(Status::Unknown)
    }

    /// Adds a detail (any serializable value; one that fails to serialize becomes `null`).
    ///
    /// ```
    /// let h = mq_core::actuator::Health::down().with_detail("error", "connection refused");
    /// assert_eq!(h.details["error"], "connection refused");
    /// ```
    pub fn with_detail(mut self, key: impl Into<String>, value: impl Serialize) -> Health {
        self.details.insert(
            key.into(),
            serde_json::to_value(value).unwrap_or(Value::Null),
        );
        self
    }

    /// Adds a sub-component. The status is not recomputed; see [`Health::composite`].
    ///
    /// ```
    /// use mq_core::actuator::Health;
    /// let h = Health::up().with_component("replica-1", Health::up());
    /// assert!(h.components.contains_key("replica-1"));
    /// ```
    pub fn with_component(mut self, name: impl Into<String>, health: Health) -> Health {
        self.components.insert(name.into(), health);
        self
    }

    /// A composite: the given components, with their aggregate status
    /// ([`Status::aggregate`]).
    ///
    /// ```
    /// use mq_core::actuator::{Health, Status};
    /// let h = Health::composite([("a".to_string(), Health::up()), ("b".to_string(), Health::down())]);
    /// assert_eq!(h.status, Status::Down);
    /// assert_eq!(h.components.len(), 2);
    /// ```
    pub fn composite(components: impl IntoIterator<Item = (String, Health)>) -> Health {
        let components: BTreeMap<String, Health> = components.into_iter().collect();
        Health {
            status: Status::aggregate(components.values().map(|h| h.status)),
            details: Map::new(),
            components,
        }
    }

    /// The JSON an endpoint returns: everything when `details`, else the status alone
    /// (Spring Boot's `show-details: never`).
    pub(crate) fn to_json(&self, details: bool) -> Value {
        if details {
            serde_json::to_value(self).unwrap_or(Value::Null)
        } else {
            serde_json::json!({ "status": self.status })
        }
    }
}

/// The future a [`HealthIndicator`] returns: `Box::pin(async move { .. })`.
///
/// ```
/// use mq_core::actuator::{Health, HealthFuture};
/// let f: HealthFuture<'static> = Box::pin(async { Health::up() });
/// # let _ = f;
/// ```
pub type HealthFuture<'a> = Pin<Box<dyn Future<Output = Health> + Send + 'a>>;

/// A health check of your own, shown under `components.<name>` of `/actuator/health`
/// (Spring Boot's `HealthIndicator`). Register it with
/// `App::with_health_indicator`.
///
/// A plain closure returning a [`Health`] is an indicator (a synchronous check):
///
/// ```
/// use mq_core::actuator::Health;
/// let app = mq_core::App::new(Default::default())
///     .with_health_indicator("disk", || Health::up().with_detail("free", "12 GiB"));
/// # let _ = app;
/// ```
///
/// An asynchronous check implements the trait and returns a boxed future:
///
/// ```
/// use mq_core::actuator::{Health, HealthFuture, HealthIndicator};
///
/// struct Database { timeout: std::time::Duration }
///
/// impl HealthIndicator for Database {
///     fn health(&self) -> HealthFuture<'_> {
///         Box::pin(async move {
///             let select_1 = async { Ok::<_, String>(()) }; // e.g. `SELECT 1`
///             match tokio::time::timeout(self.timeout, select_1).await {
///                 Ok(Ok(())) => Health::up(),
///                 Ok(Err(e)) => Health::down().with_detail("error", e),
///                 Err(_) => Health::down().with_detail("error", "timed out"),
///             }
///         })
///     }
/// }
///
/// let app = mq_core::App::new(Default::default())
///     .with_health_indicator("db", Database { timeout: std::time::Duration::from_secs(1) });
/// # let _ = app;
/// ```
///
/// A check is evaluated on every request of `/actuator/health` (cache it if it is
/// expensive; a closure runs on the async runtime, so keep it quick and non-blocking); one that takes longer than 10 s is reported `DOWN`, and so is one that
/// panics. User indicators count in `/actuator/health`, not in the `liveness` and
/// `readiness` groups.
pub trait HealthIndicator: Send + Sync + 'static {
    /// Checks the component.
    fn health(&self) -> HealthFuture<'_>;
}

impl<F> HealthIndicator for F
where
    F: Fn() -> Health + Send + Sync + 'static,
{
    fn health(&self) -> HealthFuture<'_> {
        let h = self();
        Box::pin(async move { h })
    }
}

/// Named indicators, as registered.
pub(crate) type Indicators = Vec<(String, Arc<dyn HealthIndicator>)>;

/// How long one indicator may take.
const INDICATOR_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one indicator; a timeout or a panic is `DOWN`.
pub(crate) async fn check(indicator: &dyn HealthIndicator) -> Health {
    // Call inside the future, so a closure that panics while building its answer is caught.
    let run = AssertUnwindSafe(async { indicator.health().await }).catch_unwind();
    match tokio::time::timeout(INDICATOR_TIMEOUT, run).await {
        Ok(Ok(h)) => h,
        Ok(Err(_)) => Health::down().with_detail("error", "the health indicator panicked"),
        Err(_) => Health::down().with_detail(
            "error",
            format!("the health indicator did not answer within {INDICATOR_TIMEOUT:?}"),
        ),
    }
}

/// Runs `indicators` concurrently and aggregates them.
pub(crate) async fn evaluate(indicators: &[(String, Arc<dyn HealthIndicator>)]) -> Health {
    let results = futures::future::join_all(
        indicators
            .iter()
            .map(|(name, i)| async move { (name.clone(), check(i.as_ref()).await) }),
    )
    .await;
    Health::composite(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn panicking_indicator_is_down() {
        let bad = || -> Health { panic!("boom") };
        let h = check(&bad).await;
        assert_eq!(h.status, Status::Down);
    }

    #[tokio::test]
    async fn composite_json_matches_spring() {
        let indicators: Indicators = vec![
            (
                "kafka".into(),
                Arc::new(|| Health::up().with_detail("clusterId", "c1")),
            ),
            ("db".into(), Arc::new(Health::out_of_service)),
        ];
        let h = evaluate(&indicators).await;
        assert_eq!(h.status, Status::OutOfService);
        assert_eq!(
            h.to_json(true),
            serde_json::json!({
                "status": "OUT_OF_SERVICE",
                "components": {
                    "db": {"status": "OUT_OF_SERVICE"},
                    "kafka": {"status": "UP", "details": {"clusterId": "c1"}}
                }
            })
        );
        assert_eq!(
            h.to_json(false),
            serde_json::json!({"status": "OUT_OF_SERVICE"})
        );
    }
}
