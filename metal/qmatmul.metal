// Day 10's quantized matmul for Apple GPUs: the Metal twins of the CUDA sources
// in solutions/src/qmatmul_gpu.rs (matvec for decode, tiled for prefill, 4 and
// 8 bits), for MLX's custom Metal kernels (`mlx_rs::fast::MetalKernel`,
// `mx.fast.metal_kernel`).
//
// NOT RUN BY THE KIT: Metal exists only on macOS; the Linux machines the kit is
// developed and graded on cannot compile or run this file, so it has never been
// compiled. It is kept structurally the same as the CUDA kernels (same inputs,
// outputs, template arguments, grid and threadgroup sizes) so a Mac user can
// follow one with the other; see metal/README.md for how to run it.
//
// One deliberate difference: Apple GPUs give a threadgroup 32 KB, so the matvec
// stages slices of 4096 / M inputs of x (8192 / M in CUDA, with 48 KB).
//
// Layout (MLX's affine quantization): row o of W is I * BITS / 32 uint32 words,
// code j of word p is input p * (32 / BITS) + j, lowest bits first; group g of
// row o has scales[o, g], biases[o, g]; w = scale * q + bias. Both kernels use
// sum_i x_i (s q_i + b) = s (x . q) + b sum(x) over a group.
// CUDA -> Metal: blockIdx -> threadgroup_position_in_grid, threadIdx ->
// thread_position_in_threadgroup, lane / warp -> thread_index_in_simdgroup /
// simdgroup_index_in_threadgroup, __shfl_xor_sync sums -> simd_sum,
// __shared__ -> threadgroup, __syncthreads() ->
// threadgroup_barrier(mem_flags::mem_threadgroup), __uint_as_float -> as_type<float>.

// ==== HEADER
// The code at `shift` of a packed word as an exact float: 0x4B000000 | q is the
// float 2^23 + q.
inline float tiny_llm_code(uint word, uint shift, uint mask) {
  return as_type<float>(0x4B000000u | ((word >> shift) & mask)) - 8388608.0f;
}

