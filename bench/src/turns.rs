//! `turns`: the time to first token of a conversation's second turn with
//! the prompt cache, against its first turn (issue 11's target: the second
//! turn of a 1,000-token history starts in at most 0.2x the first turn's
//! time).
//!
//! The conversation, all in the benchmark's token ids:
//! - turn 1: a `--history`-token prompt (the conversation so far) into an
//!   empty cache: its time to first token is the whole prefill; then the
//!   answer, `--answer` greedy tokens, decoded into the cache;
//! - turn 2: the history, the answer and a `--turn`-token new message
//!   (the ids that follow the history in the benchmark text). The cache
//!   already holds the history and the answer but its last token, so only
//!   the tail is prefilled: find the longest common prefix of what the
//!   cache holds and the new prompt, trim the cache to it, prefill the
//!   rest, and read the first token.
//!
//! Both turns go through day 14's `PromptCache` (`prefill`: reuse the
//! longest cached prefix, feed the rest; `feed`: one decode step), as
//! `chat` does.

use crate::imp::prompt_cache::PromptCache;
use crate::kernels::KernelRequest;
use crate::measure::max_rss_bytes;
use crate::measure2::load_with_kernels;
use crate::prompt::read_ids;
use anyhow::{bail, Result};
use mlx_rs::Array;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;

/// The greedy token of `logits` (`1 x vocab`), read back to the host.
fn greedy(logits: &Array) -> Result<i32> {
    let next = mlx_rs::ops::indexing::argmax_axis(logits, -1, false)?;
    let id: u32 = next.try_item_cast()?;
    Ok(id as i32)
}

fn ids_u32(ids: &[i32]) -> Vec<u32> {
    ids.iter().map(|&t| t as u32).collect()
}

/// What `turns` measures.
pub struct TurnsPlan<'a> {
    pub model: &'a Path,
    pub prompt: &'a Path,
    pub kernels: KernelRequest,
    pub history: usize,
    pub answer: usize,
    pub turn: usize,
}

/// Measures the two turns (see the module's documentation).
pub fn run(plan: &TurnsPlan) -> Result<Value> {
    if plan.history == 0 || plan.answer == 0 || plan.turn == 0 {
        bail!("--history, --answer and --turn must be at least 1");
    }
    let ids = read_ids(plan.prompt)?;
    let needed = plan.history + plan.turn;
    if ids.len() < needed {
        bail!(
            "{} has {} ids, {needed} are needed (history + turn)",
            plan.prompt.display(),
            ids.len()
        );
    }
    let (model, _, kernel_fields) =
        match load_with_kernels(plan.model, plan.kernels, mlx_rs::Dtype::Float32, &ids)? {
            Ok(loaded) => loaded,
            Err(skipped) => return Ok(skipped),
        };
    let history = &ids[..plan.history];
    let mut cache = PromptCache::for_model(&model);

    let t = Instant::now();
    let first = cache.prefill(&model, &ids_u32(history))?;
    let mut token = greedy(&first.logits)?;
    let reused1 = first.reused;
    let ttft1 = t.elapsed().as_secs_f64();
    eprintln!(
        "  turn 1: {} tokens, first token after {ttft1:.3} s",
        history.len()
    );
    let mut answer = vec![token];
    while answer.len() < plan.answer {
        token = greedy(&cache.feed(&model, &[token as u32])?)?;
        answer.push(token);
    }

    let mut prompt2 = history.to_vec();
    prompt2.extend_from_slice(&answer);
    prompt2.extend_from_slice(&ids[plan.history..plan.history + plan.turn]);
    let t = Instant::now();
    let second = cache.prefill(&model, &ids_u32(&prompt2))?;
    let token2 = greedy(&second.logits)?;
    let reused2 = second.reused;
    let ttft2 = t.elapsed().as_secs_f64();
    eprintln!(
        "  turn 2: {} tokens, {reused2} from the cache, first token after {ttft2:.3} s",
        prompt2.len()
    );
    Ok(json!({
        "status": "ok",
        "week": 2,
        "kernels": kernel_fields["kernels"],
        "kernel_fallback": kernel_fields["kernel_fallback"],
        "cache": "day 14's prompt_cache::PromptCache (prefill: the longest cached prefix reused)",
        "first_turn": {
            "prompt_tokens": history.len(),
            "reused_tokens": reused1,
            "ttft_seconds": ttft1,
            "first_token": answer[0],
        },
        "answer_tokens": answer.len(),
        "second_turn": {
            "prompt_tokens": prompt2.len(),
            "reused_tokens": reused2,
            "prefilled_tokens": prompt2.len() - reused2,
            "ttft_seconds": ttft2,
            "first_token": token2,
        },
        "max_rss_bytes": max_rss_bytes(),
    }))
}
