//! `cargo xtask serve [--solution] [--model M] [--port P]`: the
//! OpenAI-compatible server (`server/`, day 18) over the learner's crate, or
//! the reference with `--solution`, on the offline default model (or `M`:
//! a name from `models list`, or a model directory). Binds 127.0.0.1.
//!
//! Built in the dev profile (the kit's crates are optimised there, see the
//! workspace's Cargo.toml), so it shares the build of `check`.

use crate::{models, setup, util};
use anyhow::{Context, Result};
use std::path::PathBuf;
use std::process::Command;

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
pub fn command(solution: bool, dir: &std::path::Path, port: u16) -> Command {
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
