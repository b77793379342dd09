use mq_core::prelude::*;

#[listener(topic = "t", idempotent = "yes")]
async fn handler(n: u32) -> Result<(), HandlerError> {
    let _ = n;
    Ok(())
}

fn main() {}
