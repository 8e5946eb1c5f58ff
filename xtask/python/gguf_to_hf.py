"""Converts a llama.cpp GGUF file (Qwen2 or Llama architecture) into a standard
Hugging Face model directory, offline and without torch:

    config.json              from the GGUF metadata (`<arch>.block_count`, ...)
    model.safetensors        every tensor dequantized (gguf.quants) and cast to --dtype
    tokenizer.json           byte-level BPE rebuilt from `tokenizer.ggml.*`
    tokenizer_config.json    special tokens and `chat_template`
    special_tokens_map.json
    generation_config.json   eos ids (Qwen2.5 instruct stops on <|im_end|> and <|endoftext|>)

Run by `cargo xtask models fetch` in the kit's venv (gguf, numpy, mlx):

    python gguf_to_hf.py MODEL.gguf OUT_DIR [--dtype bfloat16|float16|float32]

Facts this relies on (see docs/models.md of the kit's maintainers):
- GGUF stores a matrix `out x in` as ne = [in, out]; gguf.quants.dequantize
  returns numpy rows in the Hugging Face order (out, in).
- llama.cpp's converter permutes the rows of attn_q / attn_k of Llama models
  (for its interleaved RoPE): per head, rows (2, D/2) were stored as (D/2, 2).
  They are permuted back here. Qwen2 files are not permuted.
- A tied model may also carry `output.weight`; in the Qwen2.5 file it is the
  Q8_0 copy of the matrix whose `token_embd` copy is Q5_0, so it is the more
  precise one and becomes `model.embed_tokens.weight`.
"""

import argparse
import json
import os
import time

import numpy as np
from gguf import GGUFReader, GGUFValueType
from gguf.quants import dequantize

# llama.cpp token types
NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6

# The split regex of Qwen2 / Qwen2.5's tokenizer.json.
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# Added tokens that Qwen2.5's tokenizer.json marks "special": false although
# the GGUF calls some of them CONTROL.
QWEN2_NOT_SPECIAL = {
    "<tool_call>", "</tool_call>", "<|fim_prefix|>", "<|fim_middle|>", "<|fim_suffix|>",
    "<|fim_pad|>", "<|repo_name|>", "<|file_sep|>",
}

BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "ffn_norm": "post_attention_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


def meta(reader, key, default=None):
    """A metadata value as a Python object (str, number, bool or list)."""
    field = reader.fields.get(key)
    if field is None:
        return default
    return field.contents()


def require(reader, key):
    value = meta(reader, key)
    if value is None:
        raise SystemExit(f"GGUF metadata has no {key!r}")
    return value


def hf_tensor_name(name):
    """'blk.3.attn_q.bias' -> 'model.layers.3.self_attn.q_proj.bias'."""
    parts = name.split(".")
    if parts[0] == "blk":
        layer, base, suffix = parts[1], parts[2], ".".join(parts[3:])
        if base not in BLOCK_NAMES:
            raise SystemExit(f"unexpected tensor {name}")
        return f"model.layers.{layer}.{BLOCK_NAMES[base]}.{suffix}"
    if parts[0] not in TOP_NAMES:
        raise SystemExit(f"unexpected tensor {name}")
    return f"{TOP_NAMES[parts[0]]}.{'.'.join(parts[1:])}"


