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

use mlx_rs::{Array, Dtype};
use safetensors::tensor::TensorView;
use safetensors::SafeTensors;
use std::collections::HashMap;
use std::path::Path;
pub use tiny_llm_common::KvCache;
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
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The name of a cache dtype in a saved file's `dtype` metadata:
/// `float32`, `float16`, `bfloat16` (the float dtypes a model runs in).
///
/// Errors: [`Error::Invalid`] for any other dtype.
pub fn dtype_name(dtype: Dtype) -> Result<&'static str> {
    match dtype {
        Dtype::Float32 => Ok("float32"),
        Dtype::Float16 => Ok("float16"),
        Dtype::Bfloat16 => Ok("bfloat16"),
        other => Err(Error::Invalid(format!(
            "a prompt cache holds float32, float16 or bfloat16 keys and values, not {other:?}"
        ))),
    }
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
    pub fn new(caches: Vec<Box<dyn KvCache>>) -> Result<Self> {
        if let Some((i, c)) = caches.iter().enumerate().find(|(_, c)| c.offset() != 0) {
            return Err(Error::Invalid(format!(
                "PromptCache::new needs empty caches; the cache of layer {i} holds {} tokens",
                c.offset()
            )));
        }
        Ok(Self {
            tokens: Vec::new(),
            caches,
        })
    }

    /// An empty prompt cache for `model` (its [`CachedLm::new_cache`]).
    pub fn for_model<M: CachedLm + ?Sized>(model: &M) -> Self {
        Self {
            tokens: Vec::new(),
            caches: model.new_cache(),
        }
    }

    /// The token ids whose keys and values are cached, in order.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// The number of cached tokens (every layer's offset).
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether no token is cached.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The number of layers (caches).
    pub fn layers(&self) -> usize {
        self.caches.len()
    }

    /// Forgets the last `min(n, len)` tokens (every layer's
    /// [`KvCache::trim`]); returns how many were forgotten.
    pub fn trim(&mut self, n: usize) -> usize {
        let n = n.min(self.tokens.len());
        for c in &mut self.caches {
            c.trim(n);
        }
        self.tokens.truncate(self.tokens.len() - n);
        n
    }

    /// Keeps the first `min(len, self.len())` tokens (a rewind to position
    /// `len`); returns how many were forgotten.
    pub fn rewind_to(&mut self, len: usize) -> usize {
        self.trim(self.tokens.len().saturating_sub(len))
    }

    /// Forgets every token.
    pub fn clear(&mut self) {
        self.trim(self.tokens.len());
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
    pub fn reuse(&mut self, prompt: &[u32]) -> Result<usize> {
        if prompt.is_empty() {
            return Err(Error::Invalid("the prompt has no tokens".into()));
        }
        let keep = common_prefix_len(&self.tokens, prompt).min(prompt.len() - 1);
        self.rewind_to(keep);
        Ok(keep)
    }

    /// Runs `ids` (the next tokens, after [`PromptCache::tokens`]) through
    /// `model` at positions `len..len + ids.len()` and appends them;
    /// returns the last position's logits, `1 x vocab`.
    ///
    /// Errors: [`Error::Invalid`] for no ids, or an id outside the model's
    /// vocabulary (checked on the host); the model's (positions past its
    /// context, a cache count that is not its layer count). A failed call
    /// leaves the tokens as they were (the model leaves its caches so).
    pub fn feed<M: CachedLm + ?Sized>(&mut self, model: &M, ids: &[u32]) -> Result<Array> {
        if ids.is_empty() {
            return Err(Error::Invalid(
                "PromptCache::feed: no tokens to feed".into(),
            ));
        }
        if let Some(vocab) = model.vocab_size() {
            check_token_ids("fed", ids, vocab)?;
        }
        let input: Vec<i32> = ids.iter().map(|&t| t as i32).collect();
        let input = Array::from_slice(&input, &[1, input.len() as i32]);
        let logits = model.forward_last_cached(&input, &mut self.caches)?;
        self.tokens.extend_from_slice(ids);
        Ok(logits)
    }

    /// [`PromptCache::reuse`] then [`PromptCache::feed`] of the tokens not
    /// reused: the whole `prompt`'s last logits, computing only what the
    /// cache lacks.
    ///
    /// Errors: those of [`PromptCache::reuse`] and [`PromptCache::feed`].
    pub fn prefill<M: CachedLm + ?Sized>(&mut self, model: &M, prompt: &[u32]) -> Result<Prefill> {
        let reused = self.reuse(prompt)?;
        let logits = self.feed(model, &prompt[reused..])?;
        Ok(Prefill {
            logits,
            reused,
            computed: prompt.len() - reused,
        })
    }

    /// A [`StepModel`] over `model` and this cache, for
    /// `tiny_llm_common::Generation`: its first `feed` is the whole prompt
    /// ([`PromptCache::prefill`]: the cached prefix is reused), each later
    /// `feed` appends ([`PromptCache::feed`]). The generated tokens fed stay
    /// in the cache for the next call.
    pub fn steps<'a, M: CachedLm + ?Sized>(&'a mut self, model: &'a M) -> PromptSteps<'a, M> {
        PromptSteps {
            model,
            cache: self,
            prefilled: None,
        }
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
    pub fn save(&self, path: &Path, model: &str, dtype: Dtype) -> Result<()> {
        let dtype_label = dtype_name(dtype)?;
        let st_dtype = st_dtype(dtype)?;
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        for (i, c) in self.caches.iter().enumerate() {
            if c.offset() != self.tokens.len() {
                return Err(Error::Invalid(format!(
                    "the cache of layer {i} holds {} tokens, the prompt cache {}",
                    c.offset(),
                    self.tokens.len()
                )));
            }
            let Some((k, v)) = c.state() else { continue };
            for (what, a) in [("keys", k), ("values", v)] {
                if a.dtype() != dtype {
                    return Err(Error::Invalid(format!(
                        "layer {i}'s cached {what} are {:?}, not the {dtype_label} to save",
                        a.dtype()
                    )));
                }
                let shape = a.shape().iter().map(|&d| d as usize).collect();
                tensors.push((format!("layers.{i}.{what}"), shape, le_bytes(&a)?));
            }
        }
        let views = tensors
            .iter()
            .map(|(name, shape, data)| {
                TensorView::new(st_dtype, shape.clone(), data)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| Error::Invalid(format!("{name}: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        let tokens = serde_json::to_string(&self.tokens)
            .map_err(|e| Error::Invalid(format!("token ids as JSON: {e}")))?;
        let metadata = HashMap::from([
            ("format".to_string(), FORMAT.to_string()),
            ("format_version".to_string(), FORMAT_VERSION.to_string()),
            ("model".to_string(), model.to_string()),
            ("dtype".to_string(), dtype_label.to_string()),
            ("layers".to_string(), self.caches.len().to_string()),
            ("tokens".to_string(), tokens),
        ]);
        let io = |e: &dyn std::fmt::Display| Error::Io(format!("writing {}: {e}", path.display()));
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = std::path::PathBuf::from(tmp);
        safetensors::serialize_to_file(views, Some(metadata), &tmp).map_err(|e| io(&e))?;
        std::fs::rename(&tmp, path).map_err(|e| io(&e))
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
    pub fn load(
        path: &Path,
        model: &str,
        dtype: Dtype,
        caches: Vec<Box<dyn KvCache>>,
    ) -> Result<Self> {
        let shown = path.display();
        let bytes = std::fs::read(path).map_err(|e| Error::Io(format!("reading {shown}: {e}")))?;
        let bad = |msg: String| Error::Load(format!("{shown}: {msg}"));
        let (header_len, header) = SafeTensors::read_metadata(&bytes).map_err(|e| {
            bad(format!(
                "not a prompt cache, or truncated or corrupt (safetensors: {e})"
            ))
        })?;
        let expected = 8 + header_len + header.data_len();
        if expected != bytes.len() {
            return Err(bad(format!(
                "the header describes {expected} bytes but the file has {} (truncated or corrupt)",
                bytes.len()
            )));
        }
        let empty = HashMap::new();
        let meta = header.metadata().as_ref().unwrap_or(&empty);
        let get = |key: &str| {
            meta.get(key)
                .map(String::as_str)
                .ok_or_else(|| bad(format!("no `{key}` in its metadata (not a prompt cache?)")))
        };
        if get("format")? != FORMAT {
            return Err(bad(format!(
                "its `format` is {:?}, not {FORMAT:?}",
                get("format")?
            )));
        }
        let version = get("format_version")?;
        if version != FORMAT_VERSION.to_string() {
            return Err(bad(format!(
                "prompt cache format version {version}; this build reads version {FORMAT_VERSION}"
            )));
        }
        let saved_model = get("model")?;
        if saved_model != model {
            return Err(Error::Invalid(format!(
                "{shown}: the prompt cache was saved for model `{saved_model}`, this is model \
                 `{model}`"
            )));
        }
        let want_dtype = dtype_name(dtype)?;
        let saved_dtype = get("dtype")?;
        if saved_dtype != want_dtype {
            return Err(Error::Invalid(format!(
                "{shown}: the prompt cache holds {saved_dtype} keys and values, the model runs \
                 in {want_dtype}"
            )));
        }
        let layers: usize = get("layers")?
            .parse()
            .map_err(|_| bad(format!("`layers` is {:?}, not a count", meta["layers"])))?;
        if layers != caches.len() {
            return Err(Error::Invalid(format!(
                "{shown}: the prompt cache has {layers} layers, the model {}",
                caches.len()
            )));
        }
        let tokens: Vec<u32> = serde_json::from_str(get("tokens")?)
            .map_err(|e| bad(format!("`tokens` is not a JSON list of token ids: {e}")))?;
        let mut cache = Self::new(caches)?;
        let file = SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(format!("corrupt tensors (safetensors: {e})")))?;
        let per_layer = if tokens.is_empty() { 0 } else { 2 };
        if file.len() != per_layer * layers {
            return Err(bad(format!(
                "{} tensors for {layers} layers of {} tokens (expected {})",
                file.len(),
                tokens.len(),
                per_layer * layers
            )));
        }
        if !tokens.is_empty() {
            for (i, c) in cache.caches.iter_mut().enumerate() {
                let k = tensor(&file, &format!("layers.{i}.keys"), dtype, tokens.len())
                    .map_err(&bad)?;
                let v = tensor(&file, &format!("layers.{i}.values"), dtype, tokens.len())
                    .map_err(&bad)?;
                c.update_and_fetch(&k, &v)
                    .map_err(|e| bad(format!("layer {i}: {e}")))?;
            }
        }
        cache.tokens = tokens;
        Ok(cache)
    }
}

/// A [`StepModel`] feeding a [`CachedLm`] through a [`PromptCache`]
/// (made by [`PromptCache::steps`]).
pub struct PromptSteps<'a, M: CachedLm + ?Sized> {
    model: &'a M,
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
        if self.prefilled.is_some() {
            return self.cache.feed(self.model, ids);
        }
        let p = self.cache.prefill(self.model, ids)?;
        self.prefilled = Some((p.reused, p.computed));
        Ok(p.logits)
    }
    fn context_len(&self) -> Option<usize> {
        self.model.context_len()
    }
    fn vocab_size(&self) -> Option<usize> {
        self.model.vocab_size()
    }
}

fn st_dtype(dtype: Dtype) -> Result<safetensors::Dtype> {
    dtype_name(dtype)?;
    Ok(match dtype {
        Dtype::Float16 => safetensors::Dtype::F16,
        Dtype::Bfloat16 => safetensors::Dtype::BF16,
        _ => safetensors::Dtype::F32,
    })
}

/// `a`'s elements in row-major order as little-endian bytes (f32, f16 or
/// bf16).
fn le_bytes(a: &Array) -> Result<Vec<u8>> {
    let c = a.contiguous()?;
    c.eval()?;
    let slice_err = |e: &dyn std::fmt::Display| Error::Invalid(format!("reading the cache: {e}"));
    Ok(match c.dtype() {
        Dtype::Float32 => c
            .try_as_slice::<f32>()
            .map_err(|e| slice_err(&e))?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        Dtype::Float16 => c
            .try_as_slice::<half::f16>()
            .map_err(|e| slice_err(&e))?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        Dtype::Bfloat16 => c
            .try_as_slice::<half::bf16>()
            .map_err(|e| slice_err(&e))?
            .iter()
            .flat_map(|x| x.to_le_bytes())
            .collect(),
        other => return Err(Error::Invalid(format!("cannot save {other:?} keys/values"))),
    })
}

/// The tensor `name` of a saved cache as an array: `1.. x H_kv x tokens x
/// D` in `dtype`. Errors: a message for [`Error::Load`].
fn tensor(
    file: &SafeTensors<'_>,
    name: &str,
    dtype: Dtype,
    tokens: usize,
) -> std::result::Result<Array, String> {
    let t = file
        .tensor(name)
        .map_err(|_| format!("no tensor `{name}`"))?;
    let want = st_dtype(dtype).map_err(|e| e.to_string())?;
    if t.dtype() != want {
        return Err(format!(
            "`{name}` is {:?}, the metadata says {want:?}",
            t.dtype()
        ));
    }
    let shape = t.shape();
    if shape.len() != 4 || shape[2] != tokens {
        return Err(format!(
            "`{name}` has shape {shape:?}, expected [N, H_kv, {tokens}, D] ({tokens} tokens)"
        ));
    }
    let shape: Vec<i32> = shape.iter().map(|&d| d as i32).collect();
    let data = t.data();
    Ok(match dtype {
        Dtype::Float16 => Array::from_slice(
            &from_le::<half::f16, 2>(data, half::f16::from_le_bytes),
            &shape,
        ),
        Dtype::Bfloat16 => Array::from_slice(
            &from_le::<half::bf16, 2>(data, half::bf16::from_le_bytes),
            &shape,
        ),
        _ => Array::from_slice(&from_le::<f32, 4>(data, f32::from_le_bytes), &shape),
    })
}

fn from_le<T, const W: usize>(data: &[u8], f: fn([u8; W]) -> T) -> Vec<T> {
    data.chunks_exact(W)
        .map(|c| {
            let mut b = [0u8; W];
            b.copy_from_slice(c);
            f(b)
        })
        .collect()
}
