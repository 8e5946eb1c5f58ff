//! Day 16 on a GPU: paged decode attention as a CUDA source run through
//! MLX's custom-kernel API ([`tiny_llm_common::gpu::CudaKernel`]); its Metal
//! twin is `metal/paged_attention.metal` (macOS; it cannot be compiled or run
//! on the Linux machines the kit is tested on).
//!
//! The same arithmetic as `crate::paged_attention_cpu::paged_attention`, for
//! a whole batch of sequences at once, on MLX arrays: one query token per
//! sequence attends over the first `context_lens[b]` tokens of sequence `b`,
//! whose keys and values live in two pools shaped `[num_blocks, block_size,
//! H_kv, D]` and are found through the sequence's row of `block_tables`
//! (token `t` in block `block_tables[b][t / block_size]`, slot
//! `t % block_size`). GQA: query head `h` reads kv head `h / (H / H_kv)`.
//! Nothing is gathered into a contiguous copy: the kernel follows the table.
//!
//! Implementation: one block of 4 warps per `(query head, sequence)`. Warp
//! `w` takes the sequence's tokens in tiles of 32 (`w * 32`, then every
//! 128th); lane `j` looks up the block of token `j` of the tile (one table
//! read, handed to the other lanes by a shuffle), each key's score is a
//! warp-wide dot product (lane `i` owns columns `i, i + 32, ...`, so the
//! reads of a key row are coalesced), and the warp keeps a running maximum
//! `m`, sum `l` and accumulator (online softmax, one update per tile of 32
//! scores: `m' = max(m, max s)`, `l = l e^(m - m') + sum e^(s - m')`). The
//! block then merges its 4 warps through shared memory by `e^(m_w - max m)`
//! and writes `acc / l` in the query's dtype. The block tables and context
//! lengths are read on the host first to check them (small `int32` arrays,
//! one sync), so the kernel never reads outside the pools.
//!
//! Reference: Kwon et al. 2023, "Efficient Memory Management for Large
//! Language Model Serving with PagedAttention" (section 4.1); the online
//! softmax of Milakov and Gimelshein 2018 / FlashAttention-2.

use mlx_rs::{Array, Device, Dtype, Stream};
use tiny_llm_common::cpu_bridge::host;
use tiny_llm_common::gpu::{
    gpu_backend, CudaKernel, GpuBackend, KernelOutput, Launch, TemplateArg,
};
use tiny_llm_common::{shape_error, Error, Result};

/// Threads per block (4 warps).
const THREADS: i32 = 128;
/// Largest head width `D` the kernel accepts (each lane keeps `D / 32`
/// query and accumulator values in registers).
pub const MAX_HEAD_DIM: i32 = 256;

/// Warp reductions and one online-softmax step. `-inf` is spelled with a
/// CUDA intrinsic (MLX 0.32's header defines no `inf`, and NVRTC has no
/// `<math.h>` for `INFINITY`).
const HEADER: &str = r#"
#define TINY_LLM_NEG_INF (-__int_as_float(0x7f800000))
__device__ __forceinline__ float tiny_llm_paged_warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float tiny_llm_paged_warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Lane j holds the score s of token j of a tile (-inf past the context).
// Returns p_j = e^(s_j - m_new) after rescaling l by alpha = e^(m - m_new);
// the caller rescales its accumulator by alpha and adds p_j v_j.
__device__ __forceinline__ float tiny_llm_paged_online_step(float s, float& m, float& l, float& alpha) {
  const float m_new = fmaxf(m, tiny_llm_paged_warp_max(s));
  float p = 0.0f;
  alpha = 1.0f;
  if (m_new != TINY_LLM_NEG_INF) {
    p = expf(s - m_new);
    alpha = expf(m - m_new);
  }
  l = l * alpha + tiny_llm_paged_warp_sum(p);
  m = m_new;
  return p;
}
"#;

/// Inputs `q` (`TQ`, `[B, H, D]`), `k_pool`, `v_pool` (`TKV`, `[num_blocks,
/// BS, H_kv, D]`), `block_tables` (int32, `[B, max_blocks]`), `context_lens`
/// (int32, `[B]`), `scale` (f32, 1), `dims` (int32: H, H_kv, max_blocks,
/// BS); output `out` (`TQ`, `[B, H, D]`). Template: `TQ`, `TKV`, `D`.
/// Grid: (128, H, B), block 128.
const SOURCE: &str = r#"
  constexpr int WARPS = 4;
  constexpr int DL = (D + 31) / 32;  // columns per lane
  __shared__ float m_s[WARPS], l_s[WARPS], acc_s[WARPS * D];
  const int HQ = dims[0], HKV = dims[1], MAXB = dims[2], BS = dims[3];
  const int h = blockIdx.y, b = blockIdx.z;
  const int hkv = h / (HQ / HKV);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const int ctx = context_lens[b];
  const int* table = block_tables + (size_t)b * MAXB;
  const float sc = scale[0];
  const TQ* qp = q + ((size_t)b * HQ + h) * D;
  float qr[DL], acc[DL];
