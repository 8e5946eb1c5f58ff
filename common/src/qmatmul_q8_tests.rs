//! Tests of the int8-activation kernels: a hand-worked case, the fast
//! kernels (each instruction set) against the scalar oracle, and the oracle
//! against the exact f64 product within the derived bound.

use super::*;
use half::bf16;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

/// The instruction sets this machine can run (each is tested).
fn isas() -> Vec<Isa> {
    available()
}

/// `sum_k (s q + b) x_k` in f64 from the packed codes: the exact product,
/// independent of every kernel here.
fn exact<S: Scale>(x: &[f32], w: &QuantizedMatrix<'_, S>, r: usize) -> f64 {
    let (g, gpr) = (w.group_size, w.groups_per_row());
    let (per, mask) = (w.codes_per_word(), (1u32 << w.bits) - 1);
    (0..w.cols)
        .map(|c| {
            let word = w.packed[r * w.words_per_row() + c / per];
            let q = ((word >> (w.bits as usize * (c % per))) & mask) as f64;
            let at = r * gpr + c / g;
            (w.scales[at].to_f32() as f64 * q + w.biases[at].to_f32() as f64) * x[c] as f64
        })
        .sum()
}

/// `sum_k |x_k| (|s q| + |b|)`: the scale of f32 rounding in either kernel.
fn magnitude<S: Scale>(x: &[f32], w: &QuantizedMatrix<'_, S>, r: usize) -> f32 {
    q8_error_bound(x, w, r, 1.0) - q8_error_bound(x, w, r, 0.0)
}

#[test]
fn hand_worked_group_of_32() {
    // x: 1.27 and -0.635, the rest 0: amax 1.27, dx = 0.01, inv = 100;
    // xq = 127 and round_half_even(-63.5) = -64. Codes 2 and 3 (the rest 5),
    // s = 0.5, b = 0.25: n = 2*127 + 3*(-64) = 62;
    // out = 0.5*0.01*62 + 0.25*(1.27 - 0.635) = 0.31 + 0.15875 = 0.46875.
    // Exact: 1.25*1.27 - 1.75*0.635 = 0.47625 (off by s*dx*3*0.5 = 0.0075).
    let mut x = vec![0f32; 32];
    x[0] = 1.27;
    x[1] = -0.635;
    let mut codes = [5u32; 32];
    codes[0] = 2;
    codes[1] = 3;
    let packed: Vec<u32> = codes
        .chunks(8)
        .map(|c| c.iter().enumerate().map(|(j, q)| q << (4 * j)).sum())
        .collect();
    let (s, b) = ([0.5f32], [0.25f32]);
    let w = QuantizedMatrix::new(&packed, &s, &b, 1, 32, 32, 4).unwrap();
    let mut out = [0f32];
    qmatmul_q8_scalar(&x, 1, &w, &mut out).unwrap();
    assert!((out[0] - 0.46875).abs() < 1e-6, "oracle: {}", out[0]);
    for isa in isas() {
        qmatmul_q8_on(isa, &x, 1, &w, &mut out).unwrap();
        assert!((out[0] - 0.46875).abs() < 1e-6, "{isa:?}: {}", out[0]);
    }
    assert!((exact(&x, &w, 0) - 0.47625).abs() < 1e-6);
    // the bound: |s| dx / 2 * sum q = 0.5 * 0.005 * (2 + 3 + 30 * 5) = 0.3875
    let bound = q8_error_bound(&x, &w, 0, 0.0);
    assert!((bound - 0.3875).abs() < 1e-6, "{bound}");
}

#[test]
fn quantize_one_rounds_half_to_even_and_clamps() {
    for k in -300..=300 {
        let v = k as f32 * 0.25; // every quarter: ties at .5 included
        let want = v.round_ties_even().clamp(-127.0, 127.0) as i8;
        assert_eq!(quantize_one(v, 1.0), want, "{v}");
    }
    assert_eq!(quantize_one(1.0, 127.0 / 1.0), 127);
    assert_eq!(quantize_one(-1.0, 127.0), -127);
    assert_eq!(quantize_one(0.3, 0.0), 0);
}

