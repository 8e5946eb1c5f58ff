// Day 12's flash attention for Apple GPUs: the Metal twin of the CUDA sources
// in solutions/src/flash_attention_gpu.rs, for MLX's custom Metal kernels
// (`mlx_rs::fast::MetalKernel`, `mx.fast.metal_kernel`).
//
// NOT RUN BY THE KIT: Metal exists only on macOS; the Linux machines the kit is
// developed and graded on cannot compile or run this file. Sections, wrapping
// and the CUDA -> Metal dictionary are as in metal/fused.metal; the host side
// (argument checks, the mask as a row-contiguous float32 4-D array, the int32
// `dims` input, the choice of kernel and grid) is flash_attention_gpu.rs's.
//
// One difference from the CUDA kernel: Apple GPUs give a threadgroup 32 KB of
// memory (CUDA's static limit is 48 KB), so the prefill kernel stages the
// queries and the K tile (16 x D + 32 x (D + 1) floats, 24.7 KB at D = 128) and
// reads each V row from device memory, one coalesced row per key, as the
// decode kernel does.

// ==== HEADER
// One online-softmax step for one query row over 32 keys: lane j holds the
// score s of key j (-inf when masked or past the end). Returns p_j after
// rescaling the row's sum l by e^(m_old - m_new) (given back in alpha for the
// accumulator); a tile that sees no key yet changes nothing.
inline float tiny_llm_online_step(float s, thread float& m, thread float& l, thread float& alpha) {
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
// The additive mask's element for (n, h, i, j): a row-contiguous 4-D mask
// whose dims are each 1 (broadcast) or full. A template because MLX passes an
// input of fewer than 8 elements as `const constant T*` (the 1-element
// placeholder when there is no mask, a short mask), others as `const device T*`.
template <typename MaskPtr, typename DimsPtr>
inline float tiny_llm_mask_at(MaskPtr mask, DimsPtr md, int n, int h, int i, int j) {
  const long bn = md[0] == 1 ? 0 : n, bh = md[1] == 1 ? 0 : h;
  const long bi = md[2] == 1 ? 0 : i, bj = md[3] == 1 ? 0 : j;
  return mask[((bn * md[1] + bh) * md[2] + bi) * md[3] + bj];
}

// ==== KERNEL tiny_llm_flash_prefill
// inputs: q (TQ), k, v (TKV), mask (float32), scale (float32, 1),
//         dims (int32: L, S, H_q, H_kv, the mask's 4 dims); outputs: out (TQ)
// template: TQ, TKV, D, DV, MASK (0 none, 1 causal, 2 array)
// grid (ceil(L / 16) * 128, H_q, N), threadgroup (128, 1, 1); uses HEADER
  constexpr int BQ = 16, BK = 32, WARPS = 4, ROWS = BQ / WARPS;
  constexpr int DVL = (DV + 31) / 32;  // output columns per lane
  threadgroup float q_s[BQ * D];
  threadgroup float k_s[BK * (D + 1)];
  const int L = dims[0], S = dims[1], HQ = dims[2], HKV = dims[3];
  const auto md = dims + 4;
  const int q0 = int(threadgroup_position_in_grid.x) * BQ;
  const int h = int(threadgroup_position_in_grid.y), n = int(threadgroup_position_in_grid.z);
  const int hkv = h / (HQ / HKV);
  const int tid = int(thread_position_in_threadgroup.x);
  const int lane = int(thread_index_in_simdgroup), warp = int(simdgroup_index_in_threadgroup);
  const device TQ* qp = q + (size_t(n) * HQ + h) * L * D;
  const device TKV* kp = k + (size_t(n) * HKV + hkv) * S * D;
  const device TKV* vp = v + (size_t(n) * HKV + hkv) * S * DV;
  const float sc = scale[0];
  for (int i = tid; i < BQ * D; i += 128) {
    q_s[i] = q0 + i / D < L ? static_cast<float>(qp[size_t(q0) * D + i]) * sc : 0.0f;
  }
  float m[ROWS], l[ROWS], acc[ROWS][DVL];
  for (int r = 0; r < ROWS; ++r) {
    m[r] = -INFINITY;
    l[r] = 0.0f;
    for (int c = 0; c < DVL; ++c) acc[r][c] = 0.0f;
  }
  const int kend = MASK == 1 ? metal::min(S, q0 + BQ + S - L) : S;
  for (int k0 = 0; k0 < kend; k0 += BK) {
    threadgroup_barrier(mem_flags::mem_threadgroup);
    for (int i = tid; i < BK * D; i += 128) {
      const int j = i / D, d = i % D;
      k_s[j * (D + 1) + d] = k0 + j < S ? static_cast<float>(kp[size_t(k0) * D + i]) : 0.0f;
    }
    threadgroup_barrier(mem_flags::mem_threadgroup);
    const int key = k0 + lane;
    for (int r = 0; r < ROWS; ++r) {
      const int row = warp * ROWS + r, qi = q0 + row;
      if (qi < L) {  // the same for the whole simdgroup
        float s = -INFINITY;
        if (key < S && (MASK != 1 || key <= qi + S - L)) {
          float dot = 0.0f;
          for (int d = 0; d < D; ++d) dot += q_s[row * D + d] * k_s[lane * (D + 1) + d];
          s = dot;
          if (MASK == 2) s += tiny_llm_mask_at(mask, md, n, h, qi, key);
        }
        float alpha;
        const float p = tiny_llm_online_step(s, m[r], l[r], alpha);
        for (int c = 0; c < DVL; ++c) acc[r][c] *= alpha;
        for (int j = 0; j < BK && k0 + j < S; ++j) {
          const float pj = simd_shuffle(p, ushort(j));
          const device TKV* vr = vp + size_t(k0 + j) * DV;
          for (int c = 0; c < DVL; ++c) {
            const int d = lane + 32 * c;
            if (d < DV) acc[r][c] += pj * static_cast<float>(vr[d]);
          }
        }
      }
    }
  }
  for (int r = 0; r < ROWS; ++r) {
    const int qi = q0 + warp * ROWS + r;
    if (qi < L) {
      const float inv = 1.0f / l[r];  // no key seen: 0/0 = NaN (as MLX)
      device TQ* o = out + ((size_t(n) * HQ + h) * L + qi) * DV;
      for (int c = 0; c < DVL; ++c) {
        const int d = lane + 32 * c;
        if (d < DV) o[d] = static_cast<TQ>(acc[r][c] * inv);
      }
    }
  }

// ==== KERNEL tiny_llm_flash_decode
// inputs: as the prefill's, dims (int32: L, S, H_q, H_kv, the mask's 4 dims,
//         keys per chunk); outputs: o_part (float32, N x H_q x chunks x DV),
//         m_part, l_part (float32, N x H_q x chunks)
// template: TQ, TKV, D, DV, MASK (0 or 2)
// grid (chunks * 128, H_q, N), threadgroup (128, 1, 1); uses HEADER
  constexpr int WARPS = 4;
  constexpr int DL = (D + 31) / 32, DVL = (DV + 31) / 32;
  threadgroup float m_s[WARPS], l_s[WARPS], acc_s[WARPS * DV];
  const int S = dims[1], HQ = dims[2], HKV = dims[3], chunk = dims[8];
  const auto md = dims + 4;
  const int split = int(threadgroup_position_in_grid.x);
  const int nsplit = int(threadgroups_per_grid.x);
  const int h = int(threadgroup_position_in_grid.y), n = int(threadgroup_position_in_grid.z);
  const int hkv = h / (HQ / HKV);
  const int tid = int(thread_position_in_threadgroup.x);
  const int lane = int(thread_index_in_simdgroup), warp = int(simdgroup_index_in_threadgroup);
  const float sc = scale[0];
  const device TQ* qp = q + (size_t(n) * HQ + h) * D;
  const device TKV* kp = k + (size_t(n) * HKV + hkv) * S * D;
  const device TKV* vp = v + (size_t(n) * HKV + hkv) * S * DV;
  float qr[DL];
  for (int c = 0; c < DL; ++c) {
    const int d = lane + 32 * c;
    qr[c] = d < D ? static_cast<float>(qp[d]) * sc : 0.0f;
  }
  const int kbeg = split * chunk, kend = metal::min(S, kbeg + chunk);
  float m = -INFINITY, l = 0.0f, acc[DVL];
  for (int c = 0; c < DVL; ++c) acc[c] = 0.0f;
  for (int k0 = kbeg + warp * 32; k0 < kend; k0 += WARPS * 32) {
    float s = -INFINITY;  // lane j: the score of key k0 + j
    for (int j = 0; j < 32 && k0 + j < kend; ++j) {
      const device TKV* kr = kp + size_t(k0 + j) * D;
      float part = 0.0f;
      for (int c = 0; c < DL; ++c) {
        const int d = lane + 32 * c;
        if (d < D) part += qr[c] * static_cast<float>(kr[d]);
      }
      part = simd_sum(part);
      if (lane == j) s = MASK == 2 ? part + tiny_llm_mask_at(mask, md, n, h, 0, k0 + j) : part;
    }
    float alpha;
    const float p = tiny_llm_online_step(s, m, l, alpha);
    for (int c = 0; c < DVL; ++c) acc[c] *= alpha;
    for (int j = 0; j < 32 && k0 + j < kend; ++j) {
      const float pj = simd_shuffle(p, ushort(j));
      const device TKV* vr = vp + size_t(k0 + j) * DV;
      for (int c = 0; c < DVL; ++c) {
        const int d = lane + 32 * c;
        if (d < DV) acc[c] += pj * static_cast<float>(vr[d]);
      }
    }
  }
  if (lane == 0) {
    m_s[warp] = m;
    l_s[warp] = l;
  }
  for (int c = 0; c < DVL; ++c) {
    const int d = lane + 32 * c;
    if (d < DV) acc_s[warp * DV + d] = acc[c];
  }
  threadgroup_barrier(mem_flags::mem_threadgroup);
  float mb = -INFINITY;
  for (int w = 0; w < WARPS; ++w) mb = metal::fmax(mb, m_s[w]);
  const size_t part = (size_t(n) * HQ + h) * nsplit + split;
  for (int d = tid; d < DV; d += 128) {
    float a = 0.0f;
    for (int w = 0; w < WARPS; ++w) {
      if (m_s[w] != -INFINITY) a += acc_s[w * DV + d] * metal::exp(m_s[w] - mb);
    }
    o_part[part * DV + d] = a;
  }
  if (tid == 0) {
    float lb = 0.0f;
    for (int w = 0; w < WARPS; ++w) {
      if (m_s[w] != -INFINITY) lb += l_s[w] * metal::exp(m_s[w] - mb);
    }
    m_part[part] = mb;
    l_part[part] = lb;
  }

// ==== KERNEL tiny_llm_flash_decode_merge
// inputs: o_part, m_part, l_part (float32), dims (int32: chunks); outputs: out (TQ)
// template: TQ, DV; grid (N * H_q * 128, 1, 1), threadgroup (128, 1, 1)
  const int nsplit = dims[0];
  const size_t row = threadgroup_position_in_grid.x;
  const device float* mp = m_part + row * nsplit;
  const device float* lp = l_part + row * nsplit;
  const device float* op = o_part + row * nsplit * DV;
  float mx = -INFINITY;
  for (int c = 0; c < nsplit; ++c) mx = metal::fmax(mx, mp[c]);
  float total = 0.0f;
  for (int c = 0; c < nsplit; ++c) {
    if (mp[c] != -INFINITY) total += lp[c] * metal::exp(mp[c] - mx);
  }
  for (uint d = thread_position_in_threadgroup.x; d < uint(DV); d += threads_per_threadgroup.x) {
    float a = 0.0f;
    for (int c = 0; c < nsplit; ++c) {
      if (mp[c] != -INFINITY) a += op[size_t(c) * DV + d] * metal::exp(mp[c] - mx);
    }
    out[row * DV + d] = static_cast<TQ>(a / total);  // no key seen: 0/0 = NaN
  }
