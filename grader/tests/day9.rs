//! Day 9: quantized matmul I.
//!
//! `quantized_matmul` (MLX array ops) and `qmatmul_scalar` (plain Rust on
//! the packed buffers) against `mx.quantized_matmul` (fixtures/gen/day9.py:
//! M in {1, 2, 7, 32, 128}, I = 320 or 384, O = 100 or 200, 4 and 8 bits,
//! groups 32, 64 and 128, f32 and bf16 scales, f32 activations), hand-packed
//! words with hand-worked products, bad input, and properties against a
//! dense float64 reference that this file dequantizes by hand.

use mlx_rs::{Array, Dtype};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestCaseError;
use tiny_llm_common::qmatrix::{bf16, KernelError, QuantizedMatrix, Scale};
use tiny_llm_grader::compare::worst_element;
use tiny_llm_grader::imp::qmatmul_scalar::qmatmul_scalar;
use tiny_llm_grader::imp::quantized_matmul::quantized_matmul;
use tiny_llm_grader::prop::check as check_property;
use tiny_llm_grader::{assert_close, check_cases, ok, should_fail_naming, Case, Tol};

const DAY: &str = "day9";

// ---------------------------------------------------------------------------
// Helpers

/// Unwraps a kernel result like [`ok`] does a model one.
#[track_caller]
fn kernel_ok(r: Result<(), KernelError>) {
    if let Err(e) = r {
        panic!("[error] qmatmul_scalar returned an error: {e}");
    }
}

/// The elements of `a` (evaluated, row-major), as stored.
fn host<T: mlx_rs::ArrayElement + Copy>(what: &str, a: &Array) -> Vec<T> {
    let a = a
        .contiguous()
        .and_then(|a| a.eval().map(|_| a))
        .unwrap_or_else(|e| panic!("[fixture] cannot evaluate {what}: {e}"));
    a.try_as_slice::<T>()
        .unwrap_or_else(|e| panic!("[fixture] cannot read {what}: {e}"))
        .to_vec()
}

fn run_mlx(c: &Case) -> Array {
    let group_size = c.meta("group_size").expect("group_size");
    let bits = c.meta("bits").expect("bits");
    ok(
        "quantized_matmul",
        quantized_matmul(
            c.get("x"),
            c.get("w"),
            c.get("scales"),
            c.get("biases"),
            group_size,
            bits,
        ),
    )
}

/// `qmatmul_scalar` over the host buffers of `x` (`N.. x I`, f32), `w`,
/// `scales`, `biases` (f32 or bf16); returns `N.. x O` f32.
fn scalar_on_arrays(
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: &Array,
    group_size: usize,
    bits: u32,
) -> Array {
    let (rows, cols) = (w.dim(0) as usize, w.dim(1) as usize * 32 / bits as usize);
    let m = x.size() / cols;
    let xs = host::<f32>("x", x);
    let packed = host::<u32>("w", w);
    let mut out = vec![f32::NAN; m * rows];
    fn run<S: Scale + mlx_rs::ArrayElement>(
        xs: &[f32],
        m: usize,
        packed: &[u32],
        (scales, biases): (&Array, &Array),
        (rows, cols, group_size, bits): (usize, usize, usize, u32),
        out: &mut [f32],
    ) {
        let s = host::<S>("scales", scales);
        let b = host::<S>("biases", biases);
        let view = QuantizedMatrix::new(packed, &s, &b, rows, cols, group_size, bits)
            .unwrap_or_else(|e| panic!("[fixture] not a quantized matrix: {e}"));
        kernel_ok(qmatmul_scalar(xs, m, &view, out));
    }
    let dims = (rows, cols, group_size, bits);
    match scales.dtype() {
        Dtype::Float32 => run::<f32>(&xs, m, &packed, (scales, biases), dims, &mut out),
        Dtype::Bfloat16 => run::<bf16>(&xs, m, &packed, (scales, biases), dims, &mut out),
        d => panic!("[fixture] scales of dtype {d:?}"),
    }
    let mut shape = x.shape()[..x.ndim() - 1].to_vec();
    shape.push(rows as i32);
    Array::from_slice(&out, &shape)
}

