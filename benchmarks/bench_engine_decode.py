"""Batched decode throughput of the DecodeWorker at batch 1, 8 and 32.

    python benchmarks/bench_engine_decode.py [--model default] [--context 512] [--runs 3] [--compare-concat]

Each request has a `--context`-token prompt state (lengths staggered by up to 64 tokens, so the batch is padded
as in serving). A run decodes `--steps` tokens for every request after the batch is built; tokens/s counts every
generated token. "one-at-a-time" is batch 1 (the same requests decoded sequentially cost batch-1 time each).
Medians of `--runs` runs; speedup = tokens/s at batch B / tokens/s at batch 1, measured in the same run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from prfaas.engine import decode as decode_module
from prfaas.engine.decode import DecodeWorker
from prfaas.engine.growing_kv import grow_in_place
from prfaas.engine.models import LoadedModel, load_model
from prfaas.engine.prefill import PrefillEngine
from prfaas.engine.sampling import SamplingParams
from prfaas.engine.state import HybridState


def prefill_states(loaded: LoadedModel, context: int, count: int) -> list[tuple[int, HybridState]]:
    engine = PrefillEngine(loaded)
    out = []
    for i in range(count):
        n = context - (i * 8) % 64
        prompt = torch.randint(3, loaded.vocab_size, (n,), generator=torch.Generator().manual_seed(i)).tolist()
        out.append(engine.prefill(prompt))
    return out


def decode_tokens_per_s(loaded: LoadedModel, states: list[tuple[int, HybridState]], batch: int, steps: int,
                        *, in_place: bool = True) -> float:
    decode_module.grow_in_place = grow_in_place if in_place else _concat_only  # type: ignore[assignment]
    worker = DecodeWorker(loaded, max_batch_size=batch)
    params = SamplingParams(max_tokens=steps + 2, ignore_eos=True)
    for i in range(batch):
        first, state = states[i]
        worker.add(f"r{i}", state.clone(), first, params)
    worker.step()  # join: builds the padded batch
    start = time.perf_counter()
    generated = sum(len(worker.step()) for _ in range(steps))
    return generated / (time.perf_counter() - start)


def cat_share(loaded: LoadedModel, states: list[tuple[int, HybridState]], batch: int, steps: int,
              *, in_place: bool) -> float:
    """Fraction of decode CPU time in `aten::cat` over `steps` steps at `batch` (torch profiler)."""
    from torch.profiler import ProfilerActivity, profile

    decode_module.grow_in_place = grow_in_place if in_place else _concat_only  # type: ignore[assignment]
    worker = DecodeWorker(loaded, max_batch_size=batch)
    params = SamplingParams(max_tokens=steps + 2, ignore_eos=True)
    for i in range(batch):
        first, state = states[i]
        worker.add(f"r{i}", state.clone(), first, params)
    worker.step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            worker.step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return sum(e.self_cpu_time_total for e in events if e.key == "aten::cat") / total


def _concat_only(*args: object, **kwargs: object) -> int:
    """Leave transformers' concatenating KV update in place (the comparison baseline)."""
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--context", type=int, default=512)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--compare-concat", action="store_true",
                        help="also measure with transformers' per-step KV concatenation (no in-place growth)")
    parser.add_argument("--profile-ops", action="store_true",
                        help="print the share of decode time spent in torch.cat at the largest batch, per mode")
    args = parser.parse_args()
    loaded = load_model(args.model, num_threads=args.threads)
    batches = [int(b) for b in args.batches.split(",")]
    states = prefill_states(loaded, args.context, max(batches))
    decode_tokens_per_s(loaded, states, 1, 2)  # warm-up
    modes = [True, False] if args.compare_concat else [True]
    per_batch: dict[tuple[bool, int], list[float]] = {(m, b): [] for m in modes for b in batches}
    for _ in range(args.runs):
        for m in modes:
            for b in batches:  # interleaved so noise hits every batch size and mode alike
                per_batch[m, b].append(decode_tokens_per_s(loaded, states, b, args.steps, in_place=m))
    print(f"model {args.model}, context ~{args.context} tokens, {torch.get_num_threads()} threads, "
          f"{args.steps} steps, median of {args.runs} runs")
    for m in modes:
        base = statistics.median(per_batch[m, batches[0]])
        print("KV grown in place (engine.growing_kv)" if m else "KV concatenated every step (transformers default)")
        print(f"{'batch':>6} {'tokens/s':>10} {'ms/step':>8} {'speedup vs batch ' + str(batches[0]):>20}")
        for b in batches:
            tps = statistics.median(per_batch[m, b])
            print(f"{b:>6} {tps:>10.1f} {1e3 * b / tps:>8.1f} {tps / base:>20.2f}x")
    if args.profile_ops:
        for m in modes:
            share = cat_share(loaded, states, max(batches), args.steps, in_place=m)
            print(f"torch.cat share of decode CPU time at batch {max(batches)}, "
                  f"{'in place' if m else 'concatenated'}: {share:.1%}")


if __name__ == "__main__":
    main()
