//! Compares a stub file's public API with its reference twin: the same
//! items, the same signatures, the same doc contract, and given code token
//! for token (with the private helpers it uses).
//!
//! The doc contract is the doc comment minus the paragraphs only one side
//! may have: `Hints:` (stub only) and `Implementation:` (reference only). A
//! paragraph is a run of lines up to a blank line (blank lines inside a
//! fenced code block do not end one).

use super::api::{ApiItem, FileApi};
use super::text::pretty;
use super::{Finding, Loc};
use std::collections::BTreeSet;

/// Paragraphs that start with one of these appear in the stub only.
pub const STUB_ONLY: &[&str] = &["Hints:", "Hint:"];
/// Paragraphs that start with one of these appear in the reference only.
pub const REFERENCE_ONLY: &[&str] = &["Implementation:"];

/// One side of a comparison: the file's path as reported, and its API.
pub struct Side<'a> {
    pub path: &'a str,
    pub api: &'a FileApi,
}

impl Side<'_> {
    fn at(&self, line: usize) -> Loc {
        Loc::new(self.path, line)
    }

    fn file(&self) -> Loc {
        Loc::new(self.path, 0)
    }
}

/// Every difference between `stub` and `reference`, appended to `out`.
/// `module_docs`: compare the `//!` docs too (not for lib.rs).
pub fn compare(stub: &Side, reference: &Side, module_docs: bool, out: &mut Vec<Finding>) {
    if module_docs {
        doc_finding(
            stub,
            reference,
            "(module docs)",
            (1, &stub.api.module_docs),
            (1, &reference.api.module_docs),
            out,
        );
    }
    let keys: BTreeSet<&String> = stub
        .api
        .items
        .keys()
        .chain(reference.api.items.keys())
        .collect();
    for key in keys {
        match (stub.api.items.get(key), reference.api.items.get(key)) {
            (Some(s), None) => out.push(Finding::new(
                stub.at(s.line),
                key,
                format!("public in the stub, missing from {}", reference.path),
                vec![format!("stub:      {}", pretty(&s.signature))],
            )),
            (None, Some(r)) => out.push(Finding::new(
                stub.file(),
                key,
                format!(
                    "missing from the stub, public in the reference ({})",
                    reference.at(r.line)
                ),
                vec![format!("reference: {}", pretty(&r.signature))],
            )),
            (Some(s), Some(r)) => {
                let documented_elsewhere = key.starts_with('<')
                    || key.starts_with("impl ")
                    || s.signature.starts_with("pub use ");
                if s.docs.is_empty() && r.docs.is_empty() && !documented_elsewhere {
                    out.push(Finding::new(
                        stub.at(s.line),
                        key,
                        "has no doc comment in either crate (every public item states its contract: shapes, dtypes, errors, source)".into(),
                        Vec::new(),
                    ));
                }
                if s.signature != r.signature {
                    out.push(Finding::new(
                        stub.at(s.line),
                        key,
                        format!("signature differs from {}", reference.at(r.line)),
                        vec![
                            format!("stub:      {}", pretty(&s.signature)),
                            format!("reference: {}", pretty(&r.signature)),
                        ],
                    ));
                }
                doc_finding(
                    stub,
                    reference,
                    key,
                    (s.line, &s.docs),
                    (r.line, &r.docs),
                    out,
                );
                if s.is_given() || r.is_given() {
                    given_findings(stub, reference, key, s, r, out);
                }
            }
            (None, None) => {}
        }
    }
}

/// The doc lines that must agree: `lines` without the paragraphs that start
/// with one of `drop`.
pub fn contract(lines: &[String], drop: &[&str]) -> Vec<String> {
    let mut paragraphs: Vec<Vec<String>> = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut fenced = false;
    for line in lines {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        }
        if line.trim().is_empty() && !fenced {
            if !current.is_empty() {
                paragraphs.push(std::mem::take(&mut current));
            }
        } else {
            current.push(line.clone());
        }
    }
    if !current.is_empty() {
        paragraphs.push(current);
    }
    let mut out = Vec::new();
    for p in paragraphs {
        if drop.iter().any(|d| p[0].trim_start().starts_with(d)) {
            continue;
        }
        if !out.is_empty() {
            out.push(String::new());
        }
        out.extend(p);
    }
    out
}

