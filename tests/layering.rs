//! Style as a test: the module layering of DESIGN.md §2. Each top-level module of `src/` may
//! refer only to modules declared before it in `src/lib.rs`; glommio is named only in
//! `runtime/`, and so is `unsafe`.

use std::fs;
use std::path::{Path, PathBuf};

fn module_order() -> Vec<String> {
    let lib = fs::read_to_string("src/lib.rs").expect("src/lib.rs");
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_owned())
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("readable dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// `crate::<module>` references in a file, ignoring comments.
fn crate_refs(text: &str) -> Vec<String> {
    let mut refs = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                refs.push(name);
            }
            rest = after;
        }
    }
    refs
}

#[test]
fn no_module_uses_a_module_declared_after_it() {
    let order = module_order();
    assert!(order.len() > 5, "lib.rs lists the modules: {order:?}");
    let mut violations = Vec::new();
    for (rank, module) in order.iter().enumerate() {
        let dir = Path::new("src").join(module);
        let mut files = Vec::new();
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        }
        for file in files {
            let text = fs::read_to_string(&file).expect("readable");
            for used in crate_refs(&text) {
                if let Some(used_rank) = order.iter().position(|m| *m == used) {
                    if used_rank > rank {
                        violations.push(format!("{} uses crate::{used}", file.display()));
                    }
                }
            }
        }
    }
    assert!(
        violations.is_empty(),
        "upward imports:\n{}",
        violations.join("\n")
    );
}

#[test]
fn glommio_and_unsafe_stay_inside_runtime() {
    let mut files = Vec::new();
    rust_files(Path::new("src"), &mut files);
    let mut violations = Vec::new();
    for file in files {
        if file.starts_with("src/runtime") {
            continue;
        }
        let text = fs::read_to_string(&file).expect("readable");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if code.contains("glommio") || code.contains("unsafe ") || code.contains("unsafe{") {
                violations.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "outside runtime/:\n{}",
        violations.join("\n")
    );
}

#[test]
fn the_layering_check_sees_an_upward_import() {
    // The checker itself must be able to fail.
    assert_eq!(
        crate_refs("use crate::server::run; // crate::ignored"),
        vec!["server"]
    );
}
