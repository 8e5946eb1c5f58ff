//! `tiny-llm-chat`: chat with a real model (chat template, prefill, decode,
//! streaming output), then the prompt and decode speeds and the time to the
//! first token.
//!
//! Two paths ([`engine`]): week 2 (the default: day 8's model with a KV
//! cache, quantized layers when the checkpoint is quantized) and week 1
//! (`--week 1`: no KV cache, every token re-reads the sequence). When a
//! week-2 day is not implemented yet, the default falls back to week 1 with
//! a one-line note. `--quant 4|8` loads the model's quantized copy
//! ([`model_pick`]).
//!
//! Three ways in: a prompt (`tiny-llm-chat "Hi"`), a whole conversation
//! (`--messages FILE.json`, see [`messages`]), or an interactive chat that
//! keeps the history (`--chat`, one line a turn, from a terminal or a pipe;
//! see [`chat`]). `--show-prompt` prints the prompt the chat template made.
//!
//! It runs the learner's crate `tiny-llm` by default and the reference with
//! the feature `solutions`. `cargo xtask run` and `cargo xtask chat` build
//! and start it (and provision MLX and the default model first).
//!
//! Exit codes: 0 done; 1 an error (message on stderr); 2 bad arguments;
//! 3 the learner's code reached a `todo!()` ("day N is not implemented yet",
//! with that day's hint from course.toml).

mod chat;
mod engine;
mod limits;
mod messages;
mod model_pick;
mod not_implemented;
mod progress;
mod session;
mod speedups;

use anyhow::{bail, Context, Result};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::Parser;
use engine::{Attempt, Engine, Week1, Week2};
use mlx_rs::Dtype;
use model_pick::{Quant, Week, WeekChoice};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;
use tiny_llm_common::device::{self, DType, Device};
use tiny_llm_common::{ChatMessage, Checkpoint, Qwen2Config, Tokenizer};

#[cfg(not(feature = "solutions"))]
use tiny_llm as imp;
#[cfg(feature = "solutions")]
use tiny_llm_ref as imp;

use imp::loader::load_weights;
use imp::prompt_cache::PromptCache;
use imp::qwen2_week1::Qwen2ModelWeek1;
use imp::qwen2_week2::Qwen2ModelWeek2;
use imp::sampler::{Sampler, SamplerConfig};

/// The model used without `--model` (converted by `cargo xtask models fetch`).
const DEFAULT_MODEL: &str = "qwen2.5-coder-0.5b";

