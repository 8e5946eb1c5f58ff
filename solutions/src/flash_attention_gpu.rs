//! Day 12 on a GPU: flash attention as a CUDA source run through MLX's
//! custom-kernel API ([`tiny_llm_common::gpu::CudaKernel`]); its Metal twin
//! is `metal/flash_attention.metal` (macOS; it cannot run on the Linux
//! machines the kit is tested on).
//!
//! Same function, signature and contract as `crate::flash_attention` (the
//! CPU kernel of day 12), with two kernels behind it: a prefill kernel for
//! `L > 1` (a thread block per `(query tile, query head, batch row)`, K/V
//! tiles staged in shared memory, an online softmax, key tiles wholly in a
//! causal tile's future skipped) and a decode kernel for `L = 1` (the `S`
//! keys split over blocks, each writing a partial `(max, sum, output)`),
//! followed by a small kernel that merges the partials. GQA: query head `h`
//! reads kv head `h / (H_q / H_kv)`; nothing is copied. No `L x S` buffer
//! exists on the device (an explicit mask is the caller's own array, read in
//! place). MLX wraps and launches the bodies as `crate::fused_gpu`'s module
//! doc describes.
//!
//! Implementation: prefill blocks have 4 warps and 16 query rows (4 a
//! warp). The tile's queries (pre-scaled) and each tile of 32 keys and
//! values are staged in shared memory as f32; lane `j` scores key `j`
//! against one query row, and the warp updates that row's running maximum
//! `m`, sum `l` and accumulator (FlashAttention-2's online softmax), each
//! lane owning the output columns `lane, lane + 32, ...`. Decode splits `S`
//! into up to 32 chunks of at least 128 keys, one block of 4 warps per
//! `(chunk, query head, batch row)`; a warp computes each key's score as a
//! warp-wide sum (coalesced reads of the key row), runs the same online
//! softmax over its keys, and the block merges its warps; the merge kernel
//! computes `sum_c acc_c e^(m_c - M) / sum_c l_c e^(m_c - M)`.
//!
//! Reference: Dao et al. 2022, "FlashAttention"; Dao 2023,
//! "FlashAttention-2" (online softmax, work per query tile); the split-S
//! decode of "Flash-Decoding" (Dao et al. 2023).

use mlx_rs::{Array, Device, Dtype, Stream};
use tiny_llm_common::gpu::{
    gpu_backend, CudaKernel, GpuBackend, KernelOutput, Launch, TemplateArg,
};
use tiny_llm_common::{shape_error, AttentionMask, Error, Result};

/// Threads per block of both attention kernels (4 warps).
const THREADS: i32 = 128;
/// Query rows per prefill block (4 per warp).
const BLOCK_Q: i32 = 16;
/// Largest head width `D` / `D_v` the kernels accept (their shared-memory
/// tiles are sized for it: 16 x 128 + 32 x 129 + 32 x 128 floats, 41 KB).
pub const MAX_HEAD_DIM: i32 = 128;
/// Decode: at most this many chunks of `S`, each of at least 128 keys.
const MAX_SPLITS: i32 = 32;
const MIN_KEYS_PER_SPLIT: i32 = 128;

/// Warp reductions and the online-softmax step shared by both kernels.
/// `-inf` is spelled with a CUDA intrinsic (MLX 0.32's header defines no
/// `inf`, and NVRTC has no `<math.h>` for `INFINITY`).
const HEADER: &str = r#"
#define TINY_LLM_NEG_INF (-__int_as_float(0x7f800000))
__device__ __forceinline__ float tiny_llm_warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float tiny_llm_warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// One online-softmax step for one query row over 32 keys: lane j holds the
// score s of key j (-inf when masked or past the end). Returns p_j, the
// key's weight, after rescaling the row's sum l and accumulator by
// e^(m_old - m_new); a tile that sees no key yet changes nothing (no NaN
// from -inf - -inf). The caller adds p_j * v_j to its accumulator.
__device__ __forceinline__ float tiny_llm_online_step(float s, float& m, float& l, float& alpha) {
  const float m_new = fmaxf(m, tiny_llm_warp_max(s));
  float p = 0.0f;
  alpha = 1.0f;
  if (m_new != TINY_LLM_NEG_INF) {
    p = expf(s - m_new);
    alpha = expf(m - m_new);
  }
  l = l * alpha + tiny_llm_warp_sum(p);
  m = m_new;
  return p;
}
// The additive mask's element for (n, h, i, j): a row-contiguous 4-D mask
// whose dims are each 1 (broadcast) or full.
__device__ __forceinline__ float tiny_llm_mask_at(const float* mask, const int* md, int n, int h, int i, int j) {
  const long long bn = md[0] == 1 ? 0 : n, bh = md[1] == 1 ? 0 : h;
  const long long bi = md[2] == 1 ? 0 : i, bj = md[3] == 1 ? 0 : j;
  return mask[((bn * md[1] + bh) * md[2] + bi) * md[3] + bj];
}
"#;

