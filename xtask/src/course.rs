//! `course.toml`: the course manifest. Its model and parser live in the
//! `tiny-llm-course` crate (shared with the chat program, the benchmark and
//! the grader); this module adds what only xtask needs: checking it against
//! the source tree.

use anyhow::Result;
use std::collections::BTreeMap;
use std::path::Path;

pub use tiny_llm_course::{Course, Day};

/// Test function names in a Rust test file: every `fn` that follows a
/// `#[test]` attribute (plain tests and tests inside `proptest!`).
pub fn test_fns_in_source(src: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = src;
    while let Some(at) = rest.find("#[test]") {
        rest = &rest[at + "#[test]".len()..];
        if let Some(f) = rest.find("fn ") {
            let name: String = rest[f + 3..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            names.push(name);
        }
    }
    names
}

/// Disagreements between course.toml and the tree under `root`: a grader
/// test that belongs to no day, a listed test that does not exist, a day
/// without tests or hint, a missing module or fixture folder.
pub fn validate(course: &Course, root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut listed: BTreeMap<String, Vec<String>> = BTreeMap::new(); // file -> tests
    for d in &course.days {
        if d.tests.is_empty() {
            problems.push(format!("day {} has no tests", d.number));
        }
        if d.hint.trim().is_empty() {
            problems.push(format!("day {} has no hint", d.number));
        }
        for m in &d.modules {
            for krate in ["exercises", "solutions"] {
                let f = root.join(krate).join("src").join(format!("{m}.rs"));
                if !f.exists() {
                    problems.push(format!("day {}: {} is missing", d.number, f.display()));
                }
            }
        }
        for fx in &d.fixtures {
            if !root.join("fixtures").join(fx).is_dir() {
                problems.push(format!("day {}: fixtures/{fx} is missing", d.number));
            }
        }
        for file in d.test_files() {
            listed
                .entry(file)
                .or_default()
                .extend(d.tests.iter().cloned());
        }
    }
    if let Some(m) = &course.model_checks {
        listed
            .entry(m.file.clone())
            .or_default()
            .extend(m.tests.iter().cloned());
    }
    let tests_dir = root.join("grader").join("tests");
    let mut present: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for entry in std::fs::read_dir(&tests_dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "rs") {
            let stem = path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            present.insert(stem, test_fns_in_source(&std::fs::read_to_string(&path)?));
        }
    }
    for (file, tests) in &present {
        let known = listed.get(file);
        for t in tests {
            if !known.is_some_and(|k| k.contains(t)) {
                problems.push(format!(
                    "grader/tests/{file}.rs: test `{t}` belongs to no day in course.toml"
                ));
            }
        }
    }
    // A day's test is in one of its test files (`test_files`, default
    // `dayN.rs`); the model checks' tests in their file.
    let mut owners: Vec<(Vec<String>, &Vec<String>)> = course
        .days
        .iter()
        .map(|d| (d.test_files(), &d.tests))
        .collect();
    if let Some(m) = &course.model_checks {
        owners.push((vec![m.file.clone()], &m.tests));
    }
    for (files, tests) in owners {
        for t in tests {
            if !files
                .iter()
                .any(|f| present.get(f).is_some_and(|p| p.contains(t)))
            {
                let names: Vec<String> = files
                    .iter()
                    .map(|f| format!("grader/tests/{f}.rs"))
                    .collect();
                problems.push(format!(
                    "course.toml lists `{t}`, which {} lacks",
                    names.join(" / ")
                ));
            }
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tree_tests {
    use super::*;

    #[test]
    fn finds_plain_and_proptest_tests() {
        let src = "#[test]\nfn a() {}\nproptest! {\n    #[test]\n    fn b(x in 0..3) {}\n}\nfn helper() {}";
        assert_eq!(test_fns_in_source(src), vec!["a", "b"]);
    }

    /// The real course.toml agrees with the grader's tests and the sources.
    #[test]
    fn course_toml_matches_the_tree() {
        let root = crate::util::project_root();
        let course = Course::load(&root.join("course.toml")).unwrap();
        let problems = validate(&course, &root).unwrap();
        assert!(
            problems.is_empty(),
            "course.toml disagrees with the tree:\n{}",
            problems.join("\n")
        );
    }
}
