"""One-off check (2026-12-03, no GPU needed): the control flow of the CUDA kernel of
solutions/src/paged_attention_gpu.rs emulated in numpy (lanes of a warp as vectors: tiles of 32
tokens per warp, the table lookups, the online softmax, the merge of 4 warps) against an f64
dense attention over shuffled, shared blocks. A copy of the kernel's logic: change both
together. Usage: python3 docs/gpu/emulate_paged_attention.py (numpy)."""
# Emulates SOURCE of paged_attention_gpu.rs (warp-level, lanes as numpy vectors) against dense f64.
import numpy as np
rng = np.random.default_rng(0)
def kernel(q, kp, vp, tables, lens, scale, HQ, HKV, MAXB, BS, D):
    B = q.shape[0]; out = np.zeros((B, HQ, D), np.float32)
    DL = (D + 31) // 32; WARPS = 4
    kflat = kp.reshape(-1); vflat = vp.reshape(-1); tflat = tables.reshape(-1)
    for b in range(B):
        for h in range(HQ):
            hkv = h // (HQ // HKV); ctx = lens[b]; table = tflat[b*MAXB:]
            m_s = np.zeros(WARPS, np.float32); l_s = np.zeros(WARPS, np.float32); acc_s = np.zeros((WARPS, D), np.float32)
            for warp in range(WARPS):
                lane = np.arange(32)
                qr = np.zeros((DL, 32), np.float32); acc = np.zeros((DL, 32), np.float32)
                for c in range(DL):
                    d = lane + 32*c; ok = d < D
                    qr[c, ok] = q[b, h, d[ok]] * scale
                m = -np.inf; l = 0.0
                t0 = warp*32
                while t0 < ctx:
                    n = min(32, ctx - t0)
                    my_row = np.zeros(32, np.int64)
                    for ln in range(n):
                        t = t0 + ln
                        my_row[ln] = (int(table[t // BS]) * BS + t % BS) * HKV + hkv
                    s = np.full(32, -np.inf, np.float32)
                    for j in range(n):
                        row = my_row[j]
                        part = np.zeros(32, np.float32)
                        for c in range(DL):
                            d = lane + 32*c; ok = d < D
                            part[ok] += qr[c, ok] * kflat[row*D + d[ok]]
                        s[j] = part.sum()
                    m_new = max(m, s.max())
                    p = np.zeros(32, np.float32); alpha = 1.0
                    if m_new != -np.inf:
                        p = np.exp(s - m_new); alpha = np.exp(m - m_new)
                    l = l*alpha + p.sum(); m = m_new
                    acc *= alpha
                    for j in range(n):
                        row = my_row[j]
                        for c in range(DL):
                            d = lane + 32*c; ok = d < D
                            acc[c, ok] += p[j] * vflat[row*D + d[ok]]
                    t0 += WARPS*32
                m_s[warp] = m; l_s[warp] = l
                for c in range(DL):
                    d = lane + 32*c; ok = d < D
                    acc_s[warp, d[ok]] = acc[c, ok]
            mb = m_s.max(); lb = sum(l_s[w]*np.exp(m_s[w]-mb) for w in range(WARPS) if m_s[w] != -np.inf)
            for d in range(D):
                a = sum(acc_s[w, d]*np.exp(m_s[w]-mb) for w in range(WARPS) if m_s[w] != -np.inf)
                out[b, h, d] = a / lb
    return out
def dense(q, kp, vp, tables, lens, scale, HQ, HKV, BS, D):
    B = q.shape[0]; out = np.zeros((B, HQ, D))
    for b in range(B):
        ctx = lens[b]
        rows = [(tables[b, t // BS], t % BS) for t in range(ctx)]
        K = np.array([kp[blk, sl] for blk, sl in rows], np.float64); V = np.array([vp[blk, sl] for blk, sl in rows], np.float64)
        for h in range(HQ):
            g = h // (HQ // HKV)
            sc = K[:, g] @ q[b, h].astype(np.float64) * scale
            w = np.exp(sc - sc.max()); w /= w.sum()
            out[b, h] = w @ V[:, g]
    return out
for (HQ, HKV, D, BS, lens) in [(4, 2, 40, 3, [1, 31, 33, 200]), (2, 1, 64, 16, [129, 600]), (8, 8, 16, 1, [5]), (3,1,70,5,[97])]:
    needed = [-(-l // BS) for l in lens]; nb = sum(needed) + 3
    perm = rng.permutation(nb); MAXB = max(needed) + 1
    tables = np.full((len(lens), MAXB), -1, np.int32); o = 0
    for i, n in enumerate(needed):
        tables[i, :n] = perm[o:o+n]; o += n
        if i > 0: tables[i, 0] = tables[0, 0]
    q = rng.uniform(-2, 2, (len(lens), HQ, D)).astype(np.float32)
    kp = rng.uniform(-2, 2, (nb, BS, HKV, D)).astype(np.float32); vp = rng.uniform(-2, 2, (nb, BS, HKV, D)).astype(np.float32)
    sc = 1/np.sqrt(D)
    got = kernel(q, kp, vp, tables, np.array(lens), sc, HQ, HKV, MAXB, BS, D)
    want = dense(q, kp, vp, tables, lens, sc, HQ, HKV, BS, D)
    print(HQ, HKV, D, BS, lens, "max abs err", np.abs(got - want).max())
