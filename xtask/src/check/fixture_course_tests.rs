//! Grades `xtask/tests/fixture-course`, a tiny course with a test for
//! every outcome, and snapshots the report a learner would read (in
//! `xtask/src/snapshots`, beside the other snapshots of xtask).
use super::*;
use crate::grade::stack::Debugger;
use crate::report::{render, Context};

/// Snapshots go to `xtask/src/snapshots`, where they have always been.
fn snapshot(name: &str, text: &str) {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("../snapshots");
    settings.set_prepend_module_to_snapshot(true);
    settings.bind(|| insta::assert_snapshot!(name, text));
}

fn course_dir() -> PathBuf {
    util::project_root().join("xtask/tests/fixture-course")
}

fn course() -> Course {
    Course::load(&course_dir().join("course.toml")).unwrap()
}

/// Grades `days` of the fixture course; `scratch` keeps concurrent
/// tests' logs apart.
fn grade(
    days: &[Day],
    features: &[&str],
    debugger: Option<Debugger>,
    scratch: &str,
) -> Vec<(Day, DayResult)> {
    let mut g = Grading {
        build: Build {
            workspace: course_dir(),
            package: "fixture-grader".into(),
            features: features.iter().map(|f| f.to_string()).collect(),
            target_dir: Some(util::target_dir().join("fixture-course")),
            ..Default::default()
        },
        skip: BTreeMap::new(),
        scratch: util::target_dir()
            .join("fixture-course-scratch")
            .join(scratch),
        env: vec![],
        no_build: false,
        timeout: None,
        code: LearnerCode {
            crate_name: "fixture_grader".into(),
            src_dir: "src".into(),
            workspace: course_dir(),
        },
        hangs: Hangs::with_debugger(debugger),
    };
    grade_days(days, &mut g, &mut |_| {}).unwrap()
}

fn report(course: &Course, results: &[(Day, DayResult)]) -> String {
    let ctx = Context {
        days: &course.days,
        grader_package: "fixture-grader".into(),
        feature_flags: String::new(),
        src_dir: "src".into(),
        learner_package: "fixture-grader".into(),
        style: Style { color: false },
    };
    render(&ctx, results)
}

#[test]
fn every_outcome_is_reported_and_trouble_is_contained() {
    let course = course();
    // no debugger: the same report everywhere (hangs after the first
    // are stopped at the short limit)
    let results = grade(&course.days, &[], None, "plain");
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
        ("1/scaled_f32", "pass"),
        ("1/scaled_f16", "wrong numbers"),
        ("1/property_fails", "wrong numbers"),
        ("2/panics", "panic"),
        ("2/hangs", "timeout"),
        ("2/hangs_too", "timeout"),
        ("2/listed_but_absent", "missing test"),
        ("3/passes_too", "pass"),
        ("3/returns_error", "returned error"),
        ("3/should_fail", "expected an error"),
        ("3/needs_gpu", "skipped"),
        ("3/fixture_corrupt", "fixture problem"),
        ("3/reaches_day1_todo", "not implemented"),
    ];
    let want: Vec<(String, &str)> = want.iter().map(|(a, b)| (a.to_string(), *b)).collect();
    assert_eq!(labels, want);
    let outcome = |day: usize, name: &str| {
        results[day]
            .1
            .tests
            .iter()
            .find(|t| t.name == name)
            .unwrap()
            .outcome
            .clone()
    };
    assert!(matches!(
        outcome(0, "property_fails"),
        Outcome::WrongNumbers {
            seed: Some(1234),
            ..
        }
    ));
    assert_eq!(
        outcome(2, "reaches_day1_todo"),
        Outcome::NotImplemented {
            item: Some("day 1: softmax".into()),
            owner_day: Some(1),
            file: Some("src/basics.rs".into()),
        }
    );
    assert_eq!(
        outcome(1, "hangs_too"),
        Outcome::Timeout {
            seconds: 2,
            site: None,
            same_as: Some("hangs".into()),
            shortened: true,
        }
    );
    // a skipped test is never a pass, nor a failure
    assert_eq!(
        (
            results[2].1.passed(),
            results[2].1.failed(),
            results[2].1.skipped()
        ),
        (1, 4, 1)
    );
    snapshot("fixture_course_report", &report(&course, &results));
}

/// With a debugger, a hang is traced to the learner's function, and a
/// later test in the same function is stopped at the short limit.
#[test]
fn a_hang_is_found_in_the_learners_function() {
    let Some(debugger) = Debugger::find() else {
        eprintln!("skipped: no gdb, eu-stack or lldb on PATH");
        return;
    };
    let course = course();
    let results = grade(&course.days[1..2], &[], Some(debugger), "debugger");
    let tests = &results[0].1.tests;
    let Outcome::Timeout {
        site: Some(site), ..
    } = &tests[1].outcome
    else {
        panic!("{debugger:?}: {:?}", tests[1]);
    };
    assert_eq!(site.function, "fixture_grader::looping::spin");
    assert!(
        site.location
            .as_deref()
            .is_some_and(|l| l.starts_with("src/looping.rs")),
        "{site:?}"
    );
    match &tests[2].outcome {
        Outcome::Timeout {
            site: Some(s),
            same_as: Some(first),
            seconds,
            ..
        } => {
            assert_eq!(
                (s.function.as_str(), first.as_str()),
                (site.function.as_str(), "hangs")
            );
            assert!(*seconds <= 3, "{seconds}");
        }
        other => panic!("hangs_too: {other:?}"),
    }
}

#[test]
fn after_a_pass_the_next_day_is_named() {
    let course = course();
    let ctx = Context {
        days: &course.days,
        grader_package: "g".into(),
        feature_flags: String::new(),
        src_dir: "src".into(),
        learner_package: "l".into(),
        style: Style { color: false },
    };
    let day1 = course.days[0].clone();
    let passed = all_tests(&day1, Outcome::Pass);
    let args = CheckArgs {
        target: "day1".into(),
        ..Default::default()
    };
    let text = what_next(&ctx, &course, &[(day1.clone(), passed)], &args);
    assert!(
        text.contains("day 1 passed. Next: day 2 (w1d2): Panic and hang")
            && text.contains("files: src/looping.rs")
            && text.contains("`cargo xtask check day2`"),
        "{text}"
    );
    let failed = all_tests(&day1, Outcome::Missing);
    assert_eq!(what_next(&ctx, &course, &[(day1, failed)], &args), "");
}

#[test]
fn a_compile_error_is_told_once_per_day() {
    let course = course();
    let results = grade(&course.days, &["broken"], None, "broken");
    for (_, r) in &results {
        for t in &r.tests {
            assert_eq!(t.outcome.label(), "does not compile", "{}", t.name);
        }
    }
    let text = report(&course, &results[..1]);
    assert_eq!(text.matches("mismatched types").count(), 1, "{text}");
    snapshot("fixture_course_compile_error", &text);
}
