//! Day 10 on a GPU: the quantized matmul as CUDA kernels run through MLX's
//! custom-kernel API ([`tiny_llm_common::gpu::CudaKernel`]): a matvec kernel
//! for decode (few rows of `x`) and a tiled kernel for prefill, 4 and 8
//! bits; the Metal twin is `metal/qmatmul.metal` (macOS; it cannot run on the
//! Linux machines the kit is tested on).
//!
//! Same layout and contract as day 9's `crate::quantized_matmul` (MLX's
//! affine quantization: row `o` of `W` is `I * bits / 32` uint32 words, code
//! `j` of a word is input `p * (32 / bits) + j`, lowest bits first; group
//! `g` of row `o` has `scales[o, g]`, `biases[o, g]`, and
//! `w = scale * q + bias`). Without a CUDA GPU every function returns
//! [`tiny_llm_common::Error::Invalid`] before touching MLX's GPU device.
//!
//! Implementation: both kernels read `x`, scales and biases in their own
//! dtypes (template arguments `T`, `S`), compute in f32 without TF32 and
//! write `x`'s dtype; `BITS` and `GS` are template arguments, the sizes
//! `M, I, O` a 3-element int32 input.
//! - matvec (`M <= MATVEC_MAX_ROWS`, `M` a template argument so that the
//!   accumulators live in registers): blocks of 256 threads (8 warps),
//!   `RPW` output rows per warp (1, or 2 when `O >= 8192`), grid
//!   `ceil(O / (8 RPW))` blocks. Lanes read consecutive 16-byte chunks of a
//!   packed row (`uint4`: 32 codes at 4 bits, 16 at 8), a warp 512
//!   contiguous bytes per step, for all `M` rows of `x` at once. `x` is
//!   staged as f32 in shared memory (slices of `8192 / M` inputs, `M`
//!   rounded up to a power of two) in a chunk-major layout that gives each
//!   lane four inputs per conflict-free `float4` load; the slice's group
//!   sums `sum(x_g)` are reduced while staging. Per chunk a lane adds
//!   `s * (x . q)`, and `b * sum(x_g)` when it holds the group's first
//!   chunk; codes become floats through the magic number `0x4B000000 | q`
//!   (the float `2^23 + q`) rather than a slow int-to-float conversion;
//!   warp shuffles sum the lanes.
//! - tiled (more rows): a 64 x 64 tile of `out` per block of 256 threads,
//!   K in steps of 32 inputs (inside one group: every group size is a
//!   multiple of 32): the `x` tile (f32) and the dequantized `W` tile
//!   (`s * q + b`) in shared memory, k-major with a padded stride, each
//!   thread a 4 x 4 register micro-tile (rows `ty + 16 i`, outputs
//!   `tx + 16 j`: conflict-free reads). Partial tiles read zeros and skip
//!   their writes. Grid `ceil(O / 64)` x `ceil(M / 64)` blocks.
//! - measured on an NVIDIA H200 (2026-12-02) through CuPy's NVRTC with the
//!   bodies wrapped as MLX 0.32.2 wraps them (`python3
//!   docs/gpu/check_cuda_sources.py solutions/src --qmm-only`, output in
//!   `docs/gpu/qmatmul-h200.txt`; correct on 33 cases, compute-sanitizer
//!   clean). Matvec, M = 1, 4 bits, group 64, bf16, bytes read (packed +
//!   scales + biases + x) over time, weights cycled through copies larger
//!   than the L2: 1.29 TB/s (27% of 4.8 TB/s) on the lm_heads (896 x 151936,
//!   1536 x 151936), 0.93 TB/s on 1536 x 17920, 0.63 TB/s on 896 x 9728,
//!   0.1-0.4 TB/s (4.5-18 us, latency-bound) on the small projections: well
//!   short of the 60% aimed at (a block stages `x` before its only weight
//!   loads, and short rows leave one 16-byte load in flight per lane).
//!   Tiled, M = 128 / 512: 15 / 21 TFLOP/s (I x O = 896 x 9728), 18 / 23
//!   (1536 x 17920), 2.6 / 10 (4864 x 896) and 4.4 / 14 (8960 x 1536: too
//!   few 64 x 64 tiles to fill the GPU, no split over K).
//!
//! Reference: MLX `mx.quantized_matmul` (transpose = true) and
//! `mlx/backend/cuda/custom_kernel.cpp` (how a body is wrapped).

use mlx_rs::{Array, Device, Dtype, Stream};
use tiny_llm_common::gpu::{
    gpu_backend, CudaKernel, GpuBackend, KernelOutput, Launch, TemplateArg,
};
use tiny_llm_common::{shape_error, Error, Linear, LinearWeight, Result};

