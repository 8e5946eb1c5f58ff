//! A model directory's weights as stored, quantized layers still packed
//! (given code: week 2 loads MLX 4-bit and 8-bit checkpoints directly).
//!
//! Day 6's loader dequantizes every packed layer once, at load. From week 2
//! on the packed codes stay packed, and the quantized kernels read them
//! where MLX loaded them; [`Checkpoint::load`] reads the same files day 6
//! reads (`model.safetensors`, or the shards of
//! `model.safetensors.index.json`) and the `quantization` of `config.json`
//! (mlx-lm's layout: `{"group_size": 64, "bits": 4}`, optionally with a
//! per-layer object under the layer's name).
//!
//! Reference: `mlx_lm.utils.load_model` (`class_predicate` and
//! `nn.quantize` on the `quantization` config).

use crate::checkpoint::{load_safetensors, read_json, shard_path};
use crate::{Error, Result};
use mlx_rs::Array;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// How a layer is quantized: `group_size` inputs per scale/bias pair,
/// `bits` per code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuantSpec {
    /// 32, 64 or 128.
    pub group_size: i32,
    /// 4 or 8.
    pub bits: i32,
}

/// Every tensor of a model directory, by checkpoint name, in its stored
/// dtype (packed `uint32` codes, scales and biases included).
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// `model.layers.0.self_attn.q_proj.weight`, ... as stored.
    pub weights: HashMap<String, Array>,
    /// `config.json`'s `quantization` (`None` for a dense checkpoint).
    pub quantization: Option<QuantSpec>,
    /// Per-layer overrides, `quantization["<layer>"]`.
    pub per_layer: HashMap<String, QuantSpec>,
}

impl Checkpoint {
    /// Reads `dir`'s safetensors files and `config.json`'s `quantization`.
    ///
    /// Errors: [`Error::Load`] for a missing or corrupt file or shard;
    /// [`Error::Config`] naming `config.json` and the key when a quantized
    /// layer (`X.scales`) exists but `quantization` is missing or malformed,
    /// or its `mode` is not `"affine"`.
    pub fn load(dir: &Path) -> Result<Checkpoint> {
        let index = dir.join("model.safetensors.index.json");
        let files: Vec<std::path::PathBuf> = if index.is_file() {
            let json = read_json(&index)?;
            let map = json
                .get("weight_map")
                .and_then(|m| m.as_object())
                .ok_or_else(|| {
                    Error::Load(format!("{}: no `weight_map` object", index.display()))
                })?;
            let shards: BTreeSet<&str> = map.values().filter_map(|v| v.as_str()).collect();
            shards
                .into_iter()
                .map(|s| shard_path(dir, &index, s))
                .collect::<Result<_>>()?
        } else {
            let single = dir.join("model.safetensors");
            if !single.is_file() {
                return Err(Error::Load(format!(
                    "{}: neither model.safetensors nor model.safetensors.index.json",
                    dir.display()
                )));
            }
            vec![single]
        };
        let mut weights = HashMap::new();
        for f in &files {
            weights.extend(load_safetensors(f)?);
        }
        let quantized = weights.keys().any(|k| k.ends_with(".scales"));
        let (quantization, per_layer) = if quantized {
            read_quantization(&dir.join("config.json"))?
        } else {
            (None, HashMap::new())
        };
        Ok(Checkpoint {
            weights,
            quantization,
            per_layer,
        })
    }

    /// The quantization of the layer `prefix` (e.g.
    /// `model.layers.0.mlp.down_proj`): its own entry, else the model's.
    pub fn quant_of(&self, prefix: &str) -> Option<QuantSpec> {
        self.per_layer.get(prefix).copied().or(self.quantization)
    }
}

