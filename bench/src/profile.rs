//! `profile`: where one forward pass spends its time.

use crate::imp;
use crate::measure::{load_model, next_token, WARMUP_TOKENS};
use crate::prompt::read_ids;
use anyhow::{bail, Context, Result};
use mlx_rs::Array;
use serde_json::{json, Value};
use std::path::Path;
use std::time::Instant;
use tiny_llm_common::device::{mlx_dtype, DType};

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[xs.len() / 2]
}

/// `profile`: one `forward_last` over `len` ids, split into graph building
/// (the call, which returns a lazy array), evaluation, and, for comparison,
/// the same linear layers' matmuls alone on arrays of the same shapes and
/// dtype (the compute floor any week-1 implementation pays).
pub fn run(dir: &Path, dtype: DType, prompt: &Path, len: usize, reps: usize) -> Result<Value> {
    let dt = mlx_dtype(dtype);
    let ids = read_ids(prompt)?;
    if ids.len() < len {
        bail!(
            "{} has {} ids, {len} are needed",
            prompt.display(),
            ids.len()
        );
    }
    let (config, model) = load_model(dir, dt)?;
    next_token(&model, &ids[..WARMUP_TOKENS])?;
    let ids = &ids[..len];

    let (mut build, mut eval, mut step) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..reps.max(1) {
        let t0 = Instant::now();
        let input = Array::from_slice(ids, &[1, len as i32]);
        let logits = model.forward_last(&input).context("forward_last")?;
        let next = mlx_rs::ops::indexing::argmax_axis(&logits, -1, false)?;
        let t1 = Instant::now();
        let _: u32 = next.try_item_cast()?;
        let t2 = Instant::now();
        build.push((t1 - t0).as_secs_f64());
        eval.push((t2 - t1).as_secs_f64());
        step.push((t2 - t0).as_secs_f64());
    }

    // The linear layers alone: x (len x in) @ W^T (in x out), for every
    // projection of every layer, plus the output layer on the last position.
    let (e, i) = (config.hidden_size, config.intermediate_size);
    let (q, kv) = (
        config.num_attention_heads * config.head_dim(),
        config.num_kv_heads() * config.head_dim(),
    );
    let l = len as i32;
    let ones = |shape: &[i32]| -> Result<Array> {
        let a = mlx_rs::ops::ones::<f32>(shape)?.as_dtype(dt)?;
        a.eval()?;
        Ok(a)
    };
    let shapes = [(e, q), (e, kv), (e, kv), (q, e), (e, i), (e, i), (i, e)];
    let mut weights = Vec::new();
    for &(k, n) in &shapes {
        weights.push((ones(&[l, k])?, ones(&[n, k])?));
    }
    let head = (ones(&[1, e])?, ones(&[config.vocab_size, e])?);
    let mut flops = 0.0;
    for &(k, n) in &shapes {
        flops += 2.0 * f64::from(l) * f64::from(k) * f64::from(n);
    }
    flops = flops * f64::from(config.num_hidden_layers)
        + 2.0 * f64::from(e) * f64::from(config.vocab_size);
    let mut gemm = Vec::new();
    for _ in 0..reps.max(1) {
        let t = Instant::now();
        let mut outs = Vec::new();
        for _ in 0..config.num_hidden_layers {
            for (x, w) in &weights {
                outs.push(x.matmul(w.transpose()?)?);
            }
        }
        outs.push(head.0.matmul(head.1.transpose()?)?);
        mlx_rs::transforms::eval(outs.iter())?;
        gemm.push(t.elapsed().as_secs_f64());
    }
    // The main non-matmul pieces, each on arrays of the model's shapes, once
    // per layer (as one forward pass runs them).
    let layers = config.num_hidden_layers;
    let time_piece = |f: &dyn Fn() -> Result<Array>| -> Result<f64> {
        let mut ts = Vec::new();
        for _ in 0..reps.max(1) {
            let t = Instant::now();
            let outs = (0..layers).map(|_| f()).collect::<Result<Vec<_>, _>>()?;
            mlx_rs::transforms::eval(outs.iter())?;
            ts.push(t.elapsed().as_secs_f64());
        }
        Ok(median(ts))
    };
    let scores = ones(&[1, config.num_attention_heads, l, l])?;
    let gate = ones(&[1, l, i])?;
    let softmax_s = time_piece(&|| Ok(imp::basics::softmax(&scores, -1)?))?;
    let silu_s = time_piece(&|| Ok(imp::mlp::silu(&gate)?))?;
    let mask_s = time_piece(&|| Ok(imp::attention_grouped::causal_mask(l, l, dt)?))?;
    let (step, build, eval, gemm) = (median(step), median(build), median(eval), median(gemm));
    eprintln!(
        "  of which (each once per layer, alone): softmax over the scores {:.1} ms, silu {:.1} ms, \
         causal mask {:.1} ms",
        softmax_s * 1e3,
        silu_s * 1e3,
        mask_s * 1e3
    );
    eprintln!(
        "forward_last over {len} tokens ({dtype}): {:.1} ms per step = graph building {:.1} ms + \
         evaluation {:.1} ms; the linear layers' matmuls alone: {:.1} ms ({:.1} GFLOP, {:.1} GFLOP/s), \
         i.e. {:.0}% of the step; everything else (attention, norms, RoPE, SiLU, mask, casts): {:.1} ms",
        step * 1e3,
        build * 1e3,
        eval * 1e3,
        gemm * 1e3,
        flops / 1e9,
        flops / gemm / 1e9,
        100.0 * gemm / step,
        (step - build - gemm) * 1e3
    );
    Ok(json!({
        "status": "ok",
        "len": len,
        "step_seconds": step,
        "graph_build_seconds": build,
        "eval_seconds": eval,
        "gemm_floor_seconds": gemm,
        "gemm_gflop": flops / 1e9,
        "softmax_seconds": softmax_s,
        "silu_seconds": silu_s,
        "causal_mask_seconds": mask_s,
    }))
}
