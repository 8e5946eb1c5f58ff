//! Day 14: the prompt cache: reuse the longest cached prefix across calls,
//! rewind, save and load.
//!
//! A [`PromptCache`] holds the token ids fed to a [`CachedLm`] so far and
//! one [`KvCache`] per layer holding their keys and values. A new prompt
//! that starts like the cached tokens (the next turn of a chat, whose
//! template re-renders the whole history) only needs its new tokens run:
//!
//! ```text
//! cached  = [t0 .. t(c-1)]                 c tokens, keys/values in the caches
//! prompt  = [p0 .. p(n-1)]                 n >= 1 tokens
//! reused  = min(common_prefix(cached, prompt), n - 1)
//! trim every cache by c - reused           (forget what the prompt does not share)
//! logits  = model(prompt[reused..])        at positions reused..n (at least one token,
//!                                          so there are logits to sample from)
//! ```
//!
//! The logits equal those of a fresh prefill of the whole prompt: the cached
//! keys and values of positions `0..reused` are exactly what that prefill
//! would compute for them (a causal model's position `t` sees only
//! `0..=t`).
//!
//! On disk ([`PromptCache::save`], [`PromptCache::load`]) a cache is one
//! safetensors file: tensors `layers.{i}.keys` / `layers.{i}.values`
//! (`N x H_kv x T x D`, the caches' dtype, `T` = the cached tokens) and
//! string metadata `format` ([`FORMAT`]), `format_version`
//! ([`FORMAT_VERSION`]), `model` (the caller's model identity, e.g.
//! `qwen2.5-coder-0.5b-4bit`), `dtype` (`float32`, `float16`, `bfloat16`),
//! `layers` (the layer count) and `tokens` (the token ids, a JSON list).
//!
//! Reference: mlx-lm `models/cache.py` (`make_prompt_cache`,
//! `save_prompt_cache` / `load_prompt_cache`: safetensors with metadata,
//! `trim_prompt_cache`) and `server.py` (reusing the longest common prefix
//! of the cached and the new prompt).
//!
//! Hints: Check your work with `cargo xtask check day14`. Write
//! `KvCache::state` of your day-8 caches first (kv_cache.rs): `save` reads
//! the caches through it. Keep the token ids beside the caches and change
//! them only after the model's forward pass succeeded.

#[allow(unused_imports)]
use mlx_rs::{Array, Dtype};
#[allow(unused_imports)]
use safetensors::tensor::TensorView;
#[allow(unused_imports)]
use safetensors::SafeTensors;
#[allow(unused_imports)]
use std::collections::HashMap;
use std::path::Path;
pub use tiny_llm_common::KvCache;
#[allow(unused_imports)]
use tiny_llm_common::{check_token_ids, CachedLm, Error, Result, StepModel};

/// The `format` metadata value of a saved prompt cache.
pub const FORMAT: &str = "tiny-llm-rs prompt cache";

/// The `format_version` of the files [`PromptCache::save`] writes and
/// [`PromptCache::load`] reads.
pub const FORMAT_VERSION: u32 = 1;

/// The length of the longest common prefix of `a` and `b`.
///
/// Example: `[1, 2, 3]` and `[1, 2, 5, 6]` share 2 tokens; `[]` and
/// anything share 0.
pub fn common_prefix_len(a: &[u32], b: &[u32]) -> usize {
    let _ = (a, b);
    todo!("day 14: common_prefix_len")
}

/// The name of a cache dtype in a saved file's `dtype` metadata:
/// `float32`, `float16`, `bfloat16` (the float dtypes a model runs in).
///
/// Errors: [`Error::Invalid`] for any other dtype.
pub fn dtype_name(dtype: Dtype) -> Result<&'static str> {
    let _ = dtype;
    todo!("day 14: dtype_name")
}

/// What [`PromptCache::prefill`] did.
#[derive(Debug, Clone)]
pub struct Prefill {
    /// The last prompt position's logits, `1 x vocab` (the model's dtype).
    pub logits: Array,
    /// Prompt tokens whose keys and values came from the cache.
    pub reused: usize,
    /// Prompt tokens run through the model (`prompt.len() - reused`, at
    /// least 1).
    pub computed: usize,
}

/// The token ids fed to a model so far and their keys and values, one
/// [`KvCache`] per layer (batch size 1).
///
/// Invariant: every cache holds exactly [`PromptCache::len`] tokens, the
/// keys and values of [`PromptCache::tokens`] at positions `0..len`.
pub struct PromptCache {
    tokens: Vec<u32>,
    caches: Vec<Box<dyn KvCache>>,
}

