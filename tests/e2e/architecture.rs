//! The dependency rules of ARCHITECTURE.md ("Dependency rules"), checked against the
//! workspace as `cargo metadata` resolves it: every crate under `runtime/` has a row, uses only
//! the workspace crates its row names, and reaches none of the libraries its row forbids through
//! its normal dependencies.

use std::collections::{BTreeMap, BTreeSet};

use consort_tests::repo_root;
use serde_json::Value;

/// One row of the table: the workspace crates a crate may use, and the libraries it must never reach.
struct Rule {
    may_use: BTreeSet<String>,
    never: BTreeSet<String>,
}

/// The rows of the "Dependency rules" table.
fn rules(architecture: &str) -> BTreeMap<String, Rule> {
    let section = architecture.split("## Dependency rules").nth(1).expect("ARCHITECTURE.md has a \"Dependency rules\" section");
    let section = section.split("\n## ").next().expect("the section");
    let list = |cell: &str| cell.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect::<BTreeSet<_>>();
    let mut rows = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| consort-")) {
        let cells: Vec<&str> = line.trim().trim_matches('|').split('|').collect();
        assert_eq!(cells.len(), 3, "a row has three cells: {line}");
        let previous = rows.insert(cells[0].trim().to_owned(), Rule { may_use: list(cells[1]), never: list(cells[2]) });
        assert!(previous.is_none(), "{} has two rows", cells[0].trim());
    }
    assert!(!rows.is_empty(), "the table has rows");
    rows
}

/// The resolved workspace: package id → (name, manifest path), and id → its normal dependencies.
struct Graph {
    names: BTreeMap<String, (String, String)>,
    normal: BTreeMap<String, Vec<String>>,
    members: Vec<String>,
}

