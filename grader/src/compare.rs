//! Numeric comparison with a report that names the worst element.

use mlx_rs::{Array, Dtype};

/// Tolerance: an element passes when `|got - expected| <= atol + rtol * |expected|`
/// (the `numpy.allclose` rule).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tol {
    pub rtol: f64,
    pub atol: f64,
}

impl Tol {
    /// The course's default tolerance for a dtype (docs: curriculum.md):
    /// f32 rtol 1e-5 atol 1e-6; f16 rtol 5e-2 atol 1e-3; bf16 rtol 5e-2 atol 1e-2.
    pub fn for_dtype(dtype: Dtype) -> Tol {
        match dtype {
            Dtype::Float16 => Tol {
                rtol: 5e-2,
                atol: 1e-3,
            },
            Dtype::Bfloat16 => Tol {
                rtol: 5e-2,
                atol: 1e-2,
            },
            _ => Tol {
                rtol: 1e-5,
                atol: 1e-6,
            },
        }
    }

    /// Whole-model logits, compared as log-probabilities (after subtracting
    /// each row's logsumexp): f16/bf16 rtol 0.1 atol 2.5 (docs:
    /// curriculum.md); f32 rtol 1e-4 atol 1e-4.
    pub fn logits(dtype: Dtype) -> Tol {
        match dtype {
            Dtype::Float16 | Dtype::Bfloat16 => Tol {
                rtol: 0.1,
                atol: 2.5,
            },
            // TF32 matmuls on a GPU: measured worst 1.1e-2 on log-probs near
            // -12.7 (tiny Qwen2, H200); a wrong scale or RoPE moves them by ~1
            _ if crate::device::on_gpu() => Tol {
                rtol: 5e-3,
                atol: 5e-2,
            },
            _ => Tol {
                rtol: 1e-4,
                atol: 1e-4,
            },
        }
    }

    /// The tolerance for a dtype on `day` (e.g. `"day3"`): the course's
    /// default, unless `course.toml` overrides it for that day with
    /// `[day.tolerance] f16 = { rtol = .., atol = .. }`.
    pub fn for_day(day: &str, dtype: Dtype) -> Tol {
        if !crate::device::on_gpu() {
            return course_override(day, dtype, false).unwrap_or_else(|| Tol::for_dtype(dtype));
        }
        // on a GPU: `[day.tolerance_gpu]`, else the looser of the day's CPU
        // override and the GPU default
        if let Some(t) = course_override(day, dtype, true) {
            return t;
        }
        let gpu = Tol::for_dtype_on_gpu(dtype);
        match course_override(day, dtype, false) {
            Some(cpu) => Tol {
                rtol: cpu.rtol.max(gpu.rtol),
                atol: cpu.atol.max(gpu.atol),
            },
            None => gpu,
        }
    }

    /// Defaults on the GPU: f32 matmuls there run as TF32 (10-bit mantissa),
    /// so f32 gets rtol 2e-2 atol 5e-3 (measured worst on an H200: 1.5e-3
    /// abs on a 64-long dot product; a wrong scale or a wrong RoPE gives
    /// errors of order 1e-1 to 1); f16/bf16 as on the CPU.
    pub fn for_dtype_on_gpu(dtype: Dtype) -> Tol {
        match dtype {
            Dtype::Float32 => Tol {
                rtol: 2e-2,
                atol: 5e-3,
            },
            d => Tol::for_dtype(d),
        }
    }
}

/// `f32`, `f16`, `bf16`, ... as course.toml names dtypes (with `_gpu`
/// appended for the GPU table, `[day.tolerance_gpu]`).
pub fn dtype_key(d: Dtype) -> &'static str {
    match d {
        Dtype::Float16 => "f16",
        Dtype::Bfloat16 => "bf16",
        Dtype::Float32 => "f32",
        Dtype::Float64 => "f64",
        _ => "other",
    }
}

fn course_override(day: &str, dtype: Dtype, on_gpu: bool) -> Option<Tol> {
    static COURSE: std::sync::OnceLock<Option<toml::Table>> = std::sync::OnceLock::new();
    let course = COURSE.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../course.toml");
        std::fs::read_to_string(path)
            .ok()?
            .parse::<toml::Table>()
            .ok()
    });
    let number: i64 = day.strip_prefix("day")?.parse().ok()?;
    let days = course.as_ref()?.get("day")?.as_array()?;
    let entry = days
        .iter()
        .find(|d| d.get("number").and_then(|n| n.as_integer()) == Some(number))?;
    let table = if on_gpu { "tolerance_gpu" } else { "tolerance" };
    let t = entry.get(table)?.get(dtype_key(dtype))?;
    let num = |k: &str| {
        t.get(k)
            .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64)))
    };
    Some(Tol {
        rtol: num("rtol")?,
        atol: num("atol")?,
    })
}

fn dtype_name(d: Dtype) -> String {
    format!("{d:?}").to_lowercase()
}

