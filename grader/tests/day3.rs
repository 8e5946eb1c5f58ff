//! Day 3: grouped-query attention, the causal mask, Qwen2's attention layer.
//! Golden tensors from fixtures/gen/day3.py (oracles:
//! mx.fast.scaled_dot_product_attention, mlx_lm qwen2/llama Attention), plus
//! hand-worked and error cases and properties (proptest).

use mlx_rs::{Array, Dtype};
use proptest::prelude::*;
use tiny_llm_grader::imp::attention::scaled_dot_product_attention_simple;
use tiny_llm_grader::imp::attention_grouped::{
    causal_mask, scaled_dot_product_attention_grouped, AttentionMask,
};
use tiny_llm_grader::imp::qwen2_attention::{Qwen2AttentionWeights, Qwen2MultiHeadAttention};
use tiny_llm_grader::prop::check as check_property;
use tiny_llm_grader::{assert_close, check_cases, ok, should_fail, should_fail_naming, Case, Tol};

const DAY: &str = "day3";

fn run_sdpa(c: &Case) -> Array {
    let (q, k) = (c.get("q"), c.get("k"));
    let causal;
    let mask = if c.id.contains("_causal_") {
        causal = ok("causal_mask", causal_mask(q.dim(-2), k.dim(-2), q.dtype()));
        Some(&causal)
    } else {
        c.opt("mask")
    };
    ok(
        "scaled_dot_product_attention_grouped",
        scaled_dot_product_attention_grouped(q, k, c.get("v"), c.meta("scale"), mask),
    )
}

#[test]
fn sdpa_grouped_f32() {
    check_cases(
        "sdpa_grouped_f32",
        DAY,
        "sdpa_grouped_nomask_",
        "f32",
        "out",
        run_sdpa,
    );
}

#[test]
fn sdpa_grouped_f16() {
    check_cases(
        "sdpa_grouped_f16",
        DAY,
        "sdpa_grouped_nomask_",
        "f16",
        "out",
        run_sdpa,
    );
}

#[test]
fn sdpa_grouped_bf16() {
    check_cases(
        "sdpa_grouped_bf16",
        DAY,
        "sdpa_grouped_nomask_",
        "bf16",
        "out",
        run_sdpa,
    );
}

#[test]
fn sdpa_grouped_mask_f32() {
    check_cases(
        "sdpa_grouped_mask_f32",
        DAY,
        "sdpa_grouped_mask_",
        "f32",
        "out",
        run_sdpa,
    );
}

#[test]
fn sdpa_grouped_mask_f16() {
    check_cases(
        "sdpa_grouped_mask_f16",
        DAY,
        "sdpa_grouped_mask_",
        "f16",
        "out",
        run_sdpa,
    );
}

#[test]
fn sdpa_grouped_mask_bf16() {
    check_cases(
        "sdpa_grouped_mask_bf16",
        DAY,
        "sdpa_grouped_mask_",
        "bf16",
        "out",
        run_sdpa,
    );
}

#[test]
fn sdpa_grouped_causal_f32() {
    check_cases(
        "sdpa_grouped_causal_f32",
        DAY,
        "sdpa_grouped_causal_",
        "f32",
        "out",
        run_sdpa,
    );
}

#[test]
fn sdpa_grouped_causal_f16() {
    check_cases(
        "sdpa_grouped_causal_f16",
        DAY,
        "sdpa_grouped_causal_",
        "f16",
        "out",
        run_sdpa,
    );
}

#[test]
fn sdpa_grouped_causal_bf16() {
    check_cases(
        "sdpa_grouped_causal_bf16",
        DAY,
        "sdpa_grouped_causal_",
        "bf16",
        "out",
        run_sdpa,
    );
}

/// `H_q = 3` query heads cannot share `H_kv = 2` key/value heads.
#[test]
fn sdpa_grouped_rejects_bad_heads() {
    let q = Array::from_slice(&[0.1f32; 3 * 2 * 4], &[3, 2, 4]);
    let kv = Array::from_slice(&[0.1f32; 2 * 5 * 4], &[2, 5, 4]);
    should_fail(
        "scaled_dot_product_attention_grouped",
        "H_q = 3, H_kv = 2",
        scaled_dot_product_attention_grouped(&q, &kv, &kv, None, None),
    );
    let k8 = Array::from_slice(&[0.1f32; 2 * 5 * 8], &[2, 5, 8]);
    should_fail(
        "scaled_dot_product_attention_grouped",
        "D = 4 for Q and 8 for K",
        scaled_dot_product_attention_grouped(&q, &k8, &k8, None, None),
    );
}

fn run_causal_mask(c: &Case) -> Array {
    let dtype = c.get("mask").dtype();
    ok(
        "causal_mask",
        causal_mask(c.meta("l").expect("l"), c.meta("s").expect("s"), dtype),
    )
}

#[test]
fn causal_mask_f32() {
    check_cases(
        "causal_mask_f32",
        DAY,
        "causal_mask_",
        "f32",
        "mask",
        run_causal_mask,
    );
}

#[test]
fn causal_mask_f16() {
    check_cases(
        "causal_mask_f16",
        DAY,
        "causal_mask_",
        "f16",
        "mask",
        run_causal_mask,
    );
}

