//! The module map as a test: every `crate::` and `super::` path in `src/` is read, and
//! - no top-level module uses one from a layer above its own ([`LAYERS`], as ARCHITECTURE.md
//!   draws them);
//! - modules that share a parent never use each other in a circle (a module and the modules
//!   inside it count as one, seen from outside);
//! - the interfaces reach storage and the read models only through the application (its
//!   types are `app::views`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The layers, lowest first. A module may use its own layer and the ones below.
const LAYERS: &[&[&str]] = &[
    &["domain"],
    &["crypto", "auth", "metrics", "telemetry", "pgcluster"],
    &["store", "db"],
    &["replay", "projections", "reports", "xapi"],
    &["app"],
    &["config"],
    &["graphql", "http", "server"],
    &["citus", "demo"],
];

/// The interfaces, and the modules they reach only through the application.
const INTERFACES: &[&str] = &["graphql", "http", "server"];
const BEHIND_THE_APPLICATION: &[&str] = &["store", "db", "replay", "projections", "reports"];

type Module = Vec<String>;

/// Every module of `src/` and its text (`lib.rs` is the crate; the binary `main.rs` and this
/// file are left out).
fn modules() -> BTreeMap<Module, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut found = BTreeMap::new();
    let mut folders = vec![root.clone()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
                continue;
            }
            // This file's own test text is not a use.
            let skipped = path.ends_with("src/main.rs") || path.ends_with("src/layers.rs");
            if path.extension().is_none_or(|ext| ext != "rs") || skipped {
                continue;
            }
            let relative = path.strip_prefix(&root).unwrap().with_extension("");
            let mut module: Module = relative
                .iter()
                .map(|part| part.to_string_lossy().into_owned())
                .collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                module.pop();
            }
            found.insert(module, std::fs::read_to_string(&path).unwrap());
        }
    }
    found
}

/// The text without `//` comments (paths in doc comments are not uses).
fn code(text: &str) -> String {
    text.lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn identifier(text: &str) -> (&str, &str) {
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(text.len());
    text.split_at(end)
}

/// The paths after each `anchor::` in `text`: `a::b` and, for `a::{b, c::d}`, `a::b` and
/// `a::c::d` (the first segments of each item are enough to find its module).
fn paths_after(text: &str, anchor: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let needle = format!("{anchor}::");
    for (at, _) in text.match_indices(&needle) {
        if text[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let mut rest = &text[at + needle.len()..];
        let mut path = Vec::new();
        loop {
            let (name, after) = identifier(rest);
            if name.is_empty() {
                break;
            }
            path.push(name.to_owned());
            match after.strip_prefix("::") {
                Some(next) => rest = next,
                None => {
                    rest = after;
                    break;
                }
            }
        }
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let mut inner = path.clone();
                let mut item = item.trim();
                loop {
                    let (name, after) = identifier(item);
                    if name.is_empty() {
                        break;
                    }
                    inner.push(name.to_owned());
                    match after.strip_prefix("::") {
                        Some(next) => item = next,
                        None => break,
                    }
                }
                paths.push(inner);
            }
        }
        paths.push(path);
    }
    paths
}

/// The module a path names: its longest prefix that is a module.
fn owner<'m>(modules: &'m BTreeMap<Module, String>, path: &[String]) -> Option<&'m Module> {
    (1..=path.len())
        .rev()
        .find_map(|n| modules.get_key_value(&path[..n]).map(|(module, _)| module))
}

/// `(user, used)` for every use between two modules.
fn uses(modules: &BTreeMap<Module, String>) -> BTreeSet<(Module, Module)> {
    let mut found = BTreeSet::new();
    for (module, text) in modules {
        let text = code(text);
        let parent = &module[..module.len().saturating_sub(1)];
        let absolute = paths_after(&text, "crate");
        let relative = paths_after(&text, "super")
            .into_iter()
            .map(|path| [parent, &path[..]].concat());
        for path in absolute.into_iter().chain(relative) {
            if let Some(used) = owner(modules, &path)
                && used != module
            {
                found.insert((module.clone(), used.clone()));
            }
        }
    }
    found
}

