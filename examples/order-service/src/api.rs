//! The HTTP API: `POST /orders`, `GET /orders/{id}`, `GET /orders`, `GET /prices/{id}`.

use std::sync::Arc;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path as UrlPath, State as Shared};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use mq_core::prelude::*;
use serde_json::json;

use crate::events::OrderCreated;
use crate::{new_id, prices, Order, OrderStatus, OrderStore, Topics};

/// Body of `POST /orders`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct CreateOrder {
    /// Product to order (> 0).
    pub product_id: u64,
    /// Units (1 to 1000).
    pub quantity: i64,
    /// Optional customer name (at most 100 characters).
    #[serde(default)]
    pub customer: Option<String>,
}

impl CreateOrder {
    /// Checks the request; the error names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.product_id == 0 {
            return Err("product_id must be greater than 0".to_owned());
        }
        if self.quantity <= 0 {
            return Err("quantity must be greater than 0".to_owned());
        }
        if self.quantity > 1000 {
            return Err("quantity must be at most 1000".to_owned());
        }
        if let Some(c) = &self.customer {
            if c.trim().is_empty() || c.chars().count() > 100 {
                return Err("customer must be 1 to 100 characters".to_owned());
            }
        }
        Ok(())
    }
}

struct Api {
    orders: OrderStore,
    publisher: Publisher,
    topics: Topics,
}

/// The HTTP routes: `POST /orders`, `GET /orders`, `GET /orders/{id}`, and
/// `GET /prices/{product_id}` (asks product-service, see [`prices`]). Orders go to
/// `topics.order_created`: through the outbox with a database, else published with
/// `publisher` (take it from the running app).
pub fn router(orders: impl Into<OrderStore>, publisher: Publisher, topics: Topics) -> Router {
    let orders = orders.into();
    Router::new()
        .route("/orders", post(create_order).get(list_orders))
        .route("/orders/{id}", get(get_order))
        .route("/prices/{product_id}", get(get_price))
        .with_state(Arc::new(Api {
            orders,
            publisher,
            topics,
        }))
}

/// A Spring Boot–style error body: `{"status":400,"error":"Bad Request","message":..,"path":..}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>, path: &str) -> Response {
    let body = json!({
        "status": status.as_u16(),
        "error": status.canonical_reason().unwrap_or(""),
        "message": message.into(),
        "path": path,
    });
    (status, Json(body)).into_response()
}

async fn create_order(
    Shared(api): Shared<Arc<Api>>,
    body: Result<Json<CreateOrder>, JsonRejection>,
) -> Response {
    let request = match body {
        Ok(Json(r)) => r,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text(), "/orders"),
    };
    if let Err(message) = request.validate() {
        return error(StatusCode::BAD_REQUEST, message, "/orders");
    }
    let order_id = new_id("ord");
    let quantity = request.quantity as u32;
    let customer = request.customer.map(|c| c.trim().to_owned());
    let order = Order {
        order_id: order_id.clone(),
        status: OrderStatus::Pending,
        reason: None,
        product_id: request.product_id,
        quantity,
        customer: customer.clone(),
        payment_id: None,
        history: vec!["CREATED".to_owned()],
    };
    let created = OrderCreated {
        order_id: order_id.clone(),
        product_id: request.product_id,
        quantity,
        customer,
    };
    let event = Event::new("OrderCreated", created).with_subject(order_id.clone());
    match api
        .orders
        .create(order, event, &api.publisher, &api.topics)
        .await
    {
        Ok(()) => {
            tracing::info!(%order_id, product_id = request.product_id, quantity, "order accepted");
            (
                StatusCode::ACCEPTED,
                [(header::LOCATION, format!("/orders/{order_id}"))],
                Json(json!({"order_id": order_id, "status": OrderStatus::Pending})),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(%order_id, error = %e, "could not record the order");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("the order could not be recorded: {e}"),
                "/orders",
            )
        }
    }
}

async fn get_order(Shared(api): Shared<Arc<Api>>, UrlPath(id): UrlPath<String>) -> Response {
    match api.orders.get(&id).await {
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), "/orders"),
        Ok(Some(order)) => Json(order).into_response(),
        Ok(None) => error(
            StatusCode::NOT_FOUND,
            format!("no order {id}"),
            &format!("/orders/{id}"),
        ),
    }
}

async fn get_price(Shared(api): Shared<Arc<Api>>, UrlPath(id): UrlPath<u64>) -> Response {
    prices::quote(&api.publisher, &api.topics.price_requests, id).await
}

async fn list_orders(Shared(api): Shared<Arc<Api>>) -> Response {
    match api.orders.all().await {
        Ok(all) => Json(all).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string(), "/orders"),
    }
}
