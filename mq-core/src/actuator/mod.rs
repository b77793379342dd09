//! The actuator: Spring Boot Actuator's endpoints on the management port.
//!
//! | endpoint | what |
//! | --- | --- |
//! | `GET /actuator` | links to the exposed endpoints (`_links`) |
//! | `GET /actuator/health` | `{"status":"UP","components":{"kafka":..,"listeners":..,"publisher":..}}`; 503 when `DOWN` or `OUT_OF_SERVICE` |
//! | `GET /actuator/health/liveness` | is the process working: the listeners' poll loops turn (never the broker) |
//! | `GET /actuator/health/readiness` | can it do its job: the broker answers, every consumer has joined its group, not shutting down |
//! | `GET /actuator/health/{component}` | one component, e.g. `/actuator/health/kafka` |
//! | `GET /actuator/info` | name, version, profiles, listeners (topics, group, retry, DLT), configuration with secrets masked |
//! | `GET /actuator/metrics` | `{"names":[..]}` |
//! | `GET /actuator/metrics/{name}?tag=k:v` | `{"name":..,"measurements":[{"statistic":"COUNT","value":..}],"availableTags":[..]}` |
//! | `GET /actuator/prometheus` | the registry in Prometheus text 0.0.4, or OpenMetrics when `Accept` names `application/openmetrics-text` first |
//! | `GET /actuator/listeners` | each listener's state (`running`, `paused`), records waiting, consumers and lanes (only when `include` names `listeners`) |
//! | `POST /actuator/listeners/{name}` | `{"state":"paused"}` or `{"state":"running"}`: pause or resume a listener |
//!
//! Configuration (as Spring Boot's keys):
//!
//! ```yaml
//! management:
//!   server:
//!     address: 0.0.0.0      # default
//!     port: 8081            # default; 0 picks a free port
//!   endpoints:
//!     web:
//!       base-path: /actuator
//!       exposure:
//!         include: health,info,prometheus   # or "*"; default health
//!         exclude: metrics                  # wins over include; default none
//!   endpoint:
//!     health:
//!       show-details: always                # default never: status only
//!       group:                              # Spring Boot's health groups
//!         readiness:
//!           include: kafka,listeners,warehouse   # a user indicator joins readiness
//!         probe:
//!           include: ping
//!           additional-path: server:/healthz     # also served at /healthz
//!   metrics:
//!     tags:
//!       application: order-service
//! ```
//!
//! With `management.server.auth` (`username` + `password`, and/or `bearer-token`) every
//! request but the liveness and readiness probes needs those credentials (401 otherwise).
//!
//! An endpoint that is not exposed answers 404. Values of keys that name a secret
//! (`password`, `secret`, `sasl`, `token`, `key`, `credential`) never leave the process.
//!
//! Add checks of your own with [`HealthIndicator`] and
//! `App::with_health_indicator`:
//!
//! ```
//! use mq_core::actuator::Health;
//! let app = mq_core::App::new(Default::default())
//!     .with_health_indicator("cache", || Health::up().with_detail("entries", 42));
//! # let _ = app;
//! ```

// Without a transport (the `kafka` feature off) nothing starts the server; it stays
// compiled for the transports to come.
#![cfg_attr(not(feature = "kafka"), allow(dead_code, unused_imports))]

mod auth;
mod control;
mod groups;
mod health;
mod info;
mod listeners;
mod metrics_endpoint;
mod process;
mod prometheus;
mod publisher;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Extension, Path, RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use health::{Health, HealthFuture, HealthIndicator, Status};

pub(crate) use health::Indicators;
pub(crate) use info::DeadLetters;
pub(crate) use listeners::{ConsumerSource, ConsumerView, StartupState};
pub(crate) use publisher::{PublisherStats, TrackedSink};

use crate::config::{Config, ShowDetails};
use crate::metrics::Metrics;
use crate::registry::ListenerSpec;

/// The endpoint ids the actuator knows.
const ENDPOINTS: [&str; 5] = ["health", "info", "metrics", "prometheus", "listeners"];

