//! The course's tolerances, read from course.toml's one table through the
//! shared `tiny-llm-course` crate:
//!
//! ```toml
//! [tolerance.cpu]            # element-wise checks on the CPU
//! f32 = { rtol = 1e-5, atol = 1e-6, worst_abs = .., worst_rel = .. }
//! [tolerance.gpu]            # the same on a GPU
//! [tolerance.logprobs_cpu]   # whole-model log-probabilities
//! [tolerance.logprobs_gpu]
//! [[day]] ... [day.tolerance] / [day.tolerance_gpu]   # per-day overrides
//! ```
//!
//! A course.toml that cannot be read or lacks an entry is the kit's fault:
//! the test panics with `[fixture]`.

use crate::compare::Tol;
use mlx_rs::Dtype;
use tiny_llm_course::{Course, DType, Device, Kind};

/// `f32`, `f16`, `bf16`, ... as course.toml names dtypes.
pub fn dtype_key(d: Dtype) -> &'static str {
    match d {
        Dtype::Float16 => "f16",
        Dtype::Bfloat16 => "bf16",
        Dtype::Float32 => "f32",
        Dtype::Float64 => "f64",
        _ => "other",
    }
}

/// The course's dtype whose tolerance applies to MLX's `d`: f16 and bf16 as
/// themselves, anything else (f32, integers) as f32.
pub fn course_dtype(d: Dtype) -> DType {
    match d {
        Dtype::Float16 => DType::F16,
        Dtype::Bfloat16 => DType::Bf16,
        _ => DType::F32,
    }
}

/// The device this process grades on.
pub fn device() -> Device {
    if crate::device::on_gpu() {
        Device::Gpu
    } else {
        Device::Cpu
    }
}

/// The kit's course.toml, parsed (and validated) once per process.
pub fn course() -> &'static Course {
    static COURSE: std::sync::OnceLock<Result<Course, String>> = std::sync::OnceLock::new();
    COURSE
        .get_or_init(|| Course::load_kit().map_err(|e| e.to_string()))
        .as_ref()
        .unwrap_or_else(|e| panic!("[fixture] course.toml: {e}"))
}

fn from_course(t: Result<tiny_llm_course::Tol, tiny_llm_course::CourseError>) -> Tol {
    let t = t.unwrap_or_else(|e| panic!("[fixture] course.toml: {e}"));
    Tol {
        rtol: t.rtol,
        atol: t.atol,
    }
}

impl Tol {
    /// The course's element-wise tolerance for `dtype` on the CPU:
    /// course.toml `[tolerance.cpu]`.
    pub fn for_dtype(dtype: Dtype) -> Tol {
        let t = course()
            .tolerance
            .default_for(Kind::Elementwise, Device::Cpu, course_dtype(dtype));
        from_course(t)
    }

    /// The element-wise tolerance on a GPU: course.toml `[tolerance.gpu]`
    /// (f32 matmuls there run as TF32). No day's override: a GPU test of a
    /// day uses [`Tol::for_day_on_gpu`].
    pub fn for_dtype_on_gpu(dtype: Dtype) -> Tol {
        let t = course()
            .tolerance
            .default_for(Kind::Elementwise, Device::Gpu, course_dtype(dtype));
        from_course(t)
    }

    /// The tolerance of a GPU test of `day` (e.g. `"day11"`), whatever this
    /// process's default device: the day's `[day.tolerance_gpu]`, else the
    /// looser of the day's `[day.tolerance]` and `[tolerance.gpu]`.
    pub fn for_day_on_gpu(day: &str, dtype: Dtype) -> Tol {
        let t = course().tolerance(
            day_number(day),
            Kind::Elementwise,
            Device::Gpu,
            course_dtype(dtype),
        );
        from_course(t)
    }

    /// Whole-model log-probabilities computed (in part) by GPU kernels:
    /// course.toml `[tolerance.logprobs_gpu]`, whatever this process's
    /// default device.
    pub fn logits_on_gpu(dtype: Dtype) -> Tol {
        let t = course()
            .tolerance
            .default_for(Kind::Logprobs, Device::Gpu, course_dtype(dtype));
        from_course(t)
    }

    /// Whole-model logits, compared as log-probabilities (after subtracting
    /// each row's logsumexp), on this process's device: course.toml
    /// `[tolerance.logprobs_cpu]` or `[tolerance.logprobs_gpu]`.
    pub fn logits(dtype: Dtype) -> Tol {
        let t = course()
            .tolerance
            .default_for(Kind::Logprobs, device(), course_dtype(dtype));
        from_course(t)
    }

    /// The tolerance for a dtype on `day` (e.g. `"day3"`) on this process's
    /// device. On the CPU: the day's `[day.tolerance]`, else
    /// `[tolerance.cpu]`. On a GPU: the day's `[day.tolerance_gpu]`, else the
    /// looser of the day's CPU override and `[tolerance.gpu]`.
    pub fn for_day(day: &str, dtype: Dtype) -> Tol {
        let t = course().tolerance(
            day_number(day),
            Kind::Elementwise,
            device(),
            course_dtype(dtype),
        );
        from_course(t)
    }
}

/// `"day11"` -> 11 (0, the defaults, for anything else).
fn day_number(day: &str) -> u32 {
    day.strip_prefix("day")
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The kit's course.toml gives the grader what it asks for, with a day's
    /// override where there is one (day 5 bf16).
    #[test]
    fn reads_the_kit_course() {
        for d in [Dtype::Float32, Dtype::Float16, Dtype::Bfloat16] {
            let t = Tol::for_dtype(d);
            assert!(
                t.rtol >= 0.0 && t.atol >= 0.0 && t.rtol < 1.0,
                "{d:?}: {t:?}"
            );
            assert_eq!(Tol::for_day("day1", d), t, "day 1 has no overrides");
            let _ = (Tol::for_dtype_on_gpu(d), Tol::logits(d));
        }
        let over = course().day(5).unwrap().tolerance[&DType::Bf16];
        assert_eq!(Tol::for_day("day5", Dtype::Bfloat16), from_course(Ok(over)));
    }

    /// A GPU test of days 9-12 reads the day's `[day.tolerance_gpu]`, not
    /// `[tolerance.gpu]`.
    #[test]
    fn gpu_tests_read_the_days_gpu_overrides() {
        for n in 9..=12 {
            let day = course().day(n).unwrap();
            let over = day.tolerance_gpu[&DType::F32];
            assert_eq!(
                Tol::for_day_on_gpu(&format!("day{n}"), Dtype::Float32),
                from_course(Ok(over)),
                "day {n}"
            );
        }
        assert_eq!(
            Tol::for_day_on_gpu("day1", Dtype::Float32),
            Tol::for_dtype_on_gpu(Dtype::Float32),
            "day 1 has no GPU override"
        );
        let _ = Tol::logits_on_gpu(Dtype::Float32);
    }
}
