//! `cargo run -p order-service`: the orders HTTP API and its listeners.
//!
//! Everything lives in the library (`src/lib.rs`) so that the one-command demo can run
//! this service in its own process; calling into the library is also what links its
//! `#[listener]`s into this binary.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let result = match order_service::load_config() {
        Ok(config) => order_service::run(config).await,
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("order-service: {e}");
            ExitCode::FAILURE
        }
    }
}
