//! Day 11 on a GPU: the fused kernels as CUDA sources run through MLX's
//! custom-kernel API ([`tiny_llm_common::gpu::CudaKernel`]); their Metal
//! twins are in `metal/fused.metal` (macOS; they cannot run on the Linux
//! machines the kit is tested on).
//!
//! Same functions, signatures and contracts as `crate::fused` (the CPU
//! kernels of day 11): each one checks its arguments on the host, then
//! launches one CUDA kernel on MLX's default GPU stream. The kernels read
//! their inputs in the input's dtype (f32, f16 or bf16), compute in f32 and
//! write the input's dtype. Without a CUDA GPU (a CPU-only MLX, or no
//! NVIDIA device) every function returns
//! [`tiny_llm_common::Error::Invalid`] before touching MLX's GPU device.
//!
//! How MLX runs a body (`CudaKernel::new(name, inputs, outputs, source,
//! header, ..)`): it wraps `source` in `__global__ void
//! custom_kernel_<name>_<template args>(const T_in* in.., T_out* out..)`
//! (after MLX's header and `header`), declares each template argument inside
//! it (`constexpr int N = ..`, `constexpr bool B = ..`, `using T = float`),
//! and launches `grid / block` blocks of `block` threads: the grid is
//! counted in threads. Shared memory is static (`__shared__ float s[..]`,
//! 48 KB at most). A kernel is compiled once per name and template arguments
//! (NVRTC) and cached, so the input dtypes must be template arguments (the
//! cache key), and sizes that change from call to call (rows, sequence
//! length) are better read from a small `int32` input than made template
//! arguments (which would compile one kernel per length). Floats such as
//! `eps` travel as 1-element f32 inputs.
//!
//! Implementation: `rms_norm` and `softmax` run one block of 256 threads per
//! row; the row's sum (of squares, of exponentials) and maximum are reduced
//! with warp shuffles (`__shfl_xor_sync`), then across the block's warps
//! through 32 floats of shared memory. `rope` runs one thread per rotated
//! pair, with one position offset per batch row; `swiglu` one thread per
//! element (grid-stride loops, at most 65,536 blocks).
//!
//! Reference: MLX `mlx/backend/cuda/custom_kernel.cpp` (the wrapping), and
//! the formulas of `crate::fused`: `mx.fast.rms_norm`, `mx.fast.rope`,
//! `mx.softmax`, Shazeer 2020 (SwiGLU).

use mlx_rs::{Array, Device, Dtype, Stream};
use tiny_llm_common::gpu::{
    gpu_backend, CudaKernel, GpuBackend, KernelOutput, Launch, TemplateArg,
};
use tiny_llm_common::RopeView;
use tiny_llm_common::{shape_error, Error, Result};

/// Threads per block of the row kernels (`rms_norm`, `softmax`): 8 warps.
const ROW_BLOCK: i32 = 256;
/// Threads per block of the elementwise kernels (`rope`, `swiglu`).
const ELEM_BLOCK: i32 = 256;
/// At most this many blocks for a grid-stride kernel.
const MAX_ELEM_BLOCKS: i64 = 65_536;

/// Device helpers shared by the row kernels: block-wide sum and maximum.
/// `scratch` is 32 floats of shared memory; every thread of the block must
/// call, and gets the result. `-inf` is spelled with a CUDA intrinsic (MLX
/// 0.32's own header defines no `inf`, and NVRTC has no `<math.h>` for
/// `INFINITY`).
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
// Block-wide reduction: warps first, then warp 0 over the warps' results.
template <bool MAX>
__device__ float tiny_llm_block_reduce(float v, float* scratch) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int warps = (blockDim.x + 31) >> 5;
  const float neutral = MAX ? TINY_LLM_NEG_INF : 0.0f;
  v = MAX ? tiny_llm_warp_max(v) : tiny_llm_warp_sum(v);
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  if (warp == 0) {
    float w = lane < warps ? scratch[lane] : neutral;
    w = MAX ? tiny_llm_warp_max(w) : tiny_llm_warp_sum(w);
    if (lane == 0) scratch[0] = w;
  }
  __syncthreads();
  return scratch[0];
}
"#;

