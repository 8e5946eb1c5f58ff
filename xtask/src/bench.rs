//! `cargo xtask bench week1 [--model M] [--dtype D] [--reps N]`: the week-1
//! path (no KV cache) of the learner's code and of the reference, against
//! mlx-lm on the same weights, dtype and token ids.
//!
//! Steps: provision MLX (`setup`), the venv (mlx-lm) and the models; build
//! `tiny-llm-bench` (`bench/`) twice in release, the learner's crate and the
//! reference (`--features solutions`), copying each binary aside; write the
//! prompt ids once per model (`tiny-llm-bench prompt`); then run every
//! variant in its own process, the repetitions interleaved (A B C A B C ...),
//! and summarise each metric as median, min and max:
//!
//! - mlx-lm, reference, learner: prefill (128 and 512 tokens), decode (128
//!   new tokens after 128), time to first token, peak MLX memory; all with
//!   the optimised BLAS the kit uses (Debian's OpenBLAS);
//! - for f32 (the dtype whose matmuls use BLAS): mlx-lm and the reference
//!   again, prefill only, with the wheel's reference BLAS.
//!
//! The BLAS is chosen per process with `LD_PRELOAD`: `libmlx.so` finds its
//! BLAS through its own rpath (which `LD_LIBRARY_PATH` cannot redirect), but
//! a preloaded library's `sgemm_`/`cblas_sgemm` symbols win. Every run names
//! its BLAS explicitly, so the venv's mlx (reference BLAS as installed) and
//! the kit's (OpenBLAS swapped in by `setup`) run the same one.
//!
//! Output: a table on stdout (ratios reference/mlx-lm and learner/reference),
//! `target/bench/week1-<model>-<dtype>.{json,md,svg}`, and `week1.svg` with
//! every configuration of the run. Process logs: `target/bench/logs/`.

use crate::{models, setup, util, venv};
use anyhow::{bail, Context, Result};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// Debian's OpenBLAS (pthreads), what `cargo xtask setup` links in.
const DEBIAN_OPENBLAS: &str = "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0";

/// The configurations of the issue, run when neither --model nor --dtype is given.
const DEFAULT_CONFIGS: &[(&str, &str)] = &[
    ("smollm2-135m", "f32"),
    ("qwen2.5-coder-0.5b", "f32"),
    ("qwen2.5-coder-0.5b", "bf16"),
];

/// Prompt lengths of the prefill runs.
const PREFILL_LENGTHS: [usize; 2] = [128, 512];
/// Prompt length of the decode run.
const DECODE_PROMPT: usize = 128;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub cmd: BenchCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchCmd {
    /// The week-1 path (no KV cache): your code, the reference and mlx-lm.
    Week1(Week1Args),
}

#[derive(clap::Args, Debug, Clone)]
pub struct Week1Args {
    /// smollm2-135m, qwen2.5-coder-0.5b or a model directory [default with
    /// --dtype: qwen2.5-coder-0.5b; with neither: the three configurations
    /// smollm2-135m f32, qwen2.5-coder-0.5b f32 and bf16].
    #[arg(long)]
    pub model: Option<String>,
    /// f32, bf16 or f16 [default with --model: f32].
    #[arg(long, value_parser = ["f32", "bf16", "f16"])]
    pub dtype: Option<String>,
    /// Repetitions of every variant, interleaved.
    #[arg(long, default_value_t = 3)]
    pub reps: usize,
    /// Tokens generated in the decode run (the README's table uses 128).
    #[arg(long, default_value_t = 128)]
    pub new_tokens: usize,
    /// Skip the prefill runs with the wheel's reference BLAS.
    #[arg(long)]
    pub no_blas_compare: bool,
    /// Measure nothing: redraw the charts from the JSON files in target/bench.
    #[arg(long)]
    pub redraw: bool,
    /// MLX device: gpu or cpu (default: gpu when one is usable).
    #[arg(long, value_enum)]
    pub device: Option<crate::device::Device>,
    /// Use the binaries of the last build (target/bench/bin) instead of
    /// building; with TINY_LLM_PYTHON naming a python that has mlx and mlx-lm
    /// (for a machine without a Rust toolchain, such as a lent GPU machine).
    #[arg(long)]
    pub no_build: bool,
}

pub fn run(args: &BenchArgs) -> Result<()> {
    match &args.cmd {
        BenchCmd::Week1(a) => week1(a),
    }
}

/// One model and dtype.
#[derive(Debug, Clone)]
struct Config {
    /// Short name, used in file names.
    name: String,
    dir: PathBuf,
    dtype: String,
    device: crate::device::Device,
}

