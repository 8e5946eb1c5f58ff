"""Random bf16 weights with the exact shapes of a Qwen2/Llama config.json.

For speed measurements where the real weights cannot travel (the lent GPU
machine takes 64 MiB a transfer): time does not depend on the values, so a
model directory with the real config and tokenizer and these weights runs
exactly the same work. Never use it for anything that reads the outputs.

usage: python synthetic_weights.py MODEL_DIR [--seed N]
  reads MODEL_DIR/config.json, writes MODEL_DIR/model.safetensors (bf16).
Needs only numpy.
"""

import argparse
import json
import os
import struct

import numpy as np


def shapes(cfg):
    e, i = cfg["hidden_size"], cfg["intermediate_size"]
    h, v = cfg["num_attention_heads"], cfg["vocab_size"]
    kv = cfg.get("num_key_value_heads", h)
    d = cfg.get("head_dim") or e // h
    bias = cfg.get("attention_bias", cfg["model_type"] == "qwen2")
    out = {"model.embed_tokens.weight": (v, e), "model.norm.weight": (e,)}
    if not cfg.get("tie_word_embeddings", False):
        out["lm_head.weight"] = (v, e)
    for n in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{n}."
        out[p + "self_attn.q_proj.weight"] = (h * d, e)
        out[p + "self_attn.k_proj.weight"] = (kv * d, e)
        out[p + "self_attn.v_proj.weight"] = (kv * d, e)
        out[p + "self_attn.o_proj.weight"] = (e, h * d)
        if bias:
            out[p + "self_attn.q_proj.bias"] = (h * d,)
            out[p + "self_attn.k_proj.bias"] = (kv * d,)
            out[p + "self_attn.v_proj.bias"] = (kv * d,)
        out[p + "mlp.gate_proj.weight"] = (i, e)
        out[p + "mlp.up_proj.weight"] = (i, e)
        out[p + "mlp.down_proj.weight"] = (e, i)
        out[p + "input_layernorm.weight"] = (e,)
        out[p + "post_attention_layernorm.weight"] = (e,)
    return out


def to_bf16(x):
    """float32 -> bf16 bits (round to nearest even), as uint16."""
    u = x.astype(np.float32).view(np.uint32)
    u = u + 0x7FFF + ((u >> 16) & 1)
    return (u >> 16).astype(np.uint16)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfg = json.load(open(os.path.join(args.model_dir, "config.json")))
    rng = np.random.default_rng(args.seed)
    header, blobs, offset = {}, [], 0
    for name, shape in sorted(shapes(cfg).items()):
        if name.endswith("norm.weight"):
            x = np.ones(shape, np.float32)
        else:
            x = rng.standard_normal(shape, dtype=np.float32) * 0.02
        b = to_bf16(x).tobytes()
        header[name] = {"dtype": "BF16", "shape": list(shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    header["__metadata__"] = {"format": "pt", "synthetic": "random weights, real shapes"}
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(os.path.join(args.model_dir, "model.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    print(f"wrote {offset / 1e6:.0f} MB of random bf16 weights to {args.model_dir}/model.safetensors")


if __name__ == "__main__":
    main()
