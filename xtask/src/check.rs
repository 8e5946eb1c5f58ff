//! `cargo xtask check <day|wWdD|weekW|all|models> [--solution] [--ref DAYS] [--json]`:
//! grades days through the grader's tests, one process per test.

use crate::course::{Course, Day};
use crate::grade::run::TestRun;
use crate::grade::{self, Build, Built, Hangs, LearnerCode, Outcome};
use crate::report::{self, DayResult, Style, TestResult};
use crate::{fixtures, progress, setup, util};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

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
    #[arg(long, value_parser = crate::device::arg_parser())]
    pub device: Option<crate::device::Device>,
    /// Use the test binaries of the last build instead of building (for a
    /// machine without a Rust toolchain, such as a lent GPU machine).
    #[arg(long)]
    pub no_build: bool,
    /// Seconds one test may run before it is stopped (default: the day's
    /// `timeout_s` in course.toml).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
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

/// One grading run: what to build, whose code it is, and where tests run.
pub struct Grading {
    pub build: Build,
    /// Days not graded, with the reason (taken from the reference).
    pub skip: BTreeMap<u32, String>,
    /// Folder for the tests' output logs.
    pub scratch: PathBuf,
    /// Environment of every test process.
    pub env: Vec<(String, String)>,
    /// Use the binaries of the last build (`--no-build`).
    pub no_build: bool,
    /// Overrides every day's `timeout_s` (`--timeout`).
    pub timeout: Option<Duration>,
    pub code: LearnerCode,
    /// What hangs so far taught (see `grade::run`).
    pub hangs: Hangs,
}

