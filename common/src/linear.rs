//! A linear layer whose weight is dense or MLX-affine-quantized (given code,
//! the week-2 seam for quantized models).
//!
//! Week 1 dequantizes a checkpoint's packed weights once, at load (day 6's
//! `dequantize_affine`). Week 2 keeps them packed and multiplies with them
//! directly (`quantized_matmul`, then its own kernels); a [`Linear`] holds
//! either form behind one `forward`.
//!
//! Reference: `mlx.nn.Linear` and `mlx.nn.QuantizedLinear`; the packing is
//! `mx.quantize`'s affine mode (`w = scale * q + bias` per group of
//! `group_size` inputs, `32 / bits` codes per `uint32`, lowest bits first).

use crate::{shape_error, Error, Result};
use mlx_rs::{Array, Dtype};

/// The weight of a [`Linear`], in checkpoint layout (`out x in`).
#[derive(Debug, Clone)]
pub enum LinearWeight {
    /// A float `O x I` matrix.
    Dense(Array),
    /// MLX affine quantization of an `O x I` matrix.
    Quantized {
        /// Packed codes, `O x (I * bits / 32)` `uint32`.
        w: Array,
        /// Per-group scales, `O x (I / group_size)`, float.
        scales: Array,
        /// Per-group offsets, `O x (I / group_size)`, float (the scales'
        /// dtype).
        biases: Array,
        /// Inputs per group (32, 64 or 128).
        group_size: i32,
        /// Bits per code (4 or 8).
        bits: i32,
    },
}

/// `y = x W^T + b` with a dense or quantized `W` (`O x I`) and an optional
/// bias `b` (`O`).
#[derive(Debug, Clone)]
pub struct Linear {
    /// The weight.
    pub weight: LinearWeight,
    /// The bias, `O`, or `None`.
    pub bias: Option<Array>,
}

impl Linear {
    /// A dense layer.
    ///
    /// Errors: [`Error::Shape`] when `w` is not 2-D (`O x I`) or `bias` is
    /// not `[O]`; [`Error::Invalid`] when `w` is not a float array.
    pub fn dense(w: Array, bias: Option<Array>) -> Result<Linear> {
        if w.ndim() != 2 {
            return Err(shape_error("weight", &w, "[O, I]"));
        }
        if !w.dtype().is_float() {
            return Err(Error::Invalid(format!(
                "a dense weight must be a float array, got {:?} (a quantized one needs scales and biases)",
                w.dtype()
            )));
        }
        check_bias(&bias, w.dim(0))?;
        Ok(Linear {
            weight: LinearWeight::Dense(w),
            bias,
        })
    }

    /// A quantized layer from MLX's packed weight, scales and biases.
    ///
    /// Errors: [`Error::Invalid`] for `bits` other than 4 or 8, a
    /// `group_size` other than 32, 64 or 128, a `w` that is not `uint32`,
    /// or scales/biases that are not float; [`Error::Shape`] naming the
    /// tensor when the shapes do not fit together (`w` `O x P`, scales and
    /// biases `O x (P * 32 / bits / group_size)`, bias `[O]`).
    pub fn quantized(
        w: Array,
        scales: Array,
        biases: Array,
        group_size: i32,
        bits: i32,
        bias: Option<Array>,
    ) -> Result<Linear> {
        if bits != 4 && bits != 8 {
            return Err(Error::Invalid(format!("bits must be 4 or 8, got {bits}")));
        }
        if ![32, 64, 128].contains(&group_size) {
            return Err(Error::Invalid(format!(
                "group_size must be 32, 64 or 128, got {group_size}"
            )));
        }
        if w.dtype() != Dtype::Uint32 {
            return Err(Error::Invalid(format!(
                "a quantized weight must be uint32, got {:?}",
                w.dtype()
            )));
        }
        if w.ndim() != 2 {
            return Err(shape_error("weight", &w, "[O, I * bits / 32]"));
        }
        let (o, inputs) = (w.dim(0), w.dim(1) * 32 / bits);
        if inputs % group_size != 0 {
            return Err(shape_error(
                "weight",
                &w,
                &format!("[O, P] with P * 32 / {bits} a multiple of group_size {group_size}"),
            ));
        }
        let groups = [o, inputs / group_size];
        for (name, t) in [("scales", &scales), ("biases", &biases)] {
            if !t.dtype().is_float() {
                return Err(Error::Invalid(format!(
                    "{name} must be a float array, got {:?}",
                    t.dtype()
                )));
            }
            if t.shape() != groups {
                return Err(shape_error(name, t, &format!("{groups:?}")));
            }
        }
        check_bias(&bias, o)?;
        Ok(Linear {
            weight: LinearWeight::Quantized {
                w,
                scales,
                biases,
                group_size,
                bits,
            },
            bias,
        })
    }