/// RMSNorm, one block per row of `E` elements. Inputs: `x` (`T`, rows x
/// E), `weight` (f32, E), `eps` (f32, 1). Template: `T`, `E`.
const RMS_NORM_SOURCE: &str = r#"
  __shared__ float scratch[32];
  const size_t row = blockIdx.x;
  const T* xr = x + row * E;
  T* yr = out + row * E;
  float ss = 0.0f;
  for (int i = threadIdx.x; i < E; i += blockDim.x) {
    const float v = static_cast<float>(xr[i]);
    ss += v * v;
  }
  ss = tiny_llm_block_reduce<false>(ss, scratch);
  const float inv = rsqrtf(ss / E + eps[0]);
  for (int i = threadIdx.x; i < E; i += blockDim.x) {
    yr[i] = static_cast<T>(static_cast<float>(xr[i]) * inv * weight[i]);
  }
"#;

/// Softmax over rows of `S = dims[0]` elements, one block per row: the
/// maximum, then the sum of `exp(x - max)`, then the division (three reads
/// of the row, which stays in L1/L2). Inputs: `x` (`T`), `dims` (int32, 1).
/// Template: `T`.
const SOFTMAX_SOURCE: &str = r#"
  __shared__ float scratch[32];
  const int S = dims[0];
  const size_t row = blockIdx.x;
  const T* xr = x + row * S;
  T* yr = out + row * S;
  float m = TINY_LLM_NEG_INF;
  for (int i = threadIdx.x; i < S; i += blockDim.x) m = fmaxf(m, static_cast<float>(xr[i]));
  m = tiny_llm_block_reduce<true>(m, scratch);
  float sum = 0.0f;
  for (int i = threadIdx.x; i < S; i += blockDim.x) sum += expf(static_cast<float>(xr[i]) - m);
  sum = tiny_llm_block_reduce<false>(sum, scratch);
  // A row of all -inf: m = -inf, exp(NaN) = NaN, so the row is NaN (as MLX).
  const float inv = 1.0f / sum;
  for (int i = threadIdx.x; i < S; i += blockDim.x) {
    yr[i] = static_cast<T>(expf(static_cast<float>(xr[i]) - m) * inv);
  }
"#;

/// RoPE, one thread per rotated pair of `x` (`N x L x H x D`, `T`), with
/// `cos_table`/`sin_table` (f32, `seq_len x D/2`), `offsets` (int32, N) and `dims`
/// (int32: N, L, H). Template: `T`, `D`, `TRADITIONAL`.
const ROPE_SOURCE: &str = r#"
  constexpr int HALF = D / 2;
  const long long n = dims[0], l = dims[1], h = dims[2];
  const long long pairs = n * l * h * HALF;
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long p = (long long)blockIdx.x * blockDim.x + threadIdx.x; p < pairs; p += stride) {
    const long long r = p / HALF;           // row of D elements: (b, t, head)
    const int j = (int)(p % HALF);          // frequency index
    const long long b = r / (l * h);
    const long long t = (r / h) % l;
    const long long pos = offsets[b] + t;
    const float c = cos_table[pos * HALF + j], s = sin_table[pos * HALF + j];
    const long long i1 = r * D + (TRADITIONAL ? 2 * j : j);
    const long long i2 = i1 + (TRADITIONAL ? 1 : HALF);
    const float x1 = static_cast<float>(x[i1]), x2 = static_cast<float>(x[i2]);
    out[i1] = static_cast<T>(x1 * c - x2 * s);
    out[i2] = static_cast<T>(x1 * s + x2 * c);
  }
"#;

