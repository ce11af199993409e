//! The documentation holds together: every relative link in the README, the changelog and
//! docs/ names a file that exists and, with `#anchor`, a heading that file has (GitHub's
//! anchors: lower case, punctuation dropped, spaces as hyphens); the README stays a page a
//! newcomer finishes.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use common::repo;

/// The markdown pages a reader follows.
fn pages() -> Vec<PathBuf> {
    let mut pages = vec![repo().join("README.md"), repo().join("CHANGELOG.md")];
    for entry in std::fs::read_dir(repo().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    pages
}

/// Lines outside fenced code blocks.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|l| {
            if l.starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// The anchors GitHub gives a page's headings.
fn anchors(text: &str) -> BTreeSet<String> {
    prose(text)
        .into_iter()
        .filter_map(|l| {
            l.trim_start_matches('#')
                .strip_prefix(' ')
                .filter(|_| l.starts_with('#'))
        })
        .map(|h| {
            h.trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == '-' || *c == '_' || *c == ' ')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

/// `(target)` of every `[label](target)` in the page's prose, code spans left out.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in prose(text) {
        let mut in_code = false;
        let bytes: Vec<char> = line.chars().collect();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == '`' {
                in_code = !in_code;
            } else if !in_code && bytes[i] == ']' && bytes.get(i + 1) == Some(&'(') {
                let rest: String = bytes[i + 2..].iter().collect();
                if let Some(end) = rest.find(')') {
                    out.push(rest[..end].to_string());
                }
            }
            i += 1;
        }
    }
    out
}

#[test]
fn every_relative_link_and_anchor_resolves() {
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for link in links(&text) {
            if link.contains("://") || link.starts_with("mailto:") {
                continue;
            }
            let (path, anchor) = link.split_once('#').unwrap_or((&link, ""));
            let target = if path.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(path)
            };
            assert!(
                target.exists(),
                "{}: the link ({link}) names {}, which does not exist",
                page.display(),
                target.display()
            );
            if !anchor.is_empty() {
                let have = anchors(&std::fs::read_to_string(&target).unwrap());
                assert!(
                    have.contains(anchor),
                    "{}: the link ({link}) names #{anchor}, which {} has no heading for",
                    page.display(),
                    target.display()
                );
            }
            checked += 1;
        }
    }
    assert!(
        checked >= 30,
        "only {checked} links found: the reader is broken"
    );
}

#[test]
fn the_readme_is_a_page_a_newcomer_finishes() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let lines = readme.lines().count();
    assert!(
        lines <= 400,
        "README.md has {lines} lines: move detail to docs/"
    );
    // The two commands, as `.ci/run` runs the second.
    assert!(readme.contains("cargo run --release -- run scenarios/unary.toml"));
    assert!(readme.contains("\ntests/run "));
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    assert!(
        ci.lines().any(|l| l.trim() == "tests/run"),
        ".ci/run calls tests/run"
    );
    assert!(Path::new(&repo().join("docs/scenarios.md")).exists());
}

#[test]
fn the_anchor_rule_is_githubs() {
    let a = anchors("# The report (`--out`, schema `loadagent.report/v1`)\n## Hand-written, and why\n```\n# not a heading\n```\n");
    assert!(
        a.contains("the-report---out-schema-loadagentreportv1"),
        "{a:?}"
    );
    assert!(a.contains("hand-written-and-why"));
    assert!(!a.contains("not-a-heading"));
}

/// A size the docs state is the size of the code: "about N lines" of the lean client, in
/// the README and docs/ARCHITECTURE.md, within a tenth of what `src/grpc/lean/` holds.
#[test]
fn the_lean_clients_size_as_the_docs_state_it() {
    let lean = repo().join("src/grpc/lean");
    let lines: usize = std::fs::read_dir(&lean)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| std::fs::read_to_string(p).unwrap().lines().count())
        .sum();
    for page in ["README.md", "docs/ARCHITECTURE.md"] {
        let text = std::fs::read_to_string(repo().join(page)).unwrap();
        let at = text
            .find("grpc/lean")
            .and_then(|i| text[i..].find("about ").map(|j| i + j + "about ".len()))
            .unwrap_or_else(|| panic!("{page} does not say how long the lean client is"));
        let stated: usize = text[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit() || *c == ',')
            .filter(char::is_ascii_digit)
            .collect::<String>()
            .parse()
            .unwrap_or_else(|_| panic!("{page}: no number after `about`"));
        let off = stated.abs_diff(lines) as f64 / lines as f64;
        assert!(
            off <= 0.1,
            "{page} says the lean client is about {stated} lines; src/grpc/lean/ has {lines}"
        );
    }
}