impl Config {
    fn label(&self) -> String {
        format!(
            "{} {} on the {}",
            self.name,
            self.dtype,
            self.device.as_str()
        )
    }
    fn stem(&self) -> String {
        match self.device {
            crate::device::Device::Cpu => format!("week1-{}-{}", self.name, self.dtype),
            crate::device::Device::Gpu => format!("week1-{}-{}-gpu", self.name, self.dtype),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Side {
    MlxLm,
    Reference,
    Learner,
}

impl Side {
    fn name(self) -> &'static str {
        match self {
            Side::MlxLm => "mlx-lm",
            Side::Reference => "reference",
            Side::Learner => "learner",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum BlasKind {
    Optimised,
    Reference,
}

/// One measured process kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Variant {
    side: Side,
    blas: BlasKind,
    /// Decode as well as prefill (the reference-BLAS variants only prefill).
    decode: bool,
}

impl Variant {
    fn key(&self) -> String {
        match self.blas {
            BlasKind::Optimised => self.side.name().to_string(),
            BlasKind::Reference => format!("{} (reference BLAS)", self.side.name()),
        }
    }
}

/// The BLAS libraries preloaded into each process.
#[derive(Debug, Clone)]
struct BlasLibs {
    optimised: PathBuf,
    /// The wheel's netlib BLAS; `None` where there is none (macOS).
    reference: Option<PathBuf>,
}

impl BlasLibs {
    fn find() -> Result<Option<BlasLibs>> {
        if !cfg!(target_os = "linux") {
            return Ok(None);
        }
        // What the kit's wheel copy links (a symlink after `setup`), else Debian's.
        let libs = setup::Layout::new().dist().join("mlx_cpu.libs");
        let optimised = first_match(&libs, "libblas-")
            .and_then(|p| std::fs::read_link(p).ok())
            .unwrap_or_else(|| PathBuf::from(DEBIAN_OPENBLAS));
        if !optimised.is_file() {
            bail!(
                "{} is missing (Debian package libopenblas0-pthread)",
                optimised.display()
            );
        }
        // The venv's mlx-cpu wheel keeps its own reference BLAS.
        let reference = glob_venv_blas();
        Ok(Some(BlasLibs {
            optimised,
            reference,
        }))
    }

    fn path(&self, kind: BlasKind) -> Option<&Path> {
        match kind {
            BlasKind::Optimised => Some(&self.optimised),
            BlasKind::Reference => self.reference.as_deref(),
        }
    }
}

/// The first file in `dir` whose name starts with `prefix`.
fn first_match(dir: &Path, prefix: &str) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().starts_with(prefix))
                .unwrap_or(false)
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

/// `target/venv/lib/python3.*/site-packages/mlx_cpu.libs/libblas-*`, a
/// regular file (the wheel's netlib reference BLAS).
fn glob_venv_blas() -> Option<PathBuf> {
    let lib = venv::venv_dir().join("lib");
    let mut pys: Vec<PathBuf> = std::fs::read_dir(&lib)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("python3"))
        })
        .collect();
    pys.sort();
    pys.into_iter().find_map(|py| {
        let f = first_match(&py.join("site-packages").join("mlx_cpu.libs"), "libblas-")?;
        let meta = std::fs::symlink_metadata(&f).ok()?;
        meta.file_type().is_file().then_some(f)
    })
}

fn bench_dir() -> PathBuf {
    util::target_dir().join("bench")
}

fn script() -> PathBuf {
    util::project_root()
        .join("xtask")
        .join("python")
        .join("bench_mlx_lm.py")
}

fn configs(args: &Week1Args) -> Result<Vec<(String, String)>> {
    Ok(match (&args.model, &args.dtype) {
        (None, None) => DEFAULT_CONFIGS
            .iter()
            .map(|(m, d)| (m.to_string(), d.to_string()))
            .collect(),
        (m, d) => vec![(
            m.clone()
                .unwrap_or_else(|| models::DEFAULT_MODEL.to_string()),
            d.clone().unwrap_or_else(|| "f32".to_string()),
        )],
    })
}

/// The model directory of `spec`: a model `models fetch` knows (fetched
/// when missing) or a directory.
fn resolve(spec: &str, dtype: &str) -> Result<Config> {
    if models::MODELS.iter().any(|m| m.name == spec) {
        let dir = models::ensure_model(spec)?;
        return Ok(Config {
            name: spec.to_string(),
            dir,
            dtype: dtype.to_string(),
            device: crate::device::Device::Cpu,
        });
    }
    let dir = PathBuf::from(spec);
    if !dir.join("config.json").is_file() {
        let known: Vec<&str> = models::MODELS.iter().map(|m| m.name).collect();
        bail!(
            "--model {spec:?} is neither a known model ({}) nor a model directory",
            known.join(", ")
        );
    }
    let dir = dir.canonicalize()?;
    let name: String = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "model".into())
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    Ok(Config {
        name,
        dir,
        dtype: dtype.to_string(),
        device: crate::device::Device::Cpu,
    })
}

/// What building one side of `tiny-llm-bench` gave.
enum Built {
    Binary(PathBuf),
    /// The learner's crate does not compile: the first error.
    DoesNotCompile(String),
}

/// `cargo build --release -p tiny-llm-bench` (with `solutions` for the
/// reference), then copies the binary aside (both builds write the same path).
fn build(side: Side) -> Result<Built> {
    let step = util::Step::start(format!(
        "build tiny-llm-bench with {} (release)",
        if side == Side::Reference {
            "the reference"
        } else {
            "your tiny-llm (exercises/)"
        }
    ));
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(util::project_root()).args([
        "build",
        "--release",
        "-p",
        "tiny-llm-bench",
        "--message-format",
        "short",
    ]);
    if side == Side::Reference {
        cmd.args(["--no-default-features", "--features", "solutions"]);
    }
    let log = bench_dir()
        .join("logs")
        .join(format!("build-{}.log", side.name()));
    if let Err(e) = util::run_logged(&mut cmd, &log) {
        if side == Side::Learner {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let first = text
                .lines()
                .find(|l| l.contains("error"))
                .unwrap_or("see the log")
                .to_string();
            eprintln!(
                "  .. your tiny-llm does not compile: {first} (log: {})",
                log.display()
            );
            return Ok(Built::DoesNotCompile(first));
        }
        return Err(e);
    }
    let exe = format!("tiny-llm-bench{}", std::env::consts::EXE_SUFFIX);
    let built = util::target_dir().join("release").join(&exe);
    let dest = bench_dir().join("bin").join(format!(
        "tiny-llm-bench-{}{}",
        side.name(),
        std::env::consts::EXE_SUFFIX
    ));
    std::fs::create_dir_all(dest.parent().expect("has a parent"))?;
    std::fs::copy(&built, &dest)
        .with_context(|| format!("copying {} to {}", built.display(), dest.display()))?;
    step.done();
    Ok(Built::Binary(dest))
}

