// Day 16's paged decode attention for Apple GPUs: the Metal twin of the CUDA
// source in solutions/src/paged_attention_gpu.rs, for MLX's custom Metal
// kernels (`mlx_rs::fast::MetalKernel`, `mx.fast.metal_kernel`).
//
// NOT RUN BY THE KIT, NEVER COMPILED: Metal exists only on macOS; the Linux
// machines the kit is developed and graded on cannot compile or run this file
// (it was written without a Mac). Sections, wrapping and the CUDA -> Metal
// dictionary are as in metal/fused.metal; the host side (shape and dtype
// checks, the block tables and context lengths read and checked on the host,
// the int32 `dims` input, the grid) is paged_attention_gpu.rs's.
//
// One threadgroup of 4 simdgroups per (query head, sequence); simdgroup w
// walks the sequence's tokens in tiles of 32 (w * 32, then every 128th), lane
// j looking up the block of token j of the tile; each key's score is a
// simdgroup-wide dot product; an online softmax per tile; the 4 simdgroups are
// merged through threadgroup memory.

// ==== HEADER
// Lane j holds the score s of token j of a tile (-inf past the context).
// Returns p_j = e^(s_j - m_new) after rescaling l by alpha = e^(m - m_new)
// (given back for the accumulator); a tile that sees no token changes nothing.
inline float tiny_llm_paged_online_step(float s, thread float& m, thread float& l, thread float& alpha) {
  const float m_new = metal::fmax(m, simd_max(s));
  float p = 0.0f;
  alpha = 1.0f;
  if (m_new != -INFINITY) {
    p = metal::exp(s - m_new);
    alpha = metal::exp(m - m_new);
  }
  l = l * alpha + simd_sum(p);
  m = m_new;
  return p;
}

// ==== KERNEL tiny_llm_paged_attention
// inputs: q (TQ, [B, H, D]), k_pool, v_pool (TKV, [num_blocks, BS, H_kv, D]),
//         block_tables (int32, [B, max_blocks]), context_lens (int32, [B]),
//         scale (float32, 1), dims (int32: H, H_kv, max_blocks, BS);
//         outputs: out (TQ, [B, H, D])
// template: TQ, TKV, D
// grid (128, H, B), threadgroup (128, 1, 1); uses HEADER
// MLX passes an input of fewer than 8 elements as `const constant T*` and a
// larger one as `const device T*`: the tables, lengths, scale and dims are
// only indexed, through `auto`, so either works.
  constexpr int WARPS = 4;
  constexpr int DL = (D + 31) / 32;  // columns per lane
  threadgroup float m_s[WARPS], l_s[WARPS], acc_s[WARPS * D];
  const int HQ = dims[0], HKV = dims[1], MAXB = dims[2], BS = dims[3];
  const int h = int(threadgroup_position_in_grid.y), b = int(threadgroup_position_in_grid.z);
  const int hkv = h / (HQ / HKV);
  const int tid = int(thread_position_in_threadgroup.x);
  const int lane = int(thread_index_in_simdgroup), warp = int(simdgroup_index_in_threadgroup);
  const int ctx = context_lens[b];
  const auto table = block_tables + size_t(b) * MAXB;
  const float sc = scale[0];
  const device TQ* qp = q + (size_t(b) * HQ + h) * D;
  float qr[DL], acc[DL];
  for (int c = 0; c < DL; ++c) {
    const int d = lane + 32 * c;
    qr[c] = d < D ? static_cast<float>(qp[d]) * sc : 0.0f;
    acc[c] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  for (int t0 = warp * 32; t0 < ctx; t0 += WARPS * 32) {
    const int n = metal::min(32, ctx - t0);  // the same for the whole simdgroup
    // Lane j: the block of token t0 + j (handed to the others by a shuffle).
    const int my_block = lane < n ? table[(t0 + lane) / BS] : 0;
    float s = -INFINITY;
    for (int j = 0; j < n; ++j) {
      const int t = t0 + j;
      const int blk = simd_shuffle(my_block, ushort(j));
      const size_t row = (size_t(blk) * BS + t % BS) * HKV + hkv;
      const device TKV* kr = k_pool + row * D;
      float part = 0.0f;
      for (int c = 0; c < DL; ++c) {
        const int d = lane + 32 * c;
        if (d < D) part += qr[c] * static_cast<float>(kr[d]);
      }
      part = simd_sum(part);
      if (lane == j) s = part;
    }
    float alpha;
    const float p = tiny_llm_paged_online_step(s, m, l, alpha);
    for (int c = 0; c < DL; ++c) acc[c] *= alpha;
    for (int j = 0; j < n; ++j) {
      const int t = t0 + j;
      const float pj = simd_shuffle(p, ushort(j));
      const int blk = simd_shuffle(my_block, ushort(j));
      const size_t row = (size_t(blk) * BS + t % BS) * HKV + hkv;
      const device TKV* vr = v_pool + row * D;
      for (int c = 0; c < DL; ++c) {
        const int d = lane + 32 * c;
        if (d < D) acc[c] += pj * static_cast<float>(vr[d]);
      }
    }
  }
  // Merge the 4 simdgroups' (m, l, acc); one that saw no token has m = -inf.
  if (lane == 0) {
    m_s[warp] = m;
    l_s[warp] = l;
  }
  for (int c = 0; c < DL; ++c) {
    const int d = lane + 32 * c;
    if (d < D) acc_s[warp * D + d] = acc[c];
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  float mb = -INFINITY;
  for (int w = 0; w < WARPS; ++w) mb = metal::fmax(mb, m_s[w]);
  float lb = 0.0f;
  for (int w = 0; w < WARPS; ++w) {
    if (m_s[w] != -INFINITY) lb += l_s[w] * metal::exp(m_s[w] - mb);
  }
  device TQ* o = out + (size_t(b) * HQ + h) * D;
  for (int d = tid; d < D; d += 128) {
    float a = 0.0f;
    for (int w = 0; w < WARPS; ++w) {
      if (m_s[w] != -INFINITY) a += acc_s[w * D + d] * metal::exp(m_s[w] - mb);
    }
    o[d] = static_cast<TQ>(a / lb);
  }