fn to_f64(a: &Array) -> Vec<f64> {
    let f = a
        .as_dtype(Dtype::Float32)
        .and_then(|f| f.eval().map(|_| f))
        .unwrap_or_else(|e| panic!("[error] cannot read the tensor: {e}"));
    f.as_slice::<f32>().iter().map(|&v| v as f64).collect()
}

fn unravel(mut flat: usize, shape: &[i32]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    for (i, &d) in shape.iter().enumerate().rev() {
        let d = d.max(1) as usize;
        idx[i] = flat % d;
        flat /= d;
    }
    idx
}

/// The outcome of comparing two tensors element by element.
#[derive(Debug, Clone, PartialEq)]
pub struct Worst {
    pub index: Vec<usize>,
    pub got: f64,
    pub expected: f64,
    pub abs_err: f64,
    pub rel_err: f64,
    pub failing: usize,
    pub total: usize,
}

/// Compares `got` with `expected` (same length), returning the element that
/// exceeds the tolerance the most, or `None` when all pass. NaN in `got`
/// where `expected` is finite always fails.
pub fn worst_element(got: &[f64], expected: &[f64], shape: &[i32], tol: Tol) -> Option<Worst> {
    let mut worst: Option<(f64, usize)> = None;
    let mut failing = 0;
    for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
        let allowed = tol.atol + tol.rtol * e.abs();
        let err = (g - e).abs();
        let same_inf = g == e; // covers equal infinities
        let excess = if same_inf {
            continue;
        } else if err.is_nan() {
            f64::INFINITY
        } else {
            err - allowed
        };
        if excess > 0.0 {
            failing += 1;
            if worst.is_none_or(|(w, _)| excess > w) {
                worst = Some((excess, i));
            }
        }
    }
    worst.map(|(_, i)| {
        let (g, e) = (got[i], expected[i]);
        Worst {
            index: unravel(i, shape),
            got: g,
            expected: e,
            abs_err: (g - e).abs(),
            rel_err: (g - e).abs() / e.abs().max(f64::MIN_POSITIVE),
            failing,
            total: got.len(),
        }
    })
}

/// Asserts that `got` matches `expected` in shape, dtype and values.
///
/// Panics with `[wrong shape]` (shape or dtype differ) or `[wrong numbers]`
/// and a report: the test, the case, the tensor, its shape and dtype, the
/// worst element (index, got, expected, abs and rel error) and the tolerance.
#[track_caller]
pub fn assert_close(test: &str, case: &str, tensor: &str, got: &Array, expected: &Array, tol: Tol) {
    if got.shape() != expected.shape() || got.dtype() != expected.dtype() {
        panic!(
            "[wrong shape] {test}, case {case}, tensor `{tensor}`: got shape {:?} dtype {}, expected shape {:?} dtype {}",
            got.shape(),
            dtype_name(got.dtype()),
            expected.shape(),
            dtype_name(expected.dtype())
        );
    }
    let (g, e) = (to_f64(got), to_f64(expected));
    if let Some(w) = worst_element(&g, &e, expected.shape(), tol) {
        panic!(
            "[wrong numbers] {test}, case {case}, tensor `{tensor}` (shape {:?}, {})\n  \
             worst element at {:?}: got {:.7e}, expected {:.7e} (abs err {:.3e}, rel err {:.3e})\n  \
             {} of {} elements outside |got - expected| <= atol + rtol*|expected| with rtol {:e}, atol {:e}",
            expected.shape(),
            dtype_name(expected.dtype()),
            w.index,
            w.got,
            w.expected,
            w.abs_err,
            w.rel_err,
            w.failing,
            w.total,
            tol.rtol,
            tol.atol
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Tol = Tol {
        rtol: 0.1,
        atol: 0.0,
    };

    #[test]
    fn all_within_tolerance_is_none() {
        assert_eq!(worst_element(&[1.0, 2.05], &[1.0, 2.0], &[2], T), None);
    }

    #[test]
    fn worst_is_the_largest_excess_with_its_index() {
        // excess: |1.5-1|-0.1 = 0.4 at 1; |3-2|-0.2 = 0.8 at 3
        let w = worst_element(&[0.0, 1.5, 0.0, 3.0], &[0.0, 1.0, 0.0, 2.0], &[2, 2], T).unwrap();
        assert_eq!(w.index, vec![1, 1]);
        assert_eq!((w.got, w.expected, w.failing, w.total), (3.0, 2.0, 2, 4));
        assert!((w.rel_err - 0.5).abs() < 1e-12);
    }

    #[test]
    fn nan_fails_and_equal_infinities_pass() {
        let w = worst_element(
            &[f64::NAN, f64::NEG_INFINITY],
            &[1.0, f64::NEG_INFINITY],
            &[2],
            T,
        );
        assert_eq!(w.unwrap().index, vec![0]);
    }
}
