//! Prices over request–reply: `quote_price` answers a [`PriceQuery`] on `price-requests`
//! with a [`PriceQuote`] from the catalogue (Spring's `@KafkaListener` + `@SendTo`).
//! order-service asks it with `Publisher::request` (`GET /prices/{id}`).

use std::collections::HashMap;
use std::sync::Arc;

use mq_core::handler::Reply;
use mq_core::prelude::*;

use crate::Product;

/// Asked on `price-requests` (key: the product id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceQuery {
    /// The product.
    pub product_id: u64,
}

/// The answer: the product's name and unit price, or neither for an unknown product.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriceQuote {
    /// The product asked about.
    pub product_id: u64,
    /// Its name; `None`: no such product.
    pub name: Option<String>,
    /// Price of one unit, in cents; `None`: no such product.
    pub unit_price_cents: Option<u64>,
}

/// The catalogue's names and prices by product id (prices do not change while the
/// service runs; stock does, and lives in the stockroom).
#[derive(Debug, Clone, Default)]
pub struct PriceList(Arc<HashMap<u64, (String, u64)>>);

impl PriceList {
    /// The prices of `catalogue`.
    pub fn new(catalogue: &[Product]) -> PriceList {
        let prices = catalogue
            .iter()
            .map(|p| (p.id, (p.name.clone(), p.price_cents)))
            .collect();
        PriceList(Arc::new(prices))
    }

    /// The quote for `product_id`.
    pub fn quote(&self, product_id: u64) -> PriceQuote {
        let found = self.0.get(&product_id);
        PriceQuote {
            product_id,
            name: found.map(|(name, _)| name.clone()),
            unit_price_cents: found.map(|(_, cents)| *cents),
        }
    }
}

/// Answers a price request from the catalogue; an unknown product is an answer too.
#[listener(topic = "price-requests")]
async fn quote_price(
    query: PriceQuery,
    prices: State<PriceList>,
) -> Result<Reply<PriceQuote>, HandlerError> {
    Ok(Reply::new(prices.quote(query.product_id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_known_and_unknown_products() {
        let prices = PriceList::new(&[Product {
            id: 2,
            name: "monitor".into(),
            stock: 5,
            price_cents: 18900,
        }]);
        assert_eq!(prices.quote(2).unit_price_cents, Some(18900));
        assert_eq!(prices.quote(2).name.as_deref(), Some("monitor"));
        assert_eq!(prices.quote(9).unit_price_cents, None);
    }
}
