//! What is measured: the configurations (model, dtype, device), the sides
//! (mlx-lm, reference, learner) and their variants, and where files go.
use super::*;

/// One model and dtype.
#[derive(Debug, Clone)]
pub(super) struct Config {
    /// Short name, used in file names.
    pub(super) name: String,
    pub(super) dir: PathBuf,
    pub(super) dtype: String,
    pub(super) device: crate::device::Device,
}

impl Config {
    pub(super) fn label(&self) -> String {
        format!(
            "{} {} on the {}",
            self.name,
            self.dtype,
            self.device.as_str()
        )
    }
    pub(super) fn stem(&self) -> String {
        match self.device {
            crate::device::Device::Cpu => format!("week1-{}-{}", self.name, self.dtype),
            crate::device::Device::Gpu => format!("week1-{}-{}-gpu", self.name, self.dtype),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Side {
    MlxLm,
    Reference,
    Learner,
    /// Week 2 only: llama.cpp's `llama-bench` on a GGUF of the same weights.
    LlamaCpp,
}

impl Side {
    pub(super) fn name(self) -> &'static str {
        match self {
            Side::MlxLm => "mlx-lm",
            Side::Reference => "reference",
            Side::Learner => "learner",
            Side::LlamaCpp => "llama.cpp",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum BlasKind {
    Optimised,
    Reference,
}

/// One measured process kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Variant {
    pub(super) side: Side,
    pub(super) blas: BlasKind,
    /// Decode as well as prefill (the reference-BLAS variants only prefill).
    pub(super) decode: bool,
}

impl Variant {
    pub(super) fn key(&self) -> String {
        match self.blas {
            BlasKind::Optimised => self.side.name().to_string(),
            BlasKind::Reference => format!("{} (reference BLAS)", self.side.name()),
        }
    }
}

pub(super) fn bench_dir() -> PathBuf {
    util::target_dir().join("bench")
}

pub(super) fn script() -> PathBuf {
    util::project_root()
        .join("xtask")
        .join("python")
        .join("bench_mlx_lm.py")
}

pub(super) fn configs(args: &Week1Args) -> Result<Vec<(String, String)>> {
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
pub(super) fn resolve(spec: &str, dtype: &str) -> Result<Config> {
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
