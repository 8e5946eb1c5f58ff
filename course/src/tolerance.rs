//! Tolerances: course.toml's one table of defaults and each day's overrides.
//!
//! ```toml
//! [tolerance.cpu]            # element-wise checks on the CPU
//! f32 = { rtol = 1e-5, atol = 1e-6, worst_abs = 3e-7, worst_rel = 2e-6 }
//! f16 = { .. }
//! bf16 = { .. }
//! [tolerance.gpu]            # the same on a GPU (f32 matmuls run as TF32)
//! [tolerance.logprobs_cpu]   # whole-model log-probabilities (logits - logsumexp)
//! [tolerance.logprobs_gpu]
//!
//! [[day]]
//! ...
//! [day.tolerance]            # this day's element-wise overrides, CPU
//! bf16 = { rtol = 5e-2, atol = 3e-2 }
//! [day.tolerance_gpu]        # and on a GPU
//! ```
//!
//! An element passes when `|got - expected| <= atol + rtol * |expected|`
//! (the `numpy.allclose` rule). The kit's course.toml has every table with
//! `f32`, `f16` and `bf16` (a test checks); a course without them (a test
//! course) loads, and asking it for a missing default is an error. Keys other than `rtol` and `atol` (the measured `worst_abs`, `worst_rel`,
//! or anything a later format adds) are kept where known and otherwise
//! ignored.

use crate::{Course, CourseError, DType, Device};
use serde::Deserialize;
use std::collections::BTreeMap;

/// One tolerance: `|got - expected| <= atol + rtol * |expected|`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
pub struct Tol {
    pub rtol: f64,
    pub atol: f64,
    /// The reference's measured worst absolute error (informational).
    #[serde(default)]
    pub worst_abs: Option<f64>,
    /// The reference's measured worst relative error (informational).
    #[serde(default)]
    pub worst_rel: Option<f64>,
}

impl Tol {
    /// A tolerance without measurements.
    pub fn new(rtol: f64, atol: f64) -> Tol {
        Tol {
            rtol,
            atol,
            worst_abs: None,
            worst_rel: None,
        }
    }

    /// Whether `got` passes against a finite `expected`.
    pub fn allows(&self, got: f64, expected: f64) -> bool {
        (got - expected).abs() <= self.atol + self.rtol * expected.abs()
    }

    /// The looser of two tolerances, element by element (no measurements).
    pub fn max(self, other: Tol) -> Tol {
        Tol::new(self.rtol.max(other.rtol), self.atol.max(other.atol))
    }
}

/// What is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Tensors element by element (`[tolerance.cpu]` / `[tolerance.gpu]`,
    /// overridable per day).
    Elementwise,
    /// Whole-model log-probabilities (`[tolerance.logprobs_cpu]` /
    /// `[tolerance.logprobs_gpu]`; no per-day overrides).
    Logprobs,
}

/// course.toml's `[tolerance.*]` tables, by dtype.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Tolerances {
    #[serde(default)]
    pub cpu: BTreeMap<DType, Tol>,
    #[serde(default)]
    pub gpu: BTreeMap<DType, Tol>,
    #[serde(default)]
    pub logprobs_cpu: BTreeMap<DType, Tol>,
    #[serde(default)]
    pub logprobs_gpu: BTreeMap<DType, Tol>,
}