/// SwiGLU, one thread per element (grid-stride): `silu(gate) * up` with
/// `gate` (`T`), `up` (`U`), `dims` (int32: the element count). Template:
/// `T`, `U`.
const SWIGLU_SOURCE: &str = r#"
  const long long size = dims[0];
  const long long stride = (long long)gridDim.x * blockDim.x;
  for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < size; i += stride) {
    const float g = static_cast<float>(gate[i]);
    out[i] = static_cast<T>(g / (1.0f + expf(-g)) * static_cast<float>(up[i]));
  }
"#;

/// MLX's default GPU stream, or [`tiny_llm_common::Error::Invalid`] when no CUDA GPU is
/// usable (asked before touching `Device::gpu()`, which ends the process
/// on a machine without one).
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

/// Fails unless `a` is f32, f16 or bf16.
fn expect_float(what: &str, a: &Array) -> Result<()> {
    match a.dtype() {
        Dtype::Float32 | Dtype::Float16 | Dtype::Bfloat16 => Ok(()),
        d => Err(Error::Invalid(format!(
            "{what}: expected float32, float16 or bfloat16, got {d:?}"
        ))),
    }
}

/// A count that must fit a launch's `int`.
fn as_i32(what: &str, n: i64) -> Result<i32> {
    i32::try_from(n)
        .map_err(|_| Error::Invalid(format!("{what} = {n} is too large for one kernel launch")))
}

/// Blocks for a grid-stride kernel over `n` items, as a thread count.
fn elem_grid(n: i64) -> i32 {
    let blocks = ((n + ELEM_BLOCK as i64 - 1) / ELEM_BLOCK as i64).clamp(1, MAX_ELEM_BLOCKS);
    (blocks * ELEM_BLOCK as i64) as i32
}

/// Launches `kernel` with one output shaped and typed like `like`.
///
/// SAFETY (of the callers): each source above reads only inside its inputs
/// (sizes checked on the host) and writes every output element once.
fn launch_one(
    kernel: &CudaKernel,
    inputs: &[&Array],
    like: &Array,
    grid: i32,
    block: i32,
    template_args: Vec<(&str, TemplateArg)>,
) -> Result<Array> {
    let stream = cuda_stream()?;
    let launch = Launch {
        grid: (grid, 1, 1),
        block: (block, 1, 1),
        template_args: template_args
            .into_iter()
            .map(|(n, a)| (n.to_string(), a))
            .collect(),
        init_value: None,
    };
    let output = KernelOutput {
        shape: like.shape().to_vec(),
        dtype: like.dtype(),
    };
    // SAFETY: see above; inputs and outputs match the kernel's names.
    let mut outs = unsafe { kernel.apply(inputs, &[output], &launch, &stream)? };
    Ok(outs.remove(0))
}