fn doc_finding(
    stub: &Side,
    reference: &Side,
    key: &str,
    (s_line, s_docs): (usize, &[String]),
    (r_line, r_docs): (usize, &[String]),
    out: &mut Vec<Finding>,
) {
    let s = contract(s_docs, STUB_ONLY);
    let r = contract(r_docs, REFERENCE_ONLY);
    if s == r {
        return;
    }
    let i = s.iter().zip(&r).take_while(|(a, b)| a == b).count();
    let show = |v: &[String]| match v.get(i) {
        None => "(the doc ends here)".to_string(),
        Some(l) if l.is_empty() => "(the paragraph ends here)".to_string(),
        Some(l) => format!("`{l}`"),
    };
    let mut detail = vec![
        format!("stub:      {}", show(&s)),
        format!("reference: {}", show(&r)),
    ];
    for (who, v) in [("stub", &s), ("reference", &r)] {
        let para = paragraph_at(v, i);
        if !para.is_empty() {
            detail.push(format!("{who}'s paragraph:"));
            detail.extend(para.iter().map(|l| format!("  | {l}")));
        }
    }
    out.push(Finding::new(
        stub.at(s_line),
        key,
        format!(
            "doc contract differs from {} at contract line {} (paragraphs other than `Hints:` / `Implementation:` must be identical)",
            reference.at(r_line),
            i + 1
        ),
        detail,
    ));
}

/// The paragraph of `lines` that holds line `i` (empty past the end).
fn paragraph_at(lines: &[String], i: usize) -> &[String] {
    if i >= lines.len() {
        return &[];
    }
    if lines[i].is_empty() {
        // a paragraph break: the paragraph that follows it
        return paragraph_at(lines, i + 1);
    }
    let start = lines[..i]
        .iter()
        .rposition(|l| l.is_empty())
        .map_or(0, |p| p + 1);
    let end = lines[i..]
        .iter()
        .position(|l| l.is_empty())
        .map_or(lines.len(), |p| i + p);
    &lines[start..end]
}

/// Given code: the item (for a type, with its impl blocks) and every private
/// helper it names must be token-identical in both crates.
fn given_findings(
    stub: &Side,
    reference: &Side,
    key: &str,
    s: &ApiItem,
    r: &ApiItem,
    out: &mut Vec<Finding>,
) {
    if s.full != r.full {
        out.push(Finding::new(
            stub.at(s.line),
            key,
            format!(
                "given code differs from {} (given items must be token-identical, or live in common/)",
                reference.at(r.line)
            ),
            first_difference(&s.full, &r.full),
        ));
    }
    let mut idents: BTreeSet<String> = s.idents.iter().chain(&r.idents).cloned().collect();
    if let Some(ty) = &s.type_name {
        let impls = |api: &FileApi| api.impls.get(ty).cloned().unwrap_or_default();
        let (si, ri) = (impls(stub.api), impls(reference.api));
        let text = |v: &[(usize, String, Vec<String>)]| {
            v.iter()
                .map(|x| x.1.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        };
        if text(&si) != text(&ri) {
            out.push(Finding::new(
                stub.at(si.first().map_or(s.line, |x| x.0)),
                &format!("impl {ty}"),
                format!(
                    "the impl blocks of given type `{ty}` differ from {}",
                    reference.at(ri.first().map_or(r.line, |x| x.0))
                ),
                first_difference(&text(&si), &text(&ri)),
            ));
        }
        for x in si.iter().chain(&ri) {
            idents.extend(x.2.iter().cloned());
        }
    }
    // Private helpers named by the given code, transitively.
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = idents.into_iter().collect();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let (sh, rh) = (
            stub.api.private.get(&name),
            reference.api.private.get(&name),
        );
        match (sh, rh) {
            (None, None) => continue,
            (Some(h), Some(g)) if h.full == g.full => {}
            (a, b) => out.push(Finding::new(
                a.map_or(stub.file(), |h| stub.at(h.line)),
                key,
                format!(
                    "given code uses private helper `{name}`, which {}",
                    match (a, b) {
                        (Some(_), None) => format!("{} lacks", reference.path),
                        (None, _) => "the stub lacks".to_string(),
                        _ => format!("differs from {}", reference.at(b.map_or(0, |g| g.line))),
                    }
                ),
                match (a, b) {
                    (Some(h), Some(g)) => first_difference(&h.full, &g.full),
                    _ => Vec::new(),
                },
            )),
        }
        for h in sh.into_iter().chain(rh) {
            todo.extend(h.idents.iter().cloned());
        }
    }
}

/// Where two token strings part: a short window of each around the first
/// differing token.
fn first_difference(a: &str, b: &str) -> Vec<String> {
    let (ta, tb): (Vec<&str>, Vec<&str>) = (
        a.split_whitespace().collect(),
        b.split_whitespace().collect(),
    );
    let i = ta.iter().zip(&tb).take_while(|(x, y)| x == y).count();
    let window = |t: &[&str]| {
        let from = i.saturating_sub(8);
        let to = (i + 12).min(t.len());
        let mut s = String::new();
        if from > 0 {
            s.push_str("... ");
        }
        s.push_str(&pretty(&t[from..to].join(" ")));
        if to < t.len() {
            s.push_str(" ...");
        }
        if t.len() <= i {
            s.push_str(" (ends here)");
        }
        s
    };
    vec![
        format!("first difference at token {}:", i + 1),
        format!("stub:      {}", window(&ta)),
        format!("reference: {}", window(&tb)),
    ]
}
