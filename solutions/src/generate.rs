//! Day 7: generating text, the week-1 way.
//!
//! `simple_generate` prefills the prompt, then decodes one token at a time by
//! running the whole sequence again (there is no KV cache until week 2),
//! sampling the next token from the last position's logits, and streaming
//! the text out as soon as it is whole UTF-8 (`StreamingDetokenizer`).
//!
//! Week-1 rule: array ops only (the model's `forward_last` and the sampler).

use crate::sampler::Sampler;
use mlx_rs::Array;
use std::time::Instant;
use tiny_llm_common::tokenizer::Tokenizer;
use tiny_llm_common::{check_token_ids, CausalLm, Error, Result};

/// Turns token ids into text pieces as they arrive, never cutting a UTF-8
/// character in two.
///
/// Byte-level BPE tokens are bytes, not characters: a character of 2-4 bytes
/// (é, 中, 🦀) may be split over several tokens, and decoding a prefix of
/// them gives the replacement character U+FFFD. Decode a short window of
/// recent ids and hold new text back while it ends in U+FFFD. Do not decode
/// the whole text at every token: that grows with the answer.
///
/// Window: `ids[prefix..read]` is text already emitted (kept as context);
/// `ids[read..]` is pending. The piece to emit is
/// `decode(ids[prefix..])` minus its start `decode(ids[prefix..read])`; once
/// emitted, `prefix` moves to `read` and `read` to the end.
/// Decode with `tokenizer.decode(ids)` (special tokens kept).
///
/// Reference: the incremental detokenization of Hugging Face
/// text-generation-inference and vLLM (prefix/read offsets).
pub struct StreamingDetokenizer<'t> {
    tokenizer: &'t Tokenizer,
    ids: Vec<u32>,
    prefix: usize,
    read: usize,
}

impl<'t> StreamingDetokenizer<'t> {
    /// An empty detokenizer for `tokenizer`.
    pub fn new(tokenizer: &'t Tokenizer) -> Self {
        StreamingDetokenizer {
            tokenizer,
            ids: Vec::new(),
            prefix: 0,
            read: 0,
        }
    }

    /// Adds one token; returns the text that became complete (often the
    /// token's own text; empty while a character is still incomplete).
    ///
    /// Errors: the tokenizer's, for an id outside its vocabulary.
    pub fn push(&mut self, id: u32) -> Result<String> {
        self.ids.push(id);
        let before = self.tokenizer.decode(&self.ids[self.prefix..self.read])?;
        let now = self.tokenizer.decode(&self.ids[self.prefix..])?;
        if now.ends_with('\u{FFFD}') || now.len() <= before.len() {
            return Ok(String::new());
        }
        let piece = match now.strip_prefix(before.as_str()) {
            Some(new) => new.to_string(),
            // The context decoded differently once followed by more tokens
            // (not seen with byte-level BPE): emit what is new after the
            // common part.
            None => now[common_prefix(&before, &now)..].to_string(),
        };
        self.prefix = self.read;
        self.read = self.ids.len();
        Ok(piece)
    }

    /// Returns the complete text still held back and empties the
    /// detokenizer. An incomplete final character (generation cut a
    /// multi-byte character short, e.g. at `max_tokens`) is dropped, not
    /// returned as U+FFFD; empty when nothing is held back.
    ///
    /// Errors: the tokenizer's.
    pub fn flush(&mut self) -> Result<String> {
        let before = self.tokenizer.decode(&self.ids[self.prefix..self.read])?;
        let now = self.tokenizer.decode(&self.ids[self.prefix..])?;
        // An incomplete final character decodes to U+FFFD: drop it (no
        // more tokens will complete it).
        let rest = now[common_prefix(&before, &now)..]
            .trim_end_matches('\u{FFFD}')
            .to_string();
        self.ids.clear();
        self.prefix = 0;
        self.read = 0;
        Ok(rest)
    }
}

/// Length in bytes of the longest common prefix of `a` and `b` that ends on a
/// character boundary of both.
fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices()
        .zip(b.chars())
        .find(|((_, ca), cb)| ca != cb)
        .map_or(a.len().min(b.len()), |((i, _), _)| i)
}

/// Why generation stopped, and what a generation measured (given; defined in
/// `tiny_llm_common` so that the cli, the bench and every day pass the same
/// types).
pub use tiny_llm_common::{FinishReason, GenerationStats};