/// RMSNorm on the GPU: `x / sqrt(mean(x^2) + eps) * weight` over the last
/// axis (same contract as `crate::fused::rms_norm`).
///
/// - `x`: `N.. x E`, f32/f16/bf16 (computed in f32); `weight`: `E`, any
///   float dtype (read as f32).
/// - returns: `N.. x E` in `x`'s dtype.
///
/// Errors: [`tiny_llm_common::Error::Shape`] when `x` is 0-D or `weight` is not `E`;
/// [`tiny_llm_common::Error::Invalid`] for a non-float `x`, `eps <= 0` (or not finite), or
/// no usable CUDA GPU.
///
/// Implementation: one block of 256 threads per row; each thread sums the
/// squares of a strided slice of the row, the block reduces them (warp
/// shuffles, then 32 floats of shared memory), and every thread scales its
/// slice by `rsqrt(sum / E + eps) * weight`.
pub fn rms_norm(x: &Array, weight: &Array, eps: f32) -> Result<Array> {
    expect_float("rms_norm input", x)?;
    if x.ndim() == 0 {
        return Err(shape_error("rms_norm input", x, "[N.., E]"));
    }
    let e = x.dim(-1);
    if weight.ndim() != 1 || weight.dim(0) != e {
        return Err(shape_error(
            "rms_norm weight",
            weight,
            &format!("[{e}] (E of x)"),
        ));
    }
    if !(eps > 0.0 && eps.is_finite()) {
        return Err(Error::Invalid(format!(
            "rms_norm eps must be finite and > 0, got {eps}"
        )));
    }
    if x.size() == 0 {
        return Ok(x.clone());
    }
    let rows = (x.size() / e as usize) as i64;
    let grid = as_i32("rms_norm rows x 256 threads", rows * ROW_BLOCK as i64)?;
    let kernel = CudaKernel::new(
        "tiny_llm_rms_norm",
        &["x", "weight", "eps"],
        &["out"],
        RMS_NORM_SOURCE,
        HEADER,
        true,
    )?;
    let w = weight.as_dtype(Dtype::Float32)?;
    let eps = Array::from_slice(&[eps], &[1]);
    let args = vec![
        ("T", TemplateArg::Dtype(x.dtype())),
        ("E", TemplateArg::Int(e)),
    ];
    launch_one(&kernel, &[x, &w, &eps], x, grid, ROW_BLOCK, args)
}

/// RoPE on the GPU with one position offset per batch row (same contract
/// as `crate::fused::rope`).
///
/// - `x`: `N x L x H x D` (`D = rope.dims`), f32/f16/bf16 (computed in
///   f32); row `b`'s token `t` is at position `offsets[b] + t`.
/// - `offsets`: `N` offsets, or one for every row.
/// - returns: `N x L x H x D` in `x`'s dtype.
///
/// Errors: [`tiny_llm_common::Error::Shape`] when `x` is not 4-D with `D = rope.dims`;
/// [`tiny_llm_common::Error::Invalid`] when `offsets.len()` is neither 1 nor `N`, a position
/// is negative or passes `rope.seq_len` (naming the row), `x` is not float,
/// or no CUDA GPU is usable.
///
/// Implementation: one thread per rotated pair `(i1, i2)` (interleaved
/// `(2j, 2j+1)` when `rope.traditional`, else the halves `(j, j + D/2)`),
/// reading `cos`/`sin` at the pair's position from `rope`'s f32 tables.
pub fn rope(x: &Array, rope: RopeView<'_>, offsets: &[i32]) -> Result<Array> {
    expect_float("rope input", x)?;
    let want = format!("[N, L, H, {}]", rope.dims);
    if x.ndim() != 4 || x.dim(3) != rope.dims {
        return Err(shape_error("rope input", x, &want));
    }
    let (n, l, h) = (x.dim(0), x.dim(1), x.dim(2));
    let offsets: Vec<i32> = match offsets.len() {
        1 => vec![offsets[0]; n as usize],
        len if len == n as usize => offsets.to_vec(),
        len => {
            return Err(Error::Invalid(format!(
                "rope offsets: expected 1 or N = {n} offsets, got {len}"
            )))
        }
    };
    for (b, &o) in offsets.iter().enumerate() {
        if o < 0 || o as i64 + l as i64 > rope.seq_len as i64 {
            return Err(Error::Invalid(format!(
                "rope: row {b} has positions {o}..{} outside 0..{} (seq_len)",
                o as i64 + l as i64,
                rope.seq_len
            )));
        }
    }
    if x.size() == 0 {
        return Ok(x.clone());
    }
    let pairs = x.size() as i64 / 2;
    let kernel = CudaKernel::new(
        "tiny_llm_rope",
        &["x", "cos_table", "sin_table", "offsets", "dims"],
        &["out"],
        ROPE_SOURCE,
        "",
        true,
    )?;
    let offsets = Array::from_slice(&offsets, &[n]);
    let dims = Array::from_slice(&[n, l, h], &[3]);
    let (cos, sin) = (
        rope.cos.as_dtype(Dtype::Float32)?,
        rope.sin.as_dtype(Dtype::Float32)?,
    );
    let args = vec![
        ("T", TemplateArg::Dtype(x.dtype())),
        ("D", TemplateArg::Int(rope.dims)),
        ("TRADITIONAL", TemplateArg::Bool(rope.traditional)),
    ];
    let inputs = [x, &cos, &sin, &offsets, &dims];
    launch_one(&kernel, &inputs, x, elem_grid(pairs), ELEM_BLOCK, args)
}

