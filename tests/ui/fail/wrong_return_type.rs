use mq_core::prelude::*;

#[listener(topic = "a")]
async fn on_a(_e: Event<u32>) -> u32 {
    1
}

fn main() {}