/// Prefill: inputs `q` (`TQ`), `k`, `v` (`TKV`), `mask` (f32), `scale` (f32,
/// 1), `dims` (int32: L, S, H_q, H_kv, then the mask's 4 dims); output
/// `out` (`TQ`). Template: `TQ`, `TKV`, `D`, `DV`, `MASK` (0 none, 1 causal,
/// 2 array). Grid: (query tiles x 128, H_q, N), block 128.
const PREFILL_SOURCE: &str = r#"
  constexpr int BQ = 16, BK = 32, WARPS = 4, ROWS = BQ / WARPS;
  constexpr int DVL = (DV + 31) / 32;  // output columns per lane
  __shared__ float q_s[BQ * D];
  __shared__ float k_s[BK * (D + 1)];  // +1: lanes read different rows, no bank conflicts
  __shared__ float v_s[BK * DV];
  const int L = dims[0], S = dims[1], HQ = dims[2], HKV = dims[3];
  const int* md = dims + 4;
  const int q0 = blockIdx.x * BQ, h = blockIdx.y, n = blockIdx.z;
  const int hkv = h / (HQ / HKV);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const TQ* qp = q + ((size_t)n * HQ + h) * L * D;
  const TKV* kp = k + ((size_t)n * HKV + hkv) * S * D;
  const TKV* vp = v + ((size_t)n * HKV + hkv) * S * DV;
  const float sc = scale[0];
  for (int i = tid; i < BQ * D; i += blockDim.x) {
    const int r = i / D;
    q_s[i] = q0 + r < L ? static_cast<float>(qp[(size_t)q0 * D + i]) * sc : 0.0f;
  }
  float m[ROWS], l[ROWS], acc[ROWS][DVL];
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    m[r] = TINY_LLM_NEG_INF;
    l[r] = 0.0f;
#pragma unroll
    for (int c = 0; c < DVL; ++c) acc[r][c] = 0.0f;
  }
  // Causal: query i sees keys 0..=i + S - L; the tile's last query bounds
  // the keys any of its rows can see, and later key tiles are skipped.
  const int kend = MASK == 1 ? min(S, q0 + BQ + S - L) : S;
  for (int k0 = 0; k0 < kend; k0 += BK) {
    __syncthreads();  // every warp is done with the previous tile
    for (int i = tid; i < BK * D; i += blockDim.x) {
      const int j = i / D, d = i % D;
      k_s[j * (D + 1) + d] = k0 + j < S ? static_cast<float>(kp[(size_t)k0 * D + i]) : 0.0f;
    }
    for (int i = tid; i < BK * DV; i += blockDim.x) {
      v_s[i] = k0 + i / DV < S ? static_cast<float>(vp[(size_t)k0 * DV + i]) : 0.0f;
    }
    __syncthreads();
    const int key = k0 + lane;
#pragma unroll
    for (int r = 0; r < ROWS; ++r) {
      const int row = warp * ROWS + r, qi = q0 + row;
      if (qi < L) {  // the same for the whole warp
        float s = TINY_LLM_NEG_INF;
        if (key < S && (MASK != 1 || key <= qi + S - L)) {
          float dot = 0.0f;
#pragma unroll 8
          for (int d = 0; d < D; ++d) dot += q_s[row * D + d] * k_s[lane * (D + 1) + d];
          s = dot;
          if (MASK == 2) s += tiny_llm_mask_at(mask, md, n, h, qi, key);
        }
        float alpha;
        const float p = tiny_llm_online_step(s, m[r], l[r], alpha);
#pragma unroll
        for (int c = 0; c < DVL; ++c) acc[r][c] *= alpha;
        for (int j = 0; j < BK; ++j) {
          const float pj = __shfl_sync(0xffffffffu, p, j);
#pragma unroll
          for (int c = 0; c < DVL; ++c) {
            const int d = lane + 32 * c;
            if (d < DV) acc[r][c] += pj * v_s[j * DV + d];
          }
        }
      }
    }
  }