/// Rows of `x` up to which [`quantized_matmul`] runs the matvec kernel
/// (decode, small batches); more rows run the tiled kernel.
pub const MATVEC_MAX_ROWS: i32 = 8;

/// Threads per block of both kernels (8 warps).
const BLOCK: i32 = 256;
/// Output tile of the tiled kernel: rows of `x` x outputs.
const TILE: i32 = 64;

/// Device helpers of both kernels: the code at `shift` of a packed word as
/// an exact float (the magic-number trick: `0x4B000000 | q` is the float
/// `2^23 + q`, so one OR and one subtraction replace a slow int-to-float
/// conversion), and a warp-wide sum.
const HEADER: &str = r#"
__device__ __forceinline__ float tiny_llm_code(unsigned int word, int shift, unsigned int mask) {
  return __uint_as_float(0x4B000000u | ((word >> shift) & mask)) - 8388608.0f;
}
__device__ __forceinline__ float tiny_llm_qmm_warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
"#;

/// Matvec: `M <= 8` rows of `x` (`T`, `M x I`) times the packed `w`
/// (uint32, `O x I*BITS/32`) with `scales`/`biases` (`S`, `O x I/GS`);
/// `dims` = (M, I, O) as int32; `out` (`T`, `M x O`). 256 threads = 8 warps
/// per block, `RPW` output rows per warp. Template: `T`, `S`, `BITS`, `GS`,
/// `M`, `RPW`.
///
/// Each lane reads one 16-byte chunk (`uint4`, `C = 128 / BITS` codes) of
/// each of its warp's rows per step, consecutive lanes consecutive chunks.
/// `x` is staged per slice of `SLICE` inputs as f32 in shared memory,
/// laid out `[m][j / 4][chunk][j % 4]` (chunk = k / C, j = k % C, a padded
/// chunk stride) so that a lane reads its chunk's four inputs with one
/// conflict-free `float4` load; the slice's group sums of `x` are computed
/// while staging. Per chunk: `acc += s * (x . q)`, plus `b * sum(x_g)` by
/// the lane holding the group's first chunk; a warp-shuffle sum at the end.
const MATVEC_SOURCE: &str = r#"
  constexpr int C = 128 / BITS;                 // codes per 16-byte chunk
  constexpr int PER_WORD = 32 / BITS;
  constexpr unsigned int MASK = (1u << BITS) - 1u;
  constexpr int MP = M <= 1 ? 1 : M <= 2 ? 2 : M <= 4 ? 4 : 8;
  constexpr int SLICE = 8192 / MP;              // inputs of x staged at a time
  constexpr int NCH = SLICE / C;                // chunks in a slice
  constexpr int NCHP = NCH + 1;                 // padded chunk stride (float4s)
  constexpr int GPS = SLICE / GS;               // groups in a slice
  __shared__ float4 xs[M * (C / 4) * NCHP];
  __shared__ float gsum[M * GPS];
  float* xsf = reinterpret_cast<float*>(xs);

  const int I = dims[1], O = dims[2];
  const int G = I / GS;
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  const int row0 = (blockIdx.x * 8 + warp) * RPW;
  const size_t row_chunks = (size_t)I / C;      // uint4s per row of w
  const uint4* wq = reinterpret_cast<const uint4*>(w);

  float acc[RPW][M];
#pragma unroll
  for (int r = 0; r < RPW; ++r)
