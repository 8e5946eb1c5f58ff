//! `cargo xtask bench week3`: serving throughput (issue 13). The
//! reference engine (`tiny-llm-bench engine`, continuous batching over a
//! paged KV cache), llama.cpp's `llama-server` with as many parallel slots,
//! and mlx-lm's `BatchGenerator`, each serving the same seeded workload
//! with 1, 2, 4, 8, 16 and 32 requests in flight (closed loop: a client
//! sends its next request when its last one finished), on the same weights:
//! the kit's MLX 4-bit copy of Qwen2.5-Coder-0.5B (reference, mlx-lm) and a
//! Q4_0 GGUF of the same bf16 weights (`bench week2`'s, `llama-quantize
//! --pure`), or `--gguf FILE`.
//!
//! Per concurrency N the workload is the first max(`--min-requests`,
//! `--requests-per-stream` x N) requests of one seeded stream (module
//! `week3_workload`), so a smaller N serves a prefix of a larger N's
//! requests. Throughput = output tokens / wall time of the whole run
//! (prefill included), as serving benchmarks report it. Both the reference
//! (`--prefix-cache off`) and llama.cpp (`cache_prompt` false) compute
//! every prompt token there; random prompts would share nothing anyway.
//!
//! The prefix rows: 16 requests sharing a 500-token system prompt, each
//! with a short suffix of its own, served with the prefix cache on and off
//! (reference: `--prefix-cache on|off`; llama.cpp: `cache_prompt`); the
//! reduction is `prefill_tokens_computed` off / on.
//!
//! mlx-lm's 4-bit CPU path is slow here (well under 1 tok/s per stream;
//! see `bench week2`), so it serves one wave of N requests with prompts cut
//! to `--mlx-lm-prompt` tokens and `--mlx-lm-max-tokens` outputs, and only
//! for N <= `--mlx-lm-max-concurrency`; its tok/s is of that workload.
use super::*;
use week3_report::{prefix_label, EngineRun, Outcome, Week3Results};
use week3_workload::{random_workload, shared_prefix_workload, Lengths, Workload};

/// The concurrencies of a full run (issue 13).
const FULL_CONCURRENCY: [usize; 6] = [1, 2, 4, 8, 16, 32];
/// The concurrencies of `--quick`.
const QUICK_CONCURRENCY: [usize; 2] = [1, 8];

#[derive(clap::Args, Debug, Clone)]
pub struct Week3Args {
    /// A model `models fetch` knows; its MLX 4-bit copy is served.
    #[arg(long, default_value = WEEK2_MODEL)]
    pub model: String,
    /// Concurrencies 1 and 8 only, fewer and shorter requests (a few minutes).
    #[arg(long)]
    pub quick: bool,
    /// Comma-separated concurrencies [default: 1,2,4,8,16,32; --quick: 1,8].
    #[arg(long, value_delimiter = ',')]
    pub concurrency: Vec<usize>,
    /// The workload's seed.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Requests per stream at each concurrency (at least --min-requests).
    #[arg(long, default_value_t = 2)]
    pub requests_per_stream: usize,
    /// Fewest requests at any concurrency [default: 8; --quick: 4].
    #[arg(long)]
    pub min_requests: Option<usize>,
    /// Prompt lengths, "MIN-MAX" tokens, uniform [default: 64-192; --quick: 32-96].
    #[arg(long)]
    pub prompt_len: Option<String>,
    /// Output lengths, "MIN-MAX" tokens, uniform [default: 32-96; --quick: 16-48].
    #[arg(long)]
    pub output_len: Option<String>,
    /// Shared system-prompt tokens of the prefix rows.
    #[arg(long, default_value_t = 500)]
    pub prefix_tokens: usize,
    /// Requests of the prefix rows.
    #[arg(long, default_value_t = 16)]
    pub prefix_requests: usize,
    /// Concurrency of the prefix rows (1: each request can reuse every
    /// earlier one's blocks; more: the first wave computes the prefix
    /// side by side).
    #[arg(long, default_value_t = 1)]
    pub prefix_concurrency: usize,
    /// `tiny-llm-bench engine --kernels` (as `bench week2`'s steps; best:
    /// the fastest exact kernels available).
    #[arg(long, default_value = "best")]
    pub kernels: String,
    /// `tiny-llm-bench engine --max-batch-tokens`.
    #[arg(long)]
    pub max_batch_tokens: Option<usize>,
    /// Serve this GGUF with llama-server instead of the Q4_0 `bench week2`
    /// makes (e.g. the Q4_K_M in the model cache's downloads/).
    #[arg(long)]
    pub gguf: Option<PathBuf>,
    /// Run llama-server with `OMP_WAIT_POLICY=PASSIVE` (a shared machine).
    #[arg(long)]
    pub omp_passive: bool,
    /// Leave llama.cpp out.
    #[arg(long)]
    pub no_llama_cpp: bool,
    /// Leave mlx-lm out.
    #[arg(long)]
    pub no_mlx_lm: bool,
    /// Leave the reference out.
    #[arg(long)]
    pub no_reference: bool,
    /// Leave the prefix rows out.
    #[arg(long)]
    pub no_prefix: bool,
    /// mlx-lm runs concurrencies up to this one.
    #[arg(long, default_value_t = 8)]
    pub mlx_lm_max_concurrency: usize,
    /// mlx-lm's prompts are cut to this many tokens.
    #[arg(long, default_value_t = 32)]
    pub mlx_lm_prompt: usize,
    /// mlx-lm's requests generate at most this many tokens.
    #[arg(long, default_value_t = 8)]
    pub mlx_lm_max_tokens: usize,
    /// Use the reference binary of the last build (target/bench/bin).
    #[arg(long)]
    pub no_build: bool,
}

