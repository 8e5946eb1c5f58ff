//! `cargo xtask ci`: everything CI checks, in order, with a closing
//! `N passed, N failed` line. This is the README's test command.

use crate::check::{self, CheckArgs};
use crate::{fixtures, setup, tidy, util};
use anyhow::Result;
use std::process::Command;
use std::time::Instant;

fn cargo() -> Command {
    let mut c = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    c.current_dir(util::project_root());
    c
}

fn check_args(target: &str, solution: bool, expect_stubs: bool) -> CheckArgs {
    CheckArgs {
        target: target.into(),
        solution,
        expect_stubs,
        device: Some(crate::device::Device::Cpu),
        ..Default::default()
    }
}

/// Runs every stage even after a failure, then reports them all.
pub fn run() -> Result<bool> {
    let mut results: Vec<(&str, bool, f64)> = Vec::new();
    let mut stage = |name: &'static str, f: &mut dyn FnMut() -> Result<bool>| {
        eprintln!("\n==> {name}");
        let t = Instant::now();
        let ok = f().unwrap_or_else(|e| {
            eprintln!("error: {e:#}");
            false
        });
        results.push((name, ok, t.elapsed().as_secs_f64()));
    };
    stage("setup (MLX for Linux)", &mut || {
        setup::run(&Default::default()).map(|_| true)
    });
    stage("fixtures check", &mut || {
        fixtures::check(true).map(|_| true)
    });
    stage("tidy: exercises mirror solutions", &mut || {
        tidy::run(&Default::default())
    });
    stage("every day against the reference", &mut || {
        check::run(&check_args("all", true, false))
    });
    stage(
        "every day against the stubs (must be not implemented)",
        &mut || check::run(&check_args("all", false, true)),
    );
    stage("day swap compiles for every subset", &mut || {
        crate::swap_check::run()
    });
    stage("real models against mlx-lm", &mut || {
        check::run(&check_args("models", true, false))
    });
    stage(
        "day 18: the server against the openai client and curl",
        &mut || crate::serve::test(&crate::serve::ServeTestArgs { model: None }),
    );
    stage(
        "unit tests (xtask, common, cli, grader internals)",
        &mut || {
            let a = cargo()
                .args([
                    "test",
                    "-p",
                    "xtask",
                    "-p",
                    "tiny-llm-common",
                    "-p",
                    "tiny-llm-cli",
                ])
                .status()?;
            let b = cargo()
                .args(["test", "-p", "tiny-llm-grader", "--lib"])
                .status()?;
            Ok(a.success() && b.success())
        },
    );
    stage("GPU-only tests (skipped without a GPU)", &mut || {
        // --nocapture shows their "skipped: no GPU" line on a CPU machine
        let s = cargo()
            .args([
                "test",
                "-p",
                "tiny-llm-common",
                "--test",
                "cuda_kernel",
                "--",
                "--nocapture",
            ])
            .status()?;
        // The GPU tests (days 10-12 and 16, `gpu_*`): week 2's CUDA kernels
        // against the week-1 ops, the model on the GPU against mlx-lm, day
        // 16's paged attention against dense attention; their argument checks
        // run everywhere.
        let mut g = cargo();
        g.args([
            "test",
            "-p",
            "tiny-llm-grader",
            "--no-default-features",
            "--features",
            "solutions",
        ]);
        for day in ["day10", "day11", "day12", "day16"] {
            g.args(["--test", day]);
        }
        let g = g.args(["--", "gpu_", "--nocapture"]).status()?;
        Ok(s.success() && g.success())
    });
    stage("clippy -D warnings", &mut || {
        let a = cargo()
            .args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ])
            .status()?;
        let b = cargo()
            .args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--features",
                "tiny-llm-grader/solutions",
                "--",
                "-D",
                "warnings",
            ])
            .status()?;
        Ok(a.success() && b.success())
    });
    stage("rustfmt --check", &mut || {
        Ok(cargo()
            .args(["fmt", "--all", "--check"])
            .status()?
            .success())
    });
    eprintln!("\nCI summary:");
    for (name, ok, secs) in &results {
        eprintln!(
            "  {} {name} ({secs:.0} s)",
            if *ok { "ok  " } else { "FAIL" }
        );
    }
    let passed = results.iter().filter(|r| r.1).count();
    println!("ci: {passed} passed, {} failed", results.len() - passed);
    Ok(passed == results.len())
}