#[derive(Parser, Debug)]
#[command(
    name = "tiny-llm-chat",
    about = "Chat with a Qwen2-family model through tiny-llm (week 2: KV cache, quantized)"
)]
struct Args {
    /// The user's message (or give --messages, or --chat).
    #[arg(required_unless_present_any = ["messages", "chat"])]
    prompt: Option<String>,
    /// A whole conversation: a JSON list of {"role", "content"} messages as
    /// the OpenAI chat API writes them (or {"messages": [...]}); the model
    /// answers its last turn.
    #[arg(long, value_name = "FILE.json", conflicts_with_all = ["prompt", "system", "chat"])]
    messages: Option<PathBuf>,
    /// Chat: read one message a line from stdin (a terminal or a pipe),
    /// answer each with the whole history; `/reset` clears it, `/quit` ends.
    #[arg(long, conflicts_with = "prompt")]
    chat: bool,
    /// Print the prompt the chat template made (on stderr) before answering.
    #[arg(long)]
    show_prompt: bool,
    /// A model directory (config.json, model.safetensors, tokenizer.json), a
    /// model converted by `cargo xtask models fetch` (qwen2.5-coder-0.5b,
    /// smollm2-135m), or a Hugging Face id (Qwen/Qwen2-0.5B-Instruct-MLX).
    #[arg(long)]
    model: Option<String>,
    /// 4 or 8: the model's 4-bit or 8-bit copy (`<model>-4bit`, made by
    /// `cargo xtask models fetch`); none: the model as given, quantized
    /// when its config.json has `quantization` [default: none].
    #[arg(long, value_parser = PossibleValuesParser::new(Quant::NAMES).map(|s| Quant::parse(&s).expect("a --quant value")))]
    quant: Option<Quant>,
    /// 2: the KV cache (day 8) and quantized layers (days 9-10); 1: the
    /// week-1 path, no cache [default: 2, or 1 with a note while day 8 is
    /// not implemented].
    #[arg(long, value_parser = PossibleValuesParser::new(Week::NAMES).map(|s| Week::parse(&s).expect("a --week value")))]
    week: Option<Week>,
    /// Most tokens to generate (cut to what the model's context leaves).
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
    /// Keep the prompt cache (day 14) in FILE (safetensors): loaded at the
    /// start when it was saved for this model and dtype, saved after every
    /// answer. A later run whose prompt starts like the cached tokens reads
    /// only the rest.
    #[arg(long, value_name = "FILE")]
    prompt_cache: Option<PathBuf>,
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

/// The conversation to answer: `--messages`, or `--system` and the prompt.
fn conversation(args: &Args) -> Result<Vec<ChatMessage>> {
    if let Some(path) = &args.messages {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        return messages::parse(&text, &path.display().to_string()).map_err(anyhow::Error::msg);
    }
    let mut m = Vec::new();
    if let Some(system) = &args.system {
        m.push(ChatMessage::system(system.as_str()));
    }
    m.push(ChatMessage::user(args.prompt.clone().unwrap_or_default()));
    Ok(m)
}

/// The week-1 model: day 6's loader (which dequantizes a quantized
/// checkpoint) and day 5's model.
fn load_week1(
    dir: &std::path::Path,
    config: &Qwen2Config,
    dtype: Dtype,
) -> Result<Box<dyn Engine>> {
    let weights = load_weights(dir, dtype)
        .with_context(|| format!("loading the weights of {}", dir.display()))?;
    let model = Qwen2ModelWeek1::new(config, &weights, dtype)?;
    Ok(Box::new(Week1(model)))
}

/// What the week-2 engine is asked for besides the model.
struct Week2Wants<'a> {
    /// A prompt cache (chat, or `--prompt-cache`).
    prompt_cache: bool,
    /// `--prompt-cache FILE`.
    file: Option<&'a std::path::Path>,
}

/// The week-2 model: the checkpoint as stored (packed layers stay packed),
/// day 8's model and a two-token probe ([`engine::probe`]), then the
/// fastest kernels that run (days 11-12, their CUDA versions and day 10's
/// CUDA matmul first when MLX computes on a GPU,
/// [`speedups::choose_kernels`]) and,
/// when wanted, day 14's prompt cache ([`speedups::prompt_cache`]), each
/// left out with a note while its day is not implemented.
fn load_week2(
    dir: &std::path::Path,
    config: &Qwen2Config,
    dtype: Dtype,
    wants: &Week2Wants,
) -> Result<(Box<dyn Engine>, String)> {
    let checkpoint = Checkpoint::load(dir)
        .with_context(|| format!("loading the weights of {}", dir.display()))?;
    let model = Qwen2ModelWeek2::new(config, &checkpoint, dtype)?;
    drop(checkpoint);
    engine::probe(&model)?;
    let (model, note) = speedups::choose_kernels(model, on_gpu())?;
    if let Some(note) = note {
        eprintln!("{note}");
    }
    let label = format!(
        "week 2, KV cache, {}",
        speedups::kernels_name(model.kernels())
    );
    if !wants.prompt_cache {
        return Ok((Box::new(Week2::new(model)), label));
    }
    let mut cache = match speedups::prompt_cache(&model)? {
        Ok(cache) => cache,
        Err(todo) => {
            eprintln!("{}", speedups::no_prompt_cache_note(&todo));
            return Ok((Box::new(Week2::new(model)), label));
        }
    };
    let label = format!("{label}, prompt cache");
    let Some(path) = wants.file else {
        return Ok((Box::new(Week2::with_prompt_cache(model, cache)), label));
    };
    let identity = cache_identity(dir)?;
    if path.exists() {
        match PromptCache::load(path, &identity, dtype, model.new_cache()) {
            Ok(loaded) => {
                eprintln!(
                    "[prompt cache: {} tokens loaded from {}]",
                    loaded.len(),
                    path.display()
                );
                cache = loaded;
            }
            Err(e) => eprintln!(
                "[prompt cache: not loaded ({e}); starting empty, {} will be overwritten]",
                path.display()
            ),
        }
    }
    let file = engine::CacheFile {
        path: path.to_path_buf(),
        model: identity,
        dtype,
    };
    let engine = Week2::with_prompt_cache(model, cache).saving_to(file);
    Ok((Box::new(engine), label))
}

