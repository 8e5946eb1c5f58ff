//! Times day 12's flash attention (through the bridge) against MLX's own
//! `fast::scaled_dot_product_attention` on Qwen2.5-0.5B's attention shapes
//! (14 query heads, 2 kv heads, D = 64), f32:
//! `cargo run -p tiny-llm-ref --example flash_bench [--release]`
//! (`TINY_LLM_FLASH=portable` times the portable loops).

use mlx_rs::fast::{scaled_dot_product_attention, ScaledDotProductAttentionMask};
use mlx_rs::{Array, Dtype};
use std::time::Instant;
use tiny_llm_common::AttentionMask;
use tiny_llm_ref::flash_attention::flash_attention;

fn best_ms(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let key = mlx_rs::random::key(1)?;
    for (l, s) in [(1, 128), (1, 4096), (128, 128), (512, 512), (1024, 4096)] {
        let q = mlx_rs::random::normal::<f32>(&[1, 14, l, 64], None, None, &key)?;
        let k = mlx_rs::random::normal::<f32>(&[1, 2, s, 64], None, None, &key)?;
        let v = k.multiply(Array::from_f32(0.5))?;
        mlx_rs::transforms::eval([&q, &k, &v])?;
        let causal = l > 1;
        let reps = if l * s > 1 << 20 { 3 } else { 20 };
        let ours = best_ms(reps, || {
            let m = if causal {
                AttentionMask::Causal
            } else {
                AttentionMask::None
            };
            flash_attention(&q, &k, &v, 0.125, m)
                .unwrap()
                .eval()
                .unwrap();
        });
        let kb = k.as_dtype(Dtype::Bfloat16)?;
        let vb = v.as_dtype(Dtype::Bfloat16)?;
        mlx_rs::transforms::eval([&kb, &vb])?;
        let ours_bf16 = best_ms(reps, || {
            let m = if causal {
                AttentionMask::Causal
            } else {
                AttentionMask::None
            };
            flash_attention(&q, &kb, &vb, 0.125, m)
                .unwrap()
                .eval()
                .unwrap();
        });
        let mlx = best_ms(reps, || {
            let m = causal.then_some(ScaledDotProductAttentionMask::Causal);
            scaled_dot_product_attention(&q, &k, &v, 0.125, m, None)
                .unwrap()
                .eval()
                .unwrap();
        });
        println!(
            "L = {l:4}, S = {s:4}: flash {ours:8.3} ms (K/V bf16 {ours_bf16:8.3} ms), MLX sdpa {mlx:8.3} ms"
        );
    }
    Ok(())
}