    /// `O`, the output width.
    pub fn out_features(&self) -> i32 {
        match &self.weight {
            LinearWeight::Dense(w) => w.dim(0),
            LinearWeight::Quantized { w, .. } => w.dim(0),
        }
    }

    /// `I`, the input width.
    pub fn in_features(&self) -> i32 {
        match &self.weight {
            LinearWeight::Dense(w) => w.dim(1),
            LinearWeight::Quantized { w, bits, .. } => w.dim(1) * 32 / bits,
        }
    }

    /// Whether the weight is stored quantized.
    pub fn is_quantized(&self) -> bool {
        matches!(self.weight, LinearWeight::Quantized { .. })
    }

    /// `x W^T + b`.
    ///
    /// - `x`: `N.. x I`, float; a quantized layer computes in the scales'
    ///   dtype.
    /// - returns: `N.. x O`.
    ///
    /// Errors: [`Error::Shape`] when `x`'s last dimension is not `I`.
    pub fn forward(&self, x: &Array) -> Result<Array> {
        let i = self.in_features();
        if x.ndim() < 1 || x.dim(-1) != i {
            return Err(shape_error("x", x, &format!("[N.., {i}]")));
        }
        let y = match &self.weight {
            LinearWeight::Dense(w) => x.matmul(w.transpose()?)?,
            LinearWeight::Quantized {
                w,
                scales,
                biases,
                group_size,
                bits,
            } => mlx_rs::ops::quantized_matmul(x, w, scales, biases, true, *group_size, *bits)?,
        };
        Ok(match &self.bias {
            Some(b) => y.add(b)?,
            None => y,
        })
    }
}

impl Linear {
    /// The layer `prefix` (e.g. `model.layers.0.self_attn.q_proj`) from
    /// checkpoint tensors: quantized when `{prefix}.scales` is present (with
    /// `{prefix}.weight` packed and `{prefix}.biases`, at `quantization` =
    /// `(group_size, bits)` from `config.json`), else dense from
    /// `{prefix}.weight`; `{prefix}.bias` when present.
    ///
    /// Errors: [`Error::Invalid`] naming the key that is missing, or
    /// `quantization` when a quantized layer has none; the errors of
    /// [`Linear::dense`] and [`Linear::quantized`].
    pub fn from_weights(
        weights: &std::collections::HashMap<String, Array>,
        prefix: &str,
        quantization: Option<(i32, i32)>,
    ) -> Result<Linear> {
        let get = |name: &str| {
            let key = format!("{prefix}.{name}");
            weights
                .get(&key)
                .cloned()
                .ok_or_else(|| Error::Invalid(format!("missing weight `{key}`")))
        };
        let bias = weights.get(&format!("{prefix}.bias")).cloned();
        if weights.contains_key(&format!("{prefix}.scales")) {
            let (group_size, bits) = quantization.ok_or_else(|| {
                Error::Invalid(format!(
                    "`{prefix}.scales` is quantized but no quantization (group_size, bits) was given"
                ))
            })?;
            Linear::quantized(
                get("weight")?,
                get("scales")?,
                get("biases")?,
                group_size,
                bits,
                bias,
            )
        } else {
            Linear::dense(get("weight")?, bias)
        }
    }
}