#pragma unroll
    for (int m = 0; m < M; ++m) acc[r][m] = 0.0f;

  for (int k0 = 0; k0 < I; k0 += SLICE) {
    const int len = min(SLICE, I - k0);         // a multiple of GS
    const int groups = len / GS;
    __syncthreads();                            // the previous slice is consumed
    // Stage: warp-cooperative over (m, group) pairs; coalesced reads of x.
    for (int p = warp; p < M * groups; p += 8) {
      const int m = p / groups, g = p % groups;
      float s = 0.0f;
      for (int i = lane; i < GS; i += 32) {
        const int k = g * GS + i;               // within the slice
        const float v = static_cast<float>(x[(size_t)m * I + k0 + k]);
        const int c = k / C, j = k % C;
        xsf[((m * (C / 4) + j / 4) * NCHP + c) * 4 + (j & 3)] = v;
        s += v;
      }
      s = tiny_llm_qmm_warp_sum(s);
      if (lane == 0) gsum[m * GPS + g] = s;
    }
    __syncthreads();
    const int chunks = len / C;
    for (int c = lane; c < chunks; c += 32) {
      const int kc = k0 + c * C;                // first input of the chunk
      const int g = kc / GS;
      const bool first = (kc % GS) == 0;
      uint4 wv[RPW];
      float sc[RPW], bi[RPW];
#pragma unroll
      for (int r = 0; r < RPW; ++r) {
        const int o = min(row0 + r, O - 1);     // rows past O: read row O-1, never written
        wv[r] = wq[(size_t)o * row_chunks + kc / C];
        sc[r] = static_cast<float>(scales[(size_t)o * G + g]);
        bi[r] = static_cast<float>(biases[(size_t)o * G + g]);
      }
      float dot[RPW][M];
#pragma unroll
      for (int r = 0; r < RPW; ++r)
#pragma unroll
        for (int m = 0; m < M; ++m) dot[r][m] = 0.0f;
#pragma unroll
      for (int j4 = 0; j4 < C / 4; ++j4) {
        float4 xv[M];
#pragma unroll
        for (int m = 0; m < M; ++m) xv[m] = xs[(m * (C / 4) + j4) * NCHP + c];
#pragma unroll
        for (int jj = 0; jj < 4; ++jj) {
          const int j = j4 * 4 + jj;            // code j of the chunk
          const int wi = j / PER_WORD, sh = (j % PER_WORD) * BITS;
#pragma unroll
          for (int r = 0; r < RPW; ++r) {
            const unsigned int word = wi == 0 ? wv[r].x : wi == 1 ? wv[r].y : wi == 2 ? wv[r].z : wv[r].w;
            const float q = tiny_llm_code(word, sh, MASK);
#pragma unroll
            for (int m = 0; m < M; ++m) {
              const float xj = jj == 0 ? xv[m].x : jj == 1 ? xv[m].y : jj == 2 ? xv[m].z : xv[m].w;
              dot[r][m] = fmaf(xj, q, dot[r][m]);
            }
          }
        }
      }
#pragma unroll
      for (int r = 0; r < RPW; ++r)
#pragma unroll
        for (int m = 0; m < M; ++m) {
          acc[r][m] = fmaf(sc[r], dot[r][m], acc[r][m]);
          if (first) acc[r][m] = fmaf(bi[r], gsum[m * GPS + (g - k0 / GS)], acc[r][m]);
        }
    }
  }
#pragma unroll
  for (int r = 0; r < RPW; ++r)
#pragma unroll
    for (int m = 0; m < M; ++m) {
      const float v = tiny_llm_qmm_warp_sum(acc[r][m]);
      const int o = row0 + r;
      if (lane == 0 && o < O) out[(size_t)m * O + o] = static_cast<T>(v);
    }
"#;

/// Tiled: a block of 256 threads computes a 64 (rows of `x`) x 64 (outputs)
/// tile of `out`, K in steps of 32 inputs (inside one group, as every group
/// size is a multiple of 32): the step's `x` tile (f32) and dequantized `W`
/// tile (`s * q + b`, f32) go to shared memory k-major, then each thread
/// accumulates a 4 x 4 micro-tile (rows `ty + 16 i`, outputs `tx + 16 j`:
/// conflict-free reads). Partial tiles in M and O read zeros and skip the
/// write. Inputs and template as [`MATVEC_SOURCE`] without `M`, `RPW`;
/// grid (ceil(O / 64) x 256 threads, ceil(M / 64)).
const TILED_SOURCE: &str = r#"
  constexpr int TM = 64, TN = 64, TK = 32, PAD = TM + 1;
  constexpr int PER_WORD = 32 / BITS;
  constexpr unsigned int MASK = (1u << BITS) - 1u;
  constexpr int WORDS = TK / PER_WORD;          // words of a row per K step (4 or 8)
  __shared__ float xt[TK * PAD];
  __shared__ float wt[TK * PAD];
  const int M = dims[0], I = dims[1], O = dims[2];
  const int G = I / GS;
  const size_t row_words = (size_t)I / PER_WORD;
  const int t = threadIdx.x, tx = t & 15, ty = t >> 4;
  const int o0 = blockIdx.x * TN;
  const int m0 = blockIdx.y * TM;
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; ++i)
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

  for (int k0 = 0; k0 < I; k0 += TK) {
    const int g = k0 / GS;
    __syncthreads();
    // x tile: 64 rows x 32 inputs, coalesced along k.
#pragma unroll
    for (int e = t; e < TM * TK; e += 256) {
      const int r = e / TK, k = e % TK;
      const int m = m0 + r;
      xt[k * PAD + r] = m < M ? static_cast<float>(x[(size_t)m * I + k0 + k]) : 0.0f;
    }
    // W tile: 64 outputs x WORDS words, dequantized.
#pragma unroll
    for (int e = t; e < TN * WORDS; e += 256) {
      const int n = e / WORDS, wi = e % WORDS;
      const int o = o0 + n;
      unsigned int word = 0u;
      float s = 0.0f, b = 0.0f;
      if (o < O) {
        word = w[(size_t)o * row_words + k0 / PER_WORD + wi];
        s = static_cast<float>(scales[(size_t)o * G + g]);
        b = static_cast<float>(biases[(size_t)o * G + g]);
      }
#pragma unroll
      for (int j = 0; j < PER_WORD; ++j)
        wt[(wi * PER_WORD + j) * PAD + n] = fmaf(s, tiny_llm_code(word, j * BITS, MASK), b);
    }
    __syncthreads();
#pragma unroll 8
    for (int k = 0; k < TK; ++k) {
      float a[4], bw[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = xt[k * PAD + ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) bw[j] = wt[k * PAD + tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], bw[j], acc[i][j]);
    }
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int m = m0 + ty + 16 * i;
    if (m >= M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int o = o0 + tx + 16 * j;
      if (o < O) out[(size_t)m * O + o] = static_cast<T>(acc[i][j]);
    }
  }
