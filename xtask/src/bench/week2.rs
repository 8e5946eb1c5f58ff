//! `cargo xtask bench week2`: the week-2 path (KV cache, packed quantized
//! layers, f32 activations) of the learner and the reference, mlx-lm on the
//! same MLX 4-bit / 8-bit weights, and llama.cpp on Q4_0 / Q8_0 GGUFs of the
//! same weights, all in one run with the repetitions interleaved.
//!
//! Per bit width (4 and 8, or `--quant`): the MLX copy `<model>-<b>bit`
//! (from `models fetch` when it knows it, else made here with
//! `mlx_lm.convert -q --q-group-size 64`, under `target/bench/models`);
//! every variant in its own process, each measuring prefill (128 and 512
//! tokens), decode (`--new-tokens` after a 128-token prompt), time to first
//! token and peak memory (mlx-lm: prefill 128 and 16 new tokens unless
//! `--mlx-lm-full`, its quantized CPU path being this slow). mlx-lm runs
//! its fastest CPU configuration:
//! activations *and* scales/biases in f32 (`model.set_dtype(mx.float32)`;
//! its bf16 path is several times slower on the CPU). llama.cpp runs
//! `llama-bench -t <cores>` twice per repetition: prompt processing
//! (`-p 128,512 -n 0`) and generation at depth 128 (`-p 0 -n N -d 128`, the
//! same context as the others' decode).
//!
//! The roofline: the bytes of weights one decode step reads (every tensor as
//! the side stores it; a tied embedding counts once, read in full as the
//! output matrix) divided by the read bandwidth `tiny-llm-bench bandwidth`
//! measures on this machine (best of 5 passes of all cores streaming over
//! 1 GiB): decode tok/s * bytes / bandwidth is the fraction of the memory
//! roofline a side reaches.
use super::*;
pub(super) use llama_cpp::llama_bench_report;
use llama_cpp::{Gguf, GgufType, LlamaCpp};

/// The model of `bench week2` without `--model`.
pub(super) const WEEK2_MODEL: &str = "qwen2.5-coder-0.5b";

#[derive(clap::Args, Debug, Clone)]
pub struct Week2Args {
    /// A model `models fetch` knows [default: qwen2.5-coder-0.5b].
    #[arg(long)]
    pub model: Option<String>,
    /// Repetitions of every variant, interleaved.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Only this bit width: 4 (MLX 4-bit g64 vs llama.cpp Q4_0) or 8 (8-bit
    /// vs Q8_0) [default: both].
    #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(["4", "8"]))]
    pub quant: Option<String>,
    /// Tokens generated in the decode run.
    #[arg(long, default_value_t = 128)]
    pub new_tokens: usize,
    /// Run mlx-lm on everything the others run (prefill 512 and all
    /// `--new-tokens`); without it mlx-lm prefills 128 tokens and decodes
    /// `--mlx-lm-new-tokens`: its 4-bit CPU path runs well under 1 tok/s
    /// here, so the full set would take about 40 minutes per repetition.
    #[arg(long)]
    pub mlx_lm_full: bool,
    /// Tokens mlx-lm decodes without --mlx-lm-full (speed is per token).
    #[arg(long, default_value_t = 16)]
    pub mlx_lm_new_tokens: usize,
    /// Run llama.cpp with `OMP_WAIT_POLICY=PASSIVE` (threads sleep at
    /// barriers instead of spinning). Use it on a machine shared with other
    /// work: there a spinning thread waits for a descheduled peer, and
    /// 2-thread decode fell from ~9 to 0.8 tok/s here; on an idle machine
    /// the default (spinning) is llama.cpp's fastest.
    #[arg(long)]
    pub omp_passive: bool,
    /// Leave llama.cpp out (no build, no GGUFs).
    #[arg(long)]
    pub no_llama_cpp: bool,
    /// Use the binaries of the last build (target/bench/bin).
    #[arg(long)]
    pub no_build: bool,
    /// Leave out the step-by-step section (week 1, + KV cache, + 4-bit, +
    /// fused, + flash, + int8; long context; prompt cache; the targets).
    #[arg(long, conflicts_with = "steps_only")]
    pub no_steps: bool,
    /// Only the step-by-step section: no learner, no 4/8-bit comparison
    /// tables (mlx-lm then runs only the long-context decode).
    #[arg(long)]
    pub steps_only: bool,
    /// Tokens the week-1 step decodes (each step re-reads the whole
    /// sequence: about 2 tok/s here).
    #[arg(long, default_value_t = 16)]
    pub week1_new_tokens: usize,
    /// Cached tokens of the long-context decode.
    #[arg(long, default_value_t = 4096)]
    pub long_context: usize,
    /// Tokens decoded with the long context (mlx-lm: at most
    /// --mlx-lm-new-tokens).
    #[arg(long, default_value_t = 32)]
    pub long_new_tokens: usize,
    /// Tokens of history before the prompt cache's second turn.
    #[arg(long, default_value_t = 1000)]
    pub history: usize,
    /// MLX device: cpu (the default) or gpu. gpu: the reference's GPU path
    /// (`--kernels all,gpu`, bf16) against mlx-lm on the GPU, 4-bit, plus
    /// the decode matvec kernel's bandwidth (module `week2_gpu`); the CPU
    /// options above do not apply there.
    #[arg(long, value_parser = crate::device::arg_parser())]
    pub device: Option<crate::device::Device>,
    /// With --device gpu: Qwen2.5-0.5B and -1.5B shapes with random weights,
    /// quantized to 4-bit g64 on the machine itself (the real weights need
    /// not travel there), and random prompt ids.
    #[arg(long)]
    pub synthetic: bool,
    /// With --device gpu: the GPU's memory bandwidth in GB/s (H200: 4800).
    #[arg(long, default_value_t = 4800.0)]
    pub peak_gbs: f64,
}