fn run_scalar(c: &Case) -> Array {
    let group_size: usize = c.meta("group_size").expect("group_size");
    let bits: u32 = c.meta("bits").expect("bits");
    scalar_on_arrays(
        c.get("x"),
        c.get("w"),
        c.get("scales"),
        c.get("biases"),
        group_size,
        bits,
    )
}

/// Packs codes (each `< 2^bits`) into `u32` words, `32 / bits` to a word,
/// the first in the lowest bits.
fn pack(codes: &[u32], bits: u32) -> Vec<u32> {
    codes
        .chunks(32 / bits as usize)
        .map(|c| {
            c.iter()
                .enumerate()
                .fold(0u32, |w, (j, &q)| w | (q << (bits as usize * j)))
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Fixtures: mx.quantized_matmul

#[test]
fn quantized_matmul_4bit_f32() {
    check_cases(
        "quantized_matmul_4bit_f32",
        DAY,
        "qmm_b4_",
        "f32",
        "expected",
        run_mlx,
    );
}

#[test]
fn quantized_matmul_8bit_f32() {
    check_cases(
        "quantized_matmul_8bit_f32",
        DAY,
        "qmm_b8_",
        "f32",
        "expected",
        run_mlx,
    );
}

/// bf16 scales and biases (as mlx-lm stores real 4-bit models) with f32
/// activations: the output is f32.
#[test]
fn quantized_matmul_bf16_scales() {
    check_cases(
        "quantized_matmul_bf16_scales",
        DAY,
        "qmm_",
        "bf16",
        "expected",
        run_mlx,
    );
}

#[test]
fn qmatmul_scalar_4bit_f32() {
    check_cases(
        "qmatmul_scalar_4bit_f32",
        DAY,
        "qmm_b4_",
        "f32",
        "expected",
        run_scalar,
    );
}

#[test]
fn qmatmul_scalar_8bit_f32() {
    check_cases(
        "qmatmul_scalar_8bit_f32",
        DAY,
        "qmm_b8_",
        "f32",
        "expected",
        run_scalar,
    );
}

#[test]
fn qmatmul_scalar_bf16_scales() {
    check_cases(
        "qmatmul_scalar_bf16_scales",
        DAY,
        "qmm_",
        "bf16",
        "expected",
        run_scalar,
    );
}

// ---------------------------------------------------------------------------
// Hand-packed words

/// A hand-packed 4-bit `2 x 64` matrix, group 32, and its products.
///
/// Row 0: codes `q_i = i % 16`; group 0 has scale 2, bias -1 (`w = 2q - 1`),
/// group 1 scale 0.5, bias 1 (`w = q / 2 + 1`). Row 1: every code 15
/// (words `0xFFFFFFFF`), scale 1, bias 0 (`w = 15`).
/// x row 0 = all ones: `y00 = (2 * 240 - 32) + (240 / 2 + 32) = 448 + 152
/// = 600` (each group holds 0..15 twice, which sum to 240), `y01 = 64 * 15
/// = 960`. x row 1 = 1 at input 5 and 2 at input 40 (code 40 % 16 = 8):
/// `y10 = (2 * 5 - 1) + 2 * (8 / 2 + 1) = 19`, `y11 = 15 + 2 * 15 = 45`.
struct Hand {
    packed: Vec<u32>,
    scales: Vec<f32>,
    biases: Vec<f32>,
    x: Vec<f32>,
    want: [f32; 4],
}

fn hand_4bit() -> Hand {
    let mut codes: Vec<u32> = (0..64).map(|i| i % 16).collect();
    codes.extend(std::iter::repeat_n(15, 64));
    let packed = pack(&codes, 4);
    assert_eq!(packed[0], 0x7654_3210);
    assert_eq!(packed[8], 0xFFFF_FFFF);
    let mut x = vec![1.0f32; 64];
    x.extend(std::iter::repeat_n(0.0, 64));
    x[64 + 5] = 1.0;
    x[64 + 40] = 2.0;
    Hand {
        packed,
        scales: vec![2.0, 0.5, 1.0, 1.0],
        biases: vec![-1.0, 1.0, 0.0, 0.0],
        x,
        want: [600.0, 960.0, 19.0, 45.0],
    }
}

/// A hand-packed 8-bit `1 x 32` matrix, group 32: word 0 is `0xFF800100`,
/// codes 0, 1, 128, 255 (lowest byte first), the other words 0; scale 0.25,
/// bias -2. x = 1 at inputs 0..4 and 31: `y = 0.25 * (0 + 1 + 128 + 255) -
/// 4 * 2 + (0.25 * 0 - 2) = 96 - 8 - 2 = 86`.
fn hand_8bit() -> (Vec<u32>, Vec<f32>, f32) {
    let mut packed = vec![0u32; 8];
    packed[0] = 0xFF80_0100;
    let mut x = vec![0.0f32; 32];
    for i in [0, 1, 2, 3, 31] {
        x[i] = 1.0;
    }
    (packed, x, 86.0)
}

#[test]
fn quantized_matmul_hand_packed_word() {
    let test = "quantized_matmul_hand_packed_word";
    let h = hand_4bit();
    let w = Array::from_slice(&h.packed, &[2, 8]);
    let s = Array::from_slice(&h.scales, &[2, 2]);
    let b = Array::from_slice(&h.biases, &[2, 2]);
    let x = Array::from_slice(&h.x, &[2, 64]);
    let got = ok("quantized_matmul", quantized_matmul(&x, &w, &s, &b, 32, 4));
    let want = Array::from_slice(&h.want, &[2, 2]);
    let tol = Tol::for_day(DAY, Dtype::Float32);
    assert_close(test, "hand 4-bit 2 x 64", "y", &got, &want, tol);

    // one row as a 1-D x: a 1-D y
    let x0 = Array::from_slice(&h.x[..64], &[64]);
    let got = ok("quantized_matmul", quantized_matmul(&x0, &w, &s, &b, 32, 4));
    let want = Array::from_slice(&h.want[..2], &[2]);
    assert_close(test, "hand 4-bit, 1-D x", "y", &got, &want, tol);

    let (packed, x, y) = hand_8bit();
    let w = Array::from_slice(&packed, &[1, 8]);
    let s = Array::from_slice(&[0.25f32], &[1, 1]);
    let b = Array::from_slice(&[-2.0f32], &[1, 1]);
    let x = Array::from_slice(&x, &[1, 1, 32]);
    let got = ok("quantized_matmul", quantized_matmul(&x, &w, &s, &b, 32, 8));
    let want = Array::from_slice(&[y], &[1, 1, 1]);
    assert_close(test, "hand 8-bit 1 x 32", "y", &got, &want, tol);
}

#[test]
fn qmatmul_scalar_hand_packed_word() {
    let test = "qmatmul_scalar_hand_packed_word";
    let h = hand_4bit();
    let view = QuantizedMatrix::new(&h.packed, &h.scales, &h.biases, 2, 64, 32, 4).unwrap();
    // a dirty output buffer: the kernel must overwrite it
    let mut out = vec![7.0f32; 4];
    kernel_ok(qmatmul_scalar(&h.x, 2, &view, &mut out));
    let tol = Tol::for_day(DAY, Dtype::Float32);
    let (got, want) = (
        Array::from_slice(&out, &[2, 2]),
        Array::from_slice(&h.want, &[2, 2]),
    );
    assert_close(test, "hand 4-bit 2 x 64", "out", &got, &want, tol);

    // bf16 scales hold 2, 0.5, 1, -1 exactly: the same products
    let sb: Vec<bf16> = h.scales.iter().map(|&v| bf16::from_f32(v)).collect();
    let bb: Vec<bf16> = h.biases.iter().map(|&v| bf16::from_f32(v)).collect();
    let view = QuantizedMatrix::new(&h.packed, &sb, &bb, 2, 64, 32, 4).unwrap();
    let mut out = vec![7.0f32; 4];
    kernel_ok(qmatmul_scalar(&h.x, 2, &view, &mut out));
    let got = Array::from_slice(&out, &[2, 2]);
    assert_close(test, "hand 4-bit, bf16 scales", "out", &got, &want, tol);

    let (packed, x, y) = hand_8bit();
    let view = QuantizedMatrix::new(&packed, &[0.25f32], &[-2.0f32], 1, 32, 32, 8).unwrap();
    let mut out = [f32::NAN];
    kernel_ok(qmatmul_scalar(&x, 1, &view, &mut out));
    let (got, want) = (
        Array::from_slice(&out, &[1, 1]),
        Array::from_slice(&[y], &[1, 1]),
    );
    assert_close(test, "hand 8-bit 1 x 32", "out", &got, &want, tol);
}

/// The output dtype is `mx.quantized_matmul`'s: the promotion of x's,
/// the scales' and the biases' dtypes (f16 with bf16 gives f32). The hand
/// products are exact in every dtype.
#[test]
fn quantized_matmul_dtype_rules() {
    let h = hand_4bit();
    let w = Array::from_slice(&h.packed, &[2, 8]);
    let x = Array::from_slice(&h.x, &[2, 64]);
    let s = Array::from_slice(&h.scales, &[2, 2]);
    let b = Array::from_slice(&h.biases, &[2, 2]);
    let want = Array::from_slice(&h.want, &[2, 2]);
    use Dtype::{Bfloat16 as BF16, Float16 as F16, Float32 as F32};
    for (xd, sd, out) in [
        (F32, BF16, F32),
        (BF16, F32, F32),
        (BF16, BF16, BF16),
        (F16, F16, F16),
        (F16, BF16, F32),
    ] {
        let cast = |a: &Array, d| a.as_dtype(d).unwrap();
        let got = ok(
            "quantized_matmul",
            quantized_matmul(&cast(&x, xd), &w, &cast(&s, sd), &cast(&b, sd), 32, 4),
        );
        let case = format!("x {xd:?}, scales and biases {sd:?}");
        assert_close(
            "quantized_matmul_dtype_rules",
            &case,
            "y",
            &got,
            &cast(&want, out),
            Tol::for_day(DAY, out),
        );
    }
}

// ---------------------------------------------------------------------------
// Bad input

/// Unsupported bits or group sizes, wrong dtypes and shapes that do not fit
/// are errors naming what was wrong, not panics in MLX.
#[test]
fn quantized_matmul_rejects_bad_input() {
    let w = Array::from_slice(&[0u32; 16], &[2, 8]); // 2 x 64 four-bit codes
    let s = Array::from_slice(&[1.0f32; 4], &[2, 2]); // group 32
    let b = Array::from_slice(&[0.0f32; 4], &[2, 2]);
    let x = Array::from_slice(&[0.5f32; 3 * 64], &[3, 64]);
    let f32_w = w.as_dtype(Dtype::Float32).unwrap();
    let int_x = x.as_dtype(Dtype::Int32).unwrap();
    let int_s = s.as_dtype(Dtype::Int32).unwrap();
    let s21 = Array::from_slice(&[1.0f32; 2], &[2, 1]);
    let b12 = Array::from_slice(&[0.0f32; 2], &[1, 2]);
    let x63 = Array::from_slice(&[0.5f32; 3 * 63], &[3, 63]);
    let w1d = Array::from_slice(&[0u32; 8], &[8]);
    let scalar_x = Array::from_f32(1.0);
    let call = "quantized_matmul";
    let bad: Vec<(&str, _, &[&str])> = vec![
        (
            "bits = 3",
            quantized_matmul(&x, &w, &s, &b, 32, 3),
            &["bits"],
        ),
        (
            "group_size = 48",
            quantized_matmul(&x, &w, &s, &b, 48, 4),
            &["group_size"],
        ),
        (
            "group_size = 128 with I = 64",
            quantized_matmul(&x, &w, &s, &b, 128, 4),
            &["group_size"],
        ),
        (
            "a float32 w",
            quantized_matmul(&x, &f32_w, &s, &b, 32, 4),
            &["uint32"],
        ),
        (
            "an int32 x",
            quantized_matmul(&int_x, &w, &s, &b, 32, 4),
            &["x"],
        ),
        (
            "int32 scales",
            quantized_matmul(&x, &w, &int_s, &b, 32, 4),
            &["scales"],
        ),
        (
            "scales 2 x 1",
            quantized_matmul(&x, &w, &s21, &b, 32, 4),
            &["scales"],
        ),
        (
            "biases 1 x 2",
            quantized_matmul(&x, &w, &s, &b12, 32, 4),
            &["biases"],
        ),
        (
            "x with I = 63",
            quantized_matmul(&x63, &w, &s, &b, 32, 4),
            &["x", "64"],
        ),
        ("a 1-D w", quantized_matmul(&x, &w1d, &s, &b, 32, 4), &["w"]),
        (
            "a 0-D x",
            quantized_matmul(&scalar_x, &w, &s, &b, 32, 4),
            &["x"],
        ),
    ];
    for (what, r, needles) in bad {
        should_fail_naming(call, &format!("{call} with {what}"), r, needles);
    }
}

/// `x` or `out` of the wrong length is a `KernelError::Length` naming it.
#[test]
fn qmatmul_scalar_rejects_bad_lengths() {
    let packed = [0u32; 16];
    let s = [1.0f32; 4];
    let view = QuantizedMatrix::new(&packed, &s, &s, 2, 64, 32, 4).unwrap();
    let call = "qmatmul_scalar";
    let x = [0.5f32; 3 * 64];
    let mut out = [0.0f32; 6];
    let mut short = [0.0f32; 5];
    let r = qmatmul_scalar(&x[..190], 3, &view, &mut out);
    should_fail_naming(
        call,
        "x of 190 elements for M x I = 3 x 64",
        r,
        &["x", "192"],
    );
    let r = qmatmul_scalar(&x, 3, &view, &mut short);
    should_fail_naming(
        call,
        "out of 5 elements for M x O = 3 x 2",
        r,
        &["out", "6"],
    );
    let r = qmatmul_scalar(&x, 2, &view, &mut out);
    should_fail_naming(call, "m = 2 with x of 3 rows", r, &["x", "128"]);
}

// ---------------------------------------------------------------------------
// Properties: both equal a dense float64 reference

/// splitmix64: the test's own deterministic generator, seeded by proptest.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[lo, hi)`.
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }
}

/// A random quantized problem and its dense float64 product.
#[derive(Debug)]
struct Problem {
    m: usize,
    rows: usize,
    cols: usize,
    group: usize,
    bits: u32,
    bf16_scales: bool,
    x: Vec<f32>,
    packed: Vec<u32>,
    scales: Vec<f32>,
    biases: Vec<f32>,
    /// `m x rows`: `sum_i x[r][i] * (s * q + b)` in float64.
    want: Vec<f64>,
}

fn problem(
    (bits, group, groups, rows, m, bf16_scales, seed): (u32, usize, usize, usize, usize, bool, u64),
) -> Problem {
    let mut rng = Rng(seed);
    let cols = groups * group;
    let n_codes = 1u64 << bits;
    let codes: Vec<u32> = (0..rows * cols)
        .map(|_| (rng.next() % n_codes) as u32)
        .collect();
    // scales so that s * q spans about [0, 3], as mx.quantize's would for
    // weights of that range
    let top = 3.0 / (n_codes - 1) as f32;
    let round = |v: f32| {
        if bf16_scales {
            bf16::from_f32(v).to_f32()
        } else {
            v
        }
    };
    let scales: Vec<f32> = (0..rows * groups)
        .map(|_| round(rng.uniform(0.2 * top, top)))
        .collect();
    let biases: Vec<f32> = (0..rows * groups)
        .map(|_| round(rng.uniform(-2.0, 0.5)))
        .collect();
    let x: Vec<f32> = (0..m * cols).map(|_| rng.uniform(-1.0, 1.0)).collect();
    let mut want = vec![0.0f64; m * rows];
    for r in 0..m {
        for o in 0..rows {
            want[r * rows + o] = (0..cols)
                .map(|i| {
                    let g = o * groups + i / group;
                    let w = scales[g] as f64 * codes[o * cols + i] as f64 + biases[g] as f64;
                    x[r * cols + i] as f64 * w
                })
                .sum();
        }
    }
    Problem {
        m,
        rows,
        cols,
        group,
        bits,
        bf16_scales,
        x,
        packed: pack(&codes, bits),
        scales,
        biases,
        want,
    }
}

fn problems() -> impl Strategy<Value = Problem> {
    (
        select(vec![4u32, 8]),
        select(vec![32usize, 64, 128]),
        1usize..=4,
        1usize..=24,
        1usize..=9,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(problem)
}

/// `got` (`m x rows`, f32) against the float64 product at the day's f32
/// tolerance.
fn close_to_dense(p: &Problem, got: &[f32]) -> Result<(), TestCaseError> {
    let got: Vec<f64> = got.iter().map(|&v| v as f64).collect();
    let shape = [p.m as i32, p.rows as i32];
    let tol = Tol::for_day(DAY, Dtype::Float32);
    if let Some(w) = worst_element(&got, &p.want, &shape, tol) {
        return Err(TestCaseError::fail(format!(
            "{} of {} outputs differ from the dense product; worst at {:?}: got {}, expected {} \
             (|got - expected| <= {} + {} * |expected|)",
            w.failing, w.total, w.index, w.got, w.expected, tol.atol, tol.rtol
        )));
    }
    Ok(())
}

fn scale_array(p: &Problem, v: &[f32]) -> Array {
    let a = Array::from_slice(v, &[p.rows as i32, (p.cols / p.group) as i32]);
    if p.bf16_scales {
        a.as_dtype(Dtype::Bfloat16).unwrap()
    } else {
        a
    }
}

/// `quantized_matmul` equals `x W^T` with `W` dequantized by hand, in
/// float64, for random bit widths, group sizes, shapes and codes.
#[test]
fn prop_quantized_matmul_matches_dense_reference() {
    check_property(
        "prop_quantized_matmul_matches_dense_reference",
        48,
        problems(),
        |p| {
            let x = Array::from_slice(&p.x, &[p.m as i32, p.cols as i32]);
            let w = Array::from_slice(
                &p.packed,
                &[p.rows as i32, (p.cols * p.bits as usize / 32) as i32],
            );
            let (s, b) = (scale_array(&p, &p.scales), scale_array(&p, &p.biases));
            let y = ok(
                "quantized_matmul",
                quantized_matmul(&x, &w, &s, &b, p.group as i32, p.bits as i32),
            );
            prop_assert_eq!(y.shape(), &[p.m as i32, p.rows as i32][..]);
            prop_assert_eq!(y.dtype(), Dtype::Float32);
            close_to_dense(&p, &host::<f32>("y", &y))
        },
    );
}

/// `qmatmul_scalar` equals the same hand-dequantized float64 product.
#[test]
fn prop_qmatmul_scalar_matches_dense_reference() {
    check_property(
        "prop_qmatmul_scalar_matches_dense_reference",
        96,
        problems(),
        |p| {
            let mut out = vec![f32::NAN; p.m * p.rows];
            if p.bf16_scales {
                let s: Vec<bf16> = p.scales.iter().map(|&v| bf16::from_f32(v)).collect();
                let b: Vec<bf16> = p.biases.iter().map(|&v| bf16::from_f32(v)).collect();
                let view = QuantizedMatrix::new(&p.packed, &s, &b, p.rows, p.cols, p.group, p.bits)
                    .unwrap();
                kernel_ok(qmatmul_scalar(&p.x, p.m, &view, &mut out));
            } else {
                let view = QuantizedMatrix::new(
                    &p.packed, &p.scales, &p.biases, p.rows, p.cols, p.group, p.bits,
                )
                .unwrap();
                kernel_ok(qmatmul_scalar(&p.x, p.m, &view, &mut out));
            }
            close_to_dense(&p, &out)
        },
    );
}