/// A random quantized matrix and activations.
#[derive(Debug, Clone)]
struct Case {
    m: usize,
    rows: usize,
    groups: usize,
    group_size: usize,
    bits: u32,
    packed: Vec<u32>,
    scales: Vec<f32>,
    biases: Vec<f32>,
    x: Vec<f32>,
}

fn case() -> impl Strategy<Value = Case> {
    case_of(1..=5, 1..=3)
}

/// Batched decode's shapes: 1 to 16 activation rows, rows of up to 12
/// groups (1536 inputs at 128: several AVX-512 chunks, ragged ends).
fn batch_case() -> impl Strategy<Value = Case> {
    case_of(1..=16, 1..=12)
}

/// `m` activation rows, 1 to 9 weight rows (ragged against the kernels'
/// tiles of 4), `groups` groups of 32, 64 or 128 per row.
fn case_of(
    m: std::ops::RangeInclusive<usize>,
    groups: std::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = Case> {
    (
        m,
        1usize..=9,
        groups,
        prop_oneof![Just(32usize), Just(64), Just(128)],
        prop_oneof![Just(4u32), Just(8)],
        any::<u64>(),
        any::<bool>(),
    )
        .prop_map(|(m, rows, groups, group_size, bits, seed, zero_group)| {
            let mut rng = seed | 1;
            let mut next = move || {
                rng ^= rng << 13;
                rng ^= rng >> 7;
                rng ^= rng << 17;
                rng
            };
            let cols = groups * group_size;
            let unit = |v: u64| (v >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0;
            let packed = (0..rows * cols * bits as usize / 32)
                .map(|_| next() as u32)
                .collect();
            let scales = (0..rows * groups).map(|_| unit(next()) * 0.1).collect();
            let biases = (0..rows * groups).map(|_| unit(next()) * 0.1).collect();
            let mut x: Vec<f32> = (0..m * cols).map(|_| unit(next()) * 2.0).collect();
            if zero_group {
                x[..group_size].fill(0.0);
            }
            Case {
                m,
                rows,
                groups,
                group_size,
                bits,
                packed,
                scales,
                biases,
                x,
            }
        })
}

fn runner() -> TestRunner {
    TestRunner::new(Config {
        cases: 96,
        rng_seed: RngSeed::Fixed(20_261_202),
        failure_persistence: None,
        ..Config::default()
    })
}

/// Checks `case` with scales of type `S` (converted from the case's f32).
fn fast_equals_oracle<S: Scale>(c: &Case, conv: impl Fn(f32) -> S) -> Result<(), TestCaseError> {
    let (s, b): (Vec<S>, Vec<S>) = (
        c.scales.iter().map(|v| conv(*v)).collect(),
        c.biases.iter().map(|v| conv(*v)).collect(),
    );
    let cols = c.groups * c.group_size;
    let w = QuantizedMatrix::new(&c.packed, &s, &b, c.rows, cols, c.group_size, c.bits).unwrap();
    let mut want = vec![0f32; c.m * c.rows];
    qmatmul_q8_scalar(&c.x, c.m, &w, &mut want).unwrap();
    for isa in isas() {
        let mut got = vec![f32::NAN; c.m * c.rows];
        qmatmul_q8_on(isa, &c.x, c.m, &w, &mut got).unwrap();
        for i in 0..c.m {
            let xi = &c.x[i * cols..(i + 1) * cols];
            for r in 0..c.rows {
                let (g, o) = (got[i * c.rows + r], want[i * c.rows + r]);
                let tol = 1e-6 * magnitude(xi, &w, r) + 1e-6;
                prop_assert!(
                    (g - o).abs() <= tol,
                    "{isa:?} out[{i}][{r}] = {g}, oracle {o} (tol {tol})"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn prop_q8_fast_equals_its_oracle() {
    runner()
        .run(&case(), |c| {
            fast_equals_oracle(&c, |v| v)?;
            fast_equals_oracle(&c, bf16::from_f32)
        })
        .unwrap();
}

#[test]
fn prop_q8_fast_equals_its_oracle_for_batches_of_1_to_16() {
    runner()
        .run(&batch_case(), |c| {
            fast_equals_oracle(&c, |v| v)?;
            fast_equals_oracle(&c, bf16::from_f32)?;
            fast_equals_oracle(&c, half::f16::from_f32)
        })
        .unwrap();
}

#[test]
fn every_layout_holds_the_same_codes() {
    // 2 rows of 5 groups of 32 (160 inputs: one whole chunk of 128, one
    // ragged), a zero group included; each layout's codes are a permutation
    // of the natural ones, as documented
    let (cols, g) = (160usize, 32usize);
    let mut x: Vec<f32> = (0..2 * cols)
        .map(|k| ((k * 53) % 97) as f32 / 24.0 - 2.0)
        .collect();
    x[cols + 32..cols + 64].fill(0.0);
    let quantized = |layout| {
        let mut p = Q8Activations::default();
        p.quantize(&x, cols, g, layout);
        p
    };
    let nat = quantized(Layout::Natural);
    let pairs = quantized(Layout::Pairs32);
    let chunks = quantized(Layout::Chunks128);
    assert_eq!((nat.row_len, chunks.row_len), (160, 256));
    for i in 0..2 {
        for c in 0..cols {
            let want = nat.q[i * cols + c];
            let pair = i * cols + c / 32 * 32 + (c % 32) / 2 + (c % 2) * 16;
            assert_eq!(pairs.q[pair], want, "Pairs32 [{i}][{c}]");
            let (ch, o) = (c / 128, c % 128);
            let at = i * 256 + ch * 128 + (o % 2) * 64 + o / 2;
            assert_eq!(chunks.q[at], want, "Chunks128 [{i}][{c}]");
            // lane l of chunk ch covers inputs 128 ch + 8 l ..+ 8
            assert_eq!(
                chunks.lane_dx[i * 32 + c / 8],
                nat.scale[i * 5 + c / g],
                "lane_dx [{i}][{c}]"
            );
        }
        // the padding (chunk 1 holds inputs 128..160: 16 even at 128..144,
        // 16 odd at 192..208): zero codes, zero steps
        assert!(chunks.q[i * 256 + 144..i * 256 + 192]
            .iter()
            .all(|&q| q == 0));
        assert!(chunks.q[i * 256 + 208..i * 256 + 256]
            .iter()
            .all(|&q| q == 0));
        assert!(chunks.lane_dx[i * 32 + 20..i * 32 + 32]
            .iter()
            .all(|&d| d == 0.0));
    }
    assert_eq!(nat.scale[5 + 1], 0.0);
    // the AVX-512 quantizer: the same codes and steps, sums up to order
    #[cfg(target_arch = "x86_64")]
    if available().contains(&Isa::Avx512) {
        for g in [32usize, 64, 128] {
            let cols = 384;
            let x: Vec<f32> = (0..3 * cols)
                .map(|k| ((k * 31) % 89) as f32 / 13.0 - 3.3)
                .collect();
            let mut want = Q8Activations::default();
            want.quantize(&x, cols, g, Layout::Chunks128);
            let mut got = Q8Activations::default();
            // SAFETY: AVX-512 detected; 3 rows of 384, a multiple of g.
            unsafe { avx512::quantize_chunks(&mut got, &x, cols, g) };
            assert_eq!(got.q, want.q, "group {g}");
            assert_eq!(got.scale, want.scale, "group {g}");
            assert_eq!(got.lane_dx, want.lane_dx, "group {g}");
            assert_eq!(got.row_len, want.row_len);
            for (a, b) in got.sum.iter().zip(&want.sum) {
                assert!(
                    (a - b).abs() <= 1e-5 * g as f32,
                    "group {g}: sum {a} vs {b}"
                );
            }
        }
    }
}

#[test]
fn the_environment_picks_the_instruction_set() {
    let all = available();
    let best = *all.last().unwrap();
    assert_eq!(choose(Some("scalar"), &all), Isa::Portable);
    assert_eq!(choose(None, &all), best);
    assert_eq!(choose(Some("fast"), &all), best);
    assert_eq!(choose(Some("avx2"), &[Isa::Portable]), Isa::Portable);
    #[cfg(target_arch = "x86_64")]
    if all.contains(&Isa::Avx2) {
        assert_eq!(choose(Some("avx2"), &all), Isa::Avx2);
    }
}

#[test]
fn prop_q8_within_the_rounding_bound_of_the_exact_product() {
    runner()
        .run(&case(), |c| {
            let cols = c.groups * c.group_size;
            let w = QuantizedMatrix::new(
                &c.packed,
                &c.scales,
                &c.biases,
                c.rows,
                cols,
                c.group_size,
                c.bits,
            )
            .unwrap();
            let mut got = vec![0f32; c.m * c.rows];
            qmatmul_q8_scalar(&c.x, c.m, &w, &mut got).unwrap();
            for i in 0..c.m {
                let xi = &c.x[i * cols..(i + 1) * cols];
                for r in 0..c.rows {
                    let e = exact(xi, &w, r);
                    let bound = q8_error_bound(xi, &w, r, 1e-6) as f64;
                    let err = (got[i * c.rows + r] as f64 - e).abs();
                    prop_assert!(err <= bound, "out[{i}][{r}]: error {err} > bound {bound}");
                }
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn threaded_matrix_equals_the_oracle() {
    // 1024 x 512 at 4 bits (256 KB): split over rayon's threads.
    let (rows, cols, g) = (1024usize, 512usize, 64usize);
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let packed: Vec<u32> = (0..rows * cols / 8).map(|_| next() as u32).collect();
    let scales: Vec<bf16> = (0..rows * cols / g)
        .map(|i| bf16::from_f32(0.01 + (i % 7) as f32 * 1e-3))
        .collect();
    let biases: Vec<bf16> = (0..rows * cols / g)
        .map(|i| bf16::from_f32(-0.05 + (i % 5) as f32 * 1e-2))
        .collect();
    let x: Vec<f32> = (0..2 * cols)
        .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
        .collect();
    let w = QuantizedMatrix::new(&packed, &scales, &biases, rows, cols, g, 4).unwrap();
    let mut want = vec![0f32; 2 * rows];
    qmatmul_q8_scalar(&x, 2, &w, &mut want).unwrap();
    for (isa, m) in isas().into_iter().flat_map(|i| [(i, 1usize), (i, 2)]) {
        let mut got = vec![f32::NAN; m * rows];
        qmatmul_q8_on(isa, &x[..m * cols], m, &w, &mut got).unwrap();
        for (k, (a, b)) in got.iter().zip(&want).enumerate() {
            let (i, r) = (k / rows, k % rows);
            let tol = 1e-6 * magnitude(&x[i * cols..(i + 1) * cols], &w, r) + 1e-6;
            assert!(
                (a - b).abs() <= tol,
                "{isa:?} m {m}, out[{i}][{r}]: {a} vs {b}"
            );
        }
    }
}

#[test]
fn wrong_lengths_are_named() {
    let packed = vec![0u32; 4];
    let s = vec![1f32; 1];
    let w = QuantizedMatrix::new(&packed, &s, &s, 1, 32, 32, 4).unwrap();
    let e = qmatmul_q8(&[0.0; 31], 1, &w, &mut [0.0]).unwrap_err();
    assert!(e.to_string().starts_with("x: expected 32"), "{e}");
    let e = qmatmul_q8(&[0.0; 32], 1, &w, &mut [0.0; 2]).unwrap_err();
    assert!(e.to_string().starts_with("out: expected 1"), "{e}");
}
