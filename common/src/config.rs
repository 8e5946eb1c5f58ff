//! `Qwen2Config`: the model's hyper-parameters, read from a Hugging Face
//! `config.json` (given code: not an exercise).
//!
//! Key names are Hugging Face's (`transformers` `Qwen2Config` /
//! `LlamaConfig`). Keys the model cannot run without are required and a
//! missing one is reported by name; the rest have Hugging Face's defaults.

use crate::{Error, Result};
use serde::Deserialize;
use std::path::Path;

/// Hyper-parameters of a Qwen2 (or Llama) decoder, as in `config.json`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Qwen2Config {
    /// `"qwen2"` or `"llama"`.
    pub model_type: String,
    /// `E`, the model width.
    pub hidden_size: i32,
    /// Width of the MLP's hidden layer.
    pub intermediate_size: i32,
    /// Number of transformer blocks.
    pub num_hidden_layers: i32,
    /// `H_q`, query heads.
    pub num_attention_heads: i32,
    /// `H_kv`, key/value heads (GQA); defaults to `num_attention_heads`.
    #[serde(default)]
    pub num_key_value_heads: Option<i32>,
    /// Rows of `embed_tokens`.
    pub vocab_size: i32,
    /// RMSNorm epsilon.
    pub rms_norm_eps: f32,
    /// RoPE base (`theta`); Hugging Face default 10000.
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f32,
    /// Longest sequence the model was trained for.
    #[serde(default = "default_max_position_embeddings")]
    pub max_position_embeddings: i32,
    /// `true` when `lm_head` reuses `embed_tokens` (no `lm_head.weight`).
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Head width; defaults to `hidden_size / num_attention_heads`.
    #[serde(default)]
    pub head_dim: Option<i32>,
    /// Whether q/k/v projections have biases. Qwen2 always has them (its
    /// config has no such key); Llama's `attention_bias` defaults to false.
    #[serde(default)]
    pub attention_bias: Option<bool>,
}

/// The most positions a model's RoPE table covers ([`Qwen2Config::rope_positions`]):
/// 128 Ki positions, a 32 MiB float32 `cos` + `sin` table at `D = 64`, and far
/// more than week 1's full-recompute generation can use.
pub const MAX_ROPE_POSITIONS: i32 = 1 << 17;

fn default_rope_theta() -> f32 {
    10000.0
}

fn default_max_position_embeddings() -> i32 {
    32768
}

/// Keys without a default: a config lacking one is rejected by name.
const REQUIRED: &[&str] = &[
    "model_type",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "vocab_size",
    "rms_norm_eps",
];

impl Qwen2Config {
    /// Parses `config.json` text. `source` names the file in errors.
    ///
    /// Errors: [`Error::Config`] naming a missing required key, a value of
    /// the wrong type, an unsupported `model_type`, or inconsistent sizes.
    pub fn from_json(text: &str, source: &str) -> Result<Self> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| Error::Config(format!("{source}: not valid JSON: {e}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| Error::Config(format!("{source}: expected a JSON object")))?;
        for key in REQUIRED {
            if !obj.contains_key(*key) {
                return Err(Error::Config(format!(
                    "{source}: missing required key `{key}`"
                )));
            }
        }
        let config: Qwen2Config =
            serde_json::from_value(value).map_err(|e| Error::Config(format!("{source}: {e}")))?;
        config.validate(source)?;
        Ok(config)
    }

    /// Reads and parses a `config.json` file.
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::Io(format!("reading {}: {e}", path.display())))?;
        Self::from_json(&text, &path.display().to_string())
    }

    fn validate(&self, source: &str) -> Result<()> {
        let bad = |msg: String| Err(Error::Config(format!("{source}: {msg}")));
        if !matches!(self.model_type.as_str(), "qwen2" | "llama") {
            return bad(format!(
                "model_type `{}` is not supported (expected qwen2 or llama)",
                self.model_type
            ));
        }
        for (key, v) in [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_hidden_layers", self.num_hidden_layers),
            ("num_attention_heads", self.num_attention_heads),
            ("vocab_size", self.vocab_size),
            ("num_key_value_heads", self.num_kv_heads()),
        ] {
            if v <= 0 {
                return bad(format!("`{key}` must be positive, got {v}"));
            }
        }
        if self.head_dim.is_none() && self.hidden_size % self.num_attention_heads != 0 {
            return bad(format!(
                "hidden_size {} is not a multiple of num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.num_attention_heads % self.num_kv_heads() != 0 {
            return bad(format!(
                "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                self.num_attention_heads,
                self.num_kv_heads()
            ));
        }
        Ok(())
    }

    /// `H_kv`.
    pub fn num_kv_heads(&self) -> i32 {
        self.num_key_value_heads.unwrap_or(self.num_attention_heads)
    }

    /// `D`, the width of one head.
    pub fn head_dim(&self) -> i32 {
        self.head_dim
            .unwrap_or(self.hidden_size / self.num_attention_heads)
    }

    /// The positions a model's RoPE table covers, and so its context length:
    /// `max_position_embeddings`, capped at [`MAX_ROPE_POSITIONS`] (at least
    /// 1). A config may claim a huge context (1e9 positions would be a
    /// 256 GiB table at `D = 64`); the table is sized to what can be used.
    pub fn rope_positions(&self) -> i32 {
        self.max_position_embeddings.clamp(1, MAX_ROPE_POSITIONS)
    }

    /// Whether q/k/v carry biases: always for Qwen2, `attention_bias` for Llama.
    pub fn qkv_bias(&self) -> bool {
        self.attention_bias.unwrap_or(self.model_type == "qwen2")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &str = r#"{"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "vocab_size": 1088, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
        "tie_word_embeddings": true}"#;

    #[test]
    fn parses_hf_keys() {
        let c = Qwen2Config::from_json(TINY, "tiny").unwrap();
        assert_eq!(
            (c.head_dim(), c.num_kv_heads(), c.qkv_bias()),
            (16, 2, true)
        );
        assert_eq!(c.rope_theta, 1e6);
    }

    #[test]
    fn missing_key_is_named() {
        let text = TINY.replace("\"rms_norm_eps\": 1e-6,", "");
        let err = Qwen2Config::from_json(&text, "cfg.json")
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing required key `rms_norm_eps`"), "{err}");
    }

    #[test]
    fn wrong_type_and_bad_sizes_are_errors() {
        let text = TINY.replace("\"hidden_size\": 64", "\"hidden_size\": \"64\"");
        assert!(Qwen2Config::from_json(&text, "c").is_err());
        let text = TINY.replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3");
        let err = Qwen2Config::from_json(&text, "c").unwrap_err().to_string();
        assert!(err.contains("num_key_value_heads"), "{err}");
    }

    #[test]
    fn llama_has_no_qkv_bias_by_default() {
        let text = TINY.replace("qwen2", "llama");
        assert!(!Qwen2Config::from_json(&text, "c").unwrap().qkv_bias());
    }

    #[test]
    fn rope_positions_are_capped() {
        let c = Qwen2Config::from_json(TINY, "tiny").unwrap();
        assert_eq!(c.rope_positions(), 32768); // the default
        let huge = TINY.replace(
            "\"tie_word_embeddings\"",
            "\"max_position_embeddings\": 1000000000, \"tie_word_embeddings\"",
        );
        let c = Qwen2Config::from_json(&huge, "tiny").unwrap();
        assert_eq!(c.max_position_embeddings, 1_000_000_000);
        assert_eq!(c.rope_positions(), MAX_ROPE_POSITIONS);
    }
}
