use mq_core::prelude::*;

#[listener(topic = "a")]
async fn on_a(_e: Event<u32>) -> Result<(), HandlerError> {
    let rc = std::rc::Rc::new(1);
    std::future::ready(()).await;
    drop(rc);
    Ok(())
}

fn main() {}
