//! The shape of the house, checked: the dependency rules of the design, read from
//! the source.
//!
//! Layers of the gateway crate, from the bottom up:
//!
//! ```text
//! model → store → config → core → listen → daemon → tools → cli
//! ```
//!
//! A module may use its own layer and the layers below it, never one above. On
//! top of that: listeners never touch the store (they call the core); storage
//! backends (`store/<backend>/`; `store::queue` is an interface, the work
//! queue's trait) are used only by `store::backends` (the one
//! place that knows them all), the daemon, the tools and the CLI; no two sibling modules of a layer
//! use each other in a cycle; no file (outside its tests) is longer than
//! [`MAX_LINES`]; every module starts with a `//!` paragraph. In the SDK no two
//! modules use each other in a cycle, and no crate under `adapters/` depends on
//! the gateway.
//!
//! Test code (`#[cfg(test)]` modules, which come last in a file, and `tests.rs`
//! files) is not checked:
//! a test may build its fixture from any layer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, bottom first.
const LAYERS: &[&str] = &[
    "model", "store", "config", "core", "listen", "daemon", "tools", "cli",
];

/// Modules of the store that are interfaces (or the backend chooser), not
/// backends: `store::queue` is the work queue's trait, as `store` holds the
/// store's; `store::cases` the case statistics' query both backends run.
const STORE_INTERFACES: &[&str] = &["backends", "queue", "cases"];

/// The longest a source file may be, its tests not counted.
const MAX_LINES: usize = 600;

fn rank(layer: &str) -> Option<usize> {
    LAYERS.iter().position(|l| *l == layer)
}