#[test]
fn causal_mask_bf16() {
    check_cases(
        "causal_mask_bf16",
        DAY,
        "causal_mask_",
        "bf16",
        "mask",
        run_causal_mask,
    );
}

/// Hand-worked: L = 2 queries are the last two of S = 3 positions.
#[test]
fn causal_mask_hand_worked() {
    let inf = f32::NEG_INFINITY;
    let want = Array::from_slice(&[0.0, 0.0, inf, 0.0, 0.0, 0.0], &[2, 3]);
    let got = ok("causal_mask", causal_mask(2, 3, Dtype::Float32));
    assert_close(
        "causal_mask_hand_worked",
        "L=2,S=3",
        "mask",
        &got,
        &want,
        Tol::for_dtype(Dtype::Float32),
    );
}

/// More queries than keys cannot be causal: an error, not a panic.
#[test]
fn causal_mask_rejects_l_greater_than_s() {
    should_fail(
        "causal_mask",
        "causal_mask(5, 3)",
        causal_mask(5, 3, Dtype::Float32),
    );
}

fn attention_weights(c: &Case) -> Qwen2AttentionWeights {
    Qwen2AttentionWeights {
        q_proj: c.get("q_proj").clone(),
        k_proj: c.get("k_proj").clone(),
        v_proj: c.get("v_proj").clone(),
        o_proj: c.get("o_proj").clone(),
        q_proj_bias: c.opt("q_proj_bias").cloned(),
        k_proj_bias: c.opt("k_proj_bias").cloned(),
        v_proj_bias: c.opt("v_proj_bias").cloned(),
        o_proj_bias: None,
    }
}

fn run_attention(c: &Case) -> Array {
    let attn = ok(
        "Qwen2MultiHeadAttention::new",
        Qwen2MultiHeadAttention::new(
            c.meta("num_heads").expect("num_heads"),
            c.meta("num_kv_heads").expect("num_kv_heads"),
            attention_weights(c),
            c.meta("rope_theta").expect("rope_theta"),
            c.meta("max_seq_len").expect("max_seq_len"),
        ),
    );
    let mask = match c.meta::<String>("mask").as_deref() {
        Some("causal") => AttentionMask::Causal,
        Some("mask") => AttentionMask::Array(c.get("mask")),
        _ => AttentionMask::None,
    };
    ok(
        "Qwen2MultiHeadAttention::forward",
        attn.forward(c.get("x"), c.meta("offset").unwrap_or(0), mask),
    )
}

#[test]
fn qwen2_attention_f32() {
    check_cases(
        "qwen2_attention_f32",
        DAY,
        "qwen2_attn_causal_",
        "f32",
        "out",
        run_attention,
    );
}

#[test]
fn qwen2_attention_f16() {
    check_cases(
        "qwen2_attention_f16",
        DAY,
        "qwen2_attn_causal_",
        "f16",
        "out",
        run_attention,
    );
}

#[test]
fn qwen2_attention_bf16() {
    check_cases(
        "qwen2_attention_bf16",
        DAY,
        "qwen2_attn_causal_",
        "bf16",
        "out",
        run_attention,
    );
}

#[test]
fn qwen2_attention_offset_f32() {
    check_cases(
        "qwen2_attention_offset_f32",
        DAY,
        "qwen2_attn_offset_",
        "f32",
        "out",
        run_attention,
    );
}

#[test]
fn qwen2_attention_offset_f16() {
    check_cases(
        "qwen2_attention_offset_f16",
        DAY,
        "qwen2_attn_offset_",
        "f16",
        "out",
        run_attention,
    );
}

#[test]
fn qwen2_attention_offset_bf16() {
    check_cases(
        "qwen2_attention_offset_bf16",
        DAY,
        "qwen2_attn_offset_",
        "bf16",
        "out",
        run_attention,
    );
}

#[test]
fn qwen2_attention_mask_f32() {
    check_cases(
        "qwen2_attention_mask_f32",
        DAY,
        "qwen2_attn_mask_",
        "f32",
        "out",
        run_attention,
    );
}

#[test]
fn qwen2_attention_mask_f16() {
    check_cases(
        "qwen2_attention_mask_f16",
        DAY,
        "qwen2_attn_mask_",
        "f16",
        "out",
        run_attention,
    );
}

#[test]
fn qwen2_attention_no_mask_f32() {
    check_cases(
        "qwen2_attention_no_mask_f32",
        DAY,
        "qwen2_attn_nomask_",
        "f32",
        "out",
        run_attention,
    );
}

#[test]
fn qwen2_attention_no_mask_f16() {
    check_cases(
        "qwen2_attention_no_mask_f16",
        DAY,
        "qwen2_attn_nomask_",
        "f16",
        "out",
        run_attention,
    );
}

/// Llama's attention: no biases, one key/value head for four query heads.
#[test]
fn qwen2_attention_llama_f32() {
    check_cases(
        "qwen2_attention_llama_f32",
        DAY,
        "qwen2_attn_llama_",
        "f32",
        "out",
        run_attention,
    );
}

