//! Several linear layers on the same input as one (given code): the rows of
//! a weight are independent, so stacking the layers' rows (and their packed
//! codes, scales, biases and bias, for quantized layers) gives one layer
//! whose output is theirs side by side. One matmul (one kernel call) then
//! does the work of several: the week-2 reference fuses q/k/v and gate/up.
//!
//! Reference: the fused `qkv_proj` and `gate_up_proj` of vLLM's Qwen2
//! (`QKVParallelLinear`, `MergedColumnParallelLinear`).

use crate::linear::{Linear, LinearWeight};
use crate::Result;
use mlx_rs::ops::concatenate;
use mlx_rs::Array;

impl Linear {
    /// The layers `parts` stacked along the output axis: for `x` `N.. x I`,
    /// `fused.forward(x)` is `concatenate([p.forward(x) for p in parts], -1)`
    /// (`N.. x sum(O_i)`), or `None` when they cannot be one layer: no parts,
    /// different input widths, dense and quantized mixed, quantized with a
    /// different `group_size`, `bits` or scales dtype, or some with a bias
    /// and some without.
    ///
    /// Errors: MLX's, and those of [`Linear::dense`] / [`Linear::quantized`]
    /// (not reachable with valid parts). The arrays are concatenated lazily:
    /// the copy happens on first use.
    pub fn concat_rows(parts: &[Linear]) -> Result<Option<Linear>> {
        let Some(first) = parts.first() else {
            return Ok(None);
        };
        if parts.iter().any(|p| p.in_features() != first.in_features()) {
            return Ok(None);
        }
        let cat = |arrays: Vec<&Array>| -> Result<Array> { Ok(concatenate(&arrays, 0)?) };
        let bias = match parts
            .iter()
            .map(|p| p.bias.as_ref())
            .collect::<Option<Vec<_>>>()
        {
            Some(b) => Some(cat(b)?),
            None if parts.iter().all(|p| p.bias.is_none()) => None,
            None => return Ok(None),
        };
        let fused = match &first.weight {
            LinearWeight::Dense(_) => {
                let mut ws = Vec::new();
                for p in parts {
                    match &p.weight {
                        LinearWeight::Dense(w) => ws.push(w),
                        LinearWeight::Quantized { .. } => return Ok(None),
                    }
                }
                Linear::dense(cat(ws)?, bias)?
            }
            LinearWeight::Quantized {
                group_size: g0,
                bits: b0,
                scales: s0,
                ..
            } => {
                let (mut ws, mut ss, mut bs) = (Vec::new(), Vec::new(), Vec::new());
                for p in parts {
                    match &p.weight {
                        LinearWeight::Quantized {
                            w,
                            scales,
                            biases,
                            group_size,
                            bits,
                        } if group_size == g0 && bits == b0 && scales.dtype() == s0.dtype() => {
                            ws.push(w);
                            ss.push(scales);
                            bs.push(biases);
                        }
                        _ => return Ok(None),
                    }
                }
                Linear::quantized(cat(ws)?, cat(ss)?, cat(bs)?, *g0, *b0, bias)?
            }
        };
        Ok(Some(fused))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dense(rows: &[f32], o: i32, bias: Option<&[f32]>) -> Linear {
        let b = bias.map(|b| Array::from_slice(b, &[o]));
        Linear::dense(Array::from_slice(rows, &[o, 2]), b).unwrap()
    }

    /// 4-bit, 64 inputs: every code `q`, scale `s`, offset 0.
    fn quantized(q: u32, s: f32, o: i32, group: i32) -> Linear {
        let word = (0..8).fold(0u32, |acc, k| acc | (q << (4 * k)));
        let w = Array::from_slice(&vec![word; (o * 8) as usize], &[o, 8]);
        let groups = 64 / group;
        let scales = Array::from_slice(&vec![s; (o * groups) as usize], &[o, groups]);
        let biases = Array::from_slice(&vec![0.0f32; (o * groups) as usize], &[o, groups]);
        Linear::quantized(w, scales, biases, group, 4, None).unwrap()
    }

    #[test]
    fn dense_rows_stack_and_outputs_sit_side_by_side() {
        // [[1, 0]] + b [1]; [[0, 1], [1, 1]] + b [0, -1]
        let a = dense(&[1.0, 0.0], 1, Some(&[1.0]));
        let b = dense(&[0.0, 1.0, 1.0, 1.0], 2, Some(&[0.0, -1.0]));
        let f = Linear::concat_rows(&[a, b]).unwrap().expect("fuses");
        assert_eq!((f.out_features(), f.in_features()), (3, 2));
        let y = f
            .forward(&Array::from_slice(&[2.0f32, 3.0], &[1, 2]))
            .unwrap();
        assert_eq!(y.as_slice::<f32>(), &[3.0, 3.0, 4.0]);
    }

    #[test]
    fn quantized_rows_stack() {
        let f = Linear::concat_rows(&[quantized(1, 0.5, 1, 32), quantized(3, 2.0, 2, 32)])
            .unwrap()
            .expect("fuses");
        assert!(f.is_quantized());
        let y = f
            .forward(&Array::from_slice(&[1.0f32; 64], &[1, 64]))
            .unwrap();
        // row 0: 64 * 0.5 * 1; rows 1, 2: 64 * 2 * 3
        assert_eq!(y.as_slice::<f32>(), &[32.0, 384.0, 384.0]);
    }

    #[test]
    fn unlike_layers_do_not_fuse() {
        let none = |parts: &[Linear]| Linear::concat_rows(parts).unwrap().is_none();
        assert!(none(&[]));
        assert!(none(&[
            dense(&[1.0, 0.0], 1, None),
            dense(&[1.0, 0.0], 1, Some(&[1.0]))
        ]));
        assert!(none(&[
            dense(&[1.0, 0.0], 1, None),
            quantized(1, 1.0, 1, 32)
        ]));
        assert!(none(&[quantized(1, 1.0, 1, 32), quantized(1, 1.0, 1, 64)]));
        let wide = Linear::dense(Array::from_slice(&[1.0f32; 3], &[1, 3]), None).unwrap();
        assert!(none(&[dense(&[1.0, 0.0], 1, None), wide]));
    }
}
