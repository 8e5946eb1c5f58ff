//! `cargo xtask run [--solution] [--model M] [--quant 4|8|none] [--week 1|2]
//! [...] "PROMPT"` (or `--messages FILE.json`): one answer from a real
//! model, through the week-2 path (KV cache, quantized layers) by default,
//! or the week-1 path while day 8 is not implemented (or with `--week 1`).
//! `cargo xtask chat` ([`crate::chat`]) shares everything here.
//!
//! Provisions MLX (`setup`) and the model (`models fetch`, for the default
//! model or a name it knows, and its 4-bit or 8-bit copy under `--quant`),
//! then builds and starts `tiny-llm-chat`
//! (`cli/`, release profile) with the learner's crate, or with the reference
//! under `--solution`. Its exit code is passed on: 3 means the learner's code
//! reached a `todo!()` (it prints which day and that day's hint).

use crate::{models, setup, util};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The options `run` and `chat` share: which code, which model, sampling.
#[derive(clap::Args, Debug)]
pub struct ModelArgs {
    /// Chat through the reference solutions instead of your code.
    #[arg(long)]
    pub solution: bool,
    /// A model name from `cargo xtask models list`, a model directory, or a
    /// Hugging Face id [default: qwen2.5-coder-0.5b].
    #[arg(long)]
    pub model: Option<String>,
    /// 4 or 8: the model's 4-bit or 8-bit copy (groups of 64, made by
    /// `models fetch`); none: the model as given (quantized when its
    /// config.json says so) [default: none].
    #[arg(long, value_parser = ["4", "8", "none"])]
    pub quant: Option<String>,
    /// 2: the KV cache (day 8) and quantized layers (days 9-10); 1: the
    /// week-1 path [default: 2, or 1 with a note while day 8 is not done].
    #[arg(long, value_parser = ["1", "2"])]
    pub week: Option<String>,
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
    #[arg(long, value_parser = crate::device::arg_parser())]
    pub device: Option<crate::device::Device>,
    /// Days taken from the reference while running your code, e.g. `1-6`.
    #[arg(long = "ref", value_name = "DAYS")]
    pub reference: Option<String>,
    /// Print the prompt the chat template made before answering.
    #[arg(long)]
    pub show_prompt: bool,
    /// Keep day 14's prompt cache in FILE (safetensors): loaded when it was
    /// saved for this model and dtype, saved after every answer.
    #[arg(long, value_name = "FILE")]
    pub prompt_cache: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A whole conversation: a JSON list of {"role", "content"} messages as
    /// the OpenAI chat API writes them (or {"messages": [...]}); the model
    /// answers it.
    #[arg(long, value_name = "FILE.json", conflicts_with_all = ["prompt", "system"])]
    pub messages: Option<PathBuf>,
    /// The user's message.
    #[arg(required_unless_present = "messages")]
    pub prompt: Option<String>,
}

