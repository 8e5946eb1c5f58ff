// Day 11's fused kernels for Apple GPUs: the Metal twins of the CUDA sources
// in solutions/src/fused_gpu.rs, for MLX's custom Metal kernels
// (`mlx_rs::fast::MetalKernel`, `mx.fast.metal_kernel`).
//
// NOT RUN BY THE KIT: Metal exists only on macOS; the Linux machines the kit is
// developed and graded on cannot compile or run this file. It is kept
// structurally the same as the CUDA kernels (same inputs, outputs, template
// arguments, grid and threadgroup sizes, same reductions) so a Mac user can
// follow one with the other; see metal/README.md for how to run it.
//
// The file is not compiled as a whole. MLX wraps each kernel BODY below in
// `[[kernel]] void custom_kernel_<name>(const device T_in* in [[buffer(i)]]..,
// device T_out* out [[buffer(j)]].., <the thread attributes the body names>)`,
// after MLX's header and the HEADER section, and declares the template
// arguments inside it. Sections:
//   // ==== HEADER                      -> MetalKernelOptions::header
//   // ==== KERNEL <name>               -> the `source` of MetalKernel::new(<name>, ..)
// each followed by a comment line listing inputs, outputs, template arguments
// and the launch (grid counted in threads, as in CUDA's custom_kernel).
// CUDA -> Metal: blockIdx -> threadgroup_position_in_grid, threadIdx ->
// thread_position_in_threadgroup, blockDim -> threads_per_threadgroup,
// __shfl_xor_sync sums -> simd_sum / simd_max, __shared__ -> threadgroup,
// __syncthreads() -> threadgroup_barrier(mem_flags::mem_threadgroup).

// ==== HEADER
// Block-wide sum / max: simdgroups (32 lanes) first, then simdgroup 0 over the
// simdgroups' results through 32 floats of threadgroup memory.
inline float tiny_llm_block_reduce(float v, bool is_max, threadgroup float* scratch,
                                   uint tid, uint nthreads) {
  const uint lane = tid % 32, warp = tid / 32, warps = (nthreads + 31) / 32;
  const float neutral = is_max ? -INFINITY : 0.0f;
  v = is_max ? simd_max(v) : simd_sum(v);
  threadgroup_barrier(mem_flags::mem_threadgroup);
  if (lane == 0) scratch[warp] = v;
  threadgroup_barrier(mem_flags::mem_threadgroup);
  if (warp == 0) {
    float w = lane < warps ? scratch[lane] : neutral;
    w = is_max ? simd_max(w) : simd_sum(w);
    if (lane == 0) scratch[0] = w;
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  return scratch[0];
}

// ==== KERNEL tiny_llm_rms_norm
// inputs: x (T, rows x E), weight (float32, E), eps (float32, 1); outputs: out (T)
// template: T, E; grid (rows * 256, 1, 1), threadgroup (256, 1, 1); uses HEADER
  threadgroup float scratch[32];
  const uint row = threadgroup_position_in_grid.x;
  const uint tid = thread_position_in_threadgroup.x, nthreads = threads_per_threadgroup.x;
  const device T* xr = x + size_t(row) * E;
  device T* yr = out + size_t(row) * E;
  float ss = 0.0f;
  for (uint i = tid; i < uint(E); i += nthreads) {
    const float v = static_cast<float>(xr[i]);
    ss += v * v;
  }
  ss = tiny_llm_block_reduce(ss, false, scratch, tid, nthreads);
  const float inv = metal::rsqrt(ss / E + eps[0]);
  for (uint i = tid; i < uint(E); i += nthreads) {
    yr[i] = static_cast<T>(static_cast<float>(xr[i]) * inv * weight[i]);
  }

// ==== KERNEL tiny_llm_softmax
// inputs: x (T, rows x S), dims (int32: S); outputs: out (T)
// template: T; grid (rows * 256, 1, 1), threadgroup (256, 1, 1); uses HEADER
  threadgroup float scratch[32];
  const uint S = uint(dims[0]);
  const uint row = threadgroup_position_in_grid.x;
  const uint tid = thread_position_in_threadgroup.x, nthreads = threads_per_threadgroup.x;
  const device T* xr = x + size_t(row) * S;
  device T* yr = out + size_t(row) * S;
  float m = -INFINITY;
  for (uint i = tid; i < S; i += nthreads) m = metal::fmax(m, static_cast<float>(xr[i]));
  m = tiny_llm_block_reduce(m, true, scratch, tid, nthreads);
  float sum = 0.0f;
  for (uint i = tid; i < S; i += nthreads) sum += metal::exp(static_cast<float>(xr[i]) - m);
  sum = tiny_llm_block_reduce(sum, false, scratch, tid, nthreads);
  // A row of all -inf: m = -inf, exp(NaN) = NaN, so the row is NaN (as MLX).
  const float inv = 1.0f / sum;
  for (uint i = tid; i < S; i += nthreads) {
    yr[i] = static_cast<T>(metal::exp(static_cast<float>(xr[i]) - m) * inv);
  }

// ==== KERNEL tiny_llm_rope
// inputs: x (T, N x L x H x D), cos_table, sin_table (float32, seq_len x D/2),
//         offsets (int32, N), dims (int32: N, L, H); outputs: out (T)
// template: T, D, TRADITIONAL; grid (min(blocks, 65536) * 256, 1, 1) with
// blocks = ceil(pairs / 256), threadgroup (256, 1, 1)
  constexpr int HALF = D / 2;
  const long n = dims[0], l = dims[1], h = dims[2];
  const long pairs = n * l * h * HALF;
  const long stride = long(threads_per_grid.x);
  for (long p = long(thread_position_in_grid.x); p < pairs; p += stride) {
    const long r = p / HALF;  // row of D elements: (b, t, head)
    const int j = int(p % HALF);
    const long b = r / (l * h);
    const long t = (r / h) % l;
    const long pos = offsets[b] + t;
    const float c = cos_table[pos * HALF + j], s = sin_table[pos * HALF + j];
    const long i1 = r * D + (TRADITIONAL ? 2 * j : j);
    const long i2 = i1 + (TRADITIONAL ? 1 : HALF);
    const float x1 = static_cast<float>(x[i1]), x2 = static_cast<float>(x[i2]);
    out[i1] = static_cast<T>(x1 * c - x2 * s);
    out[i2] = static_cast<T>(x1 * s + x2 * c);
  }

// ==== KERNEL tiny_llm_swiglu
// inputs: gate (T), up (U), dims (int32: element count); outputs: out (T)
// template: T, U; grid (min(blocks, 65536) * 256, 1, 1), threadgroup (256, 1, 1)
  const long size = dims[0];
  const long stride = long(threads_per_grid.x);
  for (long i = long(thread_position_in_grid.x); i < size; i += stride) {
    const float g = static_cast<float>(gate[i]);
    out[i] = static_cast<T>(g / (1.0f + metal::exp(-g)) * static_cast<float>(up[i]));
  }
