//! `cargo xtask bench week1 [--model M] [--dtype D] [--reps N]`: the week-1
//! path (no KV cache) of the learner's code and of the reference, against
//! mlx-lm on the same weights, dtype and token ids.
//!
//! Steps: provision MLX (`setup`), the venv (mlx-lm) and the models; build
//! `tiny-llm-bench` (`bench/`) twice in release, the learner's crate and the
//! reference (`--features solutions`), copying each binary aside; write the
//! prompt ids once per model (`tiny-llm-bench prompt`); then run every
//! variant in its own process, the repetitions interleaved (A B C A B C ...),
//! and summarise each metric as median, min and max:
//!
//! - mlx-lm, reference, learner: prefill (128 and 512 tokens), decode (128
//!   new tokens after 128), time to first token, peak MLX memory; all with
//!   the optimised BLAS the kit uses (Debian's OpenBLAS);
//! - for f32 (the dtype whose matmuls use BLAS): mlx-lm and the reference
//!   again, prefill only, with the wheel's reference BLAS.
//!
//! The BLAS is chosen per process with `LD_PRELOAD`: `libmlx.so` finds its
//! BLAS through its own rpath (which `LD_LIBRARY_PATH` cannot redirect), but
//! a preloaded library's `sgemm_`/`cblas_sgemm` symbols win. Every run names
//! its BLAS explicitly, so the venv's mlx (reference BLAS as installed) and
//! the kit's (OpenBLAS swapped in by `setup`) run the same one.
//!
//! `cargo xtask bench week3` (module `week3`): serving throughput at 1-32
//! concurrent requests against llama.cpp's server and mlx-lm's batch
//! generator, with latency percentiles and the prefix cache's effect.
//!
//! `cargo xtask bench week2` (module `week2`): the week-2 path against
//! mlx-lm and llama.cpp on the same quantized weights, then (module `steps`)
//! the reference step by step (week 1, + KV cache, + 4-bit, + fused, +
//! flash attention, + int8), long-context decode, the prompt cache's second
//! turn, and issue 11's targets with pass/miss.
//!
//! Output: a table on stdout (ratios reference/mlx-lm and learner/reference),
//! `target/bench/week1-<model>-<dtype>.{json,md,svg}`, and `week1.svg` with
//! every configuration of the run. Process logs: `target/bench/logs/`.

use crate::{models, setup, util, venv};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

mod blas;
mod config;
mod engines;
mod llama_cpp;
mod llama_server;
mod output;
mod proc;
mod stats;
mod steps;
mod steps_output;
mod steps_report;
mod table;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests2;
#[cfg(test)]
mod tests_steps;
#[cfg(test)]
mod tests_week2_gpu;
#[cfg(test)]
mod tests_week3;
mod week2;
mod week2_gpu;
mod week2_gpu_report;
mod week2_report;
mod week3;
mod week3_report;
mod week3_workload;

use blas::*;
use config::*;
use engines::*;
use output::*;
use proc::*;
use stats::*;
use steps_output::*;
use steps_report::*;
use table::*;
pub use week2::Week2Args;
use week2::*;
use week2_gpu::*;
use week2_gpu_report::*;
use week2_report::*;
pub use week3::Week3Args;

/// Debian's OpenBLAS (pthreads), what `cargo xtask setup` links in.
const DEBIAN_OPENBLAS: &str = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0";

/// The configurations of the issue, run when neither --model nor --dtype is given.
const DEFAULT_CONFIGS: &[(&str, &str)] = &[
    ("smollm2-135m", "f32"),
    ("qwen2.5-coder-0.5b", "f32"),
    ("qwen2.5-coder-0.5b", "bf16"),
];

/// Prompt lengths of the prefill runs.
const PREFILL_LENGTHS: [usize; 2] = [128, 512];
/// Prompt length of the decode run.
const DECODE_PROMPT: usize = 128;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub cmd: BenchCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchCmd {
    /// The week-1 path (no KV cache): your code, the reference and mlx-lm.
    Week1(Week1Args),
    /// The week-2 path (KV cache, 4/8-bit weights): your code, the reference,
    /// mlx-lm and llama.cpp on the same weights.
    Week2(Week2Args),
    /// Serving throughput (issue 13): the reference engine, llama.cpp's
    /// server and mlx-lm's batch generator at 1-32 concurrent requests,
    /// latency percentiles, KV blocks and the prefix cache.
    Week3(Week3Args),
}

#[derive(clap::Args, Debug, Clone)]
pub struct Week1Args {
    /// smollm2-135m, qwen2.5-coder-0.5b or a model directory [default with
    /// --dtype: qwen2.5-coder-0.5b; with neither: the three configurations
    /// smollm2-135m f32, qwen2.5-coder-0.5b f32 and bf16].
    #[arg(long)]
    pub model: Option<String>,
    /// f32, bf16 or f16 [default with --model: f32].
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(tiny_llm_course::DType::NAMES))]
    pub dtype: Option<String>,
    /// Repetitions of every variant, interleaved.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Tokens generated in the decode run (the README's table uses 128).
    #[arg(long, default_value_t = 128)]
    pub new_tokens: usize,
    /// Skip the prefill runs with the wheel's reference BLAS.
    #[arg(long)]
    pub no_blas_compare: bool,
    /// Measure nothing: redraw the charts from the JSON files in target/bench.
    #[arg(long)]
    pub redraw: bool,
    /// MLX device: gpu or cpu (default: gpu when one is usable).
    #[arg(long, value_parser = crate::device::arg_parser())]
    pub device: Option<crate::device::Device>,
    /// Use the binaries of the last build (target/bench/bin) instead of
    /// building; with TINY_LLM_PYTHON naming a python that has mlx and mlx-lm
    /// (for a machine without a Rust toolchain, such as a lent GPU machine).
    #[arg(long)]
    pub no_build: bool,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    match &args.cmd {
        BenchCmd::Week1(a) => week1(a),
        BenchCmd::Week2(a) => week2(a),
        BenchCmd::Week3(a) => week3::week3(a),
    }
}

