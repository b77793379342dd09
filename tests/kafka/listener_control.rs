//! Pausing and resuming a listener over the actuator (`POST /actuator/listeners/{name}`)
//! while records flow, on the real broker: nothing is handled while paused, nothing is
//! lost, the assignment is kept (no rebalance), and resuming goes on from where it stopped.

use crate::support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use mq_core::prelude::*;
use mq_core::{App, RunningApp};
use serde_json::Value;
use support::{config, create_topic, http, unique, Seen};

const WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, Serialize, Deserialize)]
struct Tick {
    n: u32,
}

#[listener(topic = "control-ticks")]
async fn control_ticks(
    event: Event<Tick>,
    ctx: Context,
    seen: State<Seen>,
) -> Result<(), HandlerError> {
    seen.record(&event, &ctx);
    Ok(())
}

fn actuator(app: &RunningApp) -> SocketAddr {
    let mut addr = app.actuator_addr().expect("actuator enabled");
    if addr.ip().is_unspecified() {
        addr.set_ip([127, 0, 0, 1].into());
    }
    addr
}

async fn listener(addr: SocketAddr) -> Value {
    let r = http(addr, "GET", "/actuator/listeners", None, None).await;
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()["listeners"]["control_ticks"].clone()
}

/// Polls the listener's view until `until` holds (or panics after [`WAIT`]).
async fn wait_view(addr: SocketAddr, what: &str, until: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let view = listener(addr).await;
        if until(&view) {
            return view;
        }
        assert!(Instant::now() < deadline, "{what}: {view}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_paused_listener_holds_its_records_keeps_its_partitions_and_resumes() {
    let topic = unique("control-ticks");
    create_topic(&topic, 2).await;
    let seen = Seen::default();
    let cfg = config(&format!(
        "mq:\n  listeners:\n    control_ticks:\n      topics: [\"{topic}\"]\n      group: \"{topic}\"\n\
         management:\n  endpoints:\n    web:\n      exposure:\n        include: [health, listeners]\n"
    ));
    let app = App::new(cfg)
        .with_state(seen.clone())
        .only_listeners(["control_ticks"])
        .start()
        .await
        .unwrap();
    let addr = actuator(&app);
    let joined = wait_view(addr, "assigned", |v| {
        v["consumers"].as_array().is_some_and(|c| {
            c.iter()
                .map(|c| c["assigned"].as_u64().unwrap_or(0))
                .sum::<u64>()
                == 2
        })
    })
    .await;
    let rebalances = |v: &Value| -> u64 {
        v["consumers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["rebalances"].as_u64().unwrap())
            .sum()
    };
    let before = rebalances(&joined);

    // Some records handled while running.
    let publisher = app.publisher();
    for n in 0..10 {
        publisher
            .send(&topic, n.to_string(), Tick { n })
            .await
            .unwrap();
    }
    assert_eq!(seen.wait_for(10, WAIT).await, 10);

    // Paused: the next records reach the lanes and wait at the gate, unhandled.
    let r = http(
        addr,
        "POST",
        "/actuator/listeners/control_ticks",
        Some(r#"{"state":"paused"}"#),
        None,
    )
    .await;
    assert_eq!(
        (r.status, r.json()["state"].as_str()),
        (200, Some("paused")),
        "{}",
        r.body
    );
    for n in 10..40 {
        publisher
            .send(&topic, n.to_string(), Tick { n })
            .await
            .unwrap();
    }
    let held = wait_view(addr, "records waiting at the gate", |v| {
        v["waiting"].as_u64().unwrap_or(0) >= 2
    })
    .await;
    assert_eq!(held["state"], "paused");
    assert_eq!(seen.len(), 10, "nothing handled while paused");
    assert_eq!(
        rebalances(&held),
        before,
        "pausing keeps the assignment: no rebalance"
    );
    assert!(held["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["member"] == true));

    // Bad requests are refused and change nothing.
    let stop = http(
        addr,
        "POST",
        "/actuator/listeners/control_ticks",
        Some(r#"{"state":"stopped"}"#),
        None,
    )
    .await;
    assert_eq!(stop.status, 400, "{}", stop.body);
    let unknown = http(
        addr,
        "POST",
        "/actuator/listeners/nope",
        Some(r#"{"state":"paused"}"#),
        None,
    )
    .await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(listener(addr).await["state"], "paused");

    // Resumed: every record handled once, in order per partition.
    let r = http(
        addr,
        "POST",
        "/actuator/listeners/control_ticks",
        Some(r#"{"state":"running"}"#),
        None,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(seen.wait_for(40, WAIT).await, 40);
    assert!(seen.duplicates().is_empty(), "{:?}", seen.duplicates());
    let mut ns: Vec<u64> = seen
        .all()
        .iter()
        .map(|h| h.data["n"].as_u64().unwrap())
        .collect();
    ns.sort_unstable();
    assert_eq!(ns, (0..40).collect::<Vec<u64>>(), "none lost");
    for p in 0..2 {
        let offsets: Vec<i64> = seen
            .all()
            .iter()
            .filter(|h| h.partition == p)
            .map(|h| h.offset)
            .collect();
        assert!(
            offsets.windows(2).all(|w| w[0] < w[1]),
            "partition {p} in order: {offsets:?}"
        );
    }
    assert_eq!(rebalances(&listener(addr).await), before);
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn the_listeners_endpoint_is_not_there_unless_exposed() {
    let app = App::new(config(""))
        .only_listeners(["control_ticks"])
        .with_state(Seen::default())
        .start()
        .await
        .unwrap();
    let addr = actuator(&app);
    let r = http(addr, "GET", "/actuator/listeners", None, None).await;
    assert_eq!(r.status, 404, "{}", r.body);
    let r = http(
        addr,
        "POST",
        "/actuator/listeners/control_ticks",
        Some(r#"{"state":"paused"}"#),
        None,
    )
    .await;
    assert_eq!(r.status, 404, "{}", r.body);
    app.shutdown().await.unwrap();
}
