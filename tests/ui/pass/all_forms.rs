use mq_core::handler::State;
use mq_core::record::Headers;
use mq_core::prelude::*;

#[derive(Debug, Serialize, Deserialize)]
struct Order {
    id: u64,
}

struct Stock;

#[listener(topic = "a")]
async fn event_only(_e: Event<Order>) -> Result<(), HandlerError> {
    Ok(())
}

#[listener(topics = ["a", "b"], group = "g", name = "renamed", concurrency = 2, ordering = "key", max_in_flight = 16)]
async fn data_and_context(_o: Order, _ctx: Context) -> Result<(), std::io::Error> {
    Ok(())
}

#[listener(topic = "a", retry(max_attempts = 5, initial_interval = "100ms", multiplier = 1.5, max_interval = "2s", jitter = true, mode = "blocking"))]
async fn extractors(_e: mq_core::Event<Order>, State(_s): State<Stock>, _h: Headers) -> Result<(), HandlerError> {
    Ok(())
}

#[listener(queue = "task_queue", concurrency = 2, retry(max_attempts = 3))]
async fn on_plain_queue(_o: Order) -> Result<(), HandlerError> {
    Ok(())
}

#[listener(queue = "notifications", exchange = "orders", exchange_type = "topic", routing_key = "order.*")]
async fn on_task(_o: Order, _ctx: Context) -> Result<(), HandlerError> {
    Ok(())
}

fn main() {
    // The functions stay callable.
    let _ = event_only(Event::new("Order", Order { id: 1 }));
}
