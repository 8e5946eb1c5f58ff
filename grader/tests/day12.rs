//! Day 12: flash attention (CPU).
//!
//! - `flash_attention` (through the CPU bridge) against MLX's own
//!   `mx.fast.scaled_dot_product_attention` (fixtures/gen/day12.py: a sweep
//!   of (L, S) with partial tiles, S up to 4096, causal and additive masks
//!   of three broadcast shapes, GQA, f32 and bf16 K/V), and against day 3's
//!   `scaled_dot_product_attention_grouped` (the week-1 attention) over
//!   S in {1, 31, 32, 127, 128, 129, 1000, 4096}, L = 1 and partial query
//!   tiles, f32 and bf16 K/V, on inputs drawn here.
//! - The kernel on slices (`flash_attention_cpu`): its scalar oracle and the
//!   tiled kernel against the same fixtures, a hand-worked case, fully masked
//!   rows (NaN, as MLX), a property (kernel == oracle on random shapes,
//!   masks, strides and K/V dtypes), and length errors.
//! - Memory: attention of 1024 queries over 4096 keys allocates no `L x S`
//!   buffer, neither on the Rust heap (this binary counts every allocation)
//!   nor in MLX (`cpu_bridge::mlx_peak_memory`); the meter is shown to see a
//!   materialised score matrix.
//! - The tiny Qwen2 with `Week2Kernels { flash_attention: true, .. }`
//!   against mlx-lm's logits of day 8 (prefill, a chunk at an offset, then
//!   one-token steps).
//! - On a GPU (`gpu_*`): the CUDA kernels of `flash_attention_gpu` against
//!   day 3's grouped attention (prefill tiles, GQA, causal with `S > L`, an
//!   `L x S` mask, split-S decode), at the day's `[day.tolerance_gpu]`, and
//!   the tiny Qwen2 with `Week2Kernels { flash_attention: true, .. }.on_gpu()`
//!   against mlx-lm at `[tolerance.logprobs_gpu]`; skipped without a usable
//!   GPU. Their argument checks run everywhere.

use half::{bf16, f16};
use mlx_rs::ops::indexing::TryIndexOp;
use mlx_rs::{Array, Dtype};
use proptest::prelude::*;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use tiny_llm_common::cpu_bridge::{self, host, host_f32};
use tiny_llm_common::{AttentionMask, Checkpoint, Qwen2Config, Week2Kernels};
use tiny_llm_grader::device::{require_gpu, skip};
use tiny_llm_grader::fixture::checked_dir;
use tiny_llm_grader::gpu_check::{cast_to, check_gpu, seeded};
use tiny_llm_grader::imp::attention_grouped::{causal_mask, scaled_dot_product_attention_grouped};
use tiny_llm_grader::imp::flash_attention::flash_attention;
use tiny_llm_grader::imp::flash_attention_cpu::{
    attention_scalar, flash_attention as fa_kernel, AttentionDims, KvElement, Mask,
};
use tiny_llm_grader::imp::flash_attention_gpu;
use tiny_llm_grader::imp::qwen2_week2::Qwen2ModelWeek2;
use tiny_llm_grader::{
    assert_close, check_cases, ok, prop, should_fail, should_fail_naming, Case, Tol,
};

const DAY: &str = "day12";

// ---- a heap meter -------------------------------------------------------------

/// The system allocator, counting the bytes this process holds and their
/// peak (every thread: rayon's workers too).
struct Counting;

