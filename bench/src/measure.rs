//! `run`: loads the model, warms up, then measures prefill, decode (time to
//! first token and decode speed) and MLX's peak memory.

use crate::imp::loader::load_weights;
use crate::imp::qwen2_week1::Qwen2ModelWeek1;
use crate::prompt::read_ids;
use anyhow::{bail, Context, Result};
use mlx_rs::{Array, Dtype};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;
use tiny_llm_common::device::{mlx_dtype, DType};
use tiny_llm_common::Qwen2Config;

/// Tokens of the warm-up pass (materialises the weights, fills the allocator).
pub const WARMUP_TOKENS: usize = 16;

/// What `run` measures.
pub struct Plan {
    /// The model directory.
    pub model: PathBuf,
    pub dtype: DType,
    /// The ids file written by `prompt`.
    pub prompt: PathBuf,
    /// Prompt lengths to prefill.
    pub prefill: Vec<usize>,
    /// Prompt length of the decode run.
    pub decode_prompt: usize,
    /// Tokens to generate (0: no decode run).
    pub new_tokens: usize,
    /// Week 2 only: the kernels the model runs.
    pub kernels: crate::kernels::KernelRequest,
    /// Week 2 only: tokens per forward pass when the decode run's prompt is
    /// prefilled (0: the whole prompt in one pass).
    pub prefill_chunk: usize,
}

/// The process's peak resident set (`VmHWM`), in bytes, for information.
pub fn max_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The greedy next token after `ids`: the model's last-position logits,
/// `argmax`, read back to the host (which evaluates the graph).
pub fn next_token(model: &Qwen2ModelWeek1, ids: &[i32]) -> Result<i32> {
    let input = Array::from_slice(ids, &[1, ids.len() as i32]);
    let logits = model.forward_last(&input).context("forward_last")?;
    let next = mlx_rs::ops::indexing::argmax_axis(&logits, -1, false)?;
    let id: u32 = next.try_item_cast()?;
    Ok(id as i32)
}

/// Measures `plan` (see the crate's documentation for what and how).
pub fn run(plan: &Plan) -> Result<Value> {
    let ids = read_ids(&plan.prompt)?;
    let longest = plan
        .prefill
        .iter()
        .copied()
        .chain([plan.decode_prompt, WARMUP_TOKENS])
        .max()
        .unwrap_or(0);
    if ids.len() < longest {
        bail!(
            "{} has {} ids, {longest} are needed",
            plan.prompt.display(),
            ids.len()
        );
    }

    let started = Instant::now();
    let (_, model) = load_model(&plan.model, mlx_dtype(plan.dtype))?;
    // Warm-up: materialises the (lazily cast) weights and warms the allocator.
    next_token(&model, &ids[..WARMUP_TOKENS])?;
    let load_seconds = started.elapsed().as_secs_f64();
    mlx_rs::memory::reset_peak_memory()?;

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

    let peak = mlx_rs::memory::peak_memory()?;
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
pub fn load_model(dir: &Path, dtype: Dtype) -> Result<(Qwen2Config, Qwen2ModelWeek1)> {
    let config = Qwen2Config::from_file(&dir.join("config.json"))?;
    let weights = load_weights(dir, dtype).context("load_weights")?;
    let model = Qwen2ModelWeek1::new(&config, &weights, dtype).context("Qwen2ModelWeek1::new")?;
    Ok((config, model))
}