/// Everything the actuator reports on, handed over by the transport at start.
pub(crate) struct Parts {
    pub(crate) config: Config,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) listeners: Vec<ListenerSpec>,
    /// Where each listener's dead letters go, as its transport names them.
    pub(crate) dead_letters: DeadLetters,
    pub(crate) consumers: ConsumerSource,
    /// The broker reachability check (`kafka`), part of `health` and `readiness`.
    pub(crate) broker: Option<(String, Arc<dyn HealthIndicator>)>,
    pub(crate) publisher: Arc<PublisherStats>,
    /// The application's indicators (`App::with_health_indicator`).
    pub(crate) user: Indicators,
    /// Cancelled when the app starts shutting down (readiness turns `OUT_OF_SERVICE`).
    pub(crate) app_shutdown: CancellationToken,
    /// Why the consumers have not started yet (broker down at startup).
    pub(crate) startup: StartupState,
    /// The listeners' gates (`POST /actuator/listeners/{name}`).
    pub(crate) controls: crate::control::Controls,
}

/// The running actuator server.
pub(crate) struct ActuatorHandle {
    addr: SocketAddr,
    stop: CancellationToken,
    join: tokio::task::JoinHandle<()>,
}

impl ActuatorHandle {
    /// Where it listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets running requests finish (up to 5 s), and ends the server.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let abort = self.join.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), self.join)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

/// Shared state of the handlers.
struct Actuator {
    show_details: ShowDetails,
    metrics: Arc<Metrics>,
    info: Value,
    /// `/actuator/health`
    health: Indicators,
    /// `/actuator/health/<group>`: `liveness`, `readiness` and the configured ones.
    groups: Vec<groups::Group>,
    /// Exposed endpoint ids, in [`ENDPOINTS`] order.
    exposed: Vec<&'static str>,
    base: String,
    /// `/actuator/listeners`, when exposed.
    control: Option<control::ListenerControl>,
}

/// Binds the management port (`None` when `management.server.enabled` is false).
pub(crate) async fn bind(config: &Config) -> Result<Option<TcpListener>, crate::error::Error> {
    let server = &config.management.server;
    if !server.enabled {
        return Ok(None);
    }
    let listener = TcpListener::bind((server.address.as_str(), server.port))
        .await
        .map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "cannot bind the management port {}:{}: {e}",
                    server.address, server.port
                ),
            )
        })?;
    Ok(Some(listener))
}

/// Serves the actuator on `listener` until [`ActuatorHandle::stop`].
pub(crate) fn serve(listener: TcpListener, parts: Parts) -> ActuatorHandle {
    let addr = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
    let router = router(parts);
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    let join = tokio::spawn(async move {
        let serve = axum::serve(listener, router).with_graceful_shutdown(stopped.cancelled_owned());
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "actuator server failed");
        }
    });
    tracing::info!(%addr, "actuator listening");
    ActuatorHandle { addr, stop, join }
}

