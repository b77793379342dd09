use mq_core::prelude::*;

struct NotSerde;

#[listener(topic = "a")]
async fn on_a(_e: Event<NotSerde>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
