//! Day 8: the model with a KV cache: each forward pass runs only the new
//! tokens, and every layer attends over its cached keys and values.
//!
//! The layers are week 1's (your RoPE with an offset, grouped attention with
//! `causal_mask(L, S)`, RMSNorm, silu, the embedding), with [`Linear`] layers
//! that hold a dense or an MLX-quantized weight. A prompt is one forward pass
//! of `L` tokens at offset 0 (prefill); then each decoding step feeds one
//! token at offset `S` (the tokens cached so far), and its logits equal those
//! of week 1's full forward pass over all `S + 1` tokens.
//!
//! Reference: `mlx_lm.models.qwen2.Model` with `make_prompt_cache`, and
//! `mlx_lm.generate.generate_step` (prefill, then one-token steps).

mod forward_batch;
mod kernels;

use crate::kv_cache::KvStepCache;
use crate::layer_norm::RmsNorm;
use crate::positional_encoding::RoPE;
use crate::week2_linear::{load_linear, project_with, TokenTable};
use mlx_rs::ops::concatenate;
use mlx_rs::ops::indexing::TryIndexOp;
use mlx_rs::{Array, Dtype};
use tiny_llm_common::{
    shape_error, take_weight, CachedLm, Checkpoint, Error, KvCache, Linear, LinearWeight,
    Qwen2Config, Result, Week2Kernels,
};

/// Several linear layers on the same input.
///
/// Implementation: fused into one layer at load when they can be (all dense,
/// or all quantized alike; [`Linear::concat_rows`]): one matmul (one kernel
/// call) computes them all and the output is split back. q/k/v are fused
/// this way, and gate/up.
#[derive(Debug, Clone)]
struct Projections {
    /// One fused layer, or the layers as they were.
    layers: Vec<Linear>,
    /// Where the fused output splits (the running sums of the widths).
    splits: Vec<i32>,
}

impl Projections {
    fn new(parts: Vec<Linear>) -> Result<Projections> {
        let mut splits = Vec::new();
        let mut end = 0;
        for p in &parts[..parts.len() - 1] {
            end += p.out_features();
            splits.push(end);
        }
        let layers = match Linear::concat_rows(&parts)? {
            Some(one) => vec![one],
            None => parts,
        };
        Ok(Projections { layers, splits })
    }

    /// The one fused layer, when the layers were fused.
    fn fused(&self) -> Option<&Linear> {
        match self.layers.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }

    /// One output per layer, `N.. x O_i` each.
    fn forward(&self, x: &Array, kernels: Week2Kernels) -> Result<Vec<Array>> {
        match self.layers.as_slice() {
            [one] if !self.splits.is_empty() => {
                Ok(project_with(x, one, kernels)?.split_at_indices(&self.splits, -1)?)
            }
            layers => layers.iter().map(|l| project_with(x, l, kernels)).collect(),
        }
    }
}

/// One decoder layer with its attention and MLP.
#[derive(Debug, Clone)]
struct Layer {
    input_layernorm: RmsNorm,
    /// q, k, v projections (`H_q*D`, `H_kv*D`, `H_kv*D` outputs).
    qkv: Projections,
    o_proj: Linear,
    post_attention_layernorm: RmsNorm,
    /// gate and up projections (`I` outputs each).
    gate_up: Projections,
    down_proj: Linear,
}

