//! Beyond the course (given code): a quantized linear layer through the
//! int8-activation kernel ([`crate::qmatmul_q8`]), for the week-2 model when
//! [`crate::Week2Kernels::int8_activations`] is on. The crossing is the
//! same as day 10's `quantized_linear` (through [`crate::cpu_bridge`]).
//!
//! Measured (`cargo run --release -p tiny-llm-ref --example decode_bench`,
//! Qwen2.5-Coder-0.5B 4-bit, the kit's 2-core EPYC shared with other
//! builds, load 8-12, 2026-12-02, one run): int8 vs exact, prefill of 512
//! tokens 19.6 vs 15.2 tok/s (1.29x), decode after 128 tokens 13.2 vs 8.1
//! tok/s (1.63x wall, 54 vs 69 CPU ms a token), the same 49 greedy tokens.
//!
//! Reference: mlx-lm `QuantizedLinear` (what it computes); llama.cpp's
//! Q8_0 activations (how).

use crate::cpu_bridge::{crossing, from_vec, host, host_f32};
use crate::qmatmul_q8::qmatmul_q8;
use crate::qmatrix::{QuantizedMatrix, Scale};
use crate::{shape_error, Error, Linear, LinearWeight, Result};
use half::{bf16, f16};
use mlx_rs::{Array, Dtype};

/// `x W^T + b` for a quantized [`Linear`] with `x` quantized to int8 per
/// group (see [`crate::qmatmul_q8`] for the algorithm and its error bound).
///
/// - `x`: `N.. x I`, any float dtype (read as f32); returns `N.. x O` f32.
/// - `layer`: a quantized `O x I` layer (4 or 8 bits, groups of 32, 64 or
///   128, scales and biases f32, f16 or bf16), with or without a bias.
///
/// Errors: [`Error::Invalid`] for a dense layer, a non-float `x`, or
/// scales and biases of different dtypes; [`Error::Shape`] when `x`'s last
/// dimension is not `I`.
pub fn quantized_linear_q8(x: &Array, layer: &Linear) -> Result<Array> {
    let LinearWeight::Quantized {
        w,
        scales,
        biases,
        group_size,
        bits,
    } = &layer.weight
    else {
        return Err(Error::Invalid(
            "quantized_linear_q8 needs a quantized layer (packed weight, scales, biases); this one is dense"
                .into(),
        ));
    };
    let (o, i) = (layer.out_features(), layer.in_features());
    if x.ndim() < 1 || x.dim(-1) != i {
        return Err(shape_error("x", x, &format!("[N.., {i}]")));
    }
    if scales.dtype() != biases.dtype() {
        return Err(Error::Invalid(format!(
            "scales ({:?}) and biases ({:?}) must have the same dtype",
            scales.dtype(),
            biases.dtype()
        )));
    }
    let m = x.size() / i.max(1) as usize;
    let xh = host_f32(x, "x")?;
    let wh = host(w, "weight", Dtype::Uint32)?;
    let sh = host(scales, "scales", scales.dtype())?;
    let bh = host(biases, "biases", biases.dtype())?;
    let mut out = vec![0f32; m * o as usize];
    let dims = (o as usize, i as usize, *group_size as usize, *bits as u32);
    crossing();
    let (xs, ws) = (xh.slice::<f32>()?, wh.slice::<u32>()?);
    match scales.dtype() {
        Dtype::Float32 => run::<f32>(xs, m, ws, sh.slice()?, bh.slice()?, dims, &mut out),
        Dtype::Bfloat16 => run::<bf16>(xs, m, ws, sh.slice()?, bh.slice()?, dims, &mut out),
        Dtype::Float16 => run::<f16>(xs, m, ws, sh.slice()?, bh.slice()?, dims, &mut out),
        d => Err(Error::Invalid(format!(
            "scales must be f32, f16 or bf16, got {d:?}"
        ))),
    }?;
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("ndim >= 1") = o;
    let y = from_vec(out, &shape)?;
    Ok(match &layer.bias {
        Some(b) => y.add(b)?,
        None => y,
    })
}

/// The kernel on borrowed slices; `dims` = `(O, I, group_size, bits)`.
fn run<S: Scale>(
    x: &[f32],
    m: usize,
    packed: &[u32],
    scales: &[S],
    biases: &[S],
    (o, i, group_size, bits): (usize, usize, usize, u32),
    out: &mut [f32],
) -> Result<()> {
    let kernel = |e: crate::qmatrix::KernelError| Error::Invalid(e.to_string());
    let w = QuantizedMatrix::new(packed, scales, biases, o, i, group_size, bits).map_err(kernel)?;
    qmatmul_q8(x, m, &w, out).map_err(kernel)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_dequantized_product_and_rejects_bad_input() {
        // 8 x 64 at 4 bits, group 32, with a bias: MLX's dequantize + matmul
        // is the independent reference; the int8 rounding bound here is
        // |s| * dx / 2 * sum q <= 0.02 * (1/127) / 2 * 32 * 15 per group.
        let w = Array::from_slice(
            &(0..8 * 64)
                .map(|k| ((k * 7) % 13) as f32 / 13.0 - 0.5)
                .collect::<Vec<_>>(),
            &[8, 64],
        );
        let (wq, s, b) = mlx_rs::ops::quantize(&w, 32, 4).unwrap();
        let bias = Array::from_slice(&[0.5f32; 8], &[8]);
        let layer = Linear::quantized(wq.clone(), s.clone(), b.clone(), 32, 4, Some(bias)).unwrap();
        let x = Array::from_slice(
            &(0..3 * 64)
                .map(|k| ((k * 5) % 11) as f32 / 11.0 - 0.4)
                .collect::<Vec<_>>(),
            &[3, 64],
        );
        let got = quantized_linear_q8(&x, &layer).unwrap();
        let dq = mlx_rs::ops::dequantize(&wq, &s, &b, 32, 4).unwrap();
        let want = x
            .matmul(dq.transpose().unwrap())
            .unwrap()
            .add(Array::from_f32(0.5))
            .unwrap();
        assert_eq!(got.shape(), &[3, 8]);
        let max_s = s.abs().unwrap().max(None).unwrap().item_exact::<f32>();
        let bound = 2.0 * max_s * (1.0 / 127.0) / 2.0 * 32.0 * 15.0 * 0.6 + 1e-5;
        let err = got
            .subtract(&want)
            .unwrap()
            .abs()
            .unwrap()
            .max(None)
            .unwrap()
            .item_exact::<f32>();
        assert!(err <= bound, "error {err} > bound {bound}");
        let e = quantized_linear_q8(&Array::from_slice(&[0f32; 3], &[1, 3]), &layer).unwrap_err();
        assert!(e.to_string().contains("x"), "{e}");
    }
}
