//! The layers of `src/` import only what docs/design.md allows: a module knows only the layers
//! below it. Every `crate::LAYER` path in code (comments and test modules aside) is checked.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// What each layer may import of ours. Layers not listed (`config`, `server`, `client`,
/// `main`, `lib`) sit on top and may use anything.
const ALLOWED: &[(&str, &[&str])] = &[
    ("net", &[]),
    ("quic", &["net", "stream"]),
    ("stream", &[]),
    ("model", &[]),
    ("web", &["model", "stream"]),
    ("lite", &["model", "stream"]),
    ("ietf", &["model", "stream"]),
    (
        "session",
        &["quic", "web", "lite", "ietf", "model", "stream"],
    ),
    ("relay", &["model"]),
    ("http", &["model"]),
    ("auth", &["model"]),
];

/// Imports that break the rules, file by file, while a move is under way (none since the
/// session host landed). The list may only shrink: an entry that no longer breaks a rule
/// fails the test.
const NOT_YET: &[(&str, &str)] = &[];

fn is_test_file(rel: &str) -> bool {
    let name = rel.rsplit('/').next().unwrap_or(rel);
    name == "tests.rs" || name.ends_with("_tests.rs") || rel.contains("/tests/")
}

/// Source text without comments and without the items marked `#[cfg(test)]` (a `mod x;`
/// line, or a block up to its closing brace).
fn code(text: &str) -> String {
    let mut out = String::new();
    let mut skip_next = false;
    let mut depth: Option<i64> = None;
    for line in text.lines() {
        let line = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        if let Some(d) = depth.as_mut() {
            *d += line.matches('{').count() as i64 - line.matches('}').count() as i64;
            if *d <= 0 {
                depth = None;
            }
            continue;
        }
        if line.trim() == "#[cfg(test)]" {
            skip_next = true;
            continue;
        }
        if skip_next {
            skip_next = false;
            let opens = line.matches('{').count() as i64 - line.matches('}').count() as i64;
            if opens > 0 {
                depth = Some(opens);
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// Every layer named by `crate::NAME` or inside `crate::{..}` in `code`.
fn imports(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name = ident(item.trim());
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        } else {
            let name = ident(rest);
            if !name.is_empty() {
                found.insert(name);
            }
        }
    }
    found
}

fn walk(dir: &Path, root: &Path, files: &mut Vec<(String, String)>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            walk(&path, root, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            files.push((rel, fs::read_to_string(&path).unwrap()));
        }
    }
}

#[test]
fn layers_import_only_what_is_below_them() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    walk(&root, &root, &mut files);
    assert!(files.len() > 20, "found the sources");
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut broken = BTreeSet::new();
    for (rel, text) in &files {
        if is_test_file(rel) {
            continue;
        }
        let layer = rel.split('/').next().unwrap().trim_end_matches(".rs");
        let Some(ok) = allowed.get(layer) else {
            continue;
        };
        for name in imports(&code(text)) {
            if name != layer && allowed.contains_key(name.as_str()) && !ok.contains(&name.as_str())
            {
                broken.insert((rel.clone(), name));
            }
        }
    }
    let not_yet: BTreeSet<(String, String)> = NOT_YET
        .iter()
        .map(|(f, l)| (f.to_string(), l.to_string()))
        .collect();
    let new: Vec<_> = broken.difference(&not_yet).collect();
    assert!(
        new.is_empty(),
        "imports against the layer rules (file, layer): {new:?}"
    );
    let stale: Vec<_> = not_yet.difference(&broken).collect();
    assert!(
        stale.is_empty(),
        "no longer needed, remove from NOT_YET: {stale:?}"
    );
}

#[test]
fn the_checker_sees_imports() {
    let text = "use crate::net::Socket;\nuse crate::{lite, quic::Ctx};\n// crate::web in a comment\nfn f() { crate::model::path::join(); }\n#[cfg(test)]\nmod tests {\n    use crate::relay;\n}\nuse crate::quic::Dir;\n";
    let found = imports(&code(text));
    let names: Vec<&str> = found.iter().map(String::as_str).collect();
    assert_eq!(names, ["lite", "model", "net", "quic"]);
}