/// Generates up to `max_tokens` tokens after `prompt_ids`, streaming the text.
///
/// - `model`: any [`CausalLm`] (your `Qwen2ModelWeek1` from day 5).
/// - `prompt_ids`: the prompt, already tokenized (chat template applied).
/// - `max_tokens`: any size; generation also stops when prompt and answer
///   fill the model's context (`model.context_len()`).
/// - `sampler`: picks each token from the last position's logits.
/// - `on_text`: called with each piece of text as soon as it is whole UTF-8
///   (never with an empty piece), and once more at the end with what
///   `StreamingDetokenizer::flush` returns, if it is not empty.
///
/// Steps: run `model.forward_last` on the prompt (`1 x L` int32), sample the
/// first token (the prefill); then, until an id of
/// `tokenizer.eos_token_ids()`, `max_tokens` tokens or a full context, append
/// the token and run the whole sequence again (week 1 has no KV cache).
/// End-of-sequence ids stop generation ([`FinishReason::Stop`]), are kept in
/// `tokens`, and are not detokenized; `max_tokens` and a full context stop it
/// with [`FinishReason::Length`].
///
/// Speed: let the sampler's read of the token be the only evaluation of a
/// step (no `eval` of the logits, no extra casts), and keep the tokenizer
/// out of the loop except for the detokenizer's short window.
///
/// Stats: `prefill_seconds` from the start to the first sampled token,
/// `decode_seconds` from then to the last one (`Instant::now()`); both 0
/// when no token was sampled (`max_tokens = 0`).
///
/// Errors: [`Error::Invalid`] for an empty prompt, for a prompt that does
/// not fit the model's context (its length and the context are named), and
/// for a prompt id outside the model's vocabulary (`model.vocab_size()`,
/// checked here on the host with [`tiny_llm_common::check_token_ids`],
/// before anything reaches the device); the
/// model's, sampler's or tokenizer's errors.
///
/// Reference: mlx-lm `generate_step` / `stream_generate` (which use a KV
/// cache).
pub fn simple_generate(
    model: &impl CausalLm,
    tokenizer: &Tokenizer,
    prompt_ids: &[u32],
    max_tokens: usize,
    sampler: &mut Sampler,
    mut on_text: impl FnMut(&str),
) -> Result<GenerationStats> {
    if prompt_ids.is_empty() {
        return Err(Error::Invalid(
            "simple_generate: the prompt has no tokens".into(),
        ));
    }
    let context = model.context_len();
    if let Some(ctx) = context {
        if prompt_ids.len() > ctx {
            return Err(Error::Invalid(format!(
                "simple_generate: the prompt has {} tokens, more than the model's context of {ctx}",
                prompt_ids.len()
            )));
        }
    }
    if let Some(vocab) = model.vocab_size() {
        check_token_ids("simple_generate: prompt", prompt_ids, vocab)?;
    }
    let eos = tokenizer.eos_token_ids();
    let mut ids: Vec<i32> = prompt_ids.iter().map(|&t| t as i32).collect();
    let mut stats = GenerationStats {
        prompt_tokens: prompt_ids.len(),
        // max_tokens may be usize::MAX: reserve what is plausible.
        tokens: Vec::with_capacity(max_tokens.min(4096)),
        finish_reason: FinishReason::Length,
        prefill_seconds: 0.0,
        decode_seconds: 0.0,
    };
    let mut detok = StreamingDetokenizer::new(tokenizer);
    let start = Instant::now();
    let mut first_token_at = start;
    for step in 0..max_tokens {
        if context.is_some_and(|ctx| ids.len() > ctx) {
            break; // the context is full: FinishReason::Length
        }
        let input = Array::from_slice(&ids, &[1, ids.len() as i32]);
        let logits = model.forward_last(&input)?;
        let token = sampler.sample(&logits)?;
        if step == 0 {
            first_token_at = Instant::now();
            stats.prefill_seconds = (first_token_at - start).as_secs_f64();
        }
        stats.tokens.push(token);
        if eos.contains(&token) {
            stats.finish_reason = FinishReason::Stop;
            break;
        }
        let piece = detok.push(token)?;
        if !piece.is_empty() {
            on_text(&piece);
        }
        ids.push(token as i32);
    }
    if !stats.tokens.is_empty() {
        stats.decode_seconds = first_token_at.elapsed().as_secs_f64();
    }
    let rest = detok.flush()?;
    if !rest.is_empty() {
        on_text(&rest);
    }
    Ok(stats)
}
