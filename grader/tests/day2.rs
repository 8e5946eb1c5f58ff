//! Day 2: rotary positional embedding (RoPE), both layouts, with offsets.
//! Golden tensors from fixtures/gen/day2.py (oracle: mx.fast.rope), plus a
//! hand-worked case, error cases and properties (proptest).

use mlx_rs::{Array, Dtype};
use proptest::prelude::*;
use tiny_llm_grader::imp::positional_encoding::RoPE;
use tiny_llm_grader::prop::check as check_property;
use tiny_llm_grader::{assert_close, check_cases, ok, should_fail, Case, Tol};

const DAY: &str = "day2";

fn run_rope(c: &Case) -> Array {
    let rope = ok(
        "RoPE::new",
        RoPE::new(
            c.meta("dims").expect("dims"),
            c.meta("seq_len").expect("seq_len"),
            c.meta("base").expect("base"),
            c.meta::<i32>("traditional").expect("traditional") != 0,
        ),
    );
    ok(
        "RoPE::forward",
        rope.forward(c.get("x"), c.meta("offset").unwrap_or(0)),
    )
}

#[test]
fn rope_f32() {
    check_cases("rope_f32", DAY, "rope_halves_nooff_", "f32", "y", run_rope);
}

#[test]
fn rope_f16() {
    check_cases("rope_f16", DAY, "rope_halves_nooff_", "f16", "y", run_rope);
}

#[test]
fn rope_bf16() {
    check_cases(
        "rope_bf16",
        DAY,
        "rope_halves_nooff_",
        "bf16",
        "y",
        run_rope,
    );
}

#[test]
fn rope_offset_f32() {
    check_cases(
        "rope_offset_f32",
        DAY,
        "rope_halves_off",
        "f32",
        "y",
        run_rope,
    );
}

#[test]
fn rope_offset_f16() {
    check_cases(
        "rope_offset_f16",
        DAY,
        "rope_halves_off",
        "f16",
        "y",
        run_rope,
    );
}

#[test]
fn rope_offset_bf16() {
    check_cases(
        "rope_offset_bf16",
        DAY,
        "rope_halves_off",
        "bf16",
        "y",
        run_rope,
    );
}

#[test]
fn rope_traditional_f32() {
    check_cases(
        "rope_traditional_f32",
        DAY,
        "rope_traditional_nooff_",
        "f32",
        "y",
        run_rope,
    );
}

#[test]
fn rope_traditional_f16() {
    check_cases(
        "rope_traditional_f16",
        DAY,
        "rope_traditional_nooff_",
        "f16",
        "y",
        run_rope,
    );
}

#[test]
fn rope_traditional_bf16() {
    check_cases(
        "rope_traditional_bf16",
        DAY,
        "rope_traditional_nooff_",
        "bf16",
        "y",
        run_rope,
    );
}

#[test]
fn rope_traditional_offset_f32() {
    check_cases(
        "rope_traditional_offset_f32",
        DAY,
        "rope_traditional_off",
        "f32",
        "y",
        run_rope,
    );
}

#[test]
fn rope_traditional_offset_f16() {
    check_cases(
        "rope_traditional_offset_f16",
        DAY,
        "rope_traditional_off",
        "f16",
        "y",
        run_rope,
    );
}

#[test]
fn rope_traditional_offset_bf16() {
    check_cases(
        "rope_traditional_offset_bf16",
        DAY,
        "rope_traditional_off",
        "bf16",
        "y",
        run_rope,
    );
}

/// Hand-worked: D = 2 has one frequency, `theta_0 = base^0 = 1`, so position
/// `p` rotates `(1, 0)` by `p` radians to `(cos p, sin p)`. Positions 0, 1, 2
/// through an offset of 1 on the second call.
#[test]
fn rope_hand_worked() {
    for traditional in [false, true] {
        let rope = ok("RoPE::new", RoPE::new(2, 8, 10000.0, traditional));
        // N=1, L=2, H=1, D=2
        let x = Array::from_slice(&[1.0f32, 0.0, 1.0, 0.0], &[1, 2, 1, 2]);
        let (c1, s1, c2, s2) = (1f32.cos(), 1f32.sin(), 2f32.cos(), 2f32.sin());
        let want0 = Array::from_slice(&[1.0, 0.0, c1, s1], &[1, 2, 1, 2]);
        let want1 = Array::from_slice(&[c1, s1, c2, s2], &[1, 2, 1, 2]);
        let case = if traditional { "traditional" } else { "halves" };
        let got0 = ok("RoPE::forward", rope.forward(&x, 0));
        assert_close(
            "rope_hand_worked",
            case,
            "offset 0",
            &got0,
            &want0,
            Tol::for_dtype(Dtype::Float32),
        );
        let got1 = ok("RoPE::forward", rope.forward(&x, 1));
        assert_close(
            "rope_hand_worked",
            case,
            "offset 1",
            &got1,
            &want1,
            Tol::for_dtype(Dtype::Float32),
        );
    }
}

