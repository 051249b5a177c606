//! The layout holds: no module of `api` imports, directly or through
//! others, a module that imports it back. A module's own folder is one unit
//! (a `mod.rs` and the files under it may refer to each other); between
//! units, imports form no cycle. Read from the sources, so it runs anywhere:
//! `cargo test -p dotmac-api --test it layout`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module path of a source file (`crate::service::billing::close`).
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
        .collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    let mut path = vec!["crate".to_owned()];
    path.extend(parts);
    path
}

/// Every path a file names through `crate::` or `super::`, braces of `use`
/// groups expanded, made absolute.
fn referenced(text: &str, module: &[String], is_mod_file: bool) -> Vec<Vec<String>> {
    // Statements of `use` may span lines: read them whole.
    let flat: String = text
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join(" ")
        // Paths are ASCII; anything else only has to keep byte offsets whole.
        .chars()
        .map(|c| if c.is_ascii() { c } else { ' ' })
        .collect();
    let mut out = Vec::new();
    let base_of = |head: &str| -> Option<Vec<String>> {
        match head {
            "crate" => Some(vec!["crate".to_owned()]),
            "super" => {
                // `super` of `a/b.rs` (module crate::a::b) is crate::a; of
                // `a/mod.rs` (module crate::a) it is crate.
                let mut m = module.to_vec();
                m.pop();
                let _ = is_mod_file;
                Some(m)
            }
            _ => None,
        }
    };
    let bytes = flat.as_bytes();
    let mut i = 0;
    while i < flat.len() {
        let rest = &flat[i..];
        let head = if rest.starts_with("crate::") {
            "crate"
        } else if rest.starts_with("super::") {
            "super"
        } else {
            i += 1;
            continue;
        };
        let prev = if i == 0 { b' ' } else { bytes[i - 1] };
        if prev.is_ascii_alphanumeric() || prev == b'_' || prev == b':' {
            i += 1;
            continue;
        }
        let base = base_of(head).unwrap();
        let mut j = i + head.len() + 2;
        let mut path = base.clone();
        loop {
            let seg: String = flat[j..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !seg.is_empty() {
                path.push(seg.clone());
                j += seg.len();
            }
            if flat[j..].starts_with("::{") {
                // A group: each member is a path under `path`.
                let close = flat[j..].find('}').map_or(flat.len(), |k| j + k);
                for member in flat[j + 3..close].split(',') {
                    let member = member.trim();
                    let name: String = member
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                        .collect();
                    let mut p = path.clone();
                    for s in name.split("::").filter(|s| !s.is_empty() && *s != "self") {
                        p.push(s.to_owned());
                    }
                    out.push(p);
                }
                j = close;
                break;
            } else if flat[j..].starts_with("::") {
                j += 2;
            } else {
                break;
            }
        }
        out.push(path);
        i = j.max(i + 1);
    }
    out
}

#[test]
fn api_modules_import_each_other_in_no_cycle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> = files
        .iter()
        .filter(|f| !f.ends_with("main.rs"))
        .map(|f| (module_of(&src, f), f.clone()))
        .collect();
    let within = |a: &[String], b: &[String]| a.starts_with(b) || b.starts_with(a);
    let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
    for (module, file) in &modules {
        let text = std::fs::read_to_string(file).unwrap();
        let is_mod = file.ends_with("mod.rs") || file.ends_with("lib.rs");
        for path in referenced(&text, module, is_mod) {
            // The longest prefix that is a module of its own.
            let target = (1..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| modules.contains_key(p));
            if let Some(target) = target {
                if target.len() > 1 && !within(module, &target) {
                    edges.entry(module.clone()).or_default().insert(target);
                }
            }
        }
    }
    assert!(
        edges.values().map(BTreeSet::len).sum::<usize>() > 50,
        "the reader found too few imports to judge: {edges:?}"
    );
    // Depth-first search for a back edge.
    fn visit(
        m: &Vec<String>,
        edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
        state: &mut BTreeMap<Vec<String>, u8>,
        stack: &mut Vec<Vec<String>>,
    ) -> Option<Vec<Vec<String>>> {
        state.insert(m.clone(), 1);
        stack.push(m.clone());
        for next in edges.get(m).into_iter().flatten() {
            match state.get(next).copied().unwrap_or(0) {
                1 => {
                    let at = stack.iter().position(|s| s == next).unwrap();
                    let mut cycle = stack[at..].to_vec();
                    cycle.push(next.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(next, edges, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(m.clone(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for m in modules.keys() {
        if state.get(m).copied().unwrap_or(0) == 0 {
            if let Some(cycle) = visit(m, &edges, &mut state, &mut Vec::new()) {
                let named: Vec<String> = cycle.iter().map(|p| p.join("::")).collect();
                panic!(
                    "modules of api import each other in a cycle: {}",
                    named.join(" -> ")
                );
            }
        }
    }
}

/// The checker sees a cycle when there is one (it could not pass vacuously).
#[test]
fn the_cycle_check_reads_groups_and_super() {
    let module = vec!["crate".to_owned(), "a".to_owned(), "b".to_owned()];
    let refs = referenced(
        "use crate::store::{tenant_rows, Tx};\nuse super::Billing;\nlet x = crate::c::d(1);",
        &module,
        false,
    );
    let has = |p: &str| refs.iter().any(|r| r.join("::") == p);
    assert!(has("crate::store::tenant_rows"), "{refs:?}");
    assert!(has("crate::store::Tx"));
    assert!(has("crate::a::Billing"));
    assert!(has("crate::c::d"));
}
