//! `mq`: operations on an mq deployment, with the same configuration as the services
//! (`application.yaml`, `MQ_PROFILES_ACTIVE`, `MQ_*`).
//!
//! ```text
//! mq dlt-replay <dlt-topic> [--limit N] [--exception TEXT] [--key KEY]
//!               [--since TIME] [--until TIME] [--max-replays N] [--dry-run]
//! ```
//!
//! Republishes dead letters to their original topics. `--exception` keeps records whose
//! `kafka_dlt-exception-fqcn` contains TEXT, `--key` those with that key, `--since` /
//! `--until` (RFC 3339 or epoch ms) those dead-lettered in that range; `--dry-run` prints
//! what would be done and sends nothing; a record replayed `--max-replays` times (default
//! 3, 0: no limit) goes to `<dlt-topic>-parking` instead.
//!
//! `<dlt-topic>` may be a queue listener's RabbitMQ dead-letter queue, `amqp:///<queue>.dlq`:
//! its messages go back to `<queue>`, parked ones to `<queue>.dlq.parking`; `--exception`
//! matches the error type in `x-exception-stacktrace`, `--key` the routing key the message
//! was first published with.

use std::process::ExitCode;

use mq_core::failure::redrive::ReplayOptions;

const USAGE: &str = "usage: mq dlt-replay <dlt-topic | amqp:///<queue>.dlq> [--limit N] [--exception TEXT] [--key KEY] \
[--since TIME] [--until TIME] [--max-replays N] [--dry-run]";

fn time_ms(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("{s:?} is neither RFC 3339 nor epoch milliseconds: {e}"))
}

fn parse(args: &[String]) -> Result<(String, ReplayOptions), String> {
    let [cmd, topic, rest @ ..] = args else {
        return Err(String::new());
    };
    if cmd != "dlt-replay" {
        return Err(String::new());
    }
    let mut opts = ReplayOptions::default();
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        if flag == "--dry-run" {
            opts.dry_run = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} takes a value"))?;
        let number = || value.parse().map_err(|_| format!("{flag} takes a number"));
        match flag.as_str() {
            "--limit" => opts.limit = Some(number()?),
            "--max-replays" => opts.max_replays = number()? as u32,
            "--exception" => opts.exception = Some(value.clone()),
            "--key" => opts.key = Some(value.clone().into_bytes()),
            "--since" => opts.since_ms = Some(time_ms(value)?),
            "--until" => opts.until_ms = Some(time_ms(value)?),
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok((topic.clone(), opts))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (topic, opts) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("{e}\n{USAGE}");
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
    match mq_core::dead_letter::replay_with(&config, &topic, &opts).await {
        Ok(report) => {
            for line in &report.planned {
                println!("{line}");
            }
            for (target, n) in &report.replayed {
                println!("{n} record(s) -> {target}");
            }
            println!(
                "replayed {} record(s) from {topic}; {} parked, {} skipped{}",
                report.total(),
                report.parked,
                report.skipped,
                if opts.dry_run {
                    " (dry run: nothing sent)"
                } else {
                    ""
                }
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("replay failed: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn flags_parse() {
        let (topic, o) = parse(&args(
            "dlt-replay o-dlt --limit 5 --exception Json --key k --since 2024-01-01T00:00:00Z --until 5 --max-replays 0 --dry-run",
        ))
        .unwrap();
        assert_eq!(topic, "o-dlt");
        assert_eq!(o.limit, Some(5));
        assert_eq!(o.exception.as_deref(), Some("Json"));
        assert_eq!(o.key.as_deref(), Some(&b"k"[..]));
        assert_eq!(o.since_ms, Some(1_704_067_200_000));
        assert_eq!(o.until_ms, Some(5));
        assert_eq!(o.max_replays, 0);
        assert!(o.dry_run);
        assert!(parse(&args("dlt-replay o-dlt --limit x")).is_err());
        assert!(parse(&args("dlt-replay o-dlt --bogus 1")).is_err());
        assert!(parse(&args("other o-dlt")).is_err());
    }
}
