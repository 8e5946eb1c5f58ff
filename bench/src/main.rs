//! `tiny-llm-bench`: measures one week-1 configuration and prints JSON.
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
//! A `todo!("day N: ...")` reached in the learner's code gives
//! `{"status": "not_implemented", "day": N, ...}`, not a crash; an error the
//! code returned gives `{"status": "error", ...}`.

use clap::{Parser, Subcommand};
use mlx_rs::{Array, Dtype};
use serde_json::{json, Value};
use std::any::Any;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use tiny_llm_common::{Qwen2Config, Tokenizer};

#[cfg(not(feature = "solutions"))]
use tiny_llm as imp;
#[cfg(feature = "solutions")]
use tiny_llm_ref as imp;

use imp::loader::load_weights;
use imp::qwen2_week1::Qwen2ModelWeek1;

/// Which implementation this binary measures.
const IMPLEMENTATION: &str = if cfg!(feature = "solutions") {
    "reference"
} else {
    "learner"
};

/// The benchmark text: plain English prose, repeated until the prompt is
/// long enough. Written for this kit.
const PROMPT_TEXT: &str =
    "The harbour town wakes before the sun. Fishing boats slide out past the \
breakwater while the bakery on the corner pulls the first trays of bread from its ovens, and \
the smell drifts down to the quay where gulls wait on the bollards. By seven the ferry has \
left for the islands, carrying a schoolteacher, two carpenters with their tools, a crate of \
oranges and a dog that belongs to nobody in particular. The harbour master writes each \
departure in a ledger that his grandfather started, in the same blue ink, because some \
habits are worth more than the time they save. In the afternoon the wind turns, the boats \
come back heavier than they left, and the market fills with voices bargaining over mackerel, \
crab and the occasional surprised octopus. When the lamps come on, the town counts its day \
in fish, in fares and in stories, and goes to sleep with the sea still talking. ";

/// Tokens of the warm-up pass (materialises the weights, fills the allocator).
const WARMUP_TOKENS: usize = 16;

