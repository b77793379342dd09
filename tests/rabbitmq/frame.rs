//! Dead letters that would not fit one header frame (issue 22, item 1): a message whose own
//! headers are large (under the broker's `frame_max`, so it was accepted) fails; its dead
//! letter, those headers plus mq's `x-exception-*`, would be a header frame over
//! `frame_max`, and RabbitMQ closes the whole connection for that (`frame_too_large`). mq
//! cuts what it writes to `frame_max` − 20000 (Spring AMQP's `frameMaxHeadroom`): the
//! stack trace first; when the original headers alone do not fit, the largest of them,
//! named in `mq_dlt-headers-dropped-names`. The connection is never closed.

use std::sync::atomic::{AtomicU32, Ordering};

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use mq_core::prelude::*;

use super::*;

const QUEUE: &str = "mq_t22_frame";
const APP: &str = "rabbit-frame";

static CALLS: AtomicU32 = AtomicU32::new(0);

#[listener(queue = "mq_t22_frame")]
async fn on_frame(_task: Task) -> Result<(), HandlerError> {
    CALLS.fetch_add(1, Ordering::SeqCst);
    // A long message: 4 KiB of it in x-exception-message, 8 KiB in the stack trace.
    Err(HandlerError::permanent(std::io::Error::other(
        "refused: ".to_owned() + &"why ".repeat(3000),
    )))
}

/// `n` headers `h00`… of 10,000 bytes each, as a Java producer's long strings.
fn big_headers(n: usize) -> FieldTable {
    let mut t = FieldTable::default();
    for i in 0..n {
        let value = format!("{i:02}").repeat(5000);
        t.insert(
            ShortString::from(format!("h{i:02}")),
            AMQPValue::LongString(LongString::from(value)),
        );
    }
    t
}

/// The pids of the connections whose name contains `name`, as RabbitMQ lists them: the
/// app's consumers' connection is `<app> (mq, pid ..)`, its publishing connection
/// `<app> publisher (mq, pid ..)`.
async fn connections_of(name: String) -> Vec<String> {
    tokio::task::spawn_blocking(move || {
        let (_, stdout, _) = run_tool(
            std::process::Command::new("rabbitmqctl").args([
                "list_connections",
                "-q",
                "pid",
                "client_properties",
            ]),
            "rabbitmqctl list_connections",
        );
        stdout
            .lines()
            .filter(|l| l.contains(&name))
            .filter_map(|l| l.split('\t').next().map(str::to_owned))
            .collect()
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn a_dead_letter_over_frame_max_is_cut_to_fit_and_never_closes_the_connection() {
    let (_c, ch) = channel().await;
    fresh(&ch, QUEUE).await;
    let management = "management:\n  server:\n    enabled: false\n";
    let running = start_named(APP, "on_frame", "", management).await;
    let (consumers, publisher) = (format!("{APP} (mq"), format!("{APP} publisher (mq"));
    let before = connections_of(consumers.clone()).await;
    assert_eq!(before.len(), 1, "{before:?}");
    // 100 KB of headers: with mq's 12 KiB of why-headers, over 131072 − 20000.
    // 120 KB: over the budget on their own (still under the broker's frame_max).
    for (id, n) in [("fits-without-trace", 10), ("over-on-its-own", 12)] {
        let props = BasicProperties::default()
            .with_content_type(ShortString::from("application/json"))
            .with_message_id(ShortString::from(id))
            .with_headers(big_headers(n));
        publish_raw(&ch, QUEUE, br#"{"n":1}"#, props).await;
    }
    let (_c2, dlq_ch) = channel().await;
    let mut dead = Vec::new();
    // The publishing connection as the first dead letter left it.
    let mut publishing = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while dead.len() < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} dead letters; connections now {:?}",
            dead.len(),
            connections_of(APP.to_owned()).await
        );
        dead.extend(drain(&dlq_ch, &format!("{QUEUE}.dlq")).await);
        if publishing.is_none() && !dead.is_empty() {
            publishing = Some(connections_of(publisher.clone()).await);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        CALLS.load(Ordering::SeqCst),
        2,
        "each handled once, never again"
    );
    let by_id = |id: &str| &by_message_id(&dead, id).delivery;
    let table = |d: &lapin::message::Delivery| d.properties.headers().clone().unwrap();

    let a = by_id("fits-without-trace");
    let t = table(a);
    assert!(
        (0..10).all(|i| t.inner().contains_key(format!("h{i:02}").as_str())),
        "originals kept"
    );
    let trace = header(&a.properties, "x-exception-stacktrace").unwrap_or_default();
    assert!(
        trace.len() < 8 * 1024,
        "stack trace cut: {} bytes",
        trace.len()
    );
    assert!(header(&a.properties, "x-exception-message").is_some_and(|m| m.starts_with("refused")));
    assert_eq!(header(&a.properties, "mq_dlt-headers-dropped"), None);
    assert_eq!(&a.data[..], br#"{"n":1}"#);

    let b = by_id("over-on-its-own");
    let t = table(b);
    let dropped: usize = header(&b.properties, "mq_dlt-headers-dropped")
        .unwrap()
        .parse()
        .unwrap();
    let names = header(&b.properties, "mq_dlt-headers-dropped-names").unwrap();
    assert!(dropped >= 1, "{names}");
    assert_eq!(names.split(", ").count(), dropped, "{names}");
    let kept = (0..12)
        .filter(|i| t.inner().contains_key(format!("h{i:02}").as_str()))
        .count();
    assert_eq!(
        kept + dropped,
        12,
        "kept what fits: {kept}, dropped {names}"
    );
    assert!(kept >= 9, "kept {kept}");
    assert!(header(&b.properties, "x-exception-message").is_some_and(|m| m.starts_with("refused")));
    assert_eq!(
        header(&b.properties, "x-original-routingKey").as_deref(),
        Some(QUEUE)
    );
    assert_eq!(&b.data[..], br#"{"n":1}"#, "the body is kept");

    // The same connections all along: the broker closed neither the consumers' nor the
    // publishing one (the dead letters go out on the latter).
    assert_eq!(connections_of(consumers).await, before);
    let publishing = publishing.unwrap_or_default();
    assert_eq!(publishing.len(), 1, "{publishing:?}");
    assert_eq!(connections_of(publisher).await, publishing);
    running.shutdown().await.unwrap();
    assert!(drain(&ch, QUEUE).await.is_empty(), "both acked");
}