#pragma unroll
  for (int r = 0; r < ROWS; ++r) {
    const int qi = q0 + warp * ROWS + r;
    if (qi < L) {
      // A row that saw no key: l = 0, acc = 0, so 0/0 = NaN (as MLX).
      const float inv = 1.0f / l[r];
      TQ* o = out + (((size_t)n * HQ + h) * L + qi) * DV;
#pragma unroll
      for (int c = 0; c < DVL; ++c) {
        const int d = lane + 32 * c;
        if (d < DV) o[d] = static_cast<TQ>(acc[r][c] * inv);
      }
    }
  }
"#;

/// Decode, pass 1 (`L = 1`): inputs as the prefill's, `dims` (int32: L, S,
/// H_q, H_kv, the mask's 4 dims, keys per chunk); outputs `o_part` (f32,
/// `N x H_q x chunks x DV`, unnormalised), `m_part`, `l_part` (f32,
/// `N x H_q x chunks`). Template: `TKV`, `D`, `DV`, `MASK` (0 or 2).
/// Grid: (chunks x 128, H_q, N), block 128.
const DECODE_SOURCE: &str = r#"
  constexpr int WARPS = 4;
  constexpr int DL = (D + 31) / 32, DVL = (DV + 31) / 32;
  __shared__ float m_s[WARPS], l_s[WARPS], acc_s[WARPS * DV];
  const int S = dims[1], HQ = dims[2], HKV = dims[3], chunk = dims[8];
  const int* md = dims + 4;
  const int split = blockIdx.x, nsplit = gridDim.x, h = blockIdx.y, n = blockIdx.z;
  const int hkv = h / (HQ / HKV);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const float sc = scale[0];
  const TQ* qp = q + ((size_t)n * HQ + h) * D;
  const TKV* kp = k + ((size_t)n * HKV + hkv) * S * D;
  const TKV* vp = v + ((size_t)n * HKV + hkv) * S * DV;
  float qr[DL];
#pragma unroll
  for (int c = 0; c < DL; ++c) {
    const int d = lane + 32 * c;
    qr[c] = d < D ? static_cast<float>(qp[d]) * sc : 0.0f;
  }
  const int kbeg = split * chunk, kend = min(S, kbeg + chunk);
  float m = TINY_LLM_NEG_INF, l = 0.0f, acc[DVL];
#pragma unroll
  for (int c = 0; c < DVL; ++c) acc[c] = 0.0f;
  // Warp w takes the chunk's key tiles w, w + 4, ...; lane j ends up with
  // the score of key k0 + j (each dot product is a warp-wide sum, so the
  // reads of a key row are coalesced).
  for (int k0 = kbeg + warp * 32; k0 < kend; k0 += WARPS * 32) {
    float s = TINY_LLM_NEG_INF;
    for (int j = 0; j < 32 && k0 + j < kend; ++j) {
      const TKV* kr = kp + (size_t)(k0 + j) * D;
      float part = 0.0f;
#pragma unroll
      for (int c = 0; c < DL; ++c) {
        const int d = lane + 32 * c;
        if (d < D) part += qr[c] * static_cast<float>(kr[d]);
      }
      part = tiny_llm_warp_sum(part);
      if (lane == j) s = MASK == 2 ? part + tiny_llm_mask_at(mask, md, n, h, 0, k0 + j) : part;
    }
    float alpha;
    const float p = tiny_llm_online_step(s, m, l, alpha);
#pragma unroll
    for (int c = 0; c < DVL; ++c) acc[c] *= alpha;
    for (int j = 0; j < 32 && k0 + j < kend; ++j) {
      const float pj = __shfl_sync(0xffffffffu, p, j);
      const TKV* vr = vp + (size_t)(k0 + j) * DV;
#pragma unroll
      for (int c = 0; c < DVL; ++c) {
        const int d = lane + 32 * c;
        if (d < DV) acc[c] += pj * static_cast<float>(vr[d]);
      }
    }
  }
  // Merge the 4 warps' (m, l, acc) into the chunk's.
  if (lane == 0) {
    m_s[warp] = m;
    l_s[warp] = l;
  }
