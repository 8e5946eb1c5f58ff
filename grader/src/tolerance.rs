//! The course's tolerances, read from course.toml (the one place they live):
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
//! Only `rtol` and `atol` are read; other keys (the measured `worst_abs`,
//! `worst_rel`) are informational. A missing entry is the kit's fault and
//! panics with `[fixture]`.

use crate::compare::Tol;
use mlx_rs::Dtype;

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

/// Reads `{ rtol = .., atol = .. }` (floats or integers) from an inline table.
fn tol_of(v: &toml::Value) -> Option<Tol> {
    let num = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_float().or_else(|| x.as_integer().map(|i| i as f64)))
    };
    Some(Tol {
        rtol: num("rtol")?,
        atol: num("atol")?,
    })
}

/// `[tolerance.<table>] <dtype> = { .. }` of a parsed course.toml.
pub fn default_in(course: &toml::Table, table: &str, dtype: &str) -> Option<Tol> {
    tol_of(course.get("tolerance")?.get(table)?.get(dtype)?)
}

/// `[day.tolerance]` (or `[day.tolerance_gpu]`) `<dtype> = { .. }` of day
/// `number` in a parsed course.toml.
pub fn day_override_in(course: &toml::Table, number: i64, gpu: bool, dtype: &str) -> Option<Tol> {
    let days = course.get("day")?.as_array()?;
    let entry = days
        .iter()
        .find(|d| d.get("number").and_then(|n| n.as_integer()) == Some(number))?;
    let table = if gpu { "tolerance_gpu" } else { "tolerance" };
    tol_of(entry.get(table)?.get(dtype)?)
}

/// course.toml at the workspace root, parsed once per process.
fn course() -> &'static toml::Table {
    static COURSE: std::sync::OnceLock<Result<toml::Table, String>> = std::sync::OnceLock::new();
    let parsed = COURSE.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../course.toml");
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        text.parse::<toml::Table>()
            .map_err(|e| format!("{}: {e}", path.display()))
    });
    parsed
        .as_ref()
        .unwrap_or_else(|e| panic!("[fixture] course.toml: {e}"))
}

#[track_caller]
fn default_tol(table: &str, dtype: Dtype) -> Tol {
    let key = dtype_key(dtype);
    default_in(course(), table, key).unwrap_or_else(|| {
        panic!(
            "[fixture] course.toml has no `[tolerance.{table}] {key} = {{ rtol = .., atol = .. }}`"
        )
    })
}

impl Tol {
    /// The course's element-wise tolerance for `dtype` on the CPU:
    /// course.toml `[tolerance.cpu]`.
    #[track_caller]
    pub fn for_dtype(dtype: Dtype) -> Tol {
        default_tol("cpu", dtype)
    }

    /// The element-wise tolerance on a GPU: course.toml `[tolerance.gpu]`
    /// (f32 matmuls there run as TF32).
    #[track_caller]
    pub fn for_dtype_on_gpu(dtype: Dtype) -> Tol {
        default_tol("gpu", dtype)
    }

    /// Whole-model logits, compared as log-probabilities (after subtracting
    /// each row's logsumexp), on this process's device: course.toml
    /// `[tolerance.logprobs_cpu]` or `[tolerance.logprobs_gpu]`.
    #[track_caller]
    pub fn logits(dtype: Dtype) -> Tol {
        if crate::device::on_gpu() {
            default_tol("logprobs_gpu", dtype)
        } else {
            default_tol("logprobs_cpu", dtype)
        }
    }

    /// The tolerance for a dtype on `day` (e.g. `"day3"`) on this process's
    /// device. On the CPU: the day's `[day.tolerance]`, else
    /// `[tolerance.cpu]`. On a GPU: the day's `[day.tolerance_gpu]`, else the
    /// looser of the day's CPU override and `[tolerance.gpu]`.
    #[track_caller]
    pub fn for_day(day: &str, dtype: Dtype) -> Tol {
        let number: Option<i64> = day.strip_prefix("day").and_then(|n| n.parse().ok());
        let key = dtype_key(dtype);
        let over = |gpu| number.and_then(|n| day_override_in(course(), n, gpu, key));
        if !crate::device::on_gpu() {
            return over(false).unwrap_or_else(|| Tol::for_dtype(dtype));
        }
        if let Some(t) = over(true) {
            return t;
        }
        let gpu = Tol::for_dtype_on_gpu(dtype);
        match over(false) {
            Some(cpu) => Tol {
                rtol: cpu.rtol.max(gpu.rtol),
                atol: cpu.atol.max(gpu.atol),
            },
            None => gpu,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COURSE: &str = r#"
        [tolerance.cpu]
        f32 = { rtol = 1e-5, atol = 1, worst_abs = 3e-7, extra = "ignored" }
        [[day]]
        number = 5
        [day.tolerance]
        bf16 = { rtol = 5e-2, atol = 3e-2 }
    "#;

    #[test]
    fn reads_defaults_and_day_overrides_ignoring_extra_keys() {
        let c: toml::Table = COURSE.parse().unwrap();
        assert_eq!(
            default_in(&c, "cpu", "f32"),
            Some(Tol {
                rtol: 1e-5,
                atol: 1.0
            })
        );
        assert_eq!(default_in(&c, "cpu", "f16"), None);
        assert_eq!(default_in(&c, "gpu", "f32"), None);
        assert_eq!(
            day_override_in(&c, 5, false, "bf16"),
            Some(Tol {
                rtol: 5e-2,
                atol: 3e-2
            })
        );
        assert_eq!(day_override_in(&c, 5, true, "bf16"), None);
        assert_eq!(day_override_in(&c, 4, false, "bf16"), None);
    }

    /// The kit's own course.toml has every default the grader asks for.
    #[test]
    fn course_toml_has_every_default() {
        for table in ["cpu", "gpu", "logprobs_cpu", "logprobs_gpu"] {
            for d in [Dtype::Float32, Dtype::Float16, Dtype::Bfloat16] {
                let t = default_in(course(), table, dtype_key(d))
                    .unwrap_or_else(|| panic!("[tolerance.{table}] {d:?} missing"));
                assert!(t.rtol >= 0.0 && t.atol >= 0.0 && t.rtol < 1.0);
            }
        }
    }
}