static HELD: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to `System`, adding bookkeeping only.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = HELD.fetch_add(layout.size(), Relaxed) + layout.size();
            PEAK.fetch_max(now, Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        HELD.fetch_sub(layout.size(), Relaxed);
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        let p = unsafe { System.realloc(ptr, layout, new) };
        if !p.is_null() {
            if new >= layout.size() {
                let now = HELD.fetch_add(new - layout.size(), Relaxed) + new - layout.size();
                PEAK.fetch_max(now, Relaxed);
            } else {
                HELD.fetch_sub(layout.size() - new, Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Runs `f`; returns its value and the most Rust-heap bytes held during it
/// beyond what was held before.
fn heap_peak<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let base = HELD.load(Relaxed);
    PEAK.store(base, Relaxed);
    let out = f();
    (out, PEAK.load(Relaxed).saturating_sub(base))
}

// ---- helpers --------------------------------------------------------------------

/// The case's mask as the fixed signature takes it.
fn mask_of(c: &Case) -> AttentionMask<'_> {
    match c.meta::<String>("mask").expect("mask").as_str() {
        "causal" => AttentionMask::Causal,
        "none" => AttentionMask::None,
        "array" => AttentionMask::Array(c.get("mask")),
        m => panic!("[fixture] {}: unknown mask {m}", c.id),
    }
}

/// Runs `f` and checks that it read its inputs through the CPU bridge (the
/// kernel on host slices, not MLX's attention).
fn through_the_bridge<T>(what: &str, f: impl FnOnce() -> T) -> T {
    cpu_bridge::reset_stats();
    let out = f();
    assert!(
        cpu_bridge::stats().reads >= 3,
        "[wrong numbers] {what} did not read q, k and v through tiny_llm_common::cpu_bridge \
         (host_f32 / host): it must run your flash_attention_cpu kernel on the host slices"
    );
    out
}

fn run_fixture(c: &Case) -> Array {
    let scale: f32 = c.meta("scale").expect("scale");
    through_the_bridge("flash_attention", || {
        ok(
            "flash_attention",
            flash_attention(c.get("q"), c.get("k"), c.get("v"), scale, mask_of(c)),
        )
    })
}

/// Row-major strides of `shape` (up to 4 axes, left-padded) read as
/// `N x H_q x L x S`, 0 on the broadcast axes.
fn strides_of(shape: &[i32]) -> [usize; 4] {
    let mut dims = [1usize; 4];
    for (d, s) in dims[4 - shape.len()..].iter_mut().zip(shape) {
        *d = *s as usize;
    }
    let mut st = [0usize; 4];
    let mut step = 1;
    for a in (0..4).rev() {
        st[a] = if dims[a] == 1 { 0 } else { step };
        step *= dims[a];
    }
    st
}

/// Which slice kernel to run.
#[derive(Clone, Copy)]
enum Which {
    Oracle,
    Kernel,
}

/// The case through `attention_scalar` or the kernel, on host slices.
fn run_slices(c: &Case, which: Which) -> Array {
    let (q, k, v) = (c.get("q"), c.get("k"), c.get("v"));
    let dims = AttentionDims {
        n: q.dim(0) as usize,
        h_q: q.dim(1) as usize,
        h_kv: k.dim(1) as usize,
        l: q.dim(2) as usize,
        s: k.dim(2) as usize,
        d: q.dim(3) as usize,
        dv: v.dim(3) as usize,
    };
    let scale: f32 = c.meta("scale").expect("scale");
    let hq = ok("host_f32(q)", host_f32(q, "q"));
    let hm = c.opt("mask").map(|m| {
        (
            ok("host_f32(mask)", host_f32(m, "mask")),
            strides_of(m.shape()),
        )
    });
    let mask = match (c.meta::<String>("mask").expect("mask").as_str(), &hm) {
        ("causal", _) => Mask::Causal,
        ("array", Some((m, st))) => Mask::Additive {
            data: ok("mask slice", m.slice::<f32>()),
            strides: *st,
        },
        _ => Mask::None,
    };
    let mut out = vec![f32::NAN; dims.n * dims.h_q * dims.l * dims.dv];
    let qs = ok("q slice", hq.slice::<f32>());
    fn go<K: KvElement + mlx_rs::ArrayElement>(
        which: Which,
        (qs, k, v): (&[f32], &Array, &Array),
        dims: &AttentionDims,
        scale: f32,
        mask: Mask<'_>,
        out: &mut [f32],
    ) {
        let hk = ok("host(k)", host(k, "k", k.dtype()));
        let hv = ok("host(v)", host(v, "v", v.dtype()));
        let (ks, vs) = (ok("k", hk.slice::<K>()), ok("v", hv.slice::<K>()));
        let r = match which {
            Which::Oracle => attention_scalar(qs, ks, vs, dims, scale, mask, out),
            Which::Kernel => fa_kernel(qs, ks, vs, dims, scale, mask, out),
        };
        r.unwrap_or_else(|e| panic!("[error] the kernel returned an error: {e}"));
    }
    match k.dtype() {
        Dtype::Float32 => go::<f32>(which, (qs, k, v), &dims, scale, mask, &mut out),
        Dtype::Bfloat16 => go::<bf16>(which, (qs, k, v), &dims, scale, mask, &mut out),
        d => panic!("[fixture] {}: k of dtype {d:?}", c.id),
    }
    let shape = [dims.n, dims.h_q, dims.l, dims.dv].map(|x| x as i32);
    Array::from_slice(&out, &shape)
}

// ---- the bridge against MLX -------------------------------------------------------

#[test]
fn flash_attention_kv_f32() {
    check_cases(
        "flash_attention_kv_f32",
        DAY,
        "fa_kvf32_",
        "f32",
        "expected",
        run_fixture,
    );
}

#[test]
fn flash_attention_kv_bf16() {
    check_cases(
        "flash_attention_kv_bf16",
        DAY,
        "fa_kvbf16_",
        "f32",
        "expected",
        run_fixture,
    );
}

// ---- the slice kernels against MLX --------------------------------------------------

#[test]
fn attention_scalar_matches_mlx() {
    check_cases(
        "attention_scalar_matches_mlx",
        DAY,
        "fa_",
        "f32",
        "expected",
        |c| run_slices(c, Which::Oracle),
    );
}

#[test]
fn flash_attention_cpu_matches_mlx() {
    check_cases(
        "flash_attention_cpu_matches_mlx",
        DAY,
        "fa_",
        "f32",
        "expected",
        |c| run_slices(c, Which::Kernel),
    );
}

/// One query `(1, 0)` over keys `(1, 0)` and `(0, 1)` with values 1 and 0,
/// scale 1: scores 1 and 0, so the output is `e / (e + 1) = 0.7310586`. With
/// a causal mask and L = S = 2 the first query sees only the first key (its
/// value, 1) and the second query both; an additive mask of `-inf` on key 0
/// leaves key 1 alone (value 0).
#[test]
fn flash_attention_hand_worked() {
    let test = "flash_attention_hand_worked";
    let k = Array::from_slice(&[1.0f32, 0.0, 0.0, 1.0], &[1, 1, 2, 2]);
    let v = Array::from_slice(&[1.0f32, 0.0], &[1, 1, 2, 1]);
    let e = std::f32::consts::E;
    let q1 = Array::from_slice(&[1.0f32, 0.0], &[1, 1, 1, 2]);
    let q2 = Array::from_slice(&[1.0f32, 0.0, 1.0, 0.0], &[1, 1, 2, 2]);
    let hide0 = Array::from_slice(&[f32::NEG_INFINITY, 0.0], &[1, 2]);
    let runs = [
        (
            "one query, no mask",
            &q1,
            AttentionMask::None,
            vec![e / (e + 1.0)],
        ),
        (
            "causal, L = S = 2",
            &q2,
            AttentionMask::Causal,
            vec![1.0, e / (e + 1.0)],
        ),
        ("key 0 hidden", &q1, AttentionMask::Array(&hide0), vec![0.0]),
    ];
    for (case, q, mask, want) in runs {
        let got = ok("flash_attention", flash_attention(q, &k, &v, 1.0, mask));
        let want = Array::from_slice(&want, &[1, 1, want.len() as i32, 1]);
        assert_close(
            test,
            case,
            "out",
            &got,
            &want,
            Tol::for_day(DAY, Dtype::Float32),
        );
    }
}

// ---- against the week-1 attention ---------------------------------------------------

/// `q` (`1 x 4 x L x 64`), `k`, `v` (`1 x 2 x S x 64`, in `kv`), seeded.
fn inputs(l: i32, s: i32, kv: Dtype, seed: u64) -> (Array, Array, Array) {
    let part = |i: u64| mlx_rs::random::key(seed * 3 + i).expect("key");
    let normal = |shape: &[i32], i: u64| {
        mlx_rs::random::normal::<f32>(shape, None, None, &part(i)).expect("normal")
    };
    let q = normal(&[1, 4, l, 64], 0);
    let k = normal(&[1, 2, s, 64], 1).as_dtype(kv).expect("cast");
    let v = normal(&[1, 2, s, 64], 2).as_dtype(kv).expect("cast");
    (q, k, v)
}

/// Every S of the sweep with L = 1 (no mask, and causal) and partial query
/// tiles (causal), against day 3 on the same values (K/V cast to f32 for
/// day 3, exact).
fn sweep_week1(test: &str, kv: Dtype) {
    let f32_ = |a: &Array| a.as_dtype(Dtype::Float32).expect("cast");
    for s in [1, 31, 32, 127, 128, 129, 1000, 4096] {
        let mut ls = vec![1, 33.min(s), 65.min(s)];
        if s <= 129 {
            ls.push(s);
        }
        ls.dedup();
        for (n, &l) in ls.iter().enumerate() {
            let (q, k, v) = inputs(l, s, kv, (s * 10 + n as i32) as u64);
            let scale = 0.125;
            for causal in [false, true] {
                if !causal && l > 1 && s > 129 {
                    continue;
                }
                // day 12 first: a learner without day 3 meets day 12's todo!()
                let mask = if causal {
                    AttentionMask::Causal
                } else {
                    AttentionMask::None
                };
                let got = ok("flash_attention", flash_attention(&q, &k, &v, scale, mask));
                let m = causal.then(|| causal_mask(l, s, Dtype::Float32).expect("causal_mask"));
                let want = ok(
                    "scaled_dot_product_attention_grouped (day 3)",
                    scaled_dot_product_attention_grouped(
                        &q,
                        &f32_(&k),
                        &f32_(&v),
                        Some(scale),
                        m.as_ref(),
                    ),
                );
                let case = format!(
                    "L = {l}, S = {s}, {}, K/V {kv:?}",
                    if causal { "causal" } else { "no mask" }
                );
                assert_close(
                    test,
                    &case,
                    "out",
                    &got,
                    &want,
                    Tol::for_day(DAY, Dtype::Float32),
                );
            }
        }
    }
}

/// Keys and values as a KV cache hands them out: the first `S` rows of a
/// longer buffer (a strided view), against the same attention on copies.
fn check_views(test: &str, kv: Dtype) {
    for (l, s) in [(1, 1000), (33, 129)] {
        let (q, k, v) = inputs(l, s + 24, kv, 99);
        let (kview, vview) = (
            k.try_index((.., .., ..s, ..)).expect("slice"),
            v.try_index((.., .., ..s, ..)).expect("slice"),
        );
        let mask = if l > 1 {
            AttentionMask::Causal
        } else {
            AttentionMask::None
        };
        let got = ok(
            "flash_attention",
            flash_attention(&q, &kview, &vview, 0.125, mask),
        );
        let (kc, vc) = (
            kview.as_dtype(Dtype::Float32).expect("copy"),
            vview.as_dtype(Dtype::Float32).expect("copy"),
        );
        let m = (l > 1).then(|| causal_mask(l, s, Dtype::Float32).expect("causal_mask"));
        let want = ok(
            "scaled_dot_product_attention_grouped (day 3)",
            scaled_dot_product_attention_grouped(&q, &kc, &vc, Some(0.125), m.as_ref()),
        );
        let case = format!(
            "L = {l}, S = {s}: K/V {kv:?}, the first S rows of {} (a view)",
            s + 24
        );
        assert_close(
            test,
            &case,
            "out",
            &got,
            &want,
            Tol::for_day(DAY, Dtype::Float32),
        );
    }
}

#[test]
fn flash_attention_matches_week1_kv_f32() {
    sweep_week1("flash_attention_matches_week1_kv_f32", Dtype::Float32);
    check_views("flash_attention_matches_week1_kv_f32", Dtype::Float32);
}

#[test]
fn flash_attention_matches_week1_kv_bf16() {
    sweep_week1("flash_attention_matches_week1_kv_bf16", Dtype::Bfloat16);
    check_views("flash_attention_matches_week1_kv_bf16", Dtype::Bfloat16);
}

/// The output has `q`'s dtype (bf16 `q`: computed in f32, returned in bf16).
#[test]
fn flash_attention_returns_q_dtype() {
    let (q, k, v) = inputs(5, 40, Dtype::Bfloat16, 7);
    let qb = q.as_dtype(Dtype::Bfloat16).expect("cast");
    let got = ok(
        "flash_attention",
        flash_attention(&qb, &k, &v, 0.125, AttentionMask::Causal),
    );
    assert_eq!(
        got.dtype(),
        Dtype::Bfloat16,
        "[wrong shape] flash_attention of a bf16 q must be bf16"
    );
    let f32_ = |a: &Array| a.as_dtype(Dtype::Float32).expect("cast");
    let m = causal_mask(5, 40, Dtype::Float32).expect("mask");
    let want = ok(
        "scaled_dot_product_attention_grouped (day 3)",
        scaled_dot_product_attention_grouped(
            &f32_(&qb),
            &f32_(&k),
            &f32_(&v),
            Some(0.125),
            Some(&m),
        ),
    )
    .as_dtype(Dtype::Bfloat16)
    .expect("cast");
    assert_close(
        "flash_attention_returns_q_dtype",
        "bf16 q",
        "out",
        &got,
        &want,
        Tol::for_day(DAY, Dtype::Bfloat16),
    );
}

// ---- fully masked rows ------------------------------------------------------------

/// Rows 0 and 5 see no key: NaN there (as MLX), the others as MLX. And a
/// decode step (L = 1, S = 1000, split over threads) that sees no key is
/// NaN too.
#[test]
fn flash_attention_fully_masked_rows() {
    let test = "flash_attention_fully_masked_rows";
    let c = Case::load(DAY, "masked_rows_f32");
    let want = c.get("expected");
    let tol = Tol::for_day(DAY, Dtype::Float32);
    assert_close(test, &c.id, "out", &run_fixture(&c), want, tol);
    assert_close(
        test,
        &format!("{} (kernel on slices)", c.id),
        "out",
        &run_slices(&c, Which::Kernel),
        want,
        tol,
    );
    let (q, k, v) = inputs(1, 1000, Dtype::Float32, 3);
    let hidden = Array::from_slice(&vec![f32::NEG_INFINITY; 1000], &[1, 1000]);
    let got = ok(
        "flash_attention",
        flash_attention(&q, &k, &v, 0.125, AttentionMask::Array(&hidden)),
    );
    let nan = Array::from_slice(&vec![f32::NAN; 4 * 64], &[1, 4, 1, 64]);
    assert_close(
        test,
        "L = 1, S = 1000, every key hidden",
        "out",
        &got,
        &nan,
        tol,
    );
}

// ---- bad input --------------------------------------------------------------------

#[test]
fn flash_attention_rejects_bad_shapes() {
    let call = "flash_attention";
    let (q, k, v) = inputs(4, 8, Dtype::Float32, 5);
    let z = |shape: &[i32]| Array::zeros::<f32>(shape).expect("zeros");
    let sc = 0.125;
    let none = AttentionMask::None;
    should_fail_naming(
        call,
        "3-D q",
        flash_attention(&z(&[4, 4, 64]), &k, &v, sc, none),
        &["q"],
    );
    should_fail_naming(
        call,
        "k of D = 32",
        flash_attention(&q, &z(&[1, 2, 8, 32]), &v, sc, none),
        &["k"],
    );
    should_fail_naming(
        call,
        "k of N = 2",
        flash_attention(&q, &z(&[2, 2, 8, 64]), &v, sc, none),
        &["k"],
    );
    should_fail_naming(
        call,
        "v of S = 7",
        flash_attention(&q, &k, &z(&[1, 2, 7, 64]), sc, none),
        &["v"],
    );
    should_fail_naming(
        call,
        "H_kv = 3 for H_q = 4",
        flash_attention(&q, &z(&[1, 3, 8, 64]), &z(&[1, 3, 8, 64]), sc, none),
        &["H_kv"],
    );
    let m = z(&[3, 8]);
    should_fail_naming(
        call,
        "a 3 x 8 mask for L = 4",
        flash_attention(&q, &k, &v, sc, AttentionMask::Array(&m)),
        &["mask"],
    );
    let m = z(&[1, 2, 1, 1, 8]);
    should_fail_naming(
        call,
        "a 5-D mask",
        flash_attention(&q, &k, &v, sc, AttentionMask::Array(&m)),
        &["mask"],
    );
    let (q9, _, _) = inputs(9, 8, Dtype::Float32, 6);
    should_fail_naming(
        call,
        "causal with L = 9 > S = 8",
        flash_attention(&q9, &k, &v, sc, AttentionMask::Causal),
        &["L"],
    );
    let qi = Array::from_slice(&[1i32; 4 * 4 * 64], &[1, 4, 4, 64]);
    should_fail_naming(
        call,
        "int32 q",
        flash_attention(&qi, &k, &v, sc, none),
        &["q"],
    );
    let ki = Array::from_slice(&[1i32; 2 * 8 * 64], &[1, 2, 8, 64]);
    should_fail(call, "int32 k", flash_attention(&q, &ki, &v, sc, none));
}

#[test]
fn flash_attention_cpu_rejects_bad_lengths() {
    let call = "flash_attention_cpu::flash_attention";
    let dims = AttentionDims {
        n: 1,
        h_q: 4,
        h_kv: 2,
        l: 3,
        s: 5,
        d: 8,
        dv: 8,
    };
    let (q, k, v) = (vec![0f32; 96], vec![0f32; 80], vec![0f32; 80]);
    let mut out = vec![0f32; 96];
    let none = Mask::None;
    should_fail_naming(
        call,
        "q of 95",
        fa_kernel(&q[..95], &k, &v, &dims, 1.0, none, &mut out),
        &["q"],
    );
    should_fail_naming(
        call,
        "k of 79",
        fa_kernel(&q, &k[..79], &v, &dims, 1.0, none, &mut out),
        &["k"],
    );
    should_fail_naming(
        call,
        "v of 81",
        fa_kernel(&q, &k, &[0f32; 81], &dims, 1.0, none, &mut out),
        &["v"],
    );
    should_fail_naming(
        call,
        "out of 95",
        fa_kernel(&q, &k, &v, &dims, 1.0, none, &mut out[..95]),
        &["out"],
    );
    let mask = Mask::Additive {
        data: &[0.0; 14],
        strides: [0, 0, 5, 1],
    };
    should_fail_naming(
        call,
        "a 14-element mask read as 3 x 5",
        fa_kernel(&q, &k, &v, &dims, 1.0, mask, &mut out),
        &["mask"],
    );
    let bad = AttentionDims { h_kv: 3, ..dims };
    should_fail(
        call,
        "H_kv = 3 for H_q = 4",
        fa_kernel(&q, &k, &v, &bad, 1.0, none, &mut out),
    );
    let long = AttentionDims { l: 6, s: 5, ..dims };
    should_fail(
        call,
        "causal, L = 6 > S = 5",
        fa_kernel(
            &vec![0f32; 192],
            &k,
            &v,
            &long,
            1.0,
            Mask::Causal,
            &mut vec![0f32; 192],
        ),
    );
    should_fail_naming(
        call,
        "oracle, q of 95",
        attention_scalar(&q[..95], &k, &v, &dims, 1.0, none, &mut out),
        &["q"],
    );
}

// ---- property: kernel == oracle ----------------------------------------------------

/// One random problem.
#[derive(Debug, Clone)]
struct Problem {
    dims: AttentionDims,
    /// 0 none, 1 causal, 2 additive.
    mask: u8,
    /// Broadcast pattern of an additive mask: which of N, H_q, L, S it has.
    mask_axes: [bool; 4],
    /// 0 f32, 1 bf16, 2 f16 K/V.
    kv: u8,
    seed: u64,
}

fn problem() -> impl Strategy<Value = Problem> {
    (
        (1usize..3, 1usize..3, 1usize..4),
        prop_oneof![Just(1usize), 2usize..80],
        prop_oneof![1usize..200, 500usize..1300],
        (prop_oneof![Just(64usize), 1usize..40], 1usize..40),
        (0u8..3, any::<[bool; 4]>(), 0u8..3, any::<u64>()),
    )
        .prop_map(
            |((n, h_kv, g), l, s, (d, dv), (mask, mask_axes, kv, seed))| {
                let s = s.max(if mask == 1 { l } else { 1 });
                Problem {
                    dims: AttentionDims {
                        n,
                        h_q: h_kv * g,
                        h_kv,
                        l,
                        s,
                        d,
                        dv,
                    },
                    mask,
                    mask_axes,
                    kv,
                    seed,
                }
            },
        )
}

/// A small deterministic generator (xorshift64*), values in [-2, 2).
fn values(seed: u64, len: usize) -> Vec<f32> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
            r as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
        })
        .collect()
}

