"""The mlx-lm side of `cargo xtask bench week3`: mlx-lm's continuous batching
(`mlx_lm.generate.BatchGenerator`, the engine under `batch_generate`) serving
the week-3 workload with at most N requests in flight.

Closed loop, as the contract of `tiny-llm-bench engine`: N requests are
inserted at the start; whenever one finishes, the next request of the
workload (in order) is inserted, until all are done. The generator runs
`completion_batch_size = prefill_batch_size = N`, no stop tokens (every
request generates exactly its `max_tokens`), greedy sampling, on MLX's CPU
device with f32 activations and f32 scales/biases (`model.set_dtype`, the
fastest CPU configuration of mlx-lm, as in `bench week2`).

Times: a request's submit time is when it is inserted; its time to first
token is the first `GenerationBatch.Response` that carries its uid; its
inter-token latencies are the gaps between its consecutive responses (each
response is one token, as the generator's `next_generated` returns them to
the host). One JSON object on stdout with the contract's keys; the KV and
prefix-cache keys are null (mlx-lm's batch generator has neither a block
pool nor a cross-request prefix cache); `prefill_tokens_computed` is the
generator's own count of prompt tokens processed.

Run with the kit's venv python (target/venv); `cargo xtask bench week3` does.
"""

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

import mlx.core as mx

mx.set_default_device(mx.gpu if os.environ.get("TINY_LLM_DEVICE") == "gpu" else mx.cpu)

from mlx_lm.generate import BatchGenerator  # noqa: E402  (after the device is set)
from mlx_lm.utils import load_model  # noqa: E402


def greedy(logprobs):
    return mx.argmax(logprobs, axis=-1)


def serve(model, requests, concurrency):
    """Runs the closed loop; returns per-request token times and counters."""
    gen = BatchGenerator(
        model,
        stop_tokens=None,
        sampler=greedy,
        completion_batch_size=concurrency,
        prefill_batch_size=concurrency,
    )
    submitted, times = {}, {}
    order = {}
    next_index = 0

    def submit(k):
        nonlocal next_index
        batch = requests[next_index : next_index + k]
        uids = gen.insert([r["prompt"] for r in batch], [r["max_tokens"] for r in batch])
        now = time.perf_counter()
        for uid, _ in zip(uids, batch):
            submitted[uid] = now
            times[uid] = []
            order[uid] = next_index
            next_index += 1

    start = time.perf_counter()
    submit(min(concurrency, len(requests)))
    done = 0
    with gen.stats() as stats:
        while done < len(requests):
            responses = gen.next_generated()
            now = time.perf_counter()
            if not responses:
                break
            finished = 0
            for r in responses:
                times[r.uid].append(now)
                if r.finish_reason is not None:
                    finished += 1
            done += finished
            if finished and next_index < len(requests):
                submit(min(finished, len(requests) - next_index))
    mx.synchronize()
    wall = time.perf_counter() - start
    gen.close()
    return submitted, times, order, wall, stats


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--workload", required=True)
    p.add_argument("--concurrency", type=int, required=True)
    args = p.parse_args()
    if args.concurrency < 1:
        raise SystemExit(f"--concurrency {args.concurrency}: expected at least 1")
    requests = json.loads(Path(args.workload).read_text())["requests"]
    if not requests:
        raise SystemExit(f"{args.workload} has no requests")

    model, _ = load_model(Path(args.model), lazy=True)
    model.set_dtype(mx.float32)
    mx.eval(model.parameters())
    # Warm-up: one short request through the same generator path.
    serve(model, [{"prompt": requests[0]["prompt"][:16], "max_tokens": 2}], 1)

    print(f"  mlx-lm: {len(requests)} requests, {args.concurrency} in flight", file=sys.stderr)
    submitted, times, order, wall, stats = serve(model, requests, args.concurrency)
    uids = sorted(times, key=lambda u: order[u])
    ttft = [times[u][0] - submitted[u] for u in uids if times[u]]
    itl = [b - a for u in uids for a, b in zip(times[u], times[u][1:])]
    output_tokens = sum(len(times[u]) for u in uids)
    expected = sum(r["max_tokens"] for r in requests)
    if output_tokens != expected:
        raise SystemExit(f"mlx-lm generated {output_tokens} tokens, the workload asks {expected}")
    print(
        f"  mlx-lm: {output_tokens} tokens in {wall:.1f} s = {output_tokens / wall:.2f} tok/s",
        file=sys.stderr,
    )
    report = {
        "engine": "mlx-lm",
        "concurrency": args.concurrency,
        "requests": len(requests),
        "wall_s": wall,
        "prompt_tokens": sum(len(r["prompt"]) for r in requests),
        "output_tokens": output_tokens,
        "prefill_tokens_computed": stats.prompt_tokens,
        "ttft_s": ttft,
        "itl_s": itl,
        "kv_blocks_total": None,
        "kv_blocks_peak": None,
        "kv_blocks_in_use_end": None,
        "prefix_cache_hit_blocks": None,
        "prefix_cache_lookup_blocks": None,
        # ru_maxrss is in KiB on Linux
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9,
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