"#;

/// MLX's default GPU stream, or [`Error::Invalid`] when no CUDA GPU is
/// usable (asked before touching `Device::gpu()`).
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

/// The host checks of [`quantized_matmul`]; returns `(M, I, O)`.
fn check_inputs(
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: &Array,
    group_size: i32,
    bits: i32,
) -> Result<(i64, i32, i32)> {
    if bits != 4 && bits != 8 {
        return Err(Error::Invalid(format!("bits must be 4 or 8, got {bits}")));
    }
    if ![32, 64, 128].contains(&group_size) {
        return Err(Error::Invalid(format!(
            "group_size must be 32, 64 or 128, got {group_size}"
        )));
    }
    if w.dtype() != Dtype::Uint32 {
        return Err(Error::Invalid(format!(
            "quantized weight w must be uint32, got {:?}",
            w.dtype()
        )));
    }
    for (what, a) in [("x", x), ("scales", scales), ("biases", biases)] {
        if !matches!(a.dtype(), Dtype::Float32 | Dtype::Float16 | Dtype::Bfloat16) {
            return Err(Error::Invalid(format!(
                "{what} must be float32, float16 or bfloat16, got {:?}",
                a.dtype()
            )));
        }
    }
    if scales.dtype() != biases.dtype() {
        return Err(Error::Invalid(format!(
            "scales ({:?}) and biases ({:?}) must have the same dtype",
            scales.dtype(),
            biases.dtype()
        )));
    }
    if w.ndim() != 2 {
        return Err(shape_error("quantized weight w", w, "[O, I * bits / 32]"));
    }
    let per_word = 32 / bits;
    let (o, cols) = (w.dim(0), w.dim(1) as i64 * per_word as i64);
    if cols % group_size as i64 != 0 || cols > i32::MAX as i64 {
        return Err(shape_error(
            "quantized weight w",
            w,
            &format!(
                "[O, P] with I = P * {per_word} (32 / bits) a multiple of group_size {group_size}"
            ),
        ));
    }
    let i = cols as i32;
    let groups = i / group_size;
    let want = format!("[{o}, {groups}] (O, I / group_size with I = {i})");
    if scales.shape() != [o, groups] {
        return Err(shape_error("scales", scales, &want));
    }
    if biases.shape() != [o, groups] {
        return Err(shape_error("biases", biases, &want));
    }
    if x.ndim() == 0 || x.dim(-1) != i {
        return Err(shape_error(
            "x",
            x,
            &format!("[N.., {i}] (I = {} words x {per_word} codes)", w.dim(1)),
        ));
    }
    let m = if i == 0 {
        0
    } else {
        (x.size() / i as usize) as i64
    };
    Ok((m, i, o))
}

