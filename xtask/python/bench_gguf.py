"""Writes an F32 GGUF of a model directory's weights, for llama.cpp in
`cargo xtask bench week2`, so that llama.cpp runs the same weights as the kit
and mlx-lm (which read the same directory's model.safetensors):

    python bench_gguf.py SOURCE.gguf MODEL_DIR OUT.gguf

- SOURCE.gguf: the GGUF the model directory was converted from
  (`cargo xtask models fetch`: gguf_to_hf.py). Its metadata (architecture
  hyper-parameters, tokenizer, chat template) is copied as it is, except
  `general.file_type` (now 0, all F32); its tensor list gives the names,
  order and shapes.
- MODEL_DIR: model.safetensors (or the shards of model.safetensors.index.json)
  in bf16, f16 or f32; every tensor is read from here, widened to f32 (exact),
  and written under its GGUF name. A tied model writes `token_embd` only:
  llama.cpp then uses it as the output matrix, as the kit and mlx-lm do.
  Llama-architecture q/k rows are permuted back to llama.cpp's interleaved
  order (the inverse of gguf_to_hf.py's `unpermute`).

numpy and the `gguf` package only (the kit's venv). Prints one JSON line:
{"params": N, "tensors": T, "out": PATH}, N counting every element written;
`llama-quantize` then makes the Q4_0 and Q8_0 files from OUT.gguf.

    python bench_gguf.py --info FILE.gguf

prints {"params": N, "tensor_bytes": B, "tensors": T, "types": {type: count}}
of any GGUF (B: the bytes of tensor data, what one decode step reads when the
embedding doubles as the output matrix).
"""

import argparse
import json
import os
import struct
import sys

import numpy as np
from gguf import GGUFReader, GGUFValueType, GGUFWriter

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gguf_to_hf import hf_tensor_name, meta, require  # noqa: E402

SKIPPED_KEYS = {"general.architecture", "general.file_type", "general.quantization_version"}
ALL_F32 = 0  # llama_ftype LLAMA_FTYPE_ALL_F32


def safetensors_files(model_dir):
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.isfile(index):
        with open(index) as f:
            shards = sorted(set(json.load(f)["weight_map"].values()))
        return [os.path.join(model_dir, s) for s in shards]
    return [os.path.join(model_dir, "model.safetensors")]


def read_safetensors(path):
    """name -> float32 numpy array (bf16 and f16 widened exactly)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        base = 8 + n
        out = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            start, end = info["data_offsets"]
            f.seek(base + start)
            raw = f.read(end - start)
            dtype, shape = info["dtype"], tuple(info["shape"])
            if dtype == "BF16":
                w = (np.frombuffer(raw, np.uint16).astype(np.uint32) << 16).view(np.float32)
            elif dtype == "F16":
                w = np.frombuffer(raw, np.float16).astype(np.float32)
            elif dtype == "F32":
                w = np.frombuffer(raw, np.float32).copy()
            else:
                raise SystemExit(f"{path}: {name} is {dtype}; expected a dense BF16, F16 or F32 model")
            out[name] = w.reshape(shape)
        return out


def permute(w, n_heads):
    """llama.cpp's q/k row order for Llama models: per head, (2, D/2) rows as (D/2, 2)."""
    d = w.shape[0] // n_heads
    return w.reshape(n_heads, 2, d // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def info(path):
    reader = GGUFReader(path)
    types = {}
    for t in reader.tensors:
        types[t.tensor_type.name] = types.get(t.tensor_type.name, 0) + 1
    return {
        "params": int(sum(int(t.n_elements) for t in reader.tensors)),
        "tensor_bytes": int(sum(int(t.n_bytes) for t in reader.tensors)),
        "tensors": len(reader.tensors),
        "types": types,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--info", metavar="FILE", help="describe FILE.gguf instead")
    p.add_argument("source", nargs="?")
    p.add_argument("model_dir", nargs="?")
    p.add_argument("out", nargs="?")
    args = p.parse_args()
    if args.info:
        print(json.dumps(info(args.info)))
        return
    if not (args.source and args.model_dir and args.out):
        p.error("SOURCE.gguf MODEL_DIR OUT.gguf are needed (or --info FILE)")

    reader = GGUFReader(args.source)
    arch = require(reader, "general.architecture")
    weights = {}
    for f in safetensors_files(args.model_dir):
        weights.update(read_safetensors(f))

    writer = GGUFWriter(args.out, arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name in SKIPPED_KEYS:
            continue
        vtype = field.types[0]
        sub_type = field.types[-1] if vtype == GGUFValueType.ARRAY else None
        writer.add_key_value(name, field.contents(), vtype, sub_type=sub_type)
    writer.add_file_type(ALL_F32)

    n_heads = require(reader, f"{arch}.attention.head_count")
    n_kv = meta(reader, f"{arch}.attention.head_count_kv", n_heads)
    params, count = 0, 0
    for t in reader.tensors:
        hf = hf_tensor_name(t.name)
        if hf == "lm_head.weight" and hf not in weights:
            continue  # tied: llama.cpp falls back to token_embd
        if hf not in weights:
            raise SystemExit(f"{args.model_dir} has no {hf} (for the GGUF's {t.name})")
        w = np.ascontiguousarray(weights.pop(hf), dtype=np.float32)
        expected = tuple(int(n) for n in reversed(t.shape.tolist()))
        if w.shape != expected:
            raise SystemExit(f"{hf}: shape {w.shape}, the GGUF's {t.name} is {expected}")
        if arch == "llama" and ".self_attn.q_proj." in hf:
            w = permute(w, n_heads)
        elif arch == "llama" and ".self_attn.k_proj." in hf:
            w = permute(w, n_kv)
        writer.add_tensor(t.name, w)
        params += w.size
        count += 1
    if weights:
        raise SystemExit(f"tensors of {args.model_dir} with no GGUF name: {sorted(weights)[:5]}")

    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    print(json.dumps({"params": params, "tensors": count, "out": args.out}))


if __name__ == "__main__":
    main()
