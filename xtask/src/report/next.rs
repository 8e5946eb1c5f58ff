//! The details of one failed test and the next thing to do about it.

use super::{evidence, Context, TestResult};
use crate::course::Day;
use crate::grade::{HangSite, Outcome};

/// The command that runs one test alone, with its whole output.
pub fn rerun(ctx: &Context, day: &Day, test: &str) -> String {
    format!(
        "cargo test -p {}{} --test {} {test} -- --exact --nocapture",
        ctx.grader_package,
        ctx.feature_flags,
        day.test_files().first().cloned().unwrap_or_default()
    )
}

/// `exercises/src/a.rs, exercises/src/b.rs` of a day.
pub fn files_of(ctx: &Context, day: &Day) -> String {
    if day.modules.is_empty() {
        return ctx.src_dir.clone();
    }
    day.modules
        .iter()
        .map(|m| format!("{}/{m}.rs", ctx.src_dir))
        .collect::<Vec<_>>()
        .join(", ")
}

fn site_text(ctx: &Context, site: &HangSite) -> String {
    let mut s = format!("`{}`", site.function);
    if let Some(l) = &site.location {
        let owner = ctx
            .day_of_file(l)
            .map(|d| format!(", day {d}"))
            .unwrap_or_default();
        s.push_str(&format!(" ({l}{owner})"));
    }
    s
}

/// What went wrong and what to do next, for a failure other than "not
/// implemented" and "does not compile" (those are told once per day).
pub fn details(ctx: &Context, day: &Day, t: &TestResult, day_tests: &[TestResult]) -> String {
    let n = day.number;
    let hint = format!("`cargo xtask hint day{n}`");
    let rerun = rerun(ctx, day, &t.name);
    match &t.outcome {
        Outcome::Pass
        | Outcome::Skipped { .. }
        | Outcome::NotImplemented { .. }
        | Outcome::DoesNotCompile { .. } => String::new(),
        Outcome::WrongNumbers { report, seed } => {
            let mut s = format!("{report}\n");
            for a in evidence::advice(&t.name, report, day_tests) {
                s.push_str(&format!("evidence: {a}\n"));
            }
            if let Some(seed) = seed.filter(|_| !report.contains("PROPTEST_SEED=")) {
                s.push_str(&format!(
                    "the property failed for the inputs of seed {seed}; rerun exactly them: PROPTEST_SEED={seed} {rerun}\n"
                ));
            }
            s.push_str(&format!(
                "next: compare each step with the formula in the doc comment ({hint})"
            ));
            s
        }
        Outcome::WrongShape { report } => format!(
            "{report}\nnext: check the shape and dtype your code returns against the doc comment (cast back to the input's dtype)"
        ),
        Outcome::ShouldFail { report } => format!(
            "{report}\nnext: check the input first and return an Err (`tiny_llm_common::Error::Shape` or `Invalid`, naming \
             what is wrong) before computing; the doc comment lists the errors"
        ),
        Outcome::ReturnedError {
            message,
            case,
            location,
        } => {
            let mut s = format!("{message}\n");
            if let Some(case) = case.as_ref().filter(|c| !message.contains(c.as_str())) {
                s.push_str(&format!("case: {case}\n"));
            }
            s.push_str("your line: none (an Err carries no line; its message says which check failed)");
            match location {
                Some(l) => s.push_str(&format!(", called from {l}\n")),
                None => s.push('\n'),
            }
            s.push_str(
                "next: this input is valid: find the check or the MLX call in your code that made this error",
            );
            s
        }
        Outcome::Panic {
            message,
            location,
            your_line,
        } => {
            let mut s = format!("{message}\n  at {}\n", location.as_deref().unwrap_or("?"));
            if let Some(l) = your_line {
                s.push_str(&format!("  from your code at {l}\n"));
            }
            s.push_str(&format!(
                "next: fix the panic (use the methods that return Result, e.g. `a.add(&b)?`, not `&a + &b`); to see it whole: {rerun}"
            ));
            s
        }
        Outcome::Timeout {
            seconds,
            site,
            same_as,
            shortened,
        } => match (site, same_as, shortened) {
            (Some(site), Some(first), _) => format!(
                "stuck in {} like `{first}`: stopped after {seconds} s\nnext: fix that loop first (see `{first}`)",
                site_text(ctx, site)
            ),
            (Some(site), None, _) => format!(
                "stopped after {seconds} s in {}\nnext: look for a loop that never ends there; run it alone: {rerun}",
                site_text(ctx, site)
            ),
            (None, Some(first), true) => format!(
                "stopped after {seconds} s: a short limit, since `{first}` hung and no debugger (gdb, eu-stack, lldb) \
                 could tell where\nnext: fix the loop `{first}` runs into first; this test may be fine (run it alone: {rerun})"
            ),
            _ => format!(
                "stopped after {seconds} s\nnext: look for a loop that never ends (or run it alone: {rerun})"
            ),
        },
        Outcome::Crashed { how } => format!("{how}\nnext: run it alone to see its output: {rerun}"),
        Outcome::Fixture { message } => format!(
            "{message}\nnot your code: a golden fixture of the kit is missing or damaged.\nnext: run `cargo xtask fixtures check`; \
             restore the files it names (`git checkout -- fixtures/`) or clone the kit again"
        ),
        Outcome::Missing => format!(
            "course.toml lists `{}` but the grader has no such test for day {n} (a kit bug: please report it)",
            t.name
        ),
    }
}

