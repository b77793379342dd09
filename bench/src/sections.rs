//! The sections, in the order they run: each measures mq and its baseline.

use super::runs::*;
use super::*;

pub(crate) async fn sections(b: &mut Bench, report: &mut Report) -> BenchResult<()> {
    let runs = b.o.runs;
    let mut tp6: Option<String> = None;

    if b.o.wants("throughput") {
        println!(
            "\n## throughput: 6 partitions, {} messages, {runs} alternating runs each",
            b.o.messages
        );
        let topic = match b.o.throughput_topic.clone() {
            Some(t) => t,
            None => b.produced_topic("tp6", 6, report).await?,
        };
        let (mut base, mut mq) = (Vec::new(), Vec::new());
        for i in 1..=runs {
            for system in b.o.contenders.clone() {
                let r = b.run(system, &topic, 6, false).await?;
                print_run(system.name(), i, &r);
                match system {
                    System::Baseline => base.push(r),
                    System::Mq => mq.push(r),
                }
            }
        }
        let bm = median(base.iter().map(|r| r.msgs_per_s).collect());
        let mm = median(mq.iter().map(|r| r.msgs_per_s).collect());
        println!(
            "  median: baseline {bm:.0} msg/s, mq {mm:.0} msg/s, mq/baseline {:.3}",
            mm / bm
        );
        report.throughput = Some(Pair {
            baseline: base,
            mq,
            baseline_median: bm,
            mq_median: mm,
            ratio: mm / bm,
        });
        tp6 = Some(topic);
    }

    if b.o.wants("rabbit") {
        println!(
            "\n## rabbit: one queue, {} messages, prefetch {}, {runs} alternating runs each",
            b.o.rabbit_messages, b.o.rabbit_prefetch
        );
        report.rabbit = Some(rabbit::run(b.o.rabbit_messages, runs, b.o.rabbit_prefetch).await?);
    }

    if b.o.wants("reply") {
        let (requests, in_flight) = if b.o.quick { (500, 32) } else { (5_000, 64) };
        println!(
            "\n## reply: request–reply round trips, {requests} requests, {in_flight} in flight, {runs} alternating runs each"
        );
        let prefix = b.topic("rr");
        report.reply = Some(reply::run(&b.o.bootstrap, &prefix, requests, in_flight, runs).await?);
    }

    if b.o.wants("lag") {
        let mb: u64 = std::env::var("MQ_BENCH_LAG_MB")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(if b.o.quick { 1 } else { 100 });
        println!("\n## lag: RSS of a slow consumer (50 ms per record) joining 1 and 48 partitions with {mb} MB of backlog each");
        for partitions in [1usize, 48] {
            let topic = b.topic(&format!("lag{partitions}"));
            common::create_topics(&b.o.bootstrap, &[(&topic, partitions as i32)]).await?;
            let (bootstrap, t) = (b.o.bootstrap.clone(), topic.clone());
            tokio::task::spawn_blocking(move || {
                lag::produce_backlog(&bootstrap, &t, partitions, mb)
            })
            .await
            .map_err(|e| e.to_string())??;
            let (bootstrap, t) = (b.o.bootstrap.clone(), topic.clone());
            let r =
                tokio::task::spawn_blocking(move || lag::measure(&bootstrap, &t, partitions, mb))
                    .await
                    .map_err(|e| e.to_string())??;
            println!(
                "  {partitions:>2} partitions x {mb} MB backlog: RSS {:.1} MB, peak {:.1} MB, {} records handled in the watch",
                r.rss_mb, r.peak_rss_mb, r.handled
            );
            report.lag.push(r);
        }
    }

    if b.o.wants("keyed") {
        let n = (b.o.messages / 50).clamp(1_000, 5_000);
        println!("\n## keyed: 1 partition, 100 keys, handler waits 1 ms, {n} messages: partition order vs key order");
        let topic = b.topic("keyed");
        let r = keyed::run(&b.o.bootstrap, &topic, n).await?;
        for run in [&r.partition, &r.key] {
            println!(
                "  ordering {:<9} {:>8.0} msg/s, out of key order: {}",
                run.ordering, run.msgs_per_s, run.out_of_order
            );
        }
        println!("  key / partition: {:.1}x", r.ratio);
        if r.partition.out_of_order + r.key.out_of_order > 0 {
            return Err("keyed: a key's records were handled out of order".into());
        }
        report.keyed = Some(r);
    }

    if b.o.wants("outbox") {
        let rows = (b.o.messages / 20).clamp(5_000, 50_000);
        let n = (b.o.messages / 50).clamp(2_000, 20_000);
        println!("\n## outbox: relay of {rows} rows (1,000 keys, 6 partitions) on PostgreSQL; plain vs idempotent listener on {n} of them");
        let topic = b.topic("outbox");
        let r = outbox::run(&b.o.bootstrap, &topic, rows, n).await?;
        println!("  relay: {:.0} rows/s published", r.relay_rows_per_s);
        println!(
            "  listener: plain {:.0} msg/s, idempotent {:.0} msg/s, idempotent / plain {:.3}",
            r.plain_msgs_per_s, r.idempotent_msgs_per_s, r.idempotent_ratio
        );
        report.outbox = Some(r);
    }

    if b.o.wants("scaling") {
        println!(
            "\n## scaling: mq over 1, 3 and 6 partitions, {runs} runs each (and the baseline on 1)"
        );
        let mut topics = Vec::new();
        for p in [1usize, 3, 6] {
            let t = match (&tp6, p) {
                (Some(t), 6) => t.clone(),
                _ => b.produced_topic(&format!("tp{p}"), p, report).await?,
            };
            if p == 6 {
                tp6 = Some(t.clone());
            }
            topics.push((p, t));
        }
        let mut rows: Vec<(usize, Vec<Run>)> =
            topics.iter().map(|(p, _)| (*p, Vec::new())).collect();
        // One partition is where the handoff from the poll loop to the lane is the whole
        // pipeline: the baseline runs there too, alternating with mq.
        let mut baseline_1 = Vec::new();
        for i in 1..=runs {
            for (k, (p, t)) in topics.iter().enumerate() {
                if *p == 1 {
                    let r = b.run(System::Baseline, t, 1, false).await?;
                    print_run("baseline 1 p.", i, &r);
                    baseline_1.push(r);
                }
                let r = b.run(System::Mq, t, *p, false).await?;
                print_run(&format!("mq {p} part."), i, &r);
                rows[k].1.push(r);
            }
        }
        for (p, rs) in rows {
            let baseline = (p == 1).then(|| {
                (
                    median(baseline_1.iter().map(|r| r.msgs_per_s).collect()),
                    median(baseline_1.iter().map(|r| r.cpu_us_per_msg).collect()),
                )
            });
            let row = ScalingRow {
                partitions: p,
                msgs_per_s: median(rs.iter().map(|r| r.msgs_per_s).collect()),
                cpu_per_wall: median(rs.iter().map(|r| r.cpu_per_wall).collect()),
                cpu_us_per_msg: median(rs.iter().map(|r| r.cpu_us_per_msg).collect()),
                runs: rs,
                baseline,
            };
            println!(
                "  median: {p} partition(s): {:.0} msg/s, cpu/wall {:.2}, cpu {:.2} µs/msg",
                row.msgs_per_s, row.cpu_per_wall, row.cpu_us_per_msg
            );
            if let Some((msgs, cpu)) = row.baseline {
                println!(
                    "  median: baseline on 1 partition: {msgs:.0} msg/s, cpu {cpu:.2} µs/msg; mq/baseline {:.3}, CPU per message {:.2}x",
                    row.msgs_per_s / msgs,
                    row.cpu_us_per_msg / cpu
                );
            }
            report.scaling.push(row);
        }
    }

    if b.o.wants("scrape") {
        println!(
            "\n## scrape cost: mq on 6 partitions, /actuator/prometheus at {}/s vs none, {runs} alternating runs",
            b.o.scrape_rate
        );
        let topic = match &tp6 {
            Some(t) => t.clone(),
            None => b.produced_topic("tp6", 6, report).await?,
        };
        let (mut without, mut with) = (Vec::new(), Vec::new());
        let mut scraped = Vec::new();
        for i in 1..=runs {
            let r = b.run(System::Mq, &topic, 6, false).await?;
            print_run("mq", i, &r);
            without.push(r);
            let r = b.run(System::Mq, &topic, 6, true).await?;
            print_run("mq + scrape", i, &r);
            scraped.push(r.scrapes.unwrap_or(0.0));
            with.push(r);
        }
        // Size and duration of one scrape, on an idle app after the runs.
        let (stats, cpu_per_scrape_ms) = idle_scrape_stats(b).await?;
        let wo = median(without.iter().map(|r| r.msgs_per_s).collect());
        let wi = median(with.iter().map(|r| r.msgs_per_s).collect());
        println!(
            "  median: no scrape {wo:.0} msg/s, scraped {wi:.0} msg/s, ratio {:.3}; one scrape: {} B in {:.2} ms, {:.2} ms of process CPU",
            wi / wo,
            stats.mean_bytes,
            stats.mean_ms,
            cpu_per_scrape_ms
        );
        report.scrape = Some(ScrapeResult {
            without_median: wo,
            with_median: wi,
            ratio: wi / wo,
            scrape_rate: median(scraped),
            mean_scrape_bytes: stats.mean_bytes,
            mean_scrape_ms: stats.mean_ms,
            cpu_per_scrape_ms,
            without,
            with,
        });
    }

    if b.o.wants("latency") {
        println!(
            "\n## latency: produce at a fixed rate, send → handler entry, {} s phases, {} round(s); percentiles are the median over rounds, max the max",
            b.o.latency_secs, b.o.latency_rounds
        );
        let base_props = b.o.consumer_props.clone();
        for wait in b.o.latency_fetch_waits.clone() {
            let mut props = base_props.clone();
            let wait_label = match wait {
                Some(ms) => {
                    props.push(("fetch.wait.max.ms".to_owned(), ms.to_string()));
                    format!("fetch.wait.max.ms={ms}")
                }
                None => "fetch.wait.max.ms default".to_owned(),
            };
            common::set_consumer_props(props);
            println!("  -- both consumers with {wait_label}");
            let rates = b.o.latency_rates.clone();
            for rate in rates {
                let mut phases: [Vec<LatencyPhase>; 2] = Default::default();
                for round in 1..=b.o.latency_rounds {
                    for (k, system) in [System::Baseline, System::Mq].into_iter().enumerate() {
                        let load = load1();
                        let ph = b.latency_run(system, rate).await?;
                        println!(
                        "  {:<8} {rate:>6}/s round {round}: p50 {} µs, p99 {} µs, max {} µs ({} samples); ack → handler p50 {} µs, p99 {} µs; send → ack p50 {} µs, p99 {} µs; sent at {:.0}/s, load {load}",
                        system.name(),
                        percentile(&ph.lat, 0.5),
                        percentile(&ph.lat, 0.99),
                        ph.lat.last().copied().unwrap_or(0),
                        ph.lat.len(),
                        percentile(&ph.consumer, 0.5),
                        percentile(&ph.consumer, 0.99),
                        percentile(&ph.acks, 0.5),
                        percentile(&ph.acks, 0.99),
                        ph.achieved,
                    );
                        phases[k].push(ph);
                    }
                }
                for (k, system) in [System::Baseline, System::Mq].into_iter().enumerate() {
                    let ph = std::mem::take(&mut phases[k]);
                    let (lat, consumer, acks): (Series, Series, Series) =
                        (|p| &p.lat, |p| &p.consumer, |p| &p.acks);
                    report.latency.push(LatencyRow {
                        fetch_wait_ms: wait,
                        rate,
                        system,
                        samples: ph.iter().map(|p| p.lat.len()).sum(),
                        achieved_rate: median(ph.iter().map(|p| p.achieved).collect()),
                        p50_us: round_median(&ph, lat, 0.5),
                        p99_us: round_median(&ph, lat, 0.99),
                        max_us: ph
                            .iter()
                            .filter_map(|p| p.lat.last().copied())
                            .max()
                            .unwrap_or(0),
                        consumer_p50_us: round_median(&ph, consumer, 0.5),
                        consumer_p99_us: round_median(&ph, consumer, 0.99),
                        ack_p50_us: round_median(&ph, acks, 0.5),
                        ack_p99_us: round_median(&ph, acks, 0.99),
                    });
                }
            }
        }
        common::set_consumer_props(base_props);
    }

    if b.o.wants("footprint") {
        println!(
            "\n## footprint: a fresh process with one listener (and a bare rdkafka consumer), {} run(s) each",
            b.o.footprint_runs
        );
        let topic = b.topic("idle");
        let dlt = format!("{topic}-dlt");
        common::create_topics(&b.o.bootstrap, &[(&topic, 6), (&dlt, 6)]).await?;
        for kind in ["mq", "rdkafka"] {
            let mut runs: Vec<Footprint> = Vec::new();
            for i in 1..=b.o.footprint_runs {
                let f = footprint::measure_child(kind, &b.o.bootstrap, &topic).await?;
                println!(
                    "  {kind:<8} run {i}: RSS {:.1} MB (peak {:.1} MB, {} threads); spawn → main {:.1} ms, → started {:.1} ms, join {:.1} ms, → assigned {:.1} ms",
                    f.rss_kb as f64 / 1024.0,
                    f.hwm_kb as f64 / 1024.0,
                    f.threads,
                    f.to_main_ms,
                    f.to_started_ms,
                    f.join_ms,
                    f.to_assigned_ms
                );
                runs.push(f);
            }
            let m = |f: fn(&Footprint) -> f64| median(runs.iter().map(f).collect());
            report.footprint.push(FootprintRow {
                kind: kind.to_owned(),
                runs: runs.len(),
                rss_mb: m(|f| f.rss_kb as f64 / 1024.0),
                hwm_mb: m(|f| f.hwm_kb as f64 / 1024.0),
                threads: m(|f| f.threads as f64) as u64,
                to_main_ms: m(|f| f.to_main_ms),
                to_started_ms: m(|f| f.to_started_ms),
                join_ms: m(|f| f.join_ms),
                to_assigned_ms: m(|f| f.to_assigned_ms),
            });
        }
    }
    Ok(())
}