/// `quantization` of `config.json`: the model-wide spec and per-layer ones.
fn read_quantization(config: &Path) -> Result<(Option<QuantSpec>, HashMap<String, QuantSpec>)> {
    let json = read_json(config)?;
    let q = json.get("quantization").ok_or_else(|| {
        Error::Config(format!(
            "{}: missing key `quantization` ({{group_size, bits}}), needed by the packed layers",
            config.display()
        ))
    })?;
    let spec = |v: &serde_json::Value, at: &str| -> Result<QuantSpec> {
        let int = |key: &str| {
            v.get(key)
                .and_then(|x| x.as_i64())
                .map(|x| x as i32)
                .ok_or_else(|| {
                    Error::Config(format!(
                        "{}: `{at}.{key}` is missing or not an integer",
                        config.display()
                    ))
                })
        };
        Ok(QuantSpec {
            group_size: int("group_size")?,
            bits: int("bits")?,
        })
    };
    if let Some(mode) = q.get("mode").and_then(|m| m.as_str()) {
        if mode != "affine" {
            return Err(Error::Config(format!(
                "{}: `quantization.mode` is {mode:?}; only \"affine\" (MLX's default) is supported",
                config.display()
            )));
        }
    }
    let global = spec(q, "quantization")?;
    let mut per_layer = HashMap::new();
    if let Some(obj) = q.as_object() {
        for (k, v) in obj {
            if v.is_object() {
                per_layer.insert(k.clone(), spec(v, &format!("quantization.{k}"))?);
            }
        }
    }
    Ok((Some(global), per_layer))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::TempDir;
    use mlx_rs::Dtype;
    use std::path::PathBuf;

    fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../fixtures")
            .join(name)
    }

    /// `fixtures/tiny-qwen2-4bit` with `config.json`'s `quantization`
    /// replaced by `q` (or removed when `None`).
    fn quantized_copy(tag: &str, q: Option<serde_json::Value>) -> TempDir {
        let src = fixture("tiny-qwen2-4bit");
        let dir = TempDir::new(tag);
        std::fs::copy(
            src.join("model.safetensors"),
            dir.path().join("model.safetensors"),
        )
        .unwrap();
        let text = std::fs::read_to_string(src.join("config.json")).unwrap();
        let mut config: serde_json::Value = serde_json::from_str(&text).unwrap();
        let obj = config.as_object_mut().unwrap();
        match q {
            Some(q) => obj.insert("quantization".into(), q),
            None => obj.remove("quantization"),
        };
        std::fs::write(dir.path().join("config.json"), config.to_string()).unwrap();
        dir
    }

    #[test]
    fn a_dense_checkpoint_has_no_quantization() {
        let c = Checkpoint::load(&fixture("tiny-qwen2")).unwrap();
        assert_eq!(c.quantization, None);
        assert!(c.per_layer.is_empty());
        let e = &c.weights["model.embed_tokens.weight"];
        assert_eq!((e.shape(), e.dtype()), (&[1088, 64][..], Dtype::Bfloat16));
        assert!(!c.weights.keys().any(|k| k.ends_with(".scales")));
        assert_eq!(c.quant_of("model.layers.0.mlp.up_proj"), None);
    }

    #[test]
    fn sharded_and_single_file_hold_the_same_tensors() {
        let one = Checkpoint::load(&fixture("tiny-qwen2")).unwrap();
        let two = Checkpoint::load(&fixture("tiny-qwen2-sharded")).unwrap();
        let mut a: Vec<_> = one.weights.keys().collect();
        let mut b: Vec<_> = two.weights.keys().collect();
        a.sort();
        b.sort();
        assert_eq!(a, b);
    }

    #[test]
    fn a_quantized_checkpoint_stays_packed() {
        let c = Checkpoint::load(&fixture("tiny-qwen2-4bit")).unwrap();
        let spec = QuantSpec {
            group_size: 32,
            bits: 4,
        };
        assert_eq!(c.quantization, Some(spec));
        assert!(c.per_layer.is_empty(), "`mode` is not a layer");
        // 64 inputs at 4 bits: 8 words a row; 2 groups of 32.
        let w = &c.weights["model.layers.0.self_attn.q_proj.weight"];
        assert_eq!((w.shape(), w.dtype()), (&[64, 8][..], Dtype::Uint32));
        let s = &c.weights["model.layers.0.self_attn.q_proj.scales"];
        assert_eq!((s.shape(), s.dtype()), (&[64, 2][..], Dtype::Bfloat16));
        assert_eq!(c.quant_of("model.layers.0.self_attn.q_proj"), Some(spec));
    }

    #[test]
    fn per_layer_quantization_overrides_the_model_s() {
        let q = serde_json::json!({
            "group_size": 32, "bits": 4,
            "model.layers.1.mlp.down_proj": {"group_size": 64, "bits": 8},
        });
        let dir = quantized_copy("per-layer", Some(q));
        let c = Checkpoint::load(dir.path()).unwrap();
        let layer = "model.layers.1.mlp.down_proj";
        assert_eq!(
            c.quant_of(layer),
            Some(QuantSpec {
                group_size: 64,
                bits: 8
            })
        );
        assert_eq!(
            c.quant_of("model.layers.0.mlp.down_proj"),
            Some(QuantSpec {
                group_size: 32,
                bits: 4
            })
        );
    }

    #[test]
    fn bad_quantization_is_named() {
        let dir = quantized_copy("no-quant", None);
        let e = Checkpoint::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("config.json") && e.contains("`quantization`"),
            "{e}"
        );
        let dir = quantized_copy("no-bits", Some(serde_json::json!({"group_size": 32})));
        let e = Checkpoint::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("`quantization.bits`"), "{e}");
        let q = serde_json::json!({"group_size": 32, "bits": 4, "mode": "mxfp4"});
        let dir = quantized_copy("mode", Some(q));
        let e = Checkpoint::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("mxfp4") && e.contains("affine"), "{e}");
        let q = serde_json::json!({"group_size": 32, "bits": 4, "model.layers.0": {"bits": 8}});
        let dir = quantized_copy("layer", Some(q));
        let e = Checkpoint::load(dir.path()).unwrap_err().to_string();
        assert!(
            e.contains("`quantization.model.layers.0.group_size`"),
            "{e}"
        );
    }

    #[test]
    fn a_directory_without_weights_is_named() {
        let dir = TempDir::new("empty");
        let e = Checkpoint::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("model.safetensors"), "{e}");
    }
}
