//! Day 4: RMSNorm, SiLU, Qwen2's MLP.
//! Golden tensors from fixtures/gen/day4.py (oracles: mx.fast.rms_norm,
//! nn.silu, mlx_lm qwen2 MLP), plus hand-worked and error cases.

use mlx_rs::{Array, Dtype};
use tiny_llm_grader::imp::layer_norm::RmsNorm;
use tiny_llm_grader::imp::mlp::{silu, Qwen2Mlp};
use tiny_llm_grader::{assert_close, check_cases, ok, should_fail, should_fail_naming, Case, Tol};

const DAY: &str = "day4";

fn run_rms_norm(c: &Case) -> Array {
    let norm = ok(
        "RmsNorm::new",
        RmsNorm::new(c.get("weight").clone(), c.meta("eps").expect("eps")),
    );
    ok("RmsNorm::forward", norm.forward(c.get("x")))
}

#[test]
fn rms_norm_f32() {
    check_cases(
        "rms_norm_f32",
        DAY,
        "rms_norm_shape",
        "f32",
        "y",
        run_rms_norm,
    );
}

#[test]
fn rms_norm_f16() {
    check_cases(
        "rms_norm_f16",
        DAY,
        "rms_norm_shape",
        "f16",
        "y",
        run_rms_norm,
    );
}

#[test]
fn rms_norm_bf16() {
    check_cases(
        "rms_norm_bf16",
        DAY,
        "rms_norm_shape",
        "bf16",
        "y",
        run_rms_norm,
    );
}

/// Activations of 300..1000: their squares overflow float16 (max 65504), so
/// the mean of squares must be taken in float32.
#[test]
fn rms_norm_large_f16() {
    check_cases(
        "rms_norm_large_f16",
        DAY,
        "rms_norm_large_",
        "f16",
        "y",
        run_rms_norm,
    );
}

#[test]
fn rms_norm_large_bf16() {
    check_cases(
        "rms_norm_large_bf16",
        DAY,
        "rms_norm_large_",
        "bf16",
        "y",
        run_rms_norm,
    );
}

/// A 2-D weight, or an input whose width is not the weight's, is an error.
#[test]
fn rms_norm_rejects_bad_shapes() {
    let w2 = Array::from_slice(&[1.0f32; 8], &[2, 4]);
    should_fail("RmsNorm::new", "a [2, 4] weight", RmsNorm::new(w2, 1e-6));
    let norm = ok(
        "RmsNorm::new",
        RmsNorm::new(Array::from_slice(&[1.0f32; 4], &[4]), 1e-6),
    );
    let x = Array::from_slice(&[1.0f32; 6], &[2, 3]);
    should_fail(
        "RmsNorm::forward",
        "a [2, 3] input for E = 4",
        norm.forward(&x),
    );
}

/// Hand-worked, large inputs: rows [300, 400] and [3000, -4000] have
/// mean(x^2) = 1.25e5 and 1.25e7, rms = 353.5534 and 3535.534, so with weight 1
/// both normalize to [0.6 sqrt(2), 0.8 sqrt(2)] = [0.8485281, 1.1313708] (the
/// second with its signs). In float16 x^2 overflows (max 65504): a norm that
/// does not compute in f32 gives 0 or NaN.
#[test]
fn rms_norm_large_hand_worked() {
    let (a, b) = (0.6 * 2f32.sqrt(), 0.8 * 2f32.sqrt());
    for dtype in [Dtype::Float32, Dtype::Float16, Dtype::Bfloat16] {
        let norm = ok(
            "RmsNorm::new",
            RmsNorm::new(
                Array::from_slice(&[1.0f32, 1.0], &[2])
                    .as_dtype(dtype)
                    .expect("as_dtype"),
                1e-6,
            ),
        );
        let x = Array::from_slice(&[300.0f32, 400.0, 3000.0, -4000.0], &[2, 2])
            .as_dtype(dtype)
            .expect("as_dtype");
        let want = Array::from_slice(&[a, b, a, -b], &[2, 2])
            .as_dtype(dtype)
            .expect("as_dtype");
        let got = ok("RmsNorm::forward", norm.forward(&x));
        assert_close(
            "rms_norm_large_hand_worked",
            &format!("[[300, 400], [3000, -4000]] {dtype:?}"),
            "y",
            &got,
            &want,
            Tol::for_dtype(dtype),
        );
    }
}

fn run_silu(c: &Case) -> Array {
    ok("silu", silu(c.get("x")))
}

#[test]
fn silu_f32() {
    check_cases("silu_f32", DAY, "silu_normal_", "f32", "y", run_silu);
}

#[test]
fn silu_f16() {
    check_cases("silu_f16", DAY, "silu_normal_", "f16", "y", run_silu);
}

