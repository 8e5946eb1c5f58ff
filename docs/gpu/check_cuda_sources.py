"""Runs the CUDA bodies of solutions/src/fused_gpu.rs and flash_attention_gpu.rs
the way MLX's cuda_kernel wraps and launches them (mlx/backend/cuda/custom_kernel.cpp:
`__global__ void custom_kernel_<name>(const T_in* in.., T_out* out..)` in
namespace mlx::core::cu, template args as constexpr/using, grid counted in
threads), through CuPy's NVRTC, and compares them with float64 numpy references.

The quantized matmul kernels of qmatmul_gpu.rs (day 10) are checked against a
float64 numpy dequantize-and-matmul, then timed on Qwen2 shapes: the matvec kernel
in GB/s of bytes read (4-bit, group 64, bf16 x and scales, M = 1; the weights
cycle through copies larger than the L2 so that every launch reads HBM) and the
tiled kernel in TFLOP/s at M = 128 and 512.

Usage: python3 check_cuda_sources.py SOLUTIONS_SRC_DIR [--quick] [--qmm-only] [--no-timing]
"""
import math
import re
import sys

import cupy as cp
import numpy as np

SRC = sys.argv[1]
QUICK = "--quick" in sys.argv
QMM_ONLY = "--qmm-only" in sys.argv
TIMING = "--no-timing" not in sys.argv
rng = np.random.default_rng(0)
FAILS = []


def consts(path):
    text = open(path).read()
    return {m.group(1): m.group(2) for m in re.finditer(r'const (\w+): &str = r#"(.*?)"#;', text, re.S)}


FUSED = consts(f"{SRC}/fused_gpu.rs")
FLASH = consts(f"{SRC}/flash_attention_gpu.rs")
QMM = consts(f"{SRC}/qmatmul_gpu.rs")

# MLX 0.32.2's default header, less its own utils (which the bodies do not use):
# the fp16/bf16 types and cooperative groups; no `inf` macro (later MLX adds one).
PRELUDE_TRIES = [
    "#include <cuda_bf16.h>\n#include <cuda_fp16.h>\n#include <cooperative_groups.h>\n",
]
PRELUDE = None

CTYPE = {"f32": "float", "bf16": "__nv_bfloat16", "f16": "__half", "i32": "int32_t", "u32": "uint32_t"}


class Arr:
    """A device array with an MLX dtype name."""

    def __init__(self, host, dtype):
        self.dtype = dtype
        self.shape = host.shape
        if dtype == "bf16":
            self.dev = cp.asarray(to_bf16_bits(host))
        elif dtype == "f16":
            self.dev = cp.asarray(host.astype(np.float16))
        elif dtype == "i32":
            self.dev = cp.asarray(host.astype(np.int32))
        elif dtype == "u32":
            self.dev = cp.asarray(host.astype(np.uint32))
        else:
            self.dev = cp.asarray(host.astype(np.float32))

    def host(self):
        h = cp.asnumpy(self.dev)
        if self.dtype == "bf16":
            return from_bf16_bits(h)
        return h.astype(np.float64)


def to_bf16_bits(x):
    u = np.ascontiguousarray(x.astype(np.float32)).view(np.uint32)
    r = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(x)
    r[nan] = 0x7FC0
    return r


def from_bf16_bits(b):
    return (b.astype(np.uint32) << 16).view(np.float32).astype(np.float64)


def rounded(x, dtype):
    """x as the kernel will read it."""
    return Arr(x, dtype).host() if dtype != "f32" else x.astype(np.float32).astype(np.float64)


_modules = {}


