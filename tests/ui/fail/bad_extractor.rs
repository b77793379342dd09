use mq_core::prelude::*;

#[listener(topic = "a")]
async fn on_a(_e: Event<u32>, _name: String) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
