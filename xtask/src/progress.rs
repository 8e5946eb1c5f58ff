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

/// The state of a day from its latest results: passed when every test
/// passed; not started when every test is still a `todo!()`.
pub fn state_of(r: &DayResult) -> State {
    if r.tests.iter().all(|t| t.outcome.is_pass()) {
        State::Passed
    } else if r.tests.iter().all(|t| {
        matches!(
            t.outcome,
            Outcome::NotImplemented { .. } | Outcome::Skipped { .. }
        )
    }) {
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

/// Records the states of the graded days (skipped days are left alone).
pub fn record(results: &[(Day, DayResult)]) -> Result<()> {
    let mut map = load();
    for (day, r) in results {
        if r.tests
            .iter()
            .any(|t| matches!(t.outcome, Outcome::Skipped { .. }))
        {
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

/// `cargo xtask status`: a table of every day.
pub fn status(course: &Course) -> String {
    let map = load();
    let mut s = format!(
        "{:>4}  {:<6}  {:<34}  {}\n",
        "day", "week", "title", "status"
    );
    for d in &course.days {
        let state = map.get(&d.number).copied().unwrap_or(State::NotStarted);
        s.push_str(&format!(
            "{:>4}  w{}d{:<3}  {:<34}  {}\n",
            d.number,
            d.week,
            d.day_of_week(),
            d.title,
            state.as_str()
        ));
    }
    let passed = course
        .days
        .iter()
        .filter(|d| map.get(&d.number) == Some(&State::Passed))
        .count();
    s.push_str(&format!("{passed} of {} days passed\n", course.days.len()));
    s
}
