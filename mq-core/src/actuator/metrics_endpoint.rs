//! `/actuator/metrics` and `/actuator/metrics/{name}`, Spring Boot's JSON over the
//! prometheus-client registry (read back from its text exposition).
//!
//! Names are the registry's family names (`spring_kafka_listener_seconds`,
//! `mq_listener_dead_lettered`, ...); a dotted name (`spring.kafka.listener`) is also found.
//! Measurements: a counter has `COUNT`, a gauge `VALUE`, a histogram `COUNT` and
//! `TOTAL_TIME` (seconds) or `TOTAL`, each summed over the series that match the
//! `?tag=key:value` filters.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

use super::prometheus::{parse, Family, Sample};

/// `{"names":[...]}`.
pub(crate) fn names(exposition: &str) -> Value {
    let names: BTreeSet<String> = parse(exposition)
        .into_iter()
        .filter(|f| !f.samples.is_empty())
        .map(|f| f.name)
        .collect();
    json!({ "names": names })
}

/// Why `/actuator/metrics/{name}` has no answer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum MetricError {
    /// No such metric, or no series matches the tags (Spring answers 404).
    NotFound,
    /// A `tag` parameter is not `key:value` (Spring answers 400).
    BadTag(String),
}

/// Parses `tag=key:value` parameters of a raw query string.
pub(crate) fn tags_of(query: Option<&str>) -> Result<Vec<(String, String)>, MetricError> {
    let mut tags = Vec::new();
    for (k, v) in form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if k != "tag" {
            continue;
        }
        match v.split_once(':') {
            Some((tk, tv)) if !tk.is_empty() => tags.push((tk.to_owned(), tv.to_owned())),
            _ => return Err(MetricError::BadTag(v.into_owned())),
        }
    }
    Ok(tags)
}

/// `{"name":..,"description":..,"baseUnit":..,"measurements":[..],"availableTags":[..]}`.
pub(crate) fn metric(
    exposition: &str,
    name: &str,
    tags: &[(String, String)],
) -> Result<Value, MetricError> {
    let families = parse(exposition);
    let family = lookup(&families, name).ok_or(MetricError::NotFound)?;
    let matching: Vec<&Sample> = family
        .samples
        .iter()
        .filter(|s| {
            tags.iter()
                .all(|(k, v)| s.labels.iter().any(|(lk, lv)| lk == k && lv == v))
        })
        .collect();
    if matching.is_empty() {
        return Err(MetricError::NotFound);
    }
    let sum = |suffix: &str| -> f64 {
        let wanted = format!("{}{suffix}", family.name);
        matching
            .iter()
            .filter(|s| s.name == wanted)
            .map(|s| s.value)
            .sum()
    };
    let seconds = family.unit.as_deref() == Some("seconds") || family.name.ends_with("_seconds");
    let measurements = match family.kind.as_str() {
        "counter" => vec![("COUNT", sum("_total"))],
        "histogram" | "summary" => vec![
            ("COUNT", sum("_count")),
            (if seconds { "TOTAL_TIME" } else { "TOTAL" }, sum("_sum")),
        ],
        "info" => vec![("VALUE", sum("_info"))],
        _ => vec![("VALUE", sum(""))],
    };
    let measurements: Vec<Value> = measurements
        .into_iter()
        .map(|(statistic, value)| json!({ "statistic": statistic, "value": number(value) }))
        .collect();
    let mut available: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for s in &matching {
        for (k, v) in &s.labels {
            if matches!(k.as_str(), "le" | "quantile") || tags.iter().any(|(tk, _)| tk == k) {
                continue;
            }
            available.entry(k).or_default().insert(v);
        }
    }
    let available_tags: Vec<Value> = available
        .into_iter()
        .map(|(tag, values)| json!({ "tag": tag, "values": values }))
        .collect();
    let mut out = json!({
        "name": family.name,
        "measurements": measurements,
        "availableTags": available_tags,
    });
    if !family.help.is_empty() {
        out["description"] = json!(family.help);
    }
    if let Some(unit) = &family.unit {
        out["baseUnit"] = json!(unit);
    } else if seconds {
        out["baseUnit"] = json!("seconds");
    }
    Ok(out)
}

