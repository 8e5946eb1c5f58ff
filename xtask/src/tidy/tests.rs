//! Tests of `cargo xtask tidy`: a tidy two-day course passes; each kind of
//! drift, made on purpose, is reported naming the file and the item; and on
//! a copy of the kit's own tree, changing one stub signature, one doc
//! contract line or one module's day adds exactly such a finding.

use super::compare::{contract, REFERENCE_ONLY, STUB_ONLY};
use super::{check, Finding};
use std::path::Path;

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

/// Replaces `from` by `to` in `root/rel`, failing when `from` is absent.
fn edit(root: &Path, rel: &str, from: &str, to: &str) {
    let p = root.join(rel);
    let text = std::fs::read_to_string(&p).unwrap();
    assert!(text.contains(from), "{rel} no longer contains {from:?}");
    std::fs::write(p, text.replacen(from, to, 1)).unwrap();
}

const COURSE: &str = r#"format_version = 1
[[day]]
number = 1
week = 1
title = "Alpha"
modules = ["alpha"]
tests = ["t"]
hint = "h"
[[day]]
number = 2
week = 1
title = "Beta"
modules = ["beta"]
tests = ["t"]
hint = "h"
"#;

const STUB_TOML: &str = r#"[package]
name = "tiny-llm"
[dependencies]
tiny-llm-ref = { path = "../solutions", optional = true }
[features]
ref-day1 = ["dep:tiny-llm-ref"]
ref-day2 = ["dep:tiny-llm-ref"]
"#;

const STUB_LIB: &str = r#"//! The learner's crate.
pub use common::{Error, Result};

#[cfg(not(feature = "ref-day1"))]
pub mod alpha;
#[cfg(feature = "ref-day1")]
pub use tiny_llm_ref::alpha;

#[cfg(not(feature = "ref-day2"))]
pub mod beta;
#[cfg(feature = "ref-day2")]
pub use tiny_llm_ref::{beta};
"#;

const REF_LIB: &str = r#"//! The reference.
pub use common::{Error, Result};

// Day 1
pub mod alpha;
// Day 2
pub mod beta;
"#;

const STUB_ALPHA: &str = r#"//! Day 1: alpha.
//!
//! Hints: check your work with `cargo xtask check day1`.

/// Doubles `x`.
///
/// Errors: never.
///
/// Hints: add `x` to itself.
pub fn double(x: i32) -> Result<i32, String> {
    let _ = x;
    todo!("day 1: double")
}

/// Two numbers (given).
#[derive(Debug, Clone)]
pub struct Pair {
    /// The left one.
    pub a: i32,
    /// The right one.
    pub b: i32,
}

impl Pair {
    /// Their sum.
    pub fn sum(&self) -> i32 {
        helper(self.a) + self.b
    }
}

fn helper(x: i32) -> i32 {
    x
}

/// The neutral element.
///
/// Hints: given code: nothing to implement here.
pub fn zero() -> i32 {
    0
}

/// A state you may implement as you like.
pub struct Counter {
    #[allow(dead_code)]
    n: usize,
}
"#;

const REF_ALPHA: &str = r#"//! Day 1: alpha.
//!
//! Implementation: a plain addition.

/// Doubles `x`.
///
/// Implementation: one addition, no multiplication.
///
/// Errors: never.
pub fn double(mut x: i32) -> Result<i32, String> {
    x += x;
    Ok(x)
}

/// Two numbers (given).
#[derive(Debug, Clone)]
pub struct Pair {
    /// The left one.
    pub a: i32,
    /// The right one.
    pub b: i32,
}

impl Pair {
    /// Their sum.
    pub fn sum(&self) -> i32 {
        helper(self.a) + self.b
    }
}

fn helper(x: i32) -> i32 {
    x
}

/// The neutral element.
pub fn zero() -> i32 {
    0
}

/// A state you may implement as you like.
pub struct Counter {
    total: u64,
    seen: Vec<u32>,
}

fn unrelated() {}
"#;

const BETA: &str = r#"//! Day 2: beta.

