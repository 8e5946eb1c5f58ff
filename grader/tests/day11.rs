//! Day 11: fused kernels (RMSNorm, RoPE, SwiGLU, softmax) on the CPU.
//!
//! - `fused::*` against MLX's fast ops (fixtures/gen/day11.py:
//!   `mx.fast.rms_norm`, `mx.fast.rope` with one offset per batch row,
//!   `nn.silu(g) * u`, `mx.softmax`), f32 and bf16, odd widths, `-inf`
//!   entries and a fully masked row; bad input is a clear error.
//! - The kernels on slices: hand-worked values for the scalar oracles and the
//!   fast kernels; properties: every fast kernel, on every instruction set this
//!   CPU has, equals its scalar oracle within the bound its doc derives (RoPE:
//!   bit for bit); inputs large enough to be split over threads.
//! - Against week 1 (day 1's softmax, day 2's RoPE, day 4's RmsNorm, day 4's
//!   silu): properties on random shapes, at the day's f32 tolerance.
//! - The week-2 model with `Week2Kernels { fused: true, .. }`: the tiny Qwen2
//!   (dense and 4-bit) gives mlx-lm's logits (day 8's and day 10's fixtures),
//!   and the bridge counts the expected number of fused kernel calls.
//! - On a GPU (`gpu_*`): the CUDA kernels of `fused_gpu` against the week-1
//!   ops (f32, bf16, f16; RoPE with one offset per row), at the day's
//!   `[day.tolerance_gpu]`, and the model with
//!   `Week2Kernels { fused: true, .. }.on_gpu()` against mlx-lm at
//!   `[tolerance.logprobs_gpu]`; skipped without a usable GPU. Their
//!   argument checks run everywhere.

use mlx_rs::ops::indexing::TryIndexOp;
use mlx_rs::{Array, Dtype};
use proptest::prelude::*;
use tiny_llm_common::{cpu_bridge, Checkpoint, Qwen2Config, Week2Kernels};
use tiny_llm_grader::compare::values_f64;
use tiny_llm_grader::device::{require_gpu, skip};
use tiny_llm_grader::fixture::checked_dir;
use tiny_llm_grader::gpu_check::{cast_to, check_gpu, seeded};
use tiny_llm_grader::imp::basics::softmax as softmax_week1;
use tiny_llm_grader::imp::fused;
use tiny_llm_grader::imp::fused_cpu::{self, available_isas, Isa, RopeTables};
use tiny_llm_grader::imp::fused_gpu;
use tiny_llm_grader::imp::layer_norm::RmsNorm;
use tiny_llm_grader::imp::mlp::silu;
use tiny_llm_grader::imp::positional_encoding::RoPE;
use tiny_llm_grader::imp::qwen2_week2::Qwen2ModelWeek2;
use tiny_llm_grader::{assert_close, check_cases, ok, prop, should_fail_naming, Case, Tol};

const DAY: &str = "day11";
const U: f64 = f32::EPSILON as f64;

// ---- against MLX's fast ops -------------------------------------------------

fn run_rms_norm(c: &Case) -> Array {
    let eps: f32 = c.meta("eps").expect("eps");
    ok(
        "fused::rms_norm",
        fused::rms_norm(c.get("x"), c.get("weight"), eps),
    )
}

fn run_rope(c: &Case) -> Array {
    let m = |k: &str| -> String {
        c.meta(k)
            .unwrap_or_else(|| panic!("[fixture] {}: {k}", c.id))
    };
    let rope = ok(
        "RoPE::new",
        RoPE::new(
            m("dims").parse().unwrap(),
            m("seq_len").parse().unwrap(),
            m("base").parse().unwrap(),
            m("traditional") == "true",
        ),
    );
    let offsets: Vec<i32> = m("offsets")
        .split(',')
        .map(|o| o.parse().unwrap())
        .collect();
    ok(
        "fused::rope",
        fused::rope(c.get("x"), view(&rope), &offsets),
    )
}

fn run_swiglu(c: &Case) -> Array {
    ok("fused::swiglu", fused::swiglu(c.get("gate"), c.get("up")))
}

fn run_softmax(c: &Case) -> Array {
    ok("fused::softmax", fused::softmax(c.get("x")))
}

#[test]
fn rms_norm_f32() {
    check_cases(
        "rms_norm_f32",
        DAY,
        "rms_norm_",
        "f32",
        "expected",
        run_rms_norm,
    );
}

#[test]
fn rms_norm_bf16() {
    check_cases(
        "rms_norm_bf16",
        DAY,
        "rms_norm_",
        "bf16",
        "expected",
        run_rms_norm,
    );
}

#[test]
fn rope_f32() {
    check_cases("rope_f32", DAY, "rope_", "f32", "expected", run_rope);
}

#[test]
fn rope_bf16() {
    check_cases("rope_bf16", DAY, "rope_", "bf16", "expected", run_rope);
}

#[test]
fn swiglu_f32() {
    check_cases("swiglu_f32", DAY, "swiglu_", "f32", "expected", run_swiglu);
}

#[test]
fn swiglu_bf16() {
    check_cases(
        "swiglu_bf16",
        DAY,
        "swiglu_",
        "bf16",
        "expected",
        run_swiglu,
    );
}

/// Includes `softmax_allmasked_f32`: a row of all `-inf` must be NaN.
#[test]
fn softmax_f32() {
    check_cases(
        "softmax_f32",
        DAY,
        "softmax_",
        "f32",
        "expected",
        run_softmax,
    );
}

#[test]
fn softmax_bf16() {
    check_cases(
        "softmax_bf16",
        DAY,
        "softmax_",
        "bf16",
        "expected",
        run_softmax,
    );
}

// ---- bad input ----------------------------------------------------------------

fn f32s(shape: &[i32]) -> Array {
    let n: i32 = shape.iter().product();
    Array::from_slice(&vec![0.5f32; n as usize], shape)
}

