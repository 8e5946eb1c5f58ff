//! `run --week 2`: the week-2 path (KV cache, quantized layers when the
//! checkpoint is, the kernels of `--kernels`): prefill into a fresh cache,
//! then one token per step.

use crate::imp::qwen2_week2::Qwen2ModelWeek2;
use crate::kernels;
use crate::measure::{max_rss_bytes, Plan, WARMUP_TOKENS};
use crate::prompt::read_ids;
use anyhow::{bail, Context, Result};
use mlx_rs::{Array, Dtype};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;
use tiny_llm_common::{Checkpoint, KvCache, Qwen2Config};

/// Greedy next token after feeding `ids` at `offset` into `cache`
/// (`forward_last`, `argmax`, read back to the host, which evaluates the
/// graph and so the cache update).
pub fn step(
    model: &Qwen2ModelWeek2,
    ids: &[i32],
    offset: usize,
    cache: &mut [Box<dyn KvCache>],
) -> Result<i32> {
    let input = Array::from_slice(ids, &[1, ids.len() as i32]);
    let logits = model
        .forward_last(&input, offset, cache)
        .context("forward_last")?;
    let next = mlx_rs::ops::indexing::argmax_axis(&logits, -1, false)?;
    let id: u32 = next.try_item_cast()?;
    Ok(id as i32)
}

/// Loads `dir` through the implementation's week-2 model: the checkpoint as
/// stored (packed layers stay packed), activations in `dtype` (f32 on the
/// CPU, its fast dtype; bf16 on a GPU, as mlx-lm runs there). Returns the
/// model and the bytes of its tensors as stored.
pub fn load_model(dir: &Path, dtype: Dtype) -> Result<(Qwen2ModelWeek2, u64)> {
    let config = Qwen2Config::from_file(&dir.join("config.json"))?;
    let checkpoint = Checkpoint::load(dir).context("Checkpoint::load")?;
    let bytes = checkpoint.weights.values().map(|a| a.nbytes() as u64).sum();
    let model =
        Qwen2ModelWeek2::new(&config, &checkpoint, dtype).context("Qwen2ModelWeek2::new")?;
    Ok((model, bytes))
}

/// Greedy next token after feeding `ids` into `cache` from `offset`, in
/// forward passes of at most `chunk` tokens (0: one pass), as chunked
/// prefill does: every chunk but the last only fills the caches.
pub fn chunked_step(
    model: &Qwen2ModelWeek2,
    ids: &[i32],
    offset: usize,
    chunk: usize,
    cache: &mut [Box<dyn KvCache>],
) -> Result<i32> {
    let chunk = if chunk == 0 { ids.len().max(1) } else { chunk };
    let mut at = 0;
    while ids.len() - at > chunk {
        let part = &ids[at..at + chunk];
        let input = Array::from_slice(part, &[1, part.len() as i32]);
        let h = model
            .forward_last(&input, offset + at, cache)
            .context("forward_last")?;
        // Evaluates the chunk (and so the caches) before the next one.
        h.eval()?;
        at += chunk;
    }
    step(model, &ids[at..], offset + at, cache)
}

/// The warm-up: a short prefill and two decode steps, into a cache that is
/// then dropped.
pub fn warm_up(model: &Qwen2ModelWeek2, ids: &[i32]) -> Result<()> {
    let mut cache = model.new_cache();
    let t = step(model, &ids[..WARMUP_TOKENS], 0, &mut cache)?;
    let t = step(model, &[t], WARMUP_TOKENS, &mut cache)?;
    step(model, &[t], WARMUP_TOKENS + 1, &mut cache)?;
    Ok(())
}

