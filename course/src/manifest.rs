//! `course.toml`: the course manifest (days in order, their modules, tests,
//! fixtures, hints, tolerances). Keys this version does not know are
//! ignored, so a newer course.toml still loads.

use crate::tolerance::{check_values, Tol, Tolerances};
use crate::{CourseError, DType};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The manifest format this crate understands.
pub const FORMAT_VERSION: u32 = 1;

/// The kit's own course.toml (at the workspace root), as a path fixed when
/// this crate was built.
pub const KIT_COURSE_TOML: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../course.toml");

/// The whole manifest.
#[derive(Debug, Clone, Deserialize)]
pub struct Course {
    pub format_version: u32,
    /// The days, numbered from 1 in rising order, gaps allowed (`[[day]]`).
    #[serde(rename = "day", default)]
    pub days: Vec<Day>,
    /// Whole-model checks against mlx-lm on the real models (not a day).
    #[serde(default)]
    pub model_checks: Option<ModelChecks>,
    /// The default tolerances (`[tolerance.*]`); see [`Course::tolerance`].
    #[serde(default)]
    pub tolerance: Tolerances,
}

/// `[model_checks]`: the real-model checks (`cargo xtask check models`).
#[derive(Debug, Clone, Deserialize)]
pub struct ModelChecks {
    /// The grader test file (`grader/tests/<file>.rs`).
    #[serde(default = "default_model_checks_file")]
    pub file: String,
    pub tests: Vec<String>,
}

fn default_model_checks_file() -> String {
    "real_models".into()
}

