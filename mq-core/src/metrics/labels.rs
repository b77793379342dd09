//! Common tags (`management.metrics.tags`) as Prometheus labels, the way Micrometer does it:
//! keys become legal label names, and a series' own label wins over a common tag of the
//! same name.

use std::borrow::Cow;

/// A legal Prometheus label name for a tag key, as Micrometer's `PrometheusNamingConvention`
/// makes it: every character outside `[a-zA-Z0-9_]` becomes `_`, and a name that does not
/// start with a letter gets an `m_` prefix (so it is never a reserved `__` name).
///
/// ```
/// assert_eq!(mq_core::metrics::label_name("deployment-env"), "deployment_env");
/// assert_eq!(mq_core::metrics::label_name("k8s.pod"), "k8s_pod");
/// assert_eq!(mq_core::metrics::label_name("1zone"), "m_1zone");
/// ```
pub fn label_name(key: &str) -> String {
    let sanitized: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if sanitized.starts_with(|c: char| c.is_ascii_alphabetic()) {
        sanitized
    } else {
        format!("m_{sanitized}")
    }
}

/// Removes, from each sample line of an exposition, a label that the same sample sets again
/// later. The registry writes the common tags first, so a series' own label (`name`,
/// `result`, `topic`, ...) wins over a common tag of the same name, as in Micrometer.
/// Returns the text unchanged (borrowed) when no sample repeats a label.
pub(crate) fn drop_shadowed_labels(text: &str) -> Cow<'_, str> {
    if !text.lines().any(|l| shadowed(l).is_some()) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        match shadowed(line) {
            Some(drop) => {
                let mut last = 0;
                for (start, end) in drop {
                    out.push_str(&line[last..start]);
                    last = end;
                }
                out.push_str(&line[last..]);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    Cow::Owned(out)
}

/// The byte ranges (`name="value",` including the separator) of labels a later label of
/// the same name overrides, or `None` when there are none (or the line is no sample).
fn shadowed(line: &str) -> Option<Vec<(usize, usize)>> {
    if line.starts_with('#') {
        return None;
    }
    let open = line.find('{')?;
    if line[..open].contains(' ') {
        return None;
    }
    let bytes = line.as_bytes();
    // (name, start, end-after-separator)
    let mut labels: Vec<(&str, usize, usize)> = Vec::new();
    let mut i = open + 1;
    loop {
        match bytes.get(i)? {
            b'}' => break,
            b',' | b' ' => i += 1,
            _ => {
                let start = i;
                let eq = i + line[i..].find('=')?;
                let name = line[i..eq].trim();
                i = eq + 1;
                if bytes.get(i)? != &b'"' {
                    return None;
                }
                i += 1;
                loop {
                    match bytes.get(i)? {
                        b'\\' => i += 2,
                        b'"' => {
                            i += 1;
                            break;
                        }
                        _ => i += 1,
                    }
                }
                if bytes.get(i) == Some(&b',') {
                    i += 1;
                }
                labels.push((name, start, i));
            }
        }
    }
    let drop: Vec<(usize, usize)> = labels
        .iter()
        .enumerate()
        .filter(|(n, (name, _, _))| labels[n + 1..].iter().any(|(later, _, _)| later == name))
        .map(|(_, &(_, start, end))| (start, end))
        .collect();
    (!drop.is_empty()).then_some(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_names_as_micrometer() {
        assert_eq!(label_name("deployment-env"), "deployment_env");
        assert_eq!(
            label_name("app.kubernetes.io/name"),
            "app_kubernetes_io_name"
        );
        assert_eq!(label_name("_private"), "m__private");
        assert_eq!(label_name("région"), "r_gion");
        assert_eq!(label_name("ok_name"), "ok_name");
    }

    #[test]
    fn the_later_label_wins() {
        let text = "# TYPE t counter\nt_total{name=\"shop\",application=\"a\",name=\"on_order\"} 1 # {name=\"x\"} 1.0\nu{a=\"1\"} 2\n# EOF\n";
        assert_eq!(
            drop_shadowed_labels(text),
            "# TYPE t counter\nt_total{application=\"a\",name=\"on_order\"} 1 # {name=\"x\"} 1.0\nu{a=\"1\"} 2\n# EOF\n"
        );
        let escaped = "t{name=\"a\\\",name=\\\"b\",name=\"c\"} 1\n";
        assert_eq!(drop_shadowed_labels(escaped), "t{name=\"c\"} 1\n");
        let clean = "t{a=\"1\",b=\"2\"} 1\n";
        assert!(matches!(drop_shadowed_labels(clean), Cow::Borrowed(_)));
    }
}