#[test]
fn rms_norm_rejects_bad_input() {
    let x = f32s(&[2, 8]);
    let call = "fused::rms_norm";
    should_fail_naming(
        call,
        "weight of 7 for E = 8",
        fused::rms_norm(&x, &f32s(&[7]), 1e-6),
        &["weight", "8"],
    );
    should_fail_naming(
        call,
        "2-D weight",
        fused::rms_norm(&x, &f32s(&[1, 8]), 1e-6),
        &["weight"],
    );
    should_fail_naming(
        call,
        "eps = 0",
        fused::rms_norm(&x, &f32s(&[8]), 0.0),
        &["eps"],
    );
    let ints = Array::from_slice(&[1i32; 8], &[1, 8]);
    should_fail_naming(
        call,
        "int32 x",
        fused::rms_norm(&ints, &f32s(&[8]), 1e-6),
        &["x"],
    );
}

#[test]
fn rope_rejects_bad_input() {
    let call = "fused::rope";
    let rope = ok("RoPE::new", RoPE::new(8, 16, 10000.0, false));
    let x = f32s(&[2, 3, 2, 8]);
    should_fail_naming(
        call,
        "3-D x",
        fused::rope(&f32s(&[3, 2, 8]), view(&rope), &[0]),
        &["x"],
    );
    should_fail_naming(
        call,
        "D = 6 for dims 8",
        fused::rope(&f32s(&[2, 3, 2, 6]), view(&rope), &[0]),
        &["x", "8"],
    );
    should_fail_naming(
        call,
        "3 offsets for N = 2",
        fused::rope(&x, view(&rope), &[0, 1, 2]),
        &["offsets", "2"],
    );
    should_fail_naming(
        call,
        "row 1 at 14..17 of 16",
        fused::rope(&x, view(&rope), &[0, 14]),
        &["row 1", "16"],
    );
    should_fail_naming(
        call,
        "a negative offset",
        fused::rope(&x, view(&rope), &[-1]),
        &["row 0"],
    );
}

#[test]
fn swiglu_rejects_mismatched_shapes() {
    should_fail_naming(
        "fused::swiglu",
        "gate 2 x 8, up 2 x 7",
        fused::swiglu(&f32s(&[2, 8]), &f32s(&[2, 7])),
        &["up"],
    );
}

#[test]
fn softmax_rejects_bad_input() {
    let call = "fused::softmax";
    should_fail_naming(call, "0-D x", fused::softmax(&Array::from_f32(1.0)), &["x"]);
    let ints = Array::from_slice(&[1i32; 4], &[1, 4]);
    should_fail_naming(call, "int32 x", fused::softmax(&ints), &["x"]);
}

// ---- the kernels on slices ------------------------------------------------------

/// Every fast path this CPU runs (portable always; AVX2 + FMA where present).
fn isas() -> Vec<Isa> {
    available_isas()
}

#[track_caller]
fn expect_near(what: &str, got: &[f32], want: &[f32]) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-6 * w.abs().max(1.0),
            "[wrong numbers] {what}: element {i} is {g}, expected {w}; all: {got:?}"
        );
    }
}

/// `x = [2, 2, 2, 2]`, weight `[1, 2, 3, 4]`, eps 5: `mean(x^2) + eps = 9`, so
/// the row is `2/3 * weight`; softmax of `[0, ln 3]` is `[1/4, 3/4]` and a
/// masked entry gets 0; `silu(ln 3) = ln 3 / (1 + 1/3) = 0.75 ln 3`; RoPE by
/// 90 degrees (cos 0, sin 1) maps `(x1, x2)` to `(-x2, x1)`.
#[test]
fn kernels_hand_worked() {
    let l3 = 3f32.ln();
    for isa in isas() {
        let mut out = [0f32; 8];
        let (x, w) = ([2f32; 8], [1f32, 2.0, 3.0, 4.0]);
        let want = [2.0 / 3.0, 4.0 / 3.0, 2.0, 8.0 / 3.0];
        fused_cpu::rms_norm_scalar(&x, &w, 5.0, &mut out).unwrap();
        expect_near("rms_norm_scalar", &out, &[want, want].concat());
        fused_cpu::rms_norm(isa, &x, &w, 5.0, &mut out).unwrap();
        expect_near(&format!("rms_norm ({isa:?})"), &out, &[want, want].concat());

        let x = [0.0, l3, f32::NEG_INFINITY, 0.0, l3, 0.0];
        let want = [0.25, 0.75, 0.0, 0.2, 0.6, 0.2];
        let mut out = [0f32; 6];
        fused_cpu::softmax_scalar(&x, 3, &mut out).unwrap();
        expect_near("softmax_scalar", &out, &want);
        fused_cpu::softmax(isa, &x, 3, &mut out).unwrap();
        expect_near(&format!("softmax ({isa:?})"), &out, &want);

        let (g, u) = ([l3, 0.0, -l3], [1.0, 5.0, 2.0]);
        let want = [0.75 * l3, 0.0, 2.0 * -l3 / 4.0];
        let mut out = [0f32; 3];
        fused_cpu::swiglu_scalar(&g, &u, &mut out).unwrap();
        expect_near("swiglu_scalar", &out, &want);
        fused_cpu::swiglu(isa, &g, &u, &mut out).unwrap();
        expect_near(&format!("swiglu ({isa:?})"), &out, &want);

        // one token, one head, D = 4 (two pairs), position 1 of 2
        let (cos, sin) = ([1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 1.0]);
        let x = [1.0, 2.0, 3.0, 4.0];
        for (trad, want) in [
            (false, [-3.0, -4.0, 1.0, 2.0]),
            (true, [-2.0, 1.0, -4.0, 3.0]),
        ] {
            let t = RopeTables {
                cos: &cos,
                sin: &sin,
                dims: 4,
                traditional: trad,
            };
            let mut out = [0f32; 4];
            fused_cpu::rope_scalar(&x, [1, 1, 1], &t, &[1], &mut out).unwrap();
            expect_near(&format!("rope_scalar (traditional {trad})"), &out, &want);
            fused_cpu::rope(isa, &x, [1, 1, 1], &t, &[1], &mut out).unwrap();
            expect_near(&format!("rope ({isa:?}, traditional {trad})"), &out, &want);
        }
    }
}

