//! Numeric comparison with a report that names the worst element.
//!
//! The rule is `numpy.allclose`'s, per element: `|got - expected| <= atol +
//! rtol * |expected|`, except where `expected` is not finite: there the
//! element must match exactly (`+inf` where `+inf` is expected, `-inf` where
//! `-inf` is, NaN where NaN is). Without that rule `inf - inf` is NaN, which
//! no tolerance test rejects, and an all-zero causal mask would pass.
//!
//! `TINY_LLM_REPORT_WORST=1` makes [`assert_close`] print, for every
//! comparison that passes, its worst absolute and relative errors (one
//! `[worst] ...` line on stderr): how the course's tolerances in course.toml
//! were measured.

use mlx_rs::{Array, Dtype};

/// Tolerance: an element passes when `|got - expected| <= atol + rtol * |expected|`
/// (the `numpy.allclose` rule). The course's defaults are in course.toml's
/// `[tolerance.*]` tables (see [`crate::tolerance`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tol {
    pub rtol: f64,
    pub atol: f64,
}

impl Tol {
    /// Whether `got` passes against a finite `expected`.
    pub fn allows(&self, got: f64, expected: f64) -> bool {
        (got - expected).abs() <= self.atol + self.rtol * expected.abs()
    }
}

fn dtype_name(d: Dtype) -> String {
    format!("{d:?}").to_lowercase()
}

/// The values of `a` as f64, in row-major order, whatever its layout: a
/// transposed, strided or broadcast view is copied to a row-major array
/// first. Panics with `[error]` when MLX cannot evaluate it (the code under
/// test built a graph that fails).
pub fn values_f64(a: &Array) -> Vec<f64> {
    if a.size() == 0 {
        return Vec::new();
    }
    let f = a
        .as_dtype(Dtype::Float32)
        .and_then(|f| f.contiguous())
        .and_then(|f| f.eval().map(|_| f))
        .unwrap_or_else(|e| panic!("[error] cannot evaluate the tensor: {e}"));
    let slice = f
        .try_as_slice::<f32>()
        .unwrap_or_else(|e| panic!("[error] cannot read the tensor: {e}"));
    slice.iter().map(|&v| v as f64).collect()
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

/// By how much one element exceeds its allowance (> 0: it fails).
/// Non-finite expected values must match exactly; a non-finite `got` where
/// a finite value is expected always fails. Mismatches of that kind count as
/// an infinite excess.
fn excess(g: f64, e: f64, tol: Tol) -> f64 {
    if e.is_nan() {
        return if g.is_nan() { 0.0 } else { f64::INFINITY };
    }
    if e.is_infinite() || !g.is_finite() {
        return if g == e { 0.0 } else { f64::INFINITY };
    }
    (g - e).abs() - (tol.atol + tol.rtol * e.abs())
}

/// `|g - e|`, infinite for a mismatch involving inf or NaN.
fn abs_err(g: f64, e: f64) -> f64 {
    let d = (g - e).abs();
    if d.is_nan() {
        f64::INFINITY
    } else {
        d
    }
}

/// `|g - e| / |e|`, infinite for a mismatch involving inf or NaN or a
/// nonzero error on an expected zero.
fn rel_err(g: f64, e: f64) -> f64 {
    let a = abs_err(g, e);
    if a == 0.0 {
        0.0
    } else if e == 0.0 || !e.is_finite() {
        f64::INFINITY
    } else {
        a / e.abs()
    }
}

/// Compares `got` with `expected` (same length, row-major, of `shape`),
/// returning the element that exceeds the tolerance the most (the first of
/// equal ones), or `None` when all pass.
pub fn worst_element(got: &[f64], expected: &[f64], shape: &[i32], tol: Tol) -> Option<Worst> {
    let mut worst: Option<(f64, usize)> = None;
    let mut failing = 0;
    for (i, (&g, &e)) in got.iter().zip(expected).enumerate() {
        let x = excess(g, e, tol);
        if x > 0.0 {
            failing += 1;
            if worst.is_none_or(|(w, _)| x > w) {
                worst = Some((x, i));
            }
        }
    }
    worst.map(|(_, i)| {
        let (g, e) = (got[i], expected[i]);
        Worst {
            index: unravel(i, shape),
            got: g,
            expected: e,
            abs_err: abs_err(g, e),
            rel_err: rel_err(g, e),
            failing,
            total: got.len(),
        }
    })
}

/// The largest errors of a passing comparison: `abs` over all finite
/// elements; `rel` over the elements where `rtol * |expected| >= atol` (where
/// the relative part of the tolerance governs; 0 when there are none);
/// `used`, the largest `|got - expected| / (atol + rtol * |expected|)` (1.0
/// means at the limit).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Errors {
    pub abs: f64,
    pub rel: f64,
    pub used: f64,
}

