"""The mlx-lm side of `cargo xtask bench week1`: one configuration per process.

Measures exactly what `tiny-llm-bench run` measures, on the same token ids, the
same weights directory and the same dtype, through mlx-lm's own generation loop
(`mlx_lm.generate.generate_step`: chunked prefill into a KV cache, then one
token per step with the cache), on MLX's CPU device:

- prefill of the first L prompt ids, for each --prefill L: ids in, greedy first
  token out (time to the first token `generate_step` yields);
- decode: from the first --decode-prompt ids, --new-tokens greedy tokens; time
  to first token is the first step, decode speed is
  (new_tokens - 1) / (time from the first token to the last); no stop at
  end-of-sequence;
- peak memory: mx.get_peak_memory() (bytes held by MLX's allocator, weights
  included) over the measured work, after a 16-token warm-up and
  mx.reset_peak_memory().
- --synthetic-context N (week 2's long-context row): decode with N cached
  tokens. The cache is filled with random keys and values of the model's
  shape (N x kv heads x head width per layer, in the model's dtype) instead
  of prefilling N tokens, which mlx-lm's quantized CPU path would take hours
  to do here; a decode step costs the same whatever the cached values are.
  The first decode-prompt id is then fed at position N.

Prints one JSON object on stdout (the same keys as tiny-llm-bench). Run with the
kit's venv python (target/venv); `cargo xtask bench` does.
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import os

import mlx.core as mx

# TINY_LLM_DEVICE=gpu (from `cargo xtask bench --device gpu`) measures on the GPU
ON_GPU = os.environ.get("TINY_LLM_DEVICE") == "gpu"
mx.set_default_device(mx.gpu if ON_GPU else mx.cpu)

from mlx_lm.generate import generate_step  # noqa: E402  (after the device is set)
from mlx_lm.models.cache import make_prompt_cache  # noqa: E402
from mlx_lm.utils import load_model  # noqa: E402

WARMUP_TOKENS = 16
DTYPES = {"f32": mx.float32, "bf16": mx.bfloat16, "f16": mx.float16}


def greedy(logprobs):
    return mx.argmax(logprobs, axis=-1)


def synthetic_cache(model, context, dtype):
    """mlx-lm's prompt cache holding `context` tokens of random keys and
    values (seeded), for every layer."""
    args = model.args
    kv_heads = args.num_key_value_heads
    head_dim = args.hidden_size // args.num_attention_heads
    cache = make_prompt_cache(model)
    mx.random.seed(0)
    for c in cache:
        k = mx.random.normal((1, kv_heads, context, head_dim)).astype(dtype)
        v = mx.random.normal((1, kv_heads, context, head_dim)).astype(dtype)
        c.update_and_fetch(k, v)
        mx.eval(c.state)
    return cache


def generate(model, ids, new_tokens, prompt_cache=None):
    """Greedy tokens after `ids` through mlx-lm's generate_step, with the time
    each one became available on the host (seconds from the call)."""
    prompt = mx.array(ids, dtype=mx.int32)
    start = time.perf_counter()
    tokens, times = [], []
    for token, _ in generate_step(
        prompt, model, max_tokens=new_tokens, sampler=greedy, prompt_cache=prompt_cache
    ):
        times.append(time.perf_counter() - start)
        tokens.append(int(token))
    # generate_step evaluates one step ahead: let it finish before going on.
    mx.synchronize()
    return tokens, times


def measure(args):
    ids = json.loads(Path(args.prompt).read_text())["ids"]
    longest = max(args.prefill + [args.decode_prompt, WARMUP_TOKENS])
    if len(ids) < longest:
        raise SystemExit(f"{args.prompt} has {len(ids)} ids, {longest} are needed")

    started = time.perf_counter()
    model, _ = load_model(Path(args.model), lazy=True)
    model.set_dtype(DTYPES[args.dtype])
    mx.eval(model.parameters())
    generate(model, ids[:WARMUP_TOKENS], 1)
    if ON_GPU:
        # On the GPU each prefill length's first pass also loads or compiles
        # its kernels (47 s for the first 128-token prefill on an H200); the
        # reference's side warms the same lengths, so both report steady state.
        for length in args.prefill:
            generate(model, ids[:length], 1)
    load_seconds = time.perf_counter() - started
    mx.reset_peak_memory()

    prefill = []
    for length in args.prefill:
        tokens, times = generate(model, ids[:length], 1)
        print(f"  prefill {length}: {times[0]:.3f} s", file=sys.stderr)
        prefill.append({"tokens": length, "seconds": times[0], "first_token": tokens[0]})

    decode = None
    if args.new_tokens > 0 and args.synthetic_context > 0:
        cache = synthetic_cache(model, args.synthetic_context, DTYPES[args.dtype])
        tokens, times = generate(model, ids[:1], args.new_tokens, prompt_cache=cache)
        decode = {
            "prompt_tokens": args.synthetic_context,
            "synthetic_context": True,
            "new_tokens": args.new_tokens,
            "ttft_seconds": None,
            "decode_seconds": times[-1] - times[0],
            "tokens": tokens,
        }
    elif args.new_tokens > 0:
        tokens, times = generate(model, ids[: args.decode_prompt], args.new_tokens)
        decode = {
            "prompt_tokens": args.decode_prompt,
            "new_tokens": args.new_tokens,
            "ttft_seconds": times[0],
            "decode_seconds": times[-1] - times[0],
            "tokens": tokens,
        }

    return {
        "status": "ok",
        "load_seconds": load_seconds,
        "prefill": prefill,
        "decode": decode,
        "peak_memory_bytes": mx.get_peak_memory(),
        # ru_maxrss is in KiB on Linux
        "max_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--dtype", default="f32", choices=sorted(DTYPES))
    p.add_argument("--prompt", required=True)
    p.add_argument("--prefill", default="128,512")
    p.add_argument("--decode-prompt", type=int, default=128)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--synthetic-context", type=int, default=0)
    args = p.parse_args()
    args.prefill = [int(x) for x in args.prefill.split(",") if x and x != "none"]
    report = {"implementation": "mlx-lm", "model": args.model, "dtype": args.dtype}
    try:
        report.update(measure(args))
    except Exception as e:  # reported, not raised: the table shows it
        report.update({"status": "error", "message": f"{type(e).__name__}: {e}"})
    print(json.dumps(report))
    return 1 if report["status"] == "error" else 0


if __name__ == "__main__":
    sys.exit(main())
