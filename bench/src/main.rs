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
//!   `--kernels` routes its layers through days 11-12's kernels (and the
//!   int8-activation path); `--prefill-chunk` prefills the decode run's
//!   prompt in passes (how the long-context run fills 4096 tokens).
//! - `turns`: the time to first token of a conversation's second turn with
//!   the prompt cache against its first turn (`turns`).
//! - `engine`: the week-3 engine under a closed loop of clients on a
//!   workload file (`engine_run`; `cargo xtask bench week3`).
//! - `spec`: speculative decoding (day 20) with a draft model against the
//!   target alone: speed, acceptance rate, identical tokens (`spec`).
//! - `bandwidth`: memory read bandwidth with N threads (no MLX), the
//!   denominator of week 2's roofline.
//! - `matvec`: day 10's GPU matvec kernel alone on a model's layer shapes
//!   (bytes read / time against the GPU's memory bandwidth).
//!
//! A `todo!("day N: ...")` reached in the learner's code gives
//! `{"status": "not_implemented", "day": N, ...}`, not a crash; an error the
//! code returned gives `{"status": "error", ...}`.

mod bandwidth;
mod engine_run;
mod kernels;
mod matvec;
mod measure;
mod measure2;
mod profile;
mod prompt;
mod qmatmul_cpu;
mod report;
mod spec;
mod turns;

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
        /// Prompt lengths to prefill (comma-separated; `none`: no prefill run).
        #[arg(long, default_value = "128,512")]
        prefill: String,
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
        /// Week 2: the kernels the model runs: `none` (day 8's model), a
        /// comma list of `fused` (day 11), `flash` (day 12), `int8` (int8
        /// activations, beyond the course), `all` (= fused,flash), or `best`
        /// (all, dropping a day that is not implemented, and saying so;
        /// `best,int8`: the same with int8 activations).
        #[arg(long, default_value = "none")]
        kernels: String,
        /// Week 2: tokens per forward pass when the decode run's prompt is
        /// prefilled (0: one pass).
        #[arg(long, default_value_t = 0)]
        prefill_chunk: usize,
    },
    /// Time to first token of a second turn with the prompt cache, against
    /// the first turn (week 2).
    Turns {
        /// The model directory.
        #[arg(long)]
        model: PathBuf,
        /// The ids file written by `prompt`.
        #[arg(long)]
        prompt: PathBuf,
        /// Tokens of the conversation before the first turn's answer.
        #[arg(long, default_value_t = 1000)]
        history: usize,
        /// Tokens of the first turn's answer (decoded into the cache).
        #[arg(long, default_value_t = 16)]
        answer: usize,
        /// Tokens of the second turn's new message.
        #[arg(long, default_value_t = 24)]
        turn: usize,
        /// The kernels, as for `run --kernels`.
        #[arg(long, default_value = "best")]
        kernels: String,
    },
    /// Speculative decoding (day 20): a draft model proposes, the target
    /// verifies; tokens/s with and without it, and the acceptance rate.
    Spec {
        /// The target model directory.
        #[arg(long)]
        model: PathBuf,
        /// The draft model directory (the target's tokenizer).
        #[arg(long)]
        draft: PathBuf,
        /// The ids file written by `prompt`.
        #[arg(long)]
        prompt: PathBuf,
        /// Prompt length.
        #[arg(long, default_value_t = 32)]
        prompt_tokens: usize,
        /// Tokens to generate.
        #[arg(long, default_value_t = 64)]
        new_tokens: usize,
        /// Draft tokens per round (comma-separated: one run each).
        #[arg(long, default_value = "2,4")]
        k: String,
        /// The kernels both models run (as `run --week 2`).
        #[arg(long, default_value = "best")]
        kernels: String,
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
    /// The int8-activation CPU kernel alone: one decode step's layers of a
    /// Qwen2 model (random 4-bit weights) at M activation rows each.
    Qmatmul {
        /// qwen2.5-0.5b or qwen2.5-1.5b (their layer shapes).
        #[arg(long, default_value = "qwen2.5-0.5b")]
        model: String,
        /// Activation rows per step (comma-separated; put 1 first for the ratios).
        #[arg(long, default_value = "1,2,4,8,16")]
        m: String,
        /// Timed steps per M (the median is reported).
        #[arg(long, default_value_t = 7)]
        reps: usize,
    },
    /// The decode matvec kernel's bandwidth on a GPU: day 10's
    /// `qmatmul_gpu::quantized_matmul` alone at M = 1 on the model's layer
    /// shapes (4-bit g64, bf16), GB/s and the fraction of `--peak-gbs`.
    Matvec {
        /// qwen2.5-0.5b or qwen2.5-1.5b (their layer shapes).
        #[arg(long, default_value = "qwen2.5-0.5b")]
        model: String,
        /// Untimed calls per shape first (the first compiles the kernel).
        #[arg(long, default_value_t = 10)]
        warmup: usize,
        /// Products per timed batch (evaluated together).
        #[arg(long, default_value_t = 200)]
        calls: usize,
        /// Timed batches per shape (the best is kept).
        #[arg(long, default_value_t = 5)]
        reps: usize,
        /// The GPU's memory bandwidth in GB/s (H200: 4800).
        #[arg(long, default_value_t = 4800.0)]
        peak_gbs: f64,
    },
    /// The week-3 engine under a closed loop of `--concurrency` clients on a
    /// workload file (`cargo xtask bench week3`); one JSON object.
    Engine {
        /// The model directory.
        #[arg(long)]
        model: PathBuf,
        /// The workload: `{"seed", "requests": [{"prompt": [ids], "max_tokens"}]}`.
        #[arg(long)]
        workload: PathBuf,
        /// Client threads, each with one request in flight.
        #[arg(long)]
        concurrency: usize,
        /// `on` or `off` (the engine has no prefix cache yet: `on` is an error).
        #[arg(long, default_value = "off")]
        prefix_cache: String,
        /// The scheduler's token budget per step (prefill chunks plus decodes).
        #[arg(long, default_value_t = 512)]
        max_batch_tokens: usize,
        /// The kernels, as for `run --kernels`.
        #[arg(long, default_value = "none")]
        kernels: String,
        /// f32 (the CPU), or bf16 / f16 on a GPU.
        #[arg(long, default_value = "f32")]
        dtype: DType,
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

/// `--prefill`: comma-separated lengths, or `none`.
fn parse_lengths(spec: &str) -> Result<Vec<usize>> {
    if spec.trim() == "none" {
        return Ok(Vec::new());
    }
    spec.split(',')
        .map(|s| {
            s.trim().parse().map_err(|_| {
                anyhow::anyhow!("--prefill: {s:?} is not a length (expected e.g. 128,512 or none)")
            })
        })
        .collect()
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
            kernels,
            prefill_chunk,
        } => {
            let report = report::caught(&model.clone(), dtype, || {
                let plan = measure::Plan {
                    model,
                    dtype,
                    prompt,
                    prefill: parse_lengths(&prefill)?,
                    decode_prompt,
                    new_tokens,
                    kernels: kernels::parse(&kernels)?,
                    prefill_chunk,
                };
                if week == 2 {
                    let on_gpu = Device::from_env()? == Some(Device::Gpu);
                    if plan.dtype != DType::F32 && !on_gpu {
                        anyhow::bail!(
                            "--dtype {} with --week 2 on the CPU: week 2 runs f32 activations \
                             there (quantized layers keep their stored scales); leave --dtype \
                             out, or run on a GPU (TINY_LLM_DEVICE=gpu)",
                            plan.dtype.as_str()
                        );
                    }
                    measure2::run(&plan)
                } else {
                    if plan.kernels != kernels::KernelRequest::Exact(Default::default())
                        || plan.prefill_chunk != 0
                    {
                        anyhow::bail!(
                            "--kernels and --prefill-chunk are week 2's (--week 2); week 1 has \
                             neither a KV cache nor kernels to choose"
                        );
                    }
                    measure::run(&plan)
                }
            });
            report::print(report)
        }
        Cmd::Turns {
            model,
            prompt,
            history,
            answer,
            turn,
            kernels,
        } => {
            let report = report::caught(&model, DType::F32, || {
                turns::run(&turns::TurnsPlan {
                    model: &model,
                    prompt: &prompt,
                    kernels: kernels::parse(&kernels)?,
                    history,
                    answer,
                    turn,
                })
            });
            report::print(report)
        }
        Cmd::Spec {
            model,
            draft,
            prompt,
            prompt_tokens,
            new_tokens,
            k,
            kernels,
        } => {
            let report = report::caught(&model, DType::F32, || {
                let ks = k
                    .split(',')
                    .map(|x| x.trim().parse::<usize>())
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| anyhow::anyhow!("--k {k:?}: {e}"))?;
                spec::run(&spec::SpecPlan {
                    model: &model,
                    draft: &draft,
                    prompt: &prompt,
                    prompt_tokens,
                    new_tokens,
                    ks,
                    kernels: kernels::parse(&kernels)?,
                })
            });
            report::print(report)
        }
        Cmd::Bandwidth { threads, mib, reps } => {
            report::print(match bandwidth::run(threads, mib, reps) {
                Ok(v) => v,
                Err(e) => serde_json::json!({ "status": "error", "message": format!("{e:#}") }),
            })
        }
        Cmd::Qmatmul { model, m, reps } => {
            let run = || -> anyhow::Result<serde_json::Value> {
                let ms = m
                    .split(',')
                    .map(|v| v.trim().parse::<usize>())
                    .collect::<Result<Vec<_>, _>>()?;
                qmatmul_cpu::run(&model, &ms, reps)
            };
            report::print(match run() {
                Ok(v) => v,
                Err(e) => serde_json::json!({ "status": "error", "message": format!("{e:#}") }),
            })
        }
        Cmd::Matvec {
            model,
            warmup,
            calls,
            reps,
            peak_gbs,
        } => {
            let report = report::caught(std::path::Path::new(&model), DType::Bf16, || {
                matvec::run(&model, warmup, calls, reps, peak_gbs)
            });
            report::print(report)
        }
        Cmd::Engine {
            model,
            workload,
            concurrency,
            prefix_cache,
            max_batch_tokens,
            kernels,
            dtype,
        } => {
            let report = report::caught(&model.clone(), dtype, || {
                let prefix_cache = match prefix_cache.as_str() {
                    "on" => true,
                    "off" => false,
                    other => anyhow::bail!("--prefix-cache {other:?}: expected on or off"),
                };
                let on_gpu = Device::from_env()? == Some(Device::Gpu);
                if dtype != DType::F32 && !on_gpu {
                    anyhow::bail!(
                        "--dtype {} on the CPU: the week-2 model runs f32 activations there; \
                         leave --dtype out, or run on a GPU (TINY_LLM_DEVICE=gpu)",
                        dtype.as_str()
                    );
                }
                engine_run::run(&engine_run::EnginePlan {
                    model,
                    workload,
                    concurrency,
                    max_batch_tokens,
                    prefix_cache,
                    kernels: kernels::parse(&kernels)?,
                    dtype: device::mlx_dtype(dtype),
                })
            });
            report::print(report)
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