/// Scrapes an idle app for 2 s: size, duration and process CPU time of one scrape.
pub(crate) async fn idle_scrape_stats(b: &mut Bench) -> BenchResult<(mq_app::ScrapeStats, f64)> {
    let topic = b.topic("scrape-idle");
    common::create_topics(&b.o.bootstrap, &[(&topic, 1)]).await?;
    let sink = Sink::new(1, 1, false);
    let started = mq_app::start(
        &b.o.bootstrap,
        &topic,
        &unique("g"),
        sink,
        Duration::from_secs(60),
    )
    .await?;
    let addr = started
        .app
        .actuator_addr()
        .ok_or("the actuator is not running")?;
    // The idle app's own CPU first, then the same time scraped: the difference is the
    // scrapes' (server and the client thread of this process).
    let window = Duration::from_secs(2);
    let cpu0 = cpu_time();
    tokio::time::sleep(window).await;
    let idle = cpu_time() - cpu0;
    let scraper = mq_app::Scraper::start(addr, b.o.scrape_rate);
    let cpu1 = cpu_time();
    tokio::time::sleep(window).await;
    let scraped = cpu_time() - cpu1;
    let stats = scraper.finish();
    started.app.shutdown().await.map_err(|e| e.to_string())?;
    let stats = stats?;
    let per_scrape_ms =
        scraped.saturating_sub(idle).as_secs_f64() * 1000.0 / stats.scrapes.max(1) as f64;
    Ok((stats, per_scrape_ms))
}
