"""Random bf16 weights with the exact shapes of a Qwen2/Llama config.json.

For speed measurements where the real weights cannot travel (the lent GPU
machine takes 64 MiB a transfer): time does not depend on the values, so a
model directory with the real config and tokenizer and these weights runs
exactly the same work. Never use it for anything that reads the outputs.

usage: python synthetic_weights.py MODEL_DIR [--seed N]
  reads MODEL_DIR/config.json, writes MODEL_DIR/model.safetensors (bf16).
Needs only numpy.

usage: python synthetic_weights.py MODEL_DIR --shape qwen2.5-1.5b [--bits 4]
  writes MODEL_DIR/config.json for that shape (Qwen2.5-0.5B or -1.5B, the
  fields of their Hugging Face config.json) first. With --bits 4 (or 8) the
  checkpoint is an MLX quantized one, laid out as mlx-lm's converter does
  (`mlx_lm.convert -q --q-group-size 64`): every Linear and the embedding
  whose input width divides by the group size replaced by `mx.quantize`'s
  packed uint32 `weight`, bf16 `scales` and `biases`; norms and q/k/v biases
  stay bf16; config.json gains `quantization` (and `quantization_config`).
  Needs mlx for --bits (it quantizes on MLX's default device).
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


# The shapes of --shape: Qwen2.5-0.5B and Qwen2.5-1.5B (config.json on the hub).
SHAPES = {
    "qwen2.5-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
                         num_attention_heads=14, num_key_value_heads=2),
    "qwen2.5-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28,
                         num_attention_heads=12, num_key_value_heads=2),
}


def config_for(shape):
    cfg = {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "hidden_act": "silu",
        "vocab_size": 151936,
        "max_position_embeddings": 32768,
        "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "bos_token_id": 151643,
        "eos_token_id": 151643,
        "use_sliding_window": False,
    }
    cfg.update(SHAPES[shape])
    return cfg


def quantized_tensors(cfg, seed, bits, group_size):
    """name -> mx.array: the tensors of an mlx-lm quantized checkpoint."""
    import mlx.core as mx

    mx.random.seed(seed)
    out = {}
    for name, shape in sorted(shapes(cfg).items()):
        if name.endswith("norm.weight"):
            out[name] = mx.ones(shape, dtype=mx.bfloat16)
            continue
        x = (mx.random.normal(shape) * 0.02).astype(mx.bfloat16)
        if len(shape) == 2 and shape[1] % group_size == 0:
            w, scales, biases = mx.quantize(x, group_size=group_size, bits=bits)
            stem = name[: -len(".weight")]
            out[name] = w
            out[stem + ".scales"] = scales
            out[stem + ".biases"] = biases
        else:
            out[name] = x
        mx.eval(list(out.values()))
    return out


def write_quantized(model_dir, cfg, seed, bits, group_size):
    import mlx.core as mx

    tensors = quantized_tensors(cfg, seed, bits, group_size)
    mx.save_safetensors(
        os.path.join(model_dir, "model.safetensors"),
        tensors,
        metadata={"format": "mlx", "synthetic": "random weights, real shapes"},
    )
    q = {"group_size": group_size, "bits": bits}
    cfg = dict(cfg, quantization=q, quantization_config=q)
    with open(os.path.join(model_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    total = sum(t.nbytes for t in tensors.values())
    print(f"wrote {total / 1e6:.0f} MB of random {bits}-bit (g{group_size}) weights to "
          f"{model_dir}/model.safetensors")


def to_bf16(x):
    """float32 -> bf16 bits (round to nearest even), as uint16."""
    u = x.astype(np.float32).view(np.uint32)
    u = u + 0x7FFF + ((u >> 16) & 1)
    return (u >> 16).astype(np.uint16)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model_dir")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--shape", choices=sorted(SHAPES), help="write this config.json first")
    ap.add_argument("--bits", type=int, choices=[4, 8], help="an MLX quantized checkpoint")
    ap.add_argument("--group-size", type=int, default=64, choices=[32, 64, 128])
    args = ap.parse_args()
    os.makedirs(args.model_dir, exist_ok=True)
    if args.shape:
        with open(os.path.join(args.model_dir, "config.json"), "w") as f:
            json.dump(config_for(args.shape), f, indent=2)
    cfg = json.load(open(os.path.join(args.model_dir, "config.json")))
    if args.bits:
        write_quantized(args.model_dir, cfg, args.seed, args.bits, args.group_size)
        return
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
