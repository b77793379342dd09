//! The summary table: each figure against its target.

use super::*;

/// µs as ms with one decimal.
pub(crate) fn ms(us: i64) -> String {
    format!("{:.1}", us as f64 / 1000.0)
}

pub(crate) fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

pub(crate) fn summary(r: &Report) -> String {
    let mut s = String::new();
    let mut line = |l: String| {
        s.push_str(&l);
        s.push('\n');
    };
    line(format!(
        "machine: {} cores, {}, {} MB RAM; {}; load {} → {}",
        r.nproc, r.cpu, r.mem_mb, r.date, r.load_start, r.load_end
    ));
    line(format!("allocator: {ALLOCATOR_NAME}"));
    line(format!(
        "messages: {} per throughput topic, value {} B (CloudEvents structured JSON)",
        r.messages, r.value_bytes
    ));
    line(String::new());
    line("| figure | baseline | mq | mq / baseline | target | |".to_owned());
    line("| --- | ---: | ---: | ---: | --- | --- |".to_owned());
    if let Some(q) = &r.rabbit {
        line(format!(
            "| RabbitMQ queue, {} messages, prefetch {}: faster hand-written lapin loop (ack each {:.0}, batched {:.0}) vs mq listener (msg/s) | {:.0} | {:.0} | {:.3} | ≥ 0.90 | {} |",
            q.messages,
            q.prefetch,
            q.per_message_median,
            q.batched_median,
            q.baseline_median,
            q.mq_median,
            q.ratio,
            verdict(q.ratio >= 0.90)
        ));
    }
    for l in &r.lag {
        line(format!(
            "| peak RSS, slow consumer, {} partitions x {} MB backlog (MB) | | {:.1} | | bounded | |",
            l.partitions, l.backlog_mb_per_partition, l.peak_rss_mb
        ));
    }
    if let Some(o) = &r.outbox {
        line(format!(
            "| outbox relay, {} rows on PostgreSQL (rows/s) | | {:.0} | | | |",
            o.relay_rows, o.relay_rows_per_s
        ));
        line(format!(
            "| idempotent ÷ plain listener, {} records (msg/s) | {:.0} (plain) | {:.0} (idempotent) | {:.3} | | |",
            o.listener_messages, o.plain_msgs_per_s, o.idempotent_msgs_per_s, o.idempotent_ratio
        ));
    }
    if let Some(k) = &r.keyed {
        line(format!(
            "| key order ÷ partition order, 1 partition, 100 keys, 1 ms handler (msg/s) | {:.0} (partition) | {:.0} (key) | {:.1} | ≥ 10 | {} |",
            k.partition.msgs_per_s,
            k.key.msgs_per_s,
            k.ratio,
            verdict(k.ratio >= 10.0)
        ));
    }
    if let Some(t) = &r.throughput {
        let bj = median(t.baseline.iter().map(|x| x.join_ms).collect());
        let mj = median(t.mq.iter().map(|x| x.join_ms).collect());
        let bc = median(t.baseline.iter().map(|x| x.cpu_per_wall).collect());
        let mc = median(t.mq.iter().map(|x| x.cpu_per_wall).collect());
        let bu = median(t.baseline.iter().map(|x| x.cpu_us_per_msg).collect());
        let mu = median(t.mq.iter().map(|x| x.cpu_us_per_msg).collect());
        line(format!(
            "| throughput, 6 partitions (msg/s, median of {}) | {:.0} | {:.0} | {:.3} | ≥ 0.90 | {} |",
            t.mq.len(),
            t.baseline_median,
            t.mq_median,
            t.ratio,
            verdict(t.ratio >= 0.90)
        ));
        line(format!(
            "| process CPU time per message (µs) | {bu:.2} | {mu:.2} | {:.2} | ≤ 1.25 | {} |",
            mu / bu.max(1e-9),
            verdict(mu / bu.max(1e-9) <= 1.25)
        ));
        line(format!(
            "| CPU time / wall time while consuming | {bc:.2} | {mc:.2} | | | |"
        ));
        line(format!(
            "| group join (ms, median) | {bj:.0} | {mj:.0} | | | |"
        ));
    }
    let configs: Vec<(Option<u32>, u64)> = {
        let mut v: Vec<(Option<u32>, u64)> = r
            .latency
            .iter()
            .map(|l| (l.fetch_wait_ms, l.rate))
            .collect();
        v.dedup();
        v
    };
    for (wait, rate) in configs {
        let get = |sys: System| {
            r.latency
                .iter()
                .find(|l| l.rate == rate && l.fetch_wait_ms == wait && l.system == sys)
        };
        let w = match wait {
            Some(ms) => format!("fetch.wait.max.ms={ms}"),
            None => "default fetch wait".to_owned(),
        };
        if let (Some(b), Some(m)) = (get(System::Baseline), get(System::Mq)) {
            let ratio = m.p99_us as f64 / b.p99_us.max(1) as f64;
            line(format!(
                "| latency {rate}/s, {w}: p50 / p99 / max (ms) | {} / {} / {} | {} / {} / {} | p99 {ratio:.2} | p99 ≤ 1.2 | {} |",
                ms(b.p50_us),
                ms(b.p99_us),
                ms(b.max_us),
                ms(m.p50_us),
                ms(m.p99_us),
                ms(m.max_us),
                verdict(ratio <= 1.2)
            ));
            line(format!(
                "| (of which producer ack → handler, {rate}/s, {w}: p50 / p99, ms) | {} / {} | {} / {} | p99 {:.2} | | |",
                ms(b.consumer_p50_us),
                ms(b.consumer_p99_us),
                ms(m.consumer_p50_us),
                ms(m.consumer_p99_us),
                m.consumer_p99_us as f64 / b.consumer_p99_us.max(1) as f64
            ));
            line(format!(
                "| (producer send → ack {rate}/s, {w}: p50 / p99, ms) | {} / {} | {} / {} | | | |",
                ms(b.ack_p50_us),
                ms(b.ack_p99_us),
                ms(m.ack_p50_us),
                ms(m.ack_p99_us)
            ));
        }
    }
    let fp = |k: &str| r.footprint.iter().find(|f| f.kind == k);
    if let Some(m) = fp("mq") {
        let b = fp("rdkafka");
        let bv =
            |f: fn(&FootprintRow) -> f64| b.map(|b| format!("{:.1}", f(b))).unwrap_or_default();
        line(format!(
            "| idle RSS after assignment (MB) | {} | {:.1} | | ≤ 20 | {} |",
            bv(|f| f.rss_mb),
            m.rss_mb,
            verdict(m.rss_mb <= 20.0)
        ));
        line(format!(
            "| process start → ready, without group join (ms) | {} | {:.1} | | ≤ 100 | {} |",
            bv(|f| f.to_started_ms),
            m.to_started_ms,
            verdict(m.to_started_ms <= 100.0)
        ));
        line(format!(
            "| group join (ms) | {} | {:.1} | | | |",
            bv(|f| f.join_ms),
            m.join_ms
        ));
        line(format!(
            "| process start → all listeners assigned (ms) | {} | {:.1} | | | |",
            bv(|f| f.to_assigned_ms),
            m.to_assigned_ms
        ));
    }
    if let Some(sc) = &r.scrape {
        line(format!(
            "| mq throughput scraped at {:.0}/s ÷ unscraped | | {:.0} / {:.0} | {:.3} | | |",
            sc.scrape_rate, sc.with_median, sc.without_median, sc.ratio
        ));
        line(format!(
            "| one scrape on an idle app: bytes, client-side ms, process CPU ms | | {} B, {:.2}, {:.2} | | | |",
            sc.mean_scrape_bytes, sc.mean_scrape_ms, sc.cpu_per_scrape_ms
        ));
    }
    for row in &r.scaling {
        if let Some((msgs, cpu)) = row.baseline {
            let ratio = row.msgs_per_s / msgs;
            line(format!(
                "| throughput, 1 partition (msg/s, median) | {msgs:.0} | {:.0} | {ratio:.3} | ≥ 0.90 | {} |",
                row.msgs_per_s,
                verdict(ratio >= 0.90)
            ));
            line(format!(
                "| process CPU time per message, 1 partition (µs) | {cpu:.2} | {:.2} | {:.2} | ≤ 1.25 | {} |",
                row.cpu_us_per_msg,
                row.cpu_us_per_msg / cpu,
                verdict(row.cpu_us_per_msg / cpu <= 1.25)
            ));
        }
        line(format!(
            "| mq throughput, {} partition(s) (msg/s; CPU/wall; CPU µs/msg) | | {:.0} ({:.2}; {:.2}) | | | |",
            row.partitions, row.msgs_per_s, row.cpu_per_wall, row.cpu_us_per_msg
        ));
    }
    s
}