def run(name, source, header, inputs, outputs, grid, block, targs):
    """inputs: list of (name, Arr); outputs: list of (name, shape, dtype)."""
    fn = compile_fn(name, source, header, [(n, a.dtype) for n, a in inputs], outputs, targs)
    outs = []
    for n, shape, dt in outputs:
        outs.append(Arr(np.full(shape, np.nan, dtype=np.float32), dt))  # poison: unwritten shows as NaN
    g = tuple((grid[i] + block[i] - 1) // block[i] for i in range(3))
    fn(g, block, tuple(a.dev for _, a in inputs) + tuple(o.dev for o in outs))
    cp.cuda.runtime.deviceSynchronize()
    return outs


def compile_fn(name, source, header, inputs, outputs, targs):
    """inputs: list of (name, dtype); the kernel as MLX would build it."""
    global PRELUDE
    thash = "".join(
        f"_{v}" if isinstance(v, int) and not isinstance(v, bool) else ("_t" if v is True else "_f" if v is False else f"_{v}")
        for _, v in targs
    )
    fname = f"custom_kernel_{name}{thash}"
    params = []
    for n, dt in inputs:
        params.append(f"    const {CTYPE[dt]}* {n}")
    for n, _, dt in outputs:
        params.append(f"    {CTYPE[dt]}* {n}")
    body = ""
    for n, v in targs:
        if isinstance(v, bool):
            body += f"  constexpr bool {n} = {'true' if v else 'false'};\n"
        elif isinstance(v, int):
            body += f"  constexpr int {n} = {v};\n"
        else:
            body += f"  using {n} = {CTYPE[v]};\n"
    sig = ",\n".join(params)
    rest = (
        header
        + "namespace mlx::core::cu {\n\nnamespace cg = cooperative_groups;\n\n"
        + f"__global__ void {fname}(\n{sig}) {{\n{body}\n{source}\n}}\n\n}} // namespace mlx::core::cu\n"
    )
    full = f"mlx::core::cu::{fname}"
    key = (fname, tuple(dt for _, dt in inputs), tuple(o[2] for o in outputs))
    if key not in _modules:
        tries = [PRELUDE] if PRELUDE else PRELUDE_TRIES
        err = None
        for pre in tries:
            try:
                mod = cp.RawModule(code=pre + rest, options=("-std=c++17",), name_expressions=[full])
                fn = mod.get_function(full)
                PRELUDE = pre
                break
            except Exception as e:  # noqa
                err = e
        else:
            print(pre + rest)
            raise err
        _modules[key] = fn
    return _modules[key]


def check(label, got, want, rtol, atol):
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    ok = got.shape == want.shape
    if ok:
        both_nan = np.isnan(got) & np.isnan(want)
        fin = np.isfinite(want)
        bad = ~both_nan & ~(fin & (np.abs(got - want) <= atol + rtol * np.abs(want))) & ~(~fin & (got == want))
        ok = not bad.any()
        worst = np.nanmax(np.abs(got - want)[fin]) if fin.any() else 0.0
    print(f"{'PASS' if ok else 'FAIL'} {label}" + (f" (max abs err {worst:.2e})" if got.shape == want.shape else f" shape {got.shape} vs {want.shape}"))
    if not ok:
        FAILS.append(label)
        if got.shape == want.shape:
            idx = np.argwhere(bad)[:5]
            for i in idx:
                i = tuple(i)
                print(f"    at {i}: got {got[i]}, want {want[i]}")


TOL = {"f32": (2e-5, 2e-5), "bf16": (1.6e-2, 1e-2), "f16": (2e-3, 2e-3)}

# ---------------------------------------------------------------- quantized matmul (day 10)
MATVEC_MAX_ROWS = 8


def pack_codes(q, bits):
    """O x I codes -> O x I*bits/32 uint32 words, code j of a word at bits*j (lowest first)."""
    per = 32 // bits
    o, i = q.shape
    qq = q.reshape(o, i // per, per).astype(np.uint64)
    words = np.zeros((o, i // per), dtype=np.uint64)
    for j in range(per):
        words |= qq[:, :, j] << np.uint64(bits * j)
    return words.astype(np.uint32)


def qmm_launch(x, wq, s, b, m, i, o, gs, bits, path, out_dt):
    """Launches the matvec or tiled kernel as qmatmul_gpu.rs does; returns the output Arr."""
    targs = [("T", x.dtype), ("S", s.dtype), ("BITS", bits), ("GS", gs)]
    dims = Arr(np.array([m, i, o]), "i32")
    ins = [("x", x), ("w", wq), ("scales", s), ("biases", b), ("dims", dims)]
    if path == "matvec":
        rpw = 2 if o >= 8192 else 1
        targs += [("M", m), ("RPW", rpw)]
        blocks = (o + 8 * rpw - 1) // (8 * rpw)
        return run("tiny_llm_qmv", QMM["MATVEC_SOURCE"], QMM["HEADER"], ins,
                   [("out", (m, o), out_dt)], (blocks * 256, 1, 1), (256, 1, 1), targs)[0]
    cols, rows = (o + 63) // 64, (m + 63) // 64
    return run("tiny_llm_qmm_tiled", QMM["TILED_SOURCE"], QMM["HEADER"], ins,
               [("out", (m, o), out_dt)], (cols * 256, rows, 1), (256, 1, 1), targs)[0]


def qmm_case(m, i, o, bits, gs, xdt, sdt, paths=None):
    q = rng.integers(0, 2 ** bits, size=(o, i))
    g = i // gs
    scales = rng.uniform(0.005, 0.02, size=(o, g)) * (1 if bits == 4 else 1 / 16)
    biases = -scales * (2 ** (bits - 1)) + rng.standard_normal((o, g)) * 0.01
    x = rng.standard_normal((m, i))
    xa, sa, ba = Arr(x, xdt), Arr(scales, sdt), Arr(biases, sdt)
    wq = Arr(pack_codes(q, bits), "u32")
    w = np.repeat(sa.host(), gs, axis=1) * q + np.repeat(ba.host(), gs, axis=1)
    want = xa.host() @ w.T
    rtol, atol = (1e-5, 1e-4) if xdt == "f32" else TOL[xdt]
    if paths is None:
        paths = ["matvec" if m <= MATVEC_MAX_ROWS else "tiled"]
    outs = {}
    for path in paths:
        out = qmm_launch(xa, wq, sa, ba, m, i, o, gs, bits, path, xdt).host()
        outs[path] = out
        check(f"qmm {path} m{m} i{i} o{o} b{bits} g{gs} x={xdt} s={sdt}", out, want, rtol, atol)
    if len(paths) == 2:
        check(f"qmm matvec == tiled m{m} i{i} o{o} b{bits} g{gs} x={xdt}", outs["matvec"], outs["tiled"], rtol, atol)


def qmm_correctness():
    for m in [1, 3, 8, 9, 33, 128]:
        for bits in [4, 8]:
            qmm_case(m, 384, 100, bits, 64, "f32", "f32")
    for gs in [32, 64, 128]:
        qmm_case(1, 512, 72, 4, gs, "f32", "bf16")
        qmm_case(5, 512, 130, 8, gs, "bf16", "f16")
        qmm_case(70, 256, 65, 4, gs, "f16", "f32")
    qmm_case(2, 896, 1000, 4, 64, "bf16", "bf16")
    qmm_case(1, 8960, 48, 4, 64, "f32", "f32")        # I > the matvec's slice: two slices at M = 1
    qmm_case(8, 2048, 8200, 4, 128, "f32", "bf16")   # two rows per warp (O >= 8192), slices at M = 8
    qmm_case(3, 4864, 40, 8, 32, "f32", "f16")
    qmm_case(8, 640, 77, 4, 64, "f32", "f32", paths=["matvec", "tiled"])
    qmm_case(1, 896, 33, 8, 128, "bf16", "bf16", paths=["matvec", "tiled"])
    qmm_case(200, 1024, 300, 8, 64, "f32", "f32")
    qmm_case(129, 96 * 4, 1, 4, 32, "f32", "f32")    # O = 1


def dev_bf16(a):
    u = a.astype(cp.float32).view(cp.uint32)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(cp.uint16)


def qmm_timing():
    print("\n# matvec, M = 1, 4-bit, group 64, bf16 x / scales / biases / out; weights cycled through copies > 200 MB")
    l2_bytes = 200 * 2 ** 20
    shapes = [(896, 1152), (896, 896), (896, 9728), (4864, 896), (896, 151936),
              (1536, 2048), (1536, 17920), (8960, 1536), (1536, 151936)]
    ev0, ev1 = cp.cuda.Event(), cp.cuda.Event()

    def make(i, o, m):
        words = cp.random.randint(0, 2 ** 31 - 1, size=(o, i // 8), dtype=cp.int64).astype(cp.uint32)
        s = dev_bf16(cp.random.uniform(0.01, 0.1, size=(o, i // 64)))
        b = dev_bf16(cp.random.uniform(-0.5, 0.5, size=(o, i // 64)))
        x = dev_bf16(cp.random.standard_normal((m, i)))
        return words, s, b, x

    for i, o in shapes:
        bytes_read = o * i // 2 + 2 * o * (i // 64) * 2 + i * 2
        copies = max(1, -(-l2_bytes // bytes_read))
        sets = [make(i, o, 1) for _ in range(copies)]
        rpw = 2 if o >= 8192 else 1
        targs = [("T", "bf16"), ("S", "bf16"), ("BITS", 4), ("GS", 64), ("M", 1), ("RPW", rpw)]
        fn = compile_fn("tiny_llm_qmv", QMM["MATVEC_SOURCE"], QMM["HEADER"],
                        [("x", "bf16"), ("w", "u32"), ("scales", "bf16"), ("biases", "bf16"), ("dims", "i32")],
                        [("out", (1, o), "bf16")], targs)
        dims = cp.asarray(np.array([1, i, o], dtype=np.int32))
        out = cp.empty((1, o), dtype=cp.uint16)
        blocks = (o + 8 * rpw - 1) // (8 * rpw)
        reps = max(50, 4 * copies)
        for k in range(copies):
            w, s, b, x = sets[k]
            fn((blocks, 1, 1), (256, 1, 1), (x, w, s, b, dims, out))
        ev0.record()
        for k in range(reps):
            w, s, b, x = sets[k % copies]
            fn((blocks, 1, 1), (256, 1, 1), (x, w, s, b, dims, out))
        ev1.record()
        ev1.synchronize()
        t = cp.cuda.get_elapsed_time(ev0, ev1) / reps * 1e-3
        gbs = bytes_read / t / 1e9
        print(f"matvec I={i:5d} O={o:6d}: {t * 1e6:8.2f} us  {bytes_read / 1e6:7.2f} MB  {gbs:7.0f} GB/s  {gbs / 4800:5.1%} of 4.8 TB/s")
        del sets

    print("\n# tiled, 4-bit, group 64, bf16 x / scales / biases / out")
    for i, o in [(896, 9728), (4864, 896), (1536, 17920), (8960, 1536)]:
        for m in [128, 512]:
            w, s, b, x = make(i, o, m)
            targs = [("T", "bf16"), ("S", "bf16"), ("BITS", 4), ("GS", 64)]
            fn = compile_fn("tiny_llm_qmm_tiled", QMM["TILED_SOURCE"], QMM["HEADER"],
                            [("x", "bf16"), ("w", "u32"), ("scales", "bf16"), ("biases", "bf16"), ("dims", "i32")],
                            [("out", (m, o), "bf16")], targs)
            dims = cp.asarray(np.array([m, i, o], dtype=np.int32))
            out = cp.empty((m, o), dtype=cp.uint16)
            grid = ((o + 63) // 64, (m + 63) // 64, 1)
            fn(grid, (256, 1, 1), (x, w, s, b, dims, out))
            reps = 20
            ev0.record()
            for _ in range(reps):
                fn(grid, (256, 1, 1), (x, w, s, b, dims, out))
            ev1.record()
            ev1.synchronize()
            t = cp.cuda.get_elapsed_time(ev0, ev1) / reps * 1e-3
            print(f"tiled M={m:4d} I={i:5d} O={o:6d}: {t * 1e6:8.2f} us  {2 * m * i * o / t / 1e12:6.2f} TFLOP/s")


def qmatmul_section():
    qmm_correctness()
    if TIMING:
        qmm_timing()


if QMM_ONLY:
    qmatmul_section()
    print(f"\n{len(FAILS)} failed" + (": " + ", ".join(FAILS) if FAILS else ""))
    sys.exit(1 if FAILS else 0)

# ---------------------------------------------------------------- fused
def rms_norm(x, w, eps, dt):
    e = x.shape[-1]
    rows = x.size // e
    xa = Arr(x, dt)
    out = run("tiny_llm_rms_norm", FUSED["RMS_NORM_SOURCE"], FUSED["HEADER"],
              [("x", xa), ("weight", Arr(w, "f32")), ("eps", Arr(np.array([eps]), "f32"))],
              [("out", x.shape, dt)], (rows * 256, 1, 1), (256, 1, 1), [("T", dt), ("E", e)])[0].host()
    xr = xa.host()
    want = xr / np.sqrt((xr * xr).mean(-1, keepdims=True) + eps) * w.astype(np.float32)
    check(f"rms_norm {x.shape} {dt}", out, want, *TOL[dt])


for shape, dt in [((3, 5, 896), "f32"), ((7, 16), "bf16"), ((2, 4100), "f16"), ((1, 1), "f32"), ((4, 33), "f32")]:
    x = rng.standard_normal(shape) * 3
    w = rng.standard_normal(shape[-1])
    rms_norm(x, w, 1e-6, dt)


def softmax(x, dt):
    s = x.shape[-1]
    rows = x.size // s
    xa = Arr(x, dt)
    out = run("tiny_llm_softmax", FUSED["SOFTMAX_SOURCE"], FUSED["HEADER"],
              [("x", xa), ("dims", Arr(np.array([s]), "i32"))],
              [("out", x.shape, dt)], (rows * 256, 1, 1), (256, 1, 1), [("T", dt)])[0].host()
    xr = xa.host()
    with np.errstate(invalid="ignore"):
        m = xr.max(-1, keepdims=True)
        e = np.exp(xr - m)
        want = e / e.sum(-1, keepdims=True)
    check(f"softmax {x.shape} {dt}", out, want, *TOL[dt])


for shape, dt in [((4, 1), "f32"), ((3, 7), "f32"), ((2, 256), "bf16"), ((5, 1000), "f32"), ((2, 5000), "f16"), ((2, 3, 129), "f32")]:
    softmax(rng.standard_normal(shape) * 4, dt)
x = rng.standard_normal((4, 300)) * 4
x[0, :] = -np.inf
x[1, ::3] = -np.inf
x[2, 5] = 80.0
softmax(x, "f32")


def rope_case(n, l, h, d, traditional, offsets, dt, seq_len=64, base=10000.0):
    half = d // 2
    inv = np.exp(np.arange(half, dtype=np.float32) * np.float32(-math.log(base) / half)).astype(np.float32)
    ang = (np.arange(seq_len, dtype=np.float32)[:, None] * inv[None, :]).astype(np.float32)
    cos, sin = np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)
    x = rng.standard_normal((n, l, h, d))
    xa = Arr(x, dt)
    offs = np.array(offsets if len(offsets) == n else offsets * n, dtype=np.int32)
    pairs = x.size // 2
    blocks = min(max((pairs + 255) // 256, 1), 65536)
    out = run("tiny_llm_rope", FUSED["ROPE_SOURCE"], "",
              [("x", xa), ("cos_table", Arr(cos, "f32")), ("sin_table", Arr(sin, "f32")),
               ("offsets", Arr(offs, "i32")), ("dims", Arr(np.array([n, l, h]), "i32"))],
              [("out", x.shape, dt)], (blocks * 256, 1, 1), (256, 1, 1),
              [("T", dt), ("D", d), ("TRADITIONAL", traditional)])[0].host()
    xr = xa.host()
    want = np.empty_like(xr)
    for b in range(n):
        pos = offs[b] + np.arange(l)
        c = cos[pos][:, None, :].astype(np.float64)
        s = sin[pos][:, None, :].astype(np.float64)
        if traditional:
            x1, x2 = xr[b, ..., 0::2], xr[b, ..., 1::2]
            want[b, ..., 0::2] = x1 * c - x2 * s
            want[b, ..., 1::2] = x1 * s + x2 * c
        else:
            x1, x2 = xr[b, ..., :half], xr[b, ..., half:]
            want[b, ..., :half] = x1 * c - x2 * s
            want[b, ..., half:] = x1 * s + x2 * c
    check(f"rope n{n} l{l} h{h} d{d} trad={traditional} offs={list(offs)} {dt}", out, want, *TOL[dt])


rope_case(3, 5, 2, 64, False, [0, 7, 3], "f32")
rope_case(3, 5, 2, 64, True, [0, 7, 3], "f32")
rope_case(2, 1, 14, 64, False, [40], "bf16")
rope_case(1, 9, 3, 8, True, [2], "f16")
rope_case(2, 3, 1, 2, False, [1, 0], "f32")


def swiglu(shape, dt, dtu):
    g = rng.standard_normal(shape) * 5
    u = rng.standard_normal(shape)
    ga, ua = Arr(g, dt), Arr(u, dtu)
    size = g.size
    blocks = min(max((size + 255) // 256, 1), 65536)
    out = run("tiny_llm_swiglu", FUSED["SWIGLU_SOURCE"], "",
              [("gate", ga), ("up", ua), ("dims", Arr(np.array([size]), "i32"))],
              [("out", shape, dt)], (blocks * 256, 1, 1), (256, 1, 1), [("T", dt), ("U", dtu)])[0].host()
    gr, ur = ga.host(), ua.host()
    want = gr / (1 + np.exp(-gr)) * ur
    check(f"swiglu {shape} {dt}/{dtu}", out, want, *TOL[dt])


swiglu((3, 4864), "f32", "f32")
swiglu((1,), "f32", "f32")
swiglu((2, 7, 33), "bf16", "bf16")
swiglu((20_000_000,) if not QUICK else (1000,), "f32", "f32")  # more than 65536 blocks: grid-stride

# ---------------------------------------------------------------- flash attention
def attention_ref(q, k, v, scale, mode, mask):
    n, hq, l, d = q.shape
    hkv, s = k.shape[1], k.shape[2]
    rep = hq // hkv
    kk = np.repeat(k, rep, axis=1)
    vv = np.repeat(v, rep, axis=1)
    sc = (q * scale) @ kk.transpose(0, 1, 3, 2)
    if mode == "causal":
        i = np.arange(l)[:, None]
        j = np.arange(s)[None, :]
        sc = np.where(j <= i + s - l, sc, -np.inf)
    elif mode == "array":
        sc = sc + mask
    with np.errstate(invalid="ignore"):
        m = sc.max(-1, keepdims=True)
        e = np.exp(sc - m)
        p = e / e.sum(-1, keepdims=True)
    return p @ vv


def flash(n, hq, hkv, l, s, d, dv, mode, tq="f32", tkv="f32", mask_shape=None, full_masked_row=False):
    q = rng.standard_normal((n, hq, l, d))
    k = rng.standard_normal((n, hkv, s, d))
    v = rng.standard_normal((n, hkv, s, dv))
    scale = 1 / math.sqrt(d)
    qa, ka, va = Arr(q, tq), Arr(k, tkv), Arr(v, tkv)
    if mode == "array":
        mask = np.where(rng.random(mask_shape) < 0.3, -np.inf, rng.standard_normal(mask_shape))
        if full_masked_row:
            mask[..., 0, :] = -np.inf
        md = [1] * (4 - len(mask_shape)) + list(mask_shape)
        mask_arr = Arr(mask.reshape(md), "f32")
    else:
        mask = None
        md = [1, 1, 1, 1]
        mask_arr = Arr(np.zeros(1), "f32")
    mode_i = {"none": 0, "causal": 1, "array": 2}[mode]
    if mode == "causal" and l == 1:
        mode_i = 0
    targs = [("TQ", tq), ("TKV", tkv), ("D", d), ("DV", dv), ("MASK", mode_i)]
    sc_arr = Arr(np.array([scale]), "f32")
    if l > 1:
        params = Arr(np.array([l, s, hq, hkv] + md), "i32")
        tiles = (l + 15) // 16
        out = run("tiny_llm_flash_prefill", FLASH["PREFILL_SOURCE"], FLASH["HEADER"],
                  [("q", qa), ("k", ka), ("v", va), ("mask", mask_arr), ("scale", sc_arr), ("dims", params)],
                  [("out", (n, hq, l, dv), tq)], (tiles * 128, hq, n), (128, 1, 1), targs)[0].host()
        path = "prefill"
    else:
        splits = min(max((s + 127) // 128, 1), 32)
        chunk = max((s + splits - 1) // splits, 1)
        splits = max((s + chunk - 1) // chunk, 1)
        params = Arr(np.array([l, s, hq, hkv] + md + [chunk]), "i32")
        parts = run("tiny_llm_flash_decode", FLASH["DECODE_SOURCE"], FLASH["HEADER"],
                    [("q", qa), ("k", ka), ("v", va), ("mask", mask_arr), ("scale", sc_arr), ("dims", params)],
                    [("o_part", (n, hq, splits, dv), "f32"), ("m_part", (n, hq, splits), "f32"), ("l_part", (n, hq, splits), "f32")],
                    (splits * 128, hq, n), (128, 1, 1), targs)
        out = run("tiny_llm_flash_decode_merge", FLASH["DECODE_MERGE_SOURCE"], FLASH["HEADER"],
                  [("o_part", parts[0]), ("m_part", parts[1]), ("l_part", parts[2]), ("dims", Arr(np.array([splits]), "i32"))],
                  [("out", (n, hq, l, dv), tq)], (n * hq * 128, 1, 1), (128, 1, 1), [("TQ", tq), ("DV", dv)])[0].host()
        path = f"decode/{splits} splits"
    want = attention_ref(qa.host(), ka.host(), va.host(), np.float32(scale), mode, mask)
    rtol, atol = TOL[tq] if tq != "f32" else (1e-4, 1e-4)
    check(f"flash {path} n{n} hq{hq} hkv{hkv} l{l} s{s} d{d} dv{dv} {mode}{mask_shape or ''} q={tq} kv={tkv}", out, want, rtol, atol)


# prefill sweep: partial tiles, GQA, causal skipping, masks
for l, s in [(2, 2), (5, 5), (16, 16), (17, 40), (31, 31), (33, 129), (64, 1000), (100, 127), (7, 4096)]:
    flash(1, 4, 2, l, s, 64, 64, "causal")
    if not QUICK:
        flash(2, 4, 1, l, s, 32, 16, "none")
flash(2, 14, 2, 37, 100, 64, 64, "causal", tkv="bf16")
flash(1, 2, 2, 20, 20, 128, 128, "causal")
flash(1, 2, 1, 9, 9, 8, 8, "none", tq="bf16", tkv="bf16")
flash(1, 2, 1, 40, 40, 16, 16, "causal", tq="f16", tkv="f16")
flash(2, 4, 2, 19, 45, 64, 64, "array", mask_shape=(19, 45))
flash(2, 4, 2, 19, 45, 64, 64, "array", mask_shape=(2, 1, 19, 45), full_masked_row=True)
flash(2, 4, 2, 19, 45, 64, 64, "array", mask_shape=(4, 1, 45))
# decode sweep: S in the list
for s in [1, 31, 32, 127, 128, 129, 1000, 4096]:
    flash(1, 14, 2, 1, s, 64, 64, "none")
    if not QUICK:
        flash(2, 4, 4, 1, s, 128, 128, "causal", tkv="bf16")
flash(2, 4, 2, 1, 300, 64, 64, "array", mask_shape=(1, 300))
flash(2, 4, 2, 1, 300, 64, 64, "array", mask_shape=(2, 4, 1, 300), full_masked_row=True)
flash(1, 2, 1, 1, 77, 8, 24, "none", tq="bf16", tkv="bf16")

qmatmul_section()

print(f"\n{len(FAILS)} failed" + (": " + ", ".join(FAILS) if FAILS else ""))
sys.exit(1 if FAILS else 0)
