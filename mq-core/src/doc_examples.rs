//! Edition 2024 merges doctests into one binary, and `inventory` collects every
//! `#[listener]` linked into a binary: an example that defines a listener would be seen by
//! every other example that reads the registry (`App::listeners`, `TestApp::new`), and two
//! examples' `on_ping` would collide. Each such example runs as its own crate.

use crate::layering::sources;

/// Every fenced Rust example in a doc comment that defines a listener, as
/// (file, line, fence info).
fn listener_examples(files: &[(String, String)]) -> Vec<(String, usize, String)> {
    let mut found = Vec::new();
    for (path, text) in files {
        let mut open: Option<(usize, String, bool)> = None;
        for (n, line) in text.lines().enumerate() {
            let doc = line.trim_start();
            let Some(doc) = doc.strip_prefix("///").or_else(|| doc.strip_prefix("//!")) else {
                continue;
            };
            let doc = doc.trim();
            if let Some(info) = doc.strip_prefix("```") {
                match open.take() {
                    Some((at, info, true)) => found.push((path.clone(), at, info)),
                    Some(_) => {}
                    None => open = Some((n + 1, info.to_owned(), false)),
                }
            } else if let Some((_, info, defines)) = &mut open {
                let rust = info.is_empty() || info.split(',').any(|a| a == "no_run" || a == "rust");
                *defines |=
                    rust && (doc.contains("#[listener") || doc.contains("#[mq_core::listener"));
            }
        }
    }
    found
}

#[test]
fn examples_that_define_a_listener_run_as_their_own_crate() {
    let examples = listener_examples(&sources());
    assert!(
        examples.len() >= 3,
        "found the listener examples: {examples:?}"
    );
    let merged: Vec<_> = examples
        .iter()
        .filter(|(_, _, info)| !info.split(',').any(|a| a == "standalone_crate"))
        .map(|(path, line, _)| format!("{path}:{line}: add `standalone_crate` to the fence"))
        .collect();
    assert!(merged.is_empty(), "{}", merged.join("\n"));
}