/// A source file as the module path it defines, e.g. `store/embedded/mod.rs` →
/// `["store", "embedded"]`.
fn module_of(root: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(root).expect("under root");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().expect("a file name");
    let stem = last.trim_end_matches(".rs");
    if stem != "mod" && stem != "lib" && stem != "main" {
        parts.push(stem.to_owned());
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The non-test code of a file, without comments.
fn code_of(text: &str) -> (Vec<(usize, String)>, usize) {
    let mut lines = Vec::new();
    let mut counted = 0;
    let all: Vec<&str> = text.lines().collect();
    for (i, line) in all.iter().enumerate() {
        let trimmed = line.trim_start();
        // An inline test module ends the checked code; `mod tests;` (a file of
        // its own, skipped) does not.
        let next = all.get(i + 1).map(|l| l.trim_start()).unwrap_or("");
        if trimmed.starts_with("#[cfg(test)]") && next.starts_with("mod ") && next.ends_with('{') {
            break;
        }
        counted += 1;
        if trimmed.starts_with("//") {
            continue;
        }
        let code = match line.find("//") {
            // A `//` inside a string literal (a URL) is kept: cutting there only
            // loses a path that no `crate::` reference follows anyway.
            Some(at) if !line[..at].contains('"') => &line[..at],
            _ => line,
        };
        lines.push((i + 1, code.to_owned()));
    }
    (lines, counted)
}

/// Every `crate::a::b` a piece of code names, as `["a", "b"]` (up to two levels).
fn references(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().last();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        let path: Vec<String> = rest
            .split("::")
            .take(2)
            .map(|seg| {
                seg.chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect::<String>()
            })
            .take_while(|seg| !seg.is_empty() && seg.chars().all(|c| !c.is_uppercase()))
            .collect();
        if !path.is_empty() {
            out.push(path);
        }
    }
    out
}

struct Crate {
    /// (module path, line, referenced module path) for every reference.
    uses: Vec<(Vec<String>, PathBuf, usize, Vec<String>)>,
    problems: Vec<String>,
}

fn read_crate(root: &Path) -> Crate {
    let mut files = Vec::new();
    rust_files(root, &mut files);
    files.sort();
    let mut uses = Vec::new();
    let mut problems = Vec::new();
    for file in files {
        if file.file_name().is_some_and(|n| n == "tests.rs") {
            continue; // a module's tests, declared under #[cfg(test)]
        }
        let text = std::fs::read_to_string(&file).expect("readable file");
        let module = module_of(root, &file);
        let (code, counted) = code_of(&text);
        let shown = file.display();
        if counted > MAX_LINES {
            problems.push(format!(
                "{shown}: {counted} lines before its tests (at most {MAX_LINES}): split it by concern"
            ));
        }
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name != "main.rs" && !text.trim_start().starts_with("//!") {
            problems.push(format!(
                "{shown}: starts without a `//!` paragraph saying what the module is for"
            ));
        }
        for (line, code) in code {
            if code.contains("crate::{") {
                problems.push(format!(
                    "{shown}:{line}: `crate::{{…}}` hides which modules are used; one `use` per module"
                ));
            }
            for r in references(&code, "crate::") {
                uses.push((module.clone(), file.clone(), line, r));
            }
        }
    }
    Crate { uses, problems }
}

/// Cycles among sibling modules (same parent), e.g. `core::audit` ↔ `core::engine`.
fn sibling_cycles(edges: &BTreeSet<(Vec<String>, Vec<String>)>) -> Vec<String> {
    let mut graph: BTreeMap<&Vec<String>, BTreeSet<&Vec<String>>> = BTreeMap::new();
    for (from, to) in edges {
        graph.entry(from).or_default().insert(to);
    }
    let mut found = Vec::new();
    for (a, targets) in &graph {
        for b in targets {
            // Reachability from b back to a.
            let mut seen = BTreeSet::new();
            let mut stack = vec![*b];
            while let Some(n) = stack.pop() {
                if n == *a {
                    if a < b {
                        found.push(format!(
                            "import cycle between {} and {}",
                            a.join("::"),
                            b.join("::")
                        ));
                    }
                    break;
                }
                if seen.insert(n) {
                    if let Some(next) = graph.get(n) {
                        stack.extend(next.iter().copied());
                    }
                }
            }
        }
    }
    found
}

/// The sibling edge between two modules: their first differing path segments
/// under a common parent, if neither contains the other.
fn sibling_edge(from: &[String], to: &[String]) -> Option<(Vec<String>, Vec<String>)> {
    let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
    if common == from.len() || common == to.len() {
        return None; // one contains the other (a module and its parent or child)
    }
    Some((from[..=common].to_vec(), to[..=common].to_vec()))
}

fn gateway_violations(root: &Path) -> Vec<String> {
    let krate = read_crate(root);
    let mut problems = krate.problems;
    let mut edges = BTreeSet::new();
    for (module, file, line, target) in &krate.uses {
        let shown = format!("{}:{line}", file.display());
        let Some(from_layer) = module.first() else {
            continue; // lib.rs declares the layers
        };
        let (Some(from), Some(to)) = (rank(from_layer), rank(&target[0])) else {
            problems.push(format!(
                "{shown}: `crate::{}` is in no layer of {LAYERS:?}",
                target.join("::")
            ));
            continue;
        };
        if to > from {
            problems.push(format!(
                "{shown}: {} (layer {from_layer}) uses crate::{} — a layer above it; dependencies point down: {}",
                module.join("::"),
                target.join("::"),
                LAYERS.join(" → ")
            ));
        }
        let backend = target[0] == "store"
            && target.len() > 1
            && !STORE_INTERFACES.contains(&target[1].as_str());
        let in_backend = backend && module[0] == "store" && module.get(1) == target.get(1);
        let chooser = module.len() > 1 && module[0] == "store" && module[1] == "backends";
        if backend
            && !in_backend
            && !chooser
            && !["daemon", "tools", "cli"].contains(&from_layer.as_str())
        {
            problems.push(format!(
                "{shown}: {} uses the storage backend crate::{}; above the store only the traits of crate::store are used (the daemon picks the backend)",
                module.join("::"),
                target.join("::")
            ));
        }
        if from_layer == "listen" && target[0] == "store" {
            problems.push(format!(
                "{shown}: {} uses crate::{}; listeners are thin — parse, call the core, answer — and never touch the store",
                module.join("::"),
                target.join("::")
            ));
        }
        if let Some(edge) = sibling_edge(module, target) {
            edges.insert(edge);
        }
    }
    problems.extend(sibling_cycles(&edges));
    problems
}

fn sdk_violations(root: &Path) -> Vec<String> {
    let krate = read_crate(root);
    let mut problems = krate.problems;
    let mut edges = BTreeSet::new();
    for (module, _, _, target) in &krate.uses {
        if let Some(edge) = sibling_edge(module, &target[..1]) {
            edges.insert(edge);
        }
    }
    problems.extend(sibling_cycles(&edges));
    problems
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace")
        .to_path_buf()
}

#[test]
fn the_gateway_keeps_its_layers() {
    let problems = gateway_violations(&repo().join("gateway/src"));
    assert!(
        problems.is_empty(),
        "dependency rules broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn the_sdk_has_no_import_cycle() {
    let problems = sdk_violations(&repo().join("adapters/sdk/src"));
    assert!(
        problems.is_empty(),
        "SDK structure broken:\n{}",
        problems.join("\n")
    );
}

#[test]
fn adapters_never_depend_on_the_gateway() {
    for entry in std::fs::read_dir(repo().join("adapters")).expect("adapters/") {
        let manifest = entry.expect("entry").path().join("Cargo.toml");
        let Ok(text) = std::fs::read_to_string(&manifest) else {
            continue;
        };
        let doc: toml::Table = text.parse().expect("valid Cargo.toml");
        for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
            if let Some(deps) = doc.get(section).and_then(|d| d.as_table()) {
                assert!(
                    !deps.contains_key("ozg-gateway"),
                    "{}: [{section}] names ozg-gateway; adapters and the SDK must build without the gateway",
                    manifest.display()
                );
            }
        }
    }
}

/// The checker itself: each rule fires on a small example of its violation.
#[test]
fn the_checker_catches_each_kind_of_violation() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |path: &str, text: &str| {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    write("lib.rs", "//! x\npub mod model;\n");
    write("model/mod.rs", "//! x\nuse crate::core::engine::Engine;\n");
    write("core/engine.rs", "//! x\nuse crate::core::audit::X;\n");
    write("core/audit.rs", "//! x\nuse crate::core::engine::Y;\n");
    write(
        "listen/a.rs",
        "//! x\nuse crate::store::embedded::EmbeddedStore;\n",
    );
    write("daemon/b.rs", "use crate::model::X;\n");
    // A test module in a file of its own does not end the checked code.
    write(
        "store/f/mod.rs",
        "//! x\n#[cfg(test)]\nmod tests;\nuse crate::listen::Server;\n",
    );
    write("listen/e.rs", "//! x\nfn f(s: &crate::store::Store) {}\n");
    write(
        "cli/c.rs",
        &format!("//! x\n{}", "fn f() {}\n".repeat(MAX_LINES + 1)),
    );
    write(
        "tools/d.rs",
        "//! x\nuse crate::{model, core};\n#[cfg(test)]\nmod tests {\n    use crate::cli::X;\n}\n",
    );
    let problems = gateway_violations(dir.path()).join("\n");
    for expected in [
        "model (layer model) uses crate::core::engine",
        "import cycle between core::audit and core::engine",
        "uses the storage backend crate::store::embedded",
        "listen::e uses crate::store; listeners are thin",
        "store::f (layer store) uses crate::listen",
        "b.rs: starts without a `//!` paragraph",
        "c.rs: 602 lines before its tests",
        "`crate::{…}` hides which modules are used",
    ] {
        assert!(
            problems.contains(expected),
            "expected {expected:?} in:\n{problems}"
        );
    }
    assert!(
        !problems.contains("crate::cli"),
        "test modules are not checked:\n{problems}"
    );
}
