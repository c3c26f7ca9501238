//! The layer rule of `src/`: every module imports only from layers below its
//! own (the order is stated in `src/lib.rs`), so there is no import cycle.
//! This test reads every `crate::…` and `super::…` path in `src/` and fails
//! on an upward or sideways import, naming the file, the line and the fix.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Module path prefix → layer, from the bottom. A path is judged by its
/// longest listed prefix; modules inside one entry may import each other.
const LAYERS: &[(&str, u32)] = &[
    ("per_worker", 1),
    ("lazy_timer", 1),
    ("token_format", 2),
    ("access_model", 3),
    ("store", 4),
    // Beside the store: neither imports the other.
    ("tls", 4),
    ("config", 5),
    ("token::secret_hash", 6),
    ("body", 7),
    ("http1", 8),
    ("canonical", 9),
    ("policy", 10),
    ("token::lifecycle", 11),
    // `crate::token` alone could reach any of its parts: judged as the highest.
    ("token", 11),
    ("auth", 12),
    ("upstream", 13),
    // `crate::access` alone: the resolver and the access check, above the
    // upstream they ask; its `model` is far below (the store keeps it).
    ("access", 14),
    ("context", 15),
    ("rejection", 16),
    ("observe", 17),
    ("live", 18),
    ("gateway", 19),
    ("endpoints", 20),
    ("ui", 21),
    ("proxy", 22),
    ("runtime", 23),
    ("dev", 24),
    ("cli", 25),
];

