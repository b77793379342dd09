//! Nothing is lost when the consuming process dies: a child process consuming 20,000
//! events is killed with SIGKILL at random points three times and restarted; afterwards
//! every event was handled at least once. Duplicates (records handled after the last
//! commit before a kill) are counted and reported.

use crate::support;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::future::join_all;
use mq_core::prelude::*;
use mq_core::App;
use support::{
    config, create_topic, lines, process, random_between, unique, wait_for_lines,
    KillOnDrop as Guard,
};

#[derive(Debug, Serialize, Deserialize)]
struct Tick {
    n: u64,
}

const EVENTS: u64 = 20_000;

fn spawn_child(dir: &Path, topic: &str, group: &str, out: &Path) -> Guard {
    let child = support::child_app(
        env!("CARGO_BIN_EXE_mq-crash-consumer"),
        dir,
        "crash-consumer",
    )
    .env("MQ_LISTENERS__ON_TICK__TOPICS", topic)
    .env("MQ_LISTENERS__ON_TICK__GROUP", group)
    .env("MQ_LISTENERS__ON_QUEUE_TICK__AUTO_STARTUP", "false")
    .env("CRASH_OUT", out)
    .spawn()
    .expect("spawn the crash consumer");
    Guard(child)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_points_loses_nothing() {
    let topic = unique("crash");
    create_topic(&topic, 3).await;
    let group = unique("crash-group");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("handled.txt");

    // Publish the events first; remember every id.
    let publisher = App::new(config(""))
        .only_listeners(Vec::<String>::new())
        .start()
        .await
        .unwrap();
    let mut ids = HashSet::new();
    let sender = publisher.publisher();
    for chunk in (0..EVENTS).collect::<Vec<_>>().chunks(1_000) {
        let sends = chunk.iter().map(|n| {
            let e = Event::new("Tick", Tick { n: *n });
            ids.insert(e.id.clone());
            sender.send(&topic, n.to_string(), e)
        });
        for r in join_all(sends).await {
            r.expect("sent");
        }
    }
    publisher.shutdown().await.unwrap();

    // Three runs killed with SIGKILL somewhere in the middle of the stream.
    for round in 1..=3 {
        let before = lines(&out).len();
        let kill_after = random_between(300, 3_000);
        let mut child = spawn_child(dir.path(), &topic, &group, &out);
        let deadline = Instant::now() + Duration::from_secs(90);
        while lines(&out).len() < before + kill_after {
            assert!(Instant::now() < deadline, "round {round}: no progress");
            assert!(child.0.try_wait().unwrap().is_none(), "child exited early");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        process::kill(&mut child.0); // SIGKILL
        let now = lines(&out).len();
        println!(
            "round {round}: killed after {} new records ({now} lines so far)",
            now - before
        );
    }

    // A last run until every event was handled, then a graceful SIGTERM.
    let mut child = spawn_child(dir.path(), &topic, &group, &out);
    let missing = wait_for_lines(&out, &ids, Duration::from_secs(180)).await;
    assert_eq!(
        missing, 0,
        "lost events: {missing} of {EVENTS} never handled"
    );
    let exit = process::terminate(&mut child.0, "the last consumer");
    assert!(exit.success(), "graceful shutdown exits 0, got {exit}");

    let all = lines(&out);
    let unique: HashSet<&String> = all.iter().collect();
    let lost = ids.iter().filter(|id| !unique.contains(id)).count();
    let duplicates = all.len() - unique.len();
    println!("crash safety: {EVENTS} events, 3 SIGKILLs: lost {lost}, duplicates {duplicates}");
    assert_eq!(lost, 0);
    // Offsets are committed every 100 ms, so a kill repeats at most the records handled
    // since the last commit (a few hundred at this rate), not the whole run.
    assert!(
        duplicates < 3 * 1_000,
        "{duplicates} duplicates for 3 kills"
    );
    assert!(
        unique.iter().all(|id| ids.contains(*id)),
        "only published ids were handled"
    );
}
