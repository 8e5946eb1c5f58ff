//! `cargo xtask bench week2 --device gpu`: the reference's week-2 GPU path
//! (`--kernels all,gpu`: `Week2Kernels::ALL.on_gpu()`, quantized matmuls
//! through `qmatmul_gpu`, the fused and flash-attention CUDA kernels; bf16
//! activations) against mlx-lm on the GPU (its own quantized kernels, bf16,
//! the same 4-bit g64 files), repetitions interleaved, per model: prefill
//! 128 and 512 tok/s, decode tok/s (`--new-tokens` after 128), time to
//! first token, MLX's peak memory, ratios reference / mlx-lm, greedy-token
//! agreement; then the decode matvec kernel alone (`tiny-llm-bench matvec`)
//! and each side's whole decode step as bandwidth: bytes of weights one
//! token reads / time per token, against `--peak-gbs`.
//!
//! `--synthetic`: Qwen2.5-0.5B and Qwen2.5-1.5B shapes with random bf16
//! weights quantized here by `mx.quantize` (`synthetic_weights.py --bits
//! 4`, the layout of mlx-lm's converter) and random prompt ids (no
//! tokenizer needed), for a machine the real weights cannot travel to.
//! Without it: `--model` (a known model or a directory), its 4-bit copy.
use super::*;

/// The shapes `--synthetic` measures (names `synthetic_weights.py --shape`
/// and `tiny-llm-bench matvec --model` know).
pub(super) const SYNTHETIC_SHAPES: [&str; 2] = ["qwen2.5-0.5b", "qwen2.5-1.5b"];

/// Qwen2's vocabulary below the special tokens: random prompt ids fall in it.
const SYNTHETIC_VOCAB: u64 = 151_643;

/// The matvec shapes of a model name (a synthetic shape, or a known model
/// whose layers are those of one).
pub(super) fn matvec_shape(name: &str) -> Option<&'static str> {
    if name.contains("1.5b") {
        Some("qwen2.5-1.5b")
    } else if name.contains("0.5b") {
        Some("qwen2.5-0.5b")
    } else {
        None
    }
}

/// `n` prompt ids, uniform in Qwen2's ordinary vocabulary, from a fixed
/// xorshift64* stream (the same ids on every machine and every run).
pub(super) fn synthetic_ids(n: usize) -> Vec<u64> {
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..n)
        .map(|_| {
            s ^= s >> 12;
            s ^= s << 25;
            s ^= s >> 27;
            s.wrapping_mul(0x2545_F491_4F6C_DD1D) % SYNTHETIC_VOCAB
        })
        .collect()
}

/// The model directories to measure: `(name, dir, synthetic)`.
fn models_to_run(args: &Week2Args, python: &Path) -> Result<Vec<(String, PathBuf, bool)>> {
    if !args.synthetic {
        let model = args.model.clone().unwrap_or_else(|| WEEK2_MODEL.into());
        let base = resolve(&model, "bf16")?;
        let dir = models::ensure_quantized(&base.name, 4)?;
        return Ok(vec![(format!("{}-4bit", base.name), dir, false)]);
    }
    let mut out = Vec::new();
    for shape in SYNTHETIC_SHAPES {
        let dir = bench_dir().join("synthetic").join(format!("{shape}-4bit"));
        if !dir.join("model.safetensors").is_file() {
            let mut cmd = Command::new(python);
            cmd.arg(
                util::project_root()
                    .join("xtask")
                    .join("python")
                    .join("synthetic_weights.py"),
            )
            .arg(&dir)
            .args(["--shape", shape, "--bits", "4", "--group-size", "64"])
            .env(tiny_llm_course::DEVICE_ENV, "gpu");
            util::run_logged(
                &mut cmd,
                &bench_dir()
                    .join("logs")
                    .join(format!("synthetic-{shape}.log")),
            )?;
        }
        out.push((format!("{shape}-4bit (synthetic)"), dir, true));
    }
    Ok(out)
}

/// The command of one side on the GPU.
fn command_gpu(
    side: Side,
    dir: &Path,
    prompt: &Path,
    python: &Path,
    reference: &Path,
    args: &Week2Args,
) -> Command {
    let prefill: Vec<String> = PREFILL_LENGTHS.iter().map(|l| l.to_string()).collect();
    let mut cmd = match side {
        Side::MlxLm => {
            let mut c = Command::new(python);
            c.arg(script());
            c
        }
        _ => {
            let mut c = Command::new(reference);
            c.args(["run", "--week", "2", "--kernels", "all,gpu"]);
            c
        }
    };
    cmd.args(["--dtype", "bf16", "--model"])
        .arg(dir)
        .args(["--prefill", &prefill.join(",")])
        .args(["--decode-prompt", &DECODE_PROMPT.to_string()])
        .args(["--new-tokens", &args.new_tokens.to_string()])
        .arg("--prompt")
        .arg(prompt)
        .current_dir(util::project_root())
        .env(tiny_llm_course::DEVICE_ENV, "gpu");
    cmd
}

