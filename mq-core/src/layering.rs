//! The layering of `mq-core`, held against its sources: every `crate::`, `super::` and
//! `self::` path in `src/**` (tests and doc links included) is an arrow from the module it
//! is written in to the module it names, and the arrows must run one way, down:
//!
//! transports (`transport::kafka`, `transport::rabbitmq`, `transport::memory`, wired by
//! `transport`) → `testing`, `app` → `actuator`, `outbox` → the pipeline → lanes
//! (`consume`) → failure handling → handlers → the publisher → the leaves (`record`,
//! `envelope`, `config`, `metrics`).
//!
//! A module is a top-level module of `src` (a file or a folder), except under
//! `transport/`, where each transport (and the wiring beside them) is one of its own and
//! `transport/mod.rs` is the boundary they implement; `lib.rs` is `lib`, and naming
//! anything it re-exports (`crate::Error`, `crate::App`) is an arrow to it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The transports: nothing below them names them.
const TRANSPORTS: [&str; 3] = [
    "transport::kafka",
    "transport::rabbitmq",
    "transport::memory",
];
/// What wires the transports to an app (`transport::start`) and drives their dead letters
/// (`transport::dead_letter`): the only modules besides `lib.rs` and `testing` that name
/// the transports. `transport` itself (its `mod.rs`) is the boundary they implement.
const WIRING: [&str; 2] = ["transport::start", "transport::dead_letter"];
/// The leaves: they name nothing of mq but each other.
const LEAVES: [&str; 4] = ["record", "envelope", "config", "metrics"];

/// Arrows that must never exist, each with why; `*` is any module.
fn forbidden(from: &str, to: &str) -> Option<&'static str> {
    let transport = |m: &str| TRANSPORTS.contains(&m);
    if transport(to) && transport(from) && from != to {
        // The in-memory broker emulates both brokers' destinations; Kafka and RabbitMQ
        // never name each other.
        if from != "transport::memory" {
            return Some("a transport names another transport");
        }
    }
    if transport(to)
        && !transport(from)
        && !WIRING.contains(&from)
        && !["lib", "testing"].contains(&from)
    {
        return Some("a module below the transports names one of them");
    }
    if LEAVES.contains(&from) && !LEAVES.contains(&to) {
        return Some("a leaf names a module above it");
    }
    if to == "app" && !["lib", "testing"].contains(&from) {
        return Some("only lib.rs and testing name the app");
    }
    if to == "lib" && from != "private" {
        return Some("lib.rs is the face: modules name what it re-exports at its home");
    }
    match (from, to) {
        ("config", "actuator" | "consume") => Some("config names a module above it"),
        ("handler", "inbox" | "outbox") => Some("handler names the inbox or the outbox"),
        ("metrics", "publisher") => Some("metrics names the publisher"),
        ("pipeline", "consume") => Some("the pipeline names the lanes that call it"),
        _ => None,
    }
}

/// The module `file` (a path under `src`, `/`-separated) belongs to, as a path of
/// module names (`transport/kafka/routes.rs` is `transport::kafka::routes`).
fn module_path(file: &str) -> Vec<String> {
    let mut parts: Vec<String> = file.split('/').map(str::to_owned).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && !(parts.is_empty() && stem == "lib") {
        parts.push(stem.to_owned());
    }
    parts
}

/// The node of a module path: its top-level module, or `transport::<name>` for a
/// transport; `lib` for the crate root.
fn node_of(path: &[String]) -> String {
    match path {
        [] => "lib".to_owned(),
        [first, ..] if first == "__private" => "private".to_owned(),
        [first, second, ..] if first == "transport" => format!("transport::{second}"),
        [first, ..] => first.clone(),
    }
}