/// Finds a family by its name, its counter sample name (`x_total`), or a dotted name.
fn lookup<'a>(families: &'a [Family], name: &str) -> Option<&'a Family> {
    let underscored = name.replace('.', "_");
    let candidates = [
        name.to_owned(),
        name.strip_suffix("_total").unwrap_or(name).to_owned(),
        underscored.clone(),
        format!("{underscored}_seconds"),
    ];
    candidates.iter().find_map(|c| {
        families
            .iter()
            .find(|f| &f.name == c && !f.samples.is_empty())
    })
}

/// JSON numbers cannot be infinite or NaN: those become `null`.
fn number(v: f64) -> Value {
    serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OM: &str = r#"# HELP spring_kafka_listener_seconds Time spent in listener handlers.
# TYPE spring_kafka_listener_seconds histogram
spring_kafka_listener_seconds_sum{application="shop",name="a",result="success",exception="none"} 0.5
spring_kafka_listener_seconds_count{application="shop",name="a",result="success",exception="none"} 4
spring_kafka_listener_seconds_bucket{le="+Inf",application="shop",name="a",result="success",exception="none"} 4
spring_kafka_listener_seconds_sum{application="shop",name="a",result="failure",exception="Boom"} 0.25
spring_kafka_listener_seconds_count{application="shop",name="a",result="failure",exception="Boom"} 2
spring_kafka_listener_seconds_bucket{le="+Inf",application="shop",name="a",result="failure",exception="Boom"} 2
# HELP mq_listener_dead_lettered Records published to a dead-letter topic.
# TYPE mq_listener_dead_lettered counter
mq_listener_dead_lettered_total{application="shop",name="a"} 2
mq_listener_dead_lettered_total{application="shop",name="b"} 1
# HELP mq_listener_retries Retries.
# TYPE mq_listener_retries counter
# EOF
"#;

    #[test]
    fn names_lists_families_with_series() {
        assert_eq!(
            names(OM),
            json!({"names": ["mq_listener_dead_lettered", "spring_kafka_listener_seconds"]})
        );
    }

    #[test]
    fn histogram_measurements_and_tags() {
        let m = metric(OM, "spring_kafka_listener_seconds", &[]).unwrap();
        assert_eq!(
            m["measurements"],
            json!([{"statistic": "COUNT", "value": 6.0}, {"statistic": "TOTAL_TIME", "value": 0.75}])
        );
        assert_eq!(m["baseUnit"], "seconds");
        assert!(m["availableTags"]
            .as_array()
            .unwrap()
            .contains(&json!({"tag": "result", "values": ["failure", "success"]})));
        let m = metric(
            OM,
            "spring.kafka.listener",
            &[("result".into(), "success".into())],
        )
        .unwrap();
        assert_eq!(m["measurements"][0]["value"], 4.0);
        assert!(!m["availableTags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["tag"] == "result"));
    }

    #[test]
    fn counter_with_tag_filter() {
        let tags = tags_of(Some("tag=name%3Ab&other=1")).unwrap();
        let m = metric(OM, "mq_listener_dead_lettered_total", &tags).unwrap();
        assert_eq!(
            m["measurements"],
            json!([{"statistic": "COUNT", "value": 1.0}])
        );
        assert_eq!(
            metric(
                OM,
                "mq_listener_dead_lettered",
                &[("name".into(), "zzz".into())]
            ),
            Err(MetricError::NotFound)
        );
        assert_eq!(metric(OM, "nope", &[]), Err(MetricError::NotFound));
        assert_eq!(
            metric(OM, "mq_listener_retries", &[]),
            Err(MetricError::NotFound)
        );
        assert!(matches!(
            tags_of(Some("tag=novalue")),
            Err(MetricError::BadTag(_))
        ));
    }
}