impl std::fmt::Debug for PromptCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PromptCache")
            .field("tokens", &self.tokens.len())
            .field("layers", &self.caches.len())
            .finish()
    }
}

impl PromptCache {
    /// An empty prompt cache over `caches` (one per layer, e.g.
    /// `model.new_cache()`).
    ///
    /// Errors: [`Error::Invalid`] when a cache is not empty (its tokens
    /// would be unknown).
    ///
    /// Hints: refuse a cache whose `offset()` is not 0.
    pub fn new(caches: Vec<Box<dyn KvCache>>) -> Result<Self> {
        let _ = caches;
        todo!("day 14: PromptCache::new")
    }

    /// An empty prompt cache for `model` (its [`CachedLm::new_cache`]).
    pub fn for_model<M: CachedLm + ?Sized>(model: &M) -> Self {
        let _ = model;
        todo!("day 14: PromptCache::for_model")
    }

    /// The token ids whose keys and values are cached, in order.
    pub fn tokens(&self) -> &[u32] {
        todo!("day 14: PromptCache::tokens")
    }

    /// The number of cached tokens (every layer's offset).
    pub fn len(&self) -> usize {
        todo!("day 14: PromptCache::len")
    }

    /// Whether no token is cached.
    pub fn is_empty(&self) -> bool {
        todo!("day 14: PromptCache::is_empty")
    }

    /// The number of layers (caches).
    pub fn layers(&self) -> usize {
        todo!("day 14: PromptCache::layers")
    }

    /// Forgets the last `min(n, len)` tokens (every layer's
    /// [`KvCache::trim`]); returns how many were forgotten.
    ///
    /// Hints: trim every cache by `min(n, len)`, then truncate the tokens.
    pub fn trim(&mut self, n: usize) -> usize {
        let _ = n;
        todo!("day 14: PromptCache::trim")
    }

    /// Keeps the first `min(len, self.len())` tokens (a rewind to position
    /// `len`); returns how many were forgotten.
    pub fn rewind_to(&mut self, len: usize) -> usize {
        let _ = len;
        todo!("day 14: PromptCache::rewind_to")
    }

    /// Forgets every token.
    pub fn clear(&mut self) {
        todo!("day 14: PromptCache::clear")
    }

    /// Keeps the longest prefix of the cached tokens that `prompt` starts
    /// with, but at most `prompt.len() - 1` tokens, so that at least one
    /// prompt token is left to run (its logits are the next token's); trims
    /// the rest. Returns the number of tokens kept (reused).
    ///
    /// Example: cached `[1, 2, 3, 4]`; prompt `[1, 2, 9]` keeps 2,
    /// `[1, 2, 3, 4, 5]` keeps 4, `[1, 2, 3, 4]` keeps 3, `[7]` keeps 0.
    ///
    /// Errors: [`Error::Invalid`] for an empty prompt (nothing changes).
    ///
    /// Hints: `common_prefix_len(tokens, prompt).min(prompt.len() - 1)`, then
    /// [`PromptCache::rewind_to`] it.
    pub fn reuse(&mut self, prompt: &[u32]) -> Result<usize> {
        let _ = prompt;
        todo!("day 14: PromptCache::reuse")
    }

    /// Runs `ids` (the next tokens, after [`PromptCache::tokens`]) through
    /// `model` at positions `len..len + ids.len()` and appends them;
    /// returns the last position's logits, `1 x vocab`.
    ///
    /// Errors: [`Error::Invalid`] for no ids, or an id outside the model's
    /// vocabulary (checked on the host); the model's (positions past its
    /// context, a cache count that is not its layer count). A failed call
    /// leaves the tokens as they were (the model leaves its caches so).
    ///
    /// Hints: `check_token_ids` against `model.vocab_size()`, then
    /// `Array::from_slice` of the ids as `i32`, shape `[1, L]`, and
    /// `model.forward_last_cached(&input, &mut self.caches)`; append the ids
    /// only when it succeeded.
    pub fn feed<M: CachedLm + ?Sized>(&mut self, model: &M, ids: &[u32]) -> Result<Array> {
        let _ = (model, ids);
        todo!("day 14: PromptCache::feed")
    }

    /// [`PromptCache::reuse`] then [`PromptCache::feed`] of the tokens not
    /// reused: the whole `prompt`'s last logits, computing only what the
    /// cache lacks.
    ///
    /// Errors: those of [`PromptCache::reuse`] and [`PromptCache::feed`].
    pub fn prefill<M: CachedLm + ?Sized>(&mut self, model: &M, prompt: &[u32]) -> Result<Prefill> {
        let _ = (model, prompt);
        todo!("day 14: PromptCache::prefill")
    }