impl Layer {
    fn load(config: &Qwen2Config, checkpoint: &Checkpoint, i: i32, dtype: Dtype) -> Result<Layer> {
        let p = format!("model.layers.{i}.");
        let (e, inter, d) = (
            config.hidden_size,
            config.intermediate_size,
            config.head_dim(),
        );
        let (q_out, kv_out) = (config.num_attention_heads * d, config.num_kv_heads() * d);
        let qkv_bias = config.qkv_bias();
        let o_bias = config.model_type == "llama" && qkv_bias;
        let lin = |name: &str, shape: [i32; 2], bias: bool| {
            load_linear(checkpoint, &format!("{p}{name}"), shape, bias, dtype)
        };
        let norm = |name: &str| -> Result<RmsNorm> {
            let w = take_weight(&checkpoint.weights, &format!("{p}{name}.weight"), &[e])?;
            RmsNorm::new(w.as_dtype(dtype)?, config.rms_norm_eps)
        };
        Ok(Layer {
            input_layernorm: norm("input_layernorm")?,
            qkv: Projections::new(vec![
                lin("self_attn.q_proj", [q_out, e], qkv_bias)?,
                lin("self_attn.k_proj", [kv_out, e], qkv_bias)?,
                lin("self_attn.v_proj", [kv_out, e], qkv_bias)?,
            ])?,
            o_proj: lin("self_attn.o_proj", [e, q_out], o_bias)?,
            post_attention_layernorm: norm("post_attention_layernorm")?,
            gate_up: Projections::new(vec![
                lin("mlp.gate_proj", [inter, e], false)?,
                lin("mlp.up_proj", [inter, e], false)?,
            ])?,
            down_proj: lin("mlp.down_proj", [e, inter], false)?,
        })
    }
}

/// A Qwen2 (or Llama) model that runs only new tokens, with a KV cache per
/// layer, and dense or quantized linear layers.
///
/// ```text
/// h = embed_tokens(ids)                               N x L x E
/// per layer, positions offset..offset + L:
///   q, k, v = projections of input_layernorm(h)       RoPE on q and k at `offset`
///   k, v    = cache.update_and_fetch(k, v)            N x H_kv x S x D, S = offset + L
///   h       = h + o_proj(attention(q, k, v, causal_mask(L, S)))
///   h       = h + down(silu(gate(x)) * up(x)), x = post_attention_layernorm(h)
/// logits = lm_head(norm(h))                           lm_head = embed_tokens^T when tied
/// ```
///
/// Numerics: activations, dense weights, norms and biases in the model's
/// dtype (f32 on the CPU); a quantized layer keeps its packed codes, scales
/// and biases as stored and computes in f32.
///
/// Implementation: every weight is computed at load (cast, fused); q/k/v
/// are fused into one layer at load, and gate/up into
/// another (see `Projections`): two matmuls (kernel calls) fewer per layer;
/// one RoPE table is shared by every layer, and q and k are rotated in one
/// call (side by side on the head axis); a one-token step needs no mask;
/// no value is read back from the device during a forward pass.
///
/// Reference: `mlx_lm.models.qwen2.Model` (and `llama.Model`) with
/// `mlx_lm.models.cache.KVCache`.
#[derive(Debug, Clone)]
pub struct Qwen2ModelWeek2 {
    config: Qwen2Config,
    dtype: Dtype,
    embed_tokens: TokenTable,
    layers: Vec<Layer>,
    norm: RmsNorm,
    /// `None`: tied to `embed_tokens`.
    lm_head: Option<Linear>,
    rope: RoPE,
    /// `H_q`, `H_kv`, `D`.
    heads: (i32, i32, i32),
    /// Which week-2 kernels the layers run through (days 11 and 12).
    kernels: Week2Kernels,
}

