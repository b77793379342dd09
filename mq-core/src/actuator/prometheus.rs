//! `/actuator/prometheus`: the registry in the Prometheus text format 0.0.4 (the default,
//! as Spring Boot), or in OpenMetrics text when the scraper asks for it by name; plus a
//! small parser of the exposition that `/actuator/metrics` reads.

use std::collections::HashMap;

/// Content type of the OpenMetrics exposition.
pub(crate) const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the Prometheus text exposition.
pub(crate) const TEXT_004: &str = "text/plain; version=0.0.4; charset=utf-8";

/// True when `accept` asks for OpenMetrics by name, as Spring Boot negotiates
/// `/actuator/prometheus`: the Prometheus text format 0.0.4 is the default (no `Accept`,
/// `*/*`, a browser's header, anything else), and OpenMetrics is served only when
/// `application/openmetrics-text` has a q-value above `text/plain` and the wildcards
/// (a tie with `text/plain` goes to whichever is listed first; a tie with a wildcard goes
/// to OpenMetrics, the more specific range). Prometheus itself sends
/// `application/openmetrics-text;version=1.0.0,...,text/plain;version=0.0.4;q=0.5,*/*;q=0.1`
/// and gets OpenMetrics.
pub(crate) fn wants_openmetrics(accept: Option<&str>) -> bool {
    let Some(accept) = accept else {
        return false;
    };
    // (q, position of the first range with that q)
    let (mut om, mut text, mut wildcard) = ((0.0_f32, usize::MAX), (0.0_f32, usize::MAX), 0.0_f32);
    for (i, range) in accept.split(',').enumerate() {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let q = parts
            .filter_map(|p| p.trim().strip_prefix("q="))
            .filter_map(|q| q.trim().parse::<f32>().ok())
            .next()
            .unwrap_or(1.0);
        let best = |(current, at): (f32, usize)| if q > current { (q, i) } else { (current, at) };
        match media.as_str() {
            "application/openmetrics-text" => om = best(om),
            "text/plain" => text = best(text),
            "*/*" | "text/*" | "application/*" => wildcard = wildcard.max(q),
            _ => {}
        }
    }
    om.0 > 0.0 && om.0 >= wildcard && (om.0 > text.0 || (om.0 == text.0 && om.1 < text.1))
}

/// One sample line of the exposition.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    /// The sample's name (`x_total`, `x_bucket`, `x_count`, ...).
    pub(crate) name: String,
    pub(crate) labels: Vec<(String, String)>,
    pub(crate) value: f64,
}

/// One metric family (`# HELP`, `# TYPE`, `# UNIT` and its samples).
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct Family {
    pub(crate) name: String,
    /// `counter`, `gauge`, `histogram`, `summary`, `info`, `unknown`, ...
    pub(crate) kind: String,
    pub(crate) help: String,
    pub(crate) unit: Option<String>,
    pub(crate) samples: Vec<Sample>,
}

/// Parses an OpenMetrics (or Prometheus 0.0.4) text exposition into families. Lines it
/// cannot read are skipped.
pub(crate) fn parse(text: &str) -> Vec<Family> {
    let mut families: Vec<Family> = Vec::new();
    let current = |families: &mut Vec<Family>, name: &str| -> usize {
        match families.last() {
            Some(f) if f.name == name => families.len() - 1,
            _ => {
                families.push(Family {
                    name: name.to_owned(),
                    kind: "unknown".to_owned(),
                    ..Family::default()
                });
                families.len() - 1
            }
        }
    };
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let (keyword, name, value) = (
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            match keyword {
                "HELP" => {
                    let i = current(&mut families, name);
                    families[i].help = value.to_owned();
                }
                "TYPE" => {
                    let i = current(&mut families, name);
                    families[i].kind = value.trim().to_owned();
                }
                "UNIT" => {
                    let i = current(&mut families, name);
                    families[i].unit = Some(value.trim().to_owned()).filter(|u| !u.is_empty());
                }
                _ => {}
            }
            continue;
        }
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((sample, _)) = parse_sample(line) else {
            continue;
        };
        let belongs = families
            .last()
            .is_some_and(|f| sample_of(&f.name, &f.kind, &sample.name));
        if !belongs {
            families.push(Family {
                name: sample.name.clone(),
                kind: "unknown".to_owned(),
                ..Family::default()
            });
        }
        if let Some(f) = families.last_mut() {
            f.samples.push(sample);
        }
    }
    families
}

