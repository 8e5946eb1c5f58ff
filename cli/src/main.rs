//! `tiny-llm-chat`: one chat turn with a real model through the week-1 path
//! (chat template, prefill, decode without a KV cache, streaming output),
//! then the prompt and decode speeds.
//!
//! It runs the learner's crate `tiny-llm` by default and the reference with
//! the feature `solutions`. `cargo xtask run` builds and starts it (and
//! provisions MLX and the default model first).
//!
//! Exit codes: 0 done; 1 an error (message on stderr); 2 bad arguments;
//! 3 the learner's code reached a `todo!()` ("day N is not implemented yet",
//! with that day's hint from course.toml).

mod not_implemented;

use anyhow::{bail, Context, Result};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Parser;
use mlx_rs::Dtype;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use tiny_llm_common::device::{self, DType, Device};
use tiny_llm_common::{ChatMessage, Qwen2Config, Tokenizer};

#[cfg(not(feature = "solutions"))]
use tiny_llm as imp;
#[cfg(feature = "solutions")]
use tiny_llm_ref as imp;

use imp::generate::simple_generate;
use imp::loader::load_weights;
use imp::qwen2_week1::Qwen2ModelWeek1;
use imp::sampler::{Sampler, SamplerConfig};

/// The model used without `--model` (converted by `cargo xtask models fetch`).
const DEFAULT_MODEL: &str = "qwen2.5-coder-0.5b";

#[derive(Parser, Debug)]
#[command(
    name = "tiny-llm-chat",
    about = "Chat with a Qwen2-family model through tiny-llm's week-1 path"
)]
struct Args {
    /// The user's message.
    prompt: String,
    /// A model directory (config.json, model.safetensors, tokenizer.json), a
    /// model converted by `cargo xtask models fetch` (qwen2.5-coder-0.5b,
    /// smollm2-135m), or a Hugging Face id (Qwen/Qwen2-0.5B-Instruct-MLX).
    #[arg(long)]
    model: Option<String>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 256)]
    max_tokens: usize,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temp: f32,
    /// Nucleus sampling: keep the most likely tokens covering this probability.
    #[arg(long)]
    top_p: Option<f32>,
    /// Keep only the k most likely tokens.
    #[arg(long)]
    top_k: Option<usize>,
    /// Seed of the sampler's random keys.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Dtype of the weights and activations [default: f32 on the CPU, where
    /// MLX is many times slower in f16/bf16; bf16 on a GPU].
    #[arg(long, value_parser = PossibleValuesParser::new(DType::NAMES).map(|s| s.parse::<DType>().expect("a DType name")))]
    dtype: Option<DType>,
    /// A system message (the chat template's default otherwise).
    #[arg(long)]
    system: Option<String>,
    /// cpu or gpu [default: gpu when MLX has a usable one].
    #[arg(long, value_parser = PossibleValuesParser::new(Device::NAMES).map(|s| s.parse::<Device>().expect("a Device name")))]
    device: Option<Device>,
}

/// Makes the chosen device (default: the GPU when MLX has a usable one)
/// MLX's default; `--device gpu` without a GPU is an error, asked before MLX
/// is given the GPU (it ends the process when given one it lacks).
fn select_device(requested: Option<Device>) -> Result<()> {
    device::select(requested)?;
    Ok(())
}

fn main() -> ExitCode {
    not_implemented::install_hook();
    let args = Args::parse();
    match std::panic::catch_unwind(|| run(&args)) {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("\nerror: {e:#}");
            ExitCode::from(1)
        }
        Err(payload) => match not_implemented::day_of(&payload) {
            Some(todo) => {
                eprintln!("\n{}", not_implemented::message(&todo));
                ExitCode::from(3)
            }
            // the default panic message was printed by the hook
            None => ExitCode::from(101),
        },
    }
}

/// The model directory for `--model` (or the default model).
fn model_dir(spec: Option<&str>) -> Result<PathBuf> {
    let spec = spec.unwrap_or(DEFAULT_MODEL);
    let converted = tiny_llm_common::cache_dir().join("models").join(spec);
    if !spec.contains('/') && converted.join("config.json").is_file() {
        return Ok(converted);
    }
    if spec == DEFAULT_MODEL {
        bail!(
            "{} is missing: run `cargo xtask models fetch` (or `cargo xtask run`, which fetches it)",
            converted.display()
        );
    }
    Ok(tiny_llm_common::resolve_model(spec)?)
}

/// Whether MLX computes on a GPU by default (it does on Metal and CUDA
/// builds with a device; a CPU-only libmlx defaults to the CPU).
fn on_gpu() -> bool {
    matches!(
        mlx_rs::Device::default().get_type(),
        Ok(mlx_rs::DeviceType::Gpu)
    )
}

fn run(args: &Args) -> Result<()> {
    select_device(args.device)?;
    let on = if on_gpu() { Device::Gpu } else { Device::Cpu };
    let dtype: Dtype = device::mlx_dtype(args.dtype.unwrap_or(DType::default_for(on)));
    let dir = model_dir(args.model.as_deref())?;

    let started = Instant::now();
    let config = Qwen2Config::from_file(&dir.join("config.json"))?;
    let tokenizer = Tokenizer::from_dir(&dir)?;
    let weights = load_weights(&dir, dtype)
        .with_context(|| format!("loading the weights of {}", dir.display()))?;
    let model = Qwen2ModelWeek1::new(&config, &weights, dtype)?;
    drop(weights);
    // The sampler after the model, so that a learner's first missing day is
    // reported in the order the chat needs them: the loader (day 6), the
    // model (day 5), then sampling and generation (day 7).
    let sampler_config = SamplerConfig {
        temperature: args.temp,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
    };
    let mut sampler = Sampler::new(sampler_config)?;
    eprintln!(
        "[{} ({} layers, {dtype:?}) loaded in {:.1} s]",
        dir.display(),
        config.num_hidden_layers,
        started.elapsed().as_secs_f64()
    );

    let mut messages = Vec::new();
    if let Some(system) = &args.system {
        messages.push(ChatMessage::system(system.as_str()));
    }
    messages.push(ChatMessage::user(args.prompt.as_str()));
    let text = tokenizer.apply_chat_template(&messages, true)?;
    let prompt_ids = tokenizer.encode(&text, false)?;

    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let stats = simple_generate(
        &model,
        &tokenizer,
        &prompt_ids,
        args.max_tokens,
        &mut sampler,
        |piece| {
            // a closed pipe (`| head`) is not an error worth a panic
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        },
    )?;
    let _ = writeln!(out);
    drop(out);
    eprintln!(
        "[prompt: {} tokens, {:.2} tok/s | decode: {} tokens, {:.2} tok/s | {:?} | {:.1} s in all]",
        stats.prompt_tokens,
        stats.prefill_tokens_per_second(),
        stats.generated_tokens(),
        stats.decode_tokens_per_second(),
        stats.finish_reason,
        stats.prefill_seconds + stats.decode_seconds,
    );
    Ok(())
}