#[test]
fn silu_bf16() {
    check_cases("silu_bf16", DAY, "silu_normal_", "bf16", "y", run_silu);
}

/// |x| up to 3e4: `exp(-x)` overflows, the result must not be inf or NaN.
#[test]
fn silu_large_f32() {
    check_cases("silu_large_f32", DAY, "silu_large_", "f32", "y", run_silu);
}

#[test]
fn silu_large_f16() {
    check_cases("silu_large_f16", DAY, "silu_large_", "f16", "y", run_silu);
}

#[test]
fn silu_large_bf16() {
    check_cases("silu_large_bf16", DAY, "silu_large_", "bf16", "y", run_silu);
}

/// Hand-worked: silu(0) = 0, silu(±1) = ±1 / (1 + e^∓1), silu(2) = 2 / (1 + e^-2).
#[test]
fn silu_hand_worked() {
    let x = Array::from_slice(&[0.0f32, 1.0, -1.0, 2.0], &[4]);
    let want: Vec<f32> = [0.0f32, 1.0, -1.0, 2.0]
        .iter()
        .map(|&v| v / (1.0 + (-v).exp()))
        .collect();
    let want = Array::from_slice(&want, &[4]);
    let got = ok("silu", silu(&x));
    assert_close(
        "silu_hand_worked",
        "hand",
        "y",
        &got,
        &want,
        Tol::for_dtype(Dtype::Float32),
    );
}

/// Hand-worked, large |x|: silu(1000) = 1000 / (1 + e^-1000) = 1000,
/// silu(-1000) = -1000 / (1 + e^1000) = -0 (|value| < 1e-400),
/// silu(20) = 20 / (1 + e^-20) = 19.99999959, silu(-20) = -20 / (1 + e^20)
/// = -4.1223072e-8. Forms such as e^x / (1 + e^x) give inf / inf = NaN at
/// x = 1000.
#[test]
fn silu_large_hand_worked() {
    let x = [1000.0f32, -1000.0, 20.0, -20.0];
    let want = [1000.0f64, -0.0, 19.999_999_96, -4.122_307_2e-8].map(|v| v as f32);
    for dtype in [Dtype::Float32, Dtype::Float16, Dtype::Bfloat16] {
        let xa = Array::from_slice(&x, &[4])
            .as_dtype(dtype)
            .expect("as_dtype");
        let wa = Array::from_slice(&want, &[4])
            .as_dtype(dtype)
            .expect("as_dtype");
        let got = ok("silu", silu(&xa));
        assert_close(
            "silu_large_hand_worked",
            &format!("[1000, -1000, 20, -20] {dtype:?}"),
            "y",
            &got,
            &wa,
            Tol::for_dtype(dtype),
        );
    }
}

fn run_mlp(c: &Case) -> Array {
    let mlp = ok(
        "Qwen2Mlp::new",
        Qwen2Mlp::new(
            c.get("gate_proj").clone(),
            c.get("up_proj").clone(),
            c.get("down_proj").clone(),
        ),
    );
    ok("Qwen2Mlp::forward", mlp.forward(c.get("x")))
}

#[test]
fn mlp_f32() {
    check_cases("mlp_f32", DAY, "mlp_", "f32", "y", run_mlp);
}

#[test]
fn mlp_f16() {
    check_cases("mlp_f16", DAY, "mlp_", "f16", "y", run_mlp);
}

#[test]
fn mlp_bf16() {
    check_cases("mlp_bf16", DAY, "mlp_", "bf16", "y", run_mlp);
}

/// Swapped or mis-sized weights are an error naming the weight.
#[test]
fn mlp_rejects_bad_weights() {
    let c = Case::load(DAY, "mlp_2x5x32_f32");
    let (g, u, d) = (c.get("gate_proj"), c.get("up_proj"), c.get("down_proj"));
    assert!(
        Qwen2Mlp::new(g.clone(), u.clone(), d.clone()).is_ok(),
        "[error] the fixture's weights must be accepted"
    );
    should_fail_naming(
        "Qwen2Mlp::new",
        "a [64, 32] down_proj (E = 32, I = 64)",
        Qwen2Mlp::new(g.clone(), u.clone(), u.clone()),
        &["down_proj"],
    );
    should_fail(
        "Qwen2Mlp::new",
        "a [32, 64] up_proj",
        Qwen2Mlp::new(g.clone(), d.clone(), d.clone()),
    );
    let mlp = ok(
        "Qwen2Mlp::new",
        Qwen2Mlp::new(g.clone(), u.clone(), d.clone()),
    );
    let x = Array::from_slice(&[1.0f32; 16], &[1, 16]);
    should_fail(
        "Qwen2Mlp::forward",
        "a [1, 16] input for E = 32",
        mlp.forward(&x),
    );
}
