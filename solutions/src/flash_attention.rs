//! Day 12: flash attention meets MLX: grouped attention computed tile by
//! tile with an online softmax by `crate::flash_attention_cpu`, on the
//! host buffers of `q`, `k` and `v` (the given
//! [`tiny_llm_common::cpu_bridge`]): the `L x S` score matrix is never
//! materialised.
//!
//! Reference: Dao et al. 2022, "FlashAttention: Fast and Memory-Efficient
//! Exact Attention with IO-Awareness"; Dao 2023, "FlashAttention-2";
//! `mlx.core.fast.scaled_dot_product_attention`.

use crate::flash_attention_cpu::{flash_attention as kernel, AttentionDims, KvElement, Mask};
use half::{bf16, f16};
use mlx_rs::{Array, Dtype};
use tiny_llm_common::cpu_bridge::{crossing, from_vec, host, host_f32, host_strided, HostView};
use tiny_llm_common::{shape_error, AttentionMask, Error, Result};

/// `softmax(q k^T * scale + mask) v` per query head, query head `h` reading
/// kv head `h / (H_q / H_kv)` (GQA, no copy of K/V per query head).
///
/// - `q`: `N x H_q x L x D`, float (computed in f32).
/// - `k`: `N x H_kv x S x D`, `v`: `N x H_kv x S x D_v`, f32, bf16 or f16.
/// - `scale`: usually `1 / sqrt(D)`.
/// - `mask`: [`AttentionMask::None`], [`AttentionMask::Causal`] (query `i`
///   sees keys `0..=i + S - L`; key tiles wholly in a query tile's future
///   are skipped), or [`AttentionMask::Array`], additive, broadcastable to
///   `N x H_q x L x S`.
/// - returns: `N x H_q x L x D_v` in `q`'s dtype; equal to day 3's
///   `scaled_dot_product_attention_grouped` within f32 rounding. A query
///   that sees no key (a fully masked row) gives NaN, as MLX's does.
///
/// Errors: [`tiny_llm_common::Error::Shape`] naming the argument when the
/// arrays are not 4-D, disagree on `N`, `D`, `S` or `H_kv`, `H_q` is not a
/// multiple of `H_kv`, or the mask does not broadcast;
/// [`tiny_llm_common::Error::Invalid`] for a non-float array or
/// `L > S` with a causal mask.
///
/// Implementation: `q` is read as f32 (`cpu_bridge::host_f32`: a copy
/// when it is not f32), `k` and `v` in place in their dtype
/// (`cpu_bridge::host_strided`: a KV cache's view of its buffer is not
/// copied when each head's rows are contiguous), an additive mask as f32
/// in its own shape with stride 0 on its broadcast axes (an `L x S` mask is
/// never expanded to `N x H_q x L x S`); one crossing, one call of
/// [`crate::flash_attention_cpu::flash_attention`] per batch row and kv
/// head (its `G` query heads, keys and values as contiguous slices), the
/// output wrapped by `cpu_bridge::from_vec` and cast to `q`'s dtype.
pub fn flash_attention(
    q: &Array,
    k: &Array,
    v: &Array,
    scale: f32,
    mask: AttentionMask<'_>,
) -> Result<Array> {
    for (name, a, want) in [
        ("q", q, "[N, H_q, L, D]"),
        ("k", k, "[N, H_kv, S, D]"),
        ("v", v, "[N, H_kv, S, D_v]"),
    ] {
        if a.ndim() != 4 {
            return Err(shape_error(name, a, want));
        }
        if !a.dtype().is_float() {
            return Err(Error::Invalid(format!(
                "{name}: expected a float array, got {:?}",
                a.dtype()
            )));
        }
    }
    let (n, h_q, l, d) = (q.dim(0), q.dim(1), q.dim(2), q.dim(3));
    let (h_kv, s) = (k.dim(1), k.dim(2));
    if k.dim(0) != n || k.dim(3) != d {
        return Err(shape_error(
            "k",
            k,
            &format!("[{n}, H_kv, S, {d}] (N and D of q)"),
        ));
    }
    if h_kv == 0 || h_q % h_kv != 0 {
        return Err(shape_error(
            "k",
            k,
            &format!("[{n}, H_kv, S, {d}] with H_kv dividing H_q = {h_q}"),
        ));
    }
    if v.dim(0) != n || v.dim(1) != h_kv || v.dim(2) != s {
        return Err(shape_error(
            "v",
            v,
            &format!("[{n}, {h_kv}, {s}, D_v] (N, H_kv, S of k)"),
        ));
    }
    if matches!(mask, AttentionMask::Causal) && l > s {
        return Err(Error::Invalid(format!(
            "a causal mask needs L <= S (the queries are the last L of the S positions), got L = {l}, S = {s}"
        )));
    }
    let dv = v.dim(3);
    let full = [n, h_q, l, s];
    let mask_host = match mask {
        AttentionMask::Array(m) => {
            let strides = broadcast_strides(m, &full)?;
            Some((host_f32(m, "mask")?, strides))
        }
        _ => None,
    };
    let dims = AttentionDims {
        n: n as usize,
        h_q: h_q as usize,
        h_kv: h_kv as usize,
        l: l as usize,
        s: s as usize,
        d: d as usize,
        dv: dv as usize,
    };
    let qh = host_f32(q, "q")?;
    let kh = kv_view(k, "k", d)?;
    let vh = kv_view(v, "v", dv)?;
    let kmask = match &mask_host {
        Some((m, strides)) => Mask::Additive {
            data: m.slice::<f32>()?,
            strides: *strides,
        },
        None if matches!(mask, AttentionMask::Causal) => Mask::Causal,
        None => Mask::None,
    };
    let mut out = vec![0f32; dims.n * dims.h_q * dims.l * dims.dv];
    crossing();
    let qs = qh.slice::<f32>()?;
    match k.dtype() {
        Dtype::Float32 => with_v(
            qs,
            kh.slice::<f32>()?,
            &kh,
            &vh,
            &dims,
            scale,
            kmask,
            &mut out,
        ),
        Dtype::Bfloat16 => with_v(
            qs,
            kh.slice::<bf16>()?,
            &kh,
            &vh,
            &dims,
            scale,
            kmask,
            &mut out,
        ),
        Dtype::Float16 => with_v(
            qs,
            kh.slice::<f16>()?,
            &kh,
            &vh,
            &dims,
            scale,
            kmask,
            &mut out,
        ),
        dt => Err(Error::Invalid(format!(
            "k: expected f32, bf16 or f16, got {dt:?}"
        ))),
    }?;
    let o = from_vec(out, &[n, h_q, l, dv])?;
    Ok(if q.dtype() == Dtype::Float32 {
        o
    } else {
        o.as_dtype(q.dtype())?
    })
}