#[derive(Parser)]
#[command(
    name = "tiny-llm-bench",
    about = "Measure one week-1 configuration (JSON on stdout)"
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
        dtype: String,
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
    },
    /// Where one forward pass spends its time: graph building, the linear
    /// layers' matmuls alone (the floor), and the rest.
    Profile {
        /// The model directory.
        #[arg(long)]
        model: PathBuf,
        /// f32, bf16 or f16.
        #[arg(long, default_value = "f32")]
        dtype: String,
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

/// Makes `TINY_LLM_DEVICE` (`gpu` or `cpu`, set by `cargo xtask bench
/// --device`) MLX's default device; the GPU only after `gpu_available`
/// (MLX ends the process when given a GPU it lacks).
fn select_device() -> Result<(), String> {
    match std::env::var("TINY_LLM_DEVICE").as_deref() {
        Ok("gpu") if !tiny_llm_common::gpu::gpu_available() => {
            Err("TINY_LLM_DEVICE=gpu but MLX has no usable GPU here".into())
        }
        Ok("gpu") => {
            mlx_rs::Device::set_default(&mlx_rs::Device::gpu());
            Ok(())
        }
        _ => {
            mlx_rs::Device::set_default(&mlx_rs::Device::cpu());
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    if let Err(e) = select_device() {
        eprintln!("error: {e}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Prompt { model, tokens, out } => match write_prompt(&model, tokens, &out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e}");
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
        } => {
            let plan = Plan {
                model,
                dtype,
                prompt,
                prefill,
                decode_prompt,
                new_tokens,
            };
            let report = measure_caught(&plan);
            print_report(report)
        }
        Cmd::Profile {
            model,
            dtype,
            prompt,
            len,
            reps,
        } => {
            let report = caught(&model, &dtype, || {
                profile(&model, &dtype, &prompt, len, reps)
            });
            print_report(report)
        }
    }
}

fn print_report(report: Value) -> ExitCode {
    println!("{report}");
    if report["status"] == "error" {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Tokenizes [`PROMPT_TEXT`] (repeated) and writes the first `tokens` ids.
fn write_prompt(model: &Path, tokens: usize, out: &Path) -> Result<(), String> {
    let tokenizer = Tokenizer::from_dir(model).map_err(|e| e.to_string())?;
    let one = tokenizer
        .encode(PROMPT_TEXT, false)
        .map_err(|e| e.to_string())?;
    if one.is_empty() {
        return Err("the benchmark text encodes to no tokens".into());
    }
    let repeats = tokens.div_ceil(one.len()) + 1;
    let ids = tokenizer
        .encode(&PROMPT_TEXT.repeat(repeats), false)
        .map_err(|e| e.to_string())?;
    let ids = &ids[..tokens.min(ids.len())];
    let doc = json!({ "model": model.display().to_string(), "ids": ids });
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    std::fs::write(out, format!("{doc}\n")).map_err(|e| format!("{}: {e}", out.display()))
}

/// What `run` measures.
struct Plan {
    model: PathBuf,
    dtype: String,
    prompt: PathBuf,
    prefill: Vec<usize>,
    decode_prompt: usize,
    new_tokens: usize,
}

/// The text of a panic payload.
fn payload_text(payload: &(dyn Any + Send)) -> Option<&str> {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
}

/// The day and item of a `todo!("day N: item")` message; `None` for other
/// panics.
fn parse_todo(msg: &str) -> Option<(Option<u32>, String)> {
    let rest = msg.strip_prefix("not yet implemented")?;
    let rest = rest.trim_start_matches(':').trim();
    let Some(after) = rest.strip_prefix("day ") else {
        return Some((None, rest.to_string()));
    };
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    let item = after[digits.len()..].trim_start_matches(':').trim();
    Some((digits.parse().ok(), item.to_string()))
}

/// [`measure`], with `todo!()` panics turned into "not implemented" and any
/// other panic into an error report.
fn measure_caught(plan: &Plan) -> Value {
    caught(&plan.model, &plan.dtype, || measure(plan))
}

/// Runs `f`, turning `todo!()` panics into "not implemented" and any other
/// panic into an error report.
fn caught(model: &Path, dtype: &str, f: impl FnOnce() -> Result<Value, String>) -> Value {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if payload_text(info.payload()).and_then(parse_todo).is_none() {
            default(info);
        }
    }));
    let base = json!({
        "implementation": IMPLEMENTATION,
        "model": model.display().to_string(),
        "dtype": dtype,
    });
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let mut report = match outcome {
        Ok(Ok(v)) => v,
        Ok(Err(e)) => json!({ "status": "error", "message": e }),
        Err(payload) => match payload_text(payload.as_ref()) {
            Some(msg) => match parse_todo(msg) {
                Some((day, item)) => json!({
                    "status": "not_implemented",
                    "day": day,
                    "item": item,
                    "message": msg,
                }),
                None => json!({ "status": "error", "message": format!("panic: {msg}") }),
            },
            None => json!({ "status": "error", "message": "panic" }),
        },
    };
    for (k, v) in base.as_object().expect("an object") {
        report[k] = v.clone();
    }
    report
}

fn parse_dtype(s: &str) -> Result<Dtype, String> {
    match s {
        "f32" | "float32" => Ok(Dtype::Float32),
        "bf16" | "bfloat16" => Ok(Dtype::Bfloat16),
        "f16" | "float16" => Ok(Dtype::Float16),
        _ => Err(format!("unknown dtype {s:?} (f32, bf16, f16)")),
    }
}

fn read_ids(path: &Path) -> Result<Vec<i32>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    doc["ids"]
        .as_array()
        .ok_or_else(|| format!("{}: no `ids` list", path.display()))?
        .iter()
        .map(|v| {
            v.as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .ok_or_else(|| format!("{}: bad id {v}", path.display()))
        })
        .collect()
}

/// The process's peak resident set (`VmHWM`), in bytes, for information.
fn max_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The greedy next token after `ids`: the model's last-position logits,
/// `argmax`, read back to the host (which evaluates the graph).
fn next_token(model: &Qwen2ModelWeek1, ids: &[i32]) -> Result<i32, String> {
    let input = Array::from_slice(ids, &[1, ids.len() as i32]);
    let logits = model.forward_last(&input).map_err(|e| e.to_string())?;
    let next = mlx_rs::ops::indexing::argmax_axis(&logits, -1, false).map_err(|e| e.to_string())?;
    let id: u32 = next.try_item_cast().map_err(|e| e.to_string())?;
    Ok(id as i32)
}