fn kernel_vs_oracle<K: KvElement>(
    p: &Problem,
    conv: impl Fn(f32) -> K,
) -> Result<(), TestCaseError> {
    let AttentionDims {
        n,
        h_q,
        h_kv,
        l,
        s,
        d,
        dv,
    } = p.dims;
    let q = values(p.seed, n * h_q * l * d);
    let k: Vec<K> = values(p.seed ^ 1, n * h_kv * s * d)
        .into_iter()
        .map(&conv)
        .collect();
    let v: Vec<K> = values(p.seed ^ 2, n * h_kv * s * dv)
        .into_iter()
        .map(&conv)
        .collect();
    let full = [n, h_q, l, s];
    let shape: Vec<i32> = (0..4)
        .map(|a| if p.mask_axes[a] { full[a] as i32 } else { 1 })
        .collect();
    let mdata: Vec<f32> = values(p.seed ^ 3, shape.iter().product::<i32>() as usize)
        .into_iter()
        .map(|x| if x < -1.6 { f32::NEG_INFINITY } else { x })
        .collect();
    let mask = match p.mask {
        0 => Mask::None,
        1 => Mask::Causal,
        _ => Mask::Additive {
            data: &mdata,
            strides: strides_of(&shape),
        },
    };
    let scale = 1.0 / (d as f32).sqrt();
    let (mut want, mut got) = (vec![0f32; n * h_q * l * dv], vec![7f32; n * h_q * l * dv]);
    attention_scalar(&q, &k, &v, &p.dims, scale, mask, &mut want)
        .unwrap_or_else(|e| panic!("[error] attention_scalar returned an error: {e}"));
    fa_kernel(&q, &k, &v, &p.dims, scale, mask, &mut got)
        .unwrap_or_else(|e| panic!("[error] flash_attention returned an error: {e}"));
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        // outputs are convex combinations of values in [-2, 2): f32
        // rounding of S terms stays far below 1e-4
        let same = (g.is_nan() && w.is_nan()) || (g - w).abs() <= 1e-5 + 1e-4 * w.abs();
        prop_assert!(same, "[wrong numbers] element {i}: kernel {g}, oracle {w}");
    }
    Ok(())
}