impl Qwen2ModelWeek2 {
    /// Builds the model from a checkpoint (dense or MLX-quantized).
    ///
    /// Reads `model.embed_tokens.*`, `model.layers.{i}.*` (as week 1:
    /// `input_layernorm`, `self_attn.{q,k,v,o}_proj` with the q/k/v biases
    /// when `config.qkv_bias()`, `post_attention_layernorm`,
    /// `mlp.{gate,up,down}_proj`), `model.norm.weight`, and `lm_head.*`
    /// unless the embeddings are tied (or `lm_head.weight` is absent). A
    /// layer with `{prefix}.scales` is quantized at
    /// `checkpoint.quant_of(prefix)`. Dense weights, norms and biases are cast
    /// to `dtype`; packed layers keep their stored scales and biases. RoPE
    /// covers `config.rope_positions()` positions, base `rope_theta`,
    /// non-traditional.
    ///
    /// Errors: [`Error::Invalid`] when `dtype` is not a float dtype or the
    /// head configuration is inconsistent; a missing, non-float or wrongly
    /// shaped tensor, naming its key.
    pub fn new(config: &Qwen2Config, checkpoint: &Checkpoint, dtype: Dtype) -> Result<Self> {
        if !dtype.is_float() {
            return Err(Error::Invalid(format!(
                "model dtype must be a float dtype, got {dtype:?}"
            )));
        }
        let (h_q, h_kv, d) = (
            config.num_attention_heads,
            config.num_kv_heads(),
            config.head_dim(),
        );
        if h_q <= 0 || h_kv <= 0 || h_q % h_kv != 0 {
            return Err(Error::Invalid(format!(
                "num_key_value_heads ({h_kv}) must be positive and divide num_attention_heads ({h_q})"
            )));
        }
        let (v, e) = (config.vocab_size, config.hidden_size);
        let embed_tokens = TokenTable::load(checkpoint, v, e, dtype)?;
        let layers = (0..config.num_hidden_layers)
            .map(|i| Layer::load(config, checkpoint, i, dtype))
            .collect::<Result<Vec<_>>>()?;
        let norm_w = take_weight(&checkpoint.weights, "model.norm.weight", &[e])?;
        let norm = RmsNorm::new(norm_w.as_dtype(dtype)?, config.rms_norm_eps)?;
        let lm_head =
            if config.tie_word_embeddings || !checkpoint.weights.contains_key("lm_head.weight") {
                None
            } else {
                Some(load_linear(checkpoint, "lm_head", [v, e], false, dtype)?)
            };
        let rope = RoPE::new(d, config.rope_positions(), config.rope_theta, false)?;
        let model = Self {
            config: config.clone(),
            dtype,
            embed_tokens,
            layers,
            norm,
            lm_head,
            rope,
            heads: (h_q, h_kv, d),
            kernels: Week2Kernels::NONE,
        };
        model.materialize()?;
        Ok(model)
    }