/// What to do.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Mode {
    /// Quickly.
    Fast,
    /// With care, `n` times.
    Careful(u32),
}

/// The default mode.
pub const DEFAULT: Mode = Mode::Fast;

/// Re-exported for the learner.
pub use std::collections::HashMap;
"#;

/// A tidy two-day course in a temporary folder.
fn mini() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "course.toml", COURSE);
    write(root, "exercises/Cargo.toml", STUB_TOML);
    write(root, "exercises/src/lib.rs", STUB_LIB);
    write(root, "solutions/src/lib.rs", REF_LIB);
    write(root, "exercises/src/alpha.rs", STUB_ALPHA);
    write(root, "solutions/src/alpha.rs", REF_ALPHA);
    write(root, "exercises/src/beta.rs", BETA);
    write(root, "solutions/src/beta.rs", BETA);
    dir
}

fn render(findings: &[Finding]) -> String {
    findings
        .iter()
        .map(|f| f.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The only finding of `root`, checked against file, item and message.
fn only_finding(root: &Path, file: &str, item: &str, message: &str) -> Finding {
    let findings = check(root).unwrap();
    assert_eq!(
        findings.len(),
        1,
        "expected one finding:\n{}",
        render(&findings)
    );
    let f = findings.into_iter().next().unwrap();
    assert_eq!(f.at.file, file, "{f}");
    assert_eq!(f.item, item, "{f}");
    assert!(f.message.contains(message), "{f}");
    f
}

#[test]
fn a_tidy_course_has_no_findings() {
    let dir = mini();
    let findings = check(dir.path()).unwrap();
    assert!(findings.is_empty(), "{}", render(&findings));
}

#[test]
fn a_changed_parameter_type_is_reported_with_both_signatures() {
    let dir = mini();
    edit(
        dir.path(),
        "exercises/src/alpha.rs",
        "double(x: i32)",
        "double(x: i64)",
    );
    let f = only_finding(
        dir.path(),
        "exercises/src/alpha.rs",
        "double",
        "signature differs",
    );
    assert_eq!(f.at.line, 10);
    assert!(f.message.contains("solutions/src/alpha.rs:10"), "{f}");
    assert_eq!(
        f.detail,
        vec![
            "stub:      fn double(x: i64) -> Result<i32, String>",
            "reference: fn double(x: i32) -> Result<i32, String>",
        ]
    );
}

#[test]
fn a_changed_return_type_field_type_or_variant_is_reported() {
    for (file, from, to, item) in [
        (
            "solutions/src/alpha.rs",
            "-> Result<i32, String> {\n    x",
            "-> Result<i64, String> {\n    x",
            "double",
        ),
        (
            "exercises/src/beta.rs",
            "Careful(u32)",
            "Careful(u64)",
            "Mode::Careful",
        ),
        (
            "exercises/src/beta.rs",
            "#[derive(Debug, Clone, Copy, PartialEq)]",
            "#[derive(Debug, Clone, PartialEq)]",
            "Mode",
        ),
        (
            "exercises/src/beta.rs",
            "pub const DEFAULT: Mode",
            "pub const DEFAULT: Option<Mode>",
            "DEFAULT",
        ),
        (
            "exercises/src/beta.rs",
            "std::collections::HashMap",
            "std::collections::BTreeMap as HashMap",
            "HashMap",
        ),
    ] {
        let dir = mini();
        edit(dir.path(), file, from, to);
        let stub = file.replace("solutions/", "exercises/");
        only_finding(dir.path(), &stub, item, "signature differs");
    }
}

#[test]
fn a_doc_contract_line_that_differs_is_reported_with_the_first_differing_line() {
    let dir = mini();
    edit(
        dir.path(),
        "solutions/src/alpha.rs",
        "/// Errors: never.",
        "/// Errors: when `x` overflows.",
    );
    let f = only_finding(
        dir.path(),
        "exercises/src/alpha.rs",
        "double",
        "doc contract differs",
    );
    assert!(f.message.contains("at contract line 3"), "{f}");
    assert_eq!(f.detail[0], "stub:      `Errors: never.`");
    assert_eq!(f.detail[1], "reference: `Errors: when `x` overflows.`");
}

#[test]
fn hints_belong_to_the_stub_and_implementation_notes_to_the_reference() {
    let dir = mini();
    // A hint in the reference is part of its contract, so it differs.
    edit(
        dir.path(),
        "solutions/src/alpha.rs",
        "/// Errors: never.",
        "/// Errors: never.\n///\n/// Hints: add `x` to itself.",
    );
    only_finding(
        dir.path(),
        "exercises/src/alpha.rs",
        "double",
        "doc contract differs",
    );
    let dir = mini();
    edit(
        dir.path(),
        "exercises/src/alpha.rs",
        "/// Hints: add",
        "/// Implementation: add",
    );
    only_finding(
        dir.path(),
        "exercises/src/alpha.rs",
        "double",
        "doc contract differs",
    );
}

#[test]
fn module_docs_are_compared() {
    let dir = mini();
    edit(
        dir.path(),
        "exercises/src/beta.rs",
        "//! Day 2: beta.",
        "//! Day 2: beta, the second day.",
    );
    only_finding(
        dir.path(),
        "exercises/src/beta.rs",
        "(module docs)",
        "doc contract differs",
    );
}

#[test]
fn given_code_must_be_token_identical_with_its_helpers() {
    let dir = mini();
    edit(
        dir.path(),
        "solutions/src/alpha.rs",
        "helper(self.a) + self.b",
        "self.b + helper(self.a)",
    );
    only_finding(
        dir.path(),
        "exercises/src/alpha.rs",
        "impl Pair",
        "impl blocks of given type `Pair` differ",
    );

    let dir = mini();
    edit(
        dir.path(),
        "solutions/src/alpha.rs",
        "fn helper(x: i32) -> i32 {\n    x",
        "fn helper(x: i32) -> i32 {\n    x + 0",
    );
    let f = only_finding(
        dir.path(),
        "exercises/src/alpha.rs",
        "Pair",
        "private helper `helper`, which differs",
    );
    assert_eq!(f.at.line, 31, "{f}");

    // "Hints: given code" in the stub marks given code too.
    let dir = mini();
    edit(
        dir.path(),
        "solutions/src/alpha.rs",
        "pub fn zero() -> i32 {\n    0",
        "pub fn zero() -> i32 {\n    1",
    );
    let f = only_finding(
        dir.path(),
        "exercises/src/alpha.rs",
        "zero",
        "given code differs",
    );
    assert_eq!(f.detail[1], "stub:      pub fn zero() -> i32 { 0 }");
    assert_eq!(f.detail[2], "reference: pub fn zero() -> i32 { 1 }");

    // Formatting and comments are not tokens.
    let dir = mini();
    edit(
        dir.path(),
        "solutions/src/alpha.rs",
        "helper(self.a) + self.b",
        "helper( self.a ) // left\n            + self.b",
    );
    assert!(check(dir.path()).unwrap().is_empty());
}

#[test]
fn missing_and_extra_items_are_reported() {
    let dir = mini();
    edit(
        dir.path(),
        "solutions/src/beta.rs",
        "/// The default mode.\npub const",
        "/// The default mode.\nconst",
    );
    only_finding(
        dir.path(),
        "exercises/src/beta.rs",
        "DEFAULT",
        "public in the stub, missing from solutions/src/beta.rs",
    );
    let dir = mini();
    edit(
        dir.path(),
        "exercises/src/alpha.rs",
        "pub fn double",
        "fn double",
    );
    only_finding(
        dir.path(),
        "exercises/src/alpha.rs",
        "double",
        "missing from the stub",
    );
}

#[test]
fn a_public_item_without_docs_is_reported() {
    let dir = mini();
    for f in ["exercises/src/beta.rs", "solutions/src/beta.rs"] {
        edit(dir.path(), f, "/// Quickly.\n", "");
    }
    only_finding(
        dir.path(),
        "exercises/src/beta.rs",
        "Mode::Fast",
        "has no doc comment",
    );
}

#[test]
fn a_module_gated_to_the_wrong_day_is_reported() {
    let dir = mini();
    edit(
        dir.path(),
        "exercises/src/lib.rs",
        "#[cfg(not(feature = \"ref-day1\"))]\npub mod alpha;",
        "#[cfg(not(feature = \"ref-day2\"))]\npub mod alpha;",
    );
    let f = only_finding(
        dir.path(),
        "exercises/src/lib.rs",
        "alpha",
        "gated as day 2",
    );
    assert!(f.message.contains("course.toml puts it in day 1"), "{f}");
    assert_eq!(f.at.line, 5);

    let dir = mini();
    edit(
        dir.path(),
        "exercises/src/lib.rs",
        "#[cfg(feature = \"ref-day2\")]\npub use tiny_llm_ref::{beta};",
        "#[cfg(feature = \"ref-day1\")]\npub use tiny_llm_ref::{beta};",
    );
    only_finding(
        dir.path(),
        "exercises/src/lib.rs",
        "beta",
        "under `ref-day1`, but course.toml puts it in day 2",
    );

    let dir = mini();
    edit(
        dir.path(),
        "course.toml",
        "modules = [\"beta\"]",
        "modules = [\"beta\", \"alpha\"]",
    );
    only_finding(
        dir.path(),
        "course.toml",
        "alpha",
        "listed in day 1 and in day 2",
    );
}

#[test]
fn features_and_module_lists_must_agree() {
    let dir = mini();
    edit(
        dir.path(),
        "exercises/Cargo.toml",
        "ref-day2 = [\"dep:tiny-llm-ref\"]\n",
        "ref-day3 = [\"dep:tiny-llm-ref\"]\n",
    );
    let findings = check(dir.path()).unwrap();
    let text = render(&findings);
    assert_eq!(findings.len(), 2, "{text}");
    assert!(
        text.contains("exercises/Cargo.toml: `ref-day2`: feature missing"),
        "{text}"
    );
    assert!(
        text.contains("exercises/Cargo.toml: `ref-day3`: feature for day 3"),
        "{text}"
    );

    let dir = mini();
    edit(
        dir.path(),
        "solutions/src/lib.rs",
        "pub mod beta;",
        "#[cfg(feature = \"x\")]\npub mod beta;",
    );
    only_finding(
        dir.path(),
        "solutions/src/lib.rs",
        "beta",
        "gated by #[cfg(feature=\"x\")]",
    );

    let dir = mini();
    write(dir.path(), "solutions/src/gamma.rs", BETA);
    let text = render(&check(dir.path()).unwrap());
    assert!(
        text.contains("solutions/src/gamma.rs: has no twin exercises/src/gamma.rs"),
        "{text}"
    );
    assert!(
        text.contains("solutions/src/gamma.rs: is not declared in solutions/src/lib.rs"),
        "{text}"
    );
}

#[test]
fn the_lib_rs_exports_must_agree() {
    let dir = mini();
    edit(
        dir.path(),
        "solutions/src/lib.rs",
        "pub use common::{Error, Result};",
        "pub use common::Error;",
    );
    only_finding(
        dir.path(),
        "exercises/src/lib.rs",
        "Result",
        "public in the stub",
    );
}

#[test]
fn contract_drops_the_side_only_paragraphs_but_not_code_blocks() {
    let lines: Vec<String> = [
        "Summary.",
        "",
        "Hints: do it.",
        "more hint",
        "",
        "```text",
        "a",
        "",
        "b",
        "```",
        "",
        "Implementation: fast.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(
        contract(&lines, STUB_ONLY),
        [
            "Summary.",
            "",
            "```text",
            "a",
            "",
            "b",
            "```",
            "",
            "Implementation: fast."
        ]
    );
    assert_eq!(
        contract(&lines, REFERENCE_ONLY),
        [
            "Summary.",
            "",
            "Hints: do it.",
            "more hint",
            "",
            "```text",
            "a",
            "",
            "b",
            "```"
        ]
    );
}

// --- the kit's own tree ------------------------------------------------------

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A copy of what tidy reads from this checkout.
fn copy_of_the_kit() -> tempfile::TempDir {
    let root = crate::util::project_root();
    let dir = tempfile::tempdir().unwrap();
    for d in ["exercises/src", "solutions/src"] {
        copy_dir(&root.join(d), &dir.path().join(d));
    }
    for f in [
        "course.toml",
        "exercises/Cargo.toml",
        "solutions/Cargo.toml",
    ] {
        std::fs::copy(root.join(f), dir.path().join(f)).unwrap();
    }
    dir
}

/// The findings `change` adds to those the copy already has (the tree may
/// have drifts of its own; the point is that the change is caught).
fn added_findings(change: impl FnOnce(&Path)) -> Vec<Finding> {
    let dir = copy_of_the_kit();
    let before = check(dir.path()).unwrap();
    change(dir.path());
    let after = check(dir.path()).unwrap();
    after.into_iter().filter(|f| !before.contains(f)).collect()
}

#[test]
fn the_kit_changing_one_stub_parameter_type_is_caught() {
    let added = added_findings(|root| {
        edit(
            root,
            "exercises/src/basics.rs",
            "pub fn softmax(x: &Array, axis: i32)",
            "pub fn softmax(x: &Array, axis: i64)",
        )
    });
    assert_eq!(added.len(), 1, "{}", render(&added));
    let f = &added[0];
    assert_eq!(
        (f.at.file.as_str(), f.item.as_str()),
        ("exercises/src/basics.rs", "softmax"),
        "{f}"
    );
    assert!(
        f.message
            .contains("signature differs from solutions/src/basics.rs"),
        "{f}"
    );
    assert!(
        f.detail[0].contains("axis: i64") && f.detail[1].contains("axis: i32"),
        "{f}"
    );
}

#[test]
fn the_kit_changing_one_doc_contract_line_is_caught() {
    let added = added_findings(|root| {
        // the first line of `linear`'s doc in the reference
        let p = root.join("solutions/src/basics.rs");
        let text = std::fs::read_to_string(&p).unwrap();
        let at = text
            .find("pub fn linear")
            .expect("solutions/src/basics.rs has `pub fn linear`");
        let mut start = text[..at].trim_end().rfind('\n').map_or(0, |i| i + 1);
        while let Some(prev) = text[..start.saturating_sub(1)].rfind('\n') {
            if !text[prev + 1..start].trim_start().starts_with("///") {
                break;
            }
            start = prev + 1;
        }
        let line_end = start + text[start..].find('\n').unwrap();
        let changed = format!("{} (changed)", &text[start..line_end]);
        std::fs::write(
            &p,
            format!("{}{changed}{}", &text[..start], &text[line_end..]),
        )
        .unwrap();
    });
    assert_eq!(added.len(), 1, "{}", render(&added));
    let f = &added[0];
    assert_eq!(
        (f.at.file.as_str(), f.item.as_str()),
        ("exercises/src/basics.rs", "linear"),
        "{f}"
    );
    assert!(f.message.contains("doc contract differs"), "{f}");
    assert!(f.detail[1].contains("(changed)"), "{f}");
}

#[test]
fn the_kit_gating_a_module_to_the_wrong_day_is_caught() {
    let added = added_findings(|root| {
        edit(
            root,
            "exercises/src/lib.rs",
            "#[cfg(not(feature = \"ref-day1\"))]\npub mod basics;",
            "#[cfg(not(feature = \"ref-day2\"))]\npub mod basics;",
        )
    });
    assert_eq!(added.len(), 1, "{}", render(&added));
    let f = &added[0];
    assert_eq!(
        (f.at.file.as_str(), f.item.as_str()),
        ("exercises/src/lib.rs", "basics"),
        "{f}"
    );
    assert!(
        f.message.contains("gated as day 2") && f.message.contains("day 1"),
        "{f}"
    );
}
