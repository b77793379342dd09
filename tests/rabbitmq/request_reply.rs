//! A queue listener answering requests (`Reply<T>`) to a client nobody here wrote: pika
//! with direct reply-to (`reply_to: amq.rabbitmq.reply-to`, `correlation_id`), the way the
//! RabbitMQ RPC tutorial and Spring AMQP's `convertSendAndReceive` ask.
//!
//! Needs `python3` with `pika` (scripts/test.sh installs it).

use std::process::Command;

use mq_core::handler::Reply;
use serde_json::Value;

use super::*;

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/pika_requester.py");

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Doubled {
    n: u32,
    twice: u32,
}

#[listener(queue = "mq_t_rpc")]
async fn on_rpc(task: Task) -> Result<Reply<Doubled>, HandlerError> {
    Ok(Reply::new(Doubled {
        n: task.n,
        twice: task.n * 2,
    }))
}

#[tokio::test]
async fn a_pika_requester_with_direct_reply_to_gets_each_reply() {
    let (_c, ch) = channel().await;
    fresh(&ch, "mq_t_rpc").await;
    let running = start("on_rpc", "").await;
    let out = tokio::task::spawn_blocking(|| {
        Command::new("python3")
            .args([
                SCRIPT,
                "--queue",
                "mq_t_rpc",
                "--count",
                "5",
                "--timeout",
                "60",
            ])
            .output()
    })
    .await
    .unwrap()
    .expect("python3 runs (scripts/test.sh installs pika)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "requester failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "{stdout}");
    for line in &lines {
        assert_eq!(line["matched"], true, "{line}");
        let n = line["n"].as_u64().unwrap();
        assert_eq!(
            line["data"],
            serde_json::json!({"n": n, "twice": 2 * n}),
            "{line}"
        );
    }
    running.shutdown().await.unwrap();
}
