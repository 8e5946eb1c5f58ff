//! `qmatmul`: the int8-activation CPU kernel (`tiny_llm_common::qmatmul_q8`)
//! alone, one decode step's worth of it, at `M` activation rows. No MLX.
//!
//! A step is every linear layer a Qwen2 decode token runs (the shapes of
//! [`crate::matvec::shapes`]: q, k, v, o, gate, up, down per layer and the
//! tied output matrix), each layer with its own weights (random 4-bit codes,
//! groups of 64, bf16 scales and biases: the layout of the 4-bit
//! checkpoints), so a step streams all of them from memory as the model
//! does. `M` rows of `x` stand for `M` sequences decoding together (the
//! engine's batched step). Per `M`: one warm-up step, then `reps` timed
//! steps; the median is reported, with its ratio to the `M = 1` step and
//! the weight bytes read per second (`bytes / step`; the roofline's
//! numerator, against `tiny-llm-bench bandwidth`).
//!
//! The machine is shared: besides wall time, each `M` reports the CPU time
//! of the whole process per step (`cpu_ms`: the threads' on-CPU
//! nanoseconds from `/proc/self/task/*/schedstat`, summed over the timed
//! steps and divided by their count), which other processes' load
//! disturbs less than the wall time.
//!
//! The instruction set is the kernel's own choice; `TINY_LLM_QMATMUL=avx2`
//! or `=scalar` forces one (read once per process).

use crate::matvec::{dims, shapes};
use anyhow::{bail, Result};
use half::bf16;
use serde_json::{json, Value};
use std::time::Instant;
use tiny_llm_common::qmatmul_q8::qmatmul_q8;
use tiny_llm_common::qmatrix::QuantizedMatrix;

const GROUP: usize = 64;

/// One layer's packed weight.
struct Layer {
    rows: usize,
    cols: usize,
    packed: Vec<u32>,
    scales: Vec<bf16>,
    biases: Vec<bf16>,
}

impl Layer {
    fn new(rows: usize, cols: usize, seed: u64) -> Layer {
        let mut rng = seed | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let groups = rows * cols / GROUP;
        let packed = (0..rows * cols / 8).map(|_| next() as u32).collect();
        let unit = |v: u64| (v >> 40) as f32 / (1u64 << 24) as f32 - 0.5;
        let scales = (0..groups)
            .map(|_| bf16::from_f32(0.01 * unit(next())))
            .collect();
        let biases = (0..groups)
            .map(|_| bf16::from_f32(0.05 * unit(next())))
            .collect();
        Layer {
            rows,
            cols,
            packed,
            scales,
            biases,
        }
    }

    /// Codes, scales and biases: what one call reads of the weight.
    fn bytes(&self) -> usize {
        self.packed.len() * 4 + (self.scales.len() + self.biases.len()) * 2
    }
}

/// Times decode steps of `model`'s shapes at each `M` of `ms`.
pub fn run(model: &str, ms: &[usize], reps: usize) -> Result<Value> {
    if ms.is_empty() || ms.contains(&0) || reps == 0 {
        bail!("--m needs rows of at least 1 and --reps at least 1");
    }
    let mut layers = Vec::new();
    for (k, s) in shapes(dims(model)?).iter().enumerate() {
        for c in 0..s.count {
            let seed = 0x9E37_79B9_7F4A_7C15u64 ^ ((k as u64) << 32 | c);
            layers.push(Layer::new(s.out as usize, s.inp as usize, seed));
        }
    }
    let bytes: usize = layers.iter().map(Layer::bytes).sum();
    let widest = layers.iter().map(|l| l.rows.max(l.cols)).max().unwrap_or(0);
    let m_max = *ms.iter().max().expect("not empty");
    let x: Vec<f32> = (0..m_max * widest)
        .map(|i| ((i * 7919) % 2003) as f32 / 1001.0 - 1.0)
        .collect();
    let mut out = vec![0f32; m_max * widest];
    let mut step = |m: usize| -> Result<f64> {
        let t = Instant::now();
        for l in &layers {
            let w =
                QuantizedMatrix::new(&l.packed, &l.scales, &l.biases, l.rows, l.cols, GROUP, 4)?;
            qmatmul_q8(&x[..m * l.cols], m, &w, &mut out[..m * l.rows])?;
        }
        Ok(t.elapsed().as_secs_f64())
    };
    let mut rows = Vec::new();
    let mut base = None;
    for &m in ms {
        step(m)?;
        let cpu0 = cpu_ns();
        let mut times: Vec<f64> = (0..reps).map(|_| step(m)).collect::<Result<_>>()?;
        let cpu_ms = (cpu_ns() - cpu0) as f64 / reps as f64 / 1e6;
        times.sort_by(f64::total_cmp);
        let median = times[times.len() / 2];
        let base_s = *base.get_or_insert(if m == 1 { median } else { f64::NAN });
        rows.push(json!({
            "m": m,
            "step_ms": median * 1e3,
            "step_ms_all": times.iter().map(|t| t * 1e3).collect::<Vec<_>>(),
            "vs_m1": median / base_s,
            "cpu_ms": cpu_ms,
            "weight_gb_s": bytes as f64 / median / 1e9,
            "rows_per_s": m as f64 / median,
        }));
    }
    Ok(json!({
        "status": "ok",
        "model": model,
        "weight_bytes": bytes,
        "cpus": cpus(),
        "isa_env": std::env::var("TINY_LLM_QMATMUL").unwrap_or_default(),
        "steps": rows,
    }))
}

/// On-CPU nanoseconds of every thread of this process so far (the first
/// field of each `/proc/self/task/<tid>/schedstat`; 0 where unreadable).
fn cpu_ns() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    dir.flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
