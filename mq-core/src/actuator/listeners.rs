//! The `listeners` health component: is each listener's consumer loop turning (liveness),
//! and has it joined its group (readiness)?

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::health::{Health, HealthFuture, HealthIndicator};
use crate::registry::ListenerSpec;

/// What the actuator sees of one consumer of a listener (copied from the transport's
/// live status at each check).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConsumerView {
    /// The listener it belongs to.
    pub(crate) listener: &'static str,
    /// Partitions assigned right now.
    pub(crate) assigned: usize,
    /// Unix millis of the last turn of its poll loop (0: not started yet).
    pub(crate) last_poll_ms: i64,
    /// Rebalances it went through (> 0: it has joined its group at least once).
    pub(crate) rebalances: usize,
    /// In its group right now (an assignment, possibly empty, and no revocation since).
    pub(crate) member: bool,
    /// Its lanes (one per assigned partition, plus closing ones still running).
    pub(crate) lanes: Vec<crate::consume::LaneView>,
    /// Why it stopped for good (a fatal error: fenced, not authorized), if it has.
    pub(crate) stopped: Option<String>,
}

/// Reads the current views of every consumer.
pub(crate) type ConsumerSource = Arc<dyn Fn() -> Vec<ConsumerView> + Send + Sync>;

/// Why the consumers have not started yet (e.g. "waiting for the broker to create the
/// topics: ..."), `None` once they run. A listener without consumers is not ready.
pub(crate) type StartupState = Arc<std::sync::Mutex<Option<String>>>;

/// Which question the indicator answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Only "is every poll loop turning?" (a stalled loop is `DOWN`).
    Liveness,
    /// `/actuator/health`: also `OUT_OF_SERVICE` while shutting down, or until every
    /// consumer joined its group once (a rebalance later on is not an outage).
    Health,
    /// `/actuator/health/readiness`: the same question as [`Mode::Health`]. Readiness
    /// means "can serve": a rebalance (which every replica of a group goes through at
    /// once) does not take the service out of its load balancer, or every replica would
    /// be dropped together on each deployment.
    Readiness,
}

/// The `listeners` component: one sub-component per listener.
pub(crate) struct ListenersIndicator {
    pub(crate) specs: Vec<ListenerSpec>,
    pub(crate) consumers: ConsumerSource,
    /// A poll loop silent for longer than this is stalled.
    pub(crate) stall_after: Duration,
    /// Cancelled when the app starts shutting down.
    pub(crate) shutdown: CancellationToken,
    pub(crate) mode: Mode,
    /// Why the consumers are not started yet.
    pub(crate) startup: StartupState,
}

impl HealthIndicator for ListenersIndicator {
    fn health(&self) -> HealthFuture<'_> {
        let h = self.evaluate(chrono::Utc::now().timestamp_millis());
        Box::pin(async move { h })
    }
}

