"""How fast the workload package reads, summarises, replays and generates workloads.

    python benchmarks/workload_speed.py [--trace PATH] [--repeats N]

Prints the median of N runs per step and each step's time relative to reading the trace, all measured in the
same run. The Mooncake conversation trace defaults to the copy vendored in data/traces/.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from prfaas.workload.arrivals import DiurnalRamp, PoissonArrivals
from prfaas.workload.generate import synthetic_requests
from prfaas.workload.lognormal import truncated_lognormal
from prfaas.workload.prefix import replay_prefix_cache, uncached_after_hit_rate
from prfaas.workload.sessions import SyntheticPrefixes
from prfaas.workload.stats import summarize_requests
from prfaas.workload.traces import read_mooncake_jsonl

TRACE_NAME = "mooncake_conversation_trace.jsonl"
DEFAULT_TRACE = Path(__file__).resolve().parents[1] / "data" / "traces" / TRACE_NAME


def _median_s(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trace", type=Path, default=DEFAULT_TRACE)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    trace = read_mooncake_jsonl(args.trace)
    paper = truncated_lognormal()
    sessions = SyntheticPrefixes(num_sessions=200, shared_fraction=0.5, system_prompt_tokens=2048)
    steps: list[tuple[str, Callable[[], object]]] = [
        (f"read Mooncake JSONL ({len(trace)} requests)", lambda: read_mooncake_jsonl(args.trace)),
        ("summarize_requests", lambda: summarize_requests(trace)),
        ("replay LRU, unbounded", lambda: replay_prefix_cache(trace, None)),
        ("replay LRU, 10,000 blocks", lambda: replay_prefix_cache(trace, 10_000)),
        ("replay LRU, 1,000 blocks", lambda: replay_prefix_cache(trace, 1_000)),
        ("truncated_lognormal() (131k support points)", truncated_lognormal),
        ("uncached_after_hit_rate(paper, 0.3)", lambda: uncached_after_hit_rate(paper, 0.3)),
        ("10k paper requests, Poisson", lambda: synthetic_requests(
            paper, 1024, PoissonArrivals(10.0), num_requests=10_000, seed=1)),
        ("10k paper requests, diurnal + sessions", lambda: synthetic_requests(
            paper, 1024, DiurnalRamp(10.0, 8.0, 600.0), num_requests=10_000, seed=1, prefixes=sessions)),
    ]
    results = [(name, _median_s(fn, args.repeats)) for name, fn in steps]
    base_s = results[0][1]
    print(f"{'step':<48} {'median ms':>10} {'x read':>8}   (median of {args.repeats} runs)")
    for name, seconds in results:
        print(f"{name:<48} {seconds * 1e3:>10.1f} {seconds / base_s:>8.2f}")


if __name__ == "__main__":
    main()
