use mq_core::prelude::*;

#[listener(topic = "a")]
async fn on_a() -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
