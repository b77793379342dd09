//! `GET /actuator/listeners` and `POST /actuator/listeners/{name}`: each listener's state,
//! consumers and lanes, and pausing or resuming it (Spring's `KafkaListenerEndpointRegistry`
//! over HTTP, as the Spring Cloud Stream `bindings` endpoint does). Exposed only when
//! `management.endpoints.web.exposure.include` names `listeners`; behind the actuator's
//! authentication like every endpoint but the probes.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};

use super::listeners::{ConsumerSource, ConsumerView};
use super::{json_response, Actuator};
use crate::control::{Controls, ListenerState};
use crate::registry::ListenerSpec;

/// What the endpoint reads and changes.
pub(super) struct ListenerControl {
    pub(super) specs: Vec<ListenerSpec>,
    pub(super) consumers: ConsumerSource,
    pub(super) controls: Controls,
}

impl ListenerControl {
    fn describe(&self, spec: &ListenerSpec, views: &[ConsumerView]) -> Value {
        let gate = self.controls.get(spec.name);
        let state = gate.as_ref().map_or(ListenerState::Running, |g| g.state());
        let consumers: Vec<Value> = views
            .iter()
            .filter(|v| v.listener == spec.name)
            .map(|v| {
                let lanes: Vec<Value> = v
                    .lanes
                    .iter()
                    .map(|l| {
                        json!({
                            "source": l.topic,
                            "partition": l.partition,
                            "inHandlerMs": l.in_handler_ms,
                            "bufferedBytes": l.buffered_bytes,
                            "fetchPaused": l.paused,
                            "failed": l.failed,
                            "closing": l.closing,
                        })
                    })
                    .collect();
                json!({
                    "assigned": v.assigned,
                    "member": v.member,
                    "rebalances": v.rebalances,
                    "stopped": v.stopped,
                    "lanes": lanes,
                })
            })
            .collect();
        json!({
            "state": state,
            "group": spec.group,
            "sources": spec.sources(),
            "waiting": gate.map_or(0, |g| g.waiting()),
            "consumers": consumers,
        })
    }
}

/// `GET /actuator/listeners`
pub(super) async fn list(State(a): State<Arc<Actuator>>) -> Response {
    let Some(control) = &a.control else {
        return problem(
            StatusCode::NOT_FOUND,
            "the listeners endpoint is not exposed".to_owned(),
        );
    };
    let views = (control.consumers)();
    let listeners: serde_json::Map<String, Value> = control
        .specs
        .iter()
        .map(|s| (s.name.to_owned(), control.describe(s, &views)))
        .collect();
    json_response(StatusCode::OK, &json!({ "listeners": listeners }))
}

/// `POST /actuator/listeners/{name}` with `{"state": "paused" | "running"}`.
pub(super) async fn change(
    State(a): State<Arc<Actuator>>,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let Some(control) = &a.control else {
        return problem(
            StatusCode::NOT_FOUND,
            "the listeners endpoint is not exposed".to_owned(),
        );
    };
    let Some(spec) = control.specs.iter().find(|s| s.name == name) else {
        return problem(
            StatusCode::NOT_FOUND,
            format!("no listener named {name:?} runs in this app"),
        );
    };
    let wanted = match serde_json::from_slice::<Value>(&body) {
        Ok(v) => v.get("state").cloned().unwrap_or(Value::Null),
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                format!("the body is not JSON: {e}"),
            )
        }
    };
    let state = match wanted.as_str() {
        Some("paused") => ListenerState::Paused,
        Some("running") => ListenerState::Running,
        Some("stopped") => {
            return problem(
                StatusCode::BAD_REQUEST,
                "\"stopped\" (leaving the group) is not supported yet; \"paused\" keeps the \
                 assignment and handles nothing"
                    .to_owned(),
            )
        }
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                format!("expected {{\"state\": \"paused\" | \"running\"}}, got {wanted}"),
            )
        }
    };
    let gate = control.controls.gate(spec.name);
    if gate.set(state) {
        tracing::info!(listener = spec.name, state = ?state, "listener state changed over the actuator");
    }
    let views = (control.consumers)();
    json_response(StatusCode::OK, &control.describe(spec, &views))
}

fn problem(status: StatusCode, message: String) -> Response {
    json_response(
        status,
        &json!({"status": status.as_u16(), "error": status.canonical_reason(), "message": message}),
    )
}
