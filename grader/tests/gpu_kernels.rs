//! The CUDA kernels of days 11 and 12 (`fused_gpu`, `flash_attention_gpu`)
//! against the week-1 ops computed by MLX (an independent oracle: RMSNorm,
//! softmax, RoPE, silu and grouped attention of days 1-4, with `causal_mask`).
//!
//! The numeric tests need an NVIDIA GPU with `cargo xtask setup --backend
//! cuda`; elsewhere they print `[skipped] no GPU` (reported as skipped by
//! `cargo xtask check`, never as passed). The argument checks run everywhere:
//! the kernels reject bad input on the host, before any GPU is touched, and
//! without a GPU a valid call returns an error that says so (never a crash).
//!
//! Tolerance: course.toml `[tolerance.gpu]` for the output's dtype (the oracle
//! runs on MLX's default device, a GPU there, where f32 matmuls are TF32).
//! The kernels themselves compute in f32 with no TF32: run through the same
//! wrapping in CuPy on an H200, their worst error against a float64 oracle was
//! 1.1e-6 (f32 attention) and one bf16 rounding for bf16 outputs.

use mlx_rs::ops::concatenate;
use mlx_rs::ops::indexing::TryIndexOp;
use mlx_rs::{Array, Dtype};
use tiny_llm_common::AttentionMask;
use tiny_llm_grader::device::require_gpu;
use tiny_llm_grader::imp::attention_grouped::{causal_mask, scaled_dot_product_attention_grouped};
use tiny_llm_grader::imp::basics::softmax;
use tiny_llm_grader::imp::flash_attention_gpu::flash_attention;
use tiny_llm_grader::imp::fused_gpu;
use tiny_llm_grader::imp::layer_norm::RmsNorm;
use tiny_llm_grader::imp::mlp::silu;
use tiny_llm_grader::imp::positional_encoding::RoPE;
use tiny_llm_grader::{assert_close, ok, should_fail_naming, Tol};

/// Deterministic values uniform in `[-scale, scale)` (xorshift64), as f32.
fn rand(shape: &[i32], seed: u64, scale: f32) -> Array {
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

fn cast(a: &Array, d: Dtype) -> Array {
    a.as_dtype(d)
        .unwrap_or_else(|e| panic!("[error] cannot cast: {e}"))
}

/// `got` (in `dtype`) against the oracle `want`, at the GPU tolerance of
/// `dtype`.
fn check(test: &str, case: &str, got: &Array, want: &Array, dtype: Dtype) {
    assert_eq!(
        got.dtype(),
        dtype,
        "[wrong shape] {test}, case {case}: got dtype {:?}, expected {dtype:?}",
        got.dtype()
    );
    let tol = Tol::for_dtype_on_gpu(dtype);
    let want = cast(want, Dtype::Float32);
    assert_close(test, case, "out", &cast(got, Dtype::Float32), &want, tol);
}

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
        let x = cast(&rand(shape, i as u64, 3.0), dtype);
        let w = rand(&[e], 100 + i as u64, 1.5);
        let got = ok("rms_norm", fused_gpu::rms_norm(&x, &w, 1e-6));
        let norm = ok("RmsNorm::new", RmsNorm::new(w.clone(), 1e-6));
        let want = ok("RmsNorm::forward", norm.forward(&cast(&x, Dtype::Float32)));
        check(test, &format!("{shape:?} {dtype:?}"), &got, &want, dtype);
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
        let x = cast(&rand(shape, 10 + i as u64, 6.0), dtype);
        let got = ok("softmax", fused_gpu::softmax(&x));
        let want = ok("week-1 softmax", softmax(&cast(&x, Dtype::Float32), -1));
        check(test, &format!("{shape:?} {dtype:?}"), &got, &want, dtype);
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
            let x = cast(&rand(&[3, 5, 2, 64], 20 + i as u64, 2.0), dtype);
            let got = ok("rope", fused_gpu::rope(&x, view(&rope), &offsets));
            let xf = cast(&x, Dtype::Float32);
            let rows: Vec<Array> = (0..3)
                .map(|b| {
                    let row = xf.try_index(b..b + 1).expect("[error] a batch row");
                    ok("RoPE::forward", rope.forward(&row, offsets[b as usize]))
                })
                .collect();
            let want = concatenate(&rows, 0).expect("[error] concatenate");
            let case = format!("traditional={traditional} offsets={offsets:?} {dtype:?}");
            check(test, &case, &got, &want, dtype);
            // One offset applies to every row.
            let got = ok("rope", fused_gpu::rope(&x, view(&rope), &[4]));
            let want = ok("RoPE::forward", rope.forward(&xf, 4));
            check(test, &format!("{case}, one offset 4"), &got, &want, dtype);
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
        let gate = cast(&rand(shape, 30 + i as u64, 6.0), dtype);
        let up = cast(&rand(shape, 40 + i as u64, 2.0), dtype);
        let got = ok("swiglu", fused_gpu::swiglu(&gate, &up));
        let (g, u) = (cast(&gate, Dtype::Float32), cast(&up, Dtype::Float32));
        let want = ok("silu", silu(&g)).multiply(&u).expect("[error] multiply");
        check(test, &format!("{shape:?} {dtype:?}"), &got, &want, dtype);
    }
}

