//! `matvec`: the decode matvec kernel's memory bandwidth on a GPU. Times
//! day 10's `qmatmul_gpu::quantized_matmul` alone at `M = 1` (one row of
//! `x`, the decode case, which runs the matvec kernel) on every linear-layer
//! shape of a Qwen2 model, 4-bit groups of 64 (the layout `mx.quantize`
//! gives), `x`, scales and biases in bf16.
//!
//! Per shape (`O x I`): warm-up calls (the first compiles the kernel through
//! NVRTC), then `reps` timed batches of `calls` independent products (each
//! on its own `x`, so none can be merged), all evaluated by one
//! `mlx_rs::transforms::eval`; the best batch's time per call is the
//! kernel's time. Bytes one call reads and writes:
//! `O*I/2` (packed codes) `+ 2 * O*(I/64) * 2` (bf16 scales and biases)
//! `+ I*2` (x) `+ O*2` (out); bytes / time is the achieved bandwidth in
//! GB/s (1e9 bytes/s), also given as a fraction of `--peak-gbs` (4800: the
//! H200's HBM3e, 4.8 TB/s). A token's worth: every shape times its count
//! per token (7 per layer times the layers, plus the tied output matrix),
//! bytes summed over time summed.

use anyhow::{bail, Context, Result};
use mlx_rs::{Array, Dtype};
use serde_json::{json, Value};
use std::time::Instant;

use crate::imp::qmatmul_gpu::quantized_matmul;

/// Group size and bits of the measured layout (mlx-lm's default 4-bit).
const GROUP: i32 = 64;
const BITS: i32 = 4;

/// One linear-layer shape of the model: `count` of them per token.
#[derive(Debug, Clone, PartialEq)]
pub struct Shape {
    pub name: &'static str,
    pub out: i32,
    pub inp: i32,
    pub count: u64,
}

/// The dimensions the shapes come from (a Qwen2 `config.json`'s fields).
#[derive(Debug, Clone, Copy)]
pub struct Dims {
    pub hidden: i32,
    pub intermediate: i32,
    pub heads: i32,
    pub kv_heads: i32,
    pub layers: u64,
    pub vocab: i32,
}

/// The models `--model` names: Qwen2.5-0.5B and Qwen2.5-1.5B (their
/// `config.json`s on the Hugging Face hub).
pub fn dims(model: &str) -> Result<Dims> {
    Ok(match model {
        "qwen2.5-0.5b" => Dims {
            hidden: 896,
            intermediate: 4864,
            heads: 14,
            kv_heads: 2,
            layers: 24,
            vocab: 151936,
        },
        "qwen2.5-1.5b" => Dims {
            hidden: 1536,
            intermediate: 8960,
            heads: 12,
            kv_heads: 2,
            layers: 28,
            vocab: 151936,
        },
        other => bail!("--model {other:?}: expected qwen2.5-0.5b or qwen2.5-1.5b"),
    })
}

/// The linear layers one decode token runs: q, k, v, o, gate, up, down per
/// layer, and the tied embedding as the output matrix once.
pub fn shapes(d: Dims) -> Vec<Shape> {
    let head = d.hidden / d.heads;
    let l = d.layers;
    vec![
        Shape {
            name: "q_proj",
            out: d.heads * head,
            inp: d.hidden,
            count: l,
        },
        Shape {
            name: "k_proj",
            out: d.kv_heads * head,
            inp: d.hidden,
            count: l,
        },
        Shape {
            name: "v_proj",
            out: d.kv_heads * head,
            inp: d.hidden,
            count: l,
        },
        Shape {
            name: "o_proj",
            out: d.hidden,
            inp: d.heads * head,
            count: l,
        },
        Shape {
            name: "gate_proj",
            out: d.intermediate,
            inp: d.hidden,
            count: l,
        },
        Shape {
            name: "up_proj",
            out: d.intermediate,
            inp: d.hidden,
            count: l,
        },
        Shape {
            name: "down_proj",
            out: d.hidden,
            inp: d.intermediate,
            count: l,
        },
        Shape {
            name: "lm_head",
            out: d.vocab,
            inp: d.hidden,
            count: 1,
        },
    ]
}

/// Bytes one `M = 1` call moves: packed 4-bit codes, bf16 scales and
/// biases (one each per 64 inputs), bf16 `x` and output.
pub fn bytes(out: i32, inp: i32) -> u64 {
    let (o, i) = (out as u64, inp as u64);
    o * i / 2 + 2 * o * (i / GROUP as u64) * 2 + i * 2 + o * 2
}

