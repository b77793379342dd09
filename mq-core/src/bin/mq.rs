//! `mq`: operations on an mq deployment, with the same configuration as the services
//! (`application.yaml`, `MQ_PROFILES_ACTIVE`, `MQ_*`).
//!
//! ```text
//! mq dlt-replay <dlt-topic> [--limit N] [--exception TEXT] [--key KEY]
//!               [--since TIME] [--until TIME] [--max-replays N] [--dry-run]
//!               [--skip-unreplayable]
//! ```
//!
//! Republishes dead letters to their original topics. Both of Spring Kafka's dialects are
//! read: `kafka_dlt-original-topic`, `kafka_dlt-exception-fqcn`, ... (mq's and Spring's
//! `DeadLetterPublishingRecoverer`) and `kafka_original-topic`, `kafka_exception-fqcn`, ...
//! (Spring's `@RetryableTopic`). `--exception` keeps records whose exception type contains
//! TEXT, `--key` those with that key, `--since` / `--until` (RFC 3339 or epoch ms) those
//! dead-lettered in that range; `--dry-run` prints what would be done and sends nothing; a
//! record replayed `--max-replays` times (default 3, 0: no limit) goes to
//! `<dlt-topic>-parking` instead.
//!
//! A record that cannot be replayed (no original topic in either dialect, stored without its
//! value) never stops the replay: it is listed with its reason. Its partition's position
//! stays there, and the records behind it in that partition are held for a later run,
//! unless `--skip-unreplayable` moves the position past it.
//!
//! Exit status: 0 when every record was replayed (or filtered, parked); 3 when some could
//! not be replayed (listed, with the summary); 2 for a usage error; 1 when the replay failed
//! (broker, configuration).
//!
//! `<dlt-topic>` may be a queue listener's RabbitMQ dead-letter queue, `amqp:///<queue>.dlq`:
//! its messages go back to `<queue>`, parked ones to `<queue>.dlq.parking`; `--exception`
//! matches the error type in `x-exception-stacktrace`, `--key` the routing key the message
//! was first published with.

use std::process::ExitCode;

use mq_core::failure::redrive::{ReplayOptions, ReplayReport};

const USAGE: &str = "usage: mq dlt-replay <dlt-topic | amqp:///<queue>.dlq> [--limit N] [--exception TEXT] [--key KEY] \
[--since TIME] [--until TIME] [--max-replays N] [--dry-run] [--skip-unreplayable]";

/// The exit status when some records could not be replayed.
const UNREPLAYABLE: u8 = 3;

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
        if flag == "--skip-unreplayable" {
            opts.skip_unreplayable = true;
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
            for u in &report.unreplayable {
                eprintln!("cannot replay {}: {}", u.at, u.reason);
            }
            println!("{}", summary(&topic, &opts, &report));
            ExitCode::from(exit_status(&report))
        }
        Err(e) => {
            eprintln!("replay failed: {e}");
            ExitCode::FAILURE
        }
    }
}

/// 0, or [`UNREPLAYABLE`] when some records could not be replayed.
fn exit_status(report: &ReplayReport) -> u8 {
    if report.unreplayable.is_empty() {
        0
    } else {
        UNREPLAYABLE
    }
}

/// The last line: what was done, and what is left.
fn summary(topic: &str, opts: &ReplayOptions, report: &ReplayReport) -> String {
    let mut line = format!(
        "replayed {} record(s) from {topic}; {} parked, {} skipped, {} unreplayable",
        report.total(),
        report.parked,
        report.skipped,
        report.unreplayable.len(),
    );
    if report.held > 0 {
        line.push_str(&format!(
            ", {} held behind them (rerun with --skip-unreplayable to move past them)",
            report.held
        ));
    } else if !report.unreplayable.is_empty() && opts.skip_unreplayable && !opts.dry_run {
        line.push_str(" (committed past)");
    }
    if opts.dry_run {
        line.push_str(" (dry run: nothing sent)");
    }
    line
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
        assert!(!o.skip_unreplayable);
        let (_, o) = parse(&args("dlt-replay o-dlt --skip-unreplayable")).unwrap();
        assert!(o.skip_unreplayable);
        assert!(parse(&args("dlt-replay o-dlt --limit x")).is_err());
        assert!(parse(&args("dlt-replay o-dlt --bogus 1")).is_err());
        assert!(parse(&args("other o-dlt")).is_err());
    }

    #[test]
    fn unreplayable_records_exit_3_with_a_summary() {
        let mut report = ReplayReport::default();
        report.replayed.insert("orders".into(), 4);
        assert_eq!(exit_status(&report), 0);
        report
            .unreplayable
            .push(mq_core::failure::redrive::Unreplayable {
                at: "orders.DLT/0@2".into(),
                reason: "not a dead letter".into(),
            });
        report.held = 2;
        assert_eq!(exit_status(&report), UNREPLAYABLE);
        let opts = ReplayOptions::default();
        assert_eq!(
            summary("orders.DLT", &opts, &report),
            "replayed 4 record(s) from orders.DLT; 0 parked, 0 skipped, 1 unreplayable, 2 held behind them (rerun with --skip-unreplayable to move past them)"
        );
        report.held = 0;
        let skip = ReplayOptions {
            skip_unreplayable: true,
            ..Default::default()
        };
        assert!(summary("orders.DLT", &skip, &report).ends_with("1 unreplayable (committed past)"));
    }
}