/// Loads `dir`'s model with the kernels of `request` (falling back as
/// [`kernels::with_fallback`] does), activations in `dtype`, warmed up. Returns the model, the
/// bytes of its tensors as stored, and the report's fields about the
/// kernels; `Err` of a `Value` is a "skipped" report (`int8` asked for in
/// a build whose matmul ignores it).
pub fn load_with_kernels(
    dir: &Path,
    request: kernels::KernelRequest,
    dtype: Dtype,
    ids: &[i32],
) -> Result<std::result::Result<(Qwen2ModelWeek2, u64, Value), Value>> {
    let (model, weight_bytes) = load_model(dir, dtype)?;
    let (model, fallback) = kernels::with_fallback(model, request, |m| warm_up(m, ids))?;
    let fields = json!({
        "kernels": kernels::name(model.kernels()),
        "kernel_fallback": fallback,
    });
    if model.kernels().int8_activations {
        if let Some(note) = kernels::int8_has_effect(&model, &ids[..WARMUP_TOKENS])? {
            let mut skipped = json!({ "status": "skipped", "message": note });
            skipped["kernels"] = fields["kernels"].clone();
            return Ok(Err(skipped));
        }
    }
    Ok(Ok((model, weight_bytes, fields)))
}

/// Measures `plan` on the week-2 path: for each prefill length a fresh
/// cache and one `forward_last` over the prompt; then the decode run: the
/// `decode_prompt` ids into a fresh cache, in passes of `prefill_chunk`
/// tokens (time to first token), then `new_tokens - 1` single-token steps.
/// Peak memory as in week 1.
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
    let (model, weight_bytes, kernel_fields) = match load_with_kernels(
        &plan.model,
        plan.kernels,
        tiny_llm_common::device::mlx_dtype(plan.dtype),
        &ids,
    )? {
        Ok(loaded) => loaded,
        Err(skipped) => return Ok(skipped),
    };
    // On a GPU, each prefill length's first pass also loads (or compiles)
    // the kernels of its shapes; mlx-lm's side (bench_mlx_lm.py) warms the
    // same way, so both report steady-state prefill.
    if kernels::mlx_default_is_gpu() {
        for &len in &plan.prefill {
            step(&model, &ids[..len], 0, &mut model.new_cache())?;
        }
    }
    let load_seconds = started.elapsed().as_secs_f64();
    mlx_rs::memory::reset_peak_memory()?;

    let mut prefill = Vec::new();
    for &len in &plan.prefill {
        let mut cache = model.new_cache();
        let t = Instant::now();
        let token = step(&model, &ids[..len], 0, &mut cache)?;
        let seconds = t.elapsed().as_secs_f64();
        eprintln!("  prefill {len}: {seconds:.3} s");
        prefill.push(json!({ "tokens": len, "seconds": seconds, "first_token": token }));
    }

    let decode = if plan.new_tokens > 0 {
        let mut cache = model.new_cache();
        let mut generated = Vec::with_capacity(plan.new_tokens);
        let start = Instant::now();
        let mut token = chunked_step(
            &model,
            &ids[..plan.decode_prompt],
            0,
            plan.prefill_chunk,
            &mut cache,
        )?;
        let first_at = Instant::now();
        generated.push(token);
        for i in 1..plan.new_tokens {
            token = step(&model, &[token], plan.decode_prompt + i - 1, &mut cache)?;
            generated.push(token);
            if (i + 1) % 32 == 0 {
                eprintln!(
                    "  decode {}/{}: {:.1} s",
                    i + 1,
                    plan.new_tokens,
                    start.elapsed().as_secs_f64()
                );
            }
        }
        json!({
            "prompt_tokens": plan.decode_prompt,
            "prefill_chunk": plan.prefill_chunk,
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
        "week": 2,
        "kernels": kernel_fields["kernels"],
        "kernel_fallback": kernel_fields["kernel_fallback"],
        "load_seconds": load_seconds,
        "weight_bytes": weight_bytes,
        "prefill": prefill,
        "decode": decode,
        "peak_memory_bytes": peak,
        "max_rss_bytes": max_rss_bytes(),
    }))
}
