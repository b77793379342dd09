//! Command-line options: parsing, `--help`.

use super::*;

impl Opts {
    pub(crate) fn parse() -> Result<Opts, String> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let quick = args.iter().any(|a| a == "--quick");
        let mut o = Opts {
            quick,
            messages: if quick { 100_000 } else { 1_000_000 },
            runs: if quick { 3 } else { 5 },
            bootstrap: std::env::var("MQ_BENCH_BOOTSTRAP")
                .unwrap_or_else(|_| "127.0.0.1:9092".to_owned()),
            sections: SECTIONS.iter().map(|s| s.to_string()).collect(),
            latency_secs: if quick { 1 } else { 5 },
            latency_rates: vec![1_000, 10_000],
            latency_fetch_waits: vec![None, Some(10)],
            latency_linger_ms: 5,
            latency_rounds: if quick { 1 } else { 3 },
            footprint_runs: if quick { 1 } else { 3 },
            scrape_rate: 50,
            json: None,
            log: std::env::temp_dir().join("mq-bench.log"),
            keep_topics: false,
            consumer_props: Vec::new(),
            contenders: vec![System::Baseline, System::Mq],
            throughput_topic: None,
            worker_threads: None,
            rabbit_messages: if quick { 20_000 } else { 100_000 },
            rabbit_prefetch: 250,
        };
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let mut val = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
            match a.as_str() {
                "--quick" => {}
                "--messages" => o.messages = num(&val("--messages")?)?,
                "--runs" => o.runs = num::<usize>(&val("--runs")?)?.max(1),
                "--bootstrap" => o.bootstrap = val("--bootstrap")?,
                "--only" => {
                    o.sections = val("--only")?.split(',').map(str::to_owned).collect();
                    if let Some(bad) = o.sections.iter().find(|s| {
                        !SECTIONS.contains(&s.as_str()) && !ON_REQUEST.contains(&s.as_str())
                    }) {
                        return Err(format!(
                            "unknown section {bad:?} (known: {SECTIONS:?}, and {ON_REQUEST:?} on request)"
                        ));
                    }
                }
                "--latency-secs" => o.latency_secs = num::<u64>(&val("--latency-secs")?)?.max(1),
                "--latency-rates" => {
                    o.latency_rates = val("--latency-rates")?
                        .split(',')
                        .map(num)
                        .collect::<Result<_, _>>()?
                }
                "--latency-fetch-wait" => {
                    o.latency_fetch_waits = val("--latency-fetch-wait")?
                        .split(',')
                        .map(|w| match w {
                            "default" => Ok(None),
                            ms => num(ms).map(Some),
                        })
                        .collect::<Result<_, _>>()?
                }
                "--latency-linger" => o.latency_linger_ms = num(&val("--latency-linger")?)?,
                "--latency-rounds" => {
                    o.latency_rounds = num::<usize>(&val("--latency-rounds")?)?.max(1)
                }
                "--footprint-runs" => {
                    o.footprint_runs = num::<usize>(&val("--footprint-runs")?)?.max(1)
                }
                "--scrape-rate" => o.scrape_rate = num::<u32>(&val("--scrape-rate")?)?.max(1),
                "--json" => o.json = Some(PathBuf::from(val("--json")?)),
                "--log" => o.log = PathBuf::from(val("--log")?),
                "--keep-topics" => o.keep_topics = true,
                "--rabbit-messages" => {
                    o.rabbit_messages = num::<u64>(&val("--rabbit-messages")?)?.max(1)
                }
                "--rabbit-prefetch" => {
                    o.rabbit_prefetch = num::<u16>(&val("--rabbit-prefetch")?)?.max(1)
                }
                "--throughput-topic" => o.throughput_topic = Some(val("--throughput-topic")?),
                "--worker-threads" => {
                    o.worker_threads = Some(num::<usize>(&val("--worker-threads")?)?.max(1))
                }
                "--contenders" => {
                    o.contenders = val("--contenders")?
                        .split(',')
                        .map(|c| match c {
                            "baseline" => Ok(System::Baseline),
                            "mq" => Ok(System::Mq),
                            other => Err(format!("unknown contender {other:?}")),
                        })
                        .collect::<Result<_, _>>()?
                }
                "--consumer-prop" => {
                    let kv = val("--consumer-prop")?;
                    let (k, v) = kv
                        .split_once('=')
                        .ok_or_else(|| format!("--consumer-prop wants KEY=VALUE, not {kv:?}"))?;
                    o.consumer_props.push((k.to_owned(), v.to_owned()));
                }
                "-h" | "--help" => {
                    println!("{}", HELP.trim());
                    std::process::exit(0);
                }
                other => return Err(format!("unknown argument {other:?} (see --help)")),
            }
        }
        if o.messages < 6 {
            return Err("--messages must be at least 6".to_owned());
        }
        Ok(o)
    }

    pub(crate) fn wants(&self, section: &str) -> bool {
        self.sections.iter().any(|s| s == section)
    }

    /// Timeout of one consuming run: generous (0.05 s per 1,000 messages, at least 60 s).
    pub(crate) fn run_timeout(&self) -> Duration {
        Duration::from_secs((self.messages / 20_000).max(60))
    }
}

pub(crate) const HELP: &str = r#"
mq-bench: mq against a hand-written rdkafka loop, on a real broker (default 127.0.0.1:9092)

  --quick                 smoke run: 100,000 messages, 3 runs, 1 s latency phases (< 1 min)
  --messages N            messages in the throughput topics (default 1,000,000)
  --runs R                alternating runs of each contender (default 5; 3 with --quick)
  --only a,b              sections: throughput,keyed,outbox,lag,scaling,scrape,latency,footprint,rabbit (default all);
                          reply (request-reply on Kafka and RabbitMQ) only when named
  --bootstrap HOST:PORT   the broker (or MQ_BENCH_BOOTSTRAP)
  --latency-secs S        seconds per latency phase (default 5; 1 with --quick)
  --latency-rates a,b     messages per second of the latency phases (default 1000,10000)
  --latency-rounds R      rounds of latency phases (default 3; 1 with --quick)
  --latency-linger MS     linger.ms of the latency producer (default 5, librdkafka's)
  --latency-fetch-wait a,b  fetch.wait.max.ms of the latency phases, for both contenders
                          (default "default,10": librdkafka's 500 ms, then 10 ms)
  --footprint-runs R      fresh processes per footprint figure (default 3; 1 with --quick)
  --scrape-rate R         /actuator/prometheus scrapes per second (default 50)
  --json FILE             also write the results as JSON
  --log FILE              where the apps' logs go (default $TMPDIR/mq-bench.log)
  --keep-topics           do not delete the benchmark's topics at the end
  --consumer-prop K=V     a librdkafka consumer property for both contenders (repeatable)
  --contenders a,b        throughput section only: baseline,mq (default both; for profiling)
  --throughput-topic T    reuse a 6-partition topic kept with --keep-topics (same --messages)
  --worker-threads N      tokio worker threads of the run (default: one per core)
  --rabbit-messages N     rabbit section: messages per run (default 100,000; 20,000 with --quick)
  --rabbit-prefetch P     rabbit section: basic.qos prefetch of both contenders (default 250)

Exit status: non-zero when something fails (a lost message, a scrape error, no broker);
never because of a number.
"#;

pub(crate) fn num<T: std::str::FromStr>(s: &str) -> Result<T, String> {
    s.replace(['_', ','], "")
        .parse()
        .map_err(|_| format!("not a number: {s:?}"))
}