/// What [`grade_days`] reports as it goes, for printing each result as soon
/// as it is known.
pub enum Event<'a> {
    DayStarted(&'a Day),
    Test(&'a TestResult),
    DayDone(&'a Day, &'a DayResult),
}

/// The limit after a first hang: a tenth of the day's limit, 3 s at least.
fn short_limit(timeout: Duration) -> Duration {
    (timeout / 10).max(Duration::from_secs(3)).min(timeout)
}

/// Grades `days` of a course: builds once, lists every test binary's tests,
/// runs each listed test alone, telling `on` about every result as it comes.
pub fn grade_days(
    days: &[Day],
    g: &mut Grading,
    on: &mut dyn FnMut(Event),
) -> Result<Vec<(Day, DayResult)>> {
    let built = if g.no_build {
        grade::last_build(&g.build)?
    } else {
        grade::build(&g.build)?
    };
    let exes = match built {
        Built::Failed { first_error } => {
            let o = Outcome::DoesNotCompile { first_error };
            let mut results = Vec::new();
            for d in days {
                let r = all_tests(d, o.clone());
                on(Event::DayStarted(d));
                on(Event::DayDone(d, &r));
                results.push((d.clone(), r));
            }
            return Ok(results);
        }
        Built::Ok(exes) => exes,
    };
    let mut results = Vec::new();
    for day in days {
        on(Event::DayStarted(day));
        if let Some(reason) = g.skip.get(&day.number) {
            let r = all_tests(
                day,
                Outcome::Skipped {
                    reason: reason.clone(),
                },
            );
            on(Event::DayDone(day, &r));
            results.push((day.clone(), r));
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
        let timeout = g.timeout.unwrap_or_else(|| day.timeout());
        g.hangs.set_short(short_limit(timeout));
        let scratch = g.scratch.join(day.id());
        let mut tests = Vec::new();
        for name in &day.tests {
            let outcome = match where_is.get(name) {
                None => Outcome::Missing,
                Some(exe) => {
                    let run = TestRun {
                        exe,
                        test: name,
                        timeout,
                        scratch: &scratch,
                        env: &g.env,
                        code: &g.code,
                    };
                    grade::run_one(&run, &mut g.hangs)?
                }
            };
            let t = TestResult {
                name: name.clone(),
                outcome,
            };
            on(Event::Test(&t));
            tests.push(t);
        }
        let r = DayResult {
            day: day.number,
            title: day.title.clone(),
            tests,
        };
        on(Event::DayDone(day, &r));
        results.push((day.clone(), r));
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
    course
        .model_checks_day()
        .context("course.toml has no [model_checks] yet")
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
        // a reference build leaves the learner's crate out (it may not compile)
        no_default_features: args.solution,
        features: features.clone(),
        target_dir: None,
        show_progress: true,
    };
    let feature_flags = match (args.solution, features.is_empty()) {
        (true, _) => " --no-default-features --features solutions".to_string(),
        (false, true) => String::new(),
        (false, false) => format!(" --features {}", features.join(",")),
    };
    let code = if args.solution {
        LearnerCode {
            crate_name: "tiny_llm_ref".into(),
            src_dir: "solutions/src".into(),
            workspace: root.clone(),
        }
    } else {
        LearnerCode {
            crate_name: "tiny_llm".into(),
            src_dir: "exercises/src".into(),
            workspace: root.clone(),
        }
    };
    // TINY_LLM_GRADING: a skipped test (no GPU) panics with its tag, which
    // the report reads (tiny_llm_grader::device::skip).
    let mut env = vec![
        ("TINY_LLM_DEVICE".to_string(), device.as_str().to_string()),
        ("TINY_LLM_GRADING".to_string(), "1".to_string()),
    ];
    if args.expect_stubs || !args.solution {
        // failures of unwritten code are not regressions worth recording
        env.push(("PROPTEST_DISABLE_FAILURE_PERSISTENCE".into(), "1".into()));
    }
    let mut grading = Grading {
        build,
        skip,
        scratch: util::target_dir()
            .join("xtask-check")
            .join(if args.solution { "ref" } else { "learner" }),
        env,
        no_build: args.no_build,
        timeout: args.timeout.map(Duration::from_secs),
        code: code.clone(),
        hangs: Hangs::new(),
    };
    let ctx = report::Context {
        days: &course.days,
        grader_package: "tiny-llm-grader".into(),
        feature_flags,
        src_dir: code.src_dir.clone(),
        learner_package: if args.solution {
            "tiny-llm-ref"
        } else {
            "tiny-llm"
        }
        .into(),
        style: Style {
            color: std::io::stdout().is_terminal(),
        },
    };
    let json = args.json;
    let results = grade_days(&days, &mut grading, &mut |event| {
        if !json {
            print_event(&ctx, event)
        }
    })?;
    if json {
        println!("{}", report::render_json(&results));
    } else {
        print!("{}", report::total(&results));
        print!("{}", what_next(&ctx, &course, &results, args));
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
                    // A test this machine cannot run (a GPU test on a CPU
                    // machine) is skipped: it did not pass, so it does not
                    // break the stubs' rule. Anything else must be a `todo!()`.
                    .filter(|t| {
                        !matches!(
                            t.outcome,
                            Outcome::NotImplemented { .. } | Outcome::Skipped { .. }
                        )
                    })
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
        results
            .iter()
            .all(|(_, r)| r.tests.iter().all(|t| !t.outcome.is_failure()))
    })
}

/// Prints one event of a grading run at once (stdout is flushed, so a
/// learner sees each test as it finishes).
fn print_event(ctx: &report::Context, event: Event) {
    let text = match event {
        Event::DayStarted(day) => report::heading(ctx, day),
        Event::Test(t) => report::test_line(ctx, t),
        Event::DayDone(day, r) => report::day_end(ctx, day, r),
    };
    print!("{text}");
    std::io::stdout().flush().ok();
}

/// After a run: when the last day graded passed, the next day to do.
fn what_next(
    ctx: &report::Context,
    course: &Course,
    results: &[(Day, DayResult)],
    args: &CheckArgs,
) -> String {
    if args.solution || args.expect_stubs || args.target == "models" {
        return String::new();
    }
    let Some((last, r)) = results.last() else {
        return String::new();
    };
    let all_passed = results
        .iter()
        .all(|(_, r)| r.passed() > 0 && r.failed() == 0);
    if !all_passed || r.tests.iter().all(|t| t.outcome.is_skipped()) {
        return String::new();
    }
    match course.day(last.number + 1) {
        Some(next) => format!(
            "\n{} passed. Next: {}\n  files: {}\n  `cargo xtask hint day{n}`, then `cargo xtask check day{n}`\n",
            if results.len() == 1 {
                format!("day {}", last.number)
            } else {
                "every day graded".to_string()
            },
            next.label(),
            report::files_of(ctx, next),
            n = next.number
        ),
        None => format!(
            "\nday {} passed: that is the last day of the course so far. `cargo xtask check all` to see everything pass.\n",
            last.number
        ),
    }
}

#[cfg(test)]
mod fixture_course_tests;