def unpermute(w, n_heads):
    """Undoes llama.cpp's q/k permutation: per head, (D/2, 2) rows back to (2, D/2)."""
    rows = w.shape[0]
    d = rows // n_heads
    return w.reshape(n_heads, d // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def exact_float(x):
    """The shortest decimal of a float32 metadata value (1e-06, not 9.99999997e-07)."""
    return float(str(np.float32(x)))


def read_tensors(reader, arch, dtype):
    """Every tensor under its Hugging Face name, dequantized and cast to `dtype`
    one at a time (MLX arrays: peak memory stays near the output's size)."""
    import mlx.core as mx

    mx_dtype = getattr(mx, dtype)
    n_heads = require(reader, f"{arch}.attention.head_count")
    n_kv = meta(reader, f"{arch}.attention.head_count_kv", n_heads)
    out = {}
    for t in reader.tensors:
        w = np.asarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        w = w.reshape(tuple(int(n) for n in reversed(t.shape.tolist())))
        name = hf_tensor_name(t.name)
        if arch == "llama" and ".self_attn.q_proj." in name:
            w = unpermute(w, n_heads)
        elif arch == "llama" and ".self_attn.k_proj." in name:
            w = unpermute(w, n_kv)
        out[name] = mx.array(w).astype(mx_dtype)
        mx.eval(out[name])
        del w
    if "lm_head.weight" in out:
        # tied: keep one matrix, the output copy (the more precise one in Qwen2.5's file)
        out["model.embed_tokens.weight"] = out.pop("lm_head.weight")
    return out


def save_weights(tensors, path):
    import mlx.core as mx

    mx.save_safetensors(path, dict(sorted(tensors.items())), metadata={"format": "pt"})


def build_tokenizer(reader):
    """tokenizer.json as a dict, plus the added tokens and special ids."""
    if meta(reader, "tokenizer.ggml.model") != "gpt2":
        raise SystemExit("only byte-level BPE tokenizers (tokenizer.ggml.model = gpt2) are handled")
    pre = meta(reader, "tokenizer.ggml.pre")
    tokens = require(reader, "tokenizer.ggml.tokens")
    types = require(reader, "tokenizer.ggml.token_type")
    merges = require(reader, "tokenizer.ggml.merges")
    qwen = pre == "qwen2"

    vocab, added = {}, []
    for i, (tok, kind) in enumerate(zip(tokens, types)):
        if kind == UNUSED:
            continue  # llama.cpp's [PAD...] filler rows up to the embedding size
        if kind in (CONTROL, USER_DEFINED):
            special = kind == CONTROL and not (qwen and tok in QWEN2_NOT_SPECIAL)
            added.append({"id": i, "content": tok, "single_word": False, "lstrip": False,
                          "rstrip": False, "normalized": False, "special": special})
            if qwen:
                continue  # Qwen keeps added tokens out of the BPE vocab
        vocab[tok] = i

    if qwen:
        byte_level = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": False,
                      "use_regex": False}
        normalizer = {"type": "NFC"}
        pre_tokenizer = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN2_PATTERN}, "behavior": "Isolated",
             "invert": False},
            byte_level,
        ]}
        post_processor, decoder = byte_level, byte_level
    elif pre in ("smollm", "starcoder", "refact", "gpt-2", "default", None):
        normalizer = None
        steps = [{"type": "Digits", "individual_digits": True}] if pre in ("smollm", "starcoder", "refact") else []
        steps.append({"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
                      "use_regex": True})
        pre_tokenizer = {"type": "Sequence", "pretokenizers": steps}
        post_processor = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False,
                          "use_regex": True}
        decoder = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
                   "use_regex": True}
    else:
        raise SystemExit(f"pre-tokenizer {pre!r} is not handled")

    tokenizer = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": added,
        "normalizer": normalizer,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": decoder,
        "model": {"type": "BPE", "dropout": None, "unk_token": None,
                  "continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": False,
                  "byte_fallback": False, "ignore_merges": False, "vocab": vocab,
                  "merges": [m.split(" ", 1) for m in merges]},
    }
    ids = {k: meta(reader, f"tokenizer.ggml.{key}") for k, key in
           [("bos", "bos_token_id"), ("eos", "eos_token_id"), ("pad", "padding_token_id"),
            ("unk", "unknown_token_id")]}
    return tokenizer, tokens, ids, qwen


def tokenizer_config(reader, tokens, ids, added, qwen, arch):
    def name(kind):
        return tokens[ids[kind]] if ids.get(kind) is not None else None

    specials = [a["content"] for a in added if a["special"]]
    if qwen:  # as Qwen2.5's own file: every special but the padding <|endoftext|>
        additional = [t for t in specials if t != name("pad")]
    else:  # SmolLM-style: only the chat markers
        additional = [t for t in ("<|im_start|>", "<|im_end|>") if t in specials]
    cfg = {
        "add_bos_token": bool(meta(reader, "tokenizer.ggml.add_bos_token", False)),
        "add_prefix_space": False,
        "additional_special_tokens": additional,
        "bos_token": None if qwen else name("bos"),  # Qwen2.5 has no BOS token in practice
        "chat_template": meta(reader, "tokenizer.chat_template"),
        "clean_up_tokenization_spaces": False,
        "eos_token": name("eos"),
        "errors": "replace",
        "model_max_length": int(meta(reader, f"{arch}.context_length", 32768)),
        "pad_token": name("pad"),
        "split_special_tokens": False,
        "tokenizer_class": "Qwen2Tokenizer" if qwen else "GPT2Tokenizer",
        "unk_token": None if qwen else name("unk"),
    }
    if cfg["chat_template"] is None:
        raise SystemExit("GGUF metadata has no tokenizer.chat_template")
    return cfg


