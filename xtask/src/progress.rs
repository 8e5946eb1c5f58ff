//! The learner's progress: `progress.txt` at the workspace root (plain text,
//! one `dayN: state` line per graded day), written by `check` and read by
//! `status` and `watch`.

use crate::course::{Course, Day};
use crate::grade::Outcome;
use crate::report::DayResult;
use crate::util;
use anyhow::Result;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    NotStarted,
    InProgress,
    Passed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::NotStarted => "not started",
            State::InProgress => "in progress",
            State::Passed => "passed",
        }
    }
    fn parse(s: &str) -> Option<State> {
        match s.trim() {
            "not started" => Some(State::NotStarted),
            "in progress" => Some(State::InProgress),
            "passed" => Some(State::Passed),
            _ => None,
        }
    }
}

pub fn path() -> PathBuf {
    util::project_root().join("progress.txt")
}

/// The state of a day from its latest results: passed when every test that
/// ran passed (a test skipped for want of a GPU does not count); not started
/// when every test is still a `todo!()`.
pub fn state_of(r: &DayResult) -> State {
    let ran = || r.tests.iter().filter(|t| !t.outcome.is_skipped());
    if ran().count() > 0 && ran().all(|t| t.outcome.is_pass()) {
        State::Passed
    } else if ran().all(|t| matches!(t.outcome, Outcome::NotImplemented { .. })) {
        State::NotStarted
    } else {
        State::InProgress
    }
}

/// Reads `progress.txt`; a missing file means nothing started.
pub fn load() -> BTreeMap<u32, State> {
    let text = std::fs::read_to_string(path()).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let (day, state) = l.split_once(':')?;
            let n = day.trim().strip_prefix("day")?.parse().ok()?;
            Some((n, State::parse(state)?))
        })
        .collect()
}

/// Records the states of the graded days (days not graded, such as those
/// taken from the reference, are left alone).
pub fn record(results: &[(Day, DayResult)]) -> Result<()> {
    let mut map = load();
    for (day, r) in results {
        if r.tests.iter().all(|t| t.outcome.is_skipped()) {
            continue;
        }
        map.insert(day.number, state_of(r));
    }
    let mut text = String::from("# tiny-llm-rs progress, written by `cargo xtask check`\n");
    for (n, s) in &map {
        text.push_str(&format!("day{n}: {}\n", s.as_str()));
    }
    std::fs::write(path(), text)?;
    Ok(())
}

/// The first day that has not passed (where `watch` starts).
pub fn current_day(course: &Course) -> Option<&Day> {
    let map = load();
    course
        .days
        .iter()
        .find(|d| map.get(&d.number) != Some(&State::Passed))
}

/// The day's files, relative to `exercises/src/`: `basics.rs, attention.rs`.
fn module_files(d: &Day) -> String {
    d.modules
        .iter()
        .map(|m| format!("{m}.rs"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `cargo xtask status`: a table of every day with its files, then the
/// day to work on.
pub fn status(course: &Course) -> String {
    status_of(course, &load())
}

fn status_of(course: &Course, map: &BTreeMap<u32, State>) -> String {
    let state = |d: &Day| map.get(&d.number).copied().unwrap_or(State::NotStarted);
    let title_w = course
        .days
        .iter()
        .map(|d| d.title.chars().count())
        .max()
        .unwrap_or(0)
        .max("title".len());
    let row = |day: &str, week: &str, title: &str, status: &str, files: &str| {
        format!("{day:>4}  {week:<6}  {title:<title_w$}  {status:<11}  {files}")
            .trim_end()
            .to_string()
            + "\n"
    };
    let mut s = row("day", "week", "title", "status", "files (exercises/src/)");
    for d in &course.days {
        s.push_str(&row(
            &d.number.to_string(),
            &format!("w{}d{}", d.week, d.day_of_week()),
            &d.title,
            state(d).as_str(),
            &module_files(d),
        ));
    }
    let passed = course
        .days
        .iter()
        .filter(|d| state(d) == State::Passed)
        .count();
    s.push_str(&format!("\n{passed} of {} days passed.", course.days.len()));
    match course.days.iter().find(|d| state(d) != State::Passed) {
        Some(d) => s.push_str(&format!(
            " Next: {} (`cargo xtask hint day{n}`, `cargo xtask check day{n}`)\n",
            d.label(),
            n = d.number
        )),
        None => s.push_str(" Every day has passed: `cargo xtask check all` to confirm.\n"),
    }
    s
}

/// `cargo xtask hint DAY`: the day, its files, and its hint.
pub fn hint(d: &Day) -> String {
    let files: Vec<String> = d
        .modules
        .iter()
        .map(|m| format!("exercises/src/{m}.rs"))
        .collect();
    format!(
        "{}\nfiles: {}\n\n{}\n",
        d.label(),
        files.join(", "),
        d.hint.trim_end()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grade::Outcome;
    use crate::report::TestResult;

    fn course() -> Course {
        Course::parse(
            r#"format_version = 1
[[day]]
number = 1
week = 1
title = "Attention"
modules = ["basics", "attention"]
tests = ["a"]
hint = "h1"
[[day]]
number = 2
week = 1
title = "The transformer block and the model"
modules = ["embedding", "transformer_block"]
tests = ["a"]
hint = "h2"
"#,
        )
        .unwrap()
    }

    #[test]
    fn status_aligns_long_titles_and_lists_files() {
        let map = BTreeMap::from([(1, State::Passed)]);
        let text = status_of(&course(), &map);
        let lines: Vec<&str> = text.lines().collect();
        // the status column starts at the same place on every row
        let col = lines[0].find("status").unwrap();
        assert_eq!(lines[1].find("passed"), Some(col), "{text}");
        assert_eq!(lines[2].find("not started"), Some(col), "{text}");
        assert!(lines[1].ends_with("basics.rs, attention.rs"), "{text}");
        assert!(
            text.contains("1 of 2 days passed. Next: day 2 (w1d2)"),
            "{text}"
        );
    }

    #[test]
    fn hint_names_the_files() {
        let c = course();
        let h = hint(&c.days[0]);
        assert!(
            h.contains("files: exercises/src/basics.rs, exercises/src/attention.rs"),
            "{h}"
        );
        assert!(h.ends_with("h1\n"));
    }

    #[test]
    fn a_test_skipped_for_want_of_a_gpu_does_not_hold_a_day_back() {
        let t = |name: &str, outcome| TestResult {
            name: name.into(),
            outcome,
        };
        let r = DayResult {
            day: 1,
            title: "t".into(),
            tests: vec![
                t("a", Outcome::Pass),
                t(
                    "b",
                    Outcome::Skipped {
                        reason: "no GPU".into(),
                    },
                ),
            ],
        };
        assert_eq!(state_of(&r), State::Passed);
        let skipped_only = DayResult {
            tests: vec![r.tests[1].clone()],
            ..r.clone()
        };
        assert_eq!(state_of(&skipped_only), State::NotStarted);
    }
}
