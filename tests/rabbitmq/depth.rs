//! `mq_queue_depth`: the messages ready in a queue listener's queue, polled with a passive
//! `queue.declare`, in `/actuator/prometheus` in a scrape Prometheus accepts.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use mq_core::prelude::*;

use super::*;

static RELEASE: AtomicBool = AtomicBool::new(false);
static DEPTH_HANDLED: AtomicU32 = AtomicU32::new(0);

#[listener(queue = "mq_t_depth")]
async fn on_depth(_task: Task) -> Result<(), HandlerError> {
    // Holds the first message until the test has seen the backlog.
    while !RELEASE.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    DEPTH_HANDLED.fetch_add(1, Ordering::SeqCst);
    Ok(())
}

fn depth_line(text: &str) -> Option<String> {
    text.lines()
        .find(|l| l.starts_with("mq_queue_depth{") && l.contains(r#"queue="mq_t_depth""#))
        .map(str::to_owned)
}

#[tokio::test]
async fn the_queue_depth_gauge_shows_the_ready_backlog_in_the_prometheus_scrape() {
    let (_c, ch) = channel().await;
    fresh(&ch, "mq_t_depth").await;
    let yaml = "  rabbitmq:\n    listener:\n      prefetch: 1\n      queue-depth-interval: 100ms\n";
    let management = "management:\n  server:\n    port: 0\n  endpoints:\n    web:\n      exposure:\n        include: prometheus\n";
    let running = start_with("on_depth", yaml, management).await;
    for n in 0..20 {
        running
            .publisher()
            .send("amqp:///mq_t_depth", "k", Task { n })
            .await
            .unwrap();
    }
    // Prefetch 1: one message is in the handler (unacked), nineteen are ready.
    let metrics = running.metrics();
    let want = r#"mq_queue_depth{application="rabbit-test",name="on_depth",queue="mq_t_depth"} 19"#;
    wait_for("a depth of 19", || {
        depth_line(&metrics.encode()).as_deref() == Some(want)
    })
    .await;
    let addr = running.actuator_addr().unwrap();
    let scrape = support::http(addr, "GET", "/actuator/prometheus", None, None).await;
    assert_eq!(scrape.status, 200);
    assert!(
        scrape.body.contains("# TYPE mq_queue_depth gauge"),
        "{}",
        scrape.body
    );
    assert!(
        scrape.body.contains(
            r#"mq_queue_depth{application="rabbit-test",name="on_depth",queue="mq_t_depth"} 19"#
        ),
        "{}",
        scrape.body
    );
    support::promtool_check_metrics(&scrape.body);

    RELEASE.store(true, Ordering::SeqCst);
    wait_for("all handled", || DEPTH_HANDLED.load(Ordering::SeqCst) == 20).await;
    let drained =
        r#"mq_queue_depth{application="rabbit-test",name="on_depth",queue="mq_t_depth"} 0"#;
    wait_for("a depth of 0", || {
        depth_line(&metrics.encode()).as_deref() == Some(drained)
    })
    .await;
    running.shutdown().await.unwrap();
}