fn graph() -> Graph {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(repo_root())
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let m: Value = serde_json::from_slice(&out.stdout).expect("cargo metadata's JSON");
    let text = |v: &Value| v.as_str().expect("a string").to_owned();
    let names = m["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| (text(&p["id"]), (text(&p["name"]), text(&p["manifest_path"]))))
        .collect();
    let normal = m["resolve"]["nodes"]
        .as_array()
        .expect("the resolved graph")
        .iter()
        .map(|n| {
            let deps = n["deps"].as_array().expect("deps").iter();
            let normal = deps.filter(|d| d["dep_kinds"].as_array().is_some_and(|k| k.iter().any(|k| k["kind"].is_null())));
            (text(&n["id"]), normal.map(|d| text(&d["pkg"])).collect())
        })
        .collect();
    let members = m["workspace_members"].as_array().expect("members").iter().map(text).collect();
    Graph { names, normal, members }
}

impl Graph {
    fn name(&self, id: &str) -> &str {
        &self.names[id].0
    }

    /// The path from `from` to a package named `target` through normal dependencies, if any.
    fn path_to(&self, from: &str, target: &str) -> Option<Vec<String>> {
        let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([from]);
        while let Some(at) = queue.pop_front() {
            if self.name(at) == target {
                let mut path = vec![self.name(at).to_owned()];
                let mut cur = at;
                while let Some(prev) = came_from.get(cur) {
                    path.push(self.name(prev).to_owned());
                    cur = prev;
                }
                path.reverse();
                return Some(path);
            }
            for dep in self.normal.get(at).into_iter().flatten() {
                if dep != from && !came_from.contains_key(dep.as_str()) {
                    came_from.insert(dep, at);
                    queue.push_back(dep);
                }
            }
        }
        None
    }
}

#[test]
fn every_runtime_crate_keeps_to_its_row_of_the_dependency_rules() {
    let rules = rules(&std::fs::read_to_string(repo_root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md"));
    let g = graph();
    let runtime = repo_root().join("runtime").canonicalize().expect("runtime/");
    let workspace: BTreeSet<&str> = g.members.iter().map(|id| g.name(id)).collect();
    let mut broken = Vec::new();
    let mut checked = 0;
    for id in &g.members {
        let (name, manifest) = &g.names[id];
        if !std::path::Path::new(manifest).canonicalize().is_ok_and(|m| m.starts_with(&runtime)) {
            continue; // the test harness and the benchmarks may use anything
        }
        let Some(rule) = rules.get(name) else {
            broken.push(format!("{name} (runtime/) has no row in the table"));
            continue;
        };
        checked += 1;
        for dep in g.normal.get(id).into_iter().flatten().map(|d| g.name(d)) {
            if workspace.contains(dep) && !rule.may_use.contains(dep) {
                broken.push(format!("{name} uses {dep}, which its row does not allow"));
            }
        }
        for never in &rule.never {
            if let Some(path) = g.path_to(id, never) {
                broken.push(format!("{name} reaches {never}: {}", path.join(" → ")));
            }
        }
    }
    for name in rules.keys() {
        if !workspace.contains(name.as_str()) {
            broken.push(format!("the table has a row for {name}, which is not a workspace crate"));
        }
    }
    assert!(broken.is_empty(), "ARCHITECTURE.md's dependency rules are broken:\n{}", broken.join("\n"));
    assert_eq!(checked, rules.len(), "every row was checked");
}

/// The check finds what it must: a path to a library, and none where there is none.
#[test]
fn the_check_finds_a_forbidden_library_through_another_crate() {
    let g = graph();
    let id = |name: &str| g.members.iter().find(|m| g.name(m) == name).expect("a member").clone();
    let path = g.path_to(&id("consort-node"), "sled").expect("the node reaches sled");
    assert_eq!(path.first().map(String::as_str), Some("consort-node"));
    assert!(path.contains(&"consort-consensus".to_owned()), "through consensus: {path:?}");
    assert_eq!(g.path_to(&id("consort-kv"), "tokio"), None);
}

/// The node crate's module order from ARCHITECTURE.md ("Module order in `runtime/node`"), top first.
fn node_module_order(architecture: &str) -> Vec<String> {
    let section = architecture.split("### Module order in `runtime/node`").nth(1).expect("ARCHITECTURE.md has the node's module order");
    let names_only = |l: &str| !l.is_empty() && l.split_whitespace().all(|w| w.len() > 2 && w.starts_with('`') && w.ends_with('`'));
    let line = section.lines().find(|l| names_only(l)).expect("the order: a line of `module` names only");
    line.split_whitespace().map(|m| m.trim_matches('`').to_owned()).collect()
}

/// The crate modules a source file names (`crate::x`, `crate::{x, y::z}`), comments left out.
fn modules_used(source: &str) -> BTreeSet<String> {
    let code: String = source.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let ident = |s: &str| s.trim_start().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect::<String>();
    let mut used = BTreeSet::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            used.extend(group.split(',').map(ident).filter(|m| !m.is_empty()));
        } else {
            used.insert(ident(rest));
        }
    }
    used
}

/// Each broken rule: a module missing from the order, an order entry with no file, or a module
/// that uses one at or above its own place.
fn order_violations(order: &[String], files: &BTreeMap<String, String>) -> Vec<String> {
    let place = |m: &str| order.iter().position(|o| o == m);
    let mut broken = Vec::new();
    for (module, source) in files {
        let Some(own) = place(module) else {
            broken.push(format!("{module}.rs is not in the module order"));
            continue;
        };
        for used in modules_used(source) {
            match place(&used) {
                Some(p) if p > own => {}
                Some(_) => broken.push(format!("{module} uses {used}, which the order puts above it")),
                None if files.contains_key(&used) => {} // reported as missing from the order above
                None => {}                              // an item of the crate root (a re-export or `VERSION`)
            }
        }
    }
    broken.extend(order.iter().filter(|m| !files.contains_key(*m)).map(|m| format!("the order names {m}, which has no file")));
    broken
}

#[test]
fn the_node_crates_modules_use_only_those_below_them() {
    let order = node_module_order(&std::fs::read_to_string(repo_root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md"));
    let dir = repo_root().join("runtime/node/src");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("runtime/node/src") {
        let path = entry.expect("an entry").path();
        let name = path.file_stem().and_then(|s| s.to_str()).expect("a file name").to_owned();
        assert!(path.extension().is_some_and(|e| e == "rs"), "{} is not a Rust file: the check reads flat modules only", path.display());
        if name != "lib" && name != "main" {
            files.insert(name, std::fs::read_to_string(&path).expect("a source file"));
        }
    }
    let broken = order_violations(&order, &files);
    assert!(broken.is_empty(), "the node crate's module order (ARCHITECTURE.md) is broken:\n{}", broken.join("\n"));
}

/// The order check finds a use that runs upwards, a grouped one included, and ignores comments.
#[test]
fn the_order_check_finds_a_use_that_runs_upwards() {
    let order: Vec<String> = ["routes", "app", "context"].map(str::to_owned).to_vec();
    let file = |s: &str| s.to_owned();
    let fine = BTreeMap::from([
        ("routes".to_owned(), file("use crate::app;\nuse crate::{context::Node};")),
        ("app".to_owned(), file("/// see [`crate::routes`]\nfn f(n: &crate::context::Node) {}")),
        ("context".to_owned(), file("pub struct Node; fn v() -> &str { crate::VERSION }")),
    ]);
    assert_eq!(order_violations(&order, &fine), Vec::<String>::new());
    let mut upwards = fine.clone();
    upwards.insert("context".to_owned(), file("use crate::{reply, app::call};"));
    upwards.insert("reply".to_owned(), file(""));
    assert_eq!(
        order_violations(&order, &upwards),
        vec!["context uses app, which the order puts above it".to_owned(), "reply.rs is not in the module order".to_owned()]
    );
    let mut missing = fine;
    missing.remove("app");
    assert_eq!(order_violations(&order, &missing), vec!["the order names app, which has no file".to_owned()]);
}
