//! Checkpoint tensors handed from one day to another (given code): the
//! weights of one attention layer and the checked lookup of a weight.
//!
//! They live here, not in a day's module, so that a day taken from the
//! reference (`ref-dayN`) and the learner's own days pass the same types.

use crate::{shape_error, Error, Result};
use mlx_rs::Array;
use std::collections::HashMap;

/// The checkpoint tensors of one attention layer
/// (`model.layers.{i}.self_attn.*`), in checkpoint layout (`out x in`).
///
/// Re-exported as `crate::qwen2_attention::Qwen2AttentionWeights`.
#[derive(Debug, Clone)]
pub struct Qwen2AttentionWeights {
    /// `q_proj.weight`, `H_q*D x E`.
    pub q_proj: Array,
    /// `k_proj.weight`, `H_kv*D x E`.
    pub k_proj: Array,
    /// `v_proj.weight`, `H_kv*D x E`.
    pub v_proj: Array,
    /// `o_proj.weight`, `E x H_q*D`.
    pub o_proj: Array,
    /// `q_proj.bias`, `H_q*D` (Qwen2 has it; Llama usually not).
    pub q_proj_bias: Option<Array>,
    /// `k_proj.bias`, `H_kv*D`.
    pub k_proj_bias: Option<Array>,
    /// `v_proj.bias`, `H_kv*D`.
    pub v_proj_bias: Option<Array>,
    /// `o_proj.bias`, `E` (never in Qwen2; Llama with `attention_bias`).
    pub o_proj_bias: Option<Array>,
}

/// `weights[key]`, checked to be a float array of shape `shape`.
///
/// Re-exported as `crate::transformer_block::take_weight`.
///
/// Errors: [`Error::Invalid`] naming `key` when it is missing or not a
/// float array (e.g. still quantized); [`Error::Shape`] naming `key` when
/// its shape differs.
pub fn take_weight(weights: &HashMap<String, Array>, key: &str, shape: &[i32]) -> Result<Array> {
    let w = weights
        .get(key)
        .ok_or_else(|| Error::Invalid(format!("missing weight `{key}`")))?;
    if !w.dtype().is_float() {
        return Err(Error::Invalid(format!(
            "weight `{key}` must be a float array, got {:?} (dequantize it first)",
            w.dtype()
        )));
    }
    if w.shape() != shape {
        return Err(shape_error(key, w, &format!("{shape:?}")));
    }
    Ok(w.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_weight_checks_presence_dtype_and_shape() {
        let mut w = HashMap::new();
        w.insert("a".to_string(), Array::from_slice(&[1.0f32, 2.0], &[2]));
        w.insert("q".to_string(), Array::from_slice(&[1u32, 2], &[2]));
        assert_eq!(take_weight(&w, "a", &[2]).unwrap().shape(), &[2]);
        let missing = take_weight(&w, "b", &[2]).unwrap_err().to_string();
        assert!(missing.contains("missing weight `b`"), "{missing}");
        let quant = take_weight(&w, "q", &[2]).unwrap_err().to_string();
        assert!(quant.contains("must be a float array"), "{quant}");
        let shape = take_weight(&w, "a", &[3]).unwrap_err().to_string();
        assert!(shape.contains("expected shape [3]"), "{shape}");
    }
}
