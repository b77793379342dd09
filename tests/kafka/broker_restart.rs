//! The broker restarts (with its data on disk) while a producer and a consumer run:
//! no event is lost. And a service started while its broker is down comes up (alive, not
//! ready), then creates its topics and joins its group by itself once the broker starts.
//! Each test uses a broker of its own on another port, so the shared one stays up.

use crate::support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use mq_core::prelude::*;
use mq_core::App;
use support::{broker_on, config_for, unique, Seen, StopOnDrop};

const PORT: &str = "19392";
const EVENTS: u64 = 1_500;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Tick {
    n: u64,
}

#[listener(topic = "restart-ticks")]
async fn on_tick(event: Event<Tick>, ctx: Context) -> Result<(), HandlerError> {
    ctx.state::<Seen>().record(&event, &ctx);
    Ok(())
}

#[listener(topic = "late-ticks")]
async fn on_late_tick(event: Event<Tick>, ctx: Context) -> Result<(), HandlerError> {
    ctx.state::<Seen>().record(&event, &ctx);
    Ok(())
}

fn broker(args: &[&str]) {
    broker_on(PORT, args);
}

async fn get(addr: std::net::SocketAddr, path: &str) -> support::HttpResponse {
    support::http(addr, "GET", path, None, None).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_started_without_its_broker_joins_when_the_broker_comes() {
    const LATE_PORT: &str = "19394";
    let bootstrap = format!("127.0.0.1:{LATE_PORT}");
    assert!(
        std::net::TcpStream::connect(&bootstrap).is_err(),
        "nothing may listen on {bootstrap} yet"
    );
    let topic = unique("late");
    let yaml = format!(
        "mq:\n  listeners:\n    on_late_tick:\n      topics: [\"{topic}\"]\n      group: \"{}\"\nmanagement:\n  server:\n    address: 127.0.0.1\n  endpoint:\n    health:\n      show-details: always\n",
        unique("g")
    );
    let seen = Seen::default();
    let started = Instant::now();
    let app = App::new(config_for(&bootstrap, &yaml))
        .with_state(seen.clone())
        .only_listeners(["on_late_tick"])
        .start()
        .await
        .expect("the app starts while its broker is down");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let addr = app.actuator_addr().expect("actuator");

    // Up and alive, not ready, and the answers say why.
    assert_eq!(get(addr, "/actuator/health/liveness").await.status, 200);
    let ready = get(addr, "/actuator/health/readiness").await;
    assert_eq!(ready.status, 503, "{}", ready.body);
    let ready = ready.json();
    assert_eq!(ready["components"]["kafka"]["status"], "DOWN", "{ready}");
    assert!(
        ready["components"]["kafka"]["details"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("cannot reach the brokers")),
        "{ready}"
    );
    let health = get(addr, "/actuator/health").await;
    assert_eq!(health.status, 503, "{}", health.body);
    // Still alive a few seconds later (the old start gave up after ~10 s).
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(get(addr, "/actuator/health/liveness").await.status, 200);
    let listeners = get(addr, "/actuator/health/readiness").await.json();
    let reason = listeners["components"]["listeners"]["components"]["on_late_tick"]["details"]
        ["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.contains("waiting for the broker"), "{listeners}");
    assert!(!app.all_assigned());

    // The broker comes: topics are created and the group joined, no restart.
    broker_on(LATE_PORT, &["start"]);
    let _stop = StopOnDrop(LATE_PORT);
    let came = Instant::now();
    let deadline = came + Duration::from_secs(30);
    loop {
        let r = get(addr, "/actuator/health/readiness").await;
        if r.status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready 30 s after the broker came: {}",
            r.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("ready {:?} after the broker started", came.elapsed());
    assert!(app.wait_assigned(Duration::from_secs(10)).await);
    assert_eq!(get(addr, "/actuator/health").await.status, 200);
    app.publisher()
        .send(&topic, "1", Tick { n: 1 })
        .await
        .expect("sent");
    assert_eq!(seen.wait_for(1, Duration::from_secs(30)).await, 1);
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_nothing() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap().to_owned();
    broker(&["start-sqlite", &dir]);
    let _stop = StopOnDrop(PORT);
    let bootstrap = format!("127.0.0.1:{PORT}");
    let topic = unique("ticks");
    let yaml = format!(
        "mq:\n  kafka:\n    admin:\n      partitions: 2\n  listeners:\n    on_tick:\n      topics: [\"{topic}\"]\n      group: \"{}\"\n",
        unique("g")
    );
    let seen = Seen::default();
    let app = App::new(config_for(&bootstrap, &yaml))
        .with_state(seen.clone())
        .only_listeners(["on_tick"])
        .start()
        .await
        .expect("app starts");
    assert!(app.wait_assigned(Duration::from_secs(60)).await);

    // Publish steadily for ~3 s; restart the broker in the middle.
    let publisher = app.publisher();
    let topic2 = topic.clone();
    let producing = tokio::spawn(async move {
        let mut ids = Vec::new();
        let mut pending = Vec::new();
        for n in 0..EVENTS {
            let e = Event::new("Tick", Tick { n });
            ids.push(e.id.clone());
            let p = publisher.clone();
            let t = topic2.clone();
            pending.push(tokio::spawn(
                async move { p.send(&t, n.to_string(), e).await },
            ));
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        for p in pending {
            p.await
                .unwrap()
                .expect("every send is acknowledged, after the restart if need be");
        }
        ids
    });
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    broker(&["stop"]);
    let stopped_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    broker(&["start-sqlite", &dir]);
    println!("broker was down for {:?}", stopped_at.elapsed());

    let ids = producing.await.unwrap();
    let handled_all = seen.wait_for(ids.len(), Duration::from_secs(120)).await;
    let handled: HashSet<String> = seen.all().into_iter().map(|h| h.id).collect();
    let lost: Vec<&String> = ids.iter().filter(|id| !handled.contains(*id)).collect();
    println!(
        "broker restart: {} published, {} handled ({} distinct), lost {}",
        ids.len(),
        handled_all,
        handled.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "{} events lost", lost.len());
    app.shutdown().await.unwrap();
}
