//! One run of a contender: its figures, the median of several, what is printed.

use super::*;

impl Bench {
    pub(crate) fn topic(&mut self, what: &str) -> String {
        let t = format!("{}-{what}", self.prefix);
        self.topics.push(t.clone());
        // mq creates `<topic>-dlt` for its listener's topics.
        self.topics.push(format!("{t}-dlt"));
        t
    }

    /// Creates a topic of `partitions` partitions holding messages `0..n`.
    pub(crate) async fn produced_topic(
        &mut self,
        what: &str,
        partitions: usize,
        report: &mut Report,
    ) -> BenchResult<String> {
        let topic = self.topic(what);
        common::create_topics(&self.o.bootstrap, &[(&topic, partitions as i32)]).await?;
        let (bootstrap, t, n) = (self.o.bootstrap.clone(), topic.clone(), self.o.messages);
        let (secs, size) =
            tokio::task::spawn_blocking(move || common::produce_all(&bootstrap, &t, partitions, n))
                .await
                .map_err(|e| e.to_string())??;
        println!(
            "  produced {n} messages (mean value {size} B) to {topic} ({partitions} partitions) in {secs:.2} s: {:.0} msg/s",
            n as f64 / secs
        );
        report.value_bytes = size;
        report.produce_msgs_per_s.get_or_insert(n as f64 / secs);
        Ok(topic)
    }

    /// One consuming run over `topic` (holding messages `0..messages`).
    pub(crate) async fn run(
        &self,
        system: System,
        topic: &str,
        partitions: usize,
        scrape: bool,
    ) -> BenchResult<Run> {
        let o = &self.o;
        let sink = Sink::new(partitions, o.messages, false);
        let group = unique(&format!("{}-{}", self.prefix, system.name()));
        let load = load1();
        let timeout = o.run_timeout();
        let run = match system {
            System::Baseline => {
                let running = baseline::start(&o.bootstrap, &group, topic, sink.clone())?;
                let join = running.wait_assigned(Duration::from_secs(60)).await?;
                let (cpu0, wall0) = (cpu_time(), Instant::now());
                let done = wait_done(&sink, timeout, "baseline").await;
                let (cpu1, wall1) = (cpu_time(), Instant::now());
                running.finish(Duration::from_secs(10)).await?;
                done?;
                finish_run(
                    &sink,
                    o.messages,
                    join,
                    None,
                    cpu1 - cpu0,
                    wall1 - wall0,
                    load,
                    None,
                )?
            }
            System::Mq => {
                let started = mq_app::start(
                    &o.bootstrap,
                    topic,
                    &group,
                    sink.clone(),
                    Duration::from_secs(60),
                )
                .await?;
                let (cpu0, wall0) = (cpu_time(), Instant::now());
                let scraper = match (scrape, started.app.actuator_addr()) {
                    (false, _) => None,
                    (true, Some(addr)) => Some(mq_app::Scraper::start(addr, o.scrape_rate)),
                    (true, None) => return Err("mq: the actuator is not running".to_owned()),
                };
                let done = wait_done(&sink, timeout, "mq").await;
                let (cpu1, wall1) = (cpu_time(), Instant::now());
                let scraped = scraper.map(mq_app::Scraper::finish).transpose();
                started
                    .app
                    .shutdown()
                    .await
                    .map_err(|e| format!("mq shutdown: {e}"))?;
                done?;
                let scraped = scraped?;
                finish_run(
                    &sink,
                    o.messages,
                    started.join,
                    Some(started.start),
                    cpu1 - cpu0,
                    wall1 - wall0,
                    load,
                    scraped.map(|s| s.scrapes as f64 / s.seconds.max(1e-6)),
                )?
            }
        };
        Ok(run)
    }