fn measure(plan: &Plan) -> Result<Value, String> {
    let dtype = parse_dtype(&plan.dtype)?;
    let ids = read_ids(&plan.prompt)?;
    let longest = plan
        .prefill
        .iter()
        .copied()
        .chain([plan.decode_prompt, WARMUP_TOKENS])
        .max()
        .unwrap_or(0);
    if ids.len() < longest {
        return Err(format!(
            "{} has {} ids, {longest} are needed",
            plan.prompt.display(),
            ids.len()
        ));
    }

    let started = Instant::now();
    let config =
        Qwen2Config::from_file(&plan.model.join("config.json")).map_err(|e| e.to_string())?;
    let weights = load_weights(&plan.model, dtype).map_err(|e| format!("load_weights: {e}"))?;
    let model = Qwen2ModelWeek1::new(&config, &weights, dtype)
        .map_err(|e| format!("Qwen2ModelWeek1::new: {e}"))?;
    drop(weights);
    // Warm-up: materialises the (lazily cast) weights and warms the allocator.
    next_token(&model, &ids[..WARMUP_TOKENS])?;
    let load_seconds = started.elapsed().as_secs_f64();
    mlx_rs::memory::reset_peak_memory().map_err(|e| e.to_string())?;

    let mut prefill = Vec::new();
    for &len in &plan.prefill {
        let t = Instant::now();
        let token = next_token(&model, &ids[..len])?;
        let seconds = t.elapsed().as_secs_f64();
        eprintln!("  prefill {len}: {seconds:.3} s");
        prefill.push(json!({ "tokens": len, "seconds": seconds, "first_token": token }));
    }

    let decode = if plan.new_tokens > 0 {
        let mut seq: Vec<i32> = ids[..plan.decode_prompt].to_vec();
        let mut generated = Vec::with_capacity(plan.new_tokens);
        let start = Instant::now();
        let mut first_at = start;
        for step in 0..plan.new_tokens {
            let token = next_token(&model, &seq)?;
            if step == 0 {
                first_at = Instant::now();
            }
            generated.push(token);
            seq.push(token);
            if (step + 1) % 16 == 0 {
                eprintln!(
                    "  decode {}/{}: {:.1} s",
                    step + 1,
                    plan.new_tokens,
                    start.elapsed().as_secs_f64()
                );
            }
        }
        json!({
            "prompt_tokens": plan.decode_prompt,
            "new_tokens": plan.new_tokens,
            "ttft_seconds": (first_at - start).as_secs_f64(),
            "decode_seconds": first_at.elapsed().as_secs_f64(),
            "tokens": generated,
        })
    } else {
        Value::Null
    };

    let peak = mlx_rs::memory::peak_memory().map_err(|e| e.to_string())?;
    Ok(json!({
        "status": "ok",
        "load_seconds": load_seconds,
        "prefill": prefill,
        "decode": decode,
        "peak_memory_bytes": peak,
        "max_rss_bytes": max_rss_bytes(),
    }))
}