/// Wrong lengths are errors naming the slice, not panics or stray writes.
#[test]
fn kernels_reject_bad_lengths() {
    let call = "fused_cpu";
    let isa = fused_cpu::isa();
    let mut out = [0f32; 8];
    should_fail_naming(
        call,
        "x of 7 for E = 4",
        fused_cpu::rms_norm(isa, &[0.0; 7], &[1.0; 4], 1e-6, &mut out[..7]),
        &["x", "4"],
    );
    should_fail_naming(
        call,
        "out of 6 for 8",
        fused_cpu::rms_norm_scalar(&[0.0; 8], &[1.0; 4], 1e-6, &mut out[..6]),
        &["out"],
    );
    should_fail_naming(
        call,
        "up of 7 for 8",
        fused_cpu::swiglu(isa, &[0.0; 8], &[0.0; 7], &mut out),
        &["up"],
    );
    should_fail_naming(
        call,
        "S = 0",
        fused_cpu::softmax(isa, &[0.0; 8], 0, &mut out),
        &["S"],
    );
    let t = RopeTables {
        cos: &[1.0; 4],
        sin: &[0.0; 4],
        dims: 4,
        traditional: false,
    };
    should_fail_naming(
        call,
        "x of 8 for 1 x 1 x 1 x 4",
        fused_cpu::rope(isa, &[0.0; 8], [1, 1, 1], &t, &[0], &mut out),
        &["x"],
    );
    should_fail_naming(
        call,
        "2 offsets for N = 3",
        fused_cpu::rope(isa, &[0.0; 12], [3, 1, 1], &t, &[0, 0], &mut [0.0; 12]),
        &["offsets"],
    );
    should_fail_naming(
        call,
        "position 2 of a 2-row table",
        fused_cpu::rope_scalar(&[0.0; 4], [1, 1, 1], &t, &[2], &mut out[..4]),
        &["row 0"],
    );
}

/// `|fast - oracle| <= k * |oracle| + abs` element by element, NaN where
/// the oracle has NaN.
fn within(what: &str, fast: &[f32], oracle: &[f32], k: f64, abs: f64) -> Result<(), TestCaseError> {
    for (i, (&f, &o)) in fast.iter().zip(oracle).enumerate() {
        if o.is_nan() || !o.is_finite() {
            prop_assert!(
                f.is_nan() == o.is_nan() && (o.is_nan() || f == o),
                "{}: element {} is {}, the oracle's {}",
                what,
                i,
                f,
                o
            );
            continue;
        }
        let allowed = k * (o as f64).abs() + abs;
        prop_assert!(
            ((f - o) as f64).abs() <= allowed,
            "{}: element {} is {}, the oracle's {} (allowed {:.2e})",
            what,
            i,
            f,
            o,
            allowed
        );
    }
    Ok(())
}

/// RMSNorm: the two sums of squares differ by at most `(E - 1) u` and
/// `(E / 8 + 10) u` of the sum (u = 2^-23), the root halves that, the rest
/// is the same operations: `(E + 8) u` relative.
fn rms_norm_case(isa: Isa, x: &[f32], w: &[f32]) -> Result<(), TestCaseError> {
    let (mut f, mut o) = (vec![f32::NAN; x.len()], vec![f32::NAN; x.len()]);
    fused_cpu::rms_norm(isa, x, w, 1e-6, &mut f)
        .unwrap_or_else(|e| panic!("[error] rms_norm: {e}"));
    fused_cpu::rms_norm_scalar(x, w, 1e-6, &mut o)
        .unwrap_or_else(|e| panic!("[error] rms_norm_scalar: {e}"));
    within(
        &format!("rms_norm ({isa:?}), E = {}", w.len()),
        &f,
        &o,
        (w.len() + 8) as f64 * U,
        1e-30,
    )
}

/// RoPE: the same products and sums in the same order: bit for bit.
fn rope_case(
    isa: Isa,
    x: &[f32],
    shape: [usize; 3],
    t: &RopeTables<'_>,
    offsets: &[usize],
) -> Result<(), TestCaseError> {
    let (mut f, mut o) = (vec![f32::NAN; x.len()], vec![f32::NAN; x.len()]);
    fused_cpu::rope(isa, x, shape, t, offsets, &mut f)
        .unwrap_or_else(|e| panic!("[error] rope: {e}"));
    fused_cpu::rope_scalar(x, shape, t, offsets, &mut o)
        .unwrap_or_else(|e| panic!("[error] rope_scalar: {e}"));
    within(
        &format!("rope ({isa:?}), {shape:?} x {}", t.dims),
        &f,
        &o,
        0.0,
        0.0,
    )
}

/// SwiGLU: `exp` within 2 ulp, then `1 + e`, a division and a product:
/// `8 u` relative; where `gate < -88.3` the fast result is 0 and the exact
/// one under `4e-37 |up|` (so `1e-35` absolute for `|up| <= 10`).
fn swiglu_case(isa: Isa, g: &[f32], u: &[f32]) -> Result<(), TestCaseError> {
    let (mut f, mut o) = (vec![f32::NAN; g.len()], vec![f32::NAN; g.len()]);
    fused_cpu::swiglu(isa, g, u, &mut f).unwrap_or_else(|e| panic!("[error] swiglu: {e}"));
    fused_cpu::swiglu_scalar(g, u, &mut o).unwrap_or_else(|e| panic!("[error] swiglu_scalar: {e}"));
    within(
        &format!("swiglu ({isa:?}), {} elements", g.len()),
        &f,
        &o,
        8.0 * U,
        1e-35,
    )
}

