use mq_core::prelude::*;

#[listener(topic = "orders", queue = "task_queue")]
async fn both(n: u32) -> Result<(), HandlerError> {
    let _ = n;
    Ok(())
}

fn main() {}