/// The bit widths a run measures.
pub(super) fn bit_widths(args: &Week2Args) -> Vec<u32> {
    match args.quant.as_deref() {
        Some("8") => vec![8],
        Some(_) => vec![4],
        None => vec![4, 8],
    }
}

/// Threads of llama.cpp and of the bandwidth measurement: every core.
pub(super) fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// The `<model>-<bits>bit` copy that `cargo xtask models fetch` makes (mlx-lm's
/// converter, groups of 64), made now when it is missing.
fn quantized_dir(model: &str, bits: u32) -> Result<PathBuf> {
    models::ensure_quantized(model, bits)
}

/// The read bandwidth in GB/s (`tiny-llm-bench bandwidth`, best pass).
fn bandwidth(bin: &Path) -> Result<Value> {
    let mut cmd = Command::new(bin);
    cmd.args(["bandwidth", "--threads", &threads().to_string()]);
    let report = run_process(cmd, &bench_dir().join("logs").join("bandwidth.log"))?;
    if report["status"] != "ok" {
        bail!("measuring the bandwidth failed: {report}");
    }
    Ok(report)
}

pub(super) fn week2(args: &Week2Args) -> Result<()> {
    if args.reps == 0 {
        bail!("--reps must be at least 1");
    }
    if args.new_tokens < 2
        || args.mlx_lm_new_tokens < 2
        || args.week1_new_tokens < 2
        || args.long_new_tokens < 2
    {
        bail!("--new-tokens, --mlx-lm-new-tokens, --week1-new-tokens and --long-new-tokens must be at least 2 (decode speed is measured after the first token)");
    }
    if args.long_context == 0 || args.history == 0 {
        bail!("--long-context and --history must be at least 1");
    }
    if args.device == Some(crate::device::Device::Gpu) {
        crate::device::resolve(args.device)?;
        return week2_gpu(args);
    }
    if args.synthetic {
        bail!("--synthetic is for --device gpu (the CPU bench reads the real weights)");
    }
    let started = Instant::now();
    if !args.no_build {
        setup::run(&Default::default())?;
    }
    let python = venv::ensure()?;
    let model = args
        .model
        .clone()
        .unwrap_or_else(|| WEEK2_MODEL.to_string());
    let base = resolve(&model, "f32")?;
    let blas = BlasLibs::find()?;

    let mut bins = BTreeMap::new();
    let built = |side| {
        if args.no_build {
            prebuilt(side)
        } else {
            build(side)
        }
    };
    let reference = match built(Side::Reference)? {
        Built::Binary(p) => p,
        Built::DoesNotCompile(e) => bail!("the reference does not compile: {e}"),
    };
    bins.insert(Side::Reference, reference.clone());
    let learner_build = if args.steps_only {
        Built::DoesNotCompile("not built (--steps-only)".into())
    } else {
        built(Side::Learner)?
    };
    if let Built::Binary(p) = &learner_build {
        bins.insert(Side::Learner, p.clone());
    }

    let mut llama: Option<(LlamaCpp, Vec<Gguf>)> = None;
    let mut llama_note = None;
    if args.no_llama_cpp {
        llama_note = Some("skipped (--no-llama-cpp)".to_string());
    } else {
        let mut kinds: Vec<GgufType> = bit_widths(args)
            .into_iter()
            .map(GgufType::for_bits)
            .collect();
        // The step-by-step section compares with Q4_0.
        if !args.no_steps && !kinds.contains(&GgufType::Q4_0) {
            kinds.insert(0, GgufType::Q4_0);
        }
        let made = llama_cpp::ensure(&python).and_then(|tools| {
            let ggufs = llama_cpp::ensure_ggufs(&python, &tools, &base.name, &base.dir, &kinds)?;
            Ok((tools, ggufs))
        });
        match made {
            Ok(x) => llama = Some(x),
            Err(e) => {
                eprintln!("  .. llama.cpp left out: {e:#}");
                llama_note = Some(format!("error: {e:#}"));
            }
        }
    }

    let bw = bandwidth(&reference)?;
    let prompt = prompt_ids(&reference, &base)?;
    let table_bits = if args.steps_only {
        Vec::new()
    } else {
        bit_widths(args)
    };
    for bits in table_bits {
        let dir = quantized_dir(&base.name, bits)?;
        let config = Config {
            name: format!("{}-{bits}bit", base.name),
            dir,
            dtype: "f32".into(),
            device: crate::device::Device::Cpu,
        };
        let gguf = llama.as_ref().and_then(|(_, g)| {
            g.iter()
                .find(|g| g.kind == GgufType::for_bits(bits))
                .cloned()
        });
        let mut variants = vec![Side::Learner, Side::Reference, Side::MlxLm];
        if gguf.is_some() {
            variants.push(Side::LlamaCpp);
        }
        let variants: Vec<Variant> = variants
            .into_iter()
            .map(|side| Variant {
                side,
                blas: BlasKind::Optimised,
                decode: true,
            })
            .collect();
        let mut reports: BTreeMap<Variant, Vec<Value>> = BTreeMap::new();
        if let Built::DoesNotCompile(e) = &learner_build {
            reports.insert(
                variants[0],
                vec![json!({ "status": "does_not_compile", "message": e })],
            );
        }
        eprintln!(
            "\n{} (week 2): {} variants x {} reps, interleaved (decode: {} new tokens after {DECODE_PROMPT})",
            config.name,
            variants.len(),
            args.reps,
            args.new_tokens
        );
        for rep in 0..args.reps {
            for &v in &variants {
                if v.side == Side::Learner
                    && reports
                        .get(&v)
                        .is_some_and(|r| r.iter().any(|r| r["status"] != "ok"))
                {
                    continue;
                }
                eprintln!(
                    "  rep {}/{} {} ... ({:.0} s so far)",
                    rep + 1,
                    args.reps,
                    v.side.name(),
                    started.elapsed().as_secs_f64()
                );
                let log = |what: &str| {
                    bench_dir().join("logs").join(format!(
                        "week2-{}-{}{what}-rep{}.log",
                        config.name,
                        v.side.name(),
                        rep + 1
                    ))
                };
                let report = match (v.side, &llama, &gguf) {
                    (Side::LlamaCpp, Some((tools, _)), Some(g)) => {
                        run_llama_bench(tools, g, args, &log)?
                    }
                    _ => {
                        let cmd = command2(
                            v.side,
                            &config,
                            &prompt,
                            &python,
                            &bins,
                            blas.as_ref(),
                            args,
                        );
                        run_process(cmd, &log(""))?
                    }
                };
                let what = match failure(std::slice::from_ref(&report)) {
                    Some(f) => f,
                    None => metrics(&report)
                        .iter()
                        .map(|(k, x)| format!("{k} {x:.2}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                eprintln!("      {what}");
                reports.entry(v).or_default().push(report);
            }
        }
        let summary = Summary::new(config.clone(), variants, reports);
        let ctx = Week2Context {
            bits,
            bandwidth: bw.clone(),
            gguf: gguf.clone(),
            llama_note: llama_note.clone(),
            mlx_bytes: mlx_weight_bytes(&config.dir)?,
            params: llama
                .as_ref()
                .and_then(|(_, g)| g.first())
                .map(|g| g.params),
            new_tokens: args.new_tokens,
            mlx_lm_full: args.mlx_lm_full,
            mlx_lm_new_tokens: args.mlx_lm_new_tokens,
        };
        report_week2(&summary, args, &ctx)?;
    }
    if !args.no_steps {
        let gguf = llama.as_ref().and_then(|(tools, g)| {
            g.iter()
                .find(|g| g.kind == GgufType::Q4_0)
                .map(|g| (tools, g))
        });
        let setup = steps::StepsSetup {
            dense: &base,
            q4_dir: quantized_dir(&base.name, 4)?,
            reference: &reference,
            python: &python,
            blas: blas.as_ref(),
            llama: gguf,
            llama_note: llama_note.clone(),
        };
        let ids = prompt_ids_n(&reference, &base, steps::ids_needed(args))?;
        steps::run_steps(&setup, &ids, args, started)?;
    }
    eprintln!("bench done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The command of one of our sides (week-2 path) or mlx-lm (f32).
fn command2(
    side: Side,
    config: &Config,
    prompt: &Path,
    python: &Path,
    bins: &BTreeMap<Side, PathBuf>,
    blas: Option<&BlasLibs>,
    args: &Week2Args,
) -> Command {
    let (prefill, new_tokens) = side_plan(side, args);
    let prefill: Vec<String> = prefill.iter().map(|l| l.to_string()).collect();
    let mut cmd = match side {
        Side::MlxLm => {
            let mut c = Command::new(python);
            c.arg(script()).args(["--dtype", "f32"]);
            c
        }
        side => {
            let mut c = Command::new(&bins[&side]);
            c.args(["run", "--week", "2"]);
            c
        }
    };
    cmd.arg("--model")
        .arg(&config.dir)
        .args(["--prefill", &prefill.join(",")])
        .args(["--decode-prompt", &DECODE_PROMPT.to_string()])
        .args(["--new-tokens", &new_tokens.to_string()])
        .arg("--prompt")
        .arg(prompt)
        .current_dir(util::project_root())
        .env(tiny_llm_course::DEVICE_ENV, "cpu");
    if let Some(lib) = blas.and_then(|b| b.path(BlasKind::Optimised)) {
        cmd.env("LD_PRELOAD", lib);
    }
    cmd
}

/// The prefill lengths and new tokens `side` runs (mlx-lm: fewer, unless
/// `--mlx-lm-full`).
pub(super) fn side_plan(side: Side, args: &Week2Args) -> (Vec<usize>, usize) {
    if side == Side::MlxLm && !args.mlx_lm_full {
        (
            vec![PREFILL_LENGTHS[0]],
            args.mlx_lm_new_tokens.min(args.new_tokens),
        )
    } else {
        (PREFILL_LENGTHS.to_vec(), args.new_tokens)
    }
}

/// Two `llama-bench` processes (prompt processing; generation at depth
/// 128), turned into one report with the keys of `tiny-llm-bench run`.
pub(super) fn run_llama_bench(
    tools: &LlamaCpp,
    g: &Gguf,
    args: &Week2Args,
    log: &dyn Fn(&str) -> PathBuf,
) -> Result<Value> {
    let new_tokens = args.new_tokens;
    let t = threads().to_string();
    let prefill: Vec<String> = PREFILL_LENGTHS.iter().map(|l| l.to_string()).collect();
    let mut pp = Command::new(&tools.bench);
    pp.arg("-m").arg(&g.path);
    pp.args([
        "-p",
        &prefill.join(","),
        "-n",
        "0",
        "-t",
        &t,
        "-r",
        "1",
        "-o",
        "json",
    ]);
    let mut tg = Command::new(&tools.bench);
    tg.arg("-m").arg(&g.path);
    tg.args([
        "-p",
        "0",
        "-n",
        &new_tokens.to_string(),
        "-d",
        &DECODE_PROMPT.to_string(),
    ]);
    tg.args(["-t", &t, "-r", "1", "-o", "json"]);
    if args.omp_passive {
        pp.env("OMP_WAIT_POLICY", "PASSIVE");
        tg.env("OMP_WAIT_POLICY", "PASSIVE");
    }
    let (pp_out, pp_rss) = run_capture(pp, &log("-pp"))?;
    let (tg_out, tg_rss) = run_capture(tg, &log("-tg"))?;
    let (Some(pp_out), Some(tg_out)) = (pp_out, tg_out) else {
        return Ok(
            json!({ "status": "error", "message": "llama-bench failed (see target/bench/logs)" }),
        );
    };
    let mut report = llama_bench_report(&pp_out, &tg_out, DECODE_PROMPT)?;
    report["child_max_rss_bytes"] = json!(pp_rss.max(tg_rss));
    report["gguf"] = json!(g.path.display().to_string());
    report["omp_wait_policy"] = json!(if args.omp_passive {
        "PASSIVE"
    } else {
        "default"
    });
    Ok(report)
}