/// `tiny-llm-bench matvec` for one shape (its JSON report).
fn matvec(reference: &Path, shape: &str, args: &Week2Args) -> Result<Value> {
    let mut cmd = Command::new(reference);
    cmd.args(["matvec", "--model", shape])
        .args(["--peak-gbs", &args.peak_gbs.to_string()])
        .env(tiny_llm_course::DEVICE_ENV, "gpu");
    run_process(
        cmd,
        &bench_dir()
            .join("logs")
            .join(format!("week2-gpu-matvec-{shape}.log")),
    )
}

pub(super) fn week2_gpu(args: &Week2Args) -> Result<()> {
    if !(args.peak_gbs > 0.0 && args.peak_gbs.is_finite()) {
        bail!(
            "--peak-gbs must be a positive number of GB/s (H200: 4800), got {}",
            args.peak_gbs
        );
    }
    let started = Instant::now();
    if !args.no_build {
        setup::run(&Default::default())?;
    }
    let python = match std::env::var_os("TINY_LLM_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => venv::ensure()?,
    };
    let reference = match if args.no_build {
        prebuilt(Side::Reference)?
    } else {
        build(Side::Reference)?
    } {
        Built::Binary(p) => p,
        Built::DoesNotCompile(e) => bail!("the reference does not compile: {e}"),
    };
    let mut sections = Vec::new();
    for (name, dir, synthetic) in models_to_run(args, &python)? {
        let config = Config {
            name: name.clone(),
            dir: dir.clone(),
            dtype: "bf16".into(),
            device: crate::device::Device::Gpu,
        };
        let prompt = if synthetic {
            let longest = PREFILL_LENGTHS.iter().copied().max().unwrap_or(0);
            let path = bench_dir().join(format!("prompt-synthetic-{longest}.json"));
            std::fs::create_dir_all(bench_dir())?;
            std::fs::write(&path, json!({ "ids": synthetic_ids(longest) }).to_string())?;
            path
        } else {
            prompt_ids(&reference, &config)?
        };
        let variants: Vec<Variant> = [Side::MlxLm, Side::Reference]
            .into_iter()
            .map(|side| Variant {
                side,
                blas: BlasKind::Optimised,
                decode: true,
            })
            .collect();
        let mut reports: BTreeMap<Variant, Vec<Value>> = BTreeMap::new();
        eprintln!(
            "\n{name} on the GPU (week 2): 2 variants x {} reps, interleaved",
            args.reps
        );
        for rep in 0..args.reps {
            for &v in &variants {
                eprintln!(
                    "  rep {}/{} {} ... ({:.0} s so far)",
                    rep + 1,
                    args.reps,
                    v.side.name(),
                    started.elapsed().as_secs_f64()
                );
                let cmd = command_gpu(v.side, &dir, &prompt, &python, &reference, args);
                let log = bench_dir().join("logs").join(format!(
                    "week2-gpu-{}-{}-rep{}.log",
                    name.replace([' ', '(', ')'], ""),
                    v.side.name(),
                    rep + 1
                ));
                let report = run_process(cmd, &log)?;
                let what = failure(std::slice::from_ref(&report)).unwrap_or_else(|| {
                    metrics(&report)
                        .iter()
                        .map(|(k, x)| format!("{k} {x:.2}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                });
                eprintln!("      {what}");
                reports.entry(v).or_default().push(report);
            }
        }
        let mv = match matvec_shape(&name) {
            Some(shape) => Some(matvec(&reference, shape, args)?),
            None => None,
        };
        let summary = Summary::new(config, variants, reports);
        let bytes = mlx_weight_bytes(&dir)?.stored;
        sections.push(week2_gpu_section(
            &summary,
            synthetic,
            bytes,
            mv.as_ref(),
            args,
        ));
    }
    let text = format!(
        "# Week 2 on the GPU: reference (all,gpu) vs mlx-lm, bf16, 4-bit g64\n\n{}",
        sections.join("\n")
    );
    let path = bench_dir().join("week2-gpu.md");
    std::fs::create_dir_all(bench_dir())?;
    std::fs::write(&path, &text)?;
    println!("{text}\nwritten to {}", path.display());
    eprintln!("bench done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}