/// SwiGLU's gate on the GPU: `silu(gate) * up`, elementwise (same contract
/// as `crate::fused::swiglu`).
///
/// - `gate`, `up`: the same shape `N.. x I`, float (computed in f32).
/// - returns: `N.. x I` in `gate`'s dtype.
///
/// Errors: [`tiny_llm_common::Error::Shape`] when the shapes differ;
/// [`tiny_llm_common::Error::Invalid`] for a non-float input or no usable CUDA
/// GPU.
///
/// Implementation: one thread per element in a grid-stride loop,
/// `g / (1 + exp(-g)) * u` in f32.
pub fn swiglu(gate: &Array, up: &Array) -> Result<Array> {
    expect_float("swiglu gate", gate)?;
    expect_float("swiglu up", up)?;
    if gate.shape() != up.shape() {
        return Err(shape_error(
            "swiglu up",
            up,
            &format!("{:?} (the shape of gate)", gate.shape()),
        ));
    }
    if gate.size() == 0 {
        return Ok(gate.clone());
    }
    let size = as_i32("swiglu size", gate.size() as i64)?;
    let kernel = CudaKernel::new(
        "tiny_llm_swiglu",
        &["gate", "up", "dims"],
        &["out"],
        SWIGLU_SOURCE,
        "",
        true,
    )?;
    let dims = Array::from_slice(&[size], &[1]);
    let args = vec![
        ("T", TemplateArg::Dtype(gate.dtype())),
        ("U", TemplateArg::Dtype(up.dtype())),
    ];
    launch_one(
        &kernel,
        &[gate, up, &dims],
        gate,
        elem_grid(size as i64),
        ELEM_BLOCK,
        args,
    )
}

/// Softmax over the last axis on the GPU, numerically stable (same
/// contract as `crate::fused::softmax`; a row of all `-inf` gives NaN, as
/// MLX's does).
///
/// - `x`: `N.. x S`, float (computed in f32).
/// - returns: `N.. x S` in `x`'s dtype.
///
/// Errors: [`tiny_llm_common::Error::Invalid`] for a non-float or 0-D `x`, or no usable
/// CUDA GPU.
///
/// Implementation: one block of 256 threads per row: a block-wide maximum,
/// a block-wide sum of `exp(x - max)`, then each thread writes
/// `exp(x - max) / sum` for its strided slice.
pub fn softmax(x: &Array) -> Result<Array> {
    expect_float("softmax input", x)?;
    if x.ndim() == 0 {
        return Err(Error::Invalid(
            "softmax input: expected at least 1 dimension, got a 0-D array".into(),
        ));
    }
    if x.size() == 0 {
        return Ok(x.clone());
    }
    let s = x.dim(-1);
    let rows = (x.size() / s as usize) as i64;
    let grid = as_i32("softmax rows x 256 threads", rows * ROW_BLOCK as i64)?;
    let kernel = CudaKernel::new(
        "tiny_llm_softmax",
        &["x", "dims"],
        &["out"],
        SOFTMAX_SOURCE,
        HEADER,
        true,
    )?;
    let dims = Array::from_slice(&[s], &[1]);
    let args = vec![("T", TemplateArg::Dtype(x.dtype()))];
    launch_one(&kernel, &[x, &dims], x, grid, ROW_BLOCK, args)
}