#pragma unroll
  for (int c = 0; c < DVL; ++c) {
    const int d = lane + 32 * c;
    if (d < DV) acc_s[warp * DV + d] = acc[c];
  }
  __syncthreads();
  float mb = TINY_LLM_NEG_INF;
  for (int w = 0; w < WARPS; ++w) mb = fmaxf(mb, m_s[w]);
  const size_t part = ((size_t)n * HQ + h) * nsplit + split;
  for (int d = tid; d < DV; d += blockDim.x) {
    float a = 0.0f;
    for (int w = 0; w < WARPS; ++w) {
      if (m_s[w] != TINY_LLM_NEG_INF) a += acc_s[w * DV + d] * expf(m_s[w] - mb);
    }
    o_part[part * DV + d] = a;
  }
  if (tid == 0) {
    float lb = 0.0f;
    for (int w = 0; w < WARPS; ++w) {
      if (m_s[w] != TINY_LLM_NEG_INF) lb += l_s[w] * expf(m_s[w] - mb);
    }
    m_part[part] = mb;
    l_part[part] = lb;
  }
"#;

/// Decode, pass 2: merges the chunks of one `(n, h)` per block. Inputs
/// `o_part`, `m_part`, `l_part` (f32), `dims` (int32: chunks); output `out`
/// (`TQ`, `N x H_q x 1 x DV`). Template: `TQ`, `DV`. Grid: (N H_q x 128),
/// block 128. Uses `HEADER` (for `TINY_LLM_NEG_INF`).
const DECODE_MERGE_SOURCE: &str = r#"
  const int nsplit = dims[0];
  const size_t row = blockIdx.x;
  const float* mp = m_part + row * nsplit;
  const float* lp = l_part + row * nsplit;
  const float* op = o_part + row * nsplit * DV;
  float mx = TINY_LLM_NEG_INF;
  for (int c = 0; c < nsplit; ++c) mx = fmaxf(mx, mp[c]);
  float total = 0.0f;
  for (int c = 0; c < nsplit; ++c) {
    if (mp[c] != TINY_LLM_NEG_INF) total += lp[c] * expf(mp[c] - mx);
  }
  for (int d = threadIdx.x; d < DV; d += blockDim.x) {
    float a = 0.0f;
    for (int c = 0; c < nsplit; ++c) {
      if (mp[c] != TINY_LLM_NEG_INF) a += op[(size_t)c * DV + d] * expf(mp[c] - mx);
    }
    out[row * DV + d] = static_cast<TQ>(a / total);  // no key seen: 0/0 = NaN
  }
"#;

/// MLX's default GPU stream, or [`tiny_llm_common::Error::Invalid`] when no CUDA GPU is
/// usable (asked before `Device::gpu()`, which ends the process without one).
fn cuda_stream() -> Result<Stream> {
    if gpu_backend() != Some(GpuBackend::Cuda) {
        return Err(Error::Invalid(
            "the CUDA kernels need an NVIDIA GPU with MLX's CUDA backend \
             (`cargo xtask setup --backend cuda`); none is usable here"
                .into(),
        ));
    }
    Ok(Stream::try_default_on_device(&Device::gpu())?)
}

fn expect_float(what: &str, a: &Array) -> Result<()> {
    match a.dtype() {
        Dtype::Float32 | Dtype::Float16 | Dtype::Bfloat16 => Ok(()),
        d => Err(Error::Invalid(format!(
            "{what}: expected float32, float16 or bfloat16, got {d:?}"
        ))),
    }
}

/// The sizes of one call, checked.
struct Dims {
    n: i32,
    h_q: i32,
    h_kv: i32,
    l: i32,
    s: i32,
    d: i32,
    d_v: i32,
}

fn check_dims(q: &Array, k: &Array, v: &Array) -> Result<Dims> {
    for (name, t, want) in [
        ("query", q, "[N, H_q, L, D]"),
        ("key", k, "[N, H_kv, S, D]"),
        ("value", v, "[N, H_kv, S, D_v]"),
    ] {
        expect_float(name, t)?;
        if t.ndim() != 4 {
            return Err(shape_error(name, t, want));
        }
    }
    let (n, h_q, l, d) = (q.dim(0), q.dim(1), q.dim(2), q.dim(3));
    let (h_kv, s) = (k.dim(1), k.dim(2));
    if k.dim(0) != n || k.dim(3) != d {
        return Err(shape_error(
            "key",
            k,
            &format!("[{n}, H_kv, S, {d}] (N, D of query)"),
        ));
    }
    if v.dim(0) != n || v.dim(1) != h_kv || v.dim(2) != s {
        return Err(shape_error(
            "value",
            v,
            &format!("[{n}, {h_kv}, {s}, D_v] (N, H_kv, S of key)"),
        ));
    }
    if h_kv == 0 || h_q % h_kv != 0 {
        return Err(shape_error(
            "key",
            k,
            &format!("[N, H_kv, S, D] with H_kv dividing H_q = {h_q}"),
        ));
    }
    let d_v = v.dim(3);
    for (name, w) in [("D", d), ("D_v", d_v)] {
        if w > MAX_HEAD_DIM {
            return Err(Error::Invalid(format!(
                "flash_attention (GPU): head width {name} = {w}, the kernels take at most {MAX_HEAD_DIM}"
            )));
        }
    }
    Ok(Dims {
        n,
        h_q,
        h_kv,
        l,
        s,
        d,
        d_v,
    })
}

