//! `cargo xtask check <day|wWdD|weekW|all|models> [--solution] [--ref DAYS] [--json]`:
//! grades days through the grader's tests, one process per test.

use crate::course::{Course, Day};
use crate::grade::{self, Build, Built, Outcome};
use crate::report::{self, DayResult, Style, TestResult};
use crate::{fixtures, progress, setup, util};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct CheckArgs {
    /// What to grade: day3, 3, w1d3, week1, all, or models (the real-model checks).
    pub target: String,
    /// Grade the reference solutions instead of your code.
    #[arg(long)]
    pub solution: bool,
    /// Days taken from the reference while grading yours, e.g. `1-4` or `1,2,4`.
    #[arg(long = "ref", value_name = "DAYS")]
    pub reference: Option<String>,
    /// Print a JSON report instead of text.
    #[arg(long)]
    pub json: bool,
    /// CI: succeed only if every test is "not implemented" (proves the stubs are stubs).
    #[arg(long, hide = true)]
    pub expect_stubs: bool,
    /// MLX device: gpu or cpu (default: gpu when one is usable).
    #[arg(long, value_enum)]
    pub device: Option<crate::device::Device>,
    /// Use the test binaries of the last build instead of building (for a
    /// machine without a Rust toolchain, such as a lent GPU machine).
    #[arg(long)]
    pub no_build: bool,
}

/// Parses `1-4`, `1,2,4`, `day1,w1d3` into day numbers.
pub fn parse_days(spec: &str, course: &Course) -> Result<BTreeSet<u32>> {
    let mut set = BTreeSet::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a = course.select(a)?[0].number;
            let b = course.select(b)?[0].number;
            if a > b {
                bail!("`{part}`: the range runs backwards");
            }
            set.extend(a..=b);
        } else {
            for d in course.select(part)? {
                set.insert(d.number);
            }
        }
    }
    Ok(set)
}

/// Grades `days` of a course: builds once, lists every test binary's tests,
/// runs each listed test alone. Days in `skip` are reported as skipped.
pub fn grade_days(
    days: &[Day],
    build: &Build,
    skip: &BTreeMap<u32, String>,
    scratch: &Path,
    env: &[(String, String)],
    no_build: bool,
) -> Result<Vec<(Day, DayResult)>> {
    let built = if no_build {
        grade::last_build(build)?
    } else {
        grade::build(build)?
    };
    let exes = match built {
        Built::Failed { first_error } => {
            return Ok(days
                .iter()
                .map(|d| {
                    let o = Outcome::DoesNotCompile {
                        first_error: first_error.clone(),
                    };
                    (d.clone(), all_tests(d, o))
                })
                .collect())
        }
        Built::Ok(exes) => exes,
    };
    let mut results = Vec::new();
    for day in days {
        if let Some(reason) = skip.get(&day.number) {
            results.push((
                day.clone(),
                all_tests(
                    day,
                    Outcome::Skipped {
                        reason: reason.clone(),
                    },
                ),
            ));
            continue;
        }
        let mut where_is: BTreeMap<String, PathBuf> = BTreeMap::new();
        for file in day.test_files() {
            let exe = exes.get(&file).with_context(|| {
                format!("no test target `{file}` was built for day {}", day.number)
            })?;
            for name in list_tests(exe)? {
                where_is.insert(name, exe.clone());
            }
        }
        let mut tests = Vec::new();
        for name in &day.tests {
            let outcome = match where_is.get(name) {
                None => Outcome::Missing,
                Some(exe) => {
                    grade::run_one(exe, name, day.timeout(), &scratch.join(day.id()), env)?
                }
            };
            tests.push(TestResult {
                name: name.clone(),
                outcome,
            });
        }
        results.push((
            day.clone(),
            DayResult {
                day: day.number,
                title: day.title.clone(),
                tests,
            },
        ));
    }
    Ok(results)
}

fn all_tests(day: &Day, o: Outcome) -> DayResult {
    DayResult {
        day: day.number,
        title: day.title.clone(),
        tests: day
            .tests
            .iter()
            .map(|t| TestResult {
                name: t.clone(),
                outcome: o.clone(),
            })
            .collect(),
    }
}

/// Test names in a libtest binary (`--list --format terse`).
pub fn list_tests(exe: &Path) -> Result<Vec<String>> {
    let out = std::process::Command::new(exe)
        .args(["--list", "--format", "terse"])
        .output()
        .with_context(|| format!("listing tests of {}", exe.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_suffix(": test"))
        .map(str::to_string)
        .collect())
}