/// One attention case: `(N, H_q, H_kv, L, S, D, causal, K/V dtype)`.
type AttnCase = (i32, i32, i32, i32, i32, i32, bool, Dtype);

fn check_attention(test: &str, cases: &[AttnCase]) {
    for (i, &(n, h_q, h_kv, l, s, d, causal, kv)) in cases.iter().enumerate() {
        let seed = 1000 + 10 * i as u64;
        let q = rand(&[n, h_q, l, d], seed, 2.0);
        let k = cast(&rand(&[n, h_kv, s, d], seed + 1, 2.0), kv);
        let v = cast(&rand(&[n, h_kv, s, d], seed + 2, 2.0), kv);
        let scale = 1.0 / (d as f32).sqrt();
        let mask = if causal {
            AttentionMask::Causal
        } else {
            AttentionMask::None
        };
        let got = ok("flash_attention", flash_attention(&q, &k, &v, scale, mask));
        let oracle_mask = causal.then(|| ok("causal_mask", causal_mask(l, s, Dtype::Float32)));
        let (kf, vf) = (cast(&k, Dtype::Float32), cast(&v, Dtype::Float32));
        let want = ok(
            "week-1 grouped attention",
            scaled_dot_product_attention_grouped(&q, &kf, &vf, Some(scale), oracle_mask.as_ref()),
        );
        let case =
            format!("N={n} H_q={h_q} H_kv={h_kv} L={l} S={s} D={d} causal={causal} kv={kv:?}");
        check(test, &case, &got, &want, Dtype::Float32);
    }
}

#[test]
fn gpu_flash_attention_prefill_matches_week1() {
    let test = "gpu_flash_attention_prefill_matches_week1";
    if !require_gpu(test) {
        return;
    }
    let (f32_, bf16) = (Dtype::Float32, Dtype::Bfloat16);
    // Partial query tiles (16 rows) and key tiles (32 keys), GQA, causal
    // tile skipping with S > L (a chunk after a cached prefix), bf16 K/V.
    let cases: Vec<AttnCase> = vec![
        (1, 4, 2, 2, 2, 64, true, f32_),
        (2, 4, 1, 5, 5, 32, false, f32_),
        (1, 14, 2, 16, 16, 64, true, f32_),
        (1, 4, 2, 17, 40, 64, true, f32_),
        (1, 4, 4, 31, 31, 128, true, f32_),
        (2, 4, 2, 33, 129, 64, true, bf16),
        (1, 2, 1, 64, 1000, 64, true, f32_),
        (1, 2, 1, 100, 127, 16, false, bf16),
        (1, 2, 2, 7, 4096, 64, true, f32_),
    ];
    check_attention(test, &cases);
}

#[test]
fn gpu_flash_attention_decode_matches_week1() {
    let test = "gpu_flash_attention_decode_matches_week1";
    if !require_gpu(test) {
        return;
    }
    // L = 1 over the S sweep: the split-S kernel and its merge.
    let mut cases: Vec<AttnCase> = Vec::new();
    for (i, s) in [1, 31, 32, 127, 128, 129, 1000, 4096]
        .into_iter()
        .enumerate()
    {
        let kv = if i % 2 == 0 {
            Dtype::Float32
        } else {
            Dtype::Bfloat16
        };
        cases.push((1, 14, 2, 1, s, 64, i % 3 == 0, kv));
    }
    cases.push((2, 4, 4, 1, 300, 128, false, Dtype::Float32));
    check_attention(test, &cases);
}