/// The mask as a row-contiguous f32 `4-D` array whose dims are 1 or full,
/// and its dims; a 1-element placeholder when there is no array mask.
fn mask_input(mask: &AttentionMask<'_>, dims: &Dims) -> Result<(Array, [i32; 4])> {
    let AttentionMask::Array(m) = mask else {
        return Ok((Array::from_slice(&[0f32], &[1]), [1, 1, 1, 1]));
    };
    let full = [dims.n, dims.h_q, dims.l, dims.s];
    let want = format!("broadcastable to {full:?} (N, H_q, L, S)");
    if m.ndim() > 4 {
        return Err(shape_error("mask", m, &want));
    }
    let mut md = [1i32; 4];
    md[4 - m.ndim()..].copy_from_slice(m.shape());
    if md.iter().zip(full).any(|(&a, b)| a != 1 && a != b) {
        return Err(shape_error("mask", m, &want));
    }
    Ok((m.as_dtype(Dtype::Float32)?.reshape(&md)?, md))
}

/// `softmax(q k^T * scale + mask) v` per query head on the GPU, query head
/// `h` reading kv head `h / (H_q / H_kv)` (same contract as
/// `crate::flash_attention::flash_attention`).
///
/// - `q`: `N x H_q x L x D`, float (computed in f32).
/// - `k`: `N x H_kv x S x D`, `v`: `N x H_kv x S x D_v`, f32, bf16 or f16;
///   `D, D_v <= 128` ([`MAX_HEAD_DIM`]).
/// - `scale`: usually `1 / sqrt(D)`.
/// - `mask`: [`AttentionMask::None`], [`AttentionMask::Causal`] (query `i`
///   sees keys `0..=i + S - L`; key tiles wholly in a query tile's future
///   are skipped), or [`AttentionMask::Array`], additive, broadcastable to
///   `N x H_q x L x S`.
/// - returns: `N x H_q x L x D_v` in `q`'s dtype. A query that sees no key
///   gives NaN, as MLX's does.
///
/// Errors: [`tiny_llm_common::Error::Shape`] naming the argument when the arrays are not
/// 4-D, disagree on `N`, `D`, `S` or `H_kv`, `H_q` is not a multiple of
/// `H_kv`, or the mask does not broadcast; [`tiny_llm_common::Error::Invalid`] for a
/// non-float array, `L > S` with a causal mask, a head wider than 128, or
/// no usable CUDA GPU.
///
/// Implementation: `L = 1` runs the split-S decode kernel and its merge;
/// any other `L` the tiled prefill kernel (see the module's doc).
pub fn flash_attention(
    q: &Array,
    k: &Array,
    v: &Array,
    scale: f32,
    mask: AttentionMask<'_>,
) -> Result<Array> {
    let dims = check_dims(q, k, v)?;
    if matches!(mask, AttentionMask::Causal) && dims.l > dims.s {
        return Err(Error::Invalid(format!(
            "flash_attention: a causal mask needs L <= S, got L = {} and S = {}",
            dims.l, dims.s
        )));
    }
    let (mask_arr, md) = mask_input(&mask, &dims)?;
    let out_shape = vec![dims.n, dims.h_q, dims.l, dims.d_v];
    if out_shape.contains(&0) {
        return Ok(mlx_rs::ops::zeros::<f32>(&out_shape)?.as_dtype(q.dtype())?);
    }
    let stream = cuda_stream()?;
    let scale = Array::from_slice(&[scale], &[1]);
    // Causal with L = 1 sees every key: the same as no mask.
    let mask_mode = match mask {
        AttentionMask::None => 0,
        AttentionMask::Causal if dims.l == 1 => 0,
        AttentionMask::Causal => 1,
        AttentionMask::Array(_) => 2,
    };
    let (tq, tkv) = (TemplateArg::Dtype(q.dtype()), TemplateArg::Dtype(k.dtype()));
    let args = |list: Vec<(&str, TemplateArg)>| -> Vec<(String, TemplateArg)> {
        list.into_iter().map(|(n, a)| (n.to_string(), a)).collect()
    };
    let v = &v.as_dtype(k.dtype())?;
    if dims.l > 1 {
        let kernel = CudaKernel::new(
            "tiny_llm_flash_prefill",
            &["q", "k", "v", "mask", "scale", "dims"],
            &["out"],
            PREFILL_SOURCE,
            HEADER,
            true,
        )?;
        let params = [
            dims.l, dims.s, dims.h_q, dims.h_kv, md[0], md[1], md[2], md[3],
        ];
        let params = Array::from_slice(&params, &[8]);
        let tiles = (dims.l + BLOCK_Q - 1) / BLOCK_Q;
        let launch = Launch {
            grid: (tiles * THREADS, dims.h_q, dims.n),
            block: (THREADS, 1, 1),
            template_args: args(vec![
                ("TQ", tq),
                ("TKV", tkv),
                ("D", TemplateArg::Int(dims.d)),
                ("DV", TemplateArg::Int(dims.d_v)),
                ("MASK", TemplateArg::Int(mask_mode)),
            ]),
            init_value: None,
        };
        let output = KernelOutput {
            shape: out_shape,
            dtype: q.dtype(),
        };
        let inputs = [q, k, v, &mask_arr, &scale, &params];
        // SAFETY: every read is bounded by the checked dims (rows < L, keys
        // < S, columns < D / D_v, mask indices inside its 4 dims) and each
        // output element is written by exactly one lane.
        let mut outs = unsafe { kernel.apply(&inputs, &[output], &launch, &stream)? };
        return Ok(outs.remove(0));
    }

    // Decode: chunks of at least 128 keys, at most 32 of them.
    let splits = ((dims.s + MIN_KEYS_PER_SPLIT - 1) / MIN_KEYS_PER_SPLIT).clamp(1, MAX_SPLITS);
    let chunk = ((dims.s + splits - 1) / splits).max(1);
    let splits = ((dims.s + chunk - 1) / chunk).max(1);
    let kernel = CudaKernel::new(
        "tiny_llm_flash_decode",
        &["q", "k", "v", "mask", "scale", "dims"],
        &["o_part", "m_part", "l_part"],
        DECODE_SOURCE,
        HEADER,
        true,
    )?;
    let params = [
        dims.l, dims.s, dims.h_q, dims.h_kv, md[0], md[1], md[2], md[3], chunk,
    ];
    let params = Array::from_slice(&params, &[9]);
    let part = |tail: &[i32]| KernelOutput {
        shape: [&[dims.n, dims.h_q, splits][..], tail].concat(),
        dtype: Dtype::Float32,
    };
    let launch = Launch {
        grid: (splits * THREADS, dims.h_q, dims.n),
        block: (THREADS, 1, 1),
        template_args: args(vec![
            ("TQ", tq),
            ("TKV", tkv),
            ("D", TemplateArg::Int(dims.d)),
            ("DV", TemplateArg::Int(dims.d_v)),
            ("MASK", TemplateArg::Int(mask_mode)),
        ]),
        init_value: None,
    };
    let inputs = [q, k, v, &mask_arr, &scale, &params];
    let outputs = [part(&[dims.d_v]), part(&[]), part(&[])];
    // SAFETY: as for the prefill; block (split, h, n) writes only its own
    // partial row.
    let parts = unsafe { kernel.apply(&inputs, &outputs, &launch, &stream)? };
    let merge = CudaKernel::new(
        "tiny_llm_flash_decode_merge",
        &["o_part", "m_part", "l_part", "dims"],
        &["out"],
        DECODE_MERGE_SOURCE,
        HEADER,
        true,
    )?;
    let params = Array::from_slice(&[splits], &[1]);
    let launch = Launch {
        grid: (dims.n * dims.h_q * THREADS, 1, 1),
        block: (THREADS, 1, 1),
        template_args: args(vec![("TQ", tq), ("DV", TemplateArg::Int(dims.d_v))]),
        init_value: None,
    };
    let output = KernelOutput {
        shape: out_shape,
        dtype: q.dtype(),
    };
    let inputs = [&parts[0], &parts[1], &parts[2], &params];
    // SAFETY: block r reads the `splits` partials of row r and writes row r.
    let mut outs = unsafe { merge.apply(&inputs, &[output], &launch, &stream)? };
    Ok(outs.remove(0))
}
