//! The child process of the crash-safety tests: a plain mq service whose listeners (one on
//! a Kafka topic, one on a RabbitMQ queue; each test turns the other off with
//! `MQ_LISTENERS__<NAME>__AUTO_STARTUP=false`) append each handled event id to the file
//! named by `CRASH_OUT`. Configured entirely by `MQ_*` variables. The test kills it with
//! SIGKILL at random points.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use mq_core::prelude::*;

#[derive(Debug, Serialize, Deserialize)]
struct Tick {
    n: u64,
}

fn out() -> &'static Mutex<File> {
    static OUT: OnceLock<Mutex<File>> = OnceLock::new();
    OUT.get_or_init(|| {
        let path = std::env::var("CRASH_OUT").expect("CRASH_OUT names the output file");
        Mutex::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("open CRASH_OUT"),
        )
    })
}

#[listener(topic = "crash")]
async fn on_tick(event: Event<Tick>) -> Result<(), HandlerError> {
    handle(event).await
}

#[listener(queue = "mq_t_crash")]
async fn on_queue_tick(event: Event<Tick>) -> Result<(), HandlerError> {
    handle(event).await
}

async fn handle(event: Event<Tick>) -> Result<(), HandlerError> {
    // A little work per record, so that a kill lands in the middle of the stream.
    tokio::time::sleep(Duration::from_millis(1)).await;
    let line = format!("{}\n", event.id);
    // One write(2) with O_APPEND: a line is either in the file or not, even on SIGKILL.
    out().lock().unwrap().write_all(line.as_bytes())?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), mq_core::Error> {
    App::from_config()?.run().await
}