/// Softmax: the sums of `s` positive terms in two orders (`(s - 1) u` and
/// `(s / 8 + 10) u`), the `exp`s (2 ulp and 1), the reciprocal: `(9 s / 8 +
/// 10) u` relative; terms whose exact value is subnormal may be 0 (1e-37).
fn softmax_case(isa: Isa, x: &[f32], s: usize) -> Result<(), TestCaseError> {
    let (mut f, mut o) = (vec![f32::NAN; x.len()], vec![f32::NAN; x.len()]);
    fused_cpu::softmax(isa, x, s, &mut f).unwrap_or_else(|e| panic!("[error] softmax: {e}"));
    fused_cpu::softmax_scalar(x, s, &mut o)
        .unwrap_or_else(|e| panic!("[error] softmax_scalar: {e}"));
    within(
        &format!("softmax ({isa:?}), S = {s}"),
        &f,
        &o,
        (9.0 * s as f64 / 8.0 + 10.0) * U,
        1e-37,
    )
}

fn floats(n: usize, lo: f32, hi: f32) -> impl Strategy<Value = Vec<f32>> {
    proptest::collection::vec(lo..hi, n)
}

#[test]
fn prop_rms_norm_fast_equals_oracle() {
    let strat = (
        1usize..5,
        1usize..70,
        prop_oneof![Just(1f32), Just(1e-3), Just(300.0)],
    )
        .prop_flat_map(|(r, e, sc)| (Just(sc), floats(r * e, -3.0, 3.0), floats(e, -2.0, 2.0)));
    prop::check(
        "prop_rms_norm_fast_equals_oracle",
        96,
        strat,
        |(sc, x, w)| {
            let x: Vec<f32> = x.iter().map(|v| v * sc).collect();
            isas()
                .into_iter()
                .try_for_each(|isa| rms_norm_case(isa, &x, &w))
        },
    );
}

#[test]
fn prop_rope_fast_equals_oracle() {
    let strat = (
        1usize..4,
        1usize..5,
        1usize..4,
        1usize..21,
        any::<bool>(),
        0usize..5,
    )
        .prop_flat_map(|(n, l, h, half, trad, extra)| {
            let positions = l + extra + 3;
            (
                Just((n, l, h, half, trad)),
                floats(n * l * h * 2 * half, -4.0, 4.0),
                floats(positions * half, -1.0, 1.0),
                floats(positions * half, -1.0, 1.0),
                proptest::collection::vec(0usize..=(extra + 3), n),
            )
        });
    prop::check(
        "prop_rope_fast_equals_oracle",
        96,
        strat,
        |((n, l, h, half, trad), x, cos, sin, offs)| {
            let t = RopeTables {
                cos: &cos,
                sin: &sin,
                dims: 2 * half,
                traditional: trad,
            };
            isas().into_iter().try_for_each(|isa| {
                rope_case(isa, &x, [n, l, h], &t, &offs)?;
                rope_case(isa, &x, [n, l, h], &t, &offs[..1])
            })
        },
    );
}

#[test]
fn prop_swiglu_fast_equals_oracle() {
    let gate = prop_oneof![6 => -12f32..12.0, 1 => -120f32..120.0];
    let strat = (0usize..100).prop_flat_map(move |n| {
        (
            proptest::collection::vec(gate.clone(), n),
            floats(n, -10.0, 10.0),
        )
    });
    prop::check("prop_swiglu_fast_equals_oracle", 96, strat, |(g, u)| {
        isas()
            .into_iter()
            .try_for_each(|isa| swiglu_case(isa, &g, &u))
    });
}

/// SwiGLU (with `up = 1`) against the exact `silu`, computed in f64: an
/// `exp` within 1 ulp, `1 + e` and the division give at most `2 u`
/// relative, so `3 u` is allowed (the scalar oracle, on the standard
/// library's `exp`, is held to the same); where `gate < -88.3` the value
/// is under 4e-37 and 0 is accepted.
#[test]
fn prop_swiglu_is_accurate_to_a_few_ulp() {
    let gate = prop_oneof![6 => -20f32..20.0, 1 => -120f32..120.0];
    let strat = proptest::collection::vec(gate, 1..200);
    prop::check("prop_swiglu_is_accurate_to_a_few_ulp", 64, strat, |g| {
        let up = vec![1f32; g.len()];
        let mut runs = vec![("swiglu_scalar".to_string(), vec![f32::NAN; g.len()])];
        fused_cpu::swiglu_scalar(&g, &up, &mut runs[0].1)
            .unwrap_or_else(|e| panic!("[error] swiglu_scalar: {e}"));
        for isa in isas() {
            let mut out = vec![f32::NAN; g.len()];
            fused_cpu::swiglu(isa, &g, &up, &mut out)
                .unwrap_or_else(|e| panic!("[error] swiglu: {e}"));
            runs.push((format!("swiglu ({isa:?})"), out));
        }
        for (what, out) in &runs {
            for (&o, &v) in out.iter().zip(&g) {
                let exact = v as f64 / (1.0 + (-(v as f64)).exp());
                let allowed = 3.0 * U * exact.abs() + 1e-36;
                prop_assert!(
                    (o as f64 - exact).abs() <= allowed,
                    "{}: silu({}) is {}, exactly {} (allowed {:.2e})",
                    what,
                    v,
                    o,
                    exact,
                    allowed
                );
            }
        }
        Ok(())
    });
}

/// Rows with `-inf` entries (sometimes all of them), logits up to 3e4.
#[test]
fn prop_softmax_fast_equals_oracle() {
    let entry = prop_oneof![8 => -30f32..30.0, 1 => Just(f32::NEG_INFINITY)];
    let strat = (1usize..4, 1usize..70, prop_oneof![Just(1f32), Just(1000.0)]).prop_flat_map(
        move |(r, s, sc)| {
            (
                Just((s, sc)),
                proptest::collection::vec(entry.clone(), r * s),
            )
        },
    );
    prop::check(
        "prop_softmax_fast_equals_oracle",
        128,
        strat,
        |((s, sc), x)| {
            let x: Vec<f32> = x.iter().map(|v| v * sc).collect();
            isas()
                .into_iter()
                .try_for_each(|isa| softmax_case(isa, &x, s))
        },
    );
}

