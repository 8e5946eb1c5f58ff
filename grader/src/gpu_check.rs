//! Helpers of the GPU kernel tests (days 10-12): deterministic inputs made
//! on the host, and one comparison of a kernel's output with its oracle at
//! the day's GPU tolerance (`[day.tolerance_gpu]`, else `[tolerance.gpu]`).

use crate::{assert_close, Tol};
use mlx_rs::{Array, Dtype};

/// `shape`'s values uniform in `[-scale, scale)`, f32, from an xorshift64
/// stream seeded by `seed` (the same values on every machine and device).
pub fn seeded(shape: &[i32], seed: u64, scale: f32) -> Array {
    let n: i32 = shape.iter().product();
    let mut s = seed.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
        })
        .collect();
    Array::from_slice(&v, shape)
}

/// `a` cast to `d`; a failed cast is a `[error]` panic naming it.
pub fn cast_to(a: &Array, d: Dtype) -> Array {
    a.as_dtype(d)
        .unwrap_or_else(|e| panic!("[error] cannot cast to {d:?}: {e}"))
}

/// `got` must have `dtype` (the inputs' dtype) and equal `want` (any dtype,
/// compared in f32) within `day`'s GPU tolerance of `dtype`.
pub fn check_gpu(test: &str, day: &str, case: &str, got: &Array, want: &Array, dtype: Dtype) {
    assert_eq!(
        got.dtype(),
        dtype,
        "[wrong shape] {test}, case {case}: got dtype {:?}, expected {dtype:?} (the inputs' dtype)",
        got.dtype()
    );
    let tol = Tol::for_day_on_gpu(day, dtype);
    let want = cast_to(want, Dtype::Float32);
    assert_close(test, case, "out", &cast_to(got, Dtype::Float32), &want, tol);
}