/// `path` as seen from the directory `xtask` was started in: the chat
/// program runs from the project root, so a relative path is made absolute.
fn absolute(path: &Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// The arguments for `tiny-llm-chat`, with `--model` replaced by the
/// converted directory when it names a model `models fetch` knows (and a
/// directory made absolute), then `tail` (the mode: a prompt, --messages or
/// --chat).
fn chat_args(args: &ModelArgs, model_dir: Option<String>, tail: Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut opt = |name: &str, value: Option<String>| {
        // `--name=value`, so that a value like `-1` is not taken for a flag
        if let Some(v) = value {
            out.push(format!("--{name}={v}"));
        }
    };
    let model = args.model.as_ref().map(|m| {
        if Path::new(m).is_dir() {
            absolute(Path::new(m))
        } else {
            m.clone()
        }
    });
    opt("model", model_dir.or(model));
    opt("quant", args.quant.clone());
    opt("week", args.week.clone());
    opt("max-tokens", args.max_tokens.map(|v| v.to_string()));
    opt("temp", args.temp.map(|v| v.to_string()));
    opt("top-p", args.top_p.map(|v| v.to_string()));
    opt("top-k", args.top_k.map(|v| v.to_string()));
    opt("seed", args.seed.map(|v| v.to_string()));
    opt("dtype", args.dtype.clone());
    opt("system", args.system.clone());
    opt("device", args.device.map(|d| d.as_str().to_string()));
    opt("prompt-cache", args.prompt_cache.as_deref().map(absolute));
    if args.show_prompt {
        out.push("--show-prompt".into());
    }
    out.extend(tail);
    out
}

/// The bits `--quant` asks for (`None` for `none` or no `--quant`).
fn quant_bits(args: &ModelArgs) -> Option<u32> {
    args.quant.as_deref().and_then(|q| q.parse().ok())
}

/// The model (and copy) `models fetch` must provide for `args`: `--model`
/// when it names a model or a copy it knows (the default model without
/// `--model`), its `--quant` copy when asked; `None` for a directory or a
/// Hugging Face id (the chat program resolves those, and finds their
/// `--quant` copy beside them).
///
/// Errors: a copy's name with a `--quant` that disagrees
/// (`--model qwen2.5-coder-0.5b-4bit --quant 8`).
fn fetched_model(args: &ModelArgs) -> Result<Option<(&'static models::ModelInfo, Option<u32>)>> {
    let spec = args.model.as_deref().unwrap_or(models::DEFAULT_MODEL);
    let Some((m, named_bits)) = models::parse_name(spec) else {
        return Ok(None);
    };
    let bits = match (named_bits, quant_bits(args)) {
        (Some(n), Some(q)) if n != q => bail!(
            "--model {spec} is the {n}-bit copy, and --quant {q} asks for {q} bits: use \
             --model {} --quant {q}",
            m.name
        ),
        (n, q) => n.or(q),
    };
    Ok(Some((m, bits)))
}

/// What `run` asks of the chat program: the conversation file, or the prompt.
fn run_tail(args: &RunArgs) -> Vec<String> {
    match (&args.messages, &args.prompt) {
        (Some(file), _) => vec![format!("--messages={}", absolute(file))],
        (None, prompt) => vec!["--".into(), prompt.clone().unwrap_or_default()],
    }
}

/// `cargo xtask run`; exits the process with the chat's code when it fails.
pub fn run(args: &RunArgs) -> Result<()> {
    launch(&args.model, run_tail(args))
}

/// Builds and starts `tiny-llm-chat` with `args` and then `tail`; exits the
/// process with its code when it fails (stdin, stdout and stderr are the
/// terminal's, so `chat` reads the learner's lines).
pub fn launch(args: &ModelArgs, tail: Vec<String>) -> Result<()> {
    setup::run(&Default::default())?;
    if args.device == Some(crate::device::Device::Gpu) {
        crate::device::resolve(args.device)?;
    }
    let model_dir = match fetched_model(args)? {
        Some((m, bits)) => Some(models::ensure_variant(m, bits)?.display().to_string()),
        None => None,
    };
    eprintln!(
        "building tiny-llm-chat with {} (release; the first build takes 5-10 minutes on 2 cores) ...",
        if args.solution {
            "the reference solutions"
        } else {
            "your tiny-llm (exercises/)"
        }
    );
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(util::project_root())
        .args(["run", "--release", "-p", "tiny-llm-cli"]);
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
    cmd.arg("--").args(chat_args(args, model_dir, tail));
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
            "--show-prompt",
            "--",
            "-hi",
        ]);
        let args = chat_args(&cli.run.model, Some("/m".into()), run_tail(&cli.run));
        let want = [
            "--model=/m",
            "--temp=-1",
            "--top-k=40",
            "--seed=9",
            "--dtype=bf16",
            "--show-prompt",
            "--",
            "-hi",
        ];
        assert_eq!(args, want);
        let cli = Cli::parse_from(["run", "--model", "Qwen/Qwen2-0.5B-Instruct-MLX", "hello"]);
        let args = chat_args(&cli.run.model, None, run_tail(&cli.run));
        assert_eq!(
            args,
            ["--model=Qwen/Qwen2-0.5B-Instruct-MLX", "--", "hello"]
        );
    }

    #[test]
    fn messages_files_and_model_directories_become_absolute() {
        let cli = Cli::parse_from([
            "run",
            "--model",
            "src",
            "--prompt-cache",
            "c.safetensors",
            "--messages",
            "chat.json",
        ]);
        let here = std::env::current_dir().unwrap();
        let args = chat_args(&cli.run.model, None, run_tail(&cli.run));
        assert_eq!(
            args,
            [
                format!("--model={}", here.join("src").display()),
                format!("--prompt-cache={}", here.join("c.safetensors").display()),
                format!("--messages={}", here.join("chat.json").display()),
            ]
        );
    }

    #[test]
    fn quant_and_week_pass_through_and_pick_the_copy_to_fetch() {
        let cli = Cli::parse_from(["run", "--quant", "4", "--week", "1", "hi"]);
        let args = chat_args(&cli.run.model, Some("/m-4bit".into()), run_tail(&cli.run));
        assert_eq!(
            args,
            ["--model=/m-4bit", "--quant=4", "--week=1", "--", "hi"]
        );
        let (m, bits) = fetched_model(&cli.run.model).unwrap().unwrap();
        assert_eq!((m.name, bits), (models::DEFAULT_MODEL, Some(4)));

        let fetched = |argv: &[&str]| {
            let cli = Cli::parse_from(argv);
            fetched_model(&cli.run.model).map(|f| f.map(|(m, b)| (m.name, b)))
        };
        assert_eq!(
            fetched(&["run", "hi"]).unwrap(),
            Some((models::DEFAULT_MODEL, None))
        );
        assert_eq!(
            fetched(&["run", "--quant", "none", "hi"]).unwrap(),
            Some((models::DEFAULT_MODEL, None))
        );
        assert_eq!(
            fetched(&["run", "--model", "smollm2-135m", "--quant", "8", "hi"]).unwrap(),
            Some(("smollm2-135m", Some(8)))
        );
        // a copy by name, with or without the same --quant
        assert_eq!(
            fetched(&["run", "--model", "smollm2-135m-4bit", "hi"]).unwrap(),
            Some(("smollm2-135m", Some(4)))
        );
        assert_eq!(
            fetched(&["run", "--model", "smollm2-135m-4bit", "--quant", "4", "hi"]).unwrap(),
            Some(("smollm2-135m", Some(4)))
        );
        let e = fetched(&["run", "--model", "smollm2-135m-4bit", "--quant", "8", "hi"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--model smollm2-135m --quant 8"), "{e}");
        // a directory or a Hub id: the chat program resolves it
        assert_eq!(
            fetched(&[
                "run",
                "--model",
                "Qwen/Qwen2-0.5B-Instruct-MLX",
                "--quant",
                "4",
                "hi"
            ])
            .unwrap(),
            None
        );
        // only 4, 8, none; only 1, 2
        assert!(Cli::try_parse_from(["run", "--quant", "3", "hi"]).is_err());
        assert!(Cli::try_parse_from(["run", "--week", "3", "hi"]).is_err());
    }

    #[test]
    fn a_prompt_or_a_messages_file_is_required_and_not_both() {
        assert!(Cli::try_parse_from(["run"]).is_err());
        assert!(Cli::try_parse_from(["run", "--messages", "a.json", "hi"]).is_err());
        assert!(Cli::try_parse_from(["run", "--messages", "a.json", "--system", "s"]).is_err());
        assert!(Cli::try_parse_from(["run", "--messages", "a.json"]).is_ok());
    }
}