/// Positions past the precomputed tables are an error, not a panic or garbage.
#[test]
fn rope_rejects_positions_past_seq_len() {
    let rope = ok("RoPE::new", RoPE::new(8, 4, 10000.0, false));
    let x = Array::from_slice(&[0.5f32; 3 * 2 * 8], &[1, 3, 2, 8]);
    assert!(
        rope.forward(&x, 1).is_ok(),
        "[error] positions 1..4 fit in seq_len 4"
    );
    should_fail(
        "RoPE::forward",
        "positions 2..5 with seq_len 4",
        rope.forward(&x, 2),
    );
    should_fail("RoPE::forward", "a negative offset", rope.forward(&x, -1));
}

/// A head width other than `dims` is a shape error.
#[test]
fn rope_rejects_wrong_head_dim() {
    let rope = ok("RoPE::new", RoPE::new(8, 16, 10000.0, true));
    let x = Array::from_slice(&[0.5f32; 2 * 2 * 6], &[1, 2, 2, 6]);
    should_fail("RoPE::forward", "D = 6 with dims = 8", rope.forward(&x, 0));
}

/// The values of `a` in row-major order, whatever its layout.
fn values(a: &Array) -> Vec<f32> {
    tiny_llm_grader::compare::values_f64(a)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

/// The squared norms of the rotated pairs of every head vector: pair `i` is
/// `(x[2i], x[2i+1])` (traditional) or `(x[i], x[i + D/2])` (halves).
fn pair_norms(v: &[f32], d: usize, traditional: bool) -> Vec<f32> {
    v.chunks(d)
        .flat_map(|h| {
            (0..d / 2).map(move |i| {
                let (a, b) = if traditional {
                    (h[2 * i], h[2 * i + 1])
                } else {
                    (h[i], h[i + d / 2])
                };
                a * a + b * b
            })
        })
        .collect()
}

fn rope_input() -> impl Strategy<Value = (i32, i32, i32, i32, bool, f32, Vec<f32>)> {
    (
        1i32..=3,
        1i32..=4,
        1i32..=4,
        0i32..=40,
        any::<bool>(),
        prop::sample::select(vec![100.0f32, 1e4, 1e6]),
    )
        .prop_flat_map(|(half, l, h, offset, traditional, base)| {
            let d = 2 * half * 2; // 4, 8, 12
            let n = (l * h * d) as usize;
            (
                Just(d),
                Just(l),
                Just(h),
                Just(offset),
                Just(traditional),
                Just(base),
                prop::collection::vec(-10.0f32..10.0, n),
            )
        })
}

/// A rotation keeps the length of every rotated pair.
#[test]
fn prop_rope_preserves_pair_norms() {
    check_property(
        "prop_rope_preserves_pair_norms",
        32,
        rope_input(),
        |(d, l, h, offset, traditional, base, data)| {
            let rope = ok("RoPE::new", RoPE::new(d, 64, base, traditional));
            let x = Array::from_slice(&data, &[1, l, h, d]);
            let y = ok("RoPE::forward", rope.forward(&x, offset));
            prop_assert_eq!(
                y.shape(),
                x.shape(),
                "[wrong shape] RoPE::forward changed the shape"
            );
            let (before, after) = (
                pair_norms(&data, d as usize, traditional),
                pair_norms(&values(&y), d as usize, traditional),
            );
            for (i, (b, a)) in before.iter().zip(&after).enumerate() {
                prop_assert!(
                    (a - b).abs() <= 1e-4 * b.max(1.0),
                    "[wrong numbers] pair {} (of {} x {}): squared norm {} before, {} after",
                    i,
                    l * h,
                    d / 2,
                    b,
                    a
                );
            }
            Ok(())
        },
    );
}

/// Position 0 rotates by angle 0: the first token comes out unchanged.
#[test]
fn prop_rope_position_zero_is_identity() {
    check_property(
        "prop_rope_position_zero_is_identity",
        32,
        rope_input(),
        |(d, l, h, _offset, traditional, base, data)| {
            let rope = ok("RoPE::new", RoPE::new(d, 64, base, traditional));
            let x = Array::from_slice(&data, &[1, l, h, d]);
            let y = values(&ok("RoPE::forward", rope.forward(&x, 0)));
            let first = (h * d) as usize; // row 0 of N x L x H x D
            for i in 0..first {
                prop_assert!(
                    (y[i] - data[i]).abs() <= 1e-6 * data[i].abs().max(1.0),
                    "[wrong numbers] position 0, element {}: got {}, expected {}",
                    i,
                    y[i],
                    data[i]
                );
            }
            Ok(())
        },
    );
}