#[test]
fn qwen2_attention_llama_f16() {
    check_cases(
        "qwen2_attention_llama_f16",
        DAY,
        "qwen2_attn_llama_",
        "f16",
        "out",
        run_attention,
    );
}

/// A wrongly shaped weight is an error naming the tensor, not a panic.
#[test]
fn qwen2_attention_rejects_bad_weights() {
    let c = Case::load(DAY, "qwen2_attn_causal_f32");
    let build = |w: Qwen2AttentionWeights| Qwen2MultiHeadAttention::new(4, 2, w, 1e6, 64);
    assert!(
        build(attention_weights(&c)).is_ok(),
        "[error] the fixture's weights must be accepted"
    );
    let mut w = attention_weights(&c);
    w.k_proj = c.get("q_proj").clone(); // 64 x 64 where 32 x 64 is expected
    should_fail_naming(
        "Qwen2MultiHeadAttention::new",
        "a 64 x 64 k_proj with H_kv = 2, D = 16",
        build(w),
        &["k_proj"],
    );
    let mut w = attention_weights(&c);
    w.v_proj_bias = c.opt("q_proj_bias").cloned(); // [64] where [32] is expected
    should_fail(
        "Qwen2MultiHeadAttention::new",
        "a [64] v_proj bias",
        build(w),
    );
    should_fail(
        "Qwen2MultiHeadAttention::new",
        "H_kv = 3 does not divide H_q = 4",
        Qwen2MultiHeadAttention::new(4, 3, attention_weights(&c), 1e6, 64),
    );
}

/// The values of `a` in row-major order, whatever its layout.
fn values(a: &Array) -> Vec<f32> {
    tiny_llm_grader::compare::values_f64(a)
        .into_iter()
        .map(|v| v as f32)
        .collect()
}

fn qkv() -> impl Strategy<Value = (i32, i32, i32, i32, Vec<f32>)> {
    (
        1i32..=3,
        1i32..=4,
        1i32..=6,
        prop::sample::select(vec![4i32, 8]),
    )
        .prop_flat_map(|(h, l, extra, d)| {
            let s = l + extra - 1;
            let n = (h * l * d + 2 * h * s * d) as usize;
            (
                Just(h),
                Just(l),
                Just(s),
                Just(d),
                prop::collection::vec(-3.0f32..3.0, n),
            )
        })
}

/// `causal_mask(L, S)` is the last `L` rows of `causal_mask(S, S)`.
#[test]
fn prop_causal_mask_is_suffix_of_square() {
    check_property(
        "prop_causal_mask_is_suffix_of_square",
        32,
        (1i32..=12, 0.0f64..1.0),
        |(s, l_frac)| {
            let l = 1 + ((s - 1) as f64 * l_frac) as i32;
            let rect = values(&ok("causal_mask", causal_mask(l, s, Dtype::Float32)));
            let square = values(&ok("causal_mask", causal_mask(s, s, Dtype::Float32)));
            prop_assert_eq!(
                rect.len(),
                (l * s) as usize,
                "[wrong shape] causal_mask({}, {})",
                l,
                s
            );
            let tail = &square[((s - l) * s) as usize..];
            prop_assert!(
                rect.iter().zip(tail).all(|(a, b)| a == b),
                "[wrong numbers] causal_mask({}, {}) = {:?}, last rows of causal_mask({}, {}) = {:?}",
                l, s, rect, s, s, tail
            );
            Ok(())
        },
    );
}

/// With as many key/value heads as query heads, grouped attention is
/// day 1's attention.
#[test]
fn prop_grouped_equals_simple_when_heads_match() {
    check_property(
        "prop_grouped_equals_simple_when_heads_match",
        32,
        (qkv(), any::<bool>()),
        |((h, l, s, d, data), causal)| {
            let (nq, nk) = ((h * l * d) as usize, (h * s * d) as usize);
            let q = Array::from_slice(&data[..nq], &[1, h, l, d]);
            let k = Array::from_slice(&data[nq..nq + nk], &[1, h, s, d]);
            let v = Array::from_slice(&data[nq + nk..], &[1, h, s, d]);
            let mask = causal_mask(l, s, Dtype::Float32);
            let mask = if causal {
                Some(ok("causal_mask", mask))
            } else {
                None
            };
            let got = values(&ok(
                "scaled_dot_product_attention_grouped",
                scaled_dot_product_attention_grouped(&q, &k, &v, None, mask.as_ref()),
            ));
            let want = values(&ok(
                "scaled_dot_product_attention_simple",
                scaled_dot_product_attention_simple(&q, &k, &v, None, mask.as_ref()),
            ));
            prop_assert_eq!(got.len(), want.len(), "[wrong shape] grouped vs simple");
            // f32 tolerance of this device (TF32 matmuls on a GPU)
            let tol = tiny_llm_grader::Tol::for_day("day3", Dtype::Float32);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                prop_assert!(
                    ((g - w).abs() as f64) <= tol.atol + tol.rtol * (w.abs() as f64),
                    "[wrong numbers] element {}: grouped {} vs simple {}",
                    i,
                    g,
                    w
                );
            }
            Ok(())
        },
    );
}
