//! `cargo run -p product-service`: reserves stock for every `order-create-event`.
//!
//! Everything lives in the library (`src/lib.rs`) so that the one-command demo can run
//! this service in its own process; calling into the library is also what links its
//! `#[listener]` into this binary.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let result = match product_service::load_config() {
        Ok(config) => product_service::run(config).await,
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("product-service: {e}");
            ExitCode::FAILURE
        }
    }
}