/// Whether a sample named `sample` belongs to the family `family` of type `kind`.
fn sample_of(family: &str, kind: &str, sample: &str) -> bool {
    let Some(suffix) = sample.strip_prefix(family) else {
        return false;
    };
    match kind {
        "counter" => matches!(suffix, "_total" | "_created" | ""),
        "histogram" => matches!(suffix, "_bucket" | "_sum" | "_count" | "_created"),
        "gaugehistogram" => matches!(suffix, "_bucket" | "_gsum" | "_gcount"),
        "summary" => matches!(suffix, "" | "_sum" | "_count" | "_created"),
        "info" => suffix == "_info",
        _ => suffix.is_empty(),
    }
}

/// Parses `name{labels} value [timestamp] [# exemplar]`; also returns the byte length of
/// `name{labels} value` (where an exemplar or timestamp would start).
fn parse_sample(line: &str) -> Option<(Sample, usize)> {
    let bytes = line.as_bytes();
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() {
        return None;
    }
    let mut labels = Vec::new();
    let mut i = name_end;
    if bytes.get(i) == Some(&b'{') {
        i += 1;
        loop {
            while matches!(bytes.get(i), Some(b' ' | b',')) {
                i += 1;
            }
            match bytes.get(i) {
                Some(b'}') => {
                    i += 1;
                    break;
                }
                None => return None,
                _ => {}
            }
            let eq = i + line[i..].find('=')?;
            let key = line[i..eq].trim().to_owned();
            i = eq + 1;
            if bytes.get(i) != Some(&b'"') {
                return None;
            }
            i += 1;
            let mut value = String::new();
            loop {
                let c = line[i..].chars().next()?;
                i += c.len_utf8();
                match c {
                    '"' => break,
                    '\\' => {
                        let e = line[i..].chars().next()?;
                        i += e.len_utf8();
                        value.push(match e {
                            'n' => '\n',
                            other => other,
                        });
                    }
                    other => value.push(other),
                }
            }
            labels.push((key, value));
        }
    }
    let rest = &line[i..];
    let trimmed = rest.trim_start();
    let value_start = i + (rest.len() - trimmed.len());
    let value_text = trimmed.split_whitespace().next()?;
    let value = parse_value(value_text)?;
    Some((
        Sample {
            name: name.to_owned(),
            labels,
            value,
        },
        value_start + value_text.len(),
    ))
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        other => other.parse().ok(),
    }
}

