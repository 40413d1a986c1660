"""How long the full paper-scenario optimisation takes (target: under 1 s on the 2-core dev machine).

    python benchmarks/bench_planner.py [--repeats N]

Times `run_plan(paper_case())` (three configurations, grid search over t and the split, equal-cost
comparison) for both length modes, plus the end-to-end `prfaas plan --scenario paper --json` command
(process start and imports included). Prints the median of N runs.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from prfaas.planner.model import LengthMode
from prfaas.planner.paper import paper_case
from prfaas.planner.run import run_plan


def timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    rows = [
        ("build paper case (Table 5, log-normal, calibration)", lambda: paper_case()),
        ("optimise 3 configs, representative lengths", lambda: run_plan(paper_case(), LengthMode.REPRESENTATIVE)),
        ("optimise 3 configs, exact expectations", lambda: run_plan(paper_case(), LengthMode.EXACT)),
        ("`prfaas plan --scenario paper --json` (new process)",
         lambda: subprocess.run([sys.executable, "-m", "prfaas.cli", "plan", "--scenario", "paper", "--json"],
                                check=True, capture_output=True)),
    ]
    print(f"{'step':55s} {'median s':>9s} {'min s':>7s}  (n={args.repeats})")
    for label, fn in rows:
        times = [timed(fn) for _ in range(args.repeats)]
        print(f"{label:55s} {statistics.median(times):9.3f} {min(times):7.3f}")


if __name__ == "__main__":
    main()
