//! Health groups, as Spring Boot's: `liveness` and `readiness` built in, more (or changed
//! ones) from `management.endpoint.health.group.<name>`, each served at
//! `<base-path>/health/<name>` and, with `additional-path`, at a path of its own.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::health::{HealthIndicator, Indicators};
use crate::config::{HealthGroupSettings, ShowDetails};

/// One health group.
pub(crate) struct Group {
    pub(crate) name: String,
    pub(crate) indicators: Indicators,
    pub(crate) show_details: ShowDetails,
    /// Another path serving the group (`/healthz`), without its `server:` prefix.
    pub(crate) additional_path: Option<String>,
}

/// What the groups are made from.
pub(crate) struct Members {
    /// Every component of `/health` (kafka, listeners, publisher, the user's).
    pub(crate) health: Indicators,
    /// `ping` (always UP: the process answers).
    pub(crate) ping: Arc<dyn HealthIndicator>,
    /// The `listeners` component as liveness asks it (poll loops only).
    pub(crate) liveness_listeners: Arc<dyn HealthIndicator>,
    /// The built-in groups' members by default.
    pub(crate) liveness: Indicators,
    pub(crate) readiness: Indicators,
}

/// The groups: the built-in ones (changed by their settings, if any) and the configured
/// ones, by name.
pub(crate) fn build(
    settings: &BTreeMap<String, HealthGroupSettings>,
    members: &Members,
    show_details: ShowDetails,
) -> Vec<Group> {
    let mut names: Vec<&str> = vec!["liveness", "readiness"];
    names.extend(
        settings
            .keys()
            .map(String::as_str)
            .filter(|n| !matches!(*n, "liveness" | "readiness")),
    );
    names
        .into_iter()
        .map(|name| {
            let group = settings.get(name);
            let builtin = match name {
                "liveness" => Some(&members.liveness),
                "readiness" => Some(&members.readiness),
                _ => None,
            };
            let include = group.map(|g| &g.include[..]).unwrap_or_default();
            let mut indicators: Indicators = match builtin {
                Some(own) if include.is_empty() => own.clone(),
                _ => pool(name, members)
                    .into_iter()
                    .filter(|(n, _)| include.is_empty() || names_it(include, n))
                    .collect(),
            };
            for wanted in include.iter().map(|i| i.trim()) {
                if wanted != "*" && !indicators.iter().any(|(n, _)| n == wanted) {
                    tracing::warn!(
                        group = name,
                        component = wanted,
                        "management.endpoint.health.group.{name}.include names no health component"
                    );
                }
            }
            if let Some(g) = group {
                indicators.retain(|(n, _)| !names_it(&g.exclude, n));
            }
            Group {
                name: name.to_owned(),
                indicators,
                show_details: group.and_then(|g| g.show_details).unwrap_or(show_details),
                additional_path: group.and_then(|g| g.additional_path.as_deref()).map(|p| {
                    p.strip_prefix("server:")
                        .or_else(|| p.strip_prefix("management:"))
                        .unwrap_or(p)
                        .to_owned()
                }),
            }
        })
        .collect()
}

/// Every component a group may take; in `liveness`, `listeners` asks the liveness question.
fn pool(group: &str, members: &Members) -> Indicators {
    let mut all: Indicators = vec![("ping".to_owned(), members.ping.clone())];
    for (n, i) in &members.health {
        let i = if group == "liveness" && n == "listeners" {
            members.liveness_listeners.clone()
        } else {
            i.clone()
        };
        all.push((n.clone(), i));
    }
    all
}

fn names_it(list: &[String], name: &str) -> bool {
    list.iter().any(|e| e.trim() == "*" || e.trim() == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actuator::health::Health;

    fn indicator(status: fn() -> Health) -> Arc<dyn HealthIndicator> {
        Arc::new(status)
    }

    fn members() -> Members {
        let up = indicator(Health::up);
        Members {
            health: vec![
                ("kafka".into(), up.clone()),
                ("listeners".into(), up.clone()),
                ("publisher".into(), up.clone()),
                ("warehouse".into(), indicator(Health::down)),
            ],
            ping: up.clone(),
            liveness_listeners: up.clone(),
            liveness: vec![
                ("ping".into(), up.clone()),
                ("listeners".into(), up.clone()),
            ],
            readiness: vec![("kafka".into(), up.clone()), ("listeners".into(), up)],
        }
    }

    fn names(g: &Group) -> Vec<&str> {
        g.indicators.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn built_in_groups_unless_configured() {
        let groups = build(&BTreeMap::new(), &members(), ShowDetails::Never);
        assert_eq!(groups.len(), 2);
        assert_eq!(names(&groups[0]), ["ping", "listeners"]);
        assert_eq!(names(&groups[1]), ["kafka", "listeners"]);
        assert_eq!(groups[1].show_details, ShowDetails::Never);
    }

    #[test]
    fn configured_groups_include_exclude_details_and_paths() {
        let yaml = "management:\n  endpoint:\n    health:\n      group:\n        readiness:\n          include: kafka,listeners,warehouse\n        probes:\n          exclude: [warehouse, ping]\n          show-details: always\n          additional-path: server:/healthz\n";
        let config = crate::config::Config::from_yaml_str(yaml).unwrap();
        let groups = build(
            &config.management.endpoint.health.group,
            &members(),
            ShowDetails::Never,
        );
        let by = |n: &str| groups.iter().find(|g| g.name == n).unwrap();
        assert_eq!(names(by("readiness")), ["kafka", "listeners", "warehouse"]);
        assert_eq!(names(by("liveness")), ["ping", "listeners"]);
        let probes = by("probes");
        assert_eq!(names(probes), ["kafka", "listeners", "publisher"]);
        assert_eq!(probes.show_details, ShowDetails::Always);
        assert_eq!(probes.additional_path.as_deref(), Some("/healthz"));
    }
}
