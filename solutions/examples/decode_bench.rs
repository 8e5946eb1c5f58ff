//! Times the reference week-2 model end to end (prefill and decode tok/s)
//! with and without the int8-activation matmuls, in one process, so the
//! kernel choices are compared under the same machine load. A measuring
//! aid for the quantized kernels (`cargo xtask bench week2` is the kit's
//! benchmark, against llama.cpp).
//!
//! ```sh
//! cargo run --release -p tiny-llm-ref --example decode_bench -- \
//!     [MODEL_DIR] [DECODE_TOKENS] [CONTEXT] [PREFILL]
//! ```
//!
//! Defaults: `~/.cache/tiny-llm-rs/models/qwen2.5-coder-0.5b-4bit`, 48
//! decoded tokens after a 128-token context, a 512-token prefill. The prompt
//! is a fixed run of token ids (the speed does not depend on the text).
//! `TINY_LLM_KERNELS=exact|int8|both` (default both) picks the rows.

use mlx_rs::{Array, Dtype};
use std::path::PathBuf;
use std::time::Instant;
use tiny_llm_common::{Checkpoint, KvCache, Qwen2Config, Week2Kernels};
use tiny_llm_ref::qwen2_week2::Qwen2ModelWeek2;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// Greedy next token after `ids` at `offset` (read back: a full sync).
fn step(
    model: &Qwen2ModelWeek2,
    ids: &[i32],
    offset: usize,
    cache: &mut [Box<dyn KvCache>],
) -> Result<i32> {
    let input = Array::from_slice(ids, &[1, ids.len() as i32]);
    let logits = model.forward_last(&input, offset, cache)?;
    let next = mlx_rs::ops::indexing::argmax_axis(&logits, -1, false)?;
    Ok(next.try_item_cast::<u32>()? as i32)
}

/// This process's CPU time (user + system, all threads) in seconds, from
/// `/proc/self/stat` (Linux; 0 elsewhere): on a machine shared with other
/// work, CPU time per token compares kernels better than wall time.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // fields after the command's closing parenthesis; utime, stime are 14, 15
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|v| v.parse().ok())
        .collect();
    f.iter().sum::<f64>() / 100.0 // USER_HZ, 100 on Linux
}

/// Prefill seconds for `prefill` ids, decode tok/s over `decode` steps
/// after `context` ids, CPU ms per decoded token, and the decoded ids.
fn measure(
    model: &Qwen2ModelWeek2,
    prompt: &[i32],
    prefill: usize,
    context: usize,
    decode: usize,
) -> Result<(f64, f64, f64, Vec<i32>)> {
    let mut cache = model.new_cache();
    let t = Instant::now();
    step(model, &prompt[..prefill], 0, &mut cache)?;
    let prefill_s = t.elapsed().as_secs_f64();
    let mut cache = model.new_cache();
    let mut token = step(model, &prompt[..context], 0, &mut cache)?;
    let mut out = vec![token];
    let (t, cpu) = (Instant::now(), cpu_seconds());
    for i in 0..decode {
        token = step(model, &[token], context + i, &mut cache)?;
        out.push(token);
    }
    let tok_s = decode as f64 / t.elapsed().as_secs_f64();
    let cpu_ms = (cpu_seconds() - cpu) * 1e3 / decode.max(1) as f64;
    Ok((prefill_s, tok_s, cpu_ms, out))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args.first().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default())
            .join(".cache/tiny-llm-rs/models/qwen2.5-coder-0.5b-4bit")
    });
    let num = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (decode, context, prefill) = (num(1, 48), num(2, 128), num(3, 512));
    let config = Qwen2Config::from_file(&dir.join("config.json"))?;
    let checkpoint = Checkpoint::load(&dir)?;
    let model = Qwen2ModelWeek2::new(&config, &checkpoint, Dtype::Float32)?;
    let prompt: Vec<i32> = (0..prefill.max(context) as i32)
        .map(|i| 1000 + (i * 7919) % 20000)
        .collect();
    let which = std::env::var("TINY_LLM_KERNELS").unwrap_or_else(|_| "both".into());
    let mut rows = Vec::new();
    if which != "int8" {
        rows.push(("exact", Week2Kernels::NONE));
    }
    if which != "exact" {
        let int8 = Week2Kernels {
            int8_activations: true,
            ..Week2Kernels::NONE
        };
        rows.push(("int8", int8));
    }
    let mut model = Some(model);
    let mut first: Option<Vec<i32>> = None;
    for (name, kernels) in rows {
        let m = model.take().expect("model").with_kernels(kernels);
        measure(&m, &prompt, 16, 16, 2)?; // warm-up
        let (p, d, cpu_ms, toks) = measure(&m, &prompt, prefill, context, decode)?;
        let same = first
            .as_ref()
            .map(|f| f.iter().zip(&toks).take_while(|(a, b)| a == b).count());
        println!(
            "{name:6} prefill {prefill}: {:7.1} tok/s ({p:.3} s)   decode after {context}: {d:6.2} tok/s \
             ({cpu_ms:.0} CPU ms a token)   \
             greedy ids equal to the first row's for {same:?} of {} steps",
            prefill as f64 / p,
            toks.len()
        );
        first.get_or_insert(toks);
        model = Some(m);
    }
    Ok(())
}