/// Inputs past the size at which a fast kernel splits its rows over threads
/// (rows computed twice, skipped or misplaced would fail here): 64 x 896
/// for RMSNorm, 1 x 64 x 16 x 64 for RoPE, 100,000 for SwiGLU, 14 rows of
/// 4096 for softmax.
#[test]
fn kernels_on_large_inputs_match_the_oracle() {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % 20001) as f32 / 10000.0 - 1.0 // [-1, 1]
    };
    let mut v = |n: usize, sc: f32| -> Vec<f32> { (0..n).map(|_| sc * next()).collect() };
    let (x, w) = (v(64 * 896, 3.0), v(896, 1.0));
    let (rx, cos, sin) = (v(64 * 16 * 64, 2.0), v(80 * 32, 1.0), v(80 * 32, 1.0));
    let (g, u) = (v(100_000, 10.0), v(100_000, 2.0));
    let sx = v(14 * 4096, 20.0);
    for isa in isas() {
        let t = RopeTables {
            cos: &cos,
            sin: &sin,
            dims: 64,
            traditional: false,
        };
        let r = rms_norm_case(isa, &x, &w)
            .and_then(|_| rope_case(isa, &rx, [1, 64, 16], &t, &[9]))
            .and_then(|_| swiglu_case(isa, &g, &u))
            .and_then(|_| softmax_case(isa, &sx, 4096));
        if let Err(e) = r {
            panic!("[wrong numbers] {e} (large inputs)");
        }
    }
}

// ---- against week 1 -----------------------------------------------------------

/// `got` within the day's f32 tolerance of `want` (NaN where it is NaN).
fn close(what: &str, got: &Array, want: &Array) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.shape(), want.shape(), "{}: shape", what);
    let tol = Tol::for_day(DAY, Dtype::Float32);
    for (i, (g, w)) in values_f64(got).iter().zip(values_f64(want)).enumerate() {
        let good = if w.is_finite() {
            tol.allows(*g, w)
        } else {
            g.is_nan() == w.is_nan() && (w.is_nan() || *g == w)
        };
        prop_assert!(
            good,
            "{}: element {} is {}, week 1 gives {} ({:?})",
            what,
            i,
            g,
            w,
            tol
        );
    }
    Ok(())
}

fn array(data: &[f32], shape: &[usize]) -> Array {
    Array::from_slice(data, &shape.iter().map(|&d| d as i32).collect::<Vec<_>>())
}

#[test]
fn prop_rms_norm_equals_week1() {
    let strat = (1usize..4, 1usize..40)
        .prop_flat_map(|(r, e)| (Just((r, e)), floats(r * e, -5.0, 5.0), floats(e, -2.0, 2.0)));
    prop::check("prop_rms_norm_equals_week1", 32, strat, |((r, e), x, w)| {
        let (x, w) = (array(&x, &[r, e]), array(&w, &[e]));
        let got = ok("fused::rms_norm", fused::rms_norm(&x, &w, 1e-5));
        let norm = ok("RmsNorm::new", RmsNorm::new(w, 1e-5));
        close(
            "rms_norm vs day 4's RmsNorm",
            &got,
            &ok("RmsNorm::forward", norm.forward(&x)),
        )
    });
}

#[test]
fn prop_rope_equals_week1() {
    let strat = (
        1usize..3,
        1usize..6,
        1usize..4,
        1usize..12,
        any::<bool>(),
        0i32..20,
    )
        .prop_flat_map(|(n, l, h, half, trad, off)| {
            (
                Just((n, l, h, half, trad, off)),
                floats(n * l * h * 2 * half, -3.0, 3.0),
            )
        });
    prop::check(
        "prop_rope_equals_week1",
        32,
        strat,
        |((n, l, h, half, trad, off), x)| {
            let rope = ok("RoPE::new", RoPE::new(2 * half as i32, 32, 10000.0, trad));
            let x = array(&x, &[n, l, h, 2 * half]);
            let got = ok("fused::rope", fused::rope(&x, view(&rope), &[off]));
            close(
                "rope vs day 2's RoPE::forward",
                &got,
                &ok("RoPE::forward", rope.forward(&x, off)),
            )
        },
    );
}

#[test]
fn prop_swiglu_equals_week1() {
    let strat = (1usize..4, 1usize..50).prop_flat_map(|(r, i)| {
        (
            Just((r, i)),
            floats(r * i, -15.0, 15.0),
            floats(r * i, -3.0, 3.0),
        )
    });
    prop::check("prop_swiglu_equals_week1", 32, strat, |((r, i), g, u)| {
        let (g, u) = (array(&g, &[r, i]), array(&u, &[r, i]));
        let got = ok("fused::swiglu", fused::swiglu(&g, &u));
        let want = ok("silu", silu(&g)).multiply(&u).expect("multiply");
        close("swiglu vs day 4's silu(g) * u", &got, &want)
    });
}

#[test]
fn prop_softmax_equals_week1() {
    let entry = prop_oneof![8 => -20f32..20.0, 1 => Just(f32::NEG_INFINITY)];
    let strat = (1usize..4, 1usize..50).prop_flat_map(move |(r, s)| {
        (
            Just((r, s)),
            proptest::collection::vec(entry.clone(), r * s),
        )
    });
    prop::check("prop_softmax_equals_week1", 32, strat, |((r, s), x)| {
        let x = array(&x, &[r, s]);
        let got = ok("fused::softmax", fused::softmax(&x));
        close(
            "softmax vs day 1's softmax",
            &got,
            &ok("softmax", softmax_week1(&x, -1)),
        )
    });
}

