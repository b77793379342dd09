use mq_core::prelude::*;

#[listener(topic = "a")]
async fn on_a(&self, _e: Event<u32>) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {}