/// Converts an OpenMetrics exposition to the Prometheus text format 0.0.4: no `# EOF` or
/// `# UNIT` lines, no `_created` series, no exemplars; a counter's `# HELP` and `# TYPE`
/// name its `_total` series; `unknown` becomes `untyped`.
pub(crate) fn to_text_004(openmetrics: &str) -> String {
    let mut kinds: HashMap<&str, &str> = HashMap::new();
    for line in openmetrics.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.splitn(2, ' ');
            if let (Some(name), Some(kind)) = (parts.next(), parts.next()) {
                kinds.insert(name, kind.trim());
            }
        }
    }
    let renamed = |name: &str| -> String {
        match kinds.get(name).copied() {
            Some("counter") => format!("{name}_total"),
            Some("info") => format!("{name}_info"),
            _ => name.to_owned(),
        }
    };
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push_str(&format!("# HELP {} {help}\n", renamed(name)));
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "unknown"));
            let kind = match kind.trim() {
                "counter" => "counter",
                "gauge" | "info" | "stateset" => "gauge",
                "histogram" => "histogram",
                "summary" => "summary",
                _ => "untyped",
            };
            out.push_str(&format!("# TYPE {} {kind}\n", renamed(name)));
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some((sample, end)) = parse_sample(line) {
            if sample.name.ends_with("_created") {
                let base = &sample.name[..sample.name.len() - "_created".len()];
                if matches!(
                    kinds.get(base).copied(),
                    Some("counter" | "histogram" | "summary")
                ) {
                    continue;
                }
            }
            // Keep `name{labels} value`, drop a timestamp (OpenMetrics seconds, 0.0.4
            // milliseconds) and an exemplar.
            out.push_str(&line[..end]);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const OM: &str = r#"# HELP orders Orders placed.
# TYPE orders counter
orders_total{application="shop",name="a \"b\", c"} 3 # {trace_id="x"} 1.0
orders_created{application="shop"} 1700000000.0
# HELP latency_seconds Latency.
# TYPE latency_seconds histogram
# UNIT latency_seconds seconds
latency_seconds_sum{application="shop"} 0.5
latency_seconds_count{application="shop"} 2
latency_seconds_bucket{le="0.1",application="shop"} 1
latency_seconds_bucket{le="+Inf",application="shop"} 2
# HELP in_flight In flight.
# TYPE in_flight gauge
in_flight{application="shop"} -1
# EOF
"#;

    #[test]
    fn text_004_unless_openmetrics_is_asked_for_by_name() {
        // Spring Boot's answers: text 0.0.4 by default.
        for accept in [
            None,
            Some("*/*"),
            Some("text/plain"),
            Some("text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"),
            Some("application/json"),
            Some("text/plain;version=0.0.4;q=1,*/*;q=0.1"),
            Some("application/openmetrics-text;q=0.2, text/plain;q=0.9"),
            Some("text/plain, application/openmetrics-text"),
            Some("application/openmetrics-text;q=0.1, */*"),
            Some("application/openmetrics-text;q=0"),
        ] {
            assert!(!wants_openmetrics(accept), "{accept:?}");
        }
        for accept in [
            "application/openmetrics-text",
            "application/openmetrics-text; version=1.0.0",
            // Prometheus 2.x/3.x default
            "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
            "application/openmetrics-text, text/plain",
            "application/openmetrics-text, */*",
        ] {
            assert!(wants_openmetrics(Some(accept)), "{accept}");
        }
    }

    #[test]
    fn parses_families_and_labels() {
        let fams = parse(OM);
        let names: Vec<_> = fams.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["orders", "latency_seconds", "in_flight"]);
        assert_eq!(fams[0].kind, "counter");
        assert_eq!(fams[0].samples[0].name, "orders_total");
        assert_eq!(fams[0].samples[0].value, 3.0);
        assert_eq!(
            fams[0].samples[0].labels[1],
            ("name".to_owned(), "a \"b\", c".to_owned())
        );
        assert_eq!(fams[1].unit.as_deref(), Some("seconds"));
        assert_eq!(fams[1].samples.len(), 4);
        assert_eq!(fams[1].samples[3].value, 2.0);
        assert_eq!(fams[2].samples[0].value, -1.0);
    }

    #[test]
    fn converts_to_prometheus_text() {
        let text = to_text_004(OM);
        assert_eq!(
            text,
            r#"# HELP orders_total Orders placed.
# TYPE orders_total counter
orders_total{application="shop",name="a \"b\", c"} 3
# HELP latency_seconds Latency.
# TYPE latency_seconds histogram
latency_seconds_sum{application="shop"} 0.5
latency_seconds_count{application="shop"} 2
latency_seconds_bucket{le="0.1",application="shop"} 1
latency_seconds_bucket{le="+Inf",application="shop"} 2
# HELP in_flight In flight.
# TYPE in_flight gauge
in_flight{application="shop"} -1
"#
        );
    }
}