// ---- the model ----------------------------------------------------------------

fn fused_only() -> Week2Kernels {
    Week2Kernels {
        fused: true,
        ..Week2Kernels::NONE
    }
}

fn tiny(dir: &str, kernels: Week2Kernels) -> Qwen2ModelWeek2 {
    let dir = checked_dir(dir);
    let config = Qwen2Config::from_file(&dir.join("config.json"))
        .unwrap_or_else(|e| panic!("[fixture] {e}"));
    let checkpoint = Checkpoint::load(&dir).unwrap_or_else(|e| panic!("[fixture] {e}"));
    ok(
        "Qwen2ModelWeek2::new",
        Qwen2ModelWeek2::new(&config, &checkpoint, Dtype::Float32),
    )
    .with_kernels(kernels)
}

fn log_probs(x: &Array) -> Array {
    let lse = x.logsumexp_axis(-1, true).expect("logsumexp");
    x.subtract(lse).expect("subtract")
}

#[track_caller]
fn assert_logits(test: &str, case: &str, got: &Array, want: &Array) {
    assert_logits_at(test, case, got, want, Tol::logits(Dtype::Float32));
}

/// As [`assert_logits`], at `tol`.
#[track_caller]
fn assert_logits_at(test: &str, case: &str, got: &Array, want: &Array, tol: Tol) {
    assert!(
        got.shape() == want.shape(),
        "[wrong shape] {test}, case {case}: logits {:?}, expected {:?}",
        got.shape(),
        want.shape()
    );
    assert_close(
        test,
        case,
        "log_softmax(logits)",
        &log_probs(got),
        &log_probs(want),
        tol,
    );
}

fn cols(a: &Array, from: i32, to: i32) -> Array {
    a.try_index((.., from..to)).expect("slice")
}

/// Prefill (in the case's chunks), then one token at a time, through the
/// fused kernels, against mlx-lm's logits (day 8's fixtures).
#[test]
fn fused_model_matches_mlx_lm_f32() {
    let test = "fused_model_matches_mlx_lm_f32";
    let model = tiny("tiny-qwen2", fused_only());
    for name in ["decode_qwen2_f32", "chunked_qwen2_f32"] {
        let c = Case::load("day8", name);
        let mut cache = model.new_cache();
        let (prompt, p) = (c.get("prompt"), c.get("prompt").dim(1));
        match c.meta::<i32>("chunk") {
            None => {
                let got = ok("forward", model.forward(prompt, 0, &mut cache));
                assert_logits(
                    test,
                    &format!("{} prefill", c.id),
                    &got,
                    c.get("prefill_logits"),
                );
            }
            Some(k) => {
                ok("forward", model.forward(&cols(prompt, 0, k), 0, &mut cache));
                let got = ok(
                    "forward",
                    model.forward(&cols(prompt, k, p), k as usize, &mut cache),
                );
                assert_logits(
                    test,
                    &format!("{} second chunk (causal mask)", c.id),
                    &got,
                    c.get("chunk_logits"),
                );
            }
        }
        let (steps, want) = (c.get("steps"), c.get("step_logits"));
        for t in 0..steps.dim(1) {
            let got = ok(
                "forward",
                model.forward(&cols(steps, t, t + 1), (p + t) as usize, &mut cache),
            );
            assert_logits(
                test,
                &format!("{} step {t}", c.id),
                &got,
                &cols(want, t, t + 1),
            );
        }
    }
}

/// The tiny 4-bit model (day 10's fixture): one forward of 2 x 7 tokens.
#[test]
fn fused_4bit_model_matches_mlx_lm() {
    let model = tiny("tiny-qwen2-4bit", fused_only());
    let c = Case::load("day10", "model_tiny_4bit_f32");
    let mut cache = model.new_cache();
    let got = ok("forward", model.forward(c.get("ids"), 0, &mut cache));
    assert_logits(
        "fused_4bit_model_matches_mlx_lm",
        &c.id,
        &got,
        c.get("expected"),
    );
}

/// One forward pass with the fused kernels crosses the bridge `5 layers +
/// 1` more times than without: per layer two RMSNorms, one RoPE (q and k
/// together), one softmax and one SwiGLU, then the final norm. (The 4-bit
/// model's linear layers cross it either way: only the difference counts.)
#[test]
fn fused_model_runs_the_fused_kernels() {
    for dir in ["tiny-qwen2", "tiny-qwen2-4bit"] {
        let layers = Qwen2Config::from_file(&checked_dir(dir).join("config.json"))
            .unwrap_or_else(|e| panic!("[fixture] {e}"))
            .num_hidden_layers as u64;
        let ids = Array::from_slice(&[1i32, 5, 9, 2, 7, 3], &[2, 3]);
        let crossings = |kernels: Week2Kernels| {
            let model = tiny(dir, kernels);
            let mut cache = model.new_cache();
            cpu_bridge::reset_stats();
            let y = ok("forward", model.forward(&ids, 0, &mut cache));
            let step = ok("forward", model.forward(&cols(&ids, 0, 1), 3, &mut cache));
            y.eval().expect("eval");
            step.eval().expect("eval");
            cpu_bridge::stats().crossings
        };
        let (plain, with) = (crossings(Week2Kernels::NONE), crossings(fused_only()));
        let want = 2 * (5 * layers + 1);
        assert!(
            with >= plain && with - plain == want,
            "[wrong numbers] {dir}: two forward passes crossed the bridge {with} times with the fused kernels, \
             {plain} without: expected {want} more (per pass and layer 2 rms_norm + rope + softmax + swiglu, \
             then the final norm: each fused op must call cpu_bridge::crossing() once)"
        );
    }
}

