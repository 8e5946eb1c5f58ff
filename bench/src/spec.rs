//! `spec`: speculative decoding (day 20) against the target decoding alone.
//!
//! Both runs start from the same `--prompt-tokens` ids with empty caches
//! and produce `--new-tokens` greedy tokens, so each time covers the prompt
//! and the decode:
//! - the target alone: one prefill pass (`forward_last`), then one token
//!   per step (`measure2::step`);
//! - speculative: `speculative_generate(target, draft, prompt, k, n)` for
//!   each `--k` (its prompt prefill included).
//!
//! Each speculative run's tokens are compared with the target's alone
//! (`identical`: they must be); the report gives tokens/s end to end and
//! for the decode alone (the time less the target's prefill, measured in
//! the plain run), the acceptance rate, the target and draft passes, and
//! the draft alone's decode speed (the cost of one proposal).

use crate::imp::speculative::speculative_generate;
use crate::kernels::KernelRequest;
use crate::measure2::{load_with_kernels, step};
use crate::prompt::read_ids;
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

/// What `spec` measures.
pub struct SpecPlan<'a> {
    pub model: &'a Path,
    pub draft: &'a Path,
    pub prompt: &'a Path,
    pub prompt_tokens: usize,
    pub new_tokens: usize,
    pub ks: Vec<usize>,
    pub kernels: KernelRequest,
}

/// Greedy decoding alone: the tokens, the prefill's seconds and the total.
fn alone(
    model: &crate::imp::qwen2_week2::Qwen2ModelWeek2,
    prompt: &[i32],
    n: usize,
) -> Result<(Vec<u32>, f64, f64)> {
    let mut cache = model.new_cache();
    let t = Instant::now();
    let mut tok = step(model, prompt, 0, &mut cache)?;
    let prefill = t.elapsed().as_secs_f64();
    let mut out = vec![tok as u32];
    let mut offset = prompt.len();
    while out.len() < n {
        tok = step(model, &[tok], offset, &mut cache)?;
        offset += 1;
        out.push(tok as u32);
    }
    Ok((out, prefill, t.elapsed().as_secs_f64()))
}

/// Measures the plain and the speculative runs (see the module's
/// documentation).
pub fn run(plan: &SpecPlan) -> Result<Value> {
    if plan.new_tokens < 2 || plan.prompt_tokens == 0 || plan.ks.contains(&0) {
        bail!("--new-tokens must be at least 2, --prompt-tokens and every --k at least 1");
    }
    let ids = read_ids(plan.prompt)?;
    if ids.len() < plan.prompt_tokens.max(crate::measure::WARMUP_TOKENS) {
        bail!("{} has {} ids", plan.prompt.display(), ids.len());
    }
    let load = |dir: &Path| load_with_kernels(dir, plan.kernels, mlx_rs::Dtype::Float32, &ids);
    let (target, _, target_kernels) = match load(plan.model)? {
        Ok(l) => l,
        Err(skipped) => return Ok(skipped),
    };
    let (draft, _, draft_kernels) = match load(plan.draft)? {
        Ok(l) => l,
        Err(skipped) => return Ok(skipped),
    };
    let prompt = &ids[..plan.prompt_tokens];
    let prompt_u32: Vec<u32> = prompt.iter().map(|&t| t as u32).collect();
    let n = plan.new_tokens;
    let (want, prefill_s, alone_s) = alone(&target, prompt, n)?;
    let (_, draft_prefill_s, draft_s) = alone(&draft, prompt, n)?;
    eprintln!(
        "target alone: {n} tokens in {alone_s:.2} s (prefill {prefill_s:.2} s); draft alone: \
         {draft_s:.2} s"
    );
    let decode_tps = |total: f64| (n - 1) as f64 / (total - prefill_s);
    let mut runs = Vec::new();
    for &k in &plan.ks {
        let t = Instant::now();
        let (got, stats) = speculative_generate(&target, &draft, &prompt_u32, k, n, &[])?;
        let s = t.elapsed().as_secs_f64();
        eprintln!(
            "k = {k}: {s:.2} s, acceptance {:?}, {stats:?}",
            stats.acceptance_rate()
        );
        runs.push(json!({
            "k": k,
            "seconds": s,
            "tokens_per_s": n as f64 / s,
            "decode_tokens_per_s": decode_tps(s),
            "speedup": alone_s / s,
            "identical": got == want,
            "acceptance_rate": stats.acceptance_rate(),
            "proposed": stats.proposed,
            "accepted": stats.accepted,
            "target_passes": stats.target_passes,
            "draft_passes": stats.draft_passes,
        }));
    }
    Ok(json!({
        "status": "ok",
        "model": plan.model.display().to_string(),
        "draft": plan.draft.display().to_string(),
        "target_kernels": target_kernels,
        "draft_kernels": draft_kernels,
        "prompt_tokens": plan.prompt_tokens,
        "new_tokens": n,
        "alone": {
            "seconds": alone_s,
            "prefill_seconds": prefill_s,
            "tokens_per_s": n as f64 / alone_s,
            "decode_tokens_per_s": decode_tps(alone_s),
        },
        "draft_alone": {
            "seconds": draft_s,
            "decode_tokens_per_s": (n - 1) as f64 / (draft_s - draft_prefill_s),
        },
        "speculative": runs,
    }))
}
