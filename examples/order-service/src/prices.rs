//! `GET /prices/{id}`: order-service asks product-service for a price over request–reply
//! (`Publisher::request`, Spring's `ReplyingKafkaTemplate`), with a timeout. Replies come
//! back on `mq.kafka.reply-topic`.

use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use mq_core::publisher::RequestError;
use mq_core::Publisher;
use serde::{Deserialize, Serialize};

/// How long `GET /prices/{id}` waits for product-service.
pub const PRICE_TIMEOUT: Duration = Duration::from_secs(5);

/// Sent on `order-service.topics.price-requests` (product-service's copy of the contract
/// has the same JSON shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceQuery {
    /// The product.
    pub product_id: u64,
}

/// product-service's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceQuote {
    /// The product asked about.
    pub product_id: u64,
    /// Its name; `None`: no such product.
    pub name: Option<String>,
    /// Price of one unit, in cents; `None`: no such product.
    pub unit_price_cents: Option<u64>,
}

/// Asks for `product_id`'s price on `topic`: 200 with the quote, 404 for an unknown
/// product, 504 when product-service did not answer in time, 503 when the request could
/// not be sent.
pub async fn quote(publisher: &Publisher, topic: &str, product_id: u64) -> Response {
    let path = format!("/prices/{product_id}");
    let asked = publisher
        .request::<_, PriceQuote>(topic, product_id.to_string(), PriceQuery { product_id })
        .timeout(PRICE_TIMEOUT)
        .await;
    match asked {
        Ok(reply) if reply.data.unit_price_cents.is_some() => Json(reply.data).into_response(),
        Ok(_) => crate::error(
            StatusCode::NOT_FOUND,
            format!("no product {product_id}"),
            &path,
        ),
        Err(e @ RequestError::Timeout { .. }) => {
            crate::error(StatusCode::GATEWAY_TIMEOUT, e.to_string(), &path)
        }
        Err(e) => crate::error(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), &path),
    }
}
