//! Times day 10's kernel on Qwen2.5-0.5B's shapes (4-bit, group 64, bf16
//! scales, random codes): GB/s of weights read at M = 1 (decode) and
//! GFLOP/s at M = 128 (prefill), beside the int8-activation kernel
//! (`tiny_llm_common::qmatmul_q8`), MLX's own `quantized_matmul` and
//! dequantize-to-f32 + MLX matmul (OpenBLAS sgemm), the cost of one bridge
//! crossing, and a 2-thread streaming read (the memory roofline).
//!
//! ```sh
//! cargo run --release -p tiny-llm-ref --example qmatmul_bench [-- REPS]
//! ```

use half::bf16;
use mlx_rs::{Array, Dtype};
use std::time::Instant;
use tiny_llm_common::cpu_bridge;
use tiny_llm_common::qmatmul_q8::qmatmul_q8;
use tiny_llm_common::qmatrix::QuantizedMatrix;
use tiny_llm_common::{Linear, LinearWeight};
use tiny_llm_ref::qmatmul_simd::qmatmul;
use tiny_llm_ref::quantized_linear::quantized_linear;

/// xorshift64: deterministic random bits.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

/// Seconds per call of `f`, the best of 3 rounds of `reps` calls.
fn time(reps: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..3)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..reps {
                f();
            }
            t.elapsed().as_secs_f64() / reps as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// GB/s of a 2-thread sum over 512 MiB (read bandwidth).
fn read_bandwidth() -> f64 {
    let n = 512 << 20 >> 3;
    let buf: Vec<u64> = (0..n as u64).collect();
    let secs = time(3, || {
        let s: u64 = std::thread::scope(|sc| {
            let hs: Vec<_> = buf
                .chunks(n / 2)
                .map(|c| sc.spawn(move || c.iter().fold(0u64, |a, &b| a.wrapping_add(b))))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        std::hint::black_box(s);
    });
    (n * 8) as f64 / secs / 1e9
}

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let bw = read_bandwidth();
    println!("read bandwidth (2 threads, 512 MiB): {bw:.1} GB/s");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (g, bits) = (64usize, 4u32);
    println!(
        "shape (O x I)    M     kernel           GB/s  GFLOP/s   int8-act kernel  GB/s   MLX qmm   deq+sgemm"
    );
    for (o, i) in [
        (896usize, 896usize),
        (128, 896),
        (4864, 896),
        (896, 4864),
        (151936, 896),
    ] {
        let packed: Vec<u32> = (0..o * i / 8).map(|_| rng.next() as u32).collect();
        let scales: Vec<bf16> = (0..o * i / g)
            .map(|_| bf16::from_f32(rng.unit() * 0.02))
            .collect();
        let biases: Vec<bf16> = (0..o * i / g)
            .map(|_| bf16::from_f32(rng.unit() * 0.1))
            .collect();
        let w = QuantizedMatrix::new(&packed, &scales, &biases, o, i, g, bits).unwrap();
        let layer = Linear::quantized(
            Array::from_slice(&packed, &[o as i32, (i / 8) as i32]),
            Array::from_slice(&scales, &[o as i32, (i / g) as i32]),
            Array::from_slice(&biases, &[o as i32, (i / g) as i32]),
            g as i32,
            bits as i32,
            None,
        )
        .unwrap();
        for m in [1usize, 128] {
            let x: Vec<f32> = (0..m * i).map(|_| rng.unit()).collect();
            let mut out = vec![0f32; m * o];
            let r = if m == 1 {
                reps * 20 * 896 * 896 / (o * i) + 1
            } else {
                reps / 10 + 1
            };
            let t = time(r, || qmatmul(&x, m, &w, &mut out).unwrap());
            let gbs = w.bytes() as f64 / t / 1e9;
            let gflops = 2.0 * (m * o * i) as f64 / t / 1e9;
            let t_q8 = time(r, || qmatmul_q8(&x, m, &w, &mut out).unwrap());
            let xa = Array::from_slice(&x, &[m as i32, i as i32]);
            let mlx_reps = (r / 10).max(1);
            let t_qmm = time(mlx_reps, || {
                layer.forward(&xa).unwrap().eval().unwrap();
            });
            let t_deq = if m > 1 {
                let LinearWeight::Quantized {
                    w, scales, biases, ..
                } = &layer.weight
                else {
                    unreachable!()
                };
                let t = time(mlx_reps, || {
                    let d = mlx_rs::ops::dequantize(w, scales, biases, g as i32, bits as i32)
                        .unwrap()
                        .as_dtype(Dtype::Float32)
                        .unwrap();
                    xa.matmul(d.transpose().unwrap()).unwrap().eval().unwrap();
                });
                format!("{:>9.1} us", t * 1e6)
            } else {
                "-".into()
            };
            println!(
                "{o:>6} x {i:<5} {m:>4} {:>11.1} us {gbs:>7.2} {gflops:>8.1} {:>13.1} us {:>6.2} {:>9.1} us {t_deq}",
                t * 1e6,
                t_q8 * 1e6,
                w.bytes() as f64 / t_q8 / 1e9,
                t_qmm * 1e6
            );
        }
        if o == 128 {
            // one crossing of quantized_linear, everything already evaluated
            let xa = Array::from_slice(&vec![0.5f32; i], &[1, i as i32]);
            xa.eval().unwrap();
            let t_lin = time(reps * 50, || {
                quantized_linear(&xa, &layer).unwrap();
            });
            let mut out = vec![0f32; o];
            let xs = vec![0.5f32; i];
            let t_k = time(reps * 50, || qmatmul(&xs, 1, &w, &mut out).unwrap());
            println!(
                "bridge: quantized_linear 1 x {i} by {o} x {i}: {:.1} us, kernel alone {:.1} us: {:.1} us a crossing ({:?})",
                t_lin * 1e6,
                t_k * 1e6,
                (t_lin - t_k) * 1e6,
                cpu_bridge::stats()
            );
        }
    }
}
