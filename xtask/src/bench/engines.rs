//! Running the engines: building `tiny-llm-bench` for each side, the
//! prompt ids, and the commands of one measured process (our binaries and
//! the mlx-lm baseline script).
use super::*;

/// What building one side of `tiny-llm-bench` gave.
pub(super) enum Built {
    Binary(PathBuf),
    /// The learner's crate does not compile: the first error.
    DoesNotCompile(String),
}

/// `cargo build --release -p tiny-llm-bench` (with `solutions` for the
/// reference), then copies the binary aside (both builds write the same path).
pub(super) fn build(side: Side) -> Result<Built> {
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
pub(super) fn prebuilt(side: Side) -> Result<Built> {
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
pub(super) fn prompt_ids(reference_bin: &Path, config: &Config) -> Result<PathBuf> {
    let longest = PREFILL_LENGTHS
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(DECODE_PROMPT);
    prompt_ids_n(reference_bin, config, longest)
}

/// Writes the first `longest` ids of the benchmark text for `config`'s
/// model (`tiny-llm-bench prompt`); returns the file.
pub(super) fn prompt_ids_n(
    reference_bin: &Path,
    config: &Config,
    longest: usize,
) -> Result<PathBuf> {
    let out = bench_dir().join(format!("prompt-{}-{longest}.json", config.name));
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
/// and to `log`; returns the JSON report it printed, with the child's peak
/// RSS added (`child_max_rss_bytes`, Linux).
pub(super) fn run_process(mut cmd: Command, log: &Path) -> Result<Value> {
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
    let mut out_pipe = child.stdout.take().expect("piped");
    let out_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut out_pipe, &mut s);
        s
    });
    let finished = wait_rss(child)?;
    let err_lines = echo.join().unwrap_or_default();
    let stdout = out_reader.join().unwrap_or_default();
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
        Some(Ok(mut v)) => {
            // The child's peak resident set, whatever the engine.
            if let Some(rss) = finished.max_rss_bytes {
                v["child_max_rss_bytes"] = json!(rss);
            }
            Ok(v)
        }
        _ => {
            let tail: Vec<&String> = err_lines.iter().rev().take(8).collect();
            let tail: Vec<&str> = tail.into_iter().rev().map(String::as_str).collect();
            Ok(json!({
                "status": "error",
                "message": format!("exited with {} and no report; {}", finished.status, tail.join(" | ")),
            }))
        }
    }
}

/// The command for one variant of one configuration.
pub(super) fn command(
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
        .env(tiny_llm_course::DEVICE_ENV, config.device.as_str());
    if config.device == crate::device::Device::Cpu {
        if let Some(lib) = blas.and_then(|b| b.path(v.blas)) {
            cmd.env("LD_PRELOAD", lib);
        }
    }
    cmd
}