def model_config(reader, arch, tensors, ids, dtype):
    g = lambda key, default=None: meta(reader, f"{arch}.{key}", default)  # noqa: E731
    n_heads = require(reader, f"{arch}.attention.head_count")
    hidden = require(reader, f"{arch}.embedding_length")
    cfg = {
        "attention_dropout": 0.0,
        "bos_token_id": ids.get("bos"),
        "eos_token_id": ids.get("eos"),
        "hidden_act": "silu",
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": require(reader, f"{arch}.feed_forward_length"),
        "max_position_embeddings": g("context_length", 32768),
        "num_attention_heads": n_heads,
        "num_hidden_layers": require(reader, f"{arch}.block_count"),
        "num_key_value_heads": g("attention.head_count_kv", n_heads),
        "rms_norm_eps": exact_float(require(reader, f"{arch}.attention.layer_norm_rms_epsilon")),
        "rope_scaling": None,
        "rope_theta": float(g("rope.freq_base", 10000.0)),
        "tie_word_embeddings": "lm_head.weight" not in tensors,
        "torch_dtype": dtype,
        "use_cache": True,
        "vocab_size": int(tensors["model.embed_tokens.weight"].shape[0]),
    }
    if arch == "qwen2":
        cfg.update(architectures=["Qwen2ForCausalLM"], model_type="qwen2",
                   use_sliding_window=False, sliding_window=cfg["max_position_embeddings"],
                   max_window_layers=cfg["num_hidden_layers"])
    else:
        cfg.update(architectures=["LlamaForCausalLM"], model_type="llama",
                   head_dim=g("rope.dimension_count", hidden // n_heads),
                   attention_bias=False, mlp_bias=False, pretraining_tp=1,
                   pad_token_id=ids.get("pad"))
    return dict(sorted(cfg.items()))


def write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, indent=2)
        f.write("\n")


def check_tokenizer(path, ids, qwen):
    """The written tokenizer.json must load in the Hugging Face tokenizers library
    and round-trip text, with the chat markers as single tokens."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(path)
    text = "Hello, world! 12345 <|im_start|>user\nçava? 你好<|im_end|>"
    enc = tok.encode(text, add_special_tokens=False)
    if tok.decode(enc.ids, skip_special_tokens=False) != text:
        raise SystemExit("tokenizer.json does not round-trip text")
    if ids.get("eos") is not None and ids["eos"] not in enc.ids:
        raise SystemExit("the eos token is not a single token")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("gguf")
    ap.add_argument("out")
    ap.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    args = ap.parse_args()

    started = time.time()
    reader = GGUFReader(args.gguf)
    arch = require(reader, "general.architecture")
    if arch not in ("qwen2", "llama"):
        raise SystemExit(f"architecture {arch!r} is not handled (qwen2, llama)")
    os.makedirs(args.out, exist_ok=True)

    tokenizer, tokens, ids, qwen = build_tokenizer(reader)
    tok_path = os.path.join(args.out, "tokenizer.json")
    with open(tok_path, "w", encoding="utf-8") as f:
        json.dump(tokenizer, f, ensure_ascii=False, indent=1)
    check_tokenizer(tok_path, ids, qwen)
    tcfg = tokenizer_config(reader, tokens, ids, tokenizer["added_tokens"], qwen, arch)
    write_json(os.path.join(args.out, "tokenizer_config.json"), tcfg)
    stm = {f"{k}_token": tcfg[f"{k}_token"] for k in ("bos", "eos", "pad", "unk") if tcfg[f"{k}_token"]}
    stm["additional_special_tokens"] = tcfg["additional_special_tokens"]
    write_json(os.path.join(args.out, "special_tokens_map.json"), stm)
    print(f"tokenizer: {len(tokenizer['model']['vocab'])} BPE tokens, "
          f"{len(tokenizer['model']['merges'])} merges, {len(tokenizer['added_tokens'])} added", flush=True)

    tensors = read_tensors(reader, arch, args.dtype)
    print(f"dequantized {len(tensors)} tensors in {time.time() - started:.1f} s", flush=True)
    write_json(os.path.join(args.out, "config.json"), model_config(reader, arch, tensors, ids, args.dtype))
    eos = [ids["eos"]]
    if qwen and ids.get("pad") is not None and ids["pad"] != ids["eos"]:
        eos.append(ids["pad"])  # <|im_end|> and <|endoftext|>
    gen = {"bos_token_id": ids.get("bos"), "eos_token_id": eos if len(eos) > 1 else eos[0],
           "pad_token_id": ids.get("pad")}
    write_json(os.path.join(args.out, "generation_config.json"), gen)
    save_weights(tensors, os.path.join(args.out, "model.safetensors"))
    size = os.path.getsize(os.path.join(args.out, "model.safetensors"))
    print(f"{args.gguf} -> {args.out}: {arch}, {len(tensors)} tensors, {args.dtype}, "
          f"{size / 2**20:.1f} MiB, {time.time() - started:.1f} s")


if __name__ == "__main__":
    main()
