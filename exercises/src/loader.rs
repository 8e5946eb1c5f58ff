//! Day 6: load a Hugging Face / MLX model directory's weights.
//!
//! A directory holds `model.safetensors`, or shards listed in
//! `model.safetensors.index.json` (`weight_map`: tensor name -> file). MLX
//! quantized checkpoints (mlx-lm's `convert -q`) store each quantized layer as
//! `X.weight` (`uint32`), `X.scales` and `X.biases`, with `group_size` and
//! `bits` in `config.json`'s `quantization`.
//!
//! Given helpers: [`tiny_llm_common::checkpoint::load_safetensors`] (checks
//! a file's header before MLX reads it, so a truncated file is an error, not
//! a crash) and [`tiny_llm_common::checkpoint::read_json`].
//!
//! Hints: Check your work with `cargo xtask check day6`.

#[allow(unused_imports)]
use crate::quantize::dequantize_affine;
use mlx_rs::{Array, Dtype};
use std::collections::HashMap;
use std::path::Path;
#[allow(unused_imports)]
use tiny_llm_common::checkpoint::{load_safetensors, read_json};
#[allow(unused_imports)]
use tiny_llm_common::{Error, Result};

/// Every weight of the model in `dir`, dense, by checkpoint name
/// (`model.layers.0.self_attn.q_proj.weight`, ...).
///
/// - Files: `model.safetensors.index.json` and the shards it lists, else
///   `model.safetensors`. Load each with `load_safetensors`.
/// - Quantized layers: `X.weight` + `X.scales` + `X.biases` become one dense
///   `X.weight` ([`dequantize_affine`]), with `group_size` and `bits` from
///   `config.json`'s `quantization` (a per-layer entry `quantization["X"]`
///   overrides them).
/// - Floating-point tensors are cast to `dtype`; others keep their dtype.
///
/// Errors: [`Error::Load`] naming the file or tensor for a missing or
/// corrupt file, a shard missing from the directory, a tensor listed in the
/// index but absent from its shard, a tensor in two files, or an incomplete
/// quantized triplet; [`Error::Config`] naming `config.json` and the key when
/// `quantization`, `group_size` or `bits` is missing or wrong;
/// [`Error::Invalid`] when `dtype` is not a float type.
///
/// Reference: `mlx_lm.utils.load` (weights part); the safetensors index
/// format of Hugging Face `transformers`.
///
/// Hints: read the index's `weight_map` values into a set of files and check
/// each exists before loading any. Find quantized layers by their `.scales`
/// tensors; `HashMap::remove` takes the three parts out, so what is left
/// afterwards is plain weights. `Dtype::is_float` tells floats apart.
pub fn load_weights(dir: &Path, dtype: Dtype) -> Result<HashMap<String, Array>> {
    let _ = (dir, dtype);
    todo!("day 6: load_weights")
}
