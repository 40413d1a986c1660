"""Fault injection at benchmark size: every fault into a live load of the default model on the two sites.

    python benchmarks/bench_live_chaos.py [--runs 2] [--requests 30] [--rate-rps 1.0] [--tiny] [--no-sites]
                                          [--policy prfaas] [--faults link-drop,prfaas-restart,...]

For each run and fault: the load starts, the fault is injected after --fault-at-s, undone --recover-after-s
later, the deployment must become routable again and probe requests must be offloaded again. The table gives,
per fault, the requests sent / completed / failed with an explicit error / lost (summed over runs; lost must
be 0) and the median recovery time (undo -> a probe offloaded again). Root is needed for the sites and for
link-drop.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from pathlib import Path

from prfaas.bench.chaos import Fault, FaultReport, format_reports, probe_requests, run_fault
from prfaas.bench.choices import SetupChoices, resolve_setup
from prfaas.bench.run import bench_deployment
from prfaas.bench.workload import build_requests


def table(reports: list[FaultReport]) -> str:
    lines = [f"{'fault':<17}{'runs':>5}{'sent':>6}{'completed':>10}{'failed':>7}{'lost':>5}{'recovery s (median)':>21}"
             f"{'all ok':>8}"]
    for fault in Fault:
        mine = [r for r in reports if r.fault is fault]
        if not mine:
            continue
        lines.append(f"{fault.value:<17}{len(mine):>5}{sum(r.sent for r in mine):>6}"
                     f"{sum(r.completed for r in mine):>10}{sum(r.failed for r in mine):>7}"
                     f"{sum(r.lost for r in mine):>5}{statistics.median(r.recovery_s for r in mine):>21.1f}"
                     f"{'yes' if all(r.ok for r in mine) else 'NO':>8}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--requests", type=int, default=30)
    parser.add_argument("--rate-rps", type=float, default=1.0)
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--policy", default="prfaas")
    parser.add_argument("--faults", default=",".join(f.value for f in Fault))
    parser.add_argument("--fault-at-s", type=float, default=5.0)
    parser.add_argument("--recover-after-s", type=float, default=8.0)
    parser.add_argument("--cap-mbit", type=float, default=None)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--sites", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-live-chaos"))
    args = parser.parse_args()
    setup = resolve_setup(SetupChoices(tiny=args.tiny, sites=args.sites, cap_mbit=args.cap_mbit, policy=args.policy,
                                       num_requests=args.requests, rate_rps=args.rate_rps, max_tokens=args.max_tokens))
    faults = [Fault(f) for f in args.faults.split(",") if f]
    if setup.sites_spec is None and Fault.LINK_DROP in faults:
        faults.remove(Fault.LINK_DROP)
        print("note: link-drop skipped (needs the emulated sites)")
    print(f"{'two emulated sites' if setup.sites_spec else 'loopback'}, cap {setup.cap_mbit:.1f} Mbit/s, policy "
          f"{args.policy}, {args.requests} requests at {args.rate_rps:g} req/s per fault, {args.runs} runs", flush=True)
    reports: list[FaultReport] = []
    with bench_deployment(setup.cfg, args.out / "deploy", setup.sites_spec) as dep:
        for run in range(args.runs):
            spec = dataclasses.replace(setup.spec, seed=100 + run)
            during, probes = build_requests(spec), probe_requests(spec)
            for fault in faults:
                report = run_fault(dep, fault, during, probes, setup.opts, args.out / f"run{run}",
                                   fault_at_s=args.fault_at_s, recover_after_s=args.recover_after_s)
                print(format_reports([report]).splitlines()[1], flush=True)
                reports.append(report)
    print(f"\n{table(reports)}")


if __name__ == "__main__":
    main()