/// The actuator's routes, for the exposed endpoints only.
fn router(parts: Parts) -> Router {
    let Parts {
        config,
        metrics,
        listeners: specs,
        dead_letters,
        consumers,
        broker,
        publisher,
        user,
        app_shutdown,
        startup,
        controls,
    } = parts;
    let control_parts = (specs.clone(), consumers.clone(), controls);
    metrics.register(|r| r.register_collector(Box::new(process::ProcessCollector)));
    // A rebalance may hold the poll loop for up to the drain timeout.
    let stall_after = config.mq.shutdown.timeout + Duration::from_secs(10);
    let listeners_indicator = |mode| -> Arc<dyn HealthIndicator> {
        Arc::new(listeners::ListenersIndicator {
            specs: specs.clone(),
            consumers: consumers.clone(),
            stall_after,
            shutdown: app_shutdown.clone(),
            mode,
            startup: startup.clone(),
        })
    };
    let mut health: Indicators = Vec::new();
    let mut readiness: Indicators = Vec::new();
    if let Some((name, broker)) = broker {
        health.push((name.clone(), broker.clone()));
        readiness.push((name, broker));
    }
    health.push((
        "listeners".into(),
        listeners_indicator(listeners::Mode::Health),
    ));
    readiness.push((
        "listeners".into(),
        listeners_indicator(listeners::Mode::Readiness),
    ));
    health.push((
        "publisher".into(),
        Arc::new(publisher::PublisherIndicator(publisher)),
    ));
    for (name, indicator) in user {
        // An application's indicator may replace a built-in one of the same name.
        health.retain(|(n, _)| *n != name);
        health.push((name, indicator));
    }
    let ping: Arc<dyn HealthIndicator> = Arc::new(Health::up);
    let liveness_listeners = listeners_indicator(listeners::Mode::Liveness);
    let health_settings = &config.management.endpoint.health;
    let groups = groups::build(
        &health_settings.group,
        &groups::Members {
            health: health.clone(),
            liveness: vec![
                ("ping".into(), ping.clone()),
                ("listeners".into(), liveness_listeners.clone()),
            ],
            readiness,
            ping,
            liveness_listeners,
        },
        health_settings.show_details,
    );
    let web = &config.management.endpoints.web;
    let names = |list: &[String], id: &str| list.iter().any(|e| e.trim() == "*" || e.trim() == id);
    let exposed: Vec<&'static str> = ENDPOINTS
        .into_iter()
        .filter(|id| names(&web.exposure.include, id) && !names(&web.exposure.exclude, id))
        .collect();
    for (key, list) in [
        ("include", &web.exposure.include),
        ("exclude", &web.exposure.exclude),
    ] {
        for id in list {
            if id.trim() != "*" && !ENDPOINTS.contains(&id.trim()) {
                tracing::warn!(endpoint = %id, "management.endpoints.web.exposure.{key} names an unknown endpoint");
            }
        }
    }
    let base = web.base_path.trim_end_matches('/').to_owned();
    let state = Arc::new(Actuator {
        show_details: config.management.endpoint.health.show_details,
        info: info::info(&config, &specs, &*dead_letters),
        metrics,
        health,
        groups,
        control: exposed.contains(&"listeners").then(|| {
            let (specs, consumers, controls) = control_parts;
            control::ListenerControl {
                specs,
                consumers,
                controls,
            }
        }),
        exposed,
        base,
    });
    let base = state.base.clone();
    let mut router = Router::new();
    if !base.is_empty() {
        router = router.route(&base, get(links));
    }
    for id in &state.exposed {
        router = match *id {
            "health" => router
                .route(&format!("{base}/health"), get(health_all))
                .route(&format!("{base}/health/{{*path}}"), get(health_path)),
            "info" => router.route(&format!("{base}/info"), get(info_endpoint)),
            "metrics" => router
                .route(&format!("{base}/metrics"), get(metric_names))
                .route(&format!("{base}/metrics/{{name}}"), get(metric_one)),
            "prometheus" => router.route(&format!("{base}/prometheus"), get(prometheus_endpoint)),
            "listeners" => router
                .route(&format!("{base}/listeners"), get(control::list))
                .route(
                    &format!("{base}/listeners/{{name}}"),
                    axum::routing::post(control::change),
                ),
            _ => router,
        };
    }
    for (i, group) in state.groups.iter().enumerate() {
        if let Some(path) = &group.additional_path {
            router = router.route(
                path,
                get(
                    move |State(a): State<Arc<Actuator>>, caller: Caller| async move {
                        let group = &a.groups[i];
                        let h = health::evaluate(&group.indicators).await;
                        health_response(&h, details(group.show_details, &caller))
                    },
                ),
            );
        }
    }
    let mut open: Vec<String> = ["liveness", "readiness"]
        .iter()
        .map(|g| format!("{base}/health/{g}"))
        .collect();
    open.extend(
        state
            .groups
            .iter()
            .filter_map(|g| g.additional_path.clone()),
    );
    let router = router.fallback(not_found).with_state(state);
    match auth::Auth::new(&config.management.server.auth, open) {
        Some(auth) => router.layer(axum::middleware::from_fn_with_state(auth, auth::require)),
        None => router,
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.to_string(),
    )
        .into_response()
}

async fn not_found(uri: Uri) -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"status": 404, "error": "Not Found", "path": uri.path()}),
    )
}

