//! `cargo xtask swap-check`: the per-day swap compiles for every subset.
//!
//! A learner may take any set of days from the reference (`--ref 2,5`, the
//! `tiny-llm/ref-dayN` features) and keep their own code for the others, so
//! every type that crosses a day boundary must have one home
//! (`tiny-llm-common`). Checking all 2^7 subsets is too slow; these cover the
//! boundaries of every day in both directions: for each day N, the grader's
//! tests with only day N from the reference (the reference's day meets the
//! learner's others), and with every day but N from the reference (the
//! learner's day meets the reference's others). Last, the reference alone,
//! without the learner's crate (`--no-default-features --features
//! solutions`). All are `cargo check`s sharing the workspace's target dir.

use crate::course::Course;
use crate::util;
use anyhow::{Context, Result};
use std::process::{Command, Stdio};
use std::time::Instant;

/// One `cargo check` of the grader's tests.
struct Check {
    label: String,
    no_default_features: bool,
    features: Vec<String>,
}

/// The checks for a course whose days are `days` (in course order).
fn checks(days: &[u32]) -> Vec<Check> {
    let feature = |d: &u32| format!("tiny-llm/ref-day{d}");
    let mut out = Vec::new();
    for n in days {
        out.push(Check {
            label: format!("only day {n} from the reference"),
            no_default_features: false,
            features: vec![feature(n)],
        });
        out.push(Check {
            label: format!("every day but {n} from the reference"),
            no_default_features: false,
            features: days.iter().filter(|d| *d != n).map(feature).collect(),
        });
    }
    out.push(Check {
        label: "the reference alone (no learner's crate)".into(),
        no_default_features: true,
        features: vec!["solutions".into()],
    });
    out
}

/// Runs every check (even after a failure), printing each as it finishes;
/// `Ok(true)` when all compiled.
pub fn run() -> Result<bool> {
    let root = util::project_root();
    let course = Course::load(&root.join("course.toml"))?;
    let days: Vec<u32> = course.days.iter().map(|d| d.number).collect();
    let all = checks(&days);
    let mut failed = Vec::new();
    for (i, c) in all.iter().enumerate() {
        let t = Instant::now();
        let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        cmd.current_dir(&root).args([
            "check",
            "--quiet",
            "--message-format=short",
            "-p",
            "tiny-llm-grader",
            "--tests",
        ]);
        if c.no_default_features {
            cmd.arg("--no-default-features");
        }
        if !c.features.is_empty() {
            cmd.arg("--features").arg(c.features.join(","));
        }
        let out = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .context("running cargo check -p tiny-llm-grader --tests")?;
        let ok = out.status.success();
        eprintln!(
            "  [{:>2}/{}] {} {} ({:.0} s)",
            i + 1,
            all.len(),
            if ok { "ok  " } else { "FAIL" },
            c.label,
            t.elapsed().as_secs_f64()
        );
        if !ok {
            let text = String::from_utf8_lossy(&out.stderr);
            for line in text.lines().filter(|l| l.contains("error")).take(5) {
                eprintln!("         {line}");
            }
            eprintln!("         features: {}", c.features.join(","));
            failed.push(c.label.clone());
        }
    }
    println!(
        "swap-check: {} of {} subsets compile",
        all.len() - failed.len(),
        all.len()
    );
    Ok(failed.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_checks_per_day_plus_the_reference_alone() {
        let c = checks(&[1, 2, 3]);
        assert_eq!(c.len(), 7);
        assert_eq!(c[0].features, ["tiny-llm/ref-day1"]);
        assert_eq!(c[1].features, ["tiny-llm/ref-day2", "tiny-llm/ref-day3"]);
        assert_eq!(c[5].features, ["tiny-llm/ref-day1", "tiny-llm/ref-day2"]);
        assert!(c.iter().take(6).all(|c| !c.no_default_features));
        assert!(c[6].no_default_features);
        assert_eq!(c[6].features, ["solutions"]);
    }
}
