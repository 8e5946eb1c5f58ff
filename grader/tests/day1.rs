//! Day 1: softmax, linear, scaled dot-product attention, multi-head attention.
//! Golden tensors from fixtures/gen/day1.py (oracles: mx.softmax,
//! mx.fast.scaled_dot_product_attention, nn.MultiHeadAttention).

use mlx_rs::{Array, Dtype};
use proptest::prelude::*;
use tiny_llm_grader::imp::attention::{
    scaled_dot_product_attention_simple, SimpleMultiHeadAttention,
};
use tiny_llm_grader::imp::basics::{linear, softmax};
use tiny_llm_grader::prop::check as check_property;
use tiny_llm_grader::{assert_close, check_cases, ok, should_fail, Case, Tol};

const DAY: &str = "day1";

fn run_softmax(c: &Case) -> Array {
    ok("softmax", softmax(c.get("x"), c.meta("axis").unwrap_or(-1)))
}

#[test]
fn softmax_f32() {
    check_cases("softmax_f32", DAY, "softmax_", "f32", "y", run_softmax);
}

#[test]
fn softmax_f16() {
    check_cases("softmax_f16", DAY, "softmax_", "f16", "y", run_softmax);
}

/// Hand-worked: softmax([1, 2, 3]) = e^i / (e + e^2 + e^3).
#[test]
fn softmax_hand_worked() {
    let x = Array::from_slice(&[1.0f32, 2.0, 3.0], &[1, 3]);
    let z: f32 = (1..=3).map(|i| (i as f32).exp()).sum();
    let want: Vec<f32> = (1..=3).map(|i| (i as f32).exp() / z).collect();
    let want = Array::from_slice(&want, &[1, 3]);
    let got = ok("softmax", softmax(&x, -1));
    assert_close(
        "softmax_hand_worked",
        "hand",
        "y",
        &got,
        &want,
        Tol::for_dtype(want.dtype()),
    );
}

/// Large logits, hand-worked: softmax([1000, 1001, 1002]) equals
/// softmax([0, 1, 2]) = [1, e, e^2] / (1 + e + e^2) = [0.09003057, 0.24472847,
/// 0.66524096]; likewise for a row at -1000. A softmax that does not subtract
/// the row's max computes exp(1000) = inf, and inf / inf = NaN, in f32 and f16.
#[test]
fn softmax_large_logits() {
    let z = 1.0 + std::f64::consts::E + std::f64::consts::E.powi(2);
    let p: Vec<f64> = (0..3).map(|i| (i as f64).exp() / z).collect();
    for dtype in [Dtype::Float32, Dtype::Float16] {
        let x = Array::from_slice(
            &[1000.0f32, 1001.0, 1002.0, -1002.0, -1001.0, -1000.0],
            &[2, 3],
        )
        .as_dtype(dtype)
        .expect("as_dtype");
        let want: Vec<f32> = [p[0], p[1], p[2], p[0], p[1], p[2]]
            .iter()
            .map(|&v| v as f32)
            .collect();
        let want = Array::from_slice(&want, &[2, 3])
            .as_dtype(dtype)
            .expect("as_dtype");
        let got = ok("softmax", softmax(&x, -1));
        assert_close(
            "softmax_large_logits",
            &format!("[[1000, 1001, 1002], [-1002, -1001, -1000]] {dtype:?}"),
            "y",
            &got,
            &want,
            Tol::for_dtype(dtype),
        );
    }
}

fn run_linear(c: &Case) -> Array {
    ok("linear", linear(c.get("x"), c.get("w"), c.opt("b")))
}

#[test]
fn linear_no_bias_f32() {
    check_cases(
        "linear_no_bias_f32",
        DAY,
        "linear_nobias_",
        "f32",
        "y",
        run_linear,
    );
}

#[test]
fn linear_no_bias_f16() {
    check_cases(
        "linear_no_bias_f16",
        DAY,
        "linear_nobias_",
        "f16",
        "y",
        run_linear,
    );
}

#[test]
fn linear_bias_f32() {
    check_cases(
        "linear_bias_f32",
        DAY,
        "linear_bias_",
        "f32",
        "y",
        run_linear,
    );
}

#[test]
fn linear_bias_f16() {
    check_cases(
        "linear_bias_f16",
        DAY,
        "linear_bias_",
        "f16",
        "y",
        run_linear,
    );
}

/// A weight whose input size does not match `x` is an error, not a panic.
#[test]
fn linear_rejects_mismatched_weight() {
    let x = Array::from_slice(&[1.0f32; 6], &[2, 3]);
    let w = Array::from_slice(&[1.0f32; 8], &[2, 4]);
    should_fail(
        "linear",
        "x [2, 3] by a [2, 4] weight",
        linear(&x, &w, None),
    );
}

fn run_sdpa(c: &Case) -> Array {
    ok(
        "scaled_dot_product_attention_simple",
        scaled_dot_product_attention_simple(
            c.get("q"),
            c.get("k"),
            c.get("v"),
            c.meta("scale"),
            c.opt("mask"),
        ),
    )
}

