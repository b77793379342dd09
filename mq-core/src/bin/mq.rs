//! `mq`: operations on an mq deployment, with the same configuration as the services
//! (`application.yaml`, `MQ_PROFILES_ACTIVE`, `MQ_*`).
//!
//! ```text
//! mq dlt-replay <dlt-topic> [--limit N]   republish dead letters to their original topics
//! ```

use std::process::ExitCode;

const USAGE: &str = "usage: mq dlt-replay <dlt-topic> [--limit N]";

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (topic, limit) = match args.as_slice() {
        [cmd, topic] if cmd == "dlt-replay" => (topic.clone(), None),
        [cmd, topic, flag, n] if cmd == "dlt-replay" && flag == "--limit" => match n.parse() {
            Ok(n) => (topic.clone(), Some(n)),
            Err(_) => {
                eprintln!("--limit takes a number\n{USAGE}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let config = match mq_core::Config::load() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    match mq_core::dead_letter::replay(&config, &topic, limit).await {
        Ok(report) => {
            for (target, n) in &report.replayed {
                println!("{n} record(s) -> {target}");
            }
            println!("replayed {} record(s) from {topic}", report.total());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("replay failed: {e}");
            ExitCode::FAILURE
        }
    }
}