/// The arrows of one file's text: (to, the path as written).
fn arrows(file: &str, text: &str) -> Vec<(String, String)> {
    let here = module_path(file);
    // `mod.rs`, `lib.rs` and files whose module has children: `super` is the parent of
    // the module itself, `self` the module.
    let mut out = Vec::new();
    let bytes = text.as_bytes();
    let is_ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut starts: Vec<usize> = text
        .match_indices("crate::")
        .chain(text.match_indices("super::"))
        .map(|(i, _)| i)
        .collect();
    starts.sort_unstable();
    let mut done = 0;
    for i in starts {
        if i < done || (i > 0 && is_ident(bytes[i - 1])) {
            continue;
        }
        let rest = &text[i..];
        let (base, len): (Option<Vec<String>>, usize) = if rest.starts_with("crate::") {
            (Some(Vec::new()), "crate::".len())
        } else if rest.starts_with("super::") {
            let mut base = here.clone();
            let mut len = 0;
            while text[i + len..].starts_with("super::") {
                base.pop();
                len += "super::".len();
            }
            // `super::*` and `super::Item` are the idiom of an inline `mod tests`, whose
            // `super` is this file's module, not its parent: no arrow.
            let next = text[i + len..].chars().next().unwrap_or(' ');
            if next == '*' || next.is_ascii_uppercase() || next == '{' {
                done = i + len;
                continue;
            }
            (Some(base), len)
        } else {
            (None, 0)
        };
        let Some(mut path) = base else {
            continue;
        };
        let mut j = i + len;
        // Up to two more segments (`transport::kafka`), or a `{` group at the top.
        let mut segments = 0;
        while segments < 2 {
            let seg_end = text[j..]
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .map_or(text.len(), |e| j + e);
            if seg_end == j {
                break;
            }
            let segment = &text[j..seg_end];
            if segment.starts_with(|c: char| c.is_ascii_uppercase()) && path.is_empty() {
                // A name lib.rs re-exports.
                path.clear();
                break;
            }
            if segment.starts_with(|c: char| c.is_ascii_uppercase()) || segment == "self" {
                break;
            }
            path.push(segment.to_owned());
            segments += 1;
            j = seg_end;
            if text[j..].starts_with("::") {
                j += 2;
            } else {
                break;
            }
        }
        if text[j..].starts_with('{') && path.is_empty() {
            // `crate::{a, b::c}`: each item of the group.
            let end = text[j..].find('}').map_or(text.len(), |e| j + e);
            for item in text[j + 1..end].split(',') {
                let first = item.trim().split("::").next().unwrap_or("").trim();
                if first.is_empty() {
                    continue;
                }
                let target = if first.starts_with(|c: char| c.is_ascii_uppercase()) {
                    Vec::new()
                } else {
                    vec![first.to_owned()]
                };
                out.push((node_of(&target), format!("crate::{}", item.trim())));
            }
            done = end;
            continue;
        }
        out.push((node_of(&path), text[i..j].trim_end_matches("::").to_owned()));
        done = j;
    }
    out
}

/// Every arrow of `files` (path under `src`, text), between different nodes: from → to →
/// where it is written.
fn graph(files: &[(String, String)]) -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let mut graph: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (file, text) in files {
        let from = node_of(&module_path(file));
        graph.entry(from.clone()).or_default();
        for (to, written) in arrows(file, text) {
            if to != from {
                graph
                    .entry(from.clone())
                    .or_default()
                    .entry(to)
                    .or_default()
                    .insert(format!("{file}: {written}"));
            }
        }
    }
    graph
}

/// The problems of `files`: forbidden arrows and cycles, one line each.
fn problems(files: &[(String, String)]) -> Vec<String> {
    let graph = graph(files);
    let mut problems = Vec::new();
    for (from, tos) in &graph {
        for (to, places) in tos {
            if let Some(why) = forbidden(from, to) {
                let first = places.iter().next().map(String::as_str).unwrap_or("");
                problems.push(format!("{from} -> {to}: {why} ({first})"));
            }
        }
    }
    for cycle in cycles(&graph) {
        problems.push(format!("cycle: {}", cycle.join(" -> ")));
        for from in &cycle {
            for (to, places) in &graph[from] {
                if cycle.contains(to) {
                    let first = places.iter().next().map(String::as_str).unwrap_or("");
                    problems.push(format!("  {from} -> {to} ({first})"));
                }
            }
        }
    }
    problems
}