// ---- on a GPU: the CUDA kernels of `fused_gpu` --------------------------------
//
// Against the week-1 ops computed by MLX (day 1's softmax, day 2's RoPE, day
// 4's RmsNorm and silu), on inputs drawn here, at the day's GPU tolerance
// (`[day.tolerance_gpu]`). Without a usable GPU they are skipped; the
// argument checks run everywhere (bad input is rejected on the host, before
// any GPU is touched).

const FLOATS: [Dtype; 3] = [Dtype::Float32, Dtype::Bfloat16, Dtype::Float16];

#[test]
fn gpu_rms_norm_matches_week1() {
    let test = "gpu_rms_norm_matches_week1";
    if !require_gpu(test) {
        return;
    }
    let shapes: [&[i32]; 3] = [&[3, 5, 896], &[2, 7, 64], &[4, 33]];
    for (i, (shape, dtype)) in shapes.iter().zip(FLOATS).enumerate() {
        let e = *shape.last().unwrap();
        let x = cast_to(&seeded(shape, i as u64, 3.0), dtype);
        let w = seeded(&[e], 100 + i as u64, 1.5);
        let got = ok("rms_norm", fused_gpu::rms_norm(&x, &w, 1e-6));
        let norm = ok("RmsNorm::new", RmsNorm::new(w.clone(), 1e-6));
        let want = ok(
            "RmsNorm::forward",
            norm.forward(&cast_to(&x, Dtype::Float32)),
        );
        check_gpu(
            test,
            DAY,
            &format!("{shape:?} {dtype:?}"),
            &got,
            &want,
            dtype,
        );
    }
}

#[test]
fn gpu_softmax_matches_week1() {
    let test = "gpu_softmax_matches_week1";
    if !require_gpu(test) {
        return;
    }
    let shapes: [&[i32]; 3] = [&[4, 300], &[2, 3, 1000], &[5, 1]];
    for (i, (shape, dtype)) in shapes.iter().zip(FLOATS).enumerate() {
        let x = cast_to(&seeded(shape, 10 + i as u64, 6.0), dtype);
        let got = ok("softmax", fused_gpu::softmax(&x));
        let want = ok(
            "week-1 softmax",
            softmax_week1(&cast_to(&x, Dtype::Float32), -1),
        );
        check_gpu(
            test,
            DAY,
            &format!("{shape:?} {dtype:?}"),
            &got,
            &want,
            dtype,
        );
    }
    // Masked entries (-inf) get 0; a row of only -inf is NaN, as MLX's.
    let inf = f32::NEG_INFINITY;
    let x = Array::from_slice(&[0.5, inf, 2.0, inf, inf, inf, inf, inf], &[2, 4]);
    let got = ok("softmax", fused_gpu::softmax(&x));
    let got = tiny_llm_grader::compare::values_f64(&got);
    let (e1, e2) = (0.5f64.exp(), 2.0f64.exp());
    let row0 = [e1 / (e1 + e2), 0.0, e2 / (e1 + e2), 0.0];
    for (j, want) in row0.iter().enumerate() {
        assert!(
            (got[j] - want).abs() <= 1e-6,
            "[wrong numbers] {test}: softmax([0.5, -inf, 2, -inf])[{j}] = {}, expected {want}",
            got[j]
        );
    }
    assert!(
        got[4..].iter().all(|v| v.is_nan()),
        "[wrong numbers] {test}: a row of only -inf must give NaN (as MLX), got {:?}",
        &got[4..]
    );
}

#[test]
fn gpu_rope_matches_week1_per_row_offsets() {
    let test = "gpu_rope_matches_week1_per_row_offsets";
    if !require_gpu(test) {
        return;
    }
    let offsets = [0, 7, 3];
    for (i, traditional) in [false, true].into_iter().enumerate() {
        for dtype in [Dtype::Float32, Dtype::Bfloat16] {
            let rope = ok("RoPE::new", RoPE::new(64, 32, 10_000.0, traditional));
            let x = cast_to(&seeded(&[3, 5, 2, 64], 20 + i as u64, 2.0), dtype);
            let got = ok("rope", fused_gpu::rope(&x, view(&rope), &offsets));
            let xf = cast_to(&x, Dtype::Float32);
            let rows: Vec<Array> = (0..3)
                .map(|b| {
                    let row = xf.try_index(b..b + 1).expect("[error] a batch row");
                    ok("RoPE::forward", rope.forward(&row, offsets[b as usize]))
                })
                .collect();
            let want = mlx_rs::ops::concatenate(&rows, 0).expect("[error] concatenate");
            let case = format!("traditional={traditional} offsets={offsets:?} {dtype:?}");
            check_gpu(test, DAY, &case, &got, &want, dtype);
            // One offset applies to every row.
            let got = ok("rope", fused_gpu::rope(&x, view(&rope), &[4]));
            let want = ok("RoPE::forward", rope.forward(&xf, 4));
            check_gpu(
                test,
                DAY,
                &format!("{case}, one offset 4"),
                &got,
                &want,
                dtype,
            );
        }
    }
}

#[test]
fn gpu_swiglu_matches_week1() {
    let test = "gpu_swiglu_matches_week1";
    if !require_gpu(test) {
        return;
    }
    let shapes: [&[i32]; 3] = [&[3, 4864], &[2, 7, 33], &[1]];
    for (i, (shape, dtype)) in shapes.iter().zip(FLOATS).enumerate() {
        let gate = cast_to(&seeded(shape, 30 + i as u64, 6.0), dtype);
        let up = cast_to(&seeded(shape, 40 + i as u64, 2.0), dtype);
        let got = ok("swiglu", fused_gpu::swiglu(&gate, &up));
        let (g, u) = (cast_to(&gate, Dtype::Float32), cast_to(&up, Dtype::Float32));
        let want = ok("silu", silu(&g)).multiply(&u).expect("[error] multiply");
        check_gpu(
            test,
            DAY,
            &format!("{shape:?} {dtype:?}"),
            &got,
            &want,
            dtype,
        );
    }
}

