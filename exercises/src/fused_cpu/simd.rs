//! The fast kernels' inner loops (day 11, [`super`]): AVX2 + FMA where
//! the CPU has them, else portable loops over blocks of 8 that the
//! compiler vectorizes. The polynomial `exp` is Cephes' `expf` (module
//! docs of [`super`]).
//!
//! Hints: one function per loop, taking the `Isa`; the x86 versions are
//! `#[target_feature(enable = "avx2,fma")] unsafe fn`s in a
//! `#[cfg(target_arch = "x86_64")]` module, called only after
//! `is_x86_feature_detected!`. `exp` of 8 lanes: `n = floor(x log2(e) +
//! 1/2)` (`_mm256_floor_ps`), `r = x - n ln 2` (ln 2 split as
//! `0.693359375 - 2.12194440e-4` so that `n * 0.693359375` is exact), a
//! degree-6 polynomial in `r` (Cephes' `expf` coefficients), times `2^n`
//! built from the exponent bits (`(n + 127) << 23`). Clamp the input first
//! and mind where `-inf` and NaN go.