impl ListenersIndicator {
    fn evaluate(&self, now_ms: i64) -> Health {
        let views = (self.consumers)();
        let stall_ms = self.stall_after.as_millis() as i64;
        let shutting_down = self.shutdown.is_cancelled();
        let components = self.specs.iter().map(|spec| {
            let mine: Vec<&ConsumerView> =
                views.iter().filter(|v| v.listener == spec.name).collect();
            let mut stalled = false;
            let mut never_joined = false;
            let stopped: Vec<&str> = mine.iter().filter_map(|v| v.stopped.as_deref()).collect();
            let mut failed_lanes = Vec::new();
            let mut stuck_lanes = Vec::new();
            let warn_ms = spec.handler_warn_after.as_millis() as i64;
            for lane in mine.iter().flat_map(|v| &v.lanes) {
                let at = json!({
                    "topic": lane.topic,
                    "partition": lane.partition,
                    "offset": lane.offset,
                    "inHandlerMs": lane.in_handler_ms,
                });
                if lane.failed {
                    failed_lanes.push(at);
                } else if lane.in_handler_ms > 0 && lane.in_handler_ms >= warn_ms {
                    stuck_lanes.push(at);
                }
            }
            let consumers: Vec<_> = mine
                .iter()
                .map(|v| {
                    let age = if v.last_poll_ms > 0 {
                        Some((now_ms - v.last_poll_ms).max(0))
                    } else {
                        None
                    };
                    // A stopped consumer's loop ended on purpose: not a stall (a restart
                    // would not cure what stopped it).
                    stalled |= v.stopped.is_none() && age.is_some_and(|a| a > stall_ms);
                    never_joined |= v.rebalances == 0 && !v.member && v.stopped.is_none();
                    let mut c = json!({
                        "member": v.member,
                        "assignedPartitions": v.assigned,
                        "lastPollAgeMs": age,
                        "rebalances": v.rebalances,
                    });
                    if let Some(why) = &v.stopped {
                        c["stopped"] = json!(why);
                    }
                    c
                })
                .collect();
            let health = if stalled {
                Health::down().with_detail(
                    "reason",
                    format!("a consumer's poll loop has not turned for more than {stall_ms} ms"),
                )
            } else if self.mode != Mode::Liveness && !stopped.is_empty() {
                Health::down().with_detail(
                    "reason",
                    format!(
                        "{} of {} consumers stopped: {}",
                        stopped.len(),
                        mine.len(),
                        stopped.join("; ")
                    ),
                )
            } else if self.mode != Mode::Liveness && !failed_lanes.is_empty() {
                Health::down().with_detail(
                    "reason",
                    "a partition's lane stopped: processing a record kept panicking (see the log)",
                )
            } else if self.mode != Mode::Liveness && shutting_down {
                Health::out_of_service().with_detail("reason", "shutting down")
            } else if self.mode != Mode::Liveness && mine.is_empty() {
                let why = self
                    .startup
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                Health::out_of_service().with_detail(
                    "reason",
                    why.unwrap_or_else(|| "consumers not started yet".to_owned()),
                )
            } else if self.mode != Mode::Liveness && never_joined {
                Health::out_of_service().with_detail("reason", "joining the consumer group")
            } else {
                Health::up()
            };
            // What the listener reads, as its spec says: a group's topics, or queues.
            let health = if spec.topics.is_empty() {
                health
            } else {
                health
                    .with_detail("group", &spec.group)
                    .with_detail("topics", &spec.topics)
            };
            let health = if spec.queues.is_empty() {
                health
            } else {
                health.with_detail("queues", &spec.queues)
            };
            let health = health
                .with_detail(
                    "assignedPartitions",
                    mine.iter().map(|v| v.assigned).sum::<usize>(),
                )
                .with_detail("consumers", consumers);
            let health = if stuck_lanes.is_empty() {
                health
            } else {
                health.with_detail("stuckLanes", stuck_lanes)
            };
            let health = if failed_lanes.is_empty() {
                health
            } else {
                health.with_detail("failedLanes", failed_lanes)
            };
            (spec.name.to_owned(), health)
        });
        let mut health = Health::composite(components.collect::<Vec<_>>());
        if self.specs.is_empty() {
            health = if self.mode != Mode::Liveness && shutting_down {
                Health::out_of_service().with_detail("reason", "shutting down")
            } else {
                Health::up()
            };
        }
        health
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actuator::health::Status;

    fn spec(name: &'static str) -> ListenerSpec {
        ListenerSpec {
            name,
            topics: vec![format!("{name}-topic")],
            queues: Vec::new(),
            bindings: Vec::new(),
            group: "g".into(),
            concurrency: 1,
            retry: crate::config::RetryConfig::default(),
            dlt: Default::default(),
            auto_startup: true,
            ordering: Default::default(),
            max_in_flight: 1,
            handler_warn_after: Duration::from_secs(60),
            handler_timeout: None,
            share_group: false,
            idempotent: false,
            handler: |_| Box::pin(async { Ok(()) }),
        }
    }

    fn indicator(views: Vec<ConsumerView>, mode: Mode) -> ListenersIndicator {
        ListenersIndicator {
            specs: vec![spec("a"), spec("b")],
            consumers: Arc::new(move || views.clone()),
            stall_after: Duration::from_secs(10),
            shutdown: CancellationToken::new(),
            mode,
            startup: StartupState::default(),
        }
    }

    fn view(
        listener: &'static str,
        assigned: usize,
        last_poll_ms: i64,
        rebalances: usize,
    ) -> ConsumerView {
        ConsumerView {
            listener,
            assigned,
            last_poll_ms,
            rebalances,
            member: rebalances > 0,
            lanes: Vec::new(),
            stopped: None,
        }
    }

    #[test]
    fn a_stopped_consumer_is_down_with_its_reason_but_not_stalled() {
        let now = 1_000_000;
        let mut fenced = view("a", 0, now - 60_000, 1);
        fenced.stopped = Some("static consumer fenced (FencedInstanceId)".to_owned());
        let views = vec![fenced, view("a", 1, now, 1), view("b", 1, now, 1)];
        for mode in [Mode::Readiness, Mode::Health] {
            let r = indicator(views.clone(), mode).evaluate(now);
            assert_eq!(r.status, Status::Down, "{mode:?}");
            let a = &r.components["a"];
            assert_eq!(
                a.details["reason"],
                json!("1 of 2 consumers stopped: static consumer fenced (FencedInstanceId)")
            );
            assert_eq!(
                a.details["consumers"][0]["stopped"],
                json!("static consumer fenced (FencedInstanceId)")
            );
            assert_eq!(r.components["b"].status, Status::Up);
        }
        let l = indicator(views, Mode::Liveness).evaluate(now);
        assert_eq!(l.status, Status::Up, "a restart does not cure it");
    }

    #[test]
    fn joining_for_the_first_time_is_out_of_service_but_alive() {
        let now = 1_000_000;
        let views = vec![view("a", 1, now - 100, 1), view("b", 0, now - 100, 0)];
        let r = indicator(views.clone(), Mode::Readiness).evaluate(now);
        assert_eq!(r.status, Status::OutOfService);
        assert_eq!(r.components["a"].status, Status::Up);
        assert_eq!(r.components["b"].status, Status::OutOfService);
        let h = indicator(views.clone(), Mode::Health).evaluate(now);
        assert_eq!(h.status, Status::OutOfService, "never joined");
        let l = indicator(views, Mode::Liveness).evaluate(now);
        assert_eq!(l.status, Status::Up);
    }

    #[test]
    fn a_rebalance_after_the_first_join_keeps_the_service_ready() {
        let now = 1_000_000;
        let mut revoked = view("b", 0, now, 2);
        revoked.member = false;
        let views = vec![view("a", 1, now, 1), revoked];
        let r = indicator(views.clone(), Mode::Readiness).evaluate(now);
        assert_eq!(r.status, Status::Up, "mid-rebalance is still ready");
        assert_eq!(r.components["b"].details["consumers"][0]["member"], false);
        let h = indicator(views, Mode::Health).evaluate(now);
        assert_eq!(h.status, Status::Up);
    }

    #[test]
    fn hung_handlers_are_shown_and_failed_lanes_are_down() {
        let now = 1_000_000;
        let lane = |in_handler_ms, failed| crate::consume::LaneView {
            topic: "a-topic".into(),
            partition: 3,
            epoch: 1,
            in_handler_ms,
            offset: 42,
            buffered_bytes: 0,
            paced_high_bytes: 0,
            paused: false,
            failed,
            closing: false,
        };
        let mut a = view("a", 1, now, 1);
        a.lanes = vec![lane(61_000, false), lane(10, false)];
        let h = indicator(vec![a.clone(), view("b", 1, now, 1)], Mode::Health).evaluate(now);
        assert_eq!(h.status, Status::Up, "a slow handler is not an outage");
        let stuck = &h.components["a"].details["stuckLanes"];
        assert_eq!(
            stuck,
            &json!([{"topic": "a-topic", "partition": 3, "offset": 42, "inHandlerMs": 61_000}])
        );
        a.lanes = vec![lane(0, true)];
        let h = indicator(vec![a.clone(), view("b", 1, now, 1)], Mode::Health).evaluate(now);
        assert_eq!(h.components["a"].status, Status::Down);
        let l = indicator(vec![a, view("b", 1, now, 1)], Mode::Liveness).evaluate(now);
        assert_eq!(l.status, Status::Up, "liveness is about the poll loop");
    }

    #[test]
    fn stalled_loop_is_down() {
        let now = 1_000_000;
        let views = vec![view("a", 1, now - 60_000, 1), view("b", 0, now, 3)];
        let l = indicator(views, Mode::Liveness).evaluate(now);
        assert_eq!(l.status, Status::Down);
        assert_eq!(l.components["b"].status, Status::Up, "idle but joined");
        assert_eq!(l.components["a"].details["topics"], json!(["a-topic"]));
    }

    #[test]
    fn shutting_down_is_out_of_service() {
        let now = 1_000_000;
        let i = indicator(
            vec![view("a", 1, now, 1), view("b", 1, now, 1)],
            Mode::Readiness,
        );
        assert_eq!(i.evaluate(now).status, Status::Up);
        i.shutdown.cancel();
        assert_eq!(i.evaluate(now).status, Status::OutOfService);
    }

    #[test]
    fn not_started_is_out_of_service_with_the_reason_but_alive() {
        let now = 1_000_000;
        let i = indicator(vec![view("a", 1, now, 1)], Mode::Readiness);
        *i.startup.lock().unwrap() = Some("waiting for the broker: down".to_owned());
        let r = i.evaluate(now);
        assert_eq!(r.status, Status::OutOfService);
        assert_eq!(r.components["a"].status, Status::Up);
        assert_eq!(
            r.components["b"].details["reason"],
            json!("waiting for the broker: down")
        );
        let h = indicator(vec![view("a", 1, now, 1)], Mode::Health).evaluate(now);
        assert_eq!(h.status, Status::OutOfService);
        let l = indicator(vec![view("a", 1, now, 1)], Mode::Liveness).evaluate(now);
        assert_eq!(l.status, Status::Up);
    }
}