/// The "not implemented" block of a day: every `todo!()` reached, the file
/// and day that own it, and what to do: implement it, or (for an earlier
/// day's `todo!()`) take that day from the reference.
pub fn not_implemented(ctx: &Context, day: &Day, tests: &[&TestResult]) -> String {
    /// One `todo!()`, the day that owns it, and how many tests reached it.
    struct Reached<'a> {
        item: &'a Option<String>,
        file: &'a Option<String>,
        owner: Option<u32>,
        count: usize,
    }
    let mut reached: Vec<Reached> = Vec::new();
    for t in tests {
        if let Outcome::NotImplemented {
            item,
            file,
            owner_day,
        } = &t.outcome
        {
            match reached
                .iter_mut()
                .find(|r| r.item == item && r.file == file)
            {
                Some(r) => r.count += 1,
                None => reached.push(Reached {
                    item,
                    file,
                    owner: owner_day.or_else(|| file.as_deref().and_then(|f| ctx.day_of_file(f))),
                    count: 1,
                }),
            }
        }
    }
    let mut s = String::new();
    let mut earlier: Vec<u32> = Vec::new();
    for r in &reached {
        let what = r.item.as_deref().unwrap_or("todo!()");
        let place = r
            .file
            .as_deref()
            .map(|f| format!(" in {f}"))
            .unwrap_or_default();
        let tests = if r.count == 1 { "test" } else { "tests" };
        let count = r.count;
        match r.owner {
            Some(o) if o != day.number => {
                s.push_str(&format!(
                    "`{what}`{place} ({count} {tests}): day {o}'s, not day {}'s\n",
                    day.number
                ));
                earlier.push(o);
            }
            _ => s.push_str(&format!("`{what}`{place} ({count} {tests})\n")),
        }
    }
    if !earlier.is_empty() {
        earlier.sort_unstable();
        earlier.dedup();
        let days: Vec<String> = earlier.iter().map(|d| d.to_string()).collect();
        let first = earlier[0];
        s.push_str(&format!(
            "next: finish day {first} first (`cargo xtask check day{first}`), or grade day {} with {} from the reference: \
             `cargo xtask check day{} --ref {}`\n",
            day.number,
            if days.len() == 1 {
                format!("day {}", days[0])
            } else {
                format!("days {}", days.join(", "))
            },
            day.number,
            days.join(",")
        ));
    }
    if reached
        .iter()
        .any(|r| r.owner.is_none_or(|o| o == day.number))
    {
        s.push_str(&format!(
            "{} in {} (`cargo xtask hint day{}`)\n",
            if earlier.is_empty() {
                "next: implement them".to_string()
            } else {
                format!("and implement day {}'s own", day.number)
            },
            files_of(ctx, day),
            day.number
        ));
    }
    s
}