#[test]
fn prop_flash_attention_cpu_equals_oracle() {
    prop::check(
        "prop_flash_attention_cpu_equals_oracle",
        96,
        problem(),
        |p| match p.kv {
            0 => kernel_vs_oracle(&p, |x| x),
            1 => kernel_vs_oracle(&p, bf16::from_f32),
            _ => kernel_vs_oracle(&p, f16::from_f32),
        },
    );
}

// ---- memory -----------------------------------------------------------------------

/// 1024 queries (2 heads, GQA 2:1, D = 64) over 4096 keys, causal, and a
/// decode step over the same keys: the Rust heap and MLX's allocator each
/// grow by no more than the output plus 2 MB, far below one head's
/// `L x S` f32 scores (16 MB). The meter itself must see a 16 MB score
/// matrix materialised in the same way.
#[test]
fn flash_attention_allocates_no_score_matrix() {
    let test = "flash_attention_allocates_no_score_matrix";
    let (l, s) = (1024i32, 4096i32);
    let key = mlx_rs::random::key(12).expect("key");
    let q = mlx_rs::random::normal::<f32>(&[1, 2, l, 64], None, None, &key).expect("q");
    let k = mlx_rs::random::normal::<f32>(&[1, 1, s, 64], None, None, &key).expect("k");
    let v = k.multiply(Array::from_f32(0.5)).expect("v");
    mlx_rs::transforms::eval([&q, &k, &v]).expect("eval");
    let scores = (l * s * 4) as usize;
    let (_, meter) = heap_peak(|| vec![0f32; (l * s) as usize].iter().sum::<f32>());
    assert!(
        meter >= scores,
        "[fixture] the heap meter missed a {scores}-byte buffer ({meter})"
    );
    // and MLX's meter sees scores computed with MLX ops
    ok("reset_mlx_peak_memory", cpu_bridge::reset_mlx_peak_memory());
    let base = ok("mlx_active_memory", cpu_bridge::mlx_active_memory());
    let kt = k.transpose_axes(&[0, 1, 3, 2]).expect("transpose");
    q.matmul(&kt).expect("matmul").eval().expect("eval");
    let seen = ok("mlx_peak_memory", cpu_bridge::mlx_peak_memory()).saturating_sub(base);
    assert!(
        seen >= scores,
        "[fixture] MLX's peak memory missed a {scores}-byte score matrix ({seen})"
    );
    for (case, qq, mask) in [
        (
            "L = 1024, S = 4096, causal",
            q.clone(),
            AttentionMask::Causal,
        ),
        (
            "L = 1, S = 4096 (decode)",
            q.try_index((.., .., 0..1, ..)).expect("slice"),
            AttentionMask::None,
        ),
    ] {
        qq.eval().expect("eval");
        let out_bytes = qq.size() * 4;
        let bound = out_bytes + 2 * 1024 * 1024;
        ok("reset_mlx_peak_memory", cpu_bridge::reset_mlx_peak_memory());
        let mlx_base = ok("mlx_active_memory", cpu_bridge::mlx_active_memory());
        let (o, heap) =
            heap_peak(|| ok("flash_attention", flash_attention(&qq, &k, &v, 0.125, mask)));
        o.eval().expect("eval");
        let mlx = ok("mlx_peak_memory", cpu_bridge::mlx_peak_memory()).saturating_sub(mlx_base);
        assert!(
            heap <= bound,
            "[wrong numbers] {test}, case {case}: the Rust heap grew by {heap} bytes during the call \
             (bound {bound}: the output, {out_bytes}, plus 2 MB of scratch); one head's L x S scores \
             are {scores}: keep only a tile of scores per task"
        );
        assert!(
            mlx <= bound,
            "[wrong numbers] {test}, case {case}: MLX's peak memory grew by {mlx} bytes during the \
             call (bound {bound}): compute the attention in the kernel, not with MLX ops"
        );
        assert_eq!(
            o.shape(),
            &[1, 2, qq.dim(2), 64],
            "[wrong shape] {test}, case {case}"
        );
    }
}