/// The binary an earlier `build` copied aside (`--no-build`).
fn prebuilt(side: Side) -> Result<Built> {
    let path = bench_dir().join("bin").join(format!(
        "tiny-llm-bench-{}{}",
        side.name(),
        std::env::consts::EXE_SUFFIX
    ));
    if !path.is_file() {
        bail!(
            "{} is missing: run `cargo xtask bench week1` once where Rust is installed",
            path.display()
        );
    }
    Ok(Built::Binary(path))
}

/// Writes the prompt ids of `config`'s model once (`tiny-llm-bench prompt`).
fn prompt_ids(reference_bin: &Path, config: &Config) -> Result<PathBuf> {
    let out = bench_dir().join(format!("prompt-{}.json", config.name));
    let longest = PREFILL_LENGTHS
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(DECODE_PROMPT);
    let mut cmd = Command::new(reference_bin);
    cmd.args(["prompt", "--tokens", &longest.to_string(), "--model"])
        .arg(&config.dir)
        .arg("--out")
        .arg(&out);
    util::run_logged(
        &mut cmd,
        &bench_dir()
            .join("logs")
            .join(format!("prompt-{}.log", config.name)),
    )?;
    Ok(out)
}

/// Starts one measured process; its stderr goes to the terminal (indented)
/// and to `log`; returns the JSON report it printed.
fn run_process(mut cmd: Command, log: &Path) -> Result<Value> {
    std::fs::create_dir_all(log.parent().expect("has a parent"))?;
    let mut log_file = std::fs::File::create(log)?;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {cmd:?}"))?;
    let stderr = child.stderr.take().expect("piped");
    let echo = std::thread::spawn(move || {
        let mut kept = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            if line.trim_start().starts_with("prefill") || line.trim_start().starts_with("decode") {
                eprintln!("      {}", line.trim());
            }
            kept.push(line);
        }
        kept
    });
    let output = child.wait_with_output()?;
    let err_lines = echo.join().unwrap_or_default();
    let stdout = String::from_utf8_lossy(&output.stdout);
    writeln!(
        log_file,
        "$ {cmd:?}\n--- stderr\n{}\n--- stdout\n{stdout}",
        err_lines.join("\n")
    )?;
    let last = stdout
        .lines()
        .rev()
        .find(|l| l.trim_start().starts_with('{'));
    match last.map(serde_json::from_str::<Value>) {
        Some(Ok(v)) => Ok(v),
        _ => {
            let tail: Vec<&String> = err_lines.iter().rev().take(8).collect();
            let tail: Vec<&str> = tail.into_iter().rev().map(String::as_str).collect();
            Ok(json!({
                "status": "error",
                "message": format!("exited with {} and no report; {}", output.status, tail.join(" | ")),
            }))
        }
    }
}

/// The command for one variant of one configuration.
fn command(
    v: Variant,
    config: &Config,
    prompt: &Path,
    python: &Path,
    bins: &BTreeMap<Side, PathBuf>,
    blas: Option<&BlasLibs>,
    new_tokens: usize,
) -> Command {
    let prefill: Vec<String> = PREFILL_LENGTHS.iter().map(|l| l.to_string()).collect();
    let mut cmd = match v.side {
        Side::MlxLm => {
            let mut c = Command::new(python);
            c.arg(script());
            c
        }
        side => {
            let mut c = Command::new(&bins[&side]);
            c.arg("run");
            c
        }
    };
    cmd.arg("--model")
        .arg(&config.dir)
        .args(["--dtype", &config.dtype, "--prefill", &prefill.join(",")])
        .args(["--decode-prompt", &DECODE_PROMPT.to_string()])
        .args([
            "--new-tokens",
            &if v.decode { new_tokens } else { 0 }.to_string(),
        ])
        .arg("--prompt")
        .arg(prompt)
        .current_dir(util::project_root())
        .env("TINY_LLM_DEVICE", config.device.as_str());
    if config.device == crate::device::Device::Cpu {
        if let Some(lib) = blas.and_then(|b| b.path(v.blas)) {
            cmd.env("LD_PRELOAD", lib);
        }
    }
    cmd
}

/// Median, min and max of some samples.
#[derive(Debug, Clone, Copy)]
struct Stat {
    median: f64,
    min: f64,
    max: f64,
    n: usize,
}

fn stat(samples: &[f64]) -> Option<Stat> {
    if samples.is_empty() {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    let n = s.len();
    let median = if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    };
    Some(Stat {
        median,
        min: s[0],
        max: s[n - 1],
        n,
    })
}

