"""Engine prefill vs a plain transformers forward, and the state export+import overhead.

    python benchmarks/bench_engine_prefill.py [--model default] [--lengths 512,2048] [--runs 5] [--threads 2]

Per prompt length, runs are interleaved (engine, plain, engine, plain, ...) so machine noise hits both alike;
the table shows medians and the ratio of medians (engine tokens/s / plain tokens/s; the target is >= 0.95).
The plain forward is `model(input_ids, use_cache=True, logits_to_keep=1)` on the same model.

Export+import overhead: after one prefill, the time to take the state's zero-copy views (sender), allocate
receive buffers and copy the bytes into them (what a receiver's recv_into does, minus the network), and load the
received state into a fresh decode cache, as a percentage of the median engine prefill time (target < 5%).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from prfaas.engine.cache_io import import_state
from prfaas.engine.models import LoadedModel, load_model
from prfaas.engine.prefill import PrefillEngine
from prfaas.engine.state import HybridState


def _timed(fn: object) -> float:
    assert callable(fn)
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def plain_forward(loaded: LoadedModel, prompt: list[int]) -> None:
    with torch.inference_mode():
        loaded.model(input_ids=torch.tensor([prompt]), use_cache=True, logits_to_keep=1)


def ship_and_load(loaded: LoadedModel, state: HybridState) -> None:
    received = HybridState.allocate(state.layout())
    for src, dst in zip(state.tensor_views(), received.tensor_views(), strict=True):
        dst[:] = src
    import_state(received, loaded.config, loaded.family)


def bench_length(loaded: LoadedModel, num_tokens: int, runs: int) -> tuple[float, float, float, int]:
    engine = PrefillEngine(loaded)
    prompt = torch.randint(3, loaded.vocab_size, (num_tokens,), generator=torch.Generator().manual_seed(0)).tolist()
    engine.prefill(prompt)
    plain_forward(loaded, prompt)  # warm-up both
    engine_s, plain_s, ship_s = [], [], []
    for _ in range(runs):
        engine_s.append(_timed(lambda: engine.prefill(prompt)))
        plain_s.append(_timed(lambda: plain_forward(loaded, prompt)))
    _, state = engine.prefill(prompt)
    for _ in range(runs):
        ship_s.append(_timed(lambda: ship_and_load(loaded, state)))
    return statistics.median(engine_s), statistics.median(plain_s), statistics.median(ship_s), state.nbytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--lengths", default="512,2048")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    loaded = load_model(args.model, num_threads=args.threads)
    print(f"model {args.model}, {torch.get_num_threads()} threads, median of {args.runs} interleaved runs")
    print(f"{'tokens':>7} {'engine tok/s':>13} {'plain tok/s':>12} {'ratio':>6} {'state MiB':>10} "
          f"{'export+import ms':>17} {'% of prefill':>13}")
    for n in (int(x) for x in args.lengths.split(",")):
        engine_s, plain_s, ship_s, nbytes = bench_length(loaded, n, args.runs)
        print(f"{n:>7} {n / engine_s:>13.0f} {n / plain_s:>12.0f} {plain_s / engine_s:>6.3f} "
              f"{nbytes / 2**20:>10.2f} {ship_s * 1e3:>17.2f} {100 * ship_s / engine_s:>12.2f}%")


if __name__ == "__main__":
    main()