/// Times one shape; returns seconds per call (best batch).
fn time_shape(s: &Shape, warmup: usize, calls: usize, reps: usize) -> Result<f64> {
    let w = mlx_rs::random::normal::<f32>(&[s.out, s.inp], None, None, None)?
        .as_dtype(Dtype::Bfloat16)?;
    let (wq, scales, biases) = mlx_rs::ops::quantize(&w, GROUP, BITS)?;
    let xs: Vec<Array> = (0..calls)
        .map(|_| {
            mlx_rs::random::normal::<f32>(&[1, s.inp], None, None, None)?.as_dtype(Dtype::Bfloat16)
        })
        .collect::<std::result::Result<_, _>>()?;
    mlx_rs::transforms::eval(xs.iter().chain([&wq, &scales, &biases]))?;
    for x in xs.iter().take(warmup.max(1)) {
        quantized_matmul(x, &wq, &scales, &biases, GROUP, BITS)
            .with_context(|| format!("quantized_matmul on {} ({} x {})", s.name, s.out, s.inp))?
            .eval()?;
    }
    let mut best = f64::INFINITY;
    for _ in 0..reps {
        let t = Instant::now();
        let outs = xs
            .iter()
            .map(|x| quantized_matmul(x, &wq, &scales, &biases, GROUP, BITS))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        mlx_rs::transforms::eval(&outs)?;
        best = best.min(t.elapsed().as_secs_f64() / calls as f64);
    }
    Ok(best)
}

/// Measures every shape of `model`; the report has one row per shape and
/// the token's total.
pub fn run(model: &str, warmup: usize, calls: usize, reps: usize, peak_gbs: f64) -> Result<Value> {
    if calls == 0 || reps == 0 {
        bail!("--calls and --reps must be at least 1");
    }
    if peak_gbs <= 0.0 {
        bail!("--peak-gbs must be positive (GB/s), got {peak_gbs}");
    }
    let d = dims(model)?;
    let mut rows = Vec::new();
    let (mut token_bytes, mut token_seconds) = (0u64, 0f64);
    for s in shapes(d) {
        let seconds = time_shape(&s, warmup, calls, reps)?;
        let b = bytes(s.out, s.inp);
        let gbs = b as f64 / seconds / 1e9;
        eprintln!(
            "  {:>9} {:>6} x {:>5}: {:8.2} us, {:7.1} GB/s ({:.0}% of {peak_gbs:.0})",
            s.name,
            s.out,
            s.inp,
            seconds * 1e6,
            gbs,
            100.0 * gbs / peak_gbs
        );
        token_bytes += b * s.count;
        token_seconds += seconds * s.count as f64;
        rows.push(json!({
            "name": s.name, "out": s.out, "in": s.inp, "count_per_token": s.count,
            "bytes": b, "seconds": seconds, "gb_per_s": gbs, "fraction_of_peak": gbs / peak_gbs,
        }));
    }
    let gbs = token_bytes as f64 / token_seconds / 1e9;
    Ok(json!({
        "status": "ok",
        "model": model,
        "group_size": GROUP,
        "bits": BITS,
        "dtype": "bf16",
        "calls": calls,
        "reps": reps,
        "peak_gb_per_s": peak_gbs,
        "shapes": rows,
        "token": {
            "bytes": token_bytes, "seconds": token_seconds,
            "gb_per_s": gbs, "fraction_of_peak": gbs / peak_gbs,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_count_codes_scales_biases_and_vectors() {
        // 128 x 64, by hand: codes 128*64/2 = 4096; one group per row:
        // 128 scales + 128 biases, 2 bytes each = 512; x 64*2 = 128;
        // out 128*2 = 256.
        assert_eq!(bytes(128, 64), 4096 + 512 + 128 + 256);
    }

    #[test]
    fn qwen_half_b_shapes_hold_its_weights() {
        let s = shapes(dims("qwen2.5-0.5b").unwrap());
        let params: u64 = s
            .iter()
            .map(|s| s.out as u64 * s.inp as u64 * s.count)
            .sum();
        // Qwen2.5-0.5B: 494M parameters, of which norms and q/k/v biases
        // are about 0.2M: the linear layers and the tied embedding hold
        // the rest (494,032,768 - 24*(896*2 + 896 + 128*2) - 896).
        assert_eq!(params, 494_032_768 - 24 * (896 * 2 + 896 + 256) - 896);
        assert_eq!(s[1].out, 128);
        assert!(dims("qwen2.5-7b").is_err());
    }
}