/// The metrics of one report, by name.
fn metrics(report: &Value) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    if let Some(list) = report["prefill"].as_array() {
        for p in list {
            if let (Some(t), Some(s)) = (p["tokens"].as_u64(), p["seconds"].as_f64()) {
                out.push((format!("prefill_{t}_tok_s"), t as f64 / s.max(1e-12)));
            }
        }
    }
    let d = &report["decode"];
    if let (Some(n), Some(s), Some(ttft)) = (
        d["new_tokens"].as_u64(),
        d["decode_seconds"].as_f64(),
        d["ttft_seconds"].as_f64(),
    ) {
        if n > 1 {
            out.push(("decode_tok_s".into(), (n - 1) as f64 / s.max(1e-12)));
        }
        out.push(("ttft_s".into(), ttft));
    }
    if let Some(b) = report["peak_memory_bytes"].as_f64() {
        out.push(("peak_memory_gb".into(), b / 1e9));
    }
    out
}

/// How a variant ended when it did not measure anything.
fn failure(reports: &[Value]) -> Option<String> {
    let r = reports.iter().find(|r| r["status"] != "ok")?;
    Some(match r["status"].as_str().unwrap_or("error") {
        "not_implemented" => match r["day"].as_u64() {
            Some(d) => format!("not implemented (day {d})"),
            None => "not implemented".into(),
        },
        "does_not_compile" => "does not compile".into(),
        _ => format!("error: {}", r["message"].as_str().unwrap_or("?")),
    })
}

/// Everything measured for one configuration.
struct Summary {
    config: Config,
    variants: Vec<Variant>,
    reports: BTreeMap<Variant, Vec<Value>>,
    stats: BTreeMap<Variant, BTreeMap<String, Stat>>,
}

impl Summary {
    fn new(
        config: Config,
        variants: Vec<Variant>,
        reports: BTreeMap<Variant, Vec<Value>>,
    ) -> Summary {
        let mut stats = BTreeMap::new();
        for (v, list) in &reports {
            let mut by: BTreeMap<String, Vec<f64>> = BTreeMap::new();
            for r in list.iter().filter(|r| r["status"] == "ok") {
                for (k, x) in metrics(r) {
                    by.entry(k).or_default().push(x);
                }
            }
            let s: BTreeMap<String, Stat> = by
                .into_iter()
                .filter_map(|(k, xs)| stat(&xs).map(|s| (k, s)))
                .collect();
            stats.insert(*v, s);
        }
        Summary {
            config,
            variants,
            reports,
            stats,
        }
    }

    fn get(&self, side: Side, blas: BlasKind, metric: &str) -> Option<Stat> {
        self.stats
            .iter()
            .find(|(v, _)| v.side == side && v.blas == blas)
            .and_then(|(_, m)| m.get(metric).copied())
    }

    fn failure(&self, side: Side) -> Option<String> {
        self.reports
            .iter()
            .find(|(v, _)| v.side == side && v.blas == BlasKind::Optimised)
            .and_then(|(_, r)| failure(r))
    }

    /// Tokens generated in the decode runs (from their reports).
    fn new_tokens(&self) -> u64 {
        self.reports
            .values()
            .flatten()
            .find_map(|r| r["decode"]["new_tokens"].as_u64())
            .unwrap_or(0)
    }

    fn has_blas_compare(&self) -> bool {
        self.variants.iter().any(|v| v.blas == BlasKind::Reference)
    }
}

/// The table's rows: metric key, label, BLAS, digits.
fn rows(s: &Summary) -> Vec<(&'static str, &'static str, BlasKind, usize)> {
    let mut r = vec![
        (
            "prefill_128_tok_s",
            "prefill 128 tok/s",
            BlasKind::Optimised,
            1,
        ),
        (
            "prefill_512_tok_s",
            "prefill 512 tok/s",
            BlasKind::Optimised,
            1,
        ),
        ("decode_tok_s", "decode tok/s", BlasKind::Optimised, 2),
        (
            "ttft_s",
            "time to first token, s (lower is better)",
            BlasKind::Optimised,
            2,
        ),
        (
            "peak_memory_gb",
            "peak MLX memory, GB (lower is better)",
            BlasKind::Optimised,
            2,
        ),
    ];
    if s.has_blas_compare() {
        r.push((
            "prefill_128_tok_s",
            "prefill 128 tok/s, reference BLAS",
            BlasKind::Reference,
            1,
        ));
        r.push((
            "prefill_512_tok_s",
            "prefill 512 tok/s, reference BLAS",
            BlasKind::Reference,
            1,
        ));
    }
    r
}

fn fmt_stat(s: Option<Stat>, digits: usize) -> String {
    match s {
        Some(s) if s.n > 1 => format!("{:.d$} ({:.d$}-{:.d$})", s.median, s.min, s.max, d = digits),
        Some(s) => format!("{:.d$}", s.median, d = digits),
        None => "-".into(),
    }
}

fn ratio(a: Option<Stat>, b: Option<Stat>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b.median > 0.0 => Some(a.median / b.median),
        _ => None,
    }
}

fn fmt_ratio(r: Option<f64>) -> String {
    r.map(|r| format!("{r:.2}x")).unwrap_or_else(|| "-".into())
}

