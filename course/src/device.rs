//! Device and dtype names, as the command lines spell them (`--device
//! cpu|gpu`, `--dtype f32|f16|bf16`) and as `TINY_LLM_DEVICE` carries the
//! device from `cargo xtask` to the programs it starts. The MLX side (making
//! the device MLX's default, the `mlx_rs::Dtype` of a [`DType`]) lives in
//! `tiny_llm_common::device`; this crate has no MLX.

use crate::CourseError;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The variable that tells a program (grader test, chat, bench) its device:
/// `gpu` or `cpu`; unset means the program's own default.
pub const DEVICE_ENV: &str = "TINY_LLM_DEVICE";

/// An MLX device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    Cpu,
    Gpu,
}

impl Device {
    /// Every device, in the order `--help` lists them.
    pub const ALL: [Device; 2] = [Device::Cpu, Device::Gpu];
    /// Their names: `cpu`, `gpu`.
    pub const NAMES: [&'static str; 2] = ["cpu", "gpu"];

    /// `cpu` or `gpu`.
    pub fn as_str(self) -> &'static str {
        match self {
            Device::Cpu => "cpu",
            Device::Gpu => "gpu",
        }
    }

    /// The device `TINY_LLM_DEVICE` names; `Ok(None)` when it is unset or
    /// empty, an error naming the variable when it is something else.
    pub fn from_env() -> Result<Option<Device>, CourseError> {
        match std::env::var(DEVICE_ENV) {
            Ok(v) if !v.trim().is_empty() => v.parse().map(Some).map_err(|e| match e {
                CourseError::BadName { got, expected, .. } => CourseError::BadName {
                    what: "device (in TINY_LLM_DEVICE)",
                    got,
                    expected,
                },
                other => other,
            }),
            _ => Ok(None),
        }
    }

    /// The device to use: the requested one, else the GPU when one is usable,
    /// else the CPU. Asking for the GPU where there is none is [`NoGpu`].
    pub fn choose(requested: Option<Device>, gpu_available: bool) -> Result<Device, NoGpu> {
        match requested {
            Some(Device::Cpu) => Ok(Device::Cpu),
            Some(Device::Gpu) if !gpu_available => Err(NoGpu),
            Some(Device::Gpu) => Ok(Device::Gpu),
            None if gpu_available => Ok(Device::Gpu),
            None => Ok(Device::Cpu),
        }
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Device {
    type Err = CourseError;
    /// `cpu` or `gpu` (any case, surrounding spaces ignored).
    fn from_str(s: &str) -> Result<Device, CourseError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Device::Cpu),
            "gpu" => Ok(Device::Gpu),
            _ => Err(CourseError::BadName {
                what: "device",
                got: s.to_string(),
                expected: "expected cpu or gpu".into(),
            }),
        }
    }
}

/// `--device gpu` on a machine without a usable GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoGpu;

impl fmt::Display for NoGpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no GPU is available: MLX here has no usable GPU backend (CPU-only MLX, or no NVIDIA device/driver). \
             On Linux with an NVIDIA GPU run `cargo xtask setup --backend cuda`; on a Mac the GPU is used by default. \
             Use `--device cpu` to run on the CPU."
        )
    }
}

impl std::error::Error for NoGpu {}

/// A floating-point dtype the course computes in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    F16,
    Bf16,
}

impl DType {
    /// Every dtype, in the order `--help` lists them.
    pub const ALL: [DType; 3] = [DType::F32, DType::F16, DType::Bf16];
    /// Their short names: `f32`, `f16`, `bf16`.
    pub const NAMES: [&'static str; 3] = ["f32", "f16", "bf16"];

    /// `f32`, `f16` or `bf16`: the name course.toml and the command lines use.
    pub fn as_str(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::Bf16 => "bf16",
        }
    }

    /// `float32`, `float16` or `bfloat16`: the name numpy, MLX's Python API
    /// and mlx-lm use.
    pub fn long_name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F16 => "float16",
            DType::Bf16 => "bfloat16",
        }
    }

    /// The default for running a model on `device`: f32 on the CPU (MLX's
    /// f16/bf16 CPU kernels are many times slower), bf16 on a GPU.
    pub fn default_for(device: Device) -> DType {
        match device {
            Device::Cpu => DType::F32,
            Device::Gpu => DType::Bf16,
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DType {
    type Err = CourseError;
    /// `f32`/`float32`, `f16`/`float16` or `bf16`/`bfloat16` (any case).
    fn from_str(s: &str) -> Result<DType, CourseError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(DType::F32),
            "f16" | "float16" => Ok(DType::F16),
            "bf16" | "bfloat16" => Ok(DType::Bf16),
            _ => Err(CourseError::BadName {
                what: "dtype",
                got: s.to_string(),
                expected: "expected f32, f16 or bf16 (or float32, float16, bfloat16)".into(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_long_names_parse() {
        for d in Device::ALL {
            assert_eq!(d.as_str().parse::<Device>().unwrap(), d);
        }
        for t in DType::ALL {
            assert_eq!(t.as_str().parse::<DType>().unwrap(), t);
            assert_eq!(t.long_name().parse::<DType>().unwrap(), t);
        }
        assert_eq!(" GPU ".parse::<Device>().unwrap(), Device::Gpu);
        assert_eq!("BFloat16".parse::<DType>().unwrap(), DType::Bf16);
        assert_eq!(Device::NAMES, Device::ALL.map(Device::as_str));
        assert_eq!(DType::NAMES, DType::ALL.map(DType::as_str));
    }

    #[test]
    fn bad_names_say_what_is_expected() {
        let e = "int8".parse::<DType>().unwrap_err().to_string();
        assert_eq!(
            e,
            "`int8` is not a dtype; expected f32, f16 or bf16 (or float32, float16, bfloat16)"
        );
        let e = "tpu".parse::<Device>().unwrap_err().to_string();
        assert_eq!(e, "`tpu` is not a device; expected cpu or gpu");
    }

    #[test]
    fn choose_prefers_the_request_then_the_gpu() {
        assert_eq!(Device::choose(None, true), Ok(Device::Gpu));
        assert_eq!(Device::choose(None, false), Ok(Device::Cpu));
        assert_eq!(Device::choose(Some(Device::Cpu), true), Ok(Device::Cpu));
        assert_eq!(Device::choose(Some(Device::Gpu), true), Ok(Device::Gpu));
        assert_eq!(Device::choose(Some(Device::Gpu), false), Err(NoGpu));
        assert!(NoGpu.to_string().contains("--device cpu"));
    }

    #[test]
    fn default_dtype_follows_the_device() {
        assert_eq!(DType::default_for(Device::Cpu), DType::F32);
        assert_eq!(DType::default_for(Device::Gpu), DType::Bf16);
    }
}
