//! The layers of a crate, checked against its imports: a module may use
//! modules of its own layer and of the layers below it, never one above.
//! The layers are the crate's intended data flow written down (the façade
//! on top, the smallest building blocks at the bottom), so an import that
//! runs back up fails a test instead of waiting for a review.
//!
//! What counts as an import: every `crate::name` path in a module's code
//! (in `use` items, grouped or not, and in expressions), resolved through
//! the crate root's `pub use` re-exports. Comments, doc links and the
//! module's `#[cfg(test)] mod tests` are not imports.

use std::collections::BTreeMap;
use std::path::Path;

/// One import that runs from a lower layer up to a higher one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upward {
    /// The importing module (`handlers::api`).
    pub from: String,
    /// The imported module's top-level name (`service`).
    pub to: String,
    /// The path as written (`crate::Service`).
    pub path: String,
}

impl std::fmt::Display for Upward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} uses {} (module {}), a layer above it",
            self.from, self.path, self.to
        )
    }
}

/// Every import under `src` that runs up the `layers` (top first; each a
/// list of top-level module names; `lib` is the crate root and may use
/// anything). A top-level module missing from `layers` is reported as an
/// error, so a new module must be placed.
pub fn upward_imports(src: &Path, layers: &[&[&str]]) -> Result<Vec<Upward>, String> {
    let level = |module: &str| {
        let top = module.split("::").next().unwrap_or(module);
        layers.iter().position(|l| l.contains(&top))
    };
    let files = rust_files(src)?;
    let root = std::fs::read_to_string(src.join("lib.rs")).map_err(|e| e.to_string())?;
    let reexports = reexports(&root);
    let mut found = Vec::new();
    for (module, text) in &files {
        if module == "lib" {
            continue;
        }
        let Some(from) = level(module) else {
            return Err(format!("module {module} is in no layer: place it"));
        };
        for path in crate_paths(&code_of(text)) {
            let first = path
                .trim_start_matches("crate::")
                .split("::")
                .next()
                .unwrap_or_default()
                .to_owned();
            let target = if files.contains_key(&first) {
                first
            } else if let Some(m) = reexports.get(&first) {
                m.clone()
            } else {
                continue; // a macro or an item of the root itself
            };
            match level(&target) {
                Some(to) if to < from => found.push(Upward {
                    from: module.clone(),
                    to: target,
                    path,
                }),
                Some(_) => {}
                None => return Err(format!("module {target} is in no layer: place it")),
            }
        }
    }
    found.sort_by(|a, b| (&a.from, &a.path).cmp(&(&b.from, &b.path)));
    found.dedup();
    Ok(found)
}

/// The `.rs` files under `src`, by module path (`lib`, `a`, `a::b`).
fn rust_files(src: &Path) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![src.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let path = entry.map_err(|e| e.to_string())?.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(src).map_err(|e| e.to_string())?;
            let mut parts: Vec<String> = rel
                .iter()
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
                .collect();
            if parts.last().is_some_and(|l| l == "mod") {
                parts.pop();
            }
            let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            out.insert(parts.join("::"), text);
        }
    }
    Ok(out)
}

/// The code of a file: without comment lines and without its
/// `#[cfg(test)] mod …` (tests may use anything).
fn code_of(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    for (i, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        if t == "#[cfg(test)]"
            && lines[i + 1..]
                .iter()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| l.trim_start().starts_with("mod "))
        {
            break;
        }
        if t.starts_with("//") {
            continue;
        }
        out.push_str(line.split(" //").next().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Every `crate::…` path in `code`, a grouped `use crate::{a, b::c}`
/// giving `crate::a` and `crate::b`.
fn crate_paths(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `otm_crate::`, not ours
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            let mut depth = 0;
            let mut item = String::new();
            for c in group[..end].chars().chain([',']) {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        let name: String = item
                            .trim()
                            .chars()
                            .take_while(|c| c.is_alphanumeric() || *c == '_')
                            .collect();
                        if !name.is_empty() {
                            out.push(format!("crate::{name}"));
                        }
                        item.clear();
                        continue;
                    }
                    _ => {}
                }
                item.push(c);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.push(format!("crate::{name}"));
            }
        }
    }
    out
}

/// The crate root's re-exports: name → the top-level module it comes from
/// (`pub use service::{Service, …}` gives `Service` → `service`).
fn reexports(root: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let code = code_of(root);
    let mut rest = code.as_str();
    while let Some(at) = rest.find("pub use ") {
        rest = &rest[at + "pub use ".len()..];
        let end = rest.find(';').unwrap_or(rest.len());
        let item = &rest[..end];
        let module = item
            .split("::")
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let names = match item.split_once('{') {
            Some((_, group)) => group.trim_end_matches('}').split(',').collect::<Vec<_>>(),
            None => vec![item.rsplit("::").next().unwrap_or_default()],
        };
        for name in names {
            let name = name.split(" as ").last().unwrap_or(name).trim();
            if !name.is_empty() {
                out.insert(name.to_owned(), module.clone());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_import_up_a_layer_is_found_and_one_down_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path();
        std::fs::create_dir(src.join("service")).unwrap();
        std::fs::write(
            src.join("lib.rs"),
            "mod a;\npub use service::{Service, Other};\n",
        )
        .unwrap();
        std::fs::write(
            src.join("service/mod.rs"),
            "//! uses [`crate::handlers`] in a doc only\nuse crate::{caller::Caller, handlers as h};\n",
        )
        .unwrap();
        std::fs::write(
            src.join("handlers.rs"),
            "use crate::Service;\nfn f() { crate::caller::x(); }\n",
        )
        .unwrap();
        std::fs::write(
            src.join("caller.rs"),
            "pub fn x() {}\n#[cfg(test)]\nmod tests {\n    use crate::Service;\n}\n",
        )
        .unwrap();
        let layers: &[&[&str]] = &[&["handlers"], &["service"], &["caller"]];
        let found = upward_imports(src, layers).unwrap();
        assert_eq!(
            found,
            [Upward {
                from: "service".into(),
                to: "handlers".into(),
                path: "crate::handlers".into()
            }],
            "{found:?}"
        );
        let unplaced: &[&[&str]] = &[&["handlers"], &["service"]];
        assert!(upward_imports(src, unplaced)
            .unwrap_err()
            .contains("caller"));
    }
}
