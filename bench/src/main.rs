//! `tiny-llm-bench`: measures one week-1 or week-2 configuration and prints JSON.
//!
//! `cargo xtask bench week1` builds it twice (the learner's crate `tiny-llm`
//! by default, the reference `tiny-llm-ref` with the feature `solutions`),
//! starts one process per measured configuration, interleaves the
//! repetitions and compares them with mlx-lm (`xtask/python/bench_mlx_lm.py`,
//! which prints the same JSON).
//!
//! - `prompt`: tokenizes a fixed text with the model's tokenizer, repeated
//!   and cut to `--tokens` ids, and writes the ids; every side reads the same
//!   file, so every side runs exactly the same tokens.
//! - `run`: loads the model (the implementation's `loader::load_weights` and
//!   `Qwen2ModelWeek1::new`), warms up on 16 tokens, resets MLX's peak
//!   memory counter, then measures:
//!   - prefill of the first `L` prompt ids, for each `--prefill L`: ids in,
//!     greedy first token out (`forward_last`, `argmax`, read back);
//!   - decode: from the first `--decode-prompt` ids, `--new-tokens` greedy
//!     tokens, each by running the whole sequence again (week 1 has no KV
//!     cache). Time to first token is the first step; decode speed is
//!     `(new_tokens - 1) / (time from the first token to the last)`, as in
//!     `simple_generate`. No end-of-sequence stop: always `--new-tokens`.
//!   - peak memory: `mlx_rs::memory::peak_memory()` (bytes held by MLX's
//!     allocator, weights included) over the measured work.
//!
//! - `run --week 2`: the week-2 path instead (`measure2`): the checkpoint as
//!   stored (`Checkpoint::load`, quantized layers packed),
//!   `Qwen2ModelWeek2::new(.., Dtype::Float32)`, each prefill into a fresh KV
//!   cache, decode one token per step with the cache (`cargo xtask bench
//!   week2`).
//! - `bandwidth`: memory read bandwidth with N threads (no MLX), the
//!   denominator of week 2's roofline.
//!
//! A `todo!("day N: ...")` reached in the learner's code gives
//! `{"status": "not_implemented", "day": N, ...}`, not a crash; an error the
//! code returned gives `{"status": "error", ...}`.

mod bandwidth;
mod measure;
mod measure2;
mod profile;
mod prompt;
mod report;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use tiny_llm_common::device::{self, DType, Device};

#[cfg(not(feature = "solutions"))]
use tiny_llm as imp;
#[cfg(feature = "solutions")]
use tiny_llm_ref as imp;

#[derive(Parser)]
#[command(
    name = "tiny-llm-bench",
    about = "Measure one week-1 or week-2 configuration (JSON on stdout)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Tokenize the benchmark text with the model's tokenizer and write the ids.
    Prompt {
        /// The model directory (tokenizer.json).
        #[arg(long)]
        model: PathBuf,
        /// How many ids.
        #[arg(long, default_value_t = 512)]
        tokens: usize,
        /// Where to write `{"ids": [...]}`.
        #[arg(long)]
        out: PathBuf,
    },
    /// Measure prefill, decode, time to first token and peak memory.
    Run {
        /// The model directory (config.json, model.safetensors).
        #[arg(long)]
        model: PathBuf,
        /// f32, bf16 or f16.
        #[arg(long, default_value = "f32")]
        dtype: DType,
        /// The ids file written by `prompt`.
        #[arg(long)]
        prompt: PathBuf,
        /// Prompt lengths to prefill (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "128,512")]
        prefill: Vec<usize>,
        /// Prompt length of the decode run.
        #[arg(long, default_value_t = 128)]
        decode_prompt: usize,
        /// Tokens to generate in the decode run (0: no decode run).
        #[arg(long, default_value_t = 128)]
        new_tokens: usize,
        /// 1: the week-1 path (no KV cache; `--dtype` applies); 2: the
        /// week-2 path (KV cache, packed quantized layers, f32 activations).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=2))]
        week: u8,
    },
    /// Memory read bandwidth: threads streaming once through a large buffer.
    Bandwidth {
        /// Reader threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Buffer size in MiB (much larger than the caches).
        #[arg(long, default_value_t = 1024)]
        mib: usize,
        /// Timed passes (after one warm-up pass).
        #[arg(long, default_value_t = 5)]
        reps: usize,
    },
    /// Where one forward pass spends its time: graph building, the linear
    /// layers' matmuls alone (the floor), and the rest.
    Profile {
        /// The model directory.
        #[arg(long)]
        model: PathBuf,
        /// f32, bf16 or f16.
        #[arg(long, default_value = "f32")]
        dtype: DType,
        /// The ids file written by `prompt`.
        #[arg(long)]
        prompt: PathBuf,
        /// Sequence length of the pass (192: the middle of a 128 + 128 decode).
        #[arg(long, default_value_t = 192)]
        len: usize,
        /// Repetitions (the median is printed).
        #[arg(long, default_value_t = 5)]
        reps: usize,
    },
}

/// Makes the device `TINY_LLM_DEVICE` names (set by `cargo xtask bench
/// --device`; unset: the CPU) MLX's default; the GPU only when MLX has a
/// usable one (MLX ends the process when given a GPU it lacks).
fn select_device() -> Result<()> {
    let requested = Device::from_env()?.unwrap_or(Device::Cpu);
    device::select(Some(requested))?;
    Ok(())
}

fn main() -> ExitCode {
    if let Err(e) = select_device() {
        eprintln!("error: {e:#}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Prompt { model, tokens, out } => match prompt::write(&model, tokens, &out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::from(1)
            }
        },
        Cmd::Run {
            model,
            dtype,
            prompt,
            prefill,
            decode_prompt,
            new_tokens,
            week,
        } => {
            let plan = measure::Plan {
                model,
                dtype,
                prompt,
                prefill,
                decode_prompt,
                new_tokens,
            };
            let report = if week == 2 {
                report::caught(&plan.model, DType::F32, || {
                    if plan.dtype != DType::F32 {
                        anyhow::bail!(
                            "--dtype {} with --week 2: week 2 runs f32 activations on the CPU \
                             (quantized layers keep their stored scales); leave --dtype out",
                            plan.dtype.as_str()
                        );
                    }
                    measure2::run(&plan)
                })
            } else {
                report::caught(&plan.model, plan.dtype, || measure::run(&plan))
            };
            report::print(report)
        }
        Cmd::Bandwidth { threads, mib, reps } => {
            report::print(match bandwidth::run(threads, mib, reps) {
                Ok(v) => v,
                Err(e) => serde_json::json!({ "status": "error", "message": format!("{e:#}") }),
            })
        }
        Cmd::Profile {
            model,
            dtype,
            prompt,
            len,
            reps,
        } => {
            let report = report::caught(&model, dtype, || {
                profile::run(&model, dtype, &prompt, len, reps)
            });
            report::print(report)
        }
    }
}