/// `GET /actuator`: Spring's links document. The links are paths from the server's root
/// (`/actuator/health`), not built from the request's `Host` header: a client cannot make
/// the service hand out links to another host, and the links stay right behind a proxy
/// that keeps the path.
async fn links(State(a): State<Arc<Actuator>>) -> Response {
    let root = a.base.clone();
    let link = |path: &str, templated: bool| {
        let href = format!("{root}{path}");
        let href = if href.is_empty() {
            "/".to_owned()
        } else {
            href
        };
        json!({"href": href, "templated": templated})
    };
    let mut links = serde_json::Map::new();
    links.insert("self".into(), link("", false));
    for id in &a.exposed {
        match *id {
            "health" => {
                links.insert("health".into(), link("/health", false));
                links.insert("health-path".into(), link("/health/{*path}", true));
            }
            "metrics" => {
                links.insert("metrics".into(), link("/metrics", false));
                links.insert(
                    "metrics-requiredMetricName".into(),
                    link("/metrics/{requiredMetricName}", true),
                );
            }
            other => {
                links.insert(other.into(), link(&format!("/{other}"), false));
            }
        }
    }
    json_response(StatusCode::OK, &json!({ "_links": links }))
}

fn health_response(h: &Health, show_details: bool) -> Response {
    let code = StatusCode::from_u16(h.status.http_status()).unwrap_or(StatusCode::OK);
    json_response(code, &h.to_json(show_details))
}

/// Who asked: `Some` when the request carried the credentials of `management.server.auth`.
type Caller = Option<Extension<auth::Authenticated>>;

/// Whether this request sees health details.
fn details(setting: ShowDetails, caller: &Caller) -> bool {
    match setting {
        ShowDetails::Never => false,
        ShowDetails::Always => true,
        ShowDetails::WhenAuthorized => caller.is_some(),
    }
}

async fn health_all(State(a): State<Arc<Actuator>>, caller: Caller) -> Response {
    let h = health::evaluate(&a.health).await;
    health_response(&h, details(a.show_details, &caller))
}

/// `/health/<group>` (`liveness`, `readiness`, configured ones), `/health/<component>[/<sub>...]`.
async fn health_path(
    State(a): State<Arc<Actuator>>,
    Path(path): Path<String>,
    caller: Caller,
    uri: Uri,
) -> Response {
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    let first = segments.next().unwrap_or("");
    let mut show_details = a.show_details;
    let mut h = match a.groups.iter().find(|g| g.name == first) {
        Some(group) => {
            show_details = group.show_details;
            health::evaluate(&group.indicators).await
        }
        None => match a.health.iter().find(|(n, _)| n == first) {
            Some((_, indicator)) => health::check(indicator.as_ref()).await,
            None => return not_found(uri).await,
        },
    };
    for segment in segments {
        match h.components.remove(segment) {
            Some(sub) => h = sub,
            None => return not_found(uri).await,
        }
    }
    health_response(&h, details(show_details, &caller))
}

async fn info_endpoint(State(a): State<Arc<Actuator>>) -> Response {
    json_response(StatusCode::OK, &a.info)
}

async fn metric_names(State(a): State<Arc<Actuator>>) -> Response {
    json_response(
        StatusCode::OK,
        &metrics_endpoint::names(&a.metrics.encode()),
    )
}

async fn metric_one(
    State(a): State<Arc<Actuator>>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
    uri: Uri,
) -> Response {
    let tags = match metrics_endpoint::tags_of(query.as_deref()) {
        Ok(t) => t,
        Err(metrics_endpoint::MetricError::BadTag(t)) => {
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({"status": 400, "error": "Bad Request", "message": format!("tag {t:?} is not key:value"), "path": uri.path()}),
            )
        }
        Err(metrics_endpoint::MetricError::NotFound) => return not_found(uri).await,
    };
    match metrics_endpoint::metric(&a.metrics.encode(), &name, &tags) {
        Ok(body) => json_response(StatusCode::OK, &body),
        Err(_) => not_found(uri).await,
    }
}

async fn prometheus_endpoint(State(a): State<Arc<Actuator>>, headers: HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|h| h.to_str().ok());
    let text = a.metrics.encode();
    let (content_type, body) = if prometheus::wants_openmetrics(accept) {
        (prometheus::OPENMETRICS, text)
    } else {
        (prometheus::TEXT_004, prometheus::to_text_004(&text))
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests;