fn week1(args: &Week1Args) -> Result<()> {
    if args.redraw {
        let path = redraw()?;
        println!("redrew the charts: {}", path.display());
        return Ok(());
    }
    if args.reps == 0 {
        bail!("--reps must be at least 1");
    }
    let started = Instant::now();
    if !args.no_build {
        setup::run(&Default::default())?;
    }
    let device = crate::device::resolve(args.device)?;
    let python = match std::env::var_os("TINY_LLM_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => venv::ensure()?,
    };
    let mut configs_list = Vec::new();
    for (m, d) in configs(args)? {
        let mut c = resolve(&m, &d)?;
        c.device = device;
        configs_list.push(c);
    }
    // BLAS only serves MLX's CPU matmuls
    let blas = if device == crate::device::Device::Cpu {
        BlasLibs::find()?
    } else {
        None
    };
    let compare_blas = device == crate::device::Device::Cpu
        && !args.no_blas_compare
        && blas.as_ref().is_some_and(|b| b.reference.is_some());
    if !args.no_blas_compare && !compare_blas {
        eprintln!(
            "  .. no reference BLAS to compare with here (Linux venv only): skipping those runs"
        );
    }

    let mut bins = BTreeMap::new();
    let reference = match if args.no_build {
        prebuilt(Side::Reference)?
    } else {
        build(Side::Reference)?
    } {
        Built::Binary(p) => p,
        Built::DoesNotCompile(e) => bail!("the reference does not compile: {e}"),
    };
    bins.insert(Side::Reference, reference.clone());
    let learner_build = if args.no_build {
        prebuilt(Side::Learner)?
    } else {
        build(Side::Learner)?
    };
    if let Built::Binary(p) = &learner_build {
        bins.insert(Side::Learner, p.clone());
    }

    for config in &configs_list {
        let prompt = prompt_ids(&reference, config)?;
        let mut variants = vec![
            Variant {
                side: Side::MlxLm,
                blas: BlasKind::Optimised,
                decode: true,
            },
            Variant {
                side: Side::Reference,
                blas: BlasKind::Optimised,
                decode: true,
            },
            Variant {
                side: Side::Learner,
                blas: BlasKind::Optimised,
                decode: true,
            },
        ];
        // BLAS only serves f32 matmuls on MLX's CPU backend.
        if compare_blas && config.dtype == "f32" {
            variants.push(Variant {
                side: Side::MlxLm,
                blas: BlasKind::Reference,
                decode: false,
            });
            variants.push(Variant {
                side: Side::Reference,
                blas: BlasKind::Reference,
                decode: false,
            });
        }
        let mut reports: BTreeMap<Variant, Vec<Value>> = BTreeMap::new();
        if let Built::DoesNotCompile(e) = &learner_build {
            let learner = variants.iter().find(|v| v.side == Side::Learner).copied();
            if let Some(v) = learner {
                reports.insert(
                    v,
                    vec![json!({ "status": "does_not_compile", "message": e })],
                );
            }
        }
        let total = variants.len() * args.reps;
        let mut done = 0;
        eprintln!(
            "\n{}: {} variants x {} reps, interleaved (decode: {} new tokens after {DECODE_PROMPT})",
            config.label(),
            variants.len(),
            args.reps,
            args.new_tokens
        );
        for rep in 0..args.reps {
            for &v in &variants {
                done += 1;
                // A learner that is not implemented (or does not compile) stays so.
                if v.side == Side::Learner
                    && reports.get(&v).is_some_and(|r| {
                        r.iter()
                            .any(|r| r["status"] != "ok" && r["status"] != "error")
                    })
                {
                    continue;
                }
                eprintln!(
                    "  [{done}/{total}] rep {}/{} {} ... ({:.0} s so far)",
                    rep + 1,
                    args.reps,
                    v.key(),
                    started.elapsed().as_secs_f64()
                );
                let t = Instant::now();
                let cmd = command(
                    v,
                    config,
                    &prompt,
                    &python,
                    &bins,
                    blas.as_ref(),
                    args.new_tokens,
                );
                let log = bench_dir().join("logs").join(format!(
                    "{}-{}-rep{}.log",
                    config.stem(),
                    v.key().replace([' ', '(', ')'], ""),
                    rep + 1
                ));
                let report = run_process(cmd, &log)?;
                let what = match failure(std::slice::from_ref(&report)) {
                    Some(f) => f,
                    None => metrics(&report)
                        .iter()
                        .map(|(k, x)| format!("{k} {x:.2}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                eprintln!("      {:.0} s: {what}", t.elapsed().as_secs_f64());
                reports.entry(v).or_default().push(report);
            }
        }
        let summary = Summary::new(config.clone(), variants, reports);
        report_config(&summary, args, blas.as_ref())?;
    }
    // One chart with every configuration measured so far (this run's and
    // earlier runs' JSON files).
    let path = bench_dir().join("week1.svg");
    let docs = measured_docs();
    crate::bench_chart::draw(&chart_rows(&docs), &chart_caption(&docs), &path)?;
    println!(
        "chart of every configuration measured so far: {}",
        path.display()
    );
    eprintln!("bench done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