/// The table as rows of cells (header first).
fn table_cells(s: &Summary) -> Vec<Vec<String>> {
    let mut out = vec![vec![
        "metric".to_string(),
        "mlx-lm".into(),
        "reference".into(),
        "learner".into(),
        "reference / mlx-lm".into(),
        "learner / reference".into(),
    ]];
    let learner_failure = s.failure(Side::Learner);
    for (key, label, blas, digits) in rows(s) {
        let m = s.get(Side::MlxLm, blas, key);
        let r = s.get(Side::Reference, blas, key);
        let l = s.get(Side::Learner, blas, key);
        let learner_cell = match (blas, &learner_failure) {
            (BlasKind::Reference, _) => "-".to_string(),
            (_, Some(f)) => f.clone(),
            _ => fmt_stat(l, digits),
        };
        let label = if key == "decode_tok_s" {
            format!("{label} ({} new)", s.new_tokens())
        } else {
            label.to_string()
        };
        out.push(vec![
            label,
            fmt_stat(m, digits),
            fmt_stat(r, digits),
            learner_cell,
            fmt_ratio(ratio(r, m)),
            if blas == BlasKind::Reference {
                "-".into()
            } else {
                fmt_ratio(ratio(l, r))
            },
        ]);
    }
    if s.has_blas_compare() {
        for len in PREFILL_LENGTHS {
            let key = format!("prefill_{len}_tok_s");
            let gain = |side| {
                fmt_ratio(ratio(
                    s.get(side, BlasKind::Optimised, &key),
                    s.get(side, BlasKind::Reference, &key),
                ))
            };
            out.push(vec![
                format!("OpenBLAS / reference BLAS, prefill {len}"),
                gain(Side::MlxLm),
                gain(Side::Reference),
                "-".into(),
                "-".into(),
                "-".into(),
            ]);
        }
    }
    out
}

