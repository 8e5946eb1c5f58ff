//! Text and JSON reports of a grading run. The text comes in pieces so
//! `check` can print each test's line as soon as it is known: a day's
//! heading, one line per test, then (when the day is done) what went wrong
//! with the next thing to do, and the day's summary.

mod evidence;
mod next;

use crate::course::Day;
use crate::grade::Outcome;
use std::fmt::Write;

pub use next::files_of;

/// Results of one day.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DayResult {
    pub day: u32,
    pub title: String,
    pub tests: Vec<TestResult>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct TestResult {
    pub name: String,
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl DayResult {
    pub fn passed(&self) -> usize {
        self.tests.iter().filter(|t| t.outcome.is_pass()).count()
    }
    pub fn skipped(&self) -> usize {
        self.tests.iter().filter(|t| t.outcome.is_skipped()).count()
    }
    pub fn failed(&self) -> usize {
        self.tests.iter().filter(|t| t.outcome.is_failure()).count()
    }
    /// The first error when the tests did not compile.
    pub fn compile_error(&self) -> Option<&str> {
        self.tests.iter().find_map(|t| match &t.outcome {
            Outcome::DoesNotCompile { first_error } => Some(first_error.as_str()),
            _ => None,
        })
    }
}

/// ANSI colours, used only when writing to a terminal.
#[derive(Clone, Copy, Default)]
pub struct Style {
    pub color: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }
    fn outcome(&self, o: &Outcome) -> String {
        let label = format!("{:<17}", o.label());
        match o {
            Outcome::Pass => self.paint("32", &label),
            Outcome::NotImplemented { .. } | Outcome::Skipped { .. } => self.paint("33", &label),
            _ => self.paint("31", &label),
        }
    }
}

/// What the report needs besides the results.
pub struct Context<'a> {
    /// Every day of the course (to tell which day owns a file).
    pub days: &'a [Day],
    /// The package of the grader's tests (`tiny-llm-grader`).
    pub grader_package: String,
    /// Flags that rebuild what was graded (` --features tiny-llm/ref-day4`).
    pub feature_flags: String,
    /// The learner's sources (`exercises/src`).
    pub src_dir: String,
    /// The learner's package (`tiny-llm`).
    pub learner_package: String,
    pub style: Style,
}

impl Context<'_> {
    /// The day whose module is this file (`exercises/src/mlp.rs:3` -> 4).
    pub fn day_of_file(&self, path: &str) -> Option<u32> {
        let file = crate::grade::classify::strip_line_col(path);
        let module = file.rsplit('/').next()?.strip_suffix(".rs")?;
        self.days
            .iter()
            .find(|d| d.modules.iter().any(|m| m == module))
            .map(|d| d.number)
    }
}

fn indent(text: &str, by: &str) -> String {
    text.lines().map(|l| format!("{by}{l}\n")).collect()
}

/// The day's heading.
pub fn heading(ctx: &Context, day: &Day) -> String {
    format!("{}\n", ctx.style.paint("1", &day.label()))
}

/// One test's line.
pub fn test_line(ctx: &Context, t: &TestResult) -> String {
    format!("  {} {}\n", ctx.style.outcome(&t.outcome), t.name)
}

/// Everything after the test lines: each failure with its next step, the
/// `todo!()`s reached, skipped tests, and the day's summary. A compile error
/// stands for the whole day (the test lines are left out).
pub fn day_end(ctx: &Context, day: &Day, r: &DayResult) -> String {
    let style = ctx.style;
    let mut s = String::new();
    if let Some(error) = r.compile_error() {
        let _ = writeln!(
            s,
            "  {} ({} tests not run)",
            style.paint("31", &format!("{:<17}", "does not compile")),
            r.tests.len()
        );
        let text = format!(
            "{error}\nnext: fix this compile error first (`cargo build -p {}` shows them all)",
            ctx.learner_package
        );
        s.push_str(&indent(&text, "      "));
    } else {
        let mut first = true;
        for t in &r.tests {
            let text = next::details(ctx, day, t, &r.tests);
            if text.is_empty() {
                continue;
            }
            if std::mem::take(&mut first) {
                s.push('\n');
            }
            let _ = writeln!(s, "  {} {}:", style.paint("31", "x"), t.name);
            s.push_str(&indent(&text, "      "));
        }
        let todo: Vec<&TestResult> = r
            .tests
            .iter()
            .filter(|t| matches!(t.outcome, Outcome::NotImplemented { .. }))
            .collect();
        if !todo.is_empty() {
            let _ = writeln!(
                s,
                "\n  {} {} not implemented yet, reaching:",
                style.paint("33", "-"),
                plural(todo.len(), "test")
            );
            s.push_str(&indent(&next::not_implemented(ctx, day, &todo), "      "));
        }
    }
    let mut reasons: Vec<&str> = Vec::new();
    for t in &r.tests {
        if let Outcome::Skipped { reason } = &t.outcome {
            if !reasons.contains(&reason.as_str()) {
                reasons.push(reason);
            }
        }
    }
    for reason in reasons {
        let _ = writeln!(s, "  (skipped: {reason})");
    }
    let _ = writeln!(
        s,
        "{}: {}\n",
        if day.number == 0 {
            "model checks".to_string()
        } else {
            format!("day {}", day.number)
        },
        counts(r.passed(), r.failed(), r.skipped())
    );
    s
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

fn counts(passed: usize, failed: usize, skipped: usize) -> String {
    let mut s = format!("{passed} passed, {failed} failed");
    if skipped > 0 {
        let _ = write!(s, ", {skipped} skipped");
    }
    s
}

/// The closing line of a run over several days (none for one day, whose
/// summary says it all).
pub fn total(results: &[(Day, DayResult)]) -> String {
    if results.len() < 2 {
        return String::new();
    }
    let sum = |f: fn(&DayResult) -> usize| results.iter().map(|(_, r)| f(r)).sum::<usize>();
    format!(
        "all {} days: {}\n",
        results.len(),
        counts(
            sum(DayResult::passed),
            sum(DayResult::failed),
            sum(DayResult::skipped)
        )
    )
}

/// The whole text report, as `check` prints it piece by piece (xtask's
/// tests snapshot it).
#[cfg(test)]
pub fn render(ctx: &Context, results: &[(Day, DayResult)]) -> String {
    let mut s = String::new();
    for (day, r) in results {
        s.push_str(&heading(ctx, day));
        if r.compile_error().is_none() {
            for t in &r.tests {
                s.push_str(&test_line(ctx, t));
            }
        }
        s.push_str(&day_end(ctx, day, r));
    }
    s.push_str(&total(results));
    s
}

/// The JSON report (`--json`).
pub fn render_json(results: &[(Day, DayResult)]) -> String {
    let days: Vec<&DayResult> = results.iter().map(|(_, r)| r).collect();
    let sum = |f: fn(&DayResult) -> usize| days.iter().map(|d| f(d)).sum::<usize>();
    serde_json::to_string_pretty(&serde_json::json!({
        "days": days,
        "passed": sum(DayResult::passed),
        "failed": sum(DayResult::failed),
        "skipped": sum(DayResult::skipped),
    }))
    .expect("serialisable")
}
