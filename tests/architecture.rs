//! The shape of the code, checked: imports between files form no circle, and they point one
//! way down the layers of the pipeline (docs/ARCHITECTURE.md), with at most three explained
//! exceptions. Imports are read from the source (`use` trees and inline `crate::`/`super::`
//! paths; `#[cfg(test)]` modules at the end of a file are left out).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level modules from the bottom layer up; a module may import from its own layer's
/// members only when they are the same module, and from any layer below.
const LAYERS: &[&[&str]] = &[
    &["input"],
    &["vocabulary"],
    &["host"],
    &["discovery"],
    &["tls"],
    &["grpc"],
    &["probe"],
    &["record"],
    &["telemetry"],
    &["http_server"],
    &["reference"],
    &["load"],
    &["report"],
    // The reader: only what reads files (runs, the agent's config, commands) stands on it.
    &["scenario"],
    &["run"],
    &["agent", "observe"],
    &["commands", "cli", "error", "fuzzing"],
];

/// Imports allowed to point up a layer, each with its reason. At most three.
const UPWARD_EXCEPTIONS: &[(&str, &str, &str)] = &[];

/// File module paths (`load::dispatch`) → source text.
fn modules() -> BTreeMap<String, String> {
    fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, root, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(root).unwrap().with_extension("");
                let mut segs: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if segs.last().is_some_and(|s| s == "mod") {
                    segs.pop();
                }
                if segs == ["lib"] || segs == ["main"] {
                    segs.clear();
                }
                out.insert(segs.join("::"), std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = BTreeMap::new();
    walk(&root, &root, &mut out);
    out
}

/// The text without comments and without a trailing `#[cfg(test)] mod`.
fn code_of(text: &str) -> String {
    let cut = text
        .find("#[cfg(test)]\nmod ")
        .or_else(|| text.find("#[cfg(test)]\npub mod "))
        .unwrap_or(text.len());
    text[..cut]
        .lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `a::{b, c::{d, e}}` → `a::b`, `a::c::d`, `a::c::e`.
fn expand(tree: &str) -> Vec<String> {
    let tree: String = tree.split_whitespace().collect::<Vec<_>>().join(" ");
    let Some(open) = tree.find('{') else {
        return vec![tree];
    };
    let close = tree.rfind('}').filter(|&c| c > open).unwrap_or(tree.len());
    let (prefix, inner) = (&tree[..open], &tree[open + 1..close]);
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts
        .into_iter()
        .filter(|p| !p.trim().is_empty())
        .flat_map(|p| {
            expand(p.trim())
                .into_iter()
                .map(move |x| format!("{prefix}{x}"))
        })
        .collect()
}

/// The file module a path in module `from` names, if it is one of ours.
fn resolve(from: &str, path: &str, known: &BTreeMap<String, String>) -> Option<String> {
    let segs: Vec<&str> = path
        .split("::")
        .map(|s| s.split(" as ").next().unwrap_or(s).trim())
        .filter(|s| !s.is_empty())
        .collect();
    let mut base: Vec<&str> = if from.is_empty() {
        Vec::new()
    } else {
        from.split("::").collect()
    };
    let mut rest = &segs[..];
    match rest.first() {
        Some(&"crate") => {
            base.clear();
            rest = &rest[1..];
        }
        Some(&"super") => {
            while rest.first() == Some(&"super") {
                base.pop();
                rest = &rest[1..];
            }
        }
        Some(&"self") => rest = &rest[1..],
        _ => return None,
    }
    let full: Vec<&str> = base.iter().copied().chain(rest.iter().copied()).collect();
    (0..=full.len())
        .rev()
        .map(|k| full[..k].join("::"))
        .find(|key| known.contains_key(key))
}

fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let known = modules();
    let mut edges = BTreeMap::new();
    for (module, text) in &known {
        let code = code_of(text);
        let mut deps = BTreeSet::new();
        let mut paths = Vec::new();
        let mut lines = code.lines();
        while let Some(line) = lines.next() {
            let l = line.trim_start();
            let l = ["pub use ", "pub(crate) use ", "pub(super) use ", "use "]
                .iter()
                .find_map(|p| l.strip_prefix(p));
            let Some(first) = l else { continue };
            let mut stmt = first.to_string();
            while !stmt.contains(';') {
                match lines.next() {
                    Some(more) => stmt.push_str(more),
                    None => break,
                }
            }
            let stmt = stmt.split(';').next().unwrap_or_default();
            paths.extend(expand(stmt));
        }
        for (i, _) in code
            .match_indices("crate::")
            .chain(code.match_indices("super::"))
        {
            if i > 0 && code[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let end = code[i..]
                .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
                .map_or(code.len(), |e| i + e);
            paths.push(code[i..end].to_string());
        }
        for p in paths {
            if let Some(d) = resolve(module, &p, &known) {
                if d != *module && !d.is_empty() {
                    deps.insert(d);
                }
            }
        }
        edges.insert(module.clone(), deps);
    }
    edges
}

fn top(module: &str) -> &str {
    module.split("::").next().unwrap_or(module)
}

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&top(module)))
}