/// Loads the model of `dir` through the implementation under test.
fn load_model(dir: &Path, dtype: Dtype) -> Result<(Qwen2Config, Qwen2ModelWeek1), String> {
    let config = Qwen2Config::from_file(&dir.join("config.json")).map_err(|e| e.to_string())?;
    let weights = load_weights(dir, dtype).map_err(|e| format!("load_weights: {e}"))?;
    let model = Qwen2ModelWeek1::new(&config, &weights, dtype)
        .map_err(|e| format!("Qwen2ModelWeek1::new: {e}"))?;
    Ok((config, model))
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// `profile`: one `forward_last` over `len` ids, split into graph building
/// (the call, which returns a lazy array), evaluation, and, for comparison,
/// the same linear layers' matmuls alone on arrays of the same shapes and
/// dtype (the compute floor any week-1 implementation pays).
fn profile(
    dir: &Path,
    dtype: &str,
    prompt: &Path,
    len: usize,
    reps: usize,
) -> Result<Value, String> {
    let dt = parse_dtype(dtype)?;
    let ids = read_ids(prompt)?;
    if ids.len() < len {
        return Err(format!(
            "{} has {} ids, {len} are needed",
            prompt.display(),
            ids.len()
        ));
    }
    let (config, model) = load_model(dir, dt)?;
    next_token(&model, &ids[..WARMUP_TOKENS])?;
    let ids = &ids[..len];
    let mlx = |e: mlx_rs::error::Exception| e.to_string();

    let (mut build, mut eval, mut step) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps.max(1) {
        let t0 = Instant::now();
        let input = Array::from_slice(ids, &[1, len as i32]);
        let logits = model.forward_last(&input).map_err(|e| e.to_string())?;
        let next = mlx_rs::ops::indexing::argmax_axis(&logits, -1, false).map_err(mlx)?;
        let t1 = Instant::now();
        let _: u32 = next.try_item_cast().map_err(|e| e.to_string())?;
        let t2 = Instant::now();
        build.push((t1 - t0).as_secs_f64());
        eval.push((t2 - t1).as_secs_f64());
        step.push((t2 - t0).as_secs_f64());
    }

    // The linear layers alone: x (len x in) @ W^T (in x out), for every
    // projection of every layer, plus the output layer on the last position.
    let (e, i) = (config.hidden_size, config.intermediate_size);
    let (q, kv) = (
        config.num_attention_heads * config.head_dim(),
        config.num_kv_heads() * config.head_dim(),
    );
    let l = len as i32;
    let ones = |shape: &[i32]| -> Result<Array, String> {
        let a = mlx_rs::ops::ones::<f32>(shape)
            .map_err(mlx)?
            .as_dtype(dt)
            .map_err(mlx)?;
        a.eval().map_err(mlx)?;
        Ok(a)
    };
    let shapes = [(e, q), (e, kv), (e, kv), (q, e), (e, i), (e, i), (i, e)];
    let mut weights = Vec::new();
    for &(k, n) in &shapes {
        weights.push((ones(&[l, k])?, ones(&[n, k])?));
    }
    let head = (ones(&[1, e])?, ones(&[config.vocab_size, e])?);
    let mut flops = 0.0;
    for &(k, n) in &shapes {
        flops += 2.0 * f64::from(l) * f64::from(k) * f64::from(n);
    }
    flops = flops * f64::from(config.num_hidden_layers)
        + 2.0 * f64::from(e) * f64::from(config.vocab_size);
    let mut gemm = Vec::new();
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let mut outs = Vec::new();
        for _ in 0..config.num_hidden_layers {
            for (x, w) in &weights {
                outs.push(x.matmul(w.transpose().map_err(mlx)?).map_err(mlx)?);
            }
        }
        outs.push(
            head.0
                .matmul(head.1.transpose().map_err(mlx)?)
                .map_err(mlx)?,
        );
        mlx_rs::transforms::eval(outs.iter()).map_err(mlx)?;
        gemm.push(t.elapsed().as_secs_f64());
    }
    // The main non-matmul pieces, each on arrays of the model's shapes, once
    // per layer (as one forward pass runs them).
    let layers = config.num_hidden_layers;
    let time_piece = |f: &dyn Fn() -> Result<Array, String>| -> Result<f64, String> {
        let mut ts = Vec::new();
        for _ in 0..reps.max(1) {
            let t = Instant::now();
            let outs = (0..layers).map(|_| f()).collect::<Result<Vec<_>, _>>()?;
            mlx_rs::transforms::eval(outs.iter()).map_err(mlx)?;
            ts.push(t.elapsed().as_secs_f64());
        }
        Ok(median(ts))
    };
    let scores = ones(&[1, config.num_attention_heads, l, l])?;
    let gate = ones(&[1, l, i])?;
    let softmax_s = time_piece(&|| imp::basics::softmax(&scores, -1).map_err(|e| e.to_string()))?;
    let silu_s = time_piece(&|| imp::mlp::silu(&gate).map_err(|e| e.to_string()))?;
    let mask_s =
        time_piece(&|| imp::attention_grouped::causal_mask(l, l, dt).map_err(|e| e.to_string()))?;
    let (step, build, eval, gemm) = (median(step), median(build), median(eval), median(gemm));
    eprintln!(
        "  of which (each once per layer, alone): softmax over the scores {:.1} ms, silu {:.1} ms, \
         causal mask {:.1} ms",
        softmax_s * 1e3,
        silu_s * 1e3,
        mask_s * 1e3
    );
    eprintln!(
        "forward_last over {len} tokens ({dtype}): {:.1} ms per step = graph building {:.1} ms + \
         evaluation {:.1} ms; the linear layers' matmuls alone: {:.1} ms ({:.1} GFLOP, {:.1} GFLOP/s), \
         i.e. {:.0}% of the step; everything else (attention, norms, RoPE, SiLU, mask, casts): {:.1} ms",
        step * 1e3,
        build * 1e3,
        eval * 1e3,
        gemm * 1e3,
        flops / 1e9,
        flops / gemm / 1e9,
        100.0 * gemm / step,
        (step - build - gemm) * 1e3
    );
    Ok(json!({
        "status": "ok",
        "len": len,
        "step_seconds": step,
        "graph_build_seconds": build,
        "eval_seconds": eval,
        "gemm_floor_seconds": gemm,
        "gemm_gflop": flops / 1e9,
        "softmax_seconds": softmax_s,
        "silu_seconds": silu_s,
        "causal_mask_seconds": mask_s,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn todo_messages_give_their_day() {
        assert_eq!(
            parse_todo("not yet implemented: day 5: Qwen2ModelWeek1::forward"),
            Some((Some(5), "Qwen2ModelWeek1::forward".to_string()))
        );
        assert_eq!(
            parse_todo("not yet implemented"),
            Some((None, String::new()))
        );
        assert_eq!(parse_todo("index out of bounds"), None);
    }

    #[test]
    fn dtypes_parse() {
        assert_eq!(parse_dtype("bf16"), Ok(Dtype::Bfloat16));
        assert!(parse_dtype("int8").is_err());
    }
}