/// `x W^T` with `W` quantized (4 or 8 bits), on the GPU.
///
/// - `x`: `N.. x I`, f32/f16/bf16 (computed in f32).
/// - `w`: `O x I * bits / 32` uint32; `scales`, `biases`: `O x I / group_size`,
///   f32/f16/bf16 (the same dtype).
/// - returns: `N.. x O` in `x`'s dtype.
///
/// At most [`MATVEC_MAX_ROWS`] rows of `x` run the matvec kernel, more the
/// tiled kernel.
///
/// Errors: [`tiny_llm_common::Error::Shape`] when the shapes disagree;
/// [`tiny_llm_common::Error::Invalid`] for bits other than 4 or 8, a group
/// size other than 32, 64 or 128, a non-float `x`, scales and biases of
/// different dtypes, or no usable CUDA GPU.
///
/// Implementation: the host checks, then one launch of the matvec or the
/// tiled kernel (see the module's doc) on MLX's default GPU stream, `x`
/// seen as `M x I` rows.
pub fn quantized_matmul(
    x: &Array,
    w: &Array,
    scales: &Array,
    biases: &Array,
    group_size: i32,
    bits: i32,
) -> Result<Array> {
    let (m, i, o) = check_inputs(x, w, scales, biases, group_size, bits)?;
    let stream = cuda_stream()?;
    let mut shape = x.shape().to_vec();
    *shape.last_mut().expect("x has a last axis") = o;
    if m == 0 || o == 0 || i == 0 {
        return Ok(mlx_rs::ops::zeros::<f32>(&shape)?.as_dtype(x.dtype())?);
    }
    let mut args = vec![
        ("T", TemplateArg::Dtype(x.dtype())),
        ("S", TemplateArg::Dtype(scales.dtype())),
        ("BITS", TemplateArg::Int(bits)),
        ("GS", TemplateArg::Int(group_size)),
    ];
    let (name, source, grid) = if m <= MATVEC_MAX_ROWS as i64 {
        let rpw = if o >= 8192 { 2 } else { 1 };
        args.push(("M", TemplateArg::Int(m as i32)));
        args.push(("RPW", TemplateArg::Int(rpw)));
        let blocks = (o as i64 + 8 * rpw as i64 - 1) / (8 * rpw as i64);
        ("tiny_llm_qmv", MATVEC_SOURCE, (blocks * BLOCK as i64, 1))
    } else {
        let cols = (o as i64 + TILE as i64 - 1) / TILE as i64;
        let rows = (m + TILE as i64 - 1) / TILE as i64;
        if rows > 65_535 {
            return Err(Error::Invalid(format!(
                "quantized_matmul: {m} rows of x are too many for one launch (at most {})",
                65_535 * TILE as i64
            )));
        }
        (
            "tiny_llm_qmm_tiled",
            TILED_SOURCE,
            (cols * BLOCK as i64, rows),
        )
    };
    let grid_x = i32::try_from(grid.0).map_err(|_| {
        Error::Invalid(format!(
            "quantized_matmul: O = {o} is too large for one launch"
        ))
    })?;
    let kernel = CudaKernel::new(
        name,
        &["x", "w", "scales", "biases", "dims"],
        &["out"],
        source,
        HEADER,
        true,
    )?;
    let dims = Array::from_slice(&[m as i32, i, o], &[3]);
    let launch = Launch {
        grid: (grid_x, grid.1 as i32, 1),
        block: (BLOCK, 1, 1),
        template_args: args.into_iter().map(|(n, a)| (n.to_string(), a)).collect(),
        init_value: None,
    };
    let output = KernelOutput {
        shape: vec![m as i32, o],
        dtype: x.dtype(),
    };
    let x2 = x.reshape(&[m as i32, i])?;
    // SAFETY: the host checks above make every read of the kernels lie
    // inside `x` (M x I), `w` (O x I*bits/32), `scales`/`biases` (O x I/GS)
    // and `dims`; each element of `out` (M x O) is written exactly once.
    let mut outs = unsafe {
        kernel.apply(
            &[&x2, w, scales, biases, &dims],
            &[output],
            &launch,
            &stream,
        )?
    };
    Ok(outs.remove(0).reshape(&shape)?)
}

/// `x W^T + b` for a quantized [`Linear`] on the GPU: [`quantized_matmul`]
/// plus the bias (same contract as `crate::quantized_linear::quantized_linear`,
/// but the output keeps `x`'s dtype).
///
/// Errors: those of [`quantized_matmul`]; [`tiny_llm_common::Error::Invalid`]
/// for a dense layer.
///
/// Implementation: [`quantized_matmul`], then MLX's `add` of the bias and a
/// cast back to `x`'s dtype.
pub fn quantized_linear(x: &Array, layer: &Linear) -> Result<Array> {
    let LinearWeight::Quantized {
        w,
        scales,
        biases,
        group_size,
        bits,
    } = &layer.weight
    else {
        return Err(Error::Invalid(
            "quantized_linear needs a quantized layer (packed weight, scales, biases); this one is dense"
                .into(),
        ));
    };
    let y = quantized_matmul(x, w, scales, biases, *group_size, *bits)?;
    match &layer.bias {
        Some(b) => Ok(y.add(b)?.as_dtype(x.dtype())?),
        None => Ok(y),
    }
}
