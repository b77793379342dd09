//! `content_encoding` as Spring AMQP writes it (issue 22, item 5): its compressing
//! post-processors' `gzip`, `deflate` (zlib) and `zip` (Java's `ZipOutputStream`, sizes in
//! a data descriptor), alone or followed by the charset (`gzip:UTF-8`, `gzip, UTF-8`), are
//! undone; an encoding mq cannot read is dead-lettered naming it, and the dead letter keeps
//! the message's basic properties (what an operator matches it with).
//!
//! The bodies are compressed by Python's standard library (`gzip`, `zlib`, `zipfile` on an
//! unseekable stream, as Java streams it) and published raw with lapin.

use std::sync::Mutex;

use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::BasicProperties;
use mq_core::prelude::*;

use super::*;

const QUEUE: &str = "mq_t22_encoded";

static DECODED: Mutex<Vec<u32>> = Mutex::new(Vec::new());

#[listener(queue = "mq_t22_encoded")]
async fn on_encoded(task: Task) -> Result<(), HandlerError> {
    DECODED.lock().unwrap().push(task.n);
    Ok(())
}

/// `{"n":<n>}` (or `size` spaces when `size` > 0) compressed as `how` says, by Python.
fn compressed(how: &str, n: u32, size: usize) -> Vec<u8> {
    let script = r#"
import base64, gzip, io, sys, zipfile, zlib
how, n, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
body = (b" " * size) if size else ('{"n":%d}' % n).encode()
if how == "gzip":
    out = gzip.compress(body)
elif how == "zlib":
    out = zlib.compress(body)
elif how == "zip":
    class Stream(io.RawIOBase):
        def __init__(self): self.buf = bytearray()
        def writable(self): return True
        def write(self, b): self.buf += b; return len(b)
    s = Stream()
    with zipfile.ZipFile(s, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("amqp", "w") as e:
            e.write(body)
    out = bytes(s.buf)
else:
    out = body
sys.stdout.write(base64.b64encode(out).decode())
"#;
    let out = std::process::Command::new("python3")
        .args(["-c", script, how, &n.to_string(), &size.to_string()])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    base64_decode(&String::from_utf8(out.stdout).unwrap())
}

/// Standard base64 (the test crate has no base64 dependency).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let digits: Vec<u8> = text.bytes().filter(|c| *c != b'=').map(value).collect();
    let mut out = Vec::new();
    for chunk in digits.chunks(4) {
        let mut acc = 0u32;
        for (i, d) in chunk.iter().enumerate() {
            acc |= u32::from(*d) << (18 - 6 * i);
        }
        for i in 0..chunk.len().saturating_sub(1) {
            out.push((acc >> (16 - 8 * i)) as u8);
        }
    }
    out
}

async fn publish(ch: &Channel, body: &[u8], props: BasicProperties) {
    publish_raw(ch, QUEUE, body, props).await;
}

fn json(encoding: &str) -> BasicProperties {
    BasicProperties::default()
        .with_content_type(ShortString::from("application/json"))
        .with_content_encoding(ShortString::from(encoding))
}

#[tokio::test]
async fn spring_content_encodings_decode_and_unknown_ones_are_dead_lettered_by_name() {
    let (_c, ch) = channel().await;
    fresh(&ch, QUEUE).await;
    let yaml = "  rabbitmq:\n    listener:\n      dead-letter:\n        stack-trace: false\n";
    let running = start("on_encoded", yaml).await;
    let cases = [
        ("gzip", "gzip"),
        ("gzip", "gzip:UTF-8"),
        ("gzip", "gzip, UTF-8"),
        ("zlib", "deflate"),
        ("zlib", "deflate:UTF-8"),
        ("zip", "zip, UTF-8"),
        ("plain", "UTF-8"),
    ];
    for (n, (how, encoding)) in cases.iter().enumerate() {
        publish(&ch, &compressed(how, n as u32, 0), json(encoding)).await;
    }
    // An encoding mq cannot read, as pika or the Java client would send it with every
    // basic property set.
    let mut headers = FieldTable::default();
    headers.insert(
        "tenant".into(),
        AMQPValue::LongString(LongString::from("t1")),
    );
    let poison = json("br")
        .with_message_id(ShortString::from("poison-1"))
        .with_correlation_id(ShortString::from("corr-1"))
        .with_reply_to(ShortString::from("replies"))
        .with_timestamp(1_700_000_000)
        .with_type(ShortString::from("OrderCreated"))
        .with_app_id(ShortString::from("shop"))
        .with_priority(7)
        .with_expiration(ShortString::from("600000"))
        .with_headers(headers);
    publish(&ch, b"\x8b\x00brotli?", poison.clone()).await;
    // A gzip bomb: 2 KiB that inflate to 2 MiB, over max-payload-bytes (1 MiB).
    let bomb = compressed("gzip", 0, 2 << 20);
    assert!(bomb.len() < 8 * 1024);
    publish(
        &ch,
        &bomb,
        json("gzip").with_message_id(ShortString::from("bomb")),
    )
    .await;

    wait_for("every Spring encoding decoded", || {
        DECODED.lock().unwrap().len() == cases.len()
    })
    .await;
    let mut decoded = DECODED.lock().unwrap().clone();
    decoded.sort_unstable();
    assert_eq!(decoded, (0..cases.len() as u32).collect::<Vec<_>>());

    let (_c2, dlq_ch) = channel().await;
    let dead = take_at_least(&dlq_ch, &format!("{QUEUE}.dlq"), 2).await;
    assert_eq!(dead.len(), 2);
    let by_id = |id: &str| by_message_id(&dead, id);
    let p = &by_id("poison-1").delivery.properties;
    let reason = header(p, "x-exception-message").unwrap_or_default();
    assert!(reason.contains("\"br\""), "{reason}");
    assert!(reason.contains("content-encoding"), "{reason}");
    // Every basic property as it came (not expiration: it would expire in the DLQ).
    assert_eq!(
        p.correlation_id().as_ref().map(|s| s.as_str()),
        Some("corr-1")
    );
    assert_eq!(p.reply_to().as_ref().map(|s| s.as_str()), Some("replies"));
    assert_eq!(*p.timestamp(), Some(1_700_000_000));
    assert_eq!(p.kind().as_ref().map(|s| s.as_str()), Some("OrderCreated"));
    assert_eq!(p.app_id().as_ref().map(|s| s.as_str()), Some("shop"));
    assert_eq!(p.priority(), &Some(7));
    assert_eq!(
        p.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert_eq!(
        p.content_encoding().as_ref().map(|s| s.as_str()),
        Some("br")
    );
    assert_eq!(p.expiration(), &None);
    assert_eq!(
        header(p, "x-original-expiration").as_deref(),
        Some("600000")
    );
    assert_eq!(header(p, "tenant").as_deref(), Some("t1"));
    assert_eq!(
        &by_id("poison-1").delivery.data[..],
        b"\x8b\x00brotli?",
        "body as it came"
    );
    // Switched off: no stack-trace header (the message says what went wrong).
    assert_eq!(header(p, "x-exception-stacktrace"), None);
    let bomb_dead = &by_id("bomb").delivery;
    let reason = header(&bomb_dead.properties, "x-exception-message").unwrap_or_default();
    assert!(
        reason.contains("decompresses (gzip) to more than the limit of 1048576 bytes"),
        "{reason}"
    );
    assert_eq!(bomb_dead.data, bomb, "the compressed body as it came");
    running.shutdown().await.unwrap();
    assert!(drain(&ch, QUEUE).await.is_empty(), "all acked");
}