/// `a` (`N x H_kv x S x width`) read in place when each head's `S x width`
/// rows are contiguous (a KV cache hands out the filled part of its buffer:
/// heads apart, rows together), else made row-contiguous first (a copy).
fn kv_view(a: &Array, what: &str, width: i32) -> Result<HostView> {
    let h = host_strided(a, what, a.dtype())?;
    let st = h.strides();
    let rows_together = a.dim(2) <= 1 || st[2] == width as usize;
    if (a.dim(3) <= 1 || st[3] == 1) && rows_together {
        return Ok(h);
    }
    let c = host(a, what, a.dtype())?;
    host_strided(c.array(), what, a.dtype())
}

/// The kernel with `v` read in its dtype.
#[allow(clippy::too_many_arguments)]
fn with_v<K: KvElement>(
    q: &[f32],
    k: &[K],
    kh: &HostView,
    vh: &HostView,
    dims: &AttentionDims,
    scale: f32,
    mask: Mask<'_>,
    out: &mut [f32],
) -> Result<()> {
    let (ks, vs) = (kh.strides(), vh.strides());
    match vh.array().dtype() {
        Dtype::Float32 => per_kv_head(q, (k, ks), (vh.slice::<f32>()?, vs), dims, scale, mask, out),
        Dtype::Bfloat16 => per_kv_head(
            q,
            (k, ks),
            (vh.slice::<bf16>()?, vs),
            dims,
            scale,
            mask,
            out,
        ),
        Dtype::Float16 => per_kv_head(q, (k, ks), (vh.slice::<f16>()?, vs), dims, scale, mask, out),
        dt => Err(Error::Invalid(format!(
            "v: expected f32, bf16 or f16, got {dt:?}"
        ))),
    }
}

/// One kernel call per batch row and kv head, on that head's contiguous
/// keys and values and its `G` query heads (contiguous in `q` and `out`).
fn per_kv_head<K: KvElement, V: KvElement>(
    q: &[f32],
    (k, ks): (&[K], &[usize]),
    (v, vs): (&[V], &[usize]),
    dims: &AttentionDims,
    scale: f32,
    mask: Mask<'_>,
    out: &mut [f32],
) -> Result<()> {
    let AttentionDims {
        n,
        h_q,
        h_kv,
        l,
        s,
        d,
        dv,
    } = *dims;
    let g = h_q / h_kv;
    let one = AttentionDims {
        n: 1,
        h_q: g,
        h_kv: 1,
        ..*dims
    };
    for b in 0..n {
        for hk in 0..h_kv {
            let (kb, vb) = (b * ks[0] + hk * ks[1], b * vs[0] + hk * vs[1]);
            let h0 = b * h_q + hk * g;
            let sub_mask = match mask {
                Mask::Additive { data, strides } => Mask::Additive {
                    data: &data[b * strides[0] + hk * g * strides[1]..],
                    strides,
                },
                m => m,
            };
            kernel(
                &q[h0 * l * d..(h0 + g) * l * d],
                &k[kb..kb + s * d],
                &v[vb..vb + s * dv],
                &one,
                scale,
                sub_mask,
                &mut out[h0 * l * dv..(h0 + g) * l * dv],
            )
            .map_err(|e| Error::Invalid(e.to_string()))?;
        }
    }
    Ok(())
}

/// Element strides of `mask` read as `full` (`N x H_q x L x S`): its own
/// row-major strides, 0 on the axes it broadcasts (size 1, or missing on
/// the left).
///
/// Errors: [`Error::Shape`] naming `mask` when it has more than 4 axes or
/// an axis is neither 1 nor `full`'s.
fn broadcast_strides(mask: &Array, full: &[i32; 4]) -> Result<[usize; 4]> {
    let shape = mask.shape();
    let bad = || {
        shape_error(
            "mask",
            mask,
            &format!("broadcastable to {full:?} (N x H_q x L x S)"),
        )
    };
    if shape.len() > 4 {
        return Err(bad());
    }
    let mut dims = [1i32; 4];
    dims[4 - shape.len()..].copy_from_slice(shape);
    let mut strides = [0usize; 4];
    let mut step = 1usize;
    for a in (0..4).rev() {
        if dims[a] != full[a] && dims[a] != 1 {
            return Err(bad());
        }
        strides[a] = if dims[a] == 1 { 0 } else { step };
        step *= dims[a] as usize;
    }
    Ok(strides)
}