#pragma unroll
  for (int c = 0; c < DL; ++c) {
    const int d = lane + 32 * c;
    qr[c] = d < D ? static_cast<float>(qp[d]) * sc : 0.0f;
    acc[c] = 0.0f;
  }
  float m = TINY_LLM_NEG_INF, l = 0.0f;
  for (int t0 = warp * 32; t0 < ctx; t0 += WARPS * 32) {
    const int n = min(32, ctx - t0);  // the same for the whole warp
    // Lane j: the pool row of token t0 + j (block, slot, kv head).
    unsigned long long my_row = 0;
    if (lane < n) {
      const int t = t0 + lane;
      my_row = ((unsigned long long)table[t / BS] * BS + t % BS) * HKV + hkv;
    }
    float s = TINY_LLM_NEG_INF;
    for (int j = 0; j < n; ++j) {
      const unsigned long long row = __shfl_sync(0xffffffffu, my_row, j);
      const TKV* kr = k_pool + row * D;
      float part = 0.0f;
#pragma unroll
      for (int c = 0; c < DL; ++c) {
        const int d = lane + 32 * c;
        if (d < D) part += qr[c] * static_cast<float>(kr[d]);
      }
      part = tiny_llm_paged_warp_sum(part);
      if (lane == j) s = part;
    }
    float alpha;
    const float p = tiny_llm_paged_online_step(s, m, l, alpha);
#pragma unroll
    for (int c = 0; c < DL; ++c) acc[c] *= alpha;
    for (int j = 0; j < n; ++j) {
      const float pj = __shfl_sync(0xffffffffu, p, j);
      const unsigned long long row = __shfl_sync(0xffffffffu, my_row, j);
      const TKV* vr = v_pool + row * D;
#pragma unroll
      for (int c = 0; c < DL; ++c) {
        const int d = lane + 32 * c;
        if (d < D) acc[c] += pj * static_cast<float>(vr[d]);
      }
    }
  }
  // Merge the 4 warps' (m, l, acc); a warp that saw no token has m = -inf.
  if (lane == 0) {
    m_s[warp] = m;
    l_s[warp] = l;
  }
#pragma unroll
  for (int c = 0; c < DL; ++c) {
    const int d = lane + 32 * c;
    if (d < D) acc_s[warp * D + d] = acc[c];
  }
  __syncthreads();
  float mb = TINY_LLM_NEG_INF;
  for (int w = 0; w < WARPS; ++w) mb = fmaxf(mb, m_s[w]);
  float lb = 0.0f;
  for (int w = 0; w < WARPS; ++w) {
    if (m_s[w] != TINY_LLM_NEG_INF) lb += l_s[w] * expf(m_s[w] - mb);
  }
  TQ* o = out + ((size_t)b * HQ + h) * D;
  for (int d = tid; d < D; d += blockDim.x) {
    float a = 0.0f;
    for (int w = 0; w < WARPS; ++w) {
      if (m_s[w] != TINY_LLM_NEG_INF) a += acc_s[w * D + d] * expf(m_s[w] - mb);
    }
    o[d] = static_cast<TQ>(a / lb);
  }
"#;

/// MLX's default GPU stream, or [`Error::Invalid`] when no CUDA GPU is
/// usable (asked before `Device::gpu()`, which ends the process without one).
fn cuda_stream() -> Result<Stream> {
    if gpu_backend() != Some(GpuBackend::Cuda) {
        return Err(Error::Invalid(
            "paged_attention (GPU): the CUDA kernel needs an NVIDIA GPU with MLX's CUDA \
             backend (`cargo xtask setup --backend cuda`); none is usable here"
                .into(),
        ));
    }
    Ok(Stream::try_default_on_device(&Device::gpu())?)
}

fn expect_float(what: &str, a: &Array) -> Result<()> {
    match a.dtype() {
        Dtype::Float32 | Dtype::Float16 | Dtype::Bfloat16 => Ok(()),
        d => Err(Error::Invalid(format!(
            "paged_attention (GPU): {what}: expected float32, float16 or bfloat16, got {d:?}"
        ))),
    }
}

