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
//! The caches here are the model's own (`new_cache`, `KvCache::trim`), the
//! bookkeeping of cached ids done by [`Conversation`]: what day 14's
//! `prompt_cache` does for `chat`.

use crate::imp::qwen2_week2::Qwen2ModelWeek2;
use crate::kernels::KernelRequest;
use crate::measure::max_rss_bytes;
use crate::measure2::{chunked_step, load_with_kernels, step};
use crate::prompt::read_ids;
use anyhow::{bail, Result};
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;
use tiny_llm_common::KvCache;

/// Passes of the first turn's prefill (tokens per forward pass).
const PREFILL_CHUNK: usize = 512;

/// The model's caches and the ids they hold, in order.
struct Conversation {
    cache: Vec<Box<dyn KvCache>>,
    ids: Vec<i32>,
}

impl Conversation {
    fn new(model: &Qwen2ModelWeek2) -> Conversation {
        Conversation {
            cache: model.new_cache(),
            ids: Vec::new(),
        }
    }

    /// The greedy first token after `prompt`: the cache is trimmed to the
    /// longest common prefix of what it holds and `prompt` (at least one
    /// token is always fed), and the rest is prefilled. Returns the token
    /// and how many of `prompt`'s ids were reused.
    fn first_token(&mut self, model: &Qwen2ModelWeek2, prompt: &[i32]) -> Result<(i32, usize)> {
        let same = self
            .ids
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count()
            .min(prompt.len().saturating_sub(1));
        let extra = self.ids.len() - same;
        for c in self.cache.iter_mut() {
            if c.trim(extra) != extra {
                bail!("a cache trimmed fewer than {extra} tokens");
            }
        }
        self.ids.truncate(same);
        let token = chunked_step(model, &prompt[same..], same, PREFILL_CHUNK, &mut self.cache)?;
        self.ids.extend_from_slice(&prompt[same..]);
        Ok((token, same))
    }

    /// Feeds `token` (one decode step); returns the next greedy token.
    fn decode(&mut self, model: &Qwen2ModelWeek2, token: i32) -> Result<i32> {
        let next = step(model, &[token], self.ids.len(), &mut self.cache)?;
        self.ids.push(token);
        Ok(next)
    }
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
    let (model, _, kernel_fields) = match load_with_kernels(plan.model, plan.kernels, &ids)? {
        Ok(loaded) => loaded,
        Err(skipped) => return Ok(skipped),
    };
    let history = &ids[..plan.history];
    let mut conv = Conversation::new(&model);

    let t = Instant::now();
    let (mut token, reused1) = conv.first_token(&model, history)?;
    let ttft1 = t.elapsed().as_secs_f64();
    eprintln!(
        "  turn 1: {} tokens, first token after {ttft1:.3} s",
        history.len()
    );
    let mut answer = vec![token];
    while answer.len() < plan.answer {
        token = conv.decode(&model, token)?;
        answer.push(token);
    }

    let mut prompt2 = history.to_vec();
    prompt2.extend_from_slice(&answer);
    prompt2.extend_from_slice(&ids[plan.history..plan.history + plan.turn]);
    let t = Instant::now();
    let (token2, reused2) = conv.first_token(&model, &prompt2)?;
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
        "cache": "the model's KV caches, trimmed to the longest common prefix (bench/src/turns.rs)",
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