    /// A [`StepModel`] over `model` and this cache, for
    /// `tiny_llm_common::Generation`: its first `feed` is the whole prompt
    /// ([`PromptCache::prefill`]: the cached prefix is reused), each later
    /// `feed` appends ([`PromptCache::feed`]). The generated tokens fed stay
    /// in the cache for the next call.
    pub fn steps<'a, M: CachedLm + ?Sized>(&'a mut self, model: &'a M) -> PromptSteps<'a, M> {
        let _ = model;
        todo!("day 14: PromptCache::steps")
    }

    /// Writes the cache to `path` (a safetensors file, see the module
    /// docs), through a temporary file beside it renamed into place.
    ///
    /// - `model`: the model's identity (e.g. the model directory's name and
    ///   quantization, `qwen2.5-coder-0.5b-4bit`); [`PromptCache::load`]
    ///   refuses a file saved under another.
    /// - `dtype`: the caches' dtype (the model's).
    ///
    /// Errors: [`Error::Invalid`] when `dtype` is not float32, float16 or
    /// bfloat16, or a cache holds another dtype or another number of tokens
    /// than [`PromptCache::len`]; [`Error::Io`] naming the path when it
    /// cannot be written; MLX's when the arrays cannot be evaluated.
    ///
    /// Hints: per layer `state()`, `contiguous()` and `eval()`, then
    /// `try_as_slice::<f32>()` (or `half::f16` / `half::bf16`) and each
    /// element's `to_le_bytes()`; `TensorView::new(dtype, shape, &bytes)`;
    /// `safetensors::serialize_to_file(views, Some(metadata), &tmp)` then
    /// `std::fs::rename`. Tokens as JSON: `serde_json::to_string`.
    pub fn save(&self, path: &Path, model: &str, dtype: Dtype) -> Result<()> {
        let _ = (path, model, dtype);
        todo!("day 14: PromptCache::save")
    }

    /// Reads a cache written by [`PromptCache::save`] into `caches` (fresh,
    /// one per layer: `model.new_cache()`), through
    /// [`KvCache::update_and_fetch`].
    ///
    /// - `model`, `dtype`: what the file must have been saved with.
    ///
    /// Errors: [`Error::Io`] naming the path when it cannot be read;
    /// [`Error::Load`] naming the path when the file is not a safetensors
    /// file, is truncated or corrupt (lengths, tensors missing or extra,
    /// shapes that disagree with the token count), is not a prompt cache or
    /// has another format version; [`Error::Invalid`] naming both values when
    /// it was saved for another model identity, dtype or layer count (the
    /// number of `caches`), or when a cache in `caches` is not empty.
    ///
    /// Hints: `std::fs::read`, then `SafeTensors::read_metadata(&bytes)`
    /// (check `8 + header_len + header.data_len() == bytes.len()`) and its
    /// `metadata()`; check format, version, model, dtype and layers before
    /// any tensor; then `SafeTensors::deserialize`, each tensor's `dtype()`,
    /// `shape()` and `data()` (little-endian: `f32::from_le_bytes` on 4-byte
    /// chunks), `Array::from_slice`, and `update_and_fetch` on each cache.
    pub fn load(
        path: &Path,
        model: &str,
        dtype: Dtype,
        caches: Vec<Box<dyn KvCache>>,
    ) -> Result<Self> {
        let _ = (path, model, dtype, caches);
        todo!("day 14: PromptCache::load")
    }
}

/// A [`StepModel`] feeding a [`CachedLm`] through a [`PromptCache`]
/// (made by [`PromptCache::steps`]).
pub struct PromptSteps<'a, M: CachedLm + ?Sized> {
    model: &'a M,
    #[allow(dead_code)]
    cache: &'a mut PromptCache,
    /// Set by the first feed: `(reused, computed)`.
    prefilled: Option<(usize, usize)>,
}

impl<M: CachedLm + ?Sized> PromptSteps<'_, M> {
    /// After the first feed: the prompt tokens reused from the cache and
    /// those computed.
    pub fn prefilled(&self) -> Option<(usize, usize)> {
        self.prefilled
    }
}

impl<M: CachedLm + ?Sized> StepModel for PromptSteps<'_, M> {
    /// The first call: the whole prompt ([`PromptCache::prefill`]); later
    /// calls: the next tokens ([`PromptCache::feed`]).
    fn feed(&mut self, ids: &[u32]) -> Result<Array> {
        let _ = ids;
        todo!("day 14: PromptSteps::feed")
    }
    fn context_len(&self) -> Option<usize> {
        self.model.context_len()
    }
    fn vocab_size(&self) -> Option<usize> {
        self.model.vocab_size()
    }
}