fn render_text(cells: &[Vec<String>]) -> String {
    let cols = cells[0].len();
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            cells
                .iter()
                .map(|r| r[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, row) in cells.iter().enumerate() {
        let line: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, cell)| {
                if c == 0 {
                    format!("{cell:<w$}", w = widths[c])
                } else {
                    format!("{cell:>w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
        if i == 0 {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * (cols - 1)));
            out.push('\n');
        }
    }
    out
}

fn render_markdown(cells: &[Vec<String>]) -> String {
    let mut out = String::new();
    for (i, row) in cells.iter().enumerate() {
        out.push_str(&format!("| {} |\n", row.join(" | ")));
        if i == 0 {
            let seps: Vec<&str> = (0..row.len())
                .map(|c| if c == 0 { "---" } else { "---:" })
                .collect();
            out.push_str(&format!("| {} |\n", seps.join(" | ")));
        }
    }
    out
}

/// Whether the greedy tokens of two sides agree (a sanity check of the
/// comparison: same weights, same dtype, same ids).
fn token_agreement(s: &Summary, a: Side, b: Side) -> Option<(usize, usize)> {
    let first = |side: Side| -> Option<Vec<u64>> {
        s.reports
            .iter()
            .find(|(v, _)| v.side == side && v.decode)
            .and_then(|(_, list)| list.iter().find(|r| r["status"] == "ok"))
            .and_then(|r| r["decode"]["tokens"].as_array().cloned())
            .map(|t| t.iter().filter_map(Value::as_u64).collect())
    };
    let (x, y) = (first(a)?, first(b)?);
    let same = x.iter().zip(&y).take_while(|(p, q)| p == q).count();
    Some((same, x.len().min(y.len())))
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let avx512 = cpuinfo
        .lines()
        .any(|l| l.starts_with("flags") && l.contains("avx512f"));
    json!({
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "cpu": model,
        "avx512": avx512,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "openblas_coretype": std::env::var("OPENBLAS_CORETYPE").ok(),
    })
}

/// Seconds since the epoch as a UTC date and time.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

/// Draws `week1.svg` (every configuration measured so far) and one chart per
/// configuration, from the JSON files.
fn redraw() -> Result<PathBuf> {
    let docs = measured_docs();
    for doc in &docs {
        let stem = format!(
            "week1-{}-{}",
            doc["model"].as_str().unwrap_or("model"),
            doc["dtype"].as_str().unwrap_or("dtype")
        );
        let one = std::slice::from_ref(doc);
        crate::bench_chart::draw(
            &chart_rows(one),
            &chart_caption(one),
            &bench_dir().join(format!("{stem}.svg")),
        )?;
    }
    let path = bench_dir().join("week1.svg");
    crate::bench_chart::draw(&chart_rows(&docs), &chart_caption(&docs), &path)?;
    Ok(path)
}

fn week1(args: &Week1Args) -> Result<()> {
    if args.redraw {
        let path = redraw()?;
        println!("redrew the charts: {}", path.display());
        return Ok(());
    }
    if args.reps == 0 {
        bail!("--reps must be at least 1");
    }
    let started = Instant::now();
    if !args.no_build {
        setup::run(&Default::default())?;
    }
    let device = crate::device::resolve(args.device)?;
    let python = match std::env::var_os("TINY_LLM_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => venv::ensure()?,
    };
    let mut configs_list = Vec::new();
    for (m, d) in configs(args)? {
        let mut c = resolve(&m, &d)?;
        c.device = device;
        configs_list.push(c);
    }
    // BLAS only serves MLX's CPU matmuls
    let blas = if device == crate::device::Device::Cpu {
        BlasLibs::find()?
    } else {
        None
    };
    let compare_blas = device == crate::device::Device::Cpu
        && !args.no_blas_compare
        && blas.as_ref().is_some_and(|b| b.reference.is_some());
    if !args.no_blas_compare && !compare_blas {
        eprintln!(
            "  .. no reference BLAS to compare with here (Linux venv only): skipping those runs"
        );
    }

    let mut bins = BTreeMap::new();
    let reference = match if args.no_build {
        prebuilt(Side::Reference)?
    } else {
        build(Side::Reference)?
    } {
        Built::Binary(p) => p,
        Built::DoesNotCompile(e) => bail!("the reference does not compile: {e}"),
    };
    bins.insert(Side::Reference, reference.clone());
    let learner_build = if args.no_build {
        prebuilt(Side::Learner)?
    } else {
        build(Side::Learner)?
    };
    if let Built::Binary(p) = &learner_build {
        bins.insert(Side::Learner, p.clone());
    }

    for config in &configs_list {
        let prompt = prompt_ids(&reference, config)?;
        let mut variants = vec![
            Variant {
                side: Side::MlxLm,
                blas: BlasKind::Optimised,
                decode: true,
            },
            Variant {
                side: Side::Reference,
                blas: BlasKind::Optimised,
                decode: true,
            },
            Variant {
                side: Side::Learner,
                blas: BlasKind::Optimised,
                decode: true,
            },
        ];
        // BLAS only serves f32 matmuls on MLX's CPU backend.
        if compare_blas && config.dtype == "f32" {
            variants.push(Variant {
                side: Side::MlxLm,
                blas: BlasKind::Reference,
                decode: false,
            });
            variants.push(Variant {
                side: Side::Reference,
                blas: BlasKind::Reference,
                decode: false,
            });
        }
        let mut reports: BTreeMap<Variant, Vec<Value>> = BTreeMap::new();
        if let Built::DoesNotCompile(e) = &learner_build {
            let learner = variants.iter().find(|v| v.side == Side::Learner).copied();
            if let Some(v) = learner {
                reports.insert(
                    v,
                    vec![json!({ "status": "does_not_compile", "message": e })],
                );
            }
        }
        let total = variants.len() * args.reps;
        let mut done = 0;
        eprintln!(
            "\n{}: {} variants x {} reps, interleaved (decode: {} new tokens after {DECODE_PROMPT})",
            config.label(),
            variants.len(),
            args.reps,
            args.new_tokens
        );
        for rep in 0..args.reps {
            for &v in &variants {
                done += 1;
                // A learner that is not implemented (or does not compile) stays so.
                if v.side == Side::Learner
                    && reports.get(&v).is_some_and(|r| {
                        r.iter()
                            .any(|r| r["status"] != "ok" && r["status"] != "error")
                    })
                {
                    continue;
                }
                eprintln!(
                    "  [{done}/{total}] rep {}/{} {} ... ({:.0} s so far)",
                    rep + 1,
                    args.reps,
                    v.key(),
                    started.elapsed().as_secs_f64()
                );
                let t = Instant::now();
                let cmd = command(
                    v,
                    config,
                    &prompt,
                    &python,
                    &bins,
                    blas.as_ref(),
                    args.new_tokens,
                );
                let log = bench_dir().join("logs").join(format!(
                    "{}-{}-rep{}.log",
                    config.stem(),
                    v.key().replace([' ', '(', ')'], ""),
                    rep + 1
                ));
                let report = run_process(cmd, &log)?;
                let what = match failure(std::slice::from_ref(&report)) {
                    Some(f) => f,
                    None => metrics(&report)
                        .iter()
                        .map(|(k, x)| format!("{k} {x:.2}"))
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                eprintln!("      {:.0} s: {what}", t.elapsed().as_secs_f64());
                reports.entry(v).or_default().push(report);
            }
        }
        let summary = Summary::new(config.clone(), variants, reports);
        report_config(&summary, args, blas.as_ref())?;
    }
    // One chart with every configuration measured so far (this run's and
    // earlier runs' JSON files).
    let path = bench_dir().join("week1.svg");
    let docs = measured_docs();
    crate::bench_chart::draw(&chart_rows(&docs), &chart_caption(&docs), &path)?;
    println!(
        "chart of every configuration measured so far: {}",
        path.display()
    );
    eprintln!("bench done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Prints the table and writes the JSON, Markdown and SVG of one configuration.
fn report_config(s: &Summary, args: &Week1Args, blas: Option<&BlasLibs>) -> Result<()> {
    let cells = table_cells(s);
    let agree = token_agreement(s, Side::Reference, Side::MlxLm);
    let learner_agree = token_agreement(s, Side::Learner, Side::Reference);
    let mut agree_text = agree
        .map(|(same, n)| {
            format!("greedy tokens, reference vs mlx-lm: the first {same} of {n} agree")
        })
        .unwrap_or_default();
    if let Some((same, n)) = learner_agree {
        agree_text.push_str(&format!("; learner vs reference: the first {same} of {n}"));
    }
    println!(
        "\n{} (median (min-max) of {} interleaved runs; peak memory: MLX allocator peak, weights included)\n{}{agree_text}",
        s.config.label(),
        args.reps,
        render_text(&cells)
    );
    let dir = bench_dir();
    std::fs::create_dir_all(&dir)?;
    let stem = s.config.stem();
    let md = format!(
        "{}\n\nMedian (min-max) of {} interleaved runs; {} new tokens decoded after a {DECODE_PROMPT}-token prompt; \
         peak memory is MLX's allocator peak (weights included). {agree_text}.\n",
        render_markdown(&cells),
        args.reps,
        args.new_tokens
    );
    std::fs::write(dir.join(format!("{stem}.md")), md)?;

    let mut summary = serde_json::Map::new();
    for (v, m) in &s.stats {
        let metrics: serde_json::Map<String, Value> = m
            .iter()
            .map(|(k, st)| {
                (
                    k.clone(),
                    json!({ "median": st.median, "min": st.min, "max": st.max, "n": st.n }),
                )
            })
            .collect();
        summary.insert(v.key(), Value::Object(metrics));
    }
    let mut ratios = serde_json::Map::new();
    for (key, _, blas_kind, _) in rows(s) {
        let suffix = if blas_kind == BlasKind::Reference {
            "_reference_blas"
        } else {
            ""
        };
        if let Some(r) = ratio(
            s.get(Side::Reference, blas_kind, key),
            s.get(Side::MlxLm, blas_kind, key),
        ) {
            ratios.insert(format!("reference_over_mlx_lm.{key}{suffix}"), json!(r));
        }
        if let Some(r) = ratio(
            s.get(Side::Learner, blas_kind, key),
            s.get(Side::Reference, blas_kind, key),
        ) {
            ratios.insert(format!("learner_over_reference.{key}{suffix}"), json!(r));
        }
    }
    let runs: Vec<Value> = s
        .reports
        .iter()
        .flat_map(|(v, list)| {
            list.iter()
                .enumerate()
                .map(move |(i, r)| json!({ "variant": v.key(), "rep": i + 1, "report": r }))
        })
        .collect();
    let doc = json!({
        "benchmark": "week1",
        "date": utc_now(),
        "machine": machine(),
        "model": s.config.name,
        "model_dir": s.config.dir.display().to_string(),
        "dtype": s.config.dtype,
        "reps": args.reps,
        "prefill_lengths": PREFILL_LENGTHS,
        "decode_prompt_tokens": DECODE_PROMPT,
        "new_tokens": args.new_tokens,
        "blas": {
            "optimised": blas.map(|b| b.optimised.display().to_string()),
            "reference": blas.and_then(|b| b.reference.as_ref()).map(|p| p.display().to_string()),
        },
        "peak_memory": "mlx allocator peak (mlx_rs::memory::peak_memory / mx.get_peak_memory) after a 16-token warm-up and a reset; weights included",
        "learner": s.failure(Side::Learner),
        "summary": summary,
        "ratios": ratios,
        "token_agreement_reference_mlx_lm": agree.map(|(same, n)| json!({ "same_prefix": same, "of": n })),
        "token_agreement_learner_reference": learner_agree.map(|(same, n)| json!({ "same_prefix": same, "of": n })),
        "runs": runs,
    });
    let json_path = dir.join(format!("{stem}.json"));
    std::fs::write(&json_path, serde_json::to_string_pretty(&doc)? + "\n")?;
    let svg = dir.join(format!("{stem}.svg"));
    crate::bench_chart::draw(
        &chart_rows(std::slice::from_ref(&doc)),
        &chart_caption(std::slice::from_ref(&doc)),
        &svg,
    )?;
    println!(
        "wrote {}, {}, {}",
        json_path.display(),
        dir.join(format!("{stem}.md")).display(),
        svg.display()
    );
    Ok(())
}

/// The chart's data from the JSON documents of `report_config`: one row
/// per configuration, one panel per metric, one bar per variant.
fn chart_rows(docs: &[Value]) -> Vec<crate::bench_chart::Row> {
    use crate::bench_chart::{Bar, Panel, Row};
    let panels = [
        ("prefill_128_tok_s", "prefill 128 tok/s"),
        ("prefill_512_tok_s", "prefill 512 tok/s"),
        ("decode_tok_s", "decode tok/s"),
        ("peak_memory_gb", "peak MLX memory GB"),
    ];
    let variants = [
        ("mlx-lm", "mlx-lm"),
        ("reference", "reference"),
        ("learner", "learner"),
        ("mlx-lm (reference BLAS)", "mlx-lm (ref. BLAS)"),
        ("reference (reference BLAS)", "reference (ref. BLAS)"),
    ];
    docs.iter()
        .map(|doc| {
            let learner_failure = doc["learner"].as_str().map(str::to_string);
            let panels = panels
                .iter()
                .map(|(key, title)| {
                    let bars = variants
                        .iter()
                        .filter_map(|(variant, label)| {
                            let st = &doc["summary"][*variant][*key];
                            let value = match (
                                st["median"].as_f64(),
                                st["min"].as_f64(),
                                st["max"].as_f64(),
                            ) {
                                (Some(m), Some(lo), Some(hi)) => Some((m, lo, hi)),
                                _ => None,
                            };
                            // Memory is compared on the full runs only.
                            if *key == "peak_memory_gb" && variant.contains("BLAS") {
                                return None;
                            }
                            let note = (*variant == "learner")
                                .then(|| learner_failure.clone())
                                .flatten();
                            // A variant without this metric and nothing to say is left out.
                            (value.is_some() || note.is_some()).then(|| Bar {
                                label: label.to_string(),
                                value,
                                note,
                            })
                        })
                        .collect();
                    let title = match (*key, doc["new_tokens"].as_u64()) {
                        ("decode_tok_s", Some(n)) => format!("{title} ({n} new)"),
                        _ => title.to_string(),
                    };
                    Panel { title, bars }
                })
                .collect();
            Row {
                title: format!(
                    "{} {}",
                    doc["model"].as_str().unwrap_or("?"),
                    doc["dtype"].as_str().unwrap_or("?")
                ),
                panels,
            }
        })
        .collect()
}

/// The chart's caption: what was measured, on what, when.
fn chart_caption(docs: &[Value]) -> String {
    let Some(first) = docs.first() else {
        return String::new();
    };
    let m = &first["machine"];
    let reps: Vec<String> = docs
        .iter()
        .filter_map(|d| d["reps"].as_u64())
        .map(|r| r.to_string())
        .collect();
    let mut reps_text = reps.clone();
    reps_text.dedup();
    format!(
        "tiny-llm-rs week 1 (no KV cache) vs mlx-lm, same weights and token ids; median and min-max of {} runs; \
         {} {}, {} cores ({}), MLX CPU backend, OpenBLAS (light bars: the wheel's reference BLAS); {}",
        reps_text.join("/"),
        m["os"].as_str().unwrap_or("?"),
        m["arch"].as_str().unwrap_or("?"),
        m["cores"].as_u64().unwrap_or(0),
        m["cpu"].as_str().unwrap_or("?"),
        first["date"].as_str().unwrap_or("?"),
    )
}

/// Every `target/bench/week1-*.json`, the issue's configurations first.
fn measured_docs() -> Vec<Value> {
    let dir = bench_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    let n = p.file_name().unwrap_or_default().to_string_lossy();
                    n.starts_with("week1-") && n.ends_with(".json")
                })
                .collect()
        })
        .unwrap_or_default();
    let rank = |p: &PathBuf| {
        let n = p
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let i = DEFAULT_CONFIGS
            .iter()
            .position(|(m, d)| n == format!("week1-{m}-{d}.json"))
            .unwrap_or(DEFAULT_CONFIGS.len());
        (i, n)
    };
    files.sort_by_key(rank);
    files
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .filter_map(|t| serde_json::from_str(&t).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ranges() {
        let s = stat(&[3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(stat(&[1.0, 4.0]).unwrap().median, 2.5);
        assert!(stat(&[]).is_none());
    }

    #[test]
    fn metrics_from_a_report() {
        let r = json!({
            "status": "ok",
            "prefill": [{"tokens": 128, "seconds": 2.0}],
            "decode": {"new_tokens": 5, "decode_seconds": 2.0, "ttft_seconds": 0.5},
            "peak_memory_bytes": 2.0e9,
        });
        let m: BTreeMap<String, f64> = metrics(&r).into_iter().collect();
        assert_eq!(m["prefill_128_tok_s"], 64.0);
        assert_eq!(m["decode_tok_s"], 2.0);
        assert_eq!(m["ttft_s"], 0.5);
        assert_eq!(m["peak_memory_gb"], 2.0);
    }

    #[test]
    fn a_learner_that_is_not_done_reads_not_implemented() {
        let r = json!({"status": "not_implemented", "day": 2});
        assert_eq!(failure(&[r]).as_deref(), Some("not implemented (day 2)"));
        assert_eq!(failure(&[json!({"status": "ok"})]), None);
    }

    #[test]
    fn default_configurations_are_the_issues() {
        let args = Week1Args {
            model: None,
            dtype: None,
            reps: 3,
            new_tokens: 128,
            no_blas_compare: false,
            redraw: false,
            device: None,
            no_build: false,
        };
        assert_eq!(configs(&args).unwrap().len(), 3);
        let one = Week1Args {
            dtype: Some("bf16".into()),
            ..args
        };
        assert_eq!(
            configs(&one).unwrap(),
            vec![(models::DEFAULT_MODEL.to_string(), "bf16".to_string())]
        );
    }

    #[test]
    fn utc_dates_are_civil() {
        let d = utc_now();
        assert!(
            d.len() == 20 && d.ends_with("UTC") && d.starts_with("20"),
            "{d}"
        );
    }

    #[test]
    fn chart_rows_come_from_the_json_documents() {
        let doc = json!({
            "model": "m", "dtype": "f32", "learner": "not implemented (day 3)",
            "summary": {
                "mlx-lm": {"prefill_128_tok_s": {"median": 2.0, "min": 1.0, "max": 3.0}},
                "reference": {"prefill_128_tok_s": {"median": 4.0, "min": 4.0, "max": 4.0}},
            },
        });
        let rows = chart_rows(&[doc]);
        assert_eq!(rows[0].title, "m f32");
        let p = &rows[0].panels[0];
        let labels: Vec<&str> = p.bars.iter().map(|b| b.label.as_str()).collect();
        assert_eq!(labels, ["mlx-lm", "reference", "learner"]);
        assert_eq!(p.bars[0].value, Some((2.0, 1.0, 3.0)));
        assert_eq!(p.bars[2].note.as_deref(), Some("not implemented (day 3)"));
    }

    #[test]
    fn the_script_exists() {
        assert!(script().is_file());
    }
}
