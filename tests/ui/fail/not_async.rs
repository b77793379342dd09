use mq_core::prelude::*;

#[listener(topic = "a")]
fn on_a(_e: Event<u32>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