#[test]
fn sdpa_simple_f32() {
    check_cases(
        "sdpa_simple_f32",
        DAY,
        "sdpa_simple_nomask_noscale_",
        "f32",
        "out",
        run_sdpa,
    );
}

#[test]
fn sdpa_simple_f16() {
    check_cases(
        "sdpa_simple_f16",
        DAY,
        "sdpa_simple_nomask_noscale_",
        "f16",
        "out",
        run_sdpa,
    );
}

#[test]
fn sdpa_simple_scale_f32() {
    check_cases(
        "sdpa_simple_scale_f32",
        DAY,
        "sdpa_simple_nomask_scale_",
        "f32",
        "out",
        run_sdpa,
    );
}

#[test]
fn sdpa_simple_scale_f16() {
    check_cases(
        "sdpa_simple_scale_f16",
        DAY,
        "sdpa_simple_nomask_scale_",
        "f16",
        "out",
        run_sdpa,
    );
}

#[test]
fn sdpa_simple_mask_f32() {
    check_cases(
        "sdpa_simple_mask_f32",
        DAY,
        "sdpa_simple_mask_",
        "f32",
        "out",
        run_sdpa,
    );
}

#[test]
fn sdpa_simple_mask_f16() {
    check_cases(
        "sdpa_simple_mask_f16",
        DAY,
        "sdpa_simple_mask_",
        "f16",
        "out",
        run_sdpa,
    );
}

fn run_mha(c: &Case) -> Array {
    let e = c.get("query").dim(-1);
    let mha = ok(
        "SimpleMultiHeadAttention::new",
        SimpleMultiHeadAttention::new(
            e,
            c.meta("num_heads").expect("num_heads"),
            c.get("wq").clone(),
            c.get("wk").clone(),
            c.get("wv").clone(),
            c.get("wo").clone(),
        ),
    );
    ok(
        "SimpleMultiHeadAttention::forward",
        mha.forward(c.get("query"), c.get("key"), c.get("value"), c.opt("mask")),
    )
}

#[test]
fn mha_f32() {
    check_cases("mha_f32", DAY, "mha_nomask_", "f32", "out", run_mha);
}

#[test]
fn mha_f16() {
    check_cases("mha_f16", DAY, "mha_nomask_", "f16", "out", run_mha);
}

#[test]
fn mha_mask_f32() {
    check_cases("mha_mask_f32", DAY, "mha_mask_", "f32", "out", run_mha);
}

#[test]
fn mha_mask_f16() {
    check_cases("mha_mask_f16", DAY, "mha_mask_", "f16", "out", run_mha);
}

// Properties (proptest): they hold for every input, not only the fixtures'.

/// The values of `a` in row-major order, whatever its layout.
fn values(a: &Array) -> Vec<f32> {
    tiny_llm_grader::compare::values_f64(a)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

/// 1..=4 rows of 1..=9 logits each in [-lo, lo]: wide enough that exp
/// overflows f32 (at 88.7) unless the max is subtracted first.
fn rows(lo: f32) -> impl Strategy<Value = (i32, i32, Vec<f32>)> {
    (1i32..=4, 1i32..=9).prop_flat_map(move |(r, c)| {
        (
            Just(r),
            Just(c),
            prop::collection::vec(-lo..lo, (r * c) as usize),
        )
    })
}

/// Every row of a softmax over the last axis sums to 1, for logits up to
/// ±1000.
#[test]
fn prop_softmax_rows_sum_to_one() {
    check_property(
        "prop_softmax_rows_sum_to_one",
        32,
        rows(1000.0),
        |(r, c, data)| {
            let y = values(&ok(
                "softmax",
                softmax(&Array::from_slice(&data, &[r, c]), -1),
            ));
            for (i, row) in y.chunks(c as usize).enumerate() {
                let sum: f32 = row.iter().sum();
                prop_assert!((sum - 1.0).abs() <= 1e-5, "row {} sums to {}", i, sum);
                prop_assert!(
                    row.iter().all(|p| (0.0..=1.0).contains(p)),
                    "row {}: {:?}",
                    i,
                    row
                );
            }
            Ok(())
        },
    );
}

/// softmax(x + s) = softmax(x) for any constant s, up to shifts of ±1000.
#[test]
fn prop_softmax_shift_invariant() {
    check_property(
        "prop_softmax_shift_invariant",
        32,
        (rows(30.0), -1000.0f32..1000.0),
        |((r, c, data), shift)| {
            let shifted: Vec<f32> = data.iter().map(|v| v + shift).collect();
            let a = values(&ok(
                "softmax",
                softmax(&Array::from_slice(&data, &[r, c]), -1),
            ));
            let b = values(&ok(
                "softmax",
                softmax(&Array::from_slice(&shifted, &[r, c]), -1),
            ));
            for (i, (x, y)) in a.iter().zip(&b).enumerate() {
                // x + shift rounds to f32: |shift| <= 1000 moves a logit by up
                // to 3e-5, so the probabilities by up to ~6e-5 relative
                prop_assert!(
                    (x - y).abs() <= 1e-5 + 1e-4 * x.abs(),
                    "element {}: softmax(x) = {}, softmax(x + {}) = {}",
                    i,
                    x,
                    shift,
                    y
                );
            }
            Ok(())
        },
    );
}