/// The [`Errors`] of `got` against `expected` (finite elements only).
pub fn errors(got: &[f64], expected: &[f64], tol: Tol) -> Errors {
    let mut out = Errors {
        abs: 0.0,
        rel: 0.0,
        used: 0.0,
    };
    for (&g, &e) in got.iter().zip(expected) {
        if !e.is_finite() || !g.is_finite() {
            continue;
        }
        let d = (g - e).abs();
        out.abs = out.abs.max(d);
        if e != 0.0 && tol.rtol * e.abs() >= tol.atol {
            out.rel = out.rel.max(d / e.abs());
        }
        let allowed = tol.atol + tol.rtol * e.abs();
        if allowed > 0.0 {
            out.used = out.used.max(d / allowed);
        }
    }
    out
}

fn report_worst() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("TINY_LLM_REPORT_WORST").is_ok_and(|v| v == "1"))
}

/// Asserts that `got` matches `expected` in shape, dtype and values.
///
/// Any layout is accepted (strided, transposed, broadcast views). Panics with
/// `[wrong shape]` (shape or dtype differ) or `[wrong numbers]` and a report:
/// the test, the case, the tensor, its shape and dtype, the worst element
/// (index, got, expected, abs and rel error) and the tolerance.
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
    let (g, e) = (values_f64(got), values_f64(expected));
    if let Some(w) = worst_element(&g, &e, expected.shape(), tol) {
        panic!(
            "[wrong numbers] {test}, case {case}, tensor `{tensor}` (shape {:?}, {})\n  \
             worst element at {:?}: got {:.7e}, expected {:.7e} (abs err {:.3e}, rel err {:.3e})\n  \
             {} of {} elements outside |got - expected| <= atol + rtol*|expected| with rtol {:e}, atol {:e} \
             (where inf or NaN is expected, the element must match exactly)",
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
    if report_worst() {
        let r = errors(&g, &e, tol);
        eprintln!(
            "[worst] test={test} case={case} tensor={tensor} dtype={} device={} rtol={:e} atol={:e} abs={:.3e} rel={:.3e} used={:.3}",
            crate::tolerance::dtype_key(expected.dtype()),
            crate::tolerance::device().as_str(),
            tol.rtol,
            tol.atol,
            r.abs,
            r.rel,
            r.used
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
    const INF: f64 = f64::INFINITY;

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
    fn nan_where_a_number_is_expected_fails() {
        let w = worst_element(&[f64::NAN, -INF], &[1.0, -INF], &[2], T).unwrap();
        assert_eq!((w.index, w.failing), (vec![0], 1));
    }

    #[test]
    fn equal_infinities_and_nan_where_nan_is_expected_pass() {
        let got = [INF, -INF, f64::NAN];
        assert_eq!(worst_element(&got, &got, &[3], T), None);
    }

    /// The all-zero causal mask: `0 - (-inf)` must not hide behind `inf <= inf`
    /// or `NaN > tol` being false.
    #[test]
    fn zero_where_minus_inf_is_expected_fails() {
        let huge = Tol {
            rtol: 1e9,
            atol: 1e9,
        };
        let want = [0.0, -INF, 0.0, 0.0];
        let w = worst_element(&[0.0; 4], &want, &[2, 2], huge).unwrap();
        assert_eq!((w.index, w.got, w.expected), (vec![0, 1], 0.0, -INF));
        assert_eq!((w.abs_err, w.rel_err, w.failing, w.total), (INF, INF, 1, 4));
    }

    #[test]
    fn wrong_sign_of_infinity_fails() {
        let w = worst_element(&[INF], &[-INF], &[1], T).unwrap();
        assert_eq!((w.abs_err, w.failing), (INF, 1));
    }

    #[test]
    fn infinity_or_nan_where_a_number_is_expected_fails() {
        let w = worst_element(&[1.0, INF, f64::NAN], &[1.0, 1e300, 0.0], &[3], T).unwrap();
        assert_eq!((w.index, w.failing), (vec![1], 2));
        assert!(worst_element(&[-INF], &[-f64::MAX], &[1], T).is_some());
    }

    #[test]
    fn a_number_where_nan_is_expected_fails() {
        let w = worst_element(&[0.0, 2.0], &[0.0, f64::NAN], &[2], T).unwrap();
        assert_eq!((w.index, w.abs_err, w.rel_err), (vec![1], INF, INF));
    }

    #[test]
    fn boundary_is_inclusive() {
        // |2.5 - 2| = 0.5 = atol 0.3 + rtol 0.1 * 2
        let t = Tol {
            rtol: 0.1,
            atol: 0.3,
        };
        assert_eq!(worst_element(&[2.5], &[2.0], &[1], t), None);
        assert!(worst_element(&[2.51], &[2.0], &[1], t).is_some());
    }

    /// Views that are not row-major (transposed, strided, broadcast) are
    /// compared by logical index, like any other tensor.
    #[test]
    fn views_compare_by_logical_index() {
        use mlx_rs::ops::indexing::{IndexOp, IntoStrideBy, NewAxis};
        let a = Array::from_slice(&[1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        // transpose: [[1, 4], [2, 5], [3, 6]]
        let t = a.transpose().unwrap();
        assert_eq!(values_f64(&t), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
        let want_t = Array::from_slice(&[1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0], &[3, 2]);
        assert_close("t", "transpose", "x", &t, &want_t, T);
        // strided: every other column, [[1, 3], [4, 6]]
        let strided = a.index((.., (0..).stride_by(2)));
        assert_eq!(values_f64(&strided), vec![1.0, 3.0, 4.0, 6.0]);
        let col = a.index((.., 1, NewAxis));
        assert_eq!(values_f64(&col), vec![2.0, 5.0]);
        // broadcast: [1, 2, 3] to 2 x 3
        let row = Array::from_slice(&[1.0f32, 2.0, 3.0], &[1, 3]);
        let b = mlx_rs::ops::broadcast_to(&row, &[2, 3]).unwrap();
        assert_eq!(values_f64(&b), vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
        // a mismatch in a view names the logical index
        let wrong = Array::from_slice(&[1.0f32, 4.0, 2.0, 5.0, 3.0, 7.0], &[3, 2]);
        let msg = std::panic::catch_unwind(|| assert_close("t", "view", "x", &t, &wrong, T))
            .unwrap_err()
            .downcast::<String>()
            .unwrap();
        assert!(msg.contains("worst element at [2, 1]"), "{msg}");
    }

    #[test]
    fn errors_of_a_passing_comparison() {
        let t = Tol {
            rtol: 0.1,
            atol: 0.01,
        };
        // abs: 0.005 (at 0.0), 0.02 (at 1.0, rel 0.02), -inf skipped
        let e = errors(&[0.005, 1.02, -INF], &[0.0, 1.0, -INF], t);
        assert!((e.abs - 0.02).abs() < 1e-12);
        assert!((e.rel - 0.02).abs() < 1e-12);
        // 0.005 / 0.01 = 0.5; 0.02 / 0.11 = 0.18
        assert!((e.used - 0.5).abs() < 1e-12);
    }
}