// ---- the model ----------------------------------------------------------------------

/// The tiny Qwen2 with day 12's attention (and day 8's other layers) against
/// mlx-lm's logits: a 7-token prefill then 6 one-token steps, and the same
/// prompt as chunks of 4 and 3 (`L = 3` at offset 4, causal with `L < S`).
#[test]
fn qwen2_flash_attention_matches_mlx_lm() {
    let test = "qwen2_flash_attention_matches_mlx_lm";
    // Your flash_attention first: with `--ref 8` the model is the
    // reference's, which calls the reference's flash attention.
    let k = Array::from_slice(&[1.0f32, 0.0, 0.0, 1.0], &[1, 1, 2, 2]);
    let v = Array::from_slice(&[1.0f32, 0.0], &[1, 1, 2, 1]);
    let q = Array::from_slice(&[1.0f32, 0.0], &[1, 1, 1, 2]);
    let e = std::f32::consts::E;
    let got = ok(
        "flash_attention",
        flash_attention(&q, &k, &v, 1.0, AttentionMask::None),
    );
    let want = Array::from_slice(&[e / (e + 1.0)], &[1, 1, 1, 1]);
    assert_close(
        test,
        "one query over two keys",
        "out",
        &got,
        &want,
        Tol::for_day(DAY, Dtype::Float32),
    );
    tiny_qwen2_matches_day8(
        test,
        Week2Kernels::NONE,
        Tol::logits(Dtype::Float32),
        |layers| {
            assert!(
            cpu_bridge::stats().crossings >= layers,
            "[wrong numbers] {test}: with flash_attention on, every layer's attention must cross \
             the CPU bridge (Qwen2ModelWeek2::attend -> flash_attention)"
        );
        },
    );
}