/// The strongly connected components of more than one node (Tarjan's algorithm).
fn cycles(graph: &BTreeMap<String, BTreeMap<String, BTreeSet<String>>>) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        graph: &'a BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        found: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            if !self.graph.contains_key(v) {
                self.stack.pop();
                return;
            }
            let graph = self.graph;
            let Some((v, tos)) = graph.get_key_value(v) else {
                return;
            };
            let v = v.as_str();
            for w in tos.keys() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.stack.contains(&w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut t = Tarjan {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        found: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            t.visit(v);
        }
    }
    t.found
}

/// The sources of `src` (but `bin/` and this file), as (path under `src`, text).
pub(crate) fn sources() -> Vec<(String, String)> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .expect("src is readable")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for path in entries {
            let rel = path
                .strip_prefix(root)
                .expect("under src")
                .to_string_lossy()
                .replace('\\', "/");
            if path.is_dir() {
                if rel != "bin" {
                    walk(&path, root, out);
                }
            } else if rel.ends_with(".rs") && rel != "layering.rs" {
                out.push((rel, std::fs::read_to_string(&path).expect("readable")));
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out
}

#[test]
fn layers_run_one_way_down_and_no_module_names_a_forbidden_one() {
    let files = sources();
    assert!(files.len() > 50, "read the sources: {}", files.len());
    let problems = problems(&files);
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn no_module_below_the_transports_asks_which_broker_a_listener_is_on() {
    for (file, text) in sources() {
        if file.starts_with("transport/") || file == "registry.rs" || file == "testing/mod.rs" {
            continue;
        }
        assert!(
            !text.contains("is_queue_listener"),
            "{file} asks the broker kind: ask the transport's FailureRoutes instead"
        );
    }
}

#[test]
fn the_checker_finds_a_forbidden_import_and_a_cycle() {
    let files = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(f, t)| ((*f).to_owned(), (*t).to_owned()))
            .collect()
    };
    // The pipeline naming a RabbitMQ convention, as it did before the boundary.
    let p = problems(&files(&[(
        "pipeline.rs",
        "use crate::transport::rabbitmq::retry_queue;",
    )]));
    assert_eq!(p.len(), 1, "{p:?}");
    assert!(
        p[0].starts_with("pipeline -> transport::rabbitmq: a module below"),
        "{p:?}"
    );
    // Kafka naming RabbitMQ from inside the transport, through `super`.
    let p = problems(&files(&[(
        "transport/kafka/replay.rs",
        "use super::super::rabbitmq::replay::replay;",
    )]));
    assert!(
        p[0].contains("a transport names another transport"),
        "{p:?}"
    );
    // config naming the actuator (the sanitizer's old home), and a leaf naming upwards.
    let p = problems(&files(&[(
        "config/mod.rs",
        "crate::actuator::sanitize(&mut v);",
    )]));
    assert!(
        p.iter().any(|l| l.starts_with("config -> actuator")),
        "{p:?}"
    );
    // `crate::Error` from below is an arrow to lib.rs.
    let p = problems(&files(&[(
        "outbox/mod.rs",
        "fn f() -> Result<(), crate::Error> {}",
    )]));
    assert!(p[0].starts_with("outbox -> lib"), "{p:?}");
    // handler and inbox naming each other: forbidden, and a cycle.
    let p = problems(&files(&[
        ("handler/mod.rs", "tx: Option<crate::inbox::Tx>,"),
        ("inbox/mod.rs", "use crate::{handler::Context, config};"),
    ]));
    assert!(p.iter().any(|l| l.starts_with("handler -> inbox")), "{p:?}");
    assert!(p.iter().any(|l| l == "cycle: handler -> inbox"), "{p:?}");
    assert!(
        p.iter()
            .any(|l| l.starts_with("  inbox -> handler (inbox/mod.rs")),
        "{p:?}"
    );
    // Paths inside a module are not arrows.
    assert!(problems(&files(&[(
        "transport/kafka/mod.rs",
        "use super::kafka::x; use self::y;"
    )]))
    .is_empty());
}