/// The model identity a saved prompt cache carries: the model directory's
/// name and its quantization (`qwen2.5-coder-0.5b-4bit (4-bit g64)`).
fn cache_identity(dir: &std::path::Path) -> Result<String> {
    let name = dir.file_name().map_or_else(
        || dir.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    Ok(match model_pick::quantization_of(dir)? {
        Some((group, bits)) => format!("{name} ({bits}-bit g{group})"),
        None => format!("{name} (not quantized)"),
    })
}

fn run(args: &Args) -> Result<()> {
    // a malformed --messages file is reported before the model loads
    let conversation = conversation(args)?;
    select_device(args.device)?;
    let on = if on_gpu() { Device::Gpu } else { Device::Cpu };
    let dtype: Dtype = device::mlx_dtype(args.dtype.unwrap_or(DType::default_for(on)));
    let dir = model_pick::pick(
        &model_dir(args.model.as_deref())?,
        args.quant.unwrap_or(Quant::None),
    )?;
    let week = WeekChoice::from_arg(args.week);

    let started = Instant::now();
    let config = Qwen2Config::from_file(&dir.join("config.json"))?;
    let tokenizer = Tokenizer::from_dir(&dir)?;
    let week1_label = "week 1, no KV cache".to_string();
    let wants = Week2Wants {
        prompt_cache: args.chat || args.prompt_cache.is_some(),
        file: args.prompt_cache.as_deref(),
    };
    let (engine, path) = match week.week {
        Week::One => (load_week1(&dir, &config, dtype)?, week1_label),
        Week::Two => match engine::try_week2(week, || load_week2(&dir, &config, dtype, &wants))? {
            Attempt::Ready(loaded) => loaded,
            Attempt::FallBack(todo) => {
                eprintln!("{}", engine::fallback_note(&todo));
                (load_week1(&dir, &config, dtype)?, week1_label)
            }
        },
    };
    // The sampler after the model, so that a learner's first missing day is
    // reported in the order the chat needs them: the loader (day 6), the
    // model (day 5), then sampling and generation (day 7).
    let sampler_config = SamplerConfig {
        temperature: args.temp,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
    };
    let sampler = Sampler::new(sampler_config)?;
    let quantized = match model_pick::quantization_of(&dir)? {
        Some((group, bits)) => format!("{bits}-bit g{group}, "),
        None => String::new(),
    };
    eprintln!(
        "[{} ({} layers, {quantized}{dtype:?}, {path}, MLX on the {}) loaded in {:.1} s]",
        dir.display(),
        config.num_hidden_layers,
        on.as_str().to_uppercase(),
        started.elapsed().as_secs_f64()
    );

    let week_one = engine.week() == Week::One;
    let reuses = engine.reuses_prompts();
    let mut session = session::Session {
        engine,
        tokenizer,
        sampler,
        options: session::Options {
            max_tokens: args.max_tokens,
            context: usize::try_from(config.max_position_embeddings).unwrap_or(0),
            show_prompt: args.show_prompt,
            shape: progress::Shape::of(&config),
            half: dtype != Dtype::Float32,
            gpu: on_gpu(),
        },
    };
    let stdout = std::io::stdout();
    if args.chat {
        eprintln!(
            "[chat: one message a line; /reset clears the history, /quit or end of input ends. {}]",
            if week_one {
                "Week 1 has no KV cache, so each turn re-reads the whole conversation: turns get \
                 slower as it grows"
            } else if reuses {
                "The prompt cache keeps the conversation's keys and values: each turn reads only \
                 what follows the cached prefix, then decodes from the KV cache"
            } else {
                "Each turn reads the whole conversation once, then decodes from the KV cache \
                 (reusing earlier turns is day 14's prompt cache)"
            }
        );
        let stdin = std::io::stdin();
        let mut stderr = std::io::stderr();
        let prompt: Option<&mut dyn std::io::Write> = if stdin.is_terminal() {
            Some(&mut stderr)
        } else {
            None
        };
        chat::run(stdin.lock(), args.system.as_deref(), prompt, |history| {
            session.answer(history, &mut stdout.lock())
        })?;
        return Ok(());
    }
    session.answer(&conversation, &mut stdout.lock())?;
    Ok(())
}