    /// Computes every weight now (casts, fused layers, RoPE tables), as
    /// mlx-lm's `load` does: the first forward pass then costs what the
    /// others cost, and the checkpoint's own arrays can be freed.
    fn materialize(&self) -> Result<()> {
        let parts = |l: &'_ Linear| -> Vec<Array> {
            let mut v = match &l.weight {
                LinearWeight::Dense(w) => vec![w.clone()],
                LinearWeight::Quantized {
                    w, scales, biases, ..
                } => vec![w.clone(), scales.clone(), biases.clone()],
            };
            v.extend(l.bias.clone());
            v
        };
        let mut all = vec![
            self.norm.weight.clone(),
            self.rope.cos.clone(),
            self.rope.sin.clone(),
        ];
        match &self.embed_tokens {
            TokenTable::Dense(t) => all.push(t.weight.clone()),
            TokenTable::Quantized(t) => all.extend(parts(&t.table)),
        }
        all.extend(self.lm_head.iter().flat_map(parts));
        for l in &self.layers {
            all.extend([
                l.input_layernorm.weight.clone(),
                l.post_attention_layernorm.weight.clone(),
            ]);
            for p in l.qkv.layers.iter().chain(&l.gate_up.layers) {
                all.extend(parts(p));
            }
            all.extend(parts(&l.o_proj).into_iter().chain(parts(&l.down_proj)));
        }
        Ok(mlx_rs::transforms::eval(&all)?)
    }

    /// The configuration the model was built with.
    pub fn config(&self) -> &Qwen2Config {
        &self.config
    }

    /// Empty caches, one per layer ([`crate::kv_cache::KvStepCache`]).
    pub fn new_cache(&self) -> Vec<Box<dyn KvCache>> {
        (0..self.layers.len())
            .map(|_| Box::new(KvStepCache::new()) as Box<dyn KvCache>)
            .collect()
    }

    /// Attention of layer `layer` for `x` (`N x L x E`, positions
    /// `offset..offset + L`), its keys and values appended to `cache`.
    fn attention(
        &self,
        layer: &Layer,
        x: &Array,
        offset: i32,
        cache: &mut dyn KvCache,
    ) -> Result<Array> {
        let (n, l) = (x.dim(0), x.dim(1));
        let (h_q, h_kv, d) = self.heads;
        // q and k side by side (`N x L x (H_q + H_kv)*D`), then v: one RoPE
        // call and one transpose for both.
        let (qk, v) = match layer.qkv.fused() {
            Some(one) => {
                let mut y = project_with(x, one, self.kernels)?
                    .split_at_indices(&[(h_q + h_kv) * d], -1)?;
                let v = y.pop();
                (y.pop(), v)
            }
            None => {
                let mut y = layer.qkv.forward(x, self.kernels)?;
                let v = y.pop();
                let k = y.pop();
                let q = y.pop();
                match (q, k) {
                    (Some(q), Some(k)) => (Some(concatenate(&[q, k], -1)?), v),
                    _ => (None, None),
                }
            }
        };
        let (Some(qk), Some(v)) = (qk, v) else {
            return Err(Error::Invalid(
                "q/k/v projections: expected 3 outputs".into(),
            ));
        };
        // N x L x H x D: RoPE wants the sequence before the heads.
        let qk = qk.reshape(&[n, l, h_q + h_kv, d])?;
        let qk = self.rope(&qk, offset)?.transpose_axes(&[0, 2, 1, 3])?;
        let mut qk = qk.split_at_indices(&[h_q], 1)?;
        let (Some(k), Some(q)) = (qk.pop(), qk.pop()) else {
            return Err(Error::Invalid("q/k split: expected 2 parts".into()));
        };
        let v = v.reshape(&[n, l, h_kv, d])?.transpose_axes(&[0, 2, 1, 3])?;
        let (k, v) = cache.update_and_fetch(&k, &v)?; // N x H_kv x S x D
        let o = self.attend(&q, &k, &v)?;
        let o = o.transpose_axes(&[0, 2, 1, 3])?.reshape(&[n, l, h_q * d])?;
        project_with(&o, &layer.o_proj, self.kernels)
    }

    /// Every layer over the new tokens: `N x L` ids -> `N x L x E`.
    fn hidden(
        &self,
        inputs: &Array,
        offset: usize,
        cache: &mut [Box<dyn KvCache>],
    ) -> Result<Array> {
        if inputs.ndim() != 2 || inputs.dim(1) == 0 {
            return Err(shape_error("inputs", inputs, "[N, L] token ids, L >= 1"));
        }
        if cache.len() != self.layers.len() {
            return Err(Error::Invalid(format!(
                "got {} caches for {} layers: use one cache per layer (new_cache())",
                cache.len(),
                self.layers.len()
            )));
        }
        for (i, c) in cache.iter().enumerate() {
            if c.offset() != offset {
                return Err(Error::Invalid(format!(
                    "offset {offset} disagrees with the cache of layer {i}, which holds {} tokens \
                     (the new tokens' first position must be the caches' offset)",
                    c.offset()
                )));
            }
        }
        let l = inputs.dim(1) as usize;
        let context = self.rope.seq_len as usize;
        if offset + l > context {
            return Err(Error::Invalid(format!(
                "positions {offset}..{} pass the model's context of {context} tokens",
                offset + l
            )));
        }
        let run = |cache: &mut [Box<dyn KvCache>]| -> Result<Array> {
            let mut h = self.embed_tokens.embed(inputs, self.dtype)?;
            for (layer, c) in self.layers.iter().zip(cache.iter_mut()) {
                let r = self.attention(
                    layer,
                    &self.rms_norm(&layer.input_layernorm, &h)?,
                    offset as i32,
                    c.as_mut(),
                )?;
                h = h.add(r)?;
                let x = self.rms_norm(&layer.post_attention_layernorm, &h)?;
                let [g, u]: [Array; 2] = layer
                    .gate_up
                    .forward(&x, self.kernels)?
                    .try_into()
                    .map_err(|_| {
                        Error::Invalid("gate/up projections: expected 2 outputs".into())
                    })?;
                let r = project_with(&self.swiglu(&g, &u)?, &layer.down_proj, self.kernels)?;
                h = h.add(r)?;
            }
            Ok(h)
        };
        run(cache).inspect_err(|_| {
            // Leave every cache as it was: forget what this pass appended.
            for c in cache.iter_mut() {
                let extra = c.offset().saturating_sub(offset);
                c.trim(extra);
            }
        })
    }

    /// Final norm and output layer: `N.. x E` -> `N.. x vocab`.
    fn head(&self, h: &Array) -> Result<Array> {
        let h = self.rms_norm(&self.norm, h)?;
        match &self.lm_head {
            Some(l) => project_with(&h, l, self.kernels),
            None => self.embed_tokens.as_linear_with(&h, self.kernels),
        }
    }

    /// Logits of every new position: `inputs` `N x L` at positions
    /// `offset..offset + L`; `offset` must equal every cache's offset.
    /// Returns `N x L x vocab`.
    ///
    /// - `inputs`: `N x L` int32 token ids (`L >= 1`), ids in `0..vocab`
    ///   (checked on the host by the caller, not here).
    /// - `offset`: the tokens already in the caches (0 for a prompt).
    /// - `cache`: one cache per layer ([`Self::new_cache`]); each grows by
    ///   `L`.
    /// - returns: `N x L x vocab` in the model's dtype; equal to week 1's
    ///   `forward` over all `offset + L` tokens, at the last `L` positions.
    ///
    /// Errors: [`Error::Shape`] when `inputs` is not `N x L`;
    /// [`Error::Invalid`] when the number of caches differs from the number
    /// of layers, when `offset` differs from a cache's offset (naming both),
    /// or when `offset + L` passes the model's context
    /// (`config.rope_positions()`). A failed call leaves the caches as they
    /// were.
    pub fn forward(
        &self,
        inputs: &Array,
        offset: usize,
        cache: &mut [Box<dyn KvCache>],
    ) -> Result<Array> {
        self.head(&self.hidden(inputs, offset, cache)?)
    }

    /// As [`Self::forward`], the last position only: `N x vocab`.
    ///
    /// Errors: as [`Self::forward`].
    pub fn forward_last(
        &self,
        inputs: &Array,
        offset: usize,
        cache: &mut [Box<dyn KvCache>],
    ) -> Result<Array> {
        let h = self.hidden(inputs, offset, cache)?;
        let last = h.try_index((.., h.dim(1) - 1, ..))?; // N x E
        self.head(&last)
    }
}

/// What the week-2 generation loop drives (given).
impl CachedLm for Qwen2ModelWeek2 {
    fn new_cache(&self) -> Vec<Box<dyn KvCache>> {
        Qwen2ModelWeek2::new_cache(self)
    }
    fn forward_last_cached(&self, inputs: &Array, cache: &mut [Box<dyn KvCache>]) -> Result<Array> {
        let offset = cache.first().map_or(0, |c| c.offset());
        self.forward_last(inputs, offset, cache)
    }
    fn context_len(&self) -> Option<usize> {
        Some(self.config.rope_positions() as usize)
    }
    fn vocab_size(&self) -> Option<usize> {
        Some(self.config.vocab_size as usize)
    }
}