/// Parses "MIN-MAX" (or one number) into a range of lengths.
pub(super) fn parse_lengths(text: &str, what: &str) -> Result<Lengths> {
    let bad = || anyhow::anyhow!("{what}: {text:?}; expected MIN-MAX in tokens, e.g. 64-192");
    let (a, b) = text.split_once('-').unwrap_or((text, text));
    let min = a.trim().parse().map_err(|_| bad())?;
    let max = b.trim().parse().map_err(|_| bad())?;
    Lengths::new(min, max, what)
}

/// The run's plan, from the arguments.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Plan {
    pub(super) concurrency: Vec<usize>,
    pub(super) min_requests: usize,
    pub(super) prompt: Lengths,
    pub(super) output: Lengths,
}

pub(super) fn plan(args: &Week3Args) -> Result<Plan> {
    let concurrency = if !args.concurrency.is_empty() {
        args.concurrency.clone()
    } else if args.quick {
        QUICK_CONCURRENCY.to_vec()
    } else {
        FULL_CONCURRENCY.to_vec()
    };
    if concurrency.contains(&0) {
        bail!("--concurrency {concurrency:?}: every value must be at least 1");
    }
    let (p, o, m) = if args.quick {
        ("32-96", "16-48", 4)
    } else {
        ("64-192", "32-96", 8)
    };
    Ok(Plan {
        concurrency,
        min_requests: args.min_requests.unwrap_or(m).max(1),
        prompt: parse_lengths(args.prompt_len.as_deref().unwrap_or(p), "--prompt-len")?,
        output: parse_lengths(args.output_len.as_deref().unwrap_or(o), "--output-len")?,
    })
}

/// Requests served at concurrency `n`.
pub(super) fn requests_at(plan: &Plan, per_stream: usize, n: usize) -> usize {
    plan.min_requests.max(per_stream * n).max(n)
}

/// mlx-lm's reduced workload: the first `n` requests, prompts cut to
/// `prompt` tokens, outputs to `max_tokens`.
pub(super) fn mlx_lm_workload(
    w: &Workload,
    n: usize,
    prompt: usize,
    max_tokens: usize,
) -> Workload {
    let mut out = w.clone();
    out.requests.truncate(n);
    for r in &mut out.requests {
        r.prompt.truncate(prompt.max(1));
        r.max_tokens = r.max_tokens.min(max_tokens.max(1));
    }
    out
}

fn dir() -> PathBuf {
    bench_dir().join("week3")
}