impl Tolerances {
    fn tables(&self) -> [(&'static str, &BTreeMap<DType, Tol>); 4] {
        [
            ("cpu", &self.cpu),
            ("gpu", &self.gpu),
            ("logprobs_cpu", &self.logprobs_cpu),
            ("logprobs_gpu", &self.logprobs_gpu),
        ]
    }

    /// The default for `kind` on `device` in `dtype`; an error naming the
    /// table when course.toml lacks it.
    pub fn default_for(
        &self,
        kind: Kind,
        device: Device,
        dtype: DType,
    ) -> Result<Tol, CourseError> {
        let name = match (kind, device) {
            (Kind::Elementwise, Device::Cpu) => "cpu",
            (Kind::Elementwise, Device::Gpu) => "gpu",
            (Kind::Logprobs, Device::Cpu) => "logprobs_cpu",
            (Kind::Logprobs, Device::Gpu) => "logprobs_gpu",
        };
        let table = self.tables().into_iter().find(|t| t.0 == name).map(|t| t.1);
        table.and_then(|t| t.get(&dtype)).copied().ok_or_else(|| {
            CourseError::invalid(format!(
                "[tolerance.{name}] has no `{dtype} = {{ rtol = .., atol = .. }}`"
            ))
        })
    }

    /// Whether every table has every dtype (true for the kit's course.toml).
    pub fn is_complete(&self) -> bool {
        self.tables()
            .iter()
            .all(|(_, t)| DType::ALL.iter().all(|d| t.contains_key(d)))
    }

    /// Every value present is finite and non-negative.
    pub(crate) fn validate(&self) -> Result<(), CourseError> {
        for (name, table) in self.tables() {
            for (dtype, t) in table {
                check_values(&format!("[tolerance.{name}] {dtype}"), t)?;
            }
        }
        Ok(())
    }
}

pub(crate) fn check_values(what: &str, t: &Tol) -> Result<(), CourseError> {
    if !(t.rtol.is_finite() && t.atol.is_finite() && t.rtol >= 0.0 && t.atol >= 0.0) {
        return Err(CourseError::invalid(format!(
            "{what}: rtol {} and atol {} must be finite and >= 0",
            t.rtol, t.atol
        )));
    }
    Ok(())
}

impl Course {
    /// The tolerance for comparing `dtype` tensors of `kind` on `device` on
    /// day `day` (a number with no `[[day]]`, such as 0 for the model checks,
    /// gets the defaults):
    ///
    /// - element-wise on the CPU: the day's `[day.tolerance]`, else
    ///   `[tolerance.cpu]`;
    /// - element-wise on a GPU: the day's `[day.tolerance_gpu]`, else the
    ///   looser of the day's `[day.tolerance]` and `[tolerance.gpu]`, else
    ///   `[tolerance.gpu]`;
    /// - log-probabilities: `[tolerance.logprobs_cpu]` or
    ///   `[tolerance.logprobs_gpu]`.
    ///
    /// Errors only when the default it needs is missing from course.toml
    /// (never for the kit's own course.toml: a test checks).
    pub fn tolerance(
        &self,
        day: u32,
        kind: Kind,
        device: Device,
        dtype: DType,
    ) -> Result<Tol, CourseError> {
        let default = || self.tolerance.default_for(kind, device, dtype);
        let day = self.day(day).filter(|_| kind == Kind::Elementwise);
        let Some(d) = day else {
            return default();
        };
        match device {
            Device::Cpu => match d.tolerance.get(&dtype) {
                Some(t) => Ok(*t),
                None => default(),
            },
            Device::Gpu => match (d.tolerance_gpu.get(&dtype), d.tolerance.get(&dtype)) {
                (Some(gpu), _) => Ok(*gpu),
                (None, Some(cpu)) => Ok(cpu.max(default()?)),
                (None, None) => default(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn course(extra: &str) -> Result<Course, CourseError> {
        let mut text = String::from("format_version = 1\n");
        for (table, base) in [
            ("cpu", 1.0),
            ("gpu", 10.0),
            ("logprobs_cpu", 100.0),
            ("logprobs_gpu", 1000.0),
        ] {
            text.push_str(&format!("[tolerance.{table}]\n"));
            for (i, d) in DType::NAMES.iter().enumerate() {
                let v = base * (i + 1) as f64;
                text.push_str(&format!(
                    "{d} = {{ rtol = {v:e}, atol = {v:e}, worst_abs = 0.5, note = \"x\" }}\n"
                ));
            }
        }
        text.push_str(
            "[[day]]\nnumber = 1\nweek = 1\ntitle = \"a\"\nmodules = []\ntests = [\"t\"]\nhint = \"h\"\n\
             [day.tolerance]\nbf16 = { rtol = 50, atol = 0.5 }\nf16 = { rtol = 0.5, atol = 0.5 }\n\
             [day.tolerance_gpu]\nf16 = { rtol = 7, atol = 7 }\n",
        );
        text.push_str(extra);
        Course::parse(&text)
    }

    fn ra(t: Result<Tol, CourseError>) -> (f64, f64) {
        let t = t.unwrap();
        (t.rtol, t.atol)
    }

    #[test]
    fn defaults_by_kind_device_and_dtype() {
        let c = course("").unwrap();
        use {DType::*, Device::*, Kind::*};
        // day 9 does not exist: defaults
        assert_eq!(ra(c.tolerance(9, Elementwise, Cpu, F32)), (1.0, 1.0));
        assert_eq!(ra(c.tolerance(9, Elementwise, Cpu, Bf16)), (3.0, 3.0));
        assert_eq!(ra(c.tolerance(9, Elementwise, Gpu, F16)), (20.0, 20.0));
        assert_eq!(ra(c.tolerance(0, Logprobs, Cpu, F32)), (100.0, 100.0));
        assert_eq!(ra(c.tolerance(0, Logprobs, Gpu, Bf16)), (3000.0, 3000.0));
        let t = c.tolerance(9, Elementwise, Cpu, F32).unwrap();
        assert_eq!(t.worst_abs, Some(0.5));
        assert!(c.tolerance.is_complete());
    }

    #[test]
    fn day_overrides_take_precedence() {
        let c = course("").unwrap();
        use {DType::*, Device::*, Kind::*};
        // CPU: the day's table, else the default
        assert_eq!(ra(c.tolerance(1, Elementwise, Cpu, Bf16)), (50.0, 0.5));
        assert_eq!(ra(c.tolerance(1, Elementwise, Cpu, F32)), (1.0, 1.0));
        // GPU: the day's GPU table first
        assert_eq!(ra(c.tolerance(1, Elementwise, Gpu, F16)), (7.0, 7.0));
        // then the looser of the day's CPU override and the GPU default
        assert_eq!(ra(c.tolerance(1, Elementwise, Gpu, Bf16)), (50.0, 30.0));
        // then the GPU default
        assert_eq!(ra(c.tolerance(1, Elementwise, Gpu, F32)), (10.0, 10.0));
        // log-probabilities have no day overrides
        assert_eq!(ra(c.tolerance(1, Logprobs, Cpu, Bf16)), (300.0, 300.0));
    }

    #[test]
    fn a_missing_default_or_bad_value_is_named() {
        let text = "format_version = 1\n[tolerance.cpu]\nf32 = { rtol = 1, atol = 1 }\n";
        let c = Course::parse(text).unwrap();
        assert!(!c.tolerance.is_complete());
        assert_eq!(
            ra(c.tolerance(1, Kind::Elementwise, Device::Cpu, DType::F32)),
            (1.0, 1.0)
        );
        let e = c
            .tolerance(1, Kind::Elementwise, Device::Cpu, DType::F16)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "course.toml: [tolerance.cpu] has no `f16 = { rtol = .., atol = .. }`"
        );
        let e = c
            .tolerance(1, Kind::Logprobs, Device::Gpu, DType::F32)
            .unwrap_err()
            .to_string();
        assert!(e.contains("[tolerance.logprobs_gpu] has no `f32"), "{e}");
        let e = course("[day.tolerance_gpu.bf16]\nrtol = -1\natol = 0\n")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(e.contains("must be finite and >= 0"), "{e}");
    }

    #[test]
    fn unknown_dtypes_are_rejected_unknown_keys_ignored() {
        let e = course("f64 = { rtol = 1, atol = 1 }\n")
            .map(|_| ())
            .unwrap_err()
            .to_string();
        assert!(e.contains("f64"), "{e}");
        assert!(course("[tolerance.future]\nx = 1\n").is_ok());
    }

    /// The kit's days 9-12 carry a GPU override for f32 (TF32 matmuls and
    /// GPU sums measured on an H200), and a GPU lookup of those days returns
    /// the day's override where it has one, `[tolerance.gpu]` otherwise
    /// (day 10 keeps `[tolerance.gpu]` for f16 and bf16).
    #[test]
    fn the_kit_days_9_to_12_have_gpu_tolerances() {
        let c = Course::load_kit().unwrap();
        for n in 9..=12 {
            let d = c.day(n).unwrap();
            assert!(
                d.tolerance_gpu.contains_key(&DType::F32),
                "day {n}: no [day.tolerance_gpu] f32"
            );
            for dtype in [DType::F32, DType::F16, DType::Bf16] {
                let got = c
                    .tolerance(n, Kind::Elementwise, Device::Gpu, dtype)
                    .unwrap();
                match d.tolerance_gpu.get(&dtype) {
                    Some(over) => assert_eq!(got, *over, "day {n} {dtype:?}"),
                    None => {
                        let gpu = c
                            .tolerance
                            .default_for(Kind::Elementwise, Device::Gpu, dtype)
                            .unwrap();
                        assert_eq!(
                            got.max(gpu),
                            got,
                            "day {n} {dtype:?}: under [tolerance.gpu]"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn allows_is_numpy_allclose() {
        let t = Tol::new(0.1, 0.01);
        assert!(t.allows(1.105, 1.0));
        assert!(!t.allows(1.115, 1.0));
        assert!(t.allows(-0.01, 0.0));
    }
}
