"""One-off check (2026-12-03, no GPU needed): compiles the CUDA body of
solutions/src/paged_attention_gpu.rs with the CUDA wheel's NVRTC (libnvrtc.so.13 from
`cargo xtask setup --backend cuda`, CCCL headers beside libmlx), wrapped as MLX 0.32.2 wraps a
custom kernel, for a few (TQ, TKV, D). Usage: python3 docs/gpu/nvrtc_compile_paged.py REPO_ROOT
(with LD_LIBRARY_PATH=REPO_ROOT/target/mlx/cuda-dist/nvidia/cu13/lib)."""
import ctypes, re, sys
root = sys.argv[1]
lib = ctypes.CDLL(f"{root}/target/mlx/cuda-dist/nvidia/cu13/lib/libnvrtc.so.13")
inc = f"{root}/target/mlx/cuda-dist/nvidia/cu13/include"
text = open(f"{root}/solutions/src/paged_attention_gpu.rs").read()
c = {m.group(1): m.group(2) for m in re.finditer(r'const (\w+): &str = r#"(.*?)"#;', text, re.S)}
CT = {"f32": "float", "bf16": "__nv_bfloat16", "f16": "__half"}
ok = True
for tq, tkv, d in [("f32","f32",64),("bf16","bf16",128),("f16","f16",16),("f32","bf16",256),("f32","f32",32)]:
    params = [f"const {CT[tq]}* q", f"const {CT[tkv]}* k_pool", f"const {CT[tkv]}* v_pool",
              "const int32_t* block_tables", "const int32_t* context_lens", "const float* scale",
              "const int32_t* dims", f"{CT[tq]}* out"]
    body = f"  using TQ = {CT[tq]};\n  using TKV = {CT[tkv]};\n  constexpr int D = {d};\n"
    src = ("#include <cuda_bf16.h>\n#include <cuda_fp16.h>\n#include <cooperative_groups.h>\n" + c["HEADER"]
           + "namespace mlx::core::cu {\nnamespace cg = cooperative_groups;\n"
           + f"__global__ void custom_kernel_x(\n" + ",\n".join(params) + ") {\n" + body + c["SOURCE"] + "\n}\n}\n")
    prog = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(prog), src.encode(), b"k.cu", 0, None, None) == 0
    opts = [b"-std=c++17", b"--gpu-architecture=compute_90", ("-I" + inc).encode(), ("-I" + root + "/target/mlx/cuda-dist/mlx/include/cccl").encode(), b"-default-device"]
    arr = (ctypes.c_char_p * len(opts))(*opts)
    rc = lib.nvrtcCompileProgram(prog, len(opts), arr)
    n = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(prog, ctypes.byref(n))
    log = ctypes.create_string_buffer(n.value)
    lib.nvrtcGetProgramLog(prog, log)
    print(tq, tkv, d, "rc", rc, log.value.decode()[:3000])
    ok &= rc == 0
sys.exit(0 if ok else 1)