/// One `[[day]]`.
#[derive(Debug, Clone, Deserialize)]
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
    /// Element-wise tolerance overrides on the CPU, by dtype.
    #[serde(default)]
    pub tolerance: BTreeMap<DType, Tol>,
    /// Element-wise tolerance overrides on a GPU (`--device gpu`; f32 runs
    /// as TF32 there), by dtype.
    #[serde(default)]
    pub tolerance_gpu: BTreeMap<DType, Tol>,
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

    /// How long one test may run (`timeout_s`, default 120 s).
    pub fn timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.timeout_s.unwrap_or(120))
    }

    /// `day 3 (w1d3): Title`; the model-checks pseudo-day (number 0) is its
    /// title alone.
    pub fn label(&self) -> String {
        if self.number == 0 {
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

    /// The day within its week, 1..=7.
    pub fn day_of_week(&self) -> u32 {
        self.number.saturating_sub(1) % 7 + 1
    }
}

impl Course {
    /// Reads and checks a course.toml.
    pub fn load(path: &Path) -> Result<Course, CourseError> {
        let text = std::fs::read_to_string(path).map_err(|source| CourseError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|e| e.in_file(path))
    }

    /// The kit's own course.toml ([`KIT_COURSE_TOML`]).
    pub fn load_kit() -> Result<Course, CourseError> {
        Self::load(&PathBuf::from(KIT_COURSE_TOML))
    }

    /// Parses and checks course.toml's text: the format version, days
    /// numbered from 1 in rising order (gaps allowed), no negative or
    /// non-finite tolerance.
    pub fn parse(text: &str) -> Result<Course, CourseError> {
        let course: Course = toml::from_str(text)?;
        if course.format_version != FORMAT_VERSION {
            return Err(CourseError::invalid(format!(
                "format_version {} is not supported (expected {FORMAT_VERSION})",
                course.format_version
            )));
        }
        let mut previous = 0;
        for (i, d) in course.days.iter().enumerate() {
            // Day numbers rise; a gap is allowed (a day written later, while
            // the days after it already exist), a repeat or a step back is
            // not. The first day is day 1.
            if d.number <= previous || (i == 0 && d.number != 1) {
                return Err(CourseError::invalid(format!(
                    "days must be numbered 1, then in rising order; entry {} is day {}",
                    i + 1,
                    d.number
                )));
            }
            previous = d.number;
            for (table, map) in [
                ("tolerance", &d.tolerance),
                ("tolerance_gpu", &d.tolerance_gpu),
            ] {
                for (dtype, t) in map {
                    check_values(&format!("day {} [day.{table}] {dtype}", d.number), t)?;
                }
            }
        }
        course.tolerance.validate()?;
        Ok(course)
    }

    /// Day `n`, if the course has it.
    pub fn day(&self, n: u32) -> Option<&Day> {
        self.days.iter().find(|d| d.number == n)
    }

    /// The model-checks pseudo-day (number 0) that `cargo xtask check models`
    /// grades like a day; `None` without `[model_checks]`.
    pub fn model_checks_day(&self) -> Option<Day> {
        let m = self.model_checks.as_ref()?;
        Some(Day {
            number: 0,
            week: 0,
            title: "real-model checks against mlx-lm".into(),
            modules: vec![],
            fixtures: vec!["real".into()],
            test_files: vec![m.file.clone()],
            tests: m.tests.clone(),
            hint: String::new(),
            needs_model: true,
            timeout_s: Some(1200),
            tolerance: Default::default(),
            tolerance_gpu: Default::default(),
        })
    }

    /// Resolves `day3`, `3`, `w1d3`, `week1` or `all` (any case) to days.
    pub fn select(&self, spec: &str) -> Result<Vec<&Day>, CourseError> {
        let s = spec.trim().to_ascii_lowercase();
        let bad = |why: String| CourseError::BadName {
            what: "day",
            got: spec.to_string(),
            expected: format!(
                "{why}use dayN (1..{n}), wWdD, weekW or all",
                n = self.days.last().map_or(0, |d| d.number)
            ),
        };
        if s == "all" {
            return Ok(self.days.iter().collect());
        }
        if let Some(w) = s.strip_prefix("week") {
            let w: u32 = w.parse().map_err(|_| bad(String::new()))?;
            let days: Vec<&Day> = self.days.iter().filter(|d| d.week == w).collect();
            if days.is_empty() {
                return Err(bad(format!("the course has no week {w} yet; ")));
            }
            return Ok(days);
        }
        let number = if let Some(rest) = s.strip_prefix('w') {
            let (w, d) = rest.split_once('d').ok_or_else(|| bad(String::new()))?;
            let (w, d): (u32, u32) = match (w.parse(), d.parse()) {
                (Ok(w), Ok(d)) => (w, d),
                _ => return Err(bad(String::new())),
            };
            if !(1..=7).contains(&d) || w == 0 {
                return Err(bad("weeks have days 1..7; ".into()));
            }
            (w - 1) * 7 + d
        } else {
            let n = s.strip_prefix("day").unwrap_or(&s);
            n.parse().map_err(|_| bad(String::new()))?
        };
        match self.day(number) {
            Some(d) => Ok(vec![d]),
            None => Err(bad(format!("day {number} is not in the course yet; "))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: &str = "[tolerance.cpu]\nf32 = { rtol = 1e-5, atol = 1e-6 }\nf16 = { rtol = 1, atol = 1 }\nbf16 = { rtol = 1, atol = 1 }\n\
        [tolerance.gpu]\nf32 = { rtol = 1, atol = 1 }\nf16 = { rtol = 1, atol = 1 }\nbf16 = { rtol = 1, atol = 1 }\n\
        [tolerance.logprobs_cpu]\nf32 = { rtol = 1, atol = 1 }\nf16 = { rtol = 1, atol = 1 }\nbf16 = { rtol = 1, atol = 1 }\n\
        [tolerance.logprobs_gpu]\nf32 = { rtol = 1, atol = 1 }\nf16 = { rtol = 1, atol = 1 }\nbf16 = { rtol = 1, atol = 1 }\n";

    fn sample() -> Course {
        let mut text = format!("format_version = 1\nfuture_key = \"ignored\"\n{DEFAULTS}");
        for n in 1..=9 {
            let week = (n - 1) / 7 + 1;
            text.push_str(&format!(
                "[[day]]\nnumber = {n}\nweek = {week}\ntitle = \"t{n}\"\nmodules = [\"m{n}\"]\ntests = [\"a\"]\nhint = \"h\"\nneeds_gpu = false\n"
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
            assert!(e.contains("use dayN (1..9)"), "{bad}: {e}");
            assert!(
                e.starts_with(&format!("`{bad}` is not a day")),
                "{bad}: {e}"
            );
        }
        let e = c.select("day10").unwrap_err().to_string();
        assert!(e.contains("day 10 is not in the course yet"), "{e}");
    }

    #[test]
    fn rejects_other_format_versions_and_gaps() {
        let e = Course::parse(&format!("format_version = 2\n{DEFAULTS}")).unwrap_err();
        assert!(e.to_string().contains("format_version 2"), "{e}");
        let gap = format!("format_version = 1\n{DEFAULTS}[[day]]\nnumber = 2\nweek = 1\ntitle = \"x\"\nmodules = []\ntests = []\nhint = \"\"\n");
        let e = Course::parse(&gap).unwrap_err();
        assert!(e.to_string().contains("entry 1 is day 2"), "{e}");
        let day = |n: u32| {
            format!("[[day]]\nnumber = {n}\nweek = 1\ntitle = \"x\"\nmodules = []\ntests = []\nhint = \"\"\n")
        };
        let head = format!("format_version = 1\n{DEFAULTS}");
        let c = Course::parse(&format!("{head}{}{}", day(1), day(3))).unwrap();
        assert!(c.day(3).is_some() && c.day(2).is_none(), "a gap is allowed");
        let e = c.select("day2").unwrap_err().to_string();
        assert!(
            e.contains("day 2 is not in the course yet") && e.contains("(1..3)"),
            "{e}"
        );
        for (a, b) in [(2, 2), (3, 2)] {
            let e = Course::parse(&format!("{head}{}{}{}", day(1), day(a), day(b))).unwrap_err();
            assert!(
                e.to_string().contains(&format!("entry 3 is day {b}")),
                "{e}"
            );
        }
    }

    #[test]
    fn load_errors_name_the_file() {
        let path = std::env::temp_dir().join(format!("course-{}.toml", std::process::id()));
        std::fs::write(&path, "format_version = 1\n[[day]]\nnumber = \"one\"\n").unwrap();
        let e = Course::load(&path).unwrap_err().to_string();
        std::fs::remove_file(&path).ok();
        assert!(e.starts_with(&format!("{}: ", path.display())), "{e}");
        let e = Course::load(Path::new("/nonexistent/course.toml")).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("reading /nonexistent/course.toml"),
            "{e}"
        );
    }

    #[test]
    fn labels_and_defaults() {
        let c = sample();
        let d = c.day(8).unwrap();
        assert_eq!(d.label(), "day 8 (w2d1): t8");
        assert_eq!(d.test_files(), vec!["day8"]);
        assert_eq!(d.timeout().as_secs(), 120);
        assert!(c.model_checks_day().is_none());
    }

    /// The kit's own course.toml loads, in order, with hints and tests.
    #[test]
    fn the_kit_course_toml_parses() {
        let c = Course::load_kit().unwrap();
        assert!(c.days.len() >= 7, "{} days", c.days.len());
        for d in &c.days {
            assert!(
                !d.tests.is_empty() && !d.hint.trim().is_empty(),
                "day {}",
                d.number
            );
            assert!(!d.modules.is_empty(), "day {}", d.number);
        }
        let models = c.model_checks_day().expect("[model_checks]");
        assert_eq!(models.test_files(), vec!["real_models"]);
        assert_eq!(models.label(), "real-model checks against mlx-lm");
        // every default tolerance is there, so `tolerance` never fails for the kit
        assert!(c.tolerance.is_complete(), "{:?}", c.tolerance);
        // day 5 loosens bf16 on the CPU (the transformer block's residual stream)
        let day5 = c.day(5).unwrap();
        assert!(day5.tolerance.contains_key(&DType::Bf16));
    }
}
