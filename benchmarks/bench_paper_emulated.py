"""The paper's case study live on emulated accelerators (docs/emulated.md), beside the simulator.

    python benchmarks/bench_paper_emulated.py --out runs/paper [--runs 3] [--calibration runs/paper-cal]

Runs `prfaas bench paper` (4 configurations x `--runs` seeds: a capacity run at 1.5 x the planner's Lambda and a
common-load run each, on the two emulated sites when root) and prints its report (medians and [min, max] over
runs). With `--calibration` (a previous output of this script, never the run itself) the simulator side is also
re-run with the request-path overhead fitted to that calibration (`bench.paper_overhead`), and the errors of
"sim+oh" are printed too. About 4 minutes per configuration and run on a 2-core machine.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prfaas.bench.paper import PaperOptions, resimulate, run_paper
from prfaas.bench.paper_overhead import overhead_from
from prfaas.bench.paper_report import format_paper


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--common-requests", type=int, default=60)
    parser.add_argument("--calibration", type=Path, default=None)
    args = parser.parse_args()
    opts = PaperOptions(out_dir=args.out, runs=args.runs, common_requests=args.common_requests)
    result = run_paper(opts)
    print(format_paper(result))
    if args.calibration is not None:
        overhead = overhead_from(args.calibration)
        print(f"\nrequest-path overhead {overhead.describe()} from {args.calibration}")
        print(format_paper(resimulate(args.out, overhead)))


if __name__ == "__main__":
    main()
