//! The broker restarts (with its data on disk) while a producer and a consumer run:
//! no event is lost. Uses a broker of its own on another port, so the shared one stays up.

mod support;

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use mq_core::prelude::*;
use mq_core::App;
use support::{config_for, unique, Seen};

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

fn broker(args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/kafka.sh");
    let status = Command::new(script)
        .args(args)
        .env("MQ_KAFKA_PORT", PORT)
        .status()
        .expect("run scripts/kafka.sh");
    assert!(status.success(), "kafka.sh {args:?} failed");
}

struct StopOnDrop;

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        broker(&["stop"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_restart_loses_nothing() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().to_str().unwrap().to_owned();
    broker(&["start-sqlite", &dir]);
    let _stop = StopOnDrop;
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
            pending.push(tokio::spawn(async move {
                p.send_event(&t, n.to_string(), e).await
            }));
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