/// Runs one engine process that prints the contract's JSON.
fn run_engine(cmd: Command, log: &Path) -> Outcome {
    match run_process(cmd, log) {
        Ok(v) if v.get("status").is_some_and(|s| s == "error") => {
            Outcome::Missing(format!("error: {}", v["message"].as_str().unwrap_or("?")))
        }
        Ok(v) => match EngineRun::from_json(&v) {
            Ok(r) => Outcome::Ran(Box::new(r)),
            Err(e) => Outcome::Missing(format!("error: {e:#}")),
        },
        Err(e) => Outcome::Missing(format!("error: {e:#}")),
    }
}

/// The reference binary, when it has the `engine` subcommand.
fn reference_bin(args: &Week3Args) -> std::result::Result<PathBuf, String> {
    if args.no_reference {
        return Err("skipped (--no-reference)".into());
    }
    let built = if args.no_build {
        prebuilt(Side::Reference)
    } else {
        build(Side::Reference)
    };
    let bin = match built {
        Ok(Built::Binary(p)) => p,
        Ok(Built::DoesNotCompile(e)) => return Err(format!("error: does not compile: {e}")),
        Err(e) => return Err(format!("not available ({e:#})")),
    };
    let has_engine = Command::new(&bin)
        .args(["engine", "--help"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if has_engine {
        Ok(bin)
    } else {
        Err("not available (tiny-llm-bench engine missing)".into())
    }
}

fn reference_cmd(
    bin: &Path,
    model: &Path,
    workload: &Path,
    n: usize,
    prefix_cache: bool,
    args: &Week3Args,
) -> Command {
    let mut cmd = Command::new(bin);
    cmd.arg("engine")
        .arg("--model")
        .arg(model)
        .arg("--workload")
        .arg(workload)
        .args(["--concurrency", &n.to_string()])
        .args(["--prefix-cache", if prefix_cache { "on" } else { "off" }])
        .current_dir(util::project_root())
        .env(tiny_llm_course::DEVICE_ENV, "cpu");
    cmd.args(["--kernels", &args.kernels]);
    if let Some(b) = args.max_batch_tokens {
        cmd.args(["--max-batch-tokens", &b.to_string()]);
    }
    if let Ok(Some(lib)) =
        BlasLibs::find().map(|b| b.and_then(|b| b.path(BlasKind::Optimised).map(Path::to_path_buf)))
    {
        cmd.env("LD_PRELOAD", lib);
    }
    cmd
}

fn mlx_lm_cmd(python: &Path, model: &Path, workload: &Path, n: usize) -> Command {
    let mut cmd = Command::new(python);
    cmd.arg(
        util::project_root()
            .join("xtask")
            .join("python")
            .join("bench_mlx_lm_batch.py"),
    )
    .arg("--model")
    .arg(model)
    .arg("--workload")
    .arg(workload)
    .args(["--concurrency", &n.to_string()])
    .current_dir(util::project_root())
    .env(tiny_llm_course::DEVICE_ENV, "cpu");
    cmd
}

/// llama-server and the GGUF it serves (how it was made), or why not.
fn llama_setup(
    args: &Week3Args,
    python: &Path,
) -> std::result::Result<(PathBuf, PathBuf, String), String> {
    if args.no_llama_cpp {
        return Err("skipped (--no-llama-cpp)".into());
    }
    let made = llama_cpp::ensure(python).and_then(|tools| {
        let (gguf, how) = match &args.gguf {
            Some(g) if g.is_file() => (g.clone(), format!("{} (--gguf)", g.display())),
            Some(g) => bail!("--gguf {}: no such file", g.display()),
            None => {
                let base = resolve(&args.model, "f32")?;
                let g = llama_cpp::ensure_ggufs(
                    python,
                    &tools,
                    &base.name,
                    &base.dir,
                    &[llama_cpp::GgufType::Q4_0],
                )?;
                let g = g.into_iter().next().context("no Q4_0 GGUF was made")?;
                (g.path.clone(), format!("{} ({})", g.path.display(), g.how))
            }
        };
        Ok((tools.server, gguf, how))
    });
    made.map_err(|e| format!("error: {e:#}"))
}

pub(super) fn week3(args: &Week3Args) -> Result<()> {
    let plan = plan(args)?;
    if args.requests_per_stream == 0 || args.prefix_requests == 0 || args.prefix_concurrency == 0 {
        bail!(
            "--requests-per-stream, --prefix-requests and --prefix-concurrency must be at least 1"
        );
    }
    let started = Instant::now();
    if !args.no_build {
        setup::run(&Default::default())?;
    }
    let python = venv::ensure()?;
    let model = models::ensure_quantized(&args.model, 4)?;
    let reference = reference_bin(args);
    if let Err(why) = &reference {
        eprintln!("  .. reference: {why}");
    }
    let llama = llama_setup(args, &python);
    if let Err(why) = &llama {
        eprintln!("  .. llama.cpp: {why}");
    }
    let logs = bench_dir().join("logs");
    let threads = week2::threads();
    let most = plan
        .concurrency
        .iter()
        .map(|&n| requests_at(&plan, args.requests_per_stream, n))
        .max()
        .unwrap_or(1);
    let all = random_workload(args.seed, most, plan.prompt, plan.output);
    let mut results = Week3Results::default();
    for &n in &plan.concurrency {
        let mut w = all.clone();
        w.requests
            .truncate(requests_at(&plan, args.requests_per_stream, n));
        let path = dir().join(format!("workload-c{n}.json"));
        w.write(&path)?;
        eprintln!(
            "\n{n} stream(s): {} requests, {} prompt + {} output tokens ({:.0} s so far)",
            w.requests.len(),
            w.prompt_tokens(),
            w.output_tokens(),
            started.elapsed().as_secs_f64()
        );
        let mut row = BTreeMap::new();
        let o = match &reference {
            Ok(bin) => run_engine(
                reference_cmd(bin, &model, &path, n, false, args),
                &logs.join(format!("week3-reference-c{n}.log")),
            ),
            Err(why) => Outcome::Missing(why.clone()),
        };
        show("reference", &o);
        row.insert("reference".to_string(), o);
        let o = match &llama {
            Ok((server, gguf, _)) => {
                let spec = llama_server::ServerSpec {
                    binary: server,
                    gguf,
                    threads,
                    omp_passive: args.omp_passive,
                    log: logs.join(format!("week3-llama-server-c{n}.log")),
                };
                to_outcome(llama_server::run(&spec, &w, n, false))
            }
            Err(why) => Outcome::Missing(why.clone()),
        };
        show("llama.cpp", &o);
        row.insert("llama.cpp".to_string(), o);
        let o = if args.no_mlx_lm {
            Outcome::Missing("skipped (--no-mlx-lm)".into())
        } else if n > args.mlx_lm_max_concurrency {
            Outcome::Missing(format!(
                "skipped (> --mlx-lm-max-concurrency {})",
                args.mlx_lm_max_concurrency
            ))
        } else {
            let small = mlx_lm_workload(&w, n, args.mlx_lm_prompt, args.mlx_lm_max_tokens);
            let p = dir().join(format!("workload-mlx-lm-c{n}.json"));
            small.write(&p)?;
            run_engine(
                mlx_lm_cmd(&python, &model, &p, n),
                &logs.join(format!("week3-mlx-lm-c{n}.log")),
            )
        };
        show("mlx-lm", &o);
        row.insert("mlx-lm".to_string(), o);
        results.by_concurrency.insert(n, row);
    }
    if !args.no_prefix {
        let suffix = Lengths::new(4, 16, "prefix suffix")?;
        let w = shared_prefix_workload(
            args.seed,
            args.prefix_requests,
            args.prefix_tokens,
            suffix,
            16,
        );
        let path = dir().join("workload-prefix.json");
        w.write(&path)?;
        let n = args.prefix_concurrency;
        eprintln!(
            "\nprefix rows: {} requests sharing {} tokens, {n} in flight",
            w.requests.len(),
            args.prefix_tokens
        );
        for on in [false, true] {
            let o = match &reference {
                Ok(bin) => run_engine(
                    reference_cmd(bin, &model, &path, n, on, args),
                    &logs.join(format!("week3-reference-prefix-{on}.log")),
                ),
                Err(why) => Outcome::Missing(why.clone()),
            };
            show(&prefix_label("reference", on), &o);
            results.prefix.push((prefix_label("reference", on), o));
        }
        for on in [false, true] {
            let o = match &llama {
                Ok((server, gguf, _)) => {
                    let spec = llama_server::ServerSpec {
                        binary: server,
                        gguf,
                        threads,
                        omp_passive: args.omp_passive,
                        log: logs.join(format!("week3-llama-server-prefix-{on}.log")),
                    };
                    to_outcome(llama_server::run(&spec, &w, n, on))
                }
                Err(why) => Outcome::Missing(why.clone()),
            };
            show(&prefix_label("llama.cpp", on), &o);
            results.prefix.push((prefix_label("llama.cpp", on), o));
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let header = format!(
        "{} (MLX 4-bit g64 for the reference and mlx-lm), CPU, {threads} threads; seed {}; {:.0} s for the whole run.",
        args.model, args.seed, elapsed
    );
    let notes = notes(args, &plan, &llama);
    week3_report::report_week3(&results, &header, &notes)?;
    eprintln!("bench done in {elapsed:.0} s");
    Ok(())
}

fn to_outcome(r: Result<Value>) -> Outcome {
    match r.and_then(|v| EngineRun::from_json(&v)) {
        Ok(x) => Outcome::Ran(Box::new(x)),
        Err(e) => Outcome::Missing(format!("error: {e:#}")),
    }
}

fn show(what: &str, o: &Outcome) {
    match o {
        Outcome::Ran(x) => eprintln!(
            "  {what}: {:.2} tok/s ({} tokens in {:.1} s), prefill computed {}",
            x.tok_s(),
            x.output_tokens,
            x.wall_s,
            x.prefill_tokens_computed
                .map_or("-".into(), |p| p.to_string())
        ),
        Outcome::Missing(why) => eprintln!("  {what}: {why}"),
    }
}

fn notes(
    args: &Week3Args,
    plan: &Plan,
    llama: &std::result::Result<(PathBuf, PathBuf, String), String>,
) -> Vec<String> {
    let mut n = vec![
        format!(
            "Workload (seed {}): per concurrency N, max({}, {} x N) requests; prompt lengths uniform in {}..={} tokens of random ordinary ids, outputs uniform in {}..={} tokens, every engine generating exactly that many (end of sequence ignored, greedy). Closed loop: N clients, each sending its next request when its last one finished.",
            args.seed, plan.min_requests, args.requests_per_stream, plan.prompt.min, plan.prompt.max, plan.output.min, plan.output.max
        ),
        "tok/s = output tokens / wall time of the run (prefill included). TTFT: submit to first token; ITL: gaps between a request's consecutive tokens; percentiles nearest-rank.".into(),
        format!(
            "Prefix rows: {} requests, a shared {}-token system prompt plus 4..=16 tokens of their own, 16 output tokens, {} in flight; prefill tokens computed off / on (reference: --prefix-cache; llama.cpp: cache_prompt and timings.prompt_n).",
            args.prefix_requests, args.prefix_tokens, args.prefix_concurrency
        ),
        format!(
            "mlx-lm (BatchGenerator, f32 activations and scales): one wave of N requests, prompts cut to {} tokens, at most {} output tokens, N <= {}: its 4-bit CPU path is too slow for the full workload; its tok/s is of that smaller workload. It has no prefix rows (its batch generator keeps no cache across requests).",
            args.mlx_lm_prompt, args.mlx_lm_max_tokens, args.mlx_lm_max_concurrency
        ),
    ];
    match llama {
        Ok((_, _, how)) => n.push(format!(
            "llama.cpp: llama-server (llama-cpp-python {} vendored source) with N slots, cache_prompt false except the prefix row's \"on\"; GGUF {how}.",
            llama_cpp::VERSION
        )),
        Err(why) => n.push(format!("llama.cpp: {why}")),
    }
    n
}
