//! `cargo run -p notification-service`: notifies customers of confirmed orders (needs the
//! RabbitMQ of `application.yaml`, by default 127.0.0.1:5672).

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let result = match notification_service::load_config() {
        Ok(config) => notification_service::run(config).await,
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("notification-service: {e}");
            ExitCode::FAILURE
        }
    }
}
