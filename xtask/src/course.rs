//! `course.toml`: the course manifest (days in order, their modules, tests,
//! fixtures, hints). Every xtask subcommand that talks about days reads it.

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::Path;

/// The manifest format this xtask understands.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Course {
    pub format_version: u32,
    #[serde(rename = "day")]
    pub days: Vec<Day>,
    /// Whole-model checks against mlx-lm on the real models (not a day).
    #[serde(default)]
    pub model_checks: Option<ModelChecks>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelChecks {
    /// The grader test file (`grader/tests/<file>.rs`).
    #[serde(default = "default_model_checks_file")]
    pub file: String,
    pub tests: Vec<String>,
}

fn default_model_checks_file() -> String {
    "real_models".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Day {
    pub number: u32,
    pub week: u32,
    pub title: String,
    /// Module names: `exercises/src/<m>.rs` and `solutions/src/<m>.rs`.
    pub modules: Vec<String>,
    /// Folders under `fixtures/` the tests read.
    #[serde(default)]
    pub fixtures: Vec<String>,
    /// Grader test files (`grader/tests/<f>.rs`); default `["dayN"]`.
    #[serde(default)]
    pub test_files: Vec<String>,
    /// Test function names, in the order they are reported.
    pub tests: Vec<String>,
    pub hint: String,
    #[serde(default)]
    pub needs_model: bool,
    /// Seconds one test may run before it is stopped (default 120).
    #[serde(default)]
    pub timeout_s: Option<u64>,
    /// Tolerance overrides by dtype name (`f32`, `f16`, `bf16`).
    #[serde(default)]
    pub tolerance: BTreeMap<String, Tolerance>,
    /// Tolerance overrides on the GPU (`--device gpu`; f32 runs as TF32 there).
    #[serde(default)]
    pub tolerance_gpu: BTreeMap<String, Tolerance>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Tolerance {
    pub rtol: f64,
    pub atol: f64,
}

impl Day {
    /// `dayN`.
    pub fn id(&self) -> String {
        format!("day{}", self.number)
    }

    /// The grader test files of this day.
    pub fn test_files(&self) -> Vec<String> {
        if self.test_files.is_empty() {
            vec![self.id()]
        } else {
            self.test_files.clone()
        }
    }

    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_s.unwrap_or(120))
    }

    /// `week W, day D` (day within the week).
    pub fn label(&self) -> String {
        if self.number == 0 {
            // the model-checks pseudo-day
            return self.title.clone();
        }
        format!(
            "day {} (w{}d{}): {}",
            self.number,
            self.week,
            self.day_of_week(),
            self.title
        )
    }

    pub fn day_of_week(&self) -> u32 {
        self.number.saturating_sub(1) % 7 + 1
    }
}

impl Course {
    pub fn load(path: &Path) -> Result<Course> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Course> {
        let course: Course = toml::from_str(text)?;
        if course.format_version != FORMAT_VERSION {
            bail!(
                "format_version {} is not supported by this xtask (expected {FORMAT_VERSION})",
                course.format_version
            );
        }
        for (i, d) in course.days.iter().enumerate() {
            if d.number as usize != i + 1 {
                bail!(
                    "days must be numbered 1, 2, 3, ... in order; entry {} is day {}",
                    i + 1,
                    d.number
                );
            }
        }
        Ok(course)
    }

    pub fn day(&self, n: u32) -> Option<&Day> {
        self.days.iter().find(|d| d.number == n)
    }

    /// Resolves `day3`, `3`, `w1d3`, `week1` or `all` to days.
    pub fn select(&self, spec: &str) -> Result<Vec<&Day>> {
        let s = spec.trim().to_ascii_lowercase();
        let known = || format!("use dayN (1..{n}), wWdD, weekW or all", n = self.days.len());
        if s == "all" {
            return Ok(self.days.iter().collect());
        }
        if let Some(w) = s.strip_prefix("week") {
            let w: u32 = w
                .parse()
                .with_context(|| format!("`{spec}`: {}", known()))?;
            let days: Vec<&Day> = self.days.iter().filter(|d| d.week == w).collect();
            if days.is_empty() {
                bail!("`{spec}`: the course has no week {w} yet; {}", known());
            }
            return Ok(days);
        }
        let number = if let Some(rest) = s.strip_prefix('w') {
            let (w, d) = rest
                .split_once('d')
                .with_context(|| format!("`{spec}`: {}", known()))?;
            let (w, d): (u32, u32) = (
                w.parse()
                    .with_context(|| format!("`{spec}`: {}", known()))?,
                d.parse()
                    .with_context(|| format!("`{spec}`: {}", known()))?,
            );
            if !(1..=7).contains(&d) || w == 0 {
                bail!("`{spec}`: weeks have days 1..7; {}", known());
            }
            (w - 1) * 7 + d
        } else {
            let n = s.strip_prefix("day").unwrap_or(&s);
            n.parse()
                .with_context(|| format!("`{spec}`: {}", known()))?
        };
        match self.day(number) {
            Some(d) => Ok(vec![d]),
            None => bail!(
                "`{spec}`: day {number} is not in the course yet; {}",
                known()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Course {
        let mut text = String::from("format_version = 1\n");
        for n in 1..=9 {
            let week = (n - 1) / 7 + 1;
            text.push_str(&format!(
                "[[day]]\nnumber = {n}\nweek = {week}\ntitle = \"t{n}\"\nmodules = [\"m{n}\"]\ntests = [\"a\"]\nhint = \"h\"\n"
            ));
        }
        Course::parse(&text).unwrap()
    }

    #[test]
    fn selects_by_every_spelling() {
        let c = sample();
        let ids = |s: &str| {
            c.select(s)
                .unwrap()
                .iter()
                .map(|d| d.number)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids("day3"), vec![3]);
        assert_eq!(ids("3"), vec![3]);
        assert_eq!(ids("w2d1"), vec![8]);
        assert_eq!(ids("W1D7"), vec![7]);
        assert_eq!(ids("week2"), vec![8, 9]);
        assert_eq!(ids("all").len(), 9);
    }

    #[test]
    fn rejects_unknown_days_with_the_accepted_forms() {
        let c = sample();
        for bad in ["day10", "w1d8", "week3", "dayx", "w1"] {
            let e = c.select(bad).unwrap_err().to_string();
            assert!(e.contains("use dayN"), "{bad}: {e}");
        }
    }

    #[test]
    fn rejects_other_format_versions_and_gaps() {
        assert!(Course::parse("format_version = 2\nday = []").is_err());
        let gap = "format_version = 1\n[[day]]\nnumber = 2\nweek = 1\ntitle = \"x\"\nmodules = []\ntests = []\nhint = \"\"\n";
        assert!(Course::parse(gap).is_err());
    }
}

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
        for dtype in d.tolerance.keys().chain(d.tolerance_gpu.keys()) {
            if !matches!(dtype.as_str(), "f32" | "f16" | "bf16") {
                problems.push(format!(
                    "day {}: tolerance for unknown dtype `{dtype}` (f32, f16, bf16)",
                    d.number
                ));
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
    for (file, tests) in &listed {
        for t in tests {
            if !present.get(file).is_some_and(|p| p.contains(t)) {
                problems.push(format!(
                    "course.toml lists `{t}`, which grader/tests/{file}.rs lacks"
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