#[test]
fn gpu_fused_rejects_bad_input() {
    let x = seeded(&[2, 3, 8], 1, 1.0);
    should_fail_naming(
        "rms_norm",
        "weight [9] for E = 8",
        fused_gpu::rms_norm(&x, &seeded(&[9], 2, 1.0), 1e-6),
        &["weight"],
    );
    should_fail_naming(
        "rms_norm",
        "eps = 0",
        fused_gpu::rms_norm(&x, &seeded(&[8], 2, 1.0), 0.0),
        &["eps"],
    );
    let rope = ok("RoPE::new", RoPE::new(8, 16, 10_000.0, false));
    let x4 = seeded(&[3, 5, 2, 8], 3, 1.0);
    should_fail_naming(
        "rope",
        "2 offsets for N = 3",
        fused_gpu::rope(&x4, view(&rope), &[0, 1]),
        &["offsets"],
    );
    should_fail_naming(
        "rope",
        "row 1 at offset 12 with L = 5 and seq_len 16",
        fused_gpu::rope(&x4, view(&rope), &[0, 12, 0]),
        &["row 1"],
    );
    should_fail_naming(
        "rope",
        "D = 16 for rope.dims = 8",
        fused_gpu::rope(&seeded(&[1, 2, 2, 16], 4, 1.0), view(&rope), &[0]),
        &["rope input"],
    );
    should_fail_naming(
        "swiglu",
        "gate [2, 3, 8] and up [2, 3, 9]",
        fused_gpu::swiglu(&x, &seeded(&[2, 3, 9], 5, 1.0)),
        &["up"],
    );
    let ints = Array::from_slice(&[1i32, 2], &[2]);
    should_fail_naming(
        "softmax",
        "int32 input",
        fused_gpu::softmax(&ints),
        &["Int32"],
    );
}

/// Without a GPU a valid call is an error that says so (no crash, no MLX
/// abort); on a machine with a GPU the numeric tests above cover it.
#[test]
fn gpu_fused_without_a_gpu_says_so() {
    if tiny_llm_common::gpu::gpu_available() {
        skip("a GPU is usable here: this test checks the error of a machine without one");
        return;
    }
    let x = seeded(&[2, 8], 1, 1.0);
    should_fail_naming(
        "rms_norm (no GPU)",
        "a valid call on a machine without a CUDA GPU",
        fused_gpu::rms_norm(&x, &seeded(&[8], 2, 1.0), 1e-6),
        &["GPU"],
    );
    // The model routes to `fused_gpu` when `kernels.gpu`: the same error,
    // not the CPU kernels' logits.
    let model = tiny("tiny-qwen2", fused_only().on_gpu());
    let mut cache = model.new_cache();
    let ids = Array::from_slice(&[1i32, 5, 9], &[1, 3]);
    should_fail_naming(
        "Qwen2ModelWeek2::forward (fused on the GPU, no GPU)",
        "Week2Kernels { fused: true, .. }.on_gpu() on a machine without a CUDA GPU",
        model.forward(&ids, 0, &mut cache),
        &["GPU"],
    );
}

/// The tiny Qwen2 (day 8's fixtures: prefill or two chunks, then one-token
/// steps) and the tiny 4-bit Qwen2 (day 10's: one forward of 2 x 7 tokens)
/// with the fused kernels on the GPU (`Week2Kernels { fused: true, .. }
/// .on_gpu()`: `fused_gpu` for RMSNorm, RoPE, SwiGLU and the softmax, day
/// 10's `qmatmul_gpu` for the 4-bit layers), against mlx-lm's logits at
/// `[tolerance.logprobs_gpu]`.
#[test]
fn gpu_fused_model_matches_mlx_lm() {
    let test = "gpu_fused_model_matches_mlx_lm";
    if !require_gpu(test) {
        return;
    }
    let kernels = fused_only().on_gpu();
    let model = tiny("tiny-qwen2", kernels);
    let tol = Tol::logits_on_gpu(Dtype::Float32);
    for name in ["decode_qwen2_f32", "chunked_qwen2_f32"] {
        let c = Case::load("day8", name);
        let mut cache = model.new_cache();
        let (prompt, p) = (c.get("prompt"), c.get("prompt").dim(1));
        let (got, key, what) = match c.meta::<i32>("chunk") {
            None => (
                ok("forward", model.forward(prompt, 0, &mut cache)),
                "prefill_logits",
                "prefill",
            ),
            Some(k) => {
                ok("forward", model.forward(&cols(prompt, 0, k), 0, &mut cache));
                let got = ok(
                    "forward",
                    model.forward(&cols(prompt, k, p), k as usize, &mut cache),
                );
                (got, "chunk_logits", "second chunk (causal mask)")
            }
        };
        assert_logits_at(test, &format!("{} {what}", c.id), &got, c.get(key), tol);
        let (steps, want) = (c.get("steps"), c.get("step_logits"));
        for t in 0..steps.dim(1) {
            let got = ok(
                "forward",
                model.forward(&cols(steps, t, t + 1), (p + t) as usize, &mut cache),
            );
            let case = format!("{} step {t}", c.id);
            assert_logits_at(test, &case, &got, &cols(want, t, t + 1), tol);
        }
    }
    let model = tiny("tiny-qwen2-4bit", kernels);
    let c = Case::load("day10", "model_tiny_4bit_f32");
    let mut cache = model.new_cache();
    let got = ok("forward", model.forward(c.get("ids"), 0, &mut cache));
    assert_logits_at(test, &c.id, &got, c.get("expected"), tol);
}

/// Day 2's `RoPE` as the week-2 kernels read it (a view of its tables).
fn view(r: &RoPE) -> tiny_llm_common::RopeView<'_> {
    tiny_llm_common::RopeView {
        dims: r.dims,
        seq_len: r.seq_len,
        traditional: r.traditional,
        cos: &r.cos,
        sin: &r.sin,
    }
}