/// The listed entry a module path belongs to, with its layer.
fn entry_of(module: &[String]) -> Option<(&'static str, u32)> {
    LAYERS
        .iter()
        .filter(|(prefix, _)| {
            let parts: Vec<&str> = prefix.split("::").collect();
            parts.len() <= module.len() && parts.iter().zip(module).all(|(a, b)| a == b)
        })
        .max_by_key(|(prefix, _)| prefix.split("::").count())
        .copied()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `src/proxy/authz.rs` → `[proxy, authz]`; `src/proxy/mod.rs` → `[proxy]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap().with_extension("");
    let mut parts: Vec<String> = relative
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// Every `crate::a::b` or `super::a` path in a line of code, resolved to
/// an absolute module path (identifiers only; the last one may be an item).
fn paths_in(line: &str, module: &[String]) -> Vec<Vec<String>> {
    let mut found = Vec::new();
    for (start, _) in line
        .match_indices("crate::")
        .chain(line.match_indices("super::"))
    {
        let before = line[..start].chars().last();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let rest = &line[start..];
        let mut segments: Vec<&str> = Vec::new();
        for piece in rest.split("::") {
            let ident: String = piece
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if ident.is_empty() {
                break;
            }
            let complete = ident.len() == piece.len();
            segments.push(&piece[..ident.len()]);
            if !complete {
                break;
            }
        }
        let mut absolute: Vec<String> = match segments.first() {
            Some(&"crate") => Vec::new(),
            Some(&"super") => {
                // The parent module, whether this is `x.rs` or `x/mod.rs`.
                let mut base = module.to_vec();
                base.pop();
                base
            }
            _ => continue,
        };
        absolute.extend(segments[1..].iter().map(|s| s.to_string()));
        found.push(absolute);
    }
    found
}

#[test]
fn modules_import_only_from_lower_layers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut checked = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        if module == ["lib"] || module == ["main"] || module.first().is_some_and(|m| m == "bin") {
            continue; // lib.rs, the binaries: above every layer
        }
        let Some((own_entry, own_layer)) = entry_of(&module) else {
            problems.push(format!(
                "{}: module `{}` has no layer; add it to LAYERS here and to the list in src/lib.rs",
                file.display(),
                module.join("::")
            ));
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        for (number, line) in lines.iter().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            // Unit tests may use anything: an inline `#[cfg(test)] mod … {`
            // ends what is checked (they come last in a file).
            if code.trim_start().starts_with("#[cfg(test)]")
                && lines.get(number + 1).is_some_and(|next| {
                    next.trim_start().starts_with("mod ") && next.trim_end().ends_with('{')
                })
            {
                break;
            }
            for path in paths_in(code, &module) {
                let Some((entry, layer)) = entry_of(&path) else {
                    continue; // a crate-root item or a module this test does not know
                };
                *checked.entry(own_entry).or_insert(0) += 1;
                if entry != own_entry && layer >= own_layer {
                    problems.push(format!(
                        "{}:{}: `{}` (layer {own_layer}) imports `{}` (layer {layer}); \
                         move the shared item down, or the importing code up",
                        file.display(),
                        number + 1,
                        own_entry,
                        path.join("::")
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // The test must be looking at something: the request path imports a lot.
    assert!(
        checked.get("proxy").copied().unwrap_or(0) > 10,
        "{checked:?}"
    );
}

#[test]
fn the_layer_list_in_lib_rs_names_every_layer() {
    let lib = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/src/lib.rs")).unwrap();
    for (prefix, _) in LAYERS {
        let written = format!("[`{prefix}`]");
        assert!(
            lib.contains(&written) || *prefix == "token" || *prefix == "access",
            "src/lib.rs's layer list does not mention {written}"
        );
    }
}

#[test]
fn an_upward_import_is_found() {
    // The checker itself: `store` importing `proxy` must be a problem.
    let module = vec!["store".to_owned(), "redis".to_owned()];
    let paths = paths_in("use crate::proxy::GatewayBody;", &module);
    assert_eq!(paths, [vec!["proxy".to_owned(), "GatewayBody".to_owned()]]);
    let (_, from) = entry_of(&module).unwrap();
    let (_, to) = entry_of(&paths[0]).unwrap();
    assert!(to > from);
    // `super::` is the parent module, for `proxy/mod.rs` and `proxy/authz.rs` alike.
    let proxy_mod = vec!["proxy".to_owned()];
    assert_eq!(paths_in("super::x", &proxy_mod), [vec!["x".to_owned()]]);
    let authz = vec!["proxy".to_owned(), "authz".to_owned()];
    assert_eq!(
        paths_in("use super::Permit;", &authz),
        [vec!["proxy".to_owned(), "Permit".to_owned()]]
    );
}

/// Every top-level module of `src/` and the top-level modules it names as
/// `crate::…`, in code and in comments alike (a doc link upward reads as a
/// dependency, and invites one).
fn top_level_graph() -> BTreeMap<String, BTreeMap<String, String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut graph: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        let Some(own) = module.first() else { continue };
        if own == "lib" || own == "main" || own == "bin" {
            continue;
        }
        let text = std::fs::read_to_string(file).unwrap();
        for (number, line) in text.lines().enumerate() {
            for path in paths_in(line, &module) {
                if let Some(target) = path.first().filter(|t| *t != own) {
                    graph
                        .entry(own.clone())
                        .or_default()
                        .entry(target.clone())
                        .or_insert_with(|| format!("{}:{}", file.display(), number + 1));
                }
            }
        }
    }
    graph
}

/// A cycle in `graph`, as its modules in order, if there is one.
fn find_cycle(graph: &BTreeMap<String, BTreeMap<String, String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeMap<String, String>>,
        path: &mut Vec<String>,
        done: &mut std::collections::BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            return Some(path[at..].to_vec());
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph
            .get(node)
            .into_iter()
            .flat_map(|targets| targets.keys())
        {
            if let Some(cycle) = visit(next, graph, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = std::collections::BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn top_level_modules_name_each_other_without_a_cycle() {
    let graph = top_level_graph();
    assert!(graph.get("proxy").is_some_and(|t| t.len() > 5), "{graph:?}");
    if let Some(cycle) = find_cycle(&graph) {
        let steps: Vec<String> = cycle
            .iter()
            .zip(cycle.iter().cycle().skip(1))
            .map(|(a, b)| format!("{a} -> {b} ({})", graph[a][b]))
            .collect();
        panic!(
            "top-level modules form a cycle; move the shared item down or drop the upward doc link:\n{}",
            steps.join("\n")
        );
    }
}

#[test]
fn a_top_level_cycle_is_found() {
    let edge = |a: &str, b: &str| {
        (
            a.to_owned(),
            BTreeMap::from([(b.to_owned(), "x".to_owned())]),
        )
    };
    let graph = BTreeMap::from([edge("store", "token"), edge("token", "store")]);
    assert!(find_cycle(&graph).is_some());
    let graph = BTreeMap::from([edge("store", "token")]);
    assert!(find_cycle(&graph).is_none());
}