/// The model-checks pseudo-day (`check models`).
fn model_checks_day(course: &Course) -> Result<Day> {
    let m = course
        .model_checks
        .as_ref()
        .context("course.toml has no [model_checks] yet")?;
    Ok(Day {
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

/// Runs `cargo xtask check`; returns whether everything asked for held.
pub fn run(args: &CheckArgs) -> Result<bool> {
    let root = util::project_root();
    let course = Course::load(&root.join("course.toml"))?;
    let days: Vec<Day> = if args.target == "models" {
        vec![model_checks_day(&course)?]
    } else {
        course.select(&args.target)?.into_iter().cloned().collect()
    };
    for problem in crate::course::validate(&course, &root)? {
        eprintln!("warning: {problem}");
    }
    if !args.no_build {
        setup::run(&Default::default())?;
    }
    fixtures::check(false)?;
    let device = crate::device::resolve(args.device)?;
    if days.iter().any(|d| d.needs_model) {
        // the real models, provisioned by `models fetch` (quick when cached)
        let me = std::env::current_exe()?;
        util::run_inherit(
            std::process::Command::new(me).args(["models", "fetch", "--model", "all"]),
        )?;
    }
    let ref_days = match &args.reference {
        Some(spec) if !args.solution => parse_days(spec, &course)?,
        _ => BTreeSet::new(),
    };
    let features: Vec<String> = if args.solution {
        vec!["solutions".into()]
    } else {
        ref_days
            .iter()
            .map(|d| format!("tiny-llm/ref-day{d}"))
            .collect()
    };
    let skip: BTreeMap<u32, String> = ref_days
        .iter()
        .map(|&d| {
            (
                d,
                format!("day {d} is taken from the reference (--ref); your code is not graded"),
            )
        })
        .collect();
    if !args.json {
        let whose = if args.solution {
            "the reference solutions"
        } else {
            "your code (exercises/)"
        };
        eprintln!(
            "grading {whose} on the {}: building the tests ...",
            device.as_str()
        );
    }
    let build = Build {
        workspace: root.clone(),
        package: "tiny-llm-grader".into(),
        features,
        no_default_features: args.solution,
        target_dir: None,
    };
    let scratch = util::target_dir()
        .join("xtask-check")
        .join(if args.solution { "ref" } else { "learner" });
    let mut env = vec![("TINY_LLM_DEVICE".to_string(), device.as_str().to_string())];
    if args.expect_stubs || !args.solution {
        // failures of unwritten code are not regressions worth recording
        env.push(("PROPTEST_DISABLE_FAILURE_PERSISTENCE".into(), "1".into()));
    }
    let results = grade_days(&days, &build, &skip, &scratch, &env, args.no_build)?;
    if args.json {
        println!("{}", report::render_json(&results));
    } else {
        let style = Style {
            color: std::io::stdout().is_terminal(),
        };
        print!("{}", report::render(&results, style));
    }
    if !args.solution && args.target != "models" && !args.expect_stubs {
        progress::record(&results)?;
    }
    Ok(if args.expect_stubs {
        let bad: Vec<String> = results
            .iter()
            .flat_map(|(d, r)| {
                r.tests
                    .iter()
                    .filter(|t| !matches!(t.outcome, Outcome::NotImplemented { .. }))
                    .map(move |t| format!("day {} {}: {}", d.number, t.name, t.outcome.label()))
            })
            .collect();
        if !bad.is_empty() {
            eprintln!(
                "stubs must fail as \"not implemented\"; these did not:\n  {}",
                bad.join("\n  ")
            );
        }
        bad.is_empty()
    } else {
        results.iter().all(|(_, r)| {
            r.tests
                .iter()
                .all(|t| t.outcome.is_pass() || matches!(t.outcome, Outcome::Skipped { .. }))
        })
    })
}

#[cfg(test)]
mod fixture_course_tests {
    //! Grades `xtask/tests/fixture-course`, a tiny course with one test per
    //! outcome, and snapshots the report a learner would read.
    use super::*;
    use crate::report::{render, Style};

    fn course_dir() -> PathBuf {
        util::project_root().join("xtask/tests/fixture-course")
    }

    fn grade(features: &[&str]) -> Vec<(Day, DayResult)> {
        let course = Course::load(&course_dir().join("course.toml")).unwrap();
        let build = Build {
            workspace: course_dir(),
            package: "fixture-grader".into(),
            features: features.iter().map(|f| f.to_string()).collect(),
            no_default_features: false,
            target_dir: Some(util::target_dir().join("fixture-course")),
        };
        let scratch = util::target_dir().join("fixture-course-scratch");
        grade_days(&course.days, &build, &BTreeMap::new(), &scratch, &[], false).unwrap()
    }

    #[test]
    fn every_outcome_is_reported_and_trouble_is_contained() {
        let results = grade(&[]);
        let labels: Vec<(String, &str)> = results
            .iter()
            .flat_map(|(d, r)| {
                r.tests
                    .iter()
                    .map(move |t| (format!("{}/{}", d.number, t.name), t.outcome.label()))
            })
            .collect();
        let want = [
            ("1/passes", "pass"),
            ("1/not_implemented", "not implemented"),
            ("1/wrong_numbers", "wrong numbers"),
            ("2/panics", "panic"),
            ("2/hangs", "timeout"),
            ("2/listed_but_absent", "missing test"),
            ("3/passes_too", "pass"),
            ("3/returns_error", "returned error"),
        ];
        let want: Vec<(String, &str)> = want.iter().map(|(a, b)| (a.to_string(), *b)).collect();
        assert_eq!(labels, want);
        insta::assert_snapshot!(
            "fixture_course_report",
            render(&results, Style { color: false })
        );
    }

    #[test]
    fn a_compile_error_names_file_and_line_for_every_test() {
        let results = grade(&["broken"]);
        for (_, r) in &results {
            for t in &r.tests {
                assert_eq!(t.outcome.label(), "does not compile", "{}", t.name);
            }
        }
        let day1 = vec![results[0].clone()];
        insta::assert_snapshot!(
            "fixture_course_compile_error",
            render(&day1, Style { color: false })
        );
    }
}