/// A use between two modules seen from their closest common parent: the pair of its children
/// that hold them; `None` when one holds the other.
fn between_siblings(user: &Module, used: &Module) -> Option<(Module, Module)> {
    let common = user.iter().zip(used).take_while(|(a, b)| a == b).count();
    if common == user.len() || common == used.len() {
        return None;
    }
    Some((user[..=common].to_vec(), used[..=common].to_vec()))
}

/// A circle in `edges`, if any, as the modules on it.
fn a_circle(edges: &BTreeSet<(Module, Module)>) -> Option<Vec<Module>> {
    fn visit(
        node: &Module,
        edges: &BTreeSet<(Module, Module)>,
        path: &mut Vec<Module>,
        done: &mut BTreeSet<Module>,
    ) -> Option<Vec<Module>> {
        if let Some(at) = path.iter().position(|on| on == node) {
            return Some(path[at..].to_vec());
        }
        if !done.insert(node.clone()) {
            return None;
        }
        path.push(node.clone());
        for (_, next) in edges.iter().filter(|(from, _)| from == node) {
            if let Some(circle) = visit(next, edges, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    edges
        .iter()
        .find_map(|(start, _)| visit(start, edges, &mut Vec::new(), &mut done))
}

fn layer(top: &str) -> usize {
    LAYERS
        .iter()
        .position(|layer| layer.contains(&top))
        .unwrap_or_else(|| panic!("module {top} is in no layer of src/layers.rs"))
}

#[test]
fn no_module_uses_a_layer_above_its_own() {
    let modules = modules();
    let mut upward = Vec::new();
    for (user, used) in uses(&modules) {
        if let Some((from, to)) = between_siblings(&user, &used)
            && from.len() == 1
            && layer(&to[0]) > layer(&from[0])
        {
            upward.push(format!("{} uses {}", user.join("::"), used.join("::")));
        }
    }
    assert!(upward.is_empty(), "uses of a higher layer: {upward:#?}");
}

#[test]
fn the_interfaces_reach_storage_only_through_the_application() {
    let direct: Vec<String> = uses(&modules())
        .into_iter()
        .filter(|(user, used)| {
            INTERFACES.contains(&user[0].as_str())
                && BEHIND_THE_APPLICATION.contains(&used[0].as_str())
        })
        .map(|(user, used)| format!("{} uses {}", user.join("::"), used.join("::")))
        .collect();
    assert!(direct.is_empty(), "{direct:#?}");
}

#[test]
fn modules_under_one_parent_never_use_each_other_in_a_circle() {
    let edges: BTreeSet<_> = uses(&modules())
        .iter()
        .filter_map(|(user, used)| between_siblings(user, used))
        .collect();
    let circle = a_circle(&edges).map(|on| {
        on.iter()
            .map(|module| module.join("::"))
            .collect::<Vec<_>>()
            .join(" → ")
    });
    assert_eq!(circle, None, "an import circle");
}

#[test]
fn the_reader_sees_grouped_and_relative_uses() {
    let text = "use crate::domain::{events::Event, ids::X};\nlet a = super::b::c();";
    assert_eq!(
        paths_after(text, "crate"),
        vec![
            vec!["domain", "events", "Event"],
            vec!["domain", "ids", "X"],
            vec!["domain"]
        ]
    );
    assert_eq!(paths_after(text, "super"), vec![vec!["b", "c"]]);
    let circle: BTreeSet<(Module, Module)> = [
        (vec!["a".to_owned()], vec!["b".to_owned()]),
        (vec!["b".to_owned()], vec!["a".to_owned()]),
    ]
    .into();
    assert!(a_circle(&circle).is_some());
}
