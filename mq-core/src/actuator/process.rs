//! Process metrics read from `/proc/self` at each scrape, with the names Prometheus client
//! libraries use: `process_cpu_seconds_total`, `process_resident_memory_bytes`,
//! `process_virtual_memory_bytes`, `process_open_fds`, `process_max_fds`,
//! `process_threads` and `process_start_time_seconds`. Elsewhere than on Linux the
//! collector reports nothing.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// `USER_HZ`: the unit of the CPU times in `/proc/<pid>/stat`, 100 on every Linux ABI.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// A snapshot of the process.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct ProcessStats {
    pub(crate) cpu_seconds: f64,
    pub(crate) resident_bytes: Option<i64>,
    pub(crate) virtual_bytes: Option<i64>,
    pub(crate) open_fds: Option<i64>,
    pub(crate) max_fds: Option<i64>,
    pub(crate) threads: Option<i64>,
    pub(crate) start_time_seconds: Option<f64>,
}

impl ProcessStats {
    /// Reads `/proc/self`; `None` when there is no procfs.
    pub(crate) fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let mut s = parse_stat(&stat)?;
        if let Ok(status) = std::fs::read_to_string("/proc/self/status") {
            s.resident_bytes = status_kib(&status, "VmRSS:").map(|k| k * 1024);
        }
        s.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            .map(|d| d.count() as i64);
        if let Ok(limits) = std::fs::read_to_string("/proc/self/limits") {
            s.max_fds = max_open_files(&limits);
        }
        if let (Some(ticks), Ok(proc_stat)) =
            (s.start_time_seconds, std::fs::read_to_string("/proc/stat"))
        {
            s.start_time_seconds = boot_time(&proc_stat).map(|b| b as f64 + ticks);
        } else {
            s.start_time_seconds = None;
        }
        Some(s)
    }
}

/// Parses `/proc/self/stat`; `start_time_seconds` is still relative to boot.
fn parse_stat(stat: &str) -> Option<ProcessStats> {
    // `pid (comm) state ...`: comm may hold spaces and parentheses.
    let after = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is field 3 (state) of proc(5).
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<f64>().ok());
    let utime = field(14)?;
    let stime = field(15)?;
    Some(ProcessStats {
        cpu_seconds: (utime + stime) / CLOCK_TICKS_PER_SECOND,
        threads: field(20).map(|t| t as i64),
        start_time_seconds: field(22).map(|t| t / CLOCK_TICKS_PER_SECOND),
        virtual_bytes: field(23).map(|v| v as i64),
        ..ProcessStats::default()
    })
}

fn status_kib(status: &str, key: &str) -> Option<i64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn max_open_files(limits: &str) -> Option<i64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    soft.parse().ok()
}

fn boot_time(proc_stat: &str) -> Option<i64> {
    proc_stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// The prometheus-client collector of the process metrics.
#[derive(Debug, Default)]
pub(crate) struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let Some(s) = ProcessStats::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(s.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu",
            "Total user and system CPU time spent in seconds.",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?)?;
        let gauges = [
            (
                "process_resident_memory",
                "Resident memory size in bytes.",
                Some(Unit::Bytes),
                s.resident_bytes,
            ),
            (
                "process_virtual_memory",
                "Virtual memory size in bytes.",
                Some(Unit::Bytes),
                s.virtual_bytes,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors.",
                None,
                s.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors.",
                None,
                s.max_fds,
            ),
            ("process_threads", "Number of OS threads.", None, s.threads),
        ];
        for (name, help, unit, value) in gauges {
            if let Some(v) = value {
                let g = ConstGauge::new(v);
                g.encode(encoder.encode_descriptor(name, help, unit.as_ref(), g.metric_type())?)?;
            }
        }
        if let Some(start) = s.start_time_seconds {
            let g = ConstGauge::new(start);
            g.encode(encoder.encode_descriptor(
                "process_start_time",
                "Start time of the process since unix epoch in seconds.",
                Some(&Unit::Seconds),
                g.metric_type(),
            )?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_comm() {
        let stat = "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 7 0 123456 104857600 2560 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(stat).unwrap();
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.threads, Some(7));
        assert_eq!(s.start_time_seconds, Some(1234.56));
        assert_eq!(s.virtual_bytes, Some(104_857_600));
    }

    #[test]
    fn reads_this_process() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return;
        }
        let s = ProcessStats::read().unwrap();
        assert!(s.resident_bytes.unwrap() > 0);
        assert!(s.open_fds.unwrap() > 0);
        assert!(s.max_fds.unwrap() > 0);
        let now = chrono::Utc::now().timestamp() as f64;
        let start = s.start_time_seconds.unwrap();
        assert!(
            start > now - 86_400.0 * 365.0 && start <= now + 5.0,
            "{start}"
        );
    }

    #[test]
    fn encodes_with_prometheus_names() {
        let mut r = prometheus_client::registry::Registry::default();
        r.register_collector(Box::new(ProcessCollector));
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        if std::path::Path::new("/proc/self/stat").exists() {
            for name in [
                "process_cpu_seconds_total ",
                "process_resident_memory_bytes ",
                "process_open_fds ",
                "process_start_time_seconds ",
            ] {
                assert!(text.contains(name), "{name} missing from {text}");
            }
        }
    }
}
