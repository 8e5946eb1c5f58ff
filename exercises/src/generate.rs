//! Day 7: generating text, the week-1 way.
//!
//! `simple_generate` prefills the prompt, then decodes one token at a time by
//! running the whole sequence again (there is no KV cache until week 2),
//! sampling the next token from the last position's logits, and streaming
//! the text out as soon as it is whole UTF-8 (`StreamingDetokenizer`).
//!
//! Week-1 rule: array ops only (the model's `forward_last` and the sampler).
//!
//! Hints: Check your work with `cargo xtask check day7`; chat with `cargo xtask
//! run "your question"`.

use crate::sampler::Sampler;
#[allow(unused_imports)]
use mlx_rs::Array;
#[allow(unused_imports)]
use std::time::Instant;
use tiny_llm_common::tokenizer::Tokenizer;
#[allow(unused_imports)]
use tiny_llm_common::{CausalLm, Error, Result};

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
    #[allow(dead_code)]
    tokenizer: &'t Tokenizer,
    #[allow(dead_code)]
    ids: Vec<u32>,
    #[allow(dead_code)]
    prefix: usize,
    #[allow(dead_code)]
    read: usize,
}

impl<'t> StreamingDetokenizer<'t> {
    /// An empty detokenizer for `tokenizer`.
    ///
    /// Hints: given code: nothing to implement here.
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
        let _ = id;
        todo!("day 7: StreamingDetokenizer::push")
    }

    /// Returns the complete text still held back and empties the
    /// detokenizer. An incomplete final character (generation cut a
    /// multi-byte character short, e.g. at `max_tokens`) is dropped, not
    /// returned as U+FFFD; empty when nothing is held back.
    ///
    /// Errors: the tokenizer's.
    pub fn flush(&mut self) -> Result<String> {
        todo!("day 7: StreamingDetokenizer::flush")
    }
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
///
/// Hints: do not reserve `max_tokens` slots up front (it may be
/// `usize::MAX`).
pub fn simple_generate(
    model: &impl CausalLm,
    tokenizer: &Tokenizer,
    prompt_ids: &[u32],
    max_tokens: usize,
    sampler: &mut Sampler,
    on_text: impl FnMut(&str),
) -> Result<GenerationStats> {
    let _ = (model, tokenizer, prompt_ids, max_tokens, sampler, on_text);
    todo!("day 7: simple_generate")
}