/// The tiny Qwen2 with day 12's attention (`kernels` with `flash_attention`
/// on) against mlx-lm's logits of day 8: a 7-token prefill then 6 one-token
/// steps, and the same prompt as chunks of 4 and 3 (`L = 3` at offset 4,
/// causal with `L < S`), log-probabilities at `tol`. `after_prefill(layers)`
/// runs after each case's prefill (the CPU bridge's counters were reset
/// before it).
fn tiny_qwen2_matches_day8(
    test: &str,
    kernels: Week2Kernels,
    tol: Tol,
    after_prefill: impl Fn(u64),
) {
    let dir = checked_dir("tiny-qwen2");
    let config = Qwen2Config::from_file(&dir.join("config.json"))
        .unwrap_or_else(|e| panic!("[fixture] {e}"));
    let checkpoint = Checkpoint::load(&dir).unwrap_or_else(|e| panic!("[fixture] {e}"));
    let kernels = Week2Kernels {
        flash_attention: true,
        ..kernels
    };
    let model = ok(
        "Qwen2ModelWeek2::new",
        Qwen2ModelWeek2::new(&config, &checkpoint, Dtype::Float32),
    )
    .with_kernels(kernels);
    let logprobs = |x: &Array| {
        let lse = x.logsumexp_axis(-1, true).expect("logsumexp");
        x.subtract(lse).expect("subtract")
    };
    for (name, chunks) in [
        ("decode_qwen2_f32", vec![7]),
        ("chunked_qwen2_f32", vec![4, 3]),
    ] {
        let c = Case::load("day8", name);
        let prompt = c.get("prompt");
        let mut cache = model.new_cache();
        let mut at = 0;
        let mut last = None;
        cpu_bridge::reset_stats();
        for len in chunks {
            let ids = prompt.try_index((.., at..at + len)).expect("slice");
            last = Some(ok("forward", model.forward(&ids, at as usize, &mut cache)));
            at += len;
        }
        after_prefill(config.num_hidden_layers as u64);
        let key = if name.starts_with("decode") {
            "prefill_logits"
        } else {
            "chunk_logits"
        };
        let got = last.expect("a chunk");
        assert_close(
            test,
            &format!("{name} prefill"),
            "log_softmax(logits)",
            &logprobs(&got),
            &logprobs(c.get(key)),
            tol,
        );
        let steps = c.get("steps");
        let mut outs = Vec::new();
        for t in 0..steps.dim(1) {
            let ids = steps.try_index((.., t..t + 1)).expect("slice");
            outs.push(ok(
                "forward (one token)",
                model.forward(&ids, at as usize, &mut cache),
            ));
            at += 1;
        }
        let got = mlx_rs::ops::concatenate(&outs, 1).expect("concatenate");
        assert_close(
            test,
            &format!("{name} steps"),
            "log_softmax(logits)",
            &logprobs(&got),
            &logprobs(c.get("step_logits")),
            tol,
        );
    }
}