// ==== KERNEL tiny_llm_qmv
// inputs: x (T, M x I), w (uint32, O x I*BITS/32), scales, biases (S, O x I/GS),
// dims (int32: M, I, O); outputs: out (T, M x O)
// template: T, S, BITS, GS, M (1..8), RPW (rows per simdgroup: 1, or 2 when O >= 8192)
// grid (ceil(O / (8 RPW)) * 256, 1, 1), threadgroup (256, 1, 1); uses HEADER
  constexpr int C = 128 / BITS;                 // codes per 16-byte chunk
  constexpr int PER_WORD = 32 / BITS;
  constexpr uint MASK = (1u << BITS) - 1u;
  constexpr int MP = M <= 1 ? 1 : M <= 2 ? 2 : M <= 4 ? 4 : 8;
  constexpr int SLICE = 4096 / MP;              // inputs of x staged at a time
  constexpr int NCH = SLICE / C;
  constexpr int NCHP = NCH + 1;                 // padded chunk stride (float4s)
  constexpr int GPS = SLICE / GS;
  threadgroup float4 xs[M * (C / 4) * NCHP];
  threadgroup float gsum[M * GPS];
  threadgroup float* xsf = (threadgroup float*)xs;

  const int I = dims[1], O = dims[2];
  const int G = I / GS;
  const uint warp = simdgroup_index_in_threadgroup, lane = thread_index_in_simdgroup;
  const int row0 = (int(threadgroup_position_in_grid.x) * 8 + int(warp)) * RPW;
  const size_t row_chunks = size_t(I) / C;
  const device uint4* wq = (const device uint4*)w;

  float acc[RPW][M];
  for (int r = 0; r < RPW; ++r)
    for (int m = 0; m < M; ++m) acc[r][m] = 0.0f;

  for (int k0 = 0; k0 < I; k0 += SLICE) {
    const int len = min(SLICE, I - k0);
    const int groups = len / GS;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (int p = int(warp); p < M * groups; p += 8) {
      const int m = p / groups, g = p % groups;
      float s = 0.0f;
      for (int i = int(lane); i < GS; i += 32) {
        const int k = g * GS + i;
        const float v = static_cast<float>(x[size_t(m) * I + k0 + k]);
        const int c = k / C, j = k % C;
        xsf[((m * (C / 4) + j / 4) * NCHP + c) * 4 + (j & 3)] = v;
        s += v;
      }
      s = simd_sum(s);
      if (lane == 0) gsum[m * GPS + g] = s;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    const int chunks = len / C;
    for (int c = int(lane); c < chunks; c += 32) {
      const int kc = k0 + c * C;
      const int g = kc / GS;
      const bool first = (kc % GS) == 0;
      uint4 wv[RPW];
      float sc[RPW], bi[RPW];
      for (int r = 0; r < RPW; ++r) {
        const int o = min(row0 + r, O - 1);     // rows past O: read row O-1, never written
        wv[r] = wq[size_t(o) * row_chunks + kc / C];
        sc[r] = static_cast<float>(scales[size_t(o) * G + g]);
        bi[r] = static_cast<float>(biases[size_t(o) * G + g]);
      }
      float dot[RPW][M];
      for (int r = 0; r < RPW; ++r)
        for (int m = 0; m < M; ++m) dot[r][m] = 0.0f;
      for (int j4 = 0; j4 < C / 4; ++j4) {
        float4 xv[M];
        for (int m = 0; m < M; ++m) xv[m] = xs[(m * (C / 4) + j4) * NCHP + c];
        for (int jj = 0; jj < 4; ++jj) {
          const int j = j4 * 4 + jj;
          const int wi = j / PER_WORD;
          const uint sh = uint((j % PER_WORD) * BITS);
          for (int r = 0; r < RPW; ++r) {
            const float q = tiny_llm_code(wv[r][wi], sh, MASK);
            for (int m = 0; m < M; ++m) dot[r][m] = fma(xv[m][jj], q, dot[r][m]);
          }
        }
      }
      for (int r = 0; r < RPW; ++r)
        for (int m = 0; m < M; ++m) {
          acc[r][m] = fma(sc[r], dot[r][m], acc[r][m]);
          if (first) acc[r][m] = fma(bi[r], gsum[m * GPS + (g - k0 / GS)], acc[r][m]);
        }
    }
  }
  for (int r = 0; r < RPW; ++r)
    for (int m = 0; m < M; ++m) {
      const float v = simd_sum(acc[r][m]);
      const int o = row0 + r;
      if (lane == 0 && o < O) out[size_t(m) * O + o] = static_cast<T>(v);
    }

// ==== KERNEL tiny_llm_qmm_tiled
// inputs and outputs as tiny_llm_qmv; template: T, S, BITS, GS
// grid (ceil(O / 64) * 256, ceil(M / 64), 1), threadgroup (256, 1, 1); uses HEADER
// A 64 x 64 tile of out per threadgroup, K in steps of 32 inputs (inside one
// group); each thread a 4 x 4 micro-tile (rows ty + 16 i, outputs tx + 16 j).
  constexpr int TM = 64, TN = 64, TK = 32, PAD = TM + 1;
  constexpr int PER_WORD = 32 / BITS;
  constexpr uint MASK = (1u << BITS) - 1u;
  constexpr int WORDS = TK / PER_WORD;
  threadgroup float xt[TK * PAD];
  threadgroup float wt[TK * PAD];
  const int M = dims[0], I = dims[1], O = dims[2];
  const int G = I / GS;
  const size_t row_words = size_t(I) / PER_WORD;
  const int t = int(thread_position_in_threadgroup.x), tx = t & 15, ty = t >> 4;
  const int o0 = int(threadgroup_position_in_grid.x) * TN;
  const int m0 = int(threadgroup_position_in_grid.y) * TM;
  float acc[4][4];
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j) acc[i][j] = 0.0f;

  for (int k0 = 0; k0 < I; k0 += TK) {
    const int g = k0 / GS;
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (int e = t; e < TM * TK; e += 256) {
      const int r = e / TK, k = e % TK;
      const int m = m0 + r;
      xt[k * PAD + r] = m < M ? static_cast<float>(x[size_t(m) * I + k0 + k]) : 0.0f;
    }
    for (int e = t; e < TN * WORDS; e += 256) {
      const int n = e / WORDS, wi = e % WORDS;
      const int o = o0 + n;
      uint word = 0u;
      float s = 0.0f, b = 0.0f;
      if (o < O) {
        word = w[size_t(o) * row_words + k0 / PER_WORD + wi];
        s = static_cast<float>(scales[size_t(o) * G + g]);
        b = static_cast<float>(biases[size_t(o) * G + g]);
      }
      for (int j = 0; j < PER_WORD; ++j)
        wt[(wi * PER_WORD + j) * PAD + n] = fma(s, tiny_llm_code(word, uint(j * BITS), MASK), b);
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (int k = 0; k < TK; ++k) {
      float a[4], bw[4];
      for (int i = 0; i < 4; ++i) a[i] = xt[k * PAD + ty + 16 * i];
      for (int j = 0; j < 4; ++j) bw[j] = wt[k * PAD + tx + 16 * j];
      for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = fma(a[i], bw[j], acc[i][j]);
    }
  }
  for (int i = 0; i < 4; ++i) {
    const int m = m0 + ty + 16 * i;
    if (m >= M) continue;
    for (int j = 0; j < 4; ++j) {
      const int o = o0 + tx + 16 * j;
      if (o < O) out[size_t(m) * O + o] = static_cast<T>(acc[i][j]);
    }
  }
