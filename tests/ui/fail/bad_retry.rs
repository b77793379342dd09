use mq_core::prelude::*;

#[listener(topic = "a", retry(max_attempts = 0))]
async fn zero(_e: Event<u32>) -> Result<(), HandlerError> {
    Ok(())
}

#[listener(topic = "a", retry(mode = "sometimes"))]
async fn bad_mode(_e: Event<u32>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