// ---- on a GPU: the CUDA kernels of `flash_attention_gpu` ----------------------
//
// Against day 3's grouped attention with `causal_mask` (computed by MLX), on
// inputs drawn here: partial query and key tiles, GQA, `S > L` with a causal
// mask, an explicit `L x S` mask, and decode over S in {1, 31, 32, 127, 128,
// 129, 1000, 4096}, at the day's GPU tolerance (`[day.tolerance_gpu]`).
// Without a usable GPU they are skipped; the argument checks run everywhere.

/// One attention case: `(N, H_q, H_kv, L, S, D, causal, K/V dtype)`.
type AttnCase = (i32, i32, i32, i32, i32, i32, bool, Dtype);

fn check_attention_gpu(test: &str, cases: &[AttnCase]) {
    for (i, &(n, h_q, h_kv, l, s, d, causal, kv)) in cases.iter().enumerate() {
        let seed = 1000 + 10 * i as u64;
        let q = seeded(&[n, h_q, l, d], seed, 2.0);
        let k = cast_to(&seeded(&[n, h_kv, s, d], seed + 1, 2.0), kv);
        let v = cast_to(&seeded(&[n, h_kv, s, d], seed + 2, 2.0), kv);
        let scale = 1.0 / (d as f32).sqrt();
        let mask = if causal {
            AttentionMask::Causal
        } else {
            AttentionMask::None
        };
        let got = ok(
            "flash_attention",
            flash_attention_gpu::flash_attention(&q, &k, &v, scale, mask),
        );
        let oracle_mask = causal.then(|| ok("causal_mask", causal_mask(l, s, Dtype::Float32)));
        let (kf, vf) = (cast_to(&k, Dtype::Float32), cast_to(&v, Dtype::Float32));
        let want = ok(
            "week-1 grouped attention",
            scaled_dot_product_attention_grouped(&q, &kf, &vf, Some(scale), oracle_mask.as_ref()),
        );
        let case =
            format!("N={n} H_q={h_q} H_kv={h_kv} L={l} S={s} D={d} causal={causal} kv={kv:?}");
        check_gpu(test, DAY, &case, &got, &want, Dtype::Float32);
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
    check_attention_gpu(test, &cases);
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
    check_attention_gpu(test, &cases);
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
        let q = seeded(&[n, h_q, l, d], 7, 2.0);
        let k = seeded(&[n, h_kv, s, d], 8, 2.0);
        let v = seeded(&[n, h_kv, s, d], 9, 2.0);
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
            flash_attention_gpu::flash_attention(&q, &k, &v, scale, AttentionMask::Array(&mask)),
        );
        let want = ok(
            "week-1 grouped attention",
            scaled_dot_product_attention_grouped(&q, &k, &v, Some(scale), Some(&mask)),
        );
        check_gpu(
            test,
            DAY,
            &format!("L={l} S={s} mask [L, S]"),
            &got,
            &want,
            Dtype::Float32,
        );
    }
}