#[test]
fn the_reader_of_imports_sees_what_it_should() {
    assert_eq!(
        expand("a::{b, c::{d, e as f}}"),
        ["a::b", "a::c::d", "a::c::e as f"]
    );
    let edges = imports();
    assert!(
        edges["load::driver"].contains("load::dispatch"),
        "{edges:?}"
    );
    assert!(edges["run::execute"].contains("report::thresholds"));
    assert!(edges["commands::run"].contains("run"));
    assert!(edges.len() > 60, "{} files", edges.len());
}

#[test]
fn every_top_level_module_has_a_layer() {
    for module in imports().keys().filter(|m| !m.is_empty()) {
        assert!(
            layer(module).is_some(),
            "{module}: give its top-level module a place in LAYERS (and in docs/ARCHITECTURE.md)"
        );
    }
}

#[test]
fn no_import_circle_between_files() {
    let edges = imports();
    // Tarjan's strongly connected components.
    struct State<'a> {
        edges: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        circles: Vec<Vec<&'a str>>,
    }
    fn visit<'a>(s: &mut State<'a>, v: &'a str) {
        let n = s.index.len();
        s.index.insert(v, n);
        s.low.insert(v, n);
        s.stack.push(v);
        s.on.insert(v);
        for w in s.edges.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low[v];
                s.low.insert(v, lv.min(lw));
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low[v];
                s.low.insert(v, lv.min(iw));
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                component.push(w);
                if w == v {
                    break;
                }
            }
            if component.len() > 1 {
                s.circles.push(component);
            }
        }
    }
    let mut s = State {
        edges: &edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        circles: Vec::new(),
    };
    for v in edges.keys() {
        if !s.index.contains_key(v.as_str()) {
            visit(&mut s, v);
        }
    }
    assert!(s.circles.is_empty(), "import circles: {:?}", s.circles);
}

#[test]
fn imports_point_down_the_layers() {
    assert!(UPWARD_EXCEPTIONS.len() <= 3);
    let mut wrong = Vec::new();
    for (from, deps) in imports() {
        for to in deps {
            let (Some(a), Some(b)) = (layer(&from), layer(&to)) else {
                continue;
            };
            let upward = b > a || (a == b && top(&from) != top(&to) && a != LAYERS.len() - 1);
            let excused = UPWARD_EXCEPTIONS
                .iter()
                .any(|(f, t, _)| *f == from && *t == to);
            if upward && !excused {
                wrong.push(format!("{from} -> {to}"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports from a lower layer up (move the shared piece down, or explain it in UPWARD_EXCEPTIONS): {wrong:#?}"
    );
}

#[test]
fn the_commands_hold_no_run_logic_and_nothing_below_imports_them() {
    for (from, deps) in imports() {
        if ["commands", "cli", "error"].contains(&top(&from)) || from.is_empty() {
            continue;
        }
        for to in deps {
            assert!(
                !["commands", "cli"].contains(&top(&to)),
                "{from} imports {to}: the commands layer only parses arguments and prints"
            );
        }
    }
    let run = &modules()["commands::run"];
    for forbidden in ["drive(", "report::build", "judge(", "TargetWatch"] {
        assert!(
            !run.contains(forbidden),
            "commands/run.rs does `{forbidden}`: that belongs to crate::run"
        );
    }
}

/// The report is data: its schema, outputs, merge and compare read and write reports, and
/// know nothing of how a run made one (`run/report.rs` builds it from the load's outcome).
#[test]
fn the_report_imports_nothing_from_the_load() {
    let mut wrong = Vec::new();
    for (from, deps) in imports() {
        if top(&from) != "report" {
            continue;
        }
        for to in deps.iter().filter(|to| top(to) == "load") {
            wrong.push(format!("{from} -> {to}"));
        }
    }
    assert!(
        wrong.is_empty(),
        "the report layer imports the load: {wrong:#?}"
    );
}

/// The library never prints: what a person reads is the commands' to say (a run tells why
/// it stops through `Hooks::on_stop`; the agent logs through `tracing`), so a test or
/// another program that runs a scenario gets no text it did not ask for.
#[test]
fn the_library_never_prints() {
    let mut wrong = Vec::new();
    for (module, text) in modules() {
        if module.is_empty() || ["commands", "cli", "fuzzing"].contains(&top(&module)) {
            continue;
        }
        let code = code_of(&text);
        for printer in ["println!(", "eprintln!(", "print!(", "eprint!(", "dbg!("] {
            if code.contains(printer) {
                wrong.push(format!("{module}: {printer}"));
            }
        }
    }
    assert!(wrong.is_empty(), "library modules that print: {wrong:#?}");
}
