//! Nothing is lost when the consuming process dies: a child process consuming 20,000
//! messages of a queue is killed with SIGKILL at random points three times and restarted;
//! afterwards every message was handled at least once (RabbitMQ delivers again what a
//! dead connection left unacked).

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::future::join_all;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::BasicProperties;
use mq_core::prelude::*;

use super::*;
use support::{lines, process, random_between, wait_for_lines, KillOnDrop as Guard};

const EVENTS: u64 = 20_000;
const QUEUE: &str = "mq_t_crash";

#[derive(Debug, Serialize, Deserialize)]
struct Tick {
    n: u64,
}

fn spawn_child(dir: &Path, out: &Path) -> Guard {
    let child = support::child_app(
        env!("CARGO_BIN_EXE_mq-crash-consumer"),
        dir,
        "rabbit-crash-consumer",
    )
    .env("MQ_KAFKA__BOOTSTRAP_SERVERS", "127.0.0.1:1")
    .env("MQ_LISTENERS__ON_TICK__AUTO_STARTUP", "false")
    .env("CRASH_OUT", out)
    .spawn()
    .expect("spawn the crash consumer");
    Guard(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_the_consumer_at_random_points_loses_nothing() {
    let (_c, ch) = channel().await;
    fresh(&ch, QUEUE).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("handled.txt");

    // Publish the events first (structured CloudEvents, confirmed); remember every id.
    ch.confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let mut ids = HashSet::new();
    for chunk in (0..EVENTS).collect::<Vec<_>>().chunks(500) {
        let mut confirms = Vec::new();
        for n in chunk {
            let e = Event::new("Tick", Tick { n: *n });
            ids.insert(e.id.clone());
            let props = BasicProperties::default()
                .with_content_type("application/cloudevents+json; charset=UTF-8".into())
                .with_delivery_mode(2);
            let body = e.to_json().unwrap();
            let confirm = ch
                .basic_publish(
                    "".into(),
                    QUEUE.into(),
                    BasicPublishOptions::default(),
                    &body,
                    props,
                )
                .await
                .unwrap();
            confirms.push(confirm);
        }
        for c in join_all(confirms).await {
            assert!(c.unwrap().is_ack());
        }
    }

    for round in 1..=3 {
        let before = lines(&out).len();
        let kill_after = random_between(300, 3_000);
        let mut child = spawn_child(dir.path(), &out);
        let deadline = Instant::now() + Duration::from_secs(90);
        while lines(&out).len() < before + kill_after {
            assert!(Instant::now() < deadline, "round {round}: no progress");
            assert!(child.0.try_wait().unwrap().is_none(), "child exited early");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        process::kill(&mut child.0); // SIGKILL
    }

    let mut child = spawn_child(dir.path(), &out);
    let missing = wait_for_lines(&out, &ids, Duration::from_secs(180)).await;
    assert_eq!(missing, 0, "lost: {missing} of {EVENTS} never handled");
    let exit = process::terminate(&mut child.0, "the last consumer");
    assert!(exit.success(), "graceful shutdown exits 0, got {exit}");

    let all = lines(&out);
    let unique: HashSet<&String> = all.iter().collect();
    let duplicates = all.len() - unique.len();
    println!("rabbit crash safety: {EVENTS} messages, 3 SIGKILLs: lost 0, duplicates {duplicates}");
    // At most a prefetch (250) of unacked messages per kill comes back.
    assert!(duplicates <= 3 * 250, "{duplicates} duplicates for 3 kills");
    assert!(drain(&ch, QUEUE).await.is_empty(), "all acked in the end");
}