#[test]
fn gpu_flash_attention_rejects_bad_input() {
    let q = seeded(&[1, 3, 4, 16], 1, 1.0);
    let k = seeded(&[1, 2, 6, 16], 2, 1.0);
    should_fail_naming(
        "flash_attention",
        "H_q = 3, H_kv = 2",
        flash_attention_gpu::flash_attention(&q, &k, &k, 0.25, AttentionMask::None),
        &["key"],
    );
    let q = seeded(&[1, 2, 4, 16], 1, 1.0);
    should_fail_naming(
        "flash_attention",
        "key with D = 8 for query D = 16",
        flash_attention_gpu::flash_attention(
            &q,
            &seeded(&[1, 2, 6, 8], 3, 1.0),
            &k,
            0.25,
            AttentionMask::None,
        ),
        &["key"],
    );
    should_fail_naming(
        "flash_attention",
        "value with S = 5 for key S = 6",
        flash_attention_gpu::flash_attention(
            &q,
            &k,
            &seeded(&[1, 2, 5, 16], 3, 1.0),
            0.25,
            AttentionMask::None,
        ),
        &["value"],
    );
    let short = seeded(&[1, 2, 3, 16], 4, 1.0);
    should_fail_naming(
        "flash_attention",
        "causal with L = 4 > S = 3",
        flash_attention_gpu::flash_attention(&q, &short, &short, 0.25, AttentionMask::Causal),
        &["causal"],
    );
    let mask = seeded(&[3, 6], 5, 1.0);
    should_fail_naming(
        "flash_attention",
        "mask [3, 6] for L = 4, S = 6",
        flash_attention_gpu::flash_attention(&q, &k, &k, 0.25, AttentionMask::Array(&mask)),
        &["mask"],
    );
    let wide = seeded(&[1, 1, 2, 256], 6, 1.0);
    should_fail_naming(
        "flash_attention",
        "D = 256",
        flash_attention_gpu::flash_attention(&wide, &wide, &wide, 0.0625, AttentionMask::None),
        &["128"],
    );
}

/// Without a GPU a valid call is an error that says so (no crash, no MLX
/// abort); on a machine with a GPU the numeric tests above cover it.
#[test]
fn gpu_flash_attention_without_a_gpu_says_so() {
    if tiny_llm_common::gpu::gpu_available() {
        skip("a GPU is usable here: this test checks the error of a machine without one");
        return;
    }
    let q = seeded(&[1, 2, 3, 16], 3, 1.0);
    should_fail_naming(
        "flash_attention (no GPU)",
        "a valid call on a machine without a CUDA GPU",
        flash_attention_gpu::flash_attention(&q, &q, &q, 0.25, AttentionMask::Causal),
        &["GPU"],
    );
    // The model routes to `flash_attention_gpu` when `kernels.gpu`: the
    // same error, not the CPU kernel's logits.
    let dir = checked_dir("tiny-qwen2");
    let config = Qwen2Config::from_file(&dir.join("config.json"))
        .unwrap_or_else(|e| panic!("[fixture] {e}"));
    let checkpoint = Checkpoint::load(&dir).unwrap_or_else(|e| panic!("[fixture] {e}"));
    let kernels = Week2Kernels {
        flash_attention: true,
        ..Week2Kernels::NONE
    };
    let model = ok(
        "Qwen2ModelWeek2::new",
        Qwen2ModelWeek2::new(&config, &checkpoint, Dtype::Float32),
    )
    .with_kernels(kernels.on_gpu());
    let mut cache = model.new_cache();
    let ids = Array::from_slice(&[1i32, 5, 9], &[1, 3]);
    should_fail_naming(
        "Qwen2ModelWeek2::forward (flash attention on the GPU, no GPU)",
        "Week2Kernels { flash_attention: true, .. }.on_gpu() on a machine without a CUDA GPU",
        model.forward(&ids, 0, &mut cache),
        &["GPU"],
    );
}

/// The tiny Qwen2 with day 12's attention on the GPU
/// (`Week2Kernels { flash_attention: true, .. }.on_gpu()`:
/// `flash_attention_gpu`, prefill and split-S decode kernels) against
/// mlx-lm's logits of day 8: a 7-token prefill then 6 one-token steps, and
/// the same prompt as chunks of 4 and 3 (causal with `L < S`), at
/// `[tolerance.logprobs_gpu]`.
#[test]
fn gpu_flash_attention_model_matches_mlx_lm() {
    let test = "gpu_flash_attention_model_matches_mlx_lm";
    if !require_gpu(test) {
        return;
    }
    tiny_qwen2_matches_day8(
        test,
        Week2Kernels::NONE.on_gpu(),
        Tol::logits_on_gpu(Dtype::Float32),
        |_| {},
    );
}
