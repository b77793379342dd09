use mq_core::prelude::*;

#[listener(queue = "task_queue", exchange = "orders", exchange_type = "fan-out")]
async fn on_task(n: u32) -> Result<(), HandlerError> {
    let _ = n;
    Ok(())
}

#[listener(topic = "orders", routing_key = "order.*")]
async fn binding_without_queue(n: u32) -> Result<(), HandlerError> {
    let _ = n;
    Ok(())
}

fn main() {}
