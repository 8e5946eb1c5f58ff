//! `cargo xtask run [--solution] [--model M] [...] "PROMPT"`: chat with a real
//! model through the week-1 path.
//!
//! Provisions MLX (`setup`) and the model (`models fetch`, for the default
//! model or a name it knows), then builds and starts `tiny-llm-chat`
//! (`cli/`, release profile) with the learner's crate, or with the reference
//! under `--solution`. Its exit code is passed on: 3 means the learner's code
//! reached a `todo!()` (it prints which day and that day's hint).

use crate::{models, setup, util};
use anyhow::{Context, Result};
use std::process::Command;

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Chat through the reference solutions instead of your code.
    #[arg(long)]
    pub solution: bool,
    /// A model name from `cargo xtask models list`, a model directory, or a
    /// Hugging Face id [default: qwen2.5-coder-0.5b].
    #[arg(long)]
    pub model: Option<String>,
    /// Most tokens to generate [default: 256].
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// Sampling temperature; 0 is greedy [default: 0].
    #[arg(long)]
    pub temp: Option<f32>,
    /// Nucleus sampling: keep the most likely tokens covering this probability.
    #[arg(long)]
    pub top_p: Option<f32>,
    /// Keep only the k most likely tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Seed of the sampler [default: 0].
    #[arg(long)]
    pub seed: Option<u64>,
    /// f32, f16 or bf16 [default: f32 on the CPU, bf16 on a GPU].
    #[arg(long)]
    pub dtype: Option<String>,
    /// A system message (the chat template's default otherwise).
    #[arg(long)]
    pub system: Option<String>,
    /// cpu or gpu [default: gpu when one is usable].
    #[arg(long, value_enum)]
    pub device: Option<crate::device::Device>,
    /// Days taken from the reference while running your code, e.g. `1-6`.
    #[arg(long = "ref", value_name = "DAYS")]
    pub reference: Option<String>,
    /// The user's message.
    pub prompt: String,
}

/// The arguments for `tiny-llm-chat`, with `--model` replaced by the
/// converted directory when it names a model `models fetch` knows.
fn chat_args(args: &RunArgs, model_dir: Option<String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut opt = |name: &str, value: Option<String>| {
        // `--name=value`, so that a value like `-1` is not taken for a flag
        if let Some(v) = value {
            out.push(format!("--{name}={v}"));
        }
    };
    opt("model", model_dir.or_else(|| args.model.clone()));
    opt("max-tokens", args.max_tokens.map(|v| v.to_string()));
    opt("temp", args.temp.map(|v| v.to_string()));
    opt("top-p", args.top_p.map(|v| v.to_string()));
    opt("top-k", args.top_k.map(|v| v.to_string()));
    opt("seed", args.seed.map(|v| v.to_string()));
    opt("dtype", args.dtype.clone());
    opt("system", args.system.clone());
    opt("device", args.device.map(|d| d.as_str().to_string()));
    out.push("--".into());
    out.push(args.prompt.clone());
    out
}

/// Runs the chat; exits the process with the chat's code when it fails.
pub fn run(args: &RunArgs) -> Result<()> {
    setup::run(&Default::default())?;
    if args.device == Some(crate::device::Device::Gpu) {
        crate::device::resolve(args.device)?;
    }
    // A name `models fetch` knows (or no --model): make sure it is converted.
    let known = match args.model.as_deref() {
        None => Some(models::DEFAULT_MODEL),
        Some(m) => models::MODELS.iter().map(|i| i.name).find(|&n| n == m),
    };
    let model_dir = match known {
        Some(name) => Some(models::ensure_model(name)?.display().to_string()),
        None => None,
    };
    eprintln!(
        "building tiny-llm-chat with {} (release; the first build takes a few minutes) ...",
        if args.solution {
            "the reference solutions"
        } else {
            "your tiny-llm (exercises/)"
        }
    );
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(util::project_root()).args([
        "run",
        "--quiet",
        "--release",
        "-p",
        "tiny-llm-cli",
    ]);
    if args.solution {
        cmd.args(["--no-default-features", "--features", "solutions"]);
    } else if let Some(spec) = &args.reference {
        let course = crate::course::Course::load(&util::project_root().join("course.toml"))?;
        let days = crate::check::parse_days(spec, &course)?;
        let features: Vec<String> = days
            .iter()
            .map(|d| format!("tiny-llm/ref-day{d}"))
            .collect();
        cmd.arg("--features").arg(features.join(","));
    }
    cmd.arg("--").args(chat_args(args, model_dir));
    let status = cmd.status().context("starting cargo run -p tiny-llm-cli")?;
    if !status.success() {
        // 3: not implemented yet (the chat said which day); 1: an error it
        // explained; 101: cargo could not build it (the compiler said why).
        std::process::exit(status.code().unwrap_or(1));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        run: RunArgs,
    }

    #[test]
    fn arguments_pass_through() {
        let cli = Cli::parse_from([
            "run",
            "--temp=-1",
            "--top-k",
            "40",
            "--seed",
            "9",
            "--dtype",
            "bf16",
            "--",
            "-hi",
        ]);
        let args = chat_args(&cli.run, Some("/m".into()));
        let want = [
            "--model=/m",
            "--temp=-1",
            "--top-k=40",
            "--seed=9",
            "--dtype=bf16",
            "--",
            "-hi",
        ];
        assert_eq!(args, want);
        let cli = Cli::parse_from(["run", "--model", "Qwen/Qwen2-0.5B-Instruct-MLX", "hello"]);
        let args = chat_args(&cli.run, None);
        assert_eq!(
            args,
            ["--model=Qwen/Qwen2-0.5B-Instruct-MLX", "--", "hello"]
        );
    }
}
