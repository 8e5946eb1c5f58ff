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

use crate::quantize::dequantize_affine;
use mlx_rs::{Array, Dtype};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use tiny_llm_common::checkpoint::{load_safetensors, read_json, shard_path};
use tiny_llm_common::{Error, Result};

const INDEX: &str = "model.safetensors.index.json";
const SINGLE: &str = "model.safetensors";

/// Group size and bits of one quantized layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QuantSpec {
    group_size: i32,
    bits: i32,
}

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
pub fn load_weights(dir: &Path, dtype: Dtype) -> Result<HashMap<String, Array>> {
    if !dtype.is_float() {
        return Err(Error::Invalid(format!(
            "dtype must be a float type, got {dtype:?}"
        )));
    }
    let (mut raw, listed) = read_files(dir)?;
    if let Some(listed) = listed {
        for (name, file) in listed {
            if !raw.contains_key(&name) {
                return Err(Error::Load(format!(
                    "{}: `{name}` is listed in {file} but that file does not hold it",
                    dir.join(INDEX).display()
                )));
            }
        }
    }

    let quantized: Vec<String> = raw
        .keys()
        .filter_map(|k| k.strip_suffix(".scales").map(str::to_string))
        .collect();
    let config = if quantized.is_empty() {
        None
    } else {
        Some(read_json(&dir.join("config.json"))?)
    };
    let mut out = HashMap::with_capacity(raw.len());
    for base in quantized {
        let spec = quant_spec(dir, config.as_ref().expect("read above"), &base)?;
        let part = |raw: &mut HashMap<String, Array>, suffix: &str| {
            raw.remove(&format!("{base}.{suffix}")).ok_or_else(|| {
                Error::Load(format!(
                    "{}: `{base}.scales` has no `{base}.{suffix}` (an incomplete quantized layer)",
                    dir.display()
                ))
            })
        };
        let w = part(&mut raw, "weight")?;
        let scales = part(&mut raw, "scales")?;
        let biases = part(&mut raw, "biases")?;
        let dense = dequantize_affine(&w, &scales, &biases, spec.group_size, spec.bits)
            .map_err(|e| Error::Load(format!("{}: dequantizing `{base}`: {e}", dir.display())))?;
        out.insert(format!("{base}.weight"), dense.as_dtype(dtype)?);
    }
    for (name, array) in raw {
        if array.dtype() == Dtype::Uint32 && name.ends_with(".weight") {
            return Err(Error::Load(format!(
                "{}: `{name}` is packed uint32 but there is no `{}.scales`",
                dir.display(),
                name.trim_end_matches(".weight")
            )));
        }
        let array = if array.dtype().is_float() {
            array.as_dtype(dtype)?
        } else {
            array
        };
        out.insert(name, array);
    }
    Ok(out)
}

/// Loads the safetensors files of `dir`; with an index, also returns the
/// names it lists (and their files) so missing tensors can be reported.
#[allow(clippy::type_complexity)]
fn read_files(dir: &Path) -> Result<(HashMap<String, Array>, Option<Vec<(String, String)>>)> {
    let index_path = dir.join(INDEX);
    let (files, listed) = if index_path.is_file() {
        let index = read_json(&index_path)?;
        let map = index
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| {
                Error::Load(format!("{}: no `weight_map` object", index_path.display()))
            })?;
        let mut listed = Vec::with_capacity(map.len());
        let mut files = BTreeSet::new();
        for (name, file) in map {
            let file = file.as_str().ok_or_else(|| {
                Error::Load(format!(
                    "{}: `{name}` maps to a non-string",
                    index_path.display()
                ))
            })?;
            listed.push((name.clone(), file.to_string()));
            files.insert(file.to_string());
        }
        for file in &files {
            // present, and not outside `dir` (no `..`, absolute path or escaping link)
            shard_path(dir, &index_path, file)?;
        }
        (files.into_iter().collect::<Vec<_>>(), Some(listed))
    } else if dir.join(SINGLE).is_file() {
        (vec![SINGLE.to_string()], None)
    } else {
        return Err(Error::Load(format!(
            "{}: no {SINGLE} and no {INDEX} (not a model directory?)",
            dir.display()
        )));
    };
    let mut raw = HashMap::new();
    for file in files {
        for (name, array) in load_safetensors(&dir.join(&file))? {
            if raw.contains_key(&name) {
                return Err(Error::Load(format!(
                    "{}: `{name}` is in more than one file",
                    dir.display()
                )));
            }
            raw.insert(name, array);
        }
    }
    Ok((raw, listed))
}

/// The quantization of layer `base`: `quantization[base]` when it is an
/// object, else `quantization`'s own `group_size` and `bits`.
fn quant_spec(dir: &Path, config: &serde_json::Value, base: &str) -> Result<QuantSpec> {
    let path = dir.join("config.json");
    let bad = |msg: String| Error::Config(format!("{}: {msg}", path.display()));
    let q = config
        .get("quantization")
        .and_then(|q| q.as_object())
        .ok_or_else(|| {
            bad(format!(
                "missing key `quantization` ({{group_size, bits}}), needed by `{base}.scales`"
            ))
        })?;
    let layer = q.get(base).and_then(|l| l.as_object());
    let get = |key: &str| -> Result<i32> {
        let v = layer.and_then(|l| l.get(key)).or_else(|| q.get(key));
        let v = v.ok_or_else(|| bad(format!("missing key `quantization.{key}`")))?;
        v.as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| bad(format!("`quantization.{key}` must be an integer, got {v}")))
    };
    Ok(QuantSpec {
        group_size: get("group_size")?,
        bits: get("bits")?,
    })
}
