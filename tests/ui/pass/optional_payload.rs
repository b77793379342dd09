use mq_core::prelude::*;

#[derive(Debug, Serialize, Deserialize)]
struct Customer {
    id: u64,
}

// A tombstone (null value) arrives as `None`, as Spring hands a null payload.
#[listener(topic = "customers")]
async fn customer_event(e: Option<Event<Customer>>, ctx: Context) -> Result<(), HandlerError> {
    match e {
        Some(e) => println!("upsert {}", e.data.id),
        None => println!("delete {:?}", ctx.key_str()),
    }
    Ok(())
}

#[listener(topic = "customers", name = "customer_data")]
async fn customer_data(c: Option<Customer>) -> Result<(), HandlerError> {
    let _id: Option<u64> = c.map(|c| c.id);
    Ok(())
}

fn main() {
    let _ = customer_data(None);
}