fn check_bias(bias: &Option<Array>, o: i32) -> Result<()> {
    match bias {
        Some(b) if b.shape() != [o] => Err(shape_error("bias", b, &format!("[{o}]"))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_forward_is_x_w_transposed_plus_b() {
        // W = [[1, 2], [3, 4], [5, 6]] (O = 3, I = 2), b = [1, 0, -1]
        let w = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2]);
        let b = Array::from_slice(&[1.0f32, 0.0, -1.0], &[3]);
        let l = Linear::dense(w, Some(b)).unwrap();
        assert_eq!((l.out_features(), l.in_features()), (3, 2));
        let x = Array::from_slice(&[1.0f32, 1.0, 2.0, -1.0], &[2, 2]);
        let y = l.forward(&x).unwrap();
        assert_eq!(y.shape(), &[2, 3]);
        // [1, 1] -> [3+1, 7, 11-1]; [2, -1] -> [0+1, 2, 4-1]
        assert_eq!(y.as_slice::<f32>(), &[4.0, 7.0, 10.0, 1.0, 2.0, 3.0]);
        let e = l
            .forward(&Array::from_slice(&[1.0f32; 3], &[1, 3]))
            .unwrap_err();
        assert!(e.to_string().contains("[N.., 2]"), "{e}");
    }

    #[test]
    fn quantized_forward_uses_the_packed_codes() {
        // One row of 32 inputs, 4 bits: codes j = 0..32 % 16, 8 per word,
        // lowest bits first; one group, scale 0.5, bias -1:
        // w[j] = 0.5 * (j % 16) - 1.
        let codes: Vec<u32> = (0..32).map(|j| j % 16).collect();
        let words: Vec<u32> = codes
            .chunks(8)
            .map(|c| {
                c.iter()
                    .enumerate()
                    .fold(0u32, |acc, (k, &q)| acc | (q << (4 * k)))
            })
            .collect();
        let w = Array::from_slice(&words, &[1, 4]);
        let scales = Array::from_slice(&[0.5f32], &[1, 1]);
        let biases = Array::from_slice(&[-1.0f32], &[1, 1]);
        let l = Linear::quantized(w, scales, biases, 32, 4, None).unwrap();
        assert!(l.is_quantized());
        assert_eq!((l.out_features(), l.in_features()), (1, 32));
        let x = Array::from_slice(&[1.0f32; 32], &[1, 32]);
        let y = l.forward(&x).unwrap();
        let want: f32 = codes.iter().map(|&q| 0.5 * q as f32 - 1.0).sum();
        let got = y.as_slice::<f32>()[0];
        assert!((got - want).abs() < 1e-4, "got {got}, want {want}");
    }

    #[test]
    fn from_weights_picks_dense_or_quantized() {
        let mut w = std::collections::HashMap::new();
        w.insert(
            "d.weight".to_string(),
            Array::from_slice(&[1.0f32, 2.0], &[1, 2]),
        );
        w.insert(
            "q.weight".to_string(),
            Array::from_slice(&[0u32; 4], &[1, 4]),
        );
        w.insert(
            "q.scales".to_string(),
            Array::from_slice(&[1.0f32], &[1, 1]),
        );
        w.insert(
            "q.biases".to_string(),
            Array::from_slice(&[0.0f32], &[1, 1]),
        );
        let d = Linear::from_weights(&w, "d", None).unwrap();
        assert!(!d.is_quantized());
        let q = Linear::from_weights(&w, "q", Some((32, 4))).unwrap();
        assert!(q.is_quantized());
        assert_eq!(q.in_features(), 32);
        let e = Linear::from_weights(&w, "q", None).unwrap_err().to_string();
        assert!(e.contains("q.scales"), "{e}");
        let e = Linear::from_weights(&w, "x", None).unwrap_err().to_string();
        assert!(e.contains("missing weight `x.weight`"), "{e}");
    }

    #[test]
    fn quantized_rejects_bad_parts() {
        let w = Array::from_slice(&[0u32; 4], &[1, 4]);
        let s = Array::from_slice(&[1.0f32], &[1, 1]);
        let e = Linear::quantized(w.clone(), s.clone(), s.clone(), 32, 3, None).unwrap_err();
        assert!(e.to_string().contains("bits"), "{e}");
        let e = Linear::quantized(w.clone(), s.clone(), s.clone(), 48, 4, None).unwrap_err();
        assert!(e.to_string().contains("group_size"), "{e}");
        let two = Array::from_slice(&[1.0f32, 1.0], &[1, 2]);
        let e = Linear::quantized(w.clone(), two, s.clone(), 32, 4, None).unwrap_err();
        assert!(e.to_string().contains("scales"), "{e}");
        let f = Array::from_slice(&[0.0f32; 4], &[1, 4]);
        let e = Linear::quantized(f, s.clone(), s, 32, 4, None).unwrap_err();
        assert!(e.to_string().contains("uint32"), "{e}");
    }
}
