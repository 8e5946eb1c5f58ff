//! `bench week2`'s step-by-step section (issue 11): what each day buys the
//! reference on Qwen2.5-Coder-0.5B, against llama.cpp Q4_0 and mlx-lm, all
//! measured in one run, the repetitions interleaved.
//!
//! - Steps (reference only; decode `--new-tokens` after a 128-token prompt,
//!   prefill 512): the week-1 path (f32 dense weights, no KV cache; decode
//!   `--week1-new-tokens`, its steps re-reading the whole sequence), + KV
//!   cache (day 8, f32 dense), + the 4-bit kernel (day 10, the MLX 4-bit
//!   copy), + fused kernels (day 11), + flash attention (day 12,
//!   `Week2Kernels::ALL`), and apart + int8 activations (beyond the course).
//!   A step whose day is still a `todo!()` is skipped with a note; the int8
//!   row runs the best exact kernels available plus int8 (`--kernels
//!   best,int8`), and is skipped when the flag changes no logit (kernel not
//!   there).
//! - Long context: decode `--long-new-tokens` with `--long-context` cached
//!   tokens: the reference (`--kernels best`, the prompt prefilled in passes
//!   of 512), llama.cpp (`llama-bench -n N -d 4096`) and mlx-lm (a cache of
//!   random keys/values, `bench_mlx_lm.py --synthetic-context`: prefilling
//!   4096 tokens through its quantized CPU path would take hours here).
//! - Prompt cache: time to first token of a second turn with the cache
//!   against the first turn, `--history` tokens of history
//!   (`tiny-llm-bench turns`).
//! - llama.cpp Q4_0 once more per repetition (prefill 128/512, decode at
//!   depth 128), so the ratios come from this section's own runs.
//!
//! Output: tables and the issue's targets (pass/miss) on stdout,
//! `target/bench/week2-steps-<model>.{json,md,svg}`.
use super::*;
use llama_cpp::{Gguf, LlamaCpp};

/// Which weights a step runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Weights {
    /// The model's bf16 checkpoint, run in f32.
    Dense,
    /// The MLX 4-bit g64 copy.
    Q4,
}

/// One row of the step-by-step table.
#[derive(Debug, Clone, Copy)]
pub(super) struct StepRow {
    pub(super) key: &'static str,
    pub(super) label: &'static str,
    pub(super) weights: Weights,
    pub(super) week: u8,
    /// `tiny-llm-bench run --kernels`.
    pub(super) kernels: &'static str,
    /// Part of the chain of ratios to the previous row (the int8 row is
    /// apart: it is compared with the flash-attention row).
    pub(super) chained: bool,
}

/// The steps, in the order a learner takes them.
pub(super) const STEPS: &[StepRow] = &[
    StepRow {
        key: "week1",
        label: "week-1 path (f32 dense, no KV cache)",
        weights: Weights::Dense,
        week: 1,
        kernels: "none",
        chained: true,
    },
    StepRow {
        key: "kv_cache",
        label: "+ KV cache (day 8, f32 dense)",
        weights: Weights::Dense,
        week: 2,
        kernels: "none",
        chained: true,
    },
    StepRow {
        key: "q4",
        label: "+ 4-bit kernel (day 10)",
        weights: Weights::Q4,
        week: 2,
        kernels: "none",
        chained: true,
    },
    StepRow {
        key: "fused",
        label: "+ fused kernels (day 11)",
        weights: Weights::Q4,
        week: 2,
        kernels: "fused",
        chained: true,
    },
    StepRow {
        key: "flash",
        label: "+ flash attention (day 12)",
        weights: Weights::Q4,
        week: 2,
        kernels: "all",
        chained: true,
    },
    StepRow {
        key: "int8",
        label: "+ int8 activations (beyond the course)",
        weights: Weights::Q4,
        week: 2,
        kernels: "best,int8",
        chained: false,
    },
];

/// Prefill length of the step rows.
pub(super) const STEP_PREFILL: usize = 512;
/// Tokens per forward pass of the long-context prefill.
const LONG_CHUNK: usize = 512;

/// The variants of the section besides the steps.
pub(super) const LLAMA: &str = "llama.cpp";
pub(super) const LONG_REF: &str = "long-reference";
pub(super) const LONG_LLAMA: &str = "long-llama.cpp";
pub(super) const LONG_MLX: &str = "long-mlx-lm";
pub(super) const TURNS: &str = "turns";

