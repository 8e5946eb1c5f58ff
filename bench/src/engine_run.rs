//! `engine`: the week-3 engine (`tiny_llm_common::engine`) under a closed
//! loop of `N` clients, on a workload file written by `cargo xtask bench
//! week3` (the contract: `{"seed", "requests": [{"prompt": [ids],
//! "max_tokens"}]}`).
//!
//! The engine thread loads the implementation's week-2 model (with
//! `--kernels`, as `run --week 2`), the day-15 scheduler
//! (`FcfsScheduler`, `--max-batch-tokens` per step, `N` running) and batch
//! cache (`BatchKvCache`, through `BatchedLm`). Each client takes the next
//! request in workload order, submits it (greedy, end-of-sequence ignored,
//! so every request generates exactly `max_tokens`), reads its events until
//! `Done`, and takes the next. Timed from the first submit to the last
//! `Done`, after one warm-up request.
//!
//! Reports: `ttft_s` per request (submit to first token, in workload
//! order), `itl_s` (every gap between consecutive tokens of a request), the
//! engine's KV block counts (`ceil(cached tokens / 16)` summed over live
//! sequences) and peak RSS.

use crate::imp::batch_kv_cache::BatchKvCache;
use crate::imp::prefix_cache::PooledPrefixCache;
use crate::imp::qwen2_week2::Qwen2ModelWeek2;
use crate::imp::scheduler::{blocks_for, FcfsScheduler, SchedulerConfig};
use crate::kernels::KernelRequest;
use crate::measure::{max_rss_bytes, WARMUP_TOKENS};
use crate::measure2::load_with_kernels;
use anyhow::{bail, Context, Result};
use mlx_rs::Dtype;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tiny_llm_common::engine::{
    self, BatchedLm, EngineConfig, EngineHandle, Event, Request, Sampling,
};

/// Tokens per KV block in the engine's accounting (vLLM's default).
const BLOCK_SIZE: usize = 16;

/// What `engine` was asked to run.
pub struct EnginePlan {
    /// The model directory.
    pub model: PathBuf,
    /// The workload file.
    pub workload: PathBuf,
    /// Client threads (and the scheduler's running slots).
    pub concurrency: usize,
    /// The scheduler's token budget per step.
    pub max_batch_tokens: usize,
    /// `--prefix-cache on`.
    pub prefix_cache: bool,
    /// `--kernels`.
    pub kernels: KernelRequest,
    /// Activations' dtype.
    pub dtype: Dtype,
}

/// One request of the workload.
struct Work {
    prompt: Vec<u32>,
    max_tokens: usize,
}

fn read_workload(path: &Path) -> Result<Vec<Work>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading the workload {}", path.display()))?;
    let v: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    let Some(reqs) = v["requests"].as_array() else {
        bail!("{}: expected {{\"requests\": [...]}}", path.display());
    };
    let mut out = Vec::with_capacity(reqs.len());
    for (i, r) in reqs.iter().enumerate() {
        let prompt: Option<Vec<u32>> = r["prompt"].as_array().and_then(|a| {
            a.iter()
                .map(|x| x.as_u64().and_then(|x| u32::try_from(x).ok()))
                .collect()
        });
        let (Some(prompt), Some(max_tokens)) = (prompt, r["max_tokens"].as_u64()) else {
            bail!(
                "{}: request {i}: expected {{\"prompt\": [u32 ids], \"max_tokens\": n}}",
                path.display()
            );
        };
        if prompt.is_empty() || max_tokens == 0 {
            bail!(
                "{}: request {i} has an empty prompt or max_tokens 0",
                path.display()
            );
        }
        out.push(Work {
            prompt,
            max_tokens: max_tokens as usize,
        });
    }
    if out.is_empty() {
        bail!("{}: no requests", path.display());
    }
    Ok(out)
}

/// What one client saw of one request.
#[derive(Default, Clone)]
struct Seen {
    ttft: f64,
    itl: Vec<f64>,
    output_tokens: u64,
    prefill_computed: u64,
}

/// Submits `w` and reads its events until the end.
fn serve_one(h: &EngineHandle, w: &Work) -> Result<Seen> {
    let t0 = Instant::now();
    let (_, rx) = h.submit(Request {
        prompt: w.prompt.clone(),
        max_tokens: w.max_tokens,
        sampling: Sampling::GREEDY,
        ignore_eos: true,
    });
    let mut seen = Seen::default();
    let mut last = t0;
    loop {
        match rx.recv() {
            Ok(Event::Token { .. }) => {
                let now = Instant::now();
                if seen.output_tokens == 0 {
                    seen.ttft = (now - t0).as_secs_f64();
                } else {
                    seen.itl.push((now - last).as_secs_f64());
                }
                last = now;
                seen.output_tokens += 1;
            }
            Ok(Event::Done { stats, .. }) => {
                seen.prefill_computed = stats.prefill_tokens_computed as u64;
                return Ok(seen);
            }
            Ok(Event::Error(msg)) => bail!("the engine rejected a request: {msg}"),
            Err(_) => bail!("the engine stopped before the request was done"),
        }
    }
}

