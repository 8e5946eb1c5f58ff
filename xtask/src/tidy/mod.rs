//! `cargo xtask tidy`: one source of truth, checked. The learner's crate
//! (`exercises/`) must mirror the reference (`solutions/`):
//!
//! - the same module files (lib.rs aside);
//! - in each module, the same public items (fns, structs and their pub
//!   fields, enums and variants, traits, consts, statics, type aliases, pub
//!   methods of inherent and trait impls, re-exports) with the same
//!   signatures (normalized token streams; `mut` bindings aside) and the
//!   same doc contract ([`compare`]): doc comments identical except for
//!   paragraphs starting `Hints:` (stub only) or `Implementation:`
//!   (reference only), module docs (`//!`) likewise;
//! - given code (an item whose doc says "(given...)" or "given code")
//!   token-identical, with its impl blocks (for a type) and the private
//!   helpers it names; or it lives in common/ and both re-export it;
//! - the day gating of `exercises/src/lib.rs`, the `ref-dayN` features of
//!   `exercises/Cargo.toml`, the modules of `solutions/src/lib.rs` and the
//!   `modules` of each day in `course.toml` in agreement ([`gating`]).
//!
//! Every finding is printed; the command fails when there is any.

mod api;
mod compare;
mod gating;
#[cfg(test)]
mod tests;
mod text;

use anyhow::{Context, Result};
use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug, Default)]
pub struct TidyArgs {
    /// Check another checkout of the kit (default: this one).
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

/// A file (relative to the root) and a line (0: the whole file).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Loc {
    pub file: String,
    pub line: usize,
}

impl Loc {
    pub fn new(file: &str, line: usize) -> Loc {
        Loc {
            file: file.to_string(),
            line,
        }
    }
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file)
        } else {
            write!(f, "{}:{}", self.file, self.line)
        }
    }
}

/// One disagreement: where, which item, what, and the evidence.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub at: Loc,
    /// The item (`RoPE::new`, `Sampler.config`, `(module docs)`, a module
    /// or feature name); empty for a whole file.
    pub item: String,
    pub message: String,
    pub detail: Vec<String>,
}

impl Finding {
    pub fn new(at: Loc, item: &str, message: String, detail: Vec<String>) -> Finding {
        Finding {
            at,
            item: item.to_string(),
            message,
            detail,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.item.is_empty() {
            write!(f, "{}: {}", self.at, self.message)?;
        } else {
            write!(f, "{}: `{}`: {}", self.at, self.item, self.message)?;
        }
        for d in &self.detail {
            write!(f, "\n    {d}")?;
        }
        Ok(())
    }
}

/// `cargo xtask tidy [--root DIR]`: prints every finding; `Ok(false)` when
/// there is any.
pub fn run(args: &TidyArgs) -> Result<bool> {
    let root = args.root.clone().unwrap_or_else(crate::util::project_root);
    let findings = check(&root)?;
    for f in &findings {
        println!("{f}\n");
    }
    if findings.is_empty() {
        println!("tidy: exercises/ mirrors solutions/ ({})", root.display());
    } else {
        println!(
            "tidy: {} finding{} in {}",
            findings.len(),
            if findings.len() == 1 { "" } else { "s" },
            root.display()
        );
    }
    Ok(findings.is_empty())
}

/// Every disagreement in the checkout at `root`, sorted by file and line.
/// `Err` only when course.toml cannot be read.
pub fn check(root: &Path) -> Result<Vec<Finding>> {
    let course = crate::course::Course::load(&root.join("course.toml"))
        .with_context(|| format!("tidy needs {}", root.join("course.toml").display()))?;
    let mut out = Vec::new();
    let stub_files = rust_files(root, "exercises/src", &mut out);
    let ref_files = rust_files(root, "solutions/src", &mut out);
    for f in stub_files.difference(&ref_files) {
        if f != "lib.rs" {
            out.push(Finding::new(
                Loc::new(&format!("exercises/src/{f}"), 0),
                "",
                format!(
                    "has no twin solutions/src/{f} (every stub module mirrors a reference module)"
                ),
                Vec::new(),
            ));
        }
    }
    for f in ref_files.difference(&stub_files) {
        if f != "lib.rs" {
            out.push(Finding::new(
                Loc::new(&format!("solutions/src/{f}"), 0),
                "",
                format!(
                    "has no twin exercises/src/{f} (every reference module mirrors a stub module)"
                ),
                Vec::new(),
            ));
        }
    }
    for f in stub_files.intersection(&ref_files) {
        if f == "lib.rs" {
            continue;
        }
        let (sp, rp) = (format!("exercises/src/{f}"), format!("solutions/src/{f}"));
        let (Some(s), Some(r)) = (parse(root, &sp, &mut out), parse(root, &rp, &mut out)) else {
            continue;
        };
        let (sa, ra) = (api::extract(&s), api::extract(&r));
        compare::compare(
            &compare::Side {
                path: &sp,
                api: &sa,
            },
            &compare::Side {
                path: &rp,
                api: &ra,
            },
            true,
            &mut out,
        );
    }
    gating::check(root, &course, &stub_files, &ref_files, &mut out);
    out.sort();
    out.dedup();
    Ok(out)
}

/// The `.rs` files under `root/dir`, relative to it (`a.rs`, `m/b.rs`).
fn rust_files(root: &Path, dir: &str, out: &mut Vec<Finding>) -> BTreeSet<String> {
    let mut files = BTreeSet::new();
    let mut stack = vec![root.join(dir)];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) => {
                out.push(Finding::new(
                    Loc::new(dir, 0),
                    "",
                    format!("cannot be read: {e}"),
                    Vec::new(),
                ));
                continue;
            }
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "rs") {
                if let Ok(rel) = p.strip_prefix(root.join(dir)) {
                    files.insert(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
    }
    files
}

/// Parses `root/rel`; a read or parse error becomes a finding.
fn parse(root: &Path, rel: &str, out: &mut Vec<Finding>) -> Option<syn::File> {
    let text = match std::fs::read_to_string(root.join(rel)) {
        Ok(t) => t,
        Err(e) => {
            out.push(Finding::new(
                Loc::new(rel, 0),
                "",
                format!("cannot be read: {e}"),
                Vec::new(),
            ));
            return None;
        }
    };
    match syn::parse_file(&text) {
        Ok(f) => Some(f),
        Err(e) => {
            out.push(Finding::new(
                Loc::new(rel, e.span().start().line),
                "",
                format!("does not parse: {e}"),
                Vec::new(),
            ));
            None
        }
    }
}
