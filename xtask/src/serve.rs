//! `cargo xtask serve [--solution] [--model M] [--port P]`: the
//! OpenAI-compatible server (`server/`, day 18) over the learner's crate, or
//! the reference with `--solution`, on the offline default model (or `M`:
//! a name from `models list`, or a model directory). Binds 127.0.0.1.
//!
//! Built in the dev profile (the kit's crates are optimised there, see the
//! workspace's Cargo.toml), so it shares the build of `check`.
//!
//! `cargo xtask serve-test [--model M]`: the reference server on a free port
//! of 127.0.0.1, checked by the official `openai` Python client and `curl -N`
//! (`xtask/python/openai_client_test.py`); the server is always stopped.

use crate::{models, setup, util, venv};
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// `serve`'s options.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Serve the reference solutions instead of your code.
    #[arg(long)]
    pub solution: bool,
    /// A model name from `cargo xtask models list` or a model directory
    /// [default: qwen2.5-coder-0.5b].
    #[arg(long)]
    pub model: Option<String>,
    /// Port on 127.0.0.1 (0: any free port; the server prints its address).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
}

/// The model directory `--model` names (fetched when it is a known name).
pub fn model_dir(model: Option<&str>) -> Result<PathBuf> {
    let spec = model.unwrap_or(models::DEFAULT_MODEL);
    match models::parse_name(spec) {
        Some((m, bits)) => models::ensure_variant(m, bits),
        None => {
            let dir = PathBuf::from(spec);
            anyhow::ensure!(
                dir.join("config.json").is_file(),
                "--model {spec}: not a model name (`cargo xtask models list`) nor a model directory"
            );
            std::path::absolute(&dir).context("resolving --model")
        }
    }
}

/// The `cargo run` command that starts the server on `port` (127.0.0.1).
pub fn command(solution: bool, dir: &Path, port: u16) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(util::project_root())
        .args(["run", "-q", "-p", "tiny-llm-server"]);
    if solution {
        cmd.args(["--no-default-features", "--features", "solutions"]);
    }
    cmd.arg("--").arg("--model").arg(dir).args([
        "--host",
        "127.0.0.1",
        "--port",
        &port.to_string(),
    ]);
    cmd
}

/// `cargo xtask serve`: runs until Ctrl-C.
pub fn run(args: &ServeArgs) -> Result<()> {
    setup::run(&Default::default())?;
    let dir = model_dir(args.model.as_deref())?;
    eprintln!(
        "building tiny-llm-server with {} ...",
        if args.solution {
            "the reference solutions"
        } else {
            "your tiny-llm (exercises/)"
        }
    );
    let status = command(args.solution, &dir, args.port)
        .status()
        .context("starting cargo run -p tiny-llm-server")?;
    if !status.success() {
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

/// `serve-test`'s options.
#[derive(clap::Args, Debug)]
pub struct ServeTestArgs {
    /// A model name from `cargo xtask models list` or a model directory
    /// [default: qwen2.5-coder-0.5b].
    #[arg(long)]
    pub model: Option<String>,
}

/// Stops the server however the test ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `target/venv` with the pinned `openai` client
/// (`xtask/python/requirements-openai.txt`, its own stamp).
fn openai_python() -> Result<PathBuf> {
    let python = venv::ensure()?;
    let req_path = util::project_root()
        .join("xtask")
        .join("python")
        .join("requirements-openai.txt");
    let req =
        std::fs::read(&req_path).with_context(|| format!("reading {}", req_path.display()))?;
    let want = util::sha256_bytes(&req);
    let stamp = util::target_dir().join("venv-openai.stamp");
    if util::read_stamp(&stamp).as_deref() != Some(want.as_str()) {
        let step = util::Step::start("the openai client in target/venv");
        util::run_logged(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                ])
                .arg(&req_path),
            &util::target_dir()
                .join("mlx")
                .join("logs")
                .join("venv-openai.log"),
        )?;
        util::write_stamp(&stamp, &want)?;
        step.done();
    }
    Ok(python)
}

/// `cargo xtask serve-test`: true when every check passed.
pub fn test(args: &ServeTestArgs) -> Result<bool> {
    setup::run(&Default::default())?;
    let python = openai_python()?;
    let dir = model_dir(args.model.as_deref())?;
    let model_id = dir
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .context("the model directory has no name")?;
    // Build first, then run the binary itself, so that stopping it stops
    // the server (not a `cargo run` that would leave it behind).
    let built = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(util::project_root())
        .args([
            "build",
            "-q",
            "-p",
            "tiny-llm-server",
            "--no-default-features",
            "--features",
            "solutions",
        ])
        .status()
        .context("cargo build -p tiny-llm-server")?;
    if !built.success() {
        bail!("tiny-llm-server did not build");
    }
    let exe = util::target_dir().join("debug").join("tiny-llm-server");
    // Port 0: the kernel picks a free port; the server prints it.
    let mut child = Command::new(&exe)
        .arg("--model")
        .arg(&dir)
        // One sequence at a time: the disconnect check relies on it.
        .args(["--host", "127.0.0.1", "--port", "0", "--max-running", "1"])
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", exe.display()))?;
    let stdout = child.stdout.take().context("the server's stdout")?;
    let server = Server(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
            if let Some(url) = line.strip_prefix("tiny-llm-server listening on ") {
                let _ = tx.send(url.trim().to_string());
            }
        }
    });
    let started = Instant::now();
    let base = rx
        .recv_timeout(Duration::from_secs(600))
        .context("the server did not start listening within 600 s")?;
    eprintln!(
        "server up at {base} in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let status = Command::new(&python)
        .arg(
            util::project_root()
                .join("xtask")
                .join("python")
                .join("openai_client_test.py"),
        )
        .env("BASE_URL", &base)
        .env("MODEL", &model_id)
        .status()
        .context("running openai_client_test.py")?;
    drop(server);
    Ok(status.success())
}
