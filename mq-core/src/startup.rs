//! Startup checks: every wiring problem the app can see before it connects to anything,
//! reported together in one error (instead of the first one, or a panic on every record).
//!
//! Configuration problems (unknown keys, bad values, protected librdkafka properties,
//! metric tags that make the same label) are found when the configuration is loaded; this
//! module adds what needs the listeners: their resolution against the configuration
//! (names, topics, retry settings), listeners that would share a topic's records in one
//! group, and the state each `State<T>` argument needs.

use crate::handler::StateMap;
use crate::registry::ListenerSpec;

/// Everything that keeps an app from starting, one problem per line.
///
/// ```
/// let e = mq_core::StartupError::from_problems(vec!["a".into(), "b".into()]);
/// assert_eq!(e.to_string(), "the app cannot start:\n  - a\n  - b");
/// ```
#[derive(Debug, thiserror::Error)]
#[error("the app cannot start:{}", .0.iter().map(|p| format!("\n  - {p}")).collect::<String>())]
pub struct StartupError(Vec<String>);

impl StartupError {
    /// An error listing `problems`.
    pub fn from_problems(problems: Vec<String>) -> StartupError {
        StartupError(problems)
    }

    /// The problems, one per entry.
    ///
    /// ```
    /// let e = mq_core::StartupError::from_problems(vec!["a".into()]);
    /// assert_eq!(e.problems(), ["a"]);
    /// ```
    pub fn problems(&self) -> &[String] {
        &self.0
    }
}

/// The `State<T>` arguments of `listeners` that no `App::with_state`
/// provides, one problem each.
pub(crate) fn missing_states<'a>(
    listeners: impl IntoIterator<Item = &'a str>,
    state: &StateMap,
) -> Vec<String> {
    let mut problems = Vec::new();
    for listener in listeners {
        for entry in inventory::iter::<crate::__private::ListenerStates> {
            if entry.listener != listener {
                continue;
            }
            for required in entry.states {
                if let Some((id, name)) = required() {
                    if id != std::any::TypeId::of::<crate::inbox::Tx>() && !state.contains(id) {
                        problems.push(format!(
                            "listener {listener:?} takes State<{name}>, but no state of that \
                             type is registered: call App::with_state({name} {{ .. }})"
                        ));
                    }
                }
            }
        }
    }
    problems
}

/// Listeners that take a [`Tx`](crate::inbox::Tx) but are not idempotent (their handler
/// would have no transaction), one problem each.
pub(crate) fn tx_without_idempotency(specs: &[ListenerSpec]) -> Vec<String> {
    let tx = std::any::TypeId::of::<crate::inbox::Tx>();
    let mut problems = Vec::new();
    for spec in specs.iter().filter(|s| !s.idempotent) {
        let takes_tx = inventory::iter::<crate::__private::ListenerStates>
            .into_iter()
            .filter(|e| e.listener == spec.name)
            .flat_map(|e| e.states.iter())
            .any(|required| required().is_some_and(|(id, _)| id == tx));
        if takes_tx {
            problems.push(format!(
                "listener {:?} takes a Tx, which only idempotent listeners have: add                  `idempotent` to its #[listener] or set mq.listeners.{}.idempotency: true",
                spec.name, spec.name
            ));
        }
    }
    problems
}

/// Listeners that share a consumer group and a topic: each record of that topic would go
/// to only one of them (whichever consumer holds its partition), one problem per pair,
/// unless one of them allows it (`mq.listeners.<name>.share-group: true`).
pub(crate) fn overlapping_groups(specs: &[ListenerSpec]) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, a) in specs.iter().enumerate() {
        for b in &specs[i + 1..] {
            if a.group != b.group || a.share_group || b.share_group {
                continue;
            }
            let (sa, sb) = (a.sources(), b.sources());
            let overlap: Vec<&str> = sa
                .iter()
                .filter(|t| sb.contains(t))
                .map(String::as_str)
                .collect();
            if overlap.is_empty() {
                continue;
            }
            problems.push(format!(
                "listeners {} and {} both read {} in group {:?}: each record would reach \
                 only one of them. Give one its own group (`group = \"..\"` or \
                 mq.listeners.{}.group), or set mq.listeners.{}.share-group: true if \
                 splitting the records is what you want",
                a.name,
                b.name,
                overlap.join(", "),
                a.group,
                b.name,
                b.name,
            ));
        }
    }
    problems
}

/// The listener names a failed resolution still lets us check states for.
pub(crate) fn names(specs: &[ListenerSpec]) -> impl Iterator<Item = &str> {
    specs.iter().map(|s| s.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &'static str, group: &str, topics: &[&str]) -> ListenerSpec {
        ListenerSpec {
            name,
            topics: topics.iter().map(|t| t.to_string()).collect(),
            queues: Vec::new(),
            bindings: Vec::new(),
            group: group.into(),
            concurrency: 1,
            retry: Default::default(),
            dlt: Default::default(),
            auto_startup: true,
            ordering: Default::default(),
            max_in_flight: 1,
            handler_warn_after: std::time::Duration::from_secs(60),
            handler_timeout: None,
            share_group: false,
            idempotent: false,
            handler: |_| Box::pin(async { Ok(()) }),
        }
    }

    #[test]
    fn listeners_sharing_a_topic_in_one_group_are_reported() {
        let specs = [
            spec("a", "g", &["orders", "refunds"]),
            spec("b", "g", &["orders"]),
            spec("c", "other", &["orders"]),
            spec("d", "g", &["payments"]),
        ];
        let problems = overlapping_groups(&specs);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with(r#"listeners a and b both read orders in group "g""#),
            "{problems:?}"
        );
        assert!(
            problems[0].contains("mq.listeners.b.share-group: true"),
            "names the fix"
        );
        let mut shared = specs.clone();
        shared[1].share_group = true;
        assert!(overlapping_groups(&shared).is_empty(), "allowed on purpose");
    }
}