/// Runs `plan` and returns the contract's JSON object.
pub fn run(plan: &EnginePlan) -> Result<Value> {
    if plan.concurrency == 0 {
        bail!("--concurrency 0: expected at least 1 client");
    }
    let work = read_workload(&plan.workload)?;
    let longest = work
        .iter()
        .map(|w| w.prompt.len() + w.max_tokens)
        .max()
        .unwrap_or(1);
    let num_blocks = plan.concurrency * blocks_for(longest + 1, BLOCK_SIZE);
    // The warm-up prompt: the first request's ids, repeated to 16.
    let warm: Vec<i32> = work[0]
        .prompt
        .iter()
        .cycle()
        .take(WARMUP_TOKENS.max(work[0].prompt.len()))
        .map(|&t| t as i32)
        .collect();

    let kernel_fields: Arc<Mutex<Value>> = Arc::default();
    let (dir, request, dtype, fields) = (
        plan.model.clone(),
        plan.kernels,
        plan.dtype,
        kernel_fields.clone(),
    );
    let load = move || -> tiny_llm_common::Result<BatchedLm<Qwen2ModelWeek2, BatchKvCache>> {
        let loaded = load_with_kernels(&dir, request, dtype, &warm)
            .map_err(|e| tiny_llm_common::Error::Invalid(format!("{e:#}")))?;
        match loaded {
            Ok((model, _bytes, f)) => {
                *fields.lock().expect("fields") = f;
                Ok(BatchedLm::new(model))
            }
            Err(skipped) => Err(tiny_llm_common::Error::Invalid(
                skipped["message"].as_str().unwrap_or("skipped").to_string(),
            )),
        }
    };
    let sched = SchedulerConfig {
        max_tokens_per_step: plan.max_batch_tokens,
        max_running: plan.concurrency,
        block_size: BLOCK_SIZE,
        num_blocks,
    };
    let config = EngineConfig {
        eos: Vec::new(),
        block_size: BLOCK_SIZE,
        num_blocks,
    };
    let started = Instant::now();
    let h = if plan.prefix_cache {
        // The prefix cache gets a pool as large as the running sequences'.
        engine::spawn_with_prefix_cache(
            config,
            load,
            move || FcfsScheduler::new(sched),
            move || PooledPrefixCache::new(num_blocks, BLOCK_SIZE),
        )?
    } else {
        engine::spawn(config, load, move || FcfsScheduler::new(sched))?
    };
    eprintln!(
        "  engine loaded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    // Warm-up: one short request (compiles the batched shapes' kernels),
    // its prompt the first request's reversed, so that it leaves nothing in
    // the prefix cache that the workload could reuse.
    serve_one(
        &h,
        &Work {
            prompt: work[0].prompt.iter().rev().copied().collect(),
            max_tokens: 4,
        },
    )?;

    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<Result<Seen>>>> =
        Mutex::new((0..work.len()).map(|_| None).collect());
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..plan.concurrency {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= work.len() {
                    break;
                }
                let r = serve_one(&h, &work[i]);
                let failed = r.is_err();
                results.lock().expect("results")[i] = Some(r);
                if failed {
                    break;
                }
                if (i + 1).is_multiple_of(8) {
                    eprintln!(
                        "  {}/{} requests started, {:.1} s",
                        i + 1,
                        work.len(),
                        t0.elapsed().as_secs_f64()
                    );
                }
            });
        }
    });
    let wall_s = t0.elapsed().as_secs_f64();
    let stats = h.shutdown()?;
    let mut seen = Vec::with_capacity(work.len());
    for (i, r) in results
        .into_inner()
        .expect("results")
        .into_iter()
        .enumerate()
    {
        match r {
            Some(Ok(s)) => seen.push(s),
            Some(Err(e)) => return Err(e.context(format!("request {i}"))),
            None => bail!("request {i} never ran (a client stopped on an error)"),
        }
    }
    let fields = kernel_fields.lock().expect("fields").clone();
    Ok(json!({
        "status": "ok",
        // The contract's name for the reference side ("learner" for a build
        // of the learner's crate).
        "engine": if cfg!(feature = "solutions") { "reference" } else { "learner" },
        "concurrency": plan.concurrency,
        "requests": work.len(),
        "wall_s": wall_s,
        "prompt_tokens": work.iter().map(|w| w.prompt.len() as u64).sum::<u64>(),
        "output_tokens": seen.iter().map(|s| s.output_tokens).sum::<u64>(),
        "prefill_tokens_computed": seen.iter().map(|s| s.prefill_computed).sum::<u64>(),
        "ttft_s": seen.iter().map(|s| s.ttft).collect::<Vec<_>>(),
        "itl_s": seen.iter().flat_map(|s| s.itl.iter().copied()).collect::<Vec<_>>(),
        "kv_blocks_total": stats.kv_blocks_total,
        "kv_blocks_peak": stats.kv_blocks_peak,
        "kv_blocks_in_use_end": stats.kv_blocks_in_use_end,
        "prefix_cache_hit_blocks": stats.prefix_cache_hit_blocks,
        "prefix_cache_lookup_blocks": stats.prefix_cache_lookup_blocks,
        "prefix_cache_blocks_stored": stats.prefix_cache_blocks_stored,
        "peak_rss_gb": max_rss_bytes().map_or(0.0, |b| b as f64 / 1e9),
        "max_batch_tokens": plan.max_batch_tokens,
        "max_step_tokens": stats.max_step_tokens,
        "steps": stats.steps,
        "preemptions": stats.preemptions,
        "decode_tokens": stats.decode_tokens,
        "decode_s": stats.decode_us as f64 / 1e6,
        "prefill_s": stats.prefill_us as f64 / 1e6,
        "kernels": fields["kernels"],
        "kernel_fallback": fields["kernel_fallback"],
    }))
}
