//! Text and JSON reports of a grading run: one line per test, the details of
//! each failure with the next thing to do, and a summary.

use crate::course::Day;
use crate::grade::Outcome;
use std::fmt::Write;

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
    pub fn failed(&self) -> usize {
        self.tests.len() - self.passed()
    }
}

/// ANSI colours, used only when writing to a terminal.
#[derive(Clone, Copy)]
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

fn indent(text: &str, by: &str) -> String {
    text.lines().map(|l| format!("{by}{l}\n")).collect()
}

/// What to do next about a failed test.
fn next_action(day: &Day, test: &str, o: &Outcome) -> String {
    let n = day.number;
    let files: Vec<String> = day
        .modules
        .iter()
        .map(|m| format!("exercises/src/{m}.rs"))
        .collect();
    let files = if files.is_empty() {
        "exercises/src".to_string()
    } else {
        files.join(", ")
    };
    let rerun = format!(
        "cargo test -p tiny-llm-grader --test {} {test} -- --exact --nocapture",
        day.test_files().first().cloned().unwrap_or_default()
    );
    match o {
        Outcome::Pass | Outcome::Skipped { .. } => String::new(),
        Outcome::NotImplemented { item } => {
            let what = item.clone().unwrap_or_else(|| "a todo!()".into());
            format!("reached `{what}`; next: implement it in {files} (`cargo xtask hint day{n}`)")
        }
        Outcome::WrongNumbers { report } => format!(
            "{report}\nnext: the output is close in shape but not in value; compare each step with the formula in the doc comment (`cargo xtask hint day{n}`)"
        ),
        Outcome::WrongShape { report } => format!(
            "{report}\nnext: check the shapes and dtype your code returns against the doc comment"
        ),
        Outcome::ReturnedError { message } => {
            format!("{message}\nnext: your code returned Err for valid input; see where that error is made")
        }
        Outcome::Panic { message, location } => format!(
            "{message}\n  at {}\nnext: fix the panic; to see it whole: {rerun}",
            location.as_deref().unwrap_or("?")
        ),
        Outcome::Timeout { seconds } => format!(
            "stopped after {seconds} s; next: look for a loop that never ends (or run it alone: {rerun})"
        ),
        Outcome::Crashed { how } => format!("{how}; next: run it alone to see its output: {rerun}"),
        Outcome::DoesNotCompile { first_error } => format!(
            "{first_error}\nnext: fix this compile error first (`cargo build -p tiny-llm` shows them all)"
        ),
        Outcome::Missing => format!(
            "course.toml lists `{test}` but grader/tests has no such test for day {n} (a kit bug: please report it)"
        ),
    }
}

/// The text report: for each day a heading, one line per test, then the
/// details of every failure, then a per-day summary; a closing total line
/// `N passed, N failed` for the whole run.
pub fn render(results: &[(Day, DayResult)], style: Style) -> String {
    let mut s = String::new();
    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (day, r) in results {
        let _ = writeln!(s, "{}", style.paint("1", &day.label()));
        for t in &r.tests {
            let _ = writeln!(s, "  {} {}", style.outcome(&t.outcome), t.name);
        }
        let failures = r.tests.iter().filter(|t| {
            !matches!(
                t.outcome,
                Outcome::Pass | Outcome::Skipped { .. } | Outcome::NotImplemented { .. }
            )
        });
        let mut shown_compile_error = false;
        for (i, t) in failures.enumerate() {
            if i == 0 {
                let _ = writeln!(s);
            }
            if let Outcome::DoesNotCompile { .. } = t.outcome {
                // one compile error stops every test: say it once
                if shown_compile_error {
                    continue;
                }
                shown_compile_error = true;
                let _ = writeln!(s, "  {} every test:", style.paint("31", "x"));
                s.push_str(&indent(&next_action(day, &t.name, &t.outcome), "      "));
                continue;
            }
            let _ = writeln!(s, "  {} {}:", style.paint("31", "x"), t.name);
            s.push_str(&indent(&next_action(day, &t.name, &t.outcome), "      "));
        }
        let todo: Vec<&TestResult> = r
            .tests
            .iter()
            .filter(|t| matches!(t.outcome, Outcome::NotImplemented { .. }))
            .collect();
        if let Some(t) = todo.first() {
            let _ = writeln!(
                s,
                "\n  {} {} test(s) not implemented yet:",
                style.paint("33", "-"),
                todo.len()
            );
            s.push_str(&indent(&next_action(day, &t.name, &t.outcome), "      "));
        }
        let sk = r
            .tests
            .iter()
            .filter(|t| matches!(t.outcome, Outcome::Skipped { .. }))
            .count();
        if let Some(Outcome::Skipped { reason }) = r.tests.first().map(|t| &t.outcome) {
            let _ = writeln!(s, "  ({reason})");
        }
        let _ = writeln!(
            s,
            "{}: {} passed, {} failed{}\n",
            if day.number == 0 {
                "model checks".to_string()
            } else {
                format!("day {}", day.number)
            },
            r.passed(),
            r.failed() - sk,
            if sk > 0 {
                format!(", {sk} skipped")
            } else {
                String::new()
            }
        );
        passed += r.passed();
        failed += r.failed() - sk;
        skipped += sk;
    }
    let _ = write!(s, "{passed} passed, {failed} failed");
    if skipped > 0 {
        let _ = write!(s, ", {skipped} skipped");
    }
    s.push('\n');
    s
}

/// The JSON report (`--json`).
pub fn render_json(results: &[(Day, DayResult)]) -> String {
    let days: Vec<&DayResult> = results.iter().map(|(_, r)| r).collect();
    let passed: usize = days.iter().map(|d| d.passed()).sum();
    let total: usize = days.iter().map(|d| d.tests.len()).sum();
    serde_json::to_string_pretty(&serde_json::json!({
        "days": days,
        "passed": passed,
        "failed": total - passed,
    }))
    .expect("serialisable")
}