fn expect_int32(what: &str, a: &Array) -> Result<()> {
    if a.dtype() != Dtype::Int32 {
        return Err(Error::Invalid(format!(
            "paged_attention (GPU): {what}: expected int32, got {:?}",
            a.dtype()
        )));
    }
    Ok(())
}

/// The sizes of one call, checked.
struct Dims {
    batch: i32,
    heads: i32,
    kv_heads: i32,
    head_dim: i32,
    num_blocks: i32,
    block_size: i32,
    max_blocks: i32,
}

fn check_shapes(
    query: &Array,
    key_pool: &Array,
    value_pool: &Array,
    block_tables: &Array,
    context_lens: &Array,
) -> Result<Dims> {
    expect_float("query", query)?;
    expect_float("key_pool", key_pool)?;
    expect_float("value_pool", value_pool)?;
    expect_int32("block_tables", block_tables)?;
    expect_int32("context_lens", context_lens)?;
    if query.ndim() != 3 {
        return Err(shape_error("query", query, "[B, H, D]"));
    }
    let (batch, heads, head_dim) = (query.dim(0), query.dim(1), query.dim(2));
    let pool = format!("[num_blocks, block_size, H_kv, {head_dim}] (D of query)");
    if key_pool.ndim() != 4 || key_pool.dim(3) != head_dim {
        return Err(shape_error("key_pool", key_pool, &pool));
    }
    if value_pool.shape() != key_pool.shape() {
        return Err(shape_error(
            "value_pool",
            value_pool,
            &format!("{:?} (the shape of key_pool)", key_pool.shape()),
        ));
    }
    let (num_blocks, block_size, kv_heads) = (key_pool.dim(0), key_pool.dim(1), key_pool.dim(2));
    if block_tables.ndim() != 2 || block_tables.dim(0) != batch {
        return Err(shape_error(
            "block_tables",
            block_tables,
            &format!("[{batch}, max_blocks] (B of query)"),
        ));
    }
    if context_lens.shape() != [batch] {
        return Err(shape_error(
            "context_lens",
            context_lens,
            &format!("[{batch}] (B of query)"),
        ));
    }
    let max_blocks = block_tables.dim(1);
    if [
        heads, head_dim, num_blocks, block_size, kv_heads, max_blocks,
    ]
    .contains(&0)
    {
        return Err(Error::Invalid(format!(
            "paged_attention (GPU): H {heads}, D {head_dim}, num_blocks {num_blocks}, \
             block_size {block_size}, H_kv {kv_heads}, max_blocks {max_blocks} must all be >= 1"
        )));
    }
    if heads % kv_heads != 0 {
        return Err(shape_error(
            "key_pool",
            key_pool,
            &format!("[num_blocks, block_size, H_kv, D] with H_kv dividing H = {heads}"),
        ));
    }
    if head_dim > MAX_HEAD_DIM {
        return Err(Error::Invalid(format!(
            "paged_attention (GPU): head width D = {head_dim}, the kernel takes at most \
             {MAX_HEAD_DIM}"
        )));
    }
    Ok(Dims {
        batch,
        heads,
        kv_heads,
        head_dim,
        num_blocks,
        block_size,
        max_blocks,
    })
}

/// Reads the tables and lengths on the host and checks every value the
/// kernel will use: `1 <= context_lens[b] <= max_blocks * block_size`, and
/// the first `ceil(context_lens[b] / block_size)` ids of row `b` inside the
/// pool.
fn check_tables(block_tables: &Array, context_lens: &Array, dims: &Dims) -> Result<()> {
    let tables = host(block_tables, "block_tables", Dtype::Int32)?;
    let lens = host(context_lens, "context_lens", Dtype::Int32)?;
    let (tables, lens) = (tables.slice::<i32>()?, lens.slice::<i32>()?);
    let (bs, mb) = (dims.block_size, dims.max_blocks);
    for (b, &len) in lens.iter().enumerate() {
        if len < 1 || len as i64 > mb as i64 * bs as i64 {
            return Err(Error::Invalid(format!(
                "paged_attention (GPU): context_lens[{b}] = {len}, expected 1..={} \
                 (max_blocks {mb} x block_size {bs})",
                mb as i64 * bs as i64
            )));
        }
        let row = &tables[b * mb as usize..][..mb as usize];
        let needed = (len + bs - 1) / bs;
        let outside = |id: &i32| *id < 0 || *id >= dims.num_blocks;
        if let Some(i) = row[..needed as usize].iter().position(outside) {
            let id = row[i];
            return Err(Error::Invalid(format!(
                "paged_attention (GPU): block_tables[{b}][{i}] = block {id}, outside the pool \
                 of {} blocks (0..{})",
                dims.num_blocks, dims.num_blocks
            )));
        }
    }
    Ok(())
}