/// What the section runs on.
pub(super) struct StepsSetup<'a> {
    pub(super) dense: &'a Config,
    pub(super) q4_dir: PathBuf,
    pub(super) reference: &'a Path,
    pub(super) python: &'a Path,
    pub(super) blas: Option<&'a BlasLibs>,
    pub(super) llama: Option<(&'a LlamaCpp, &'a Gguf)>,
    pub(super) llama_note: Option<String>,
}

/// Every report of the section, by variant key, in run order.
pub(super) type Reports = BTreeMap<String, Vec<Value>>;

/// A command of the reference's `tiny-llm-bench`, on the CPU, with the
/// optimised BLAS preloaded.
fn ours(setup: &StepsSetup, args: &[String]) -> Command {
    let mut cmd = Command::new(setup.reference);
    cmd.args(args)
        .current_dir(util::project_root())
        .env(tiny_llm_course::DEVICE_ENV, "cpu");
    if let Some(lib) = setup.blas.and_then(|b| b.path(BlasKind::Optimised)) {
        cmd.env("LD_PRELOAD", lib);
    }
    cmd
}

fn strings(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// The command of one step row.
fn step_command(setup: &StepsSetup, row: &StepRow, prompt: &Path, args: &Week2Args) -> Command {
    let dir = match row.weights {
        Weights::Dense => setup.dense.dir.clone(),
        Weights::Q4 => setup.q4_dir.clone(),
    };
    let new_tokens = if row.week == 1 {
        args.week1_new_tokens
    } else {
        args.new_tokens
    };
    let mut a = strings(&["run", "--week", &row.week.to_string()]);
    if row.week == 2 {
        a.extend(strings(&["--kernels", row.kernels]));
    } else {
        a.extend(strings(&["--dtype", "f32"]));
    }
    a.extend(strings(&[
        "--prefill",
        &STEP_PREFILL.to_string(),
        "--decode-prompt",
        &DECODE_PROMPT.to_string(),
        "--new-tokens",
        &new_tokens.to_string(),
    ]));
    let mut cmd = ours(setup, &a);
    cmd.arg("--model").arg(dir).arg("--prompt").arg(prompt);
    cmd
}

/// Ids the section needs from the prompt file.
pub(super) fn ids_needed(args: &Week2Args) -> usize {
    (args.long_context + 1)
        .max(args.history + TURN_TOKENS)
        .max(STEP_PREFILL)
}

/// Tokens of the second turn's new message, and of the first turn's answer.
pub(super) const TURN_TOKENS: usize = 24;
pub(super) const ANSWER_TOKENS: usize = 16;

/// Runs one variant of the section; `None` when it is not run here.
fn run_variant(
    setup: &StepsSetup,
    key: &str,
    prompt: &Path,
    args: &Week2Args,
    log: &Path,
) -> Result<Option<Value>> {
    if let Some(row) = STEPS.iter().find(|r| r.key == key) {
        return run_process(step_command(setup, row, prompt, args), log).map(Some);
    }
    let long = args.long_context.to_string();
    match key {
        LONG_REF => {
            let mut cmd = ours(
                setup,
                &strings(&[
                    "run",
                    "--week",
                    "2",
                    "--kernels",
                    "best",
                    "--prefill",
                    "none",
                    "--decode-prompt",
                    &long,
                    "--prefill-chunk",
                    &LONG_CHUNK.to_string(),
                    "--new-tokens",
                    &args.long_new_tokens.to_string(),
                ]),
            );
            cmd.arg("--model")
                .arg(&setup.q4_dir)
                .arg("--prompt")
                .arg(prompt);
            run_process(cmd, log).map(Some)
        }
        LONG_MLX => {
            let mut cmd = Command::new(setup.python);
            cmd.arg(script())
                .args([
                    "--dtype",
                    "f32",
                    "--prefill",
                    "none",
                    "--decode-prompt",
                    "1",
                ])
                .args(["--synthetic-context", &long])
                .args([
                    "--new-tokens",
                    &args.mlx_lm_new_tokens.min(args.long_new_tokens).to_string(),
                ])
                .arg("--model")
                .arg(&setup.q4_dir)
                .arg("--prompt")
                .arg(prompt)
                .current_dir(util::project_root())
                .env(tiny_llm_course::DEVICE_ENV, "cpu");
            if let Some(lib) = setup.blas.and_then(|b| b.path(BlasKind::Optimised)) {
                cmd.env("LD_PRELOAD", lib);
            }
            run_process(cmd, log).map(Some)
        }
        TURNS => {
            let mut cmd = ours(
                setup,
                &strings(&[
                    "turns",
                    "--kernels",
                    "best",
                    "--history",
                    &args.history.to_string(),
                    "--answer",
                    &ANSWER_TOKENS.to_string(),
                    "--turn",
                    &TURN_TOKENS.to_string(),
                ]),
            );
            cmd.arg("--model")
                .arg(&setup.q4_dir)
                .arg("--prompt")
                .arg(prompt);
            run_process(cmd, log).map(Some)
        }
        LLAMA => match setup.llama {
            Some((tools, g)) => {
                let stem = log
                    .file_stem()
                    .map(|s| s.to_string_lossy().to_string())
                    .unwrap_or_default();
                let log = |what: &str| log.with_file_name(format!("{stem}{what}.log"));
                run_llama_bench(tools, g, args, &log).map(Some)
            }
            None => Ok(None),
        },
        LONG_LLAMA => match setup.llama {
            Some((tools, g)) => {
                run_llama_depth(tools, g, args.long_context, args.long_new_tokens, args, log)
                    .map(Some)
            }
            None => Ok(None),
        },
        _ => bail!("unknown variant {key}"),
    }
}

/// `llama-bench` generating `n` tokens at depth `depth` (after a prefill of
/// `depth` tokens), as a report with the keys of `tiny-llm-bench run`.
fn run_llama_depth(
    tools: &LlamaCpp,
    g: &Gguf,
    depth: usize,
    n: usize,
    args: &Week2Args,
    log: &Path,
) -> Result<Value> {
    let mut tg = Command::new(&tools.bench);
    tg.arg("-m").arg(&g.path);
    tg.args(["-p", "0", "-n", &n.to_string(), "-d", &depth.to_string()]);
    tg.args(["-t", &threads().to_string(), "-r", "1", "-o", "json"]);
    if args.omp_passive {
        tg.env("OMP_WAIT_POLICY", "PASSIVE");
    }
    let (out, rss) = run_capture(tg, log)?;
    let Some(out) = out else {
        return Ok(
            json!({ "status": "error", "message": "llama-bench failed (see target/bench/logs)" }),
        );
    };
    let mut report = llama_bench_report("[]", &out, depth)?;
    report["child_max_rss_bytes"] = json!(rss);
    Ok(report)
}

/// The variant keys of the section, in run order.
pub(super) fn variant_keys(setup: &StepsSetup) -> Vec<String> {
    let mut keys: Vec<String> = STEPS.iter().map(|r| r.key.to_string()).collect();
    keys.push(LONG_REF.into());
    keys.push(LONG_MLX.into());
    keys.push(TURNS.into());
    if setup.llama.is_some() {
        keys.push(LLAMA.into());
        keys.push(LONG_LLAMA.into());
    }
    keys
}

/// Runs the section (`args.reps` interleaved repetitions) and reports it.
pub(super) fn run_steps(
    setup: &StepsSetup,
    prompt: &Path,
    args: &Week2Args,
    started: Instant,
) -> Result<()> {
    let keys = variant_keys(setup);
    let mut reports: Reports = BTreeMap::new();
    eprintln!(
        "\nstep by step (week 2, {}): {} variants x {} reps, interleaved",
        setup.dense.name,
        keys.len(),
        args.reps
    );
    for rep in 0..args.reps {
        for key in &keys {
            // A variant that did not measure (not implemented, skipped,
            // failed) is not run again.
            if reports
                .get(key)
                .is_some_and(|r| r.iter().any(|r| r["status"] != "ok"))
            {
                continue;
            }
            eprintln!(
                "  rep {}/{} {key} ... ({:.0} s so far)",
                rep + 1,
                args.reps,
                started.elapsed().as_secs_f64()
            );
            let log = bench_dir().join("logs").join(format!(
                "week2-steps-{}-{key}-rep{}.log",
                setup.dense.name,
                rep + 1
            ));
            let Some(report) = run_variant(setup, key, prompt, args, &log)? else {
                continue;
            };
            let what = match failure(std::slice::from_ref(&report)) {
                Some(f) => f,
                None => variant_metrics(&report)
                    .iter()
                    .map(|(k, x)| format!("{k} {x:.3}"))
                    .collect::<Vec<_>>()
                    .join(", "),
            };
            eprintln!("      {what}");
            reports.entry(key.clone()).or_default().push(report);
        }
    }
    report_steps(setup, &reports, args)
}

/// The metrics of one report of the section: `metrics`' (prefill, decode,
/// ttft, memory), and for `turns` the two turns' times to first token.
pub(super) fn variant_metrics(report: &Value) -> Vec<(String, f64)> {
    let mut m = metrics(report);
    for (turn, key) in [("first_turn", "ttft1_s"), ("second_turn", "ttft2_s")] {
        if let Some(s) = report[turn]["ttft_seconds"].as_f64() {
            m.push((key.into(), s));
        }
    }
    m
}