    /// One latency phase: a fresh topic, the consumer assigned, then `rate` messages a
    /// second for `latency_secs`; latencies of the messages sent after the first second.
    pub(crate) async fn latency_run(
        &mut self,
        system: System,
        rate: u64,
    ) -> BenchResult<LatencyPhase> {
        let secs = self.o.latency_secs;
        let topic = self.topic(&format!("lat-{rate}-{}", unique(system.name())));
        common::create_topics(&self.o.bootstrap, &[(&topic, 6)]).await?;
        let n = rate * secs;
        let sink = Sink::new(6, n, true);
        let group = unique(&format!("{}-lat", self.prefix));
        let o = &self.o;
        let timeout = Duration::from_secs(secs + 60);
        enum Consumer {
            Baseline(baseline::Running),
            Mq(Box<mq_app::Started>),
        }
        let consumer = match system {
            System::Baseline => {
                let r = baseline::start(&o.bootstrap, &group, &topic, sink.clone())?;
                r.wait_assigned(Duration::from_secs(60)).await?;
                Consumer::Baseline(r)
            }
            System::Mq => Consumer::Mq(Box::new(
                mq_app::start(
                    &o.bootstrap,
                    &topic,
                    &group,
                    sink.clone(),
                    Duration::from_secs(60),
                )
                .await?,
            )),
        };
        // Let the fetchers start (offset lookup) before the clock runs.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let t0 = unix_us();
        let producer = common::produce_at_rate(
            o.bootstrap.clone(),
            topic.clone(),
            6,
            n,
            rate,
            o.latency_linger_ms,
        );
        let done = wait_done(&sink, timeout, system.name()).await;
        let achieved = tokio::task::spawn_blocking(move || producer.join())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|_| "latency producer panicked".to_owned())?;
        match consumer {
            Consumer::Baseline(r) => r.finish(Duration::from_secs(10)).await?,
            Consumer::Mq(s) => s.app.shutdown().await.map_err(|e| e.to_string())?,
        }
        done?;
        let (achieved, acks) = achieved?;
        sink.verify()?;
        // Warm-up: the first second (or fifth of the phase) is not counted.
        let from_us = t0 + (secs * 1_000_000 / 5).min(1_000_000);
        let mut acked_at = vec![0u64; n as usize];
        let mut ack = Vec::with_capacity(acks.len());
        for (id, sent, at) in acks {
            if let Some(slot) = acked_at.get_mut(id as usize) {
                *slot = at;
            }
            if sent >= from_us {
                ack.push(at.saturating_sub(sent) as i64);
            }
        }
        let (mut lat, mut consumer) = (Vec::new(), Vec::new());
        for (id, sent, at) in sink.entries() {
            if sent < from_us {
                continue;
            }
            lat.push(at.saturating_sub(sent) as i64);
            if let Some(&acked) = acked_at.get(id as usize).filter(|a| **a > 0) {
                consumer.push(at as i64 - acked as i64);
            }
        }
        lat.sort_unstable();
        consumer.sort_unstable();
        ack.sort_unstable();
        Ok(LatencyPhase {
            lat,
            consumer,
            acks: ack,
            achieved,
        })
    }
}

/// One series (end to end, consumer share, acks) of a latency phase.
pub(crate) type Series = fn(&LatencyPhase) -> &[i64];

/// Median over rounds of one percentile of one series of the phases.
pub(crate) fn round_median(phases: &[LatencyPhase], series: Series, q: f64) -> i64 {
    median(
        phases
            .iter()
            .map(|p| percentile(series(p), q) as f64)
            .collect(),
    ) as i64
}

/// One latency phase (µs, each sorted): send → handler entry, producer acknowledgement →
/// handler entry (the consumer's share; negative when the record reached the consumer
/// before the acknowledgement reached the producer), send → acknowledgement.
pub(crate) struct LatencyPhase {
    pub(crate) lat: Vec<i64>,
    pub(crate) consumer: Vec<i64>,
    pub(crate) acks: Vec<i64>,
    pub(crate) achieved: f64,
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn finish_run(
    sink: &Sink,
    n: u64,
    join: Duration,
    start: Option<Duration>,
    cpu: Duration,
    wall: Duration,
    load: String,
    scrapes: Option<f64>,
) -> BenchResult<Run> {
    let duplicates = sink.verify()?;
    let (first, last) = sink.window().ok_or("no record was handled")?;
    let secs = (last - first).as_secs_f64().max(1e-6);
    Ok(Run {
        msgs_per_s: n as f64 / secs,
        secs,
        join_ms: join.as_secs_f64() * 1000.0,
        start_ms: start.map(|s| s.as_secs_f64() * 1000.0),
        cpu_per_wall: cpu.as_secs_f64() / wall.as_secs_f64().max(1e-6),
        cpu_us_per_msg: cpu.as_secs_f64() * 1e6 / n as f64,
        duplicates,
        load,
        scrapes,
    })
}

pub(crate) fn print_run(label: &str, i: usize, r: &Run) {
    let start = r
        .start_ms
        .map(|s| format!(", start {s:.1} ms"))
        .unwrap_or_default();
    let scrapes = r
        .scrapes
        .map(|s| format!(", {s:.0} scrapes/s"))
        .unwrap_or_default();
    let dups = if r.duplicates > 0 {
        format!(", {} DUPLICATES", r.duplicates)
    } else {
        String::new()
    };
    println!(
        "  {label:<14} run {i}: {:>9.0} msg/s ({:.3} s){start}, join {:.0} ms, cpu/wall {:.2}, cpu {:.2} µs/msg, load {}{scrapes}{dups}",
        r.msgs_per_s, r.secs, r.join_ms, r.cpu_per_wall, r.cpu_us_per_msg, r.load
    );
}