/// Decode attention of one query token per sequence over paged keys and
/// values, on the GPU: for sequence `b` and query head `h` (kv head
/// `g = h / (H / H_kv)`),
/// `out[b, h] = sum_t softmax_t(scale * query[b, h] . k[t]) * v[t]` over
/// `t in 0..context_lens[b]`, where token `t`'s key is
/// `key_pool[block_tables[b, t / block_size], t % block_size, g]` (value
/// likewise): what `crate::paged_attention_cpu::paged_attention` computes
/// for one sequence, for a batch.
///
/// - `query`: `[B, H, D]`, f32, f16 or bf16 (computed in f32).
/// - `key_pool`, `value_pool`: `[num_blocks, block_size, H_kv, D]`, f32,
///   f16 or bf16 (`value_pool` is read in `key_pool`'s dtype); `H` a
///   multiple of `H_kv`; `D <= 256` ([`MAX_HEAD_DIM`]).
/// - `block_tables`: int32 `[B, max_blocks]`, each row the sequence's
///   blocks in token order (ids past its context are not read).
/// - `context_lens`: int32 `[B]`, each in `1..=max_blocks * block_size`.
/// - `scale`: multiplies the scores (usually `1 / sqrt(D)`).
/// - returns: `[B, H, D]` in `query`'s dtype.
///
/// The tables and lengths are read on the host to check them (one sync on
/// two small arrays) before the kernel is launched.
///
/// Errors: [`Error::Shape`] naming the argument when an array has the wrong
/// rank or disagrees with the others (`D`, `B`, the pools' shapes, `H_kv`
/// not dividing `H`); [`Error::Invalid`] for a wrong dtype (float for the
/// query and pools, int32 for the tables and lengths), a size of 0, `D >
/// 256`, a context length outside `1..=max_blocks * block_size`, a block id
/// the context uses outside the pool, or no usable CUDA GPU. Every check is
/// made before the kernel is built.
pub fn paged_attention(
    query: &Array,
    key_pool: &Array,
    value_pool: &Array,
    block_tables: &Array,
    context_lens: &Array,
    scale: f32,
) -> Result<Array> {
    let dims = check_shapes(query, key_pool, value_pool, block_tables, context_lens)?;
    if dims.batch == 0 {
        let shape = [0, dims.heads, dims.head_dim];
        return Ok(mlx_rs::ops::zeros::<f32>(&shape)?.as_dtype(query.dtype())?);
    }
    check_tables(block_tables, context_lens, &dims)?;
    let stream = cuda_stream()?;
    let kernel = CudaKernel::new(
        "tiny_llm_paged_attention",
        &[
            "q",
            "k_pool",
            "v_pool",
            "block_tables",
            "context_lens",
            "scale",
            "dims",
        ],
        &["out"],
        SOURCE,
        HEADER,
        true,
    )?;
    let value_pool = &value_pool.as_dtype(key_pool.dtype())?;
    let scale = Array::from_slice(&[scale], &[1]);
    let params = [dims.heads, dims.kv_heads, dims.max_blocks, dims.block_size];
    let params = Array::from_slice(&params, &[4]);
    let launch = Launch {
        grid: (THREADS, dims.heads, dims.batch),
        block: (THREADS, 1, 1),
        template_args: vec![
            ("TQ".to_string(), TemplateArg::Dtype(query.dtype())),
            ("TKV".to_string(), TemplateArg::Dtype(key_pool.dtype())),
            ("D".to_string(), TemplateArg::Int(dims.head_dim)),
        ],
        init_value: None,
    };
    let output = KernelOutput {
        shape: vec![dims.batch, dims.heads, dims.head_dim],
        dtype: query.dtype(),
    };
    let inputs = [
        query,
        key_pool,
        value_pool,
        block_tables,
        context_lens,
        &scale,
        &params,
    ];
    // SAFETY: the shapes are checked, every context length is in
    // 1..=max_blocks * block_size and every block id a context reads is
    // inside the pool (check_tables), so each read is inside its input;
    // block (h, b) writes only row (b, h) of `out`, every column of it.
    let mut outs = unsafe { kernel.apply(&inputs, &[output], &launch, &stream)? };
    Ok(outs.remove(0))
}