#[test]
fn gpu_flash_attention_array_mask_matches_week1() {
    let test = "gpu_flash_attention_array_mask_matches_week1";
    if !require_gpu(test) {
        return;
    }
    let inf = f32::NEG_INFINITY;
    for (l, s) in [(19, 45), (1, 300)] {
        let (n, h_q, h_kv, d) = (2, 4, 2, 64);
        let q = rand(&[n, h_q, l, d], 7, 2.0);
        let k = rand(&[n, h_kv, s, d], 8, 2.0);
        let v = rand(&[n, h_kv, s, d], 9, 2.0);
        // L x S, with every third key of a row masked (never a whole row).
        let vals: Vec<f32> = (0..l * s)
            .map(|i| {
                if (i % s) % 3 == 1 {
                    inf
                } else {
                    (i % 7) as f32 * 0.25
                }
            })
            .collect();
        let mask = Array::from_slice(&vals, &[l, s]);
        let scale = 0.125;
        let got = ok(
            "flash_attention",
            flash_attention(&q, &k, &v, scale, AttentionMask::Array(&mask)),
        );
        let want = ok(
            "week-1 grouped attention",
            scaled_dot_product_attention_grouped(&q, &k, &v, Some(scale), Some(&mask)),
        );
        check(
            test,
            &format!("L={l} S={s} mask [L, S]"),
            &got,
            &want,
            Dtype::Float32,
        );
    }
}

#[test]
fn gpu_fused_rejects_bad_input() {
    let x = rand(&[2, 3, 8], 1, 1.0);
    should_fail_naming(
        "rms_norm",
        "weight [9] for E = 8",
        fused_gpu::rms_norm(&x, &rand(&[9], 2, 1.0), 1e-6),
        &["weight"],
    );
    should_fail_naming(
        "rms_norm",
        "eps = 0",
        fused_gpu::rms_norm(&x, &rand(&[8], 2, 1.0), 0.0),
        &["eps"],
    );
    let rope = ok("RoPE::new", RoPE::new(8, 16, 10_000.0, false));
    let x4 = rand(&[3, 5, 2, 8], 3, 1.0);
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
        fused_gpu::rope(&rand(&[1, 2, 2, 16], 4, 1.0), view(&rope), &[0]),
        &["rope input"],
    );
    should_fail_naming(
        "swiglu",
        "gate [2, 3, 8] and up [2, 3, 9]",
        fused_gpu::swiglu(&x, &rand(&[2, 3, 9], 5, 1.0)),
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

#[test]
fn gpu_flash_attention_rejects_bad_input() {
    let q = rand(&[1, 3, 4, 16], 1, 1.0);
    let k = rand(&[1, 2, 6, 16], 2, 1.0);
    should_fail_naming(
        "flash_attention",
        "H_q = 3, H_kv = 2",
        flash_attention(&q, &k, &k, 0.25, AttentionMask::None),
        &["key"],
    );
    let q = rand(&[1, 2, 4, 16], 1, 1.0);
    should_fail_naming(
        "flash_attention",
        "key with D = 8 for query D = 16",
        flash_attention(
            &q,
            &rand(&[1, 2, 6, 8], 3, 1.0),
            &k,
            0.25,
            AttentionMask::None,
        ),
        &["key"],
    );
    should_fail_naming(
        "flash_attention",
        "value with S = 5 for key S = 6",
        flash_attention(
            &q,
            &k,
            &rand(&[1, 2, 5, 16], 3, 1.0),
            0.25,
            AttentionMask::None,
        ),
        &["value"],
    );
    let short = rand(&[1, 2, 3, 16], 4, 1.0);
    should_fail_naming(
        "flash_attention",
        "causal with L = 4 > S = 3",
        flash_attention(&q, &short, &short, 0.25, AttentionMask::Causal),
        &["causal"],
    );
    let mask = rand(&[3, 6], 5, 1.0);
    should_fail_naming(
        "flash_attention",
        "mask [3, 6] for L = 4, S = 6",
        flash_attention(&q, &k, &k, 0.25, AttentionMask::Array(&mask)),
        &["mask"],
    );
    let wide = rand(&[1, 1, 2, 256], 6, 1.0);
    should_fail_naming(
        "flash_attention",
        "D = 256",
        flash_attention(&wide, &wide, &wide, 0.0625, AttentionMask::None),
        &["128"],
    );
}

#[test]
fn gpu_kernels_without_a_gpu_say_so() {
    if tiny_llm_common::gpu::gpu_available() {
        return; // the numeric tests above cover this machine
    }
    let x = rand(&[2, 8], 1, 1.0);
    should_fail_naming(
        "rms_norm (no GPU)",
        "a valid call on a machine without a CUDA GPU",
        fused_gpu::rms_norm(&x, &rand(&[8], 2, 1.0), 1e-6),
        &["GPU"],
    );
    let q = rand(&[1, 2, 3, 16], 3, 1.0);
    should_fail_naming(
        "flash_attention (no GPU)",
        "a valid call on a machine without a CUDA GPU",
        flash_attention(&q, &q, &q, 0.25, AttentionMask::Causal),
        &["GPU"],
    );
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
